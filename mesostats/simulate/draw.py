"""The draw of a simulated study: visits with dropout, regrowth trajectories and side
effects, from the parameters (:func:`simulate_tables`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mesostats.mixed.simulation import draw_family, draw_random_effects
from mesostats.simulate.design import (
    _check_design,
    _draw_subjects,
    _followup_count,
    _logistic,
    _nominal_schedule,
)
from mesostats.simulate.ordinal import ordinal_truth, worst_grades
from mesostats.simulate.parameters import (
    DEFAULT_DROPOUT,
    DEFAULT_MISSING_RATE,
    _active_ingredients,
    _resolve_parameters,
)
from mesostats.simulate.tables import (
    _adverse_events,
    _cocktails_table,
    _secondary_outcomes,
    _seed_record,
    _sessions_table,
    _strings,
    _subjects_table,
)


def simulate_tables(
    n_subjects: int = 120,
    n_sessions: int = 8,
    *,
    seed: int | np.random.SeedSequence = 0,
    effects: Mapping[str, Any] | None = None,
    n_sites: int = 3,
    cocktails: Mapping[str, Any] | pd.DataFrame | None = None,
    dropout: float = DEFAULT_DROPOUT,
    missing_rate: float = DEFAULT_MISSING_RATE,
    n_followup: int | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Draw the four tables of a mesotherapy study from a known model.

    The models (random-coefficients regrowth, logistic-normal side effects, stratified block
    randomisation, monotone dropout) are described in the module docstring of
    :mod:`mesostats.simulate`.

    Parameters
    ----------
    n_subjects : int
        Number of randomised subjects.
    n_sessions : int
        Visits per subject (rows of the sessions table before dropout); the last
        ``n_followup`` are follow-up visits without injection.
    seed : int or numpy.random.SeedSequence
        Seed of a :class:`numpy.random.SeedSequence`; the same seed gives identical tables.
        Independent child streams draw the design, the regrowth and the side effects, so
        changing a side-effect parameter leaves the regrowth draws unchanged.
    effects : dict, optional
        True values overriding the defaults, with the keys of ``truth`` (nested dicts such as
        ``ingredient_slopes`` are merged key by key), e.g.
        ``{"ingredient_slopes": {"minoxidil": 0.5}, "slope_sd": 1.0}``.
    n_sites : int
        Number of sites; subjects are spread unevenly over them.
    cocktails : dict or pandas.DataFrame, optional
        Recipes ``{cocktail_id: {ingredient: (concentration, unit)}}`` or a table with
        columns ``cocktail_id, ingredient, concentration, unit``. Default
        :data:`DEFAULT_COCKTAILS` (saline placebo P; A = minoxidil + biotin;
        B = dutasteride + biotin; C = minoxidil + dutasteride + biotin).
    dropout : float
        Per-visit hazard of leaving the study (monotone dropout), in [0, 1).
    missing_rate : float
        Probability that a post-baseline measurement is missing (completely at random).
    n_followup : int, optional
        Follow-up visits without injection; default 2 when ``n_sessions >= 6``, 1 when
        ``n_sessions >= 4``, else 0.

    Returns
    -------
    tables : dict of str to pandas.DataFrame
        ``subjects``, ``cocktails``, ``sessions``, ``adverse_events`` in the table contract.
    truth : dict
        Every true value used. Top-level keys: ``seed, n_subjects, n_sessions, n_followup,
        n_sites`` (design), then the parameters ``cocktails`` (recipes
        ``{id: {ingredient: {"concentration", "unit"}}}``), ``intercept_mean,
        intercept_sd, slope_placebo, slope_sd, intercept_slope_corr, residual_sd,
        ingredient_slopes`` ({ingredient: extra hairs/cm²/week}), ``event_intercept``
        (logit), ``event_sd``, ``event_log_or`` ({ingredient: log OR}),
        ``severity_cuts`` (spacings of the severity thresholds), ``dropout,
        missing_rate, unassessed_rate, extra_event_prob, event_terms, allergy,
        site_weight_concentration, volume_ml, target_area_cm2, shaft_diameter, anagen,
        terminal_share, gpa, pain_vas`` (secondary outcomes), and the realised values
        ``n_clipped`` ({outcome: count}), ``visit_days`` (nominal days),
        ``ordinal_truth`` (the severity and GPA cumulative-logit models: thresholds, log
        odds ratios / per-hair slope, in ordinal::clm's convention) and
        ``subject_effects`` (DataFrame: ``subject_id, site, cocktail_id, u0, u1, v, slope,
        n_visits``; ``slope`` is the subject's total true slope).

    Raises
    ------
    ModelSpecError
        Unknown or invalid keys in ``effects``, bad recipes or design settings.

    Examples
    --------
    >>> tables, truth = simulate_tables(30, 6, seed=1)
    >>> sorted(tables)
    ['adverse_events', 'cocktails', 'sessions', 'subjects']
    >>> truth["ingredient_slopes"]
    {'biotin': 0.1, 'dutasteride': 1.0, 'minoxidil': 1.2}
    """
    tables, truth, _ = _draw_tables(
        n_subjects,
        n_sessions,
        seed=seed,
        effects=effects,
        n_sites=n_sites,
        cocktails=cocktails,
        dropout=dropout,
        missing_rate=missing_rate,
        n_followup=n_followup,
    )
    return tables, truth


