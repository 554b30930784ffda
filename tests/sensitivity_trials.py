"""A simulated trial with a known truth and missing-at-random dropout, for the sensitivity
tests: the change from baseline follows the primary MMRM exactly,

    chg_iv = μ_{arm(i), v} + γ (baseline_i − mean baseline) + e_iv,   e_i ~ N(0, Σ),

with an AR(1)-like Σ (SD growing over visits), and people leave after a visit with a
probability that falls with their last observed change (monotone dropout, MAR: it depends on
observed values only)."""

from __future__ import annotations

from typing import Any

import numpy as np

import mesostats as ms
from mesostats.data.study import Study
from mesostats.simulate import DEFAULT_COCKTAILS

#: True difference to the control at the last visit, growing linearly over the visits.
EFFECT_AT_END = {"P": 0.0, "A": 6.0, "B": 3.0, "C": 9.0}
GAMMA = 0.1


def mar_trial(
    n_subjects: int,
    n_visits: int = 5,
    *,
    seed: int = 0,
    dropout: float = 0.12,
    cocktails: tuple[str, ...] | None = None,
) -> tuple[Study, dict[str, Any]]:
    """(study, truth): ``truth`` holds ``effects`` {cocktail: {visit: Δ}} and ``sigma``.
    ``cocktails`` picks arms of the simulator's default four (P, A, B, C; P the control)."""
    recipes = None if cocktails is None else {c: DEFAULT_COCKTAILS[c] for c in cocktails}
    base = ms.simulate_study(
        n_subjects,
        n_visits,
        seed=seed,
        dropout=0.0,
        missing_rate=0.0,
        n_sites=1,
        cocktails=recipes,
    )
    rng = np.random.default_rng(seed + 1)
    s = base.sessions.copy()
    visits = np.arange(2, n_visits + 1)
    V = visits.size
    sd = np.linspace(4.0, 6.0, V)
    corr = 0.6 ** np.abs(np.subtract.outer(np.arange(V), np.arange(V)))
    sigma = corr * np.outer(sd, sd)
    people = base.subjects["subject_id"].astype(str).to_numpy()
    arm = base.subjects["arm"].astype(str).to_numpy()
    bl = s[s["baseline_flag"].astype(bool)].set_index("subject_id")["hair_density"]
    baseline = bl.reindex(people).to_numpy(dtype=float)
    frac = (visits - 1) / (n_visits - 1)
    placebo = 1.0 * frac
    mean = placebo[None, :] + np.array([EFFECT_AT_END[a] for a in arm])[:, None] * frac[None, :]
    mean = mean + GAMMA * (baseline - baseline.mean())[:, None]
    chg = mean + rng.standard_normal((people.size, V)) @ np.linalg.cholesky(sigma).T
    # MAR dropout after each visit but the last, more likely after a low change
    keep = np.ones_like(chg, dtype=bool)
    for j in range(1, V):
        resid = chg[:, j - 1] - mean[:, j - 1]
        p = 1.0 / (1.0 + np.exp(-(np.log(dropout / (1 - dropout)) - 0.4 * resid)))
        keep[:, j] = keep[:, j - 1] & (rng.random(people.size) >= p)
    value = baseline[:, None] + chg
    value[~keep] = np.nan
    row_of = {
        (p, v): i
        for i, (p, v) in enumerate(zip(people.repeat(V), np.tile(visits, people.size), strict=True))
    }
    key = list(zip(s["subject_id"].astype(str), s["visit"].astype(int), strict=True))
    post = s["visit"].astype(int).to_numpy() > 1
    idx = np.array([row_of.get(k, -1) for k in key])
    flat = value.reshape(-1)
    s.loc[post, "hair_density"] = np.round(flat[idx[post]], 6)
    tables = {
        "subjects": base.subjects,
        "cocktails": base.cocktails,
        "sessions": s,
        "adverse_events": base.adverse_events,
    }
    study = Study.from_tables(tables, base.schema, source="mar_trial")
    effects = {
        a: dict(zip(visits.tolist(), (e * frac).tolist(), strict=True))
        for a, e in EFFECT_AT_END.items()
        if cocktails is None or a in cocktails
    }
    return study, {"effects": effects, "sigma": sigma, "kept": keep, "arm": arm}
