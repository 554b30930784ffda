"""One record of how a mixed-model fit was optimised (MixedModels.jl's ``OptSummary``).

Both engines fill an :class:`OptSummary`; ``MixedResults.optimizer_info`` is its
:meth:`OptSummary.as_dict`. The common keys: ``method`` (optimiser), ``n_evaluations``
(objective evaluations, gradient included), ``gradient`` (at the optimum, in the engine's
parameters: θ for the LMM, (β, θ) for the GLMM), ``newton_decrement`` (gᵀH⁻¹g/2 on the free
coordinates: the deviance or log-likelihood still to gain), ``factorisation`` (how
ΛᵀZᵀWZΛ + I was factorised: see below) and ``seconds``; engine-specific entries follow
(GLMM: ``n_quasi_newton_evaluations``, ``glm_loglik``, ``separation``).

``factorisation``: "block-diagonal" (one grouping factor), "dense Schur", "pairs Schur" or
"sparse Schur" (LMM with several factors: how the further factors' Schur complement is
held, see ``mixed.lmm.rest``), "scalar" (GLMM with one scalar random effect: per-level
Laplace or quadrature), "dense Schur" or "sparse" (other GLMMs, see ``mixed.laplace``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["OptSummary"]


@dataclass(frozen=True)
class OptSummary:
    """How a fit was optimised; see the module docstring for the fields."""

    method: str
    n_evaluations: int
    gradient: np.ndarray
    newton_decrement: float | None
    factorisation: str
    seconds: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The record as ``MixedResults.optimizer_info`` shows it (details merged in)."""
        out: dict[str, Any] = {
            "method": self.method,
            "n_evaluations": int(self.n_evaluations),
            "gradient": np.asarray(self.gradient, dtype=float).tolist(),
            "newton_decrement": self.newton_decrement,
            "factorisation": self.factorisation,
            "seconds": float(self.seconds),
        }
        out.update(self.details)
        return out
