"""Rank deficiency of X: which columns are aliased, as R's ``lm`` reports.

An in-order QR of the p×p triangular factor of X (computed in row chunks, so X is never
copied): a column is aliased when it lies in the span of the columns before it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from mesostats._parallel import single_threaded_blas

_RANK_TOL = 1e-7
_QR_CHUNK = 1 << 18
_SMALL_X = 20_000  # elements of X below which the BLAS thread limit is not set


def _upper_factor(X: np.ndarray) -> np.ndarray:
    """R of X = QR, computed over row chunks (tall-skinny QR) so X is never copied."""
    p = X.shape[1]
    r_stack = np.zeros((0, p))
    for start in range(0, X.shape[0], _QR_CHUNK):
        block = np.vstack([r_stack, X[start : start + _QR_CHUNK]])
        r_stack = np.asarray(scipy.linalg.qr(block, mode="r", check_finite=False)[0])[:p]
    return np.asarray(r_stack)


def aliased_columns(X: np.ndarray, names: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
    """Columns of X that are linear combinations of the columns before them.

    Returns a list of ``(name, {other column: coefficient})``; the dict is empty for a
    column of zeros. Uses the p×p triangular factor of X and an in-order Gram–Schmidt test
    ``|r_kk| <= 1e-7 * ||x_k||`` (as R's ``lm`` flags aliased coefficients).
    """
    if X.shape[1] == 0:
        return []
    # BLAS limited to one thread for a large X only: setting and restoring the limit costs
    # more than the whole check of a small one (which OpenBLAS runs on one thread anyway)
    small = X.shape[0] * X.shape[1] <= _SMALL_X
    with contextlib.nullcontext() if small else single_threaded_blas():
        gram = X.T @ X
        norms2 = np.diag(gram).copy()
        if np.all(norms2 > 0):
            scaled = gram / np.sqrt(np.outer(norms2, norms2))
            evals = np.linalg.eigvalsh(scaled)
            if evals[0] > 1e-8 * evals[-1]:
                # singular values of the column-scaled X differ by < 1e4: clearly full rank
                return []
        R = _upper_factor(X)
    norms = np.sqrt(np.sum(R * R, axis=0))
    kept: list[int] = []
    out: list[tuple[str, dict[str, float]]] = []
    for k in range(X.shape[1]):
        if norms[k] == 0.0:
            out.append((names[k], {}))
            continue
        cols = [*kept, k]
        rk = np.asarray(scipy.linalg.qr(R[:, cols], mode="r", check_finite=False)[0])
        last = len(cols) - 1
        if last >= rk.shape[0] or abs(rk[last, last]) <= _RANK_TOL * norms[k]:
            coef, *_ = np.linalg.lstsq(R[:, kept], R[:, k], rcond=None)
            deps = {
                names[j]: float(c)
                for j, c in zip(kept, coef, strict=True)
                if abs(c) > 1e-8 * max(1.0, float(np.max(np.abs(coef))))
            }
            out.append((names[k], deps))
        else:
            kept.append(k)
    return out


def _format_alias(name: str, deps: dict[str, float]) -> str:
    if not deps:
        return f"`{name}` is zero in every fitted row"
    terms = " + ".join(f"{c:.4g}·`{other}`" for other, c in deps.items())
    return f"`{name}` = {terms}"