def _draw_tables(
    n_subjects: int = 120,
    n_sessions: int = 8,
    *,
    seed: int | np.random.SeedSequence = 0,
    effects: Mapping[str, Any] | None = None,
    n_sites: int = 3,
    cocktails: Mapping[str, Any] | pd.DataFrame | None = None,
    dropout: float = DEFAULT_DROPOUT,
    missing_rate: float = DEFAULT_MISSING_RATE,
    n_followup: int | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], np.ndarray]:
    """:func:`simulate_tables`, also returning each adverse event's sessions-table row
    (int64, -1 for none): what :class:`~mesostats.data.study.Study` would find by matching
    the keys, known here by construction (the trusted path of power trials passes it on)."""
    n_followup = _followup_count(n_sessions, n_followup)
    _check_design(n_subjects, n_sessions, n_followup, n_sites, seed)
    params = _resolve_parameters(cocktails, dropout, missing_rate, effects)
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng_design, rng_regrowth, rng_events, rng_secondary = (
        np.random.default_rng(s) for s in seq.spawn(4)
    )
    recipes = params["cocktails"]
    cocktail_ids = list(recipes)
    active = _active_ingredients(recipes)
    x_cocktail = np.array(
        [[1.0 if ing in recipes[c] else 0.0 for ing in active] for c in cocktail_ids]
    ).reshape(len(cocktail_ids), len(active))

    subj = _draw_subjects(int(n_subjects), n_sites, len(cocktail_ids), params, rng_design)
    x = x_cocktail[subj["arm"]]  # (n, n_active): ingredients of each subject's course
    grid = _draw_visits(int(n_subjects), int(n_sessions), n_followup, params, rng_design)
    regrowth = _draw_regrowth(x, active, grid, params, rng_regrowth)
    secondary = _secondary_outcomes(
        regrowth["density"], regrowth["change_true"], x, active, subj, grid, params, rng_secondary
    )
    events = _draw_any_event(x, active, grid, params, rng_events)

    cid_arr = np.asarray(cocktail_ids, dtype=object)
    adverse_events, event_cells = _adverse_events(
        events["any_event"],
        subj,
        cocktail_ids,
        recipes,
        params,
        rng_events,
        events["worst_grade"],
    )
    tables = {
        "subjects": _subjects_table(subj, cid_arr),
        "cocktails": _cocktails_table(recipes),
        "sessions": _sessions_table(subj, cid_arr, grid, regrowth, secondary, events),
        "adverse_events": adverse_events,
    }
    # each event's sessions-table row: events happen at attended sessions, which are the
    # table's rows in subject × visit order
    attended = grid["attended"].ravel()
    session_row = np.cumsum(attended) - 1
    event_rows = np.where(attended[event_cells], session_row[event_cells], -1).astype(np.int64)
    truth: dict[str, Any] = {
        "seed": _seed_record(seed),
        "n_subjects": int(n_subjects),
        "n_sessions": int(n_sessions),
        "n_followup": n_followup,
        "n_sites": int(n_sites),
        **params,
        "n_clipped": {"hair_density": int(regrowth["clipped"].sum())},
        "visit_days": [int(d) for d in grid["nominal"]],
        "ordinal_truth": ordinal_truth(params),
        "subject_effects": pd.DataFrame(
            {
                "subject_id": _strings(subj["subject_id"]),
                "site": _strings(subj["site_name"]),
                "cocktail_id": _strings(cid_arr[subj["arm"]]),
                "u0": regrowth["u0"],
                "u1": regrowth["u1"],
                "v": events["v"],
                "slope": regrowth["slope"],
                "n_visits": grid["n_visits"],
            }
        ),
    }
    return tables, truth, event_rows


