"""The response families of the mixed models: their links and inverse links.

``gaussian`` (identity; :func:`mesostats.fit_lmm`), ``binomial`` (logit), ``poisson`` (log)
and ``negative_binomial`` (NB2, log; :mod:`mesostats.mixed.glmm.negbin`) of
:func:`mesostats.fit_glmm` (McCullagh & Nelder 1989, *Generalized Linear Models*, ch. 2).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["LINKS", "inverse_link"]

#: family → link function
LINKS = {
    "gaussian": "identity",
    "binomial": "logit",
    "poisson": "log",
    "negative_binomial": "log",
}


def inverse_link(family: str, eta: np.ndarray) -> np.ndarray:
    """The mean μ(η) of the family's link."""
    if family == "binomial":
        return np.asarray(stats.logistic.cdf(eta))
    if LINKS.get(family) == "log":
        return np.exp(eta)
    return eta
