"""Links of a cumulative link model: the latent distribution F and its derivatives.

P(Y ≤ j) = F(θ_j − η) (Agresti 2010, *Analysis of Ordinal Categorical Data*, 2nd ed., ch. 5;
Christensen 2019, *Cumulative link models for ordinal regression with the R package ordinal*,
§2). ``logit``: logistic F; ``probit``: standard normal; ``cloglog``: F(x) = 1 − exp(−eˣ)
(Gumbel minimum). Each link gives F, its survival S = 1 − F computed without cancellation,
the density f and its first two derivatives f′, f″ (needed for the exact gradient of the
Laplace / quadrature log-likelihood), all from one pass (logit: one exponential), and F⁻¹
for starting values. The outer thresholds ±∞ are carried as ±:data:`INFINITY` (1e4), where
F ∈ {0, 1} and f = f′ = f″ = 0 exactly.

Why hand-written: scipy.stats has F and f but not f′ and f″ in vectorised form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from mesostats.exceptions import ModelSpecError

__all__ = ["INFINITY", "LINKS", "Link", "get_link"]

FloatArray = np.ndarray


#: stands in for ±∞ (the outer thresholds): F, S and every density are exactly 0 or 1 there
#: and no operation overflows (cloglog arguments are clipped at 700 first).
INFINITY = 1e4


@dataclass(frozen=True)
class Link:
    """One cumulative link: its name and vectorised F, S, f, f′, f″, F⁻¹."""

    name: str

    def cdf(self, x: FloatArray) -> FloatArray:
        """F(x)."""
        return self.values(np.asarray(x, dtype=float), 0)[0]

    def sf(self, x: FloatArray) -> FloatArray:
        """S(x) = 1 − F(x), accurate in the upper tail."""
        return self.values(np.asarray(x, dtype=float), 0)[1]

    def values(self, x: FloatArray, order: int) -> list[FloatArray]:
        """[F, S, f, f′, f″][: 2 + order] at x (``order`` densities), one pass per link.

        ±∞ must be given as ±:data:`INFINITY` (the engines' convention).
        """
        if self.name == "logit":
            e = np.exp(-np.abs(x))
            inv = 1.0 / (1.0 + e)
            big = inv
            small = e * inv
            pos = x >= 0
            F = np.where(pos, big, small)
            S = np.where(pos, small, big)
            out = [F, S]
            if order >= 1:
                f = big * small
                out.append(f)
                m = S - F
                if order >= 2:
                    out.append(f * m)
                if order >= 3:
                    out.append(f * (m * m - 2.0 * f))
            return out
        if self.name == "probit":
            out = [special.ndtr(x), special.ndtr(-x)]
            if order >= 1:
                f = np.exp(-0.5 * x * x) * _INV_SQRT_2PI
                out.append(f)
                if order >= 2:
                    out.append(-x * f)
                if order >= 3:
                    out.append((x * x - 1.0) * f)
            return out
        xc = np.minimum(x, 700.0)
        e = np.exp(xc)
        S = np.exp(-e)
        out = [-np.expm1(-e), S]
        if order >= 1:
            f = e * S
            out.append(f)
            m = 1.0 - e
            if order >= 2:
                out.append(f * m)
            if order >= 3:
                out.append((f * m) * m - f * e)
        return out

    def densities(self, x: FloatArray, order: int) -> list[FloatArray]:
        """[f, f′, f″][:order] at x (zero where x is ±∞)."""
        x = np.clip(np.asarray(x, dtype=float), -INFINITY, INFINITY)
        return self.values(x, order)[2:]

    def quantile(self, p: FloatArray) -> FloatArray:
        """F⁻¹(p)."""
        if self.name == "logit":
            return np.asarray(special.logit(p))
        if self.name == "probit":
            return np.asarray(special.ndtri(p))
        return np.asarray(np.log(-np.log1p(-p)))


_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


LINKS = ("logit", "probit", "cloglog")


def get_link(name: str) -> Link:
    """The :class:`Link` called ``name`` (a clear error otherwise)."""
    if name not in LINKS:
        raise ModelSpecError(f"link must be one of {', '.join(map(repr, LINKS))}, got {name!r}.")
    return Link(name)