def _draw_visits(
    n: int, k_visits: int, n_followup: int, params: Mapping[str, Any], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Subject × visit grid: jittered study days, monotone dropout (geometric number of
    visits attended), injection visits and injected volumes. Arrays are (n, k_visits)."""
    nominal, jitter = _nominal_schedule(k_visits - n_followup, n_followup)
    day = nominal[None, :] + rng.integers(-jitter, jitter + 1, size=(n, k_visits))
    if params["dropout"] > 0:
        n_visits = np.minimum(k_visits, rng.geometric(params["dropout"], size=n))
    else:
        n_visits = np.full(n, k_visits)
    visit_index = np.broadcast_to(np.arange(k_visits), (n, k_visits))
    vol = params["volume_ml"]
    volume = np.clip(np.round(rng.normal(vol["mean"], vol["sd"], (n, k_visits)), 1), 0.1, 10.0)
    return {
        "nominal": nominal,
        "day": day.astype(np.int64),
        "week": (day - 1) / 7.0,
        "n_visits": n_visits.astype(np.int64),
        "visit_index": visit_index,
        "attended": visit_index < n_visits[:, None],
        "injected": visit_index < k_visits - n_followup,
        "volume": volume,
    }


def _draw_regrowth(
    x: np.ndarray,
    active: list[str],
    grid: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Random-coefficients model of hair density (Laird & Ware 1982), clipped to 0–600, with
    measurements missing completely at random after baseline.

    The person effects and the residuals come from the one simulation path
    (:mod:`mesostats.mixed.simulation`): (u0, u1) = diag(SD)·L_R·z with L_R the Cholesky
    factor of the intercept–slope correlation matrix (:func:`draw_random_effects`), the
    response η + σε (:func:`draw_family`). η is assembled here as intercept + u0 + slope ×
    week because the subject's slope and true change are reported (``truth``, secondary
    outcomes), and in this order a seed draws exactly the study it drew before the
    simulator used the shared path.
    """
    week = grid["week"]
    n, k = week.shape
    sd = np.array([params["intercept_sd"], params["slope_sd"]])
    rho = params["intercept_slope_corr"]
    corr_factor = np.array([[1.0, 0.0], [rho, math.sqrt(max(0.0, 1.0 - rho * rho))]])
    (b,) = draw_random_effects([corr_factor], [n], 1, rng)  # (n, 2, 1)
    u0, u1 = (sd[None, :] * b[:, :, 0]).T
    beta = np.array([params["ingredient_slopes"][ing] for ing in active])
    slope = params["slope_placebo"] + x @ beta + u1
    change_true = slope[:, None] * week
    eta = params["intercept_mean"] + u0[:, None] + change_true
    density = draw_family("gaussian", eta, rng, sigma=params["residual_sd"])
    clipped = grid["attended"] & ((density < 0) | (density > 600))
    missing = (grid["visit_index"] > 0) & (rng.random((n, k)) < params["missing_rate"])
    return {
        "u0": u0,
        "u1": u1,
        "slope": slope,
        "change_true": change_true,
        "density": np.round(np.clip(density, 0.0, 600.0), 1),
        "clipped": clipped,
        "measured": grid["attended"] & ~missing,
    }


def _draw_any_event(
    x: np.ndarray,
    active: list[str],
    grid: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Which injection sessions were assessed, and the logistic-normal any-event indicator
    (Breslow & Clayton 1993) at each assessed session; the person effect v is drawn by
    :func:`mesostats.mixed.simulation.draw_random_effects`."""
    n, k = grid["week"].shape
    assessed = (
        grid["attended"] & grid["injected"] & (rng.random((n, k)) >= params["unassessed_rate"])
    )
    (b,) = draw_random_effects([np.array([[params["event_sd"]]])], [n], 1, rng)  # (n, 1, 1)
    v = b[:, 0, 0]
    log_or = np.array([params["event_log_or"][ing] for ing in active])
    eta = params["event_intercept"] + x @ log_or + v  # a random intercept: Z = 1
    # Bernoulli as a uniform below p, not draw_family's binomial sampler (numpy's inversion
    # maps the uniform to 0/1 differently, and the same uniform gives the worst grade):
    # keeps every seed's side effects as they were
    u = rng.random((n, k))
    any_event = assessed & (u < _logistic(eta)[:, None])
    grade = np.where(any_event, worst_grades(u, eta, params), 0)
    return {"assessed": assessed, "v": v, "any_event": any_event, "worst_grade": grade}
