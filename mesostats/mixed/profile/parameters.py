"""Variance parameters on lme4's sdcor scale and the maps between sdcor and θ."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mesostats.mixed.design import lower_triangle_indices

if TYPE_CHECKING:
    from mesostats.mixed.design import MixedDesign


CONFINT_COLUMNS = [
    "parameter",
    "group",
    "var1",
    "var2",
    "kind",
    "estimate",
    "ci_lower",
    "ci_upper",
    "level",
    "method",
]
_COR_LIMIT = 1.0 - 1e-10
_MAX_GRID = 60


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class VarianceParameter:
    """One variance parameter on lme4's ``sdcor`` scale.

    Attributes
    ----------
    name : str
        lme4's name: ``.sig01``, ``.sig02``, … in θ order, ``.sigma`` for the residual SD.
    group : str
        Grouping factor (``"Residual"`` for σ).
    var1, var2 : str or None
        Random-effect column(s): ``var2`` is set for a correlation.
    kind : {"sd", "cor", "sigma"}
    term, row, col : int
        Design term and position in its covariance matrix (−1 for σ).
    """

    name: str
    group: str
    var1: str | None
    var2: str | None
    kind: str
    term: int
    row: int
    col: int

    @property
    def label(self) -> str:
        """Readable label: ``sd(Intercept | Subject)``, ``cor(Intercept, Days | Subject)``."""
        if self.kind == "sigma":
            return "sd(Residual)"
        if self.kind == "cor":
            return f"cor({self.var1}, {self.var2} | {self.group})"
        return f"sd({self.var1} | {self.group})"


def variance_parameters(design: MixedDesign, family: str) -> tuple[VarianceParameter, ...]:
    """The ``sdcor`` parameters of a design in lme4's order (θ order, then σ for an LMM)."""

    out: list[VarianceParameter] = []
    k = 0
    for t, term in enumerate(design.terms):
        rows, cols = lower_triangle_indices(term.q)
        for r, c in zip(rows, cols, strict=True):
            k += 1
            name = f".sig{k:02d}"
            if r == c:
                out.append(VarianceParameter(name, term.group, term.names[r], None, "sd", t, r, c))
            else:  # var1/var2 as in variance_components: the earlier column first
                out.append(
                    VarianceParameter(
                        name, term.group, term.names[c], term.names[r], "cor", t, int(r), int(c)
                    )
                )
    if family == "gaussian":
        out.append(VarianceParameter(".sigma", "Residual", None, None, "sigma", -1, -1, -1))
    return tuple(out)


