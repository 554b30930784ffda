"""Graded outcomes of a simulated study from stated cumulative-link truths.

**Worst side-effect severity per assessed injection session** (none < mild < moderate <
severe): a cumulative-logit model with a random intercept per person (Hedeker & Gibbons 1994,
*Biometrics* 50(4)),

    P(worst ≤ j) = logistic(θ_j − xᵀβ − v),   v ~ N(0, event_sd²),

with β = ``event_log_or`` (ingredient indicators x), v the person's event effect and
θ = (−event_intercept, −event_intercept + s₁, −event_intercept + s₂), s = ``severity_cuts``
(the spacings above the any-event threshold). Its first cut is the any-event model
(P(worst ≥ mild) = logistic(event_intercept + xᵀβ + v)), and the grade is read off the same
uniform draw U as the event indicator: worst ≥ grade k iff U < logistic(η − s_k), so the
event indicator is unchanged and the grade follows the model exactly.

**Global photographic assessment** (−3 … +3): the rater sees the person's true change in
density Δ (hairs/cm²) in points, Δ / h (h = ``gpa.hairs_per_point``), plus a normal error of
SD σ = ``gpa.rater_sd``, and rounds to the nearest point within ±3; so

    P(GPA ≤ j) = Φ(θ_j − γ Δ),   θ_j = (j + ½)/σ,  γ = 1/(h σ),   j = −3 … 2,

a cumulative-probit model in Δ (McCullagh 1980, *JRSS B* 42(2)).
``truth["ordinal_truth"]`` states both models in clm's terms.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import special

__all__ = ["gpa_scores", "ordinal_truth", "worst_grades"]

SEVERITY_GRADES = ("none", "mild", "moderate", "severe")
GPA_GRADES = ("-3", "-2", "-1", "0", "+1", "+2", "+3")


def _spacings(params: Mapping[str, Any]) -> np.ndarray:
    cuts = params["severity_cuts"]
    return np.array([0.0, float(cuts["mild|moderate"]), float(cuts["moderate|severe"])])


def worst_grades(u: np.ndarray, eta: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Worst grade code (0 none … 3 severe) per session from the event draw's uniforms
    ``u`` (n, k) and the person's any-event log-odds ``eta`` (n,)."""
    s = _spacings(params)
    p_at_least = special.expit(eta[:, None, None] - s[None, None, :])  # (n, 1, 3)
    return np.asarray((u[:, :, None] < p_at_least).sum(axis=2), dtype=np.int64)


def gpa_scores(change_true: np.ndarray, z: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """GPA (−3 … 3) from the true change and standard-normal rater draws ``z``."""
    g = params["gpa"]
    latent = change_true / float(g["hairs_per_point"]) + float(g["rater_sd"]) * z
    return np.clip(np.rint(latent), -3, 3)


def ordinal_truth(params: Mapping[str, Any]) -> dict[str, Any]:
    """The two cumulative-link truths in clm's convention P(Y ≤ j) = F(θ_j − η)."""
    s = _spacings(params)
    base = -float(params["event_intercept"])
    scale = float(params["gpa"]["rater_sd"])
    h = float(params["gpa"]["hairs_per_point"])
    gpa_cuts = {
        f"{lo}|{hi}": (j + 0.5) / scale if scale > 0 else math.inf
        for j, (lo, hi) in enumerate(itertools.pairwise(GPA_GRADES), -3)
    }
    return {
        "severity": {
            "response": "worst severity per assessed injection session (any event)",
            "link": "logit",
            "thresholds": {
                f"{lo}|{hi}": base + float(sk)
                for lo, hi, sk in zip(SEVERITY_GRADES[:-1], SEVERITY_GRADES[1:], s, strict=True)
            },
            "log_or": dict(params["event_log_or"]),
            "subject_sd": float(params["event_sd"]),
        },
        "gpa": {
            "response": "gpa_score given the true change in density Δ (hairs/cm²)",
            "link": "probit",
            "thresholds": gpa_cuts,
            "per_hair": 1.0 / (h * scale) if scale > 0 else math.inf,
        },
    }
