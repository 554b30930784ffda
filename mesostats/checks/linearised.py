"""The fitted mixed model linearised per person: what the influence and the calibrated
person-effect test share.

For person i (the grouping factor with the most levels) the rows follow, at the fit,

    e_i = A_i u_i + ε_i,   u_i ~ N(0, I),   ε_i ~ N(0, D_i),

with A = ZΛ (times σ for an LMM) over the person's random-effect terms and e the residual
from the fixed part and the other grouping factors' modes (held fixed). For an LMM this is
the model itself (D = σ²/w); for a GLMM it is the last penalised-IRLS step of the fit
(Breslow & Clayton 1993, *JASA* 88:9): working residual e = (η − η_fixed) + (y − μ)/μ' and
D = 1/(w μ') on the link scale, canonical links. Then the conditional mode is the linear
map û_i = (I + A_iᵀD_i⁻¹A_i)⁻¹A_iᵀD_i⁻¹e_i (at the fit's modes it is their fixed point), and
Woodbury's identity gives V_i⁻¹ = D_i⁻¹ − D_i⁻¹A_i(I + A_iᵀD_i⁻¹A_i)⁻¹A_iᵀD_i⁻¹ without
forming V_i. Per-person sums are one sparse product over all rows (no loop over persons).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, sparse

from mesostats.mixed.results import MixedResults

__all__ = ["LinearisedModel", "linearise"]


@dataclass(frozen=True, eq=False)
class LinearisedModel:
    """See the module docstring. Arrays over the fitted rows unless said."""

    levels: pd.Index
    X: np.ndarray
    A: np.ndarray
    d_inv: np.ndarray
    base: np.ndarray
    slope: np.ndarray | None
    mu: np.ndarray | None
    offset: np.ndarray  # η − base, the person's part of η at the fit (GLMM)
    sums: sparse.csr_matrix
    M: np.ndarray
    factor: np.ndarray

    def working_residual(self, y: np.ndarray) -> np.ndarray:
        """e for responses ``y`` (rows,) or (rows, n) on the design's scale."""
        y = np.asarray(y, dtype=float)
        col = (slice(None),) + (None,) * (y.ndim - 1)
        if self.slope is None or self.mu is None:
            return y - self.base[col]
        return self.offset[col] + (y - self.mu[col]) / self.slope[col]

    def per_person(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Σ_rows of person i of left_r D⁻¹ right_rᵀ: (persons, a, b) for (rows, a), (rows, b)."""
        prod = (left * self.d_inv[:, None])[:, :, None] * right[:, None, :]
        flat = self.sums @ prod.reshape(left.shape[0], -1)
        return np.asarray(flat).reshape(self.sums.shape[0], left.shape[1], right.shape[1])

    def modes(self, y: np.ndarray) -> np.ndarray:
        """Person effects b̂ = F û (persons, q, n) for responses ``y`` (rows, n)."""
        e = self.working_residual(y)
        Ae = self.per_person(self.A, e)  # (persons, q, n)
        u = np.linalg.solve(self.M, Ae)
        return np.einsum("ab,kbn->kan", self.factor, u)


def linearise(model: MixedResults) -> LinearisedModel:
    """The person-level linearisation of a fitted LMM/GLMM (module docstring)."""
    design = model.design
    group = design.terms[0].group
    person = [i for i, t in enumerate(design.terms) if t.group == group]
    lambdas = design.lambda_blocks(np.asarray(model.theta))
    scale = model.sigma if model.family == "gaussian" else 1.0
    eta = np.asarray(model.predict(scale="link").to_numpy(), dtype=float)
    base = np.asarray(model.predict(include_random=False, scale="link").to_numpy(), dtype=float)
    for i, (term, b) in enumerate(zip(design.terms, model._modes, strict=True)):
        if i not in person:
            base = base + np.einsum("ij,ij->i", term.Z, b[term.codes])
    w = np.asarray(design.prior_weights, dtype=float)
    slope: np.ndarray | None = None
    mu: np.ndarray | None = None
    if model.family == "gaussian":
        d_inv = w / model.sigma**2
    else:
        mu = np.asarray(model.fitted.to_numpy(), dtype=float)
        slope = np.maximum(mu * (1.0 - mu) if model.family == "binomial" else mu, 1e-12)
        d_inv = w * slope
    factor = linalg.block_diag(*[scale * lambdas[i] for i in person])
    A = np.concatenate([design.terms[i].Z for i in person], axis=1) @ factor
    codes = design.terms[0].codes
    levels = design.terms[0].levels
    sums = sparse.csr_matrix(
        (np.ones(design.n), (codes, np.arange(design.n))), shape=(len(levels), design.n)
    )
    partial = LinearisedModel(
        levels=levels,
        X=design.X,
        A=A,
        d_inv=d_inv,
        base=base,
        slope=slope,
        mu=mu,
        offset=eta - base,
        sums=sums,
        M=np.zeros((len(levels), A.shape[1], A.shape[1])),
        factor=factor,
    )
    M = np.eye(A.shape[1])[None] + partial.per_person(A, A)
    object.__setattr__(partial, "M", M)
    return partial