def _psd_cholesky(R: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite correlation matrix (zero pivots kept).

    q is the number of random effects per group (1–3 in practice), so a plain loop is fine.
    Returns None when R is not positive semi-definite.
    """
    q = R.shape[0]
    L = np.zeros_like(R)
    for j in range(q):
        d = R[j, j] - float(L[j, :j] @ L[j, :j])
        if d < -1e-12:
            return None
        d = math.sqrt(max(d, 0.0))
        L[j, j] = d
        for i in range(j + 1, q):
            s = R[i, j] - float(L[i, :j] @ L[j, :j])
            if d > 1e-14:
                L[i, j] = s / d
            elif abs(s) > 1e-9:
                return None
    return L


def sdcor_from_theta(
    design: MixedDesign, theta: np.ndarray, sigma: float, family: str
) -> np.ndarray:
    """θ and σ → the ``sdcor`` vector (SDs and correlations in θ order, then σ for an LMM).

    A correlation with an SD of 0 is undefined; it is reported as 0.
    """
    params = variance_parameters(design, family)
    out = np.zeros(len(params))
    blocks = design.lambda_blocks(np.asarray(theta, dtype=float))
    covs = [sigma**2 * lam @ lam.T for lam in blocks]
    for k, par in enumerate(params):
        if par.kind == "sigma":
            out[k] = sigma
            continue
        cov = covs[par.term]
        if par.kind == "sd":
            out[k] = math.sqrt(max(cov[par.row, par.row], 0.0))
        else:
            denom = math.sqrt(max(cov[par.row, par.row], 0.0) * max(cov[par.col, par.col], 0.0))
            out[k] = float(np.clip(cov[par.row, par.col] / denom, -1.0, 1.0)) if denom > 0 else 0.0
    return out


def theta_from_sdcor(
    design: MixedDesign, phi: np.ndarray, family: str
) -> tuple[np.ndarray, float] | None:
    """``sdcor`` vector → (θ, σ): Λ_t = diag(sd)·chol(R)/σ per term (lme4's ``Sv_to_Cv``).

    Returns None when a term's correlation matrix is not positive semi-definite.
    """
    return _SdcorMap(design, family).theta(np.asarray(phi, dtype=float))


def _sdcor_bounds(
    params: Sequence[VarianceParameter], phi: np.ndarray, sigma_ref: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lower, upper, scale = [], [], []
    for par, value in zip(params, phi, strict=True):
        if par.kind == "cor":
            lower.append(-_COR_LIMIT)
            upper.append(_COR_LIMIT)
            scale.append(0.5)
        elif par.kind == "sigma":
            lower.append(1e-4 * max(value, 1e-300))
            upper.append(np.inf)
            scale.append(max(value, 1e-8))
        else:
            lower.append(0.0)
            upper.append(np.inf)
            scale.append(max(abs(value), 0.05 * sigma_ref))
    return np.array(lower), np.array(upper), np.array(scale)


class _SdcorMap:
    """φ (SDs, correlations, σ) → θ, Λ_t = diag(sd)·chol(R)/σ per term, with its Jacobian.

    The structure (which φ entries feed which term) is computed once; the Jacobian is
    analytic: ∂Λ/∂sd_i = e_i e_iᵀC/σ, ∂Λ/∂σ = −Λ/σ and, for a correlation, the derivative of
    the Cholesky factor dC = C·Φ(C⁻¹ dR C⁻ᵀ) (Φ = lower triangle with half the diagonal;
    Murray 2016, "Differentiation of the Cholesky decomposition", arXiv:1602.07527).
    """

    def __init__(self, design: MixedDesign, family: str) -> None:

        self.design = design
        self.family = family
        self.params = variance_parameters(design, family)
        self.gaussian = family == "gaussian"
        self.n_theta = design.n_theta
        self.blocks: list[
            tuple[int, slice, np.ndarray, np.ndarray, list[tuple[int, int, int]]]
        ] = []
        k = 0
        for term, sl in zip(design.terms, design.theta_slices, strict=True):
            rows, cols = lower_triangle_indices(term.q)
            entries = []
            for j in range(term.n_theta):
                par = self.params[k + j]
                entries.append((k + j, par.row, par.col))
            self.blocks.append((term.q, sl, rows, cols, entries))
            k += term.n_theta

    def _factors(self, phi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
        """Per term (sd, C = chol(R), R); None when some R is not positive semi-definite."""
        out = []
        for q, _sl, _rows, _cols, entries in self.blocks:
            sd = np.zeros(q)
            R = np.eye(q)
            for idx, r, c in entries:
                if r == c:
                    sd[r] = phi[idx]
                else:
                    R[r, c] = R[c, r] = phi[idx]
            C = _psd_cholesky(R)
            if C is None:
                return None
            out.append((sd, C, R))
        return out

    def theta(self, phi: np.ndarray) -> tuple[np.ndarray, float] | None:
        """θ and σ for φ (None when a correlation matrix is not positive semi-definite)."""
        sigma = float(phi[-1]) if self.gaussian else 1.0
        factors = self._factors(phi)
        if factors is None:
            return None
        theta = np.zeros(self.n_theta)
        for (_q, sl, rows, cols, _e), (sd, C, _R) in zip(self.blocks, factors, strict=True):
            theta[sl] = ((sd[:, None] * C) / sigma)[rows, cols]
        return theta, sigma

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """∂θ/∂φ, shape (n_theta, len(φ))."""
        sigma = float(phi[-1]) if self.gaussian else 1.0
        J = np.zeros((self.n_theta, len(phi)))
        factors = self._factors(phi)
        if factors is None:
            return J
        for (q, sl, rows, cols, entries), (sd, C, _R) in zip(self.blocks, factors, strict=True):
            lam = (sd[:, None] * C) / sigma
            if self.gaussian:
                J[sl, -1] = -lam[rows, cols] / sigma
            try:
                Cinv = np.linalg.inv(C) if q > 1 else None
            except np.linalg.LinAlgError:
                Cinv = None
            for idx, r, c in entries:
                if r == c:
                    d = np.zeros((q, q))
                    d[r] = C[r] / sigma
                    J[sl, idx] = d[rows, cols]
                    continue
                if Cinv is None or not np.all(np.isfinite(Cinv)):
                    continue
                dR = np.zeros((q, q))
                dR[r, c] = dR[c, r] = 1.0
                inner = Cinv @ dR @ Cinv.T
                phi_l = np.tril(inner)
                phi_l[np.diag_indices(q)] *= 0.5
                dC = C @ phi_l
                J[sl, idx] = ((sd[:, None] * dC) / sigma)[rows, cols]
        return J
