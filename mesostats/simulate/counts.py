"""Hair counts in the target area drawn from a negative-binomial (NB2) truth.

Given a visit's hair density (hairs/cm²) and the target area (cm²), the count of hairs read in
that area is drawn as a gamma–Poisson mixture with mean ``μ = density × area`` and dispersion
``k`` (``truth["hair_count_dispersion"]``): ``λ ~ Gamma(k, μ/k)``, ``count ~ Poisson(λ)``, so
``Var = μ + μ²/k`` (NB2; Hilbe 2011, *Negative Binomial Regression*, §5.2). The counting noise
(reading error, the area's placement) comes on top of the density's own measurement noise;
``k = None`` gives the rounded expected count ``rint(μ)`` (no counting noise).

The draws come from a child generator spawned from the secondary outcomes' generator
(``Generator.spawn``), which leaves that generator's stream, and so every other simulated
outcome, unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_HAIR_COUNT_DISPERSION", "draw_hair_counts"]

#: NB2 dispersion of the hair counts around density × area (CV of the counting noise ≈ 1/√k
#: for large counts: about 16 % at k = 40).
DEFAULT_HAIR_COUNT_DISPERSION = 40.0


def draw_hair_counts(
    expected: np.ndarray, dispersion: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Counts with mean ``expected`` (non-finite entries stay NaN) and NB2 ``dispersion``."""
    mu = np.asarray(expected, dtype=float)
    finite = np.isfinite(mu)
    if dispersion is None:
        return np.where(finite, np.rint(mu), np.nan)
    child = rng.spawn(1)[0]
    safe = np.where(finite, np.maximum(mu, 0.0), 0.0)
    k = float(dispersion)
    counts = child.poisson(child.gamma(k, safe / k)).astype(float)
    return np.where(finite, counts, np.nan)
