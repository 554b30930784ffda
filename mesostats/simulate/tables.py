"""From drawn arrays to the four study tables (subjects, cocktails, sessions with secondary
outcomes, adverse events with coded terms and verbatim text)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mesostats.simulate.counts import draw_hair_counts
from mesostats.simulate.design import _logistic, _logit
from mesostats.simulate.ordinal import gpa_scores
from mesostats.simulate.parameters import _RELATED, _SEVERITY, _VERBATIM, _VERBATIM_PLACE


def _sessions_table(
    subj: Mapping[str, np.ndarray],
    cid_arr: np.ndarray,
    grid: Mapping[str, np.ndarray],
    regrowth: Mapping[str, np.ndarray],
    secondary: Mapping[str, np.ndarray],
    events: Mapping[str, np.ndarray],
) -> pd.DataFrame:
    """The long sessions table: one row per attended visit, in subject × visit order."""
    rows = grid["attended"].ravel()
    n, k = grid["day"].shape
    subj_of_row = np.repeat(np.arange(n), k)[rows]
    visit_of_row = np.tile(np.arange(1, k + 1), n)[rows]

    def at_rows(values: np.ndarray, given: np.ndarray) -> np.ndarray:
        return np.where(given.ravel()[rows], values.ravel()[rows], np.nan)

    injected = np.broadcast_to(grid["injected"], (n, k))
    measured = regrowth["measured"]
    cocktail = cid_arr[subj["arm"][subj_of_row]]
    cocktail[~injected.ravel()[rows]] = None
    pain_given = injected & events["assessed"] & secondary["pain_given"]
    return pd.DataFrame(
        {
            "subject_id": _strings(subj["subject_id"][subj_of_row]),
            "visit": visit_of_row.astype(np.int64),
            "day": grid["day"].ravel()[rows],
            "cocktail_id": _strings(cocktail),
            "volume_ml": at_rows(grid["volume"], injected),
            "hair_density": at_rows(regrowth["density"], measured),
            "hair_count": _integers(at_rows(secondary["hair_count"], measured)),
            "target_area_cm2": at_rows(secondary["area"], measured),
            "shaft_diameter_um": at_rows(secondary["shaft"], measured),
            "terminal_density": at_rows(secondary["terminal"], measured),
            "vellus_density": at_rows(secondary["vellus"], measured),
            "anagen_pct": at_rows(secondary["anagen"], measured),
            "gpa_score": _integers(at_rows(secondary["gpa"], secondary["gpa_given"])),
            "pain_vas": at_rows(secondary["pain"], pain_given),
            "reactions_assessed": events["assessed"].ravel()[rows],
            "baseline_flag": visit_of_row == 1,
        }
    )


def _subjects_table(subj: Mapping[str, np.ndarray], cid_arr: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": _strings(subj["subject_id"]),
            "site": _strings(subj["site_name"]),
            "arm": _strings(cid_arr[subj["arm"]]),
            "sex": _strings(subj["sex"]),
            "age": subj["age"],
            "diagnosis": _strings(subj["diagnosis"]),
            "stage": _strings(subj["stage"]),
        }
    )


def _cocktails_table(recipes: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> pd.DataFrame:
    rows = tuple(
        (cid, ing, float(spec["concentration"]), str(spec["unit"]))
        for cid, recipe in recipes.items()
        for ing, spec in recipe.items()
    )
    table = _COCKTAIL_TABLES.get(rows)
    if table is None:
        table = pd.DataFrame(
            list(rows), columns=["cocktail_id", "ingredient", "concentration", "unit"]
        ).astype({"cocktail_id": "str", "ingredient": "str", "unit": "str"})
        if len(_COCKTAIL_TABLES) >= 32:
            _COCKTAIL_TABLES.clear()
        _COCKTAIL_TABLES[rows] = table
    return table.copy()


#: the cocktails table is a function of the recipes alone, the same in every draw of a plan
#: (every power trial): built once per process and recipes, handed out as copies
_COCKTAIL_TABLES: dict[tuple[tuple[Any, ...], ...], pd.DataFrame] = {}


def _strings(values: np.ndarray) -> pd.Series:
    """A string column (pandas' ``str`` dtype; ``None`` becomes missing)."""
    return pd.Series(values, dtype="str")


def _integers(values: np.ndarray) -> pd.Series:
    """A nullable integer column from floats whose NaN mark missing values."""
    return pd.Series(values, dtype="Float64").astype("Int64")


def _seed_record(seed: int | np.random.SeedSequence) -> Any:
    if isinstance(seed, np.random.SeedSequence):
        return {"entropy": seed.entropy, "spawn_key": list(seed.spawn_key)}
    return int(seed)


def _secondary_outcomes(
    density: np.ndarray,
    change_true: np.ndarray,
    x: np.ndarray,
    active: list[str],
    subj: Mapping[str, np.ndarray],
    grid: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Hair count (target area fixed per site), terminal/vellus split, shaft diameter,
    anagen %, GPA and pain VAS, each tied to the subject's true change in density
    (``change_true``) or, for pain, to the cocktail's ingredients. Arrays are (n, k)."""
    n, k = density.shape
    miss = params["missing_rate"]
    areas = np.asarray(params["target_area_cm2"], dtype=float)
    area = areas[subj["site"] % areas.size]
    hair_count = draw_hair_counts(
        density * area[:, None], params["hair_count_dispersion"], rng
    )  # NB2 around density × area (mesostats.simulate.counts)

    ts = params["terminal_share"]
    share = _logistic(
        _logit(ts["mean"])
        + ts["sd_logit"] * rng.standard_normal((n, 1))
        + ts["per_hair"] * change_true
        + ts["residual_sd"] * rng.standard_normal((n, k))
    )
    terminal = np.round(density * share, 1)
    vellus = np.round(np.maximum(density - terminal, 0.0), 1)

    sd = params["shaft_diameter"]
    shaft = (
        sd["mean"]
        + sd["sd"] * rng.standard_normal((n, 1))
        + sd["per_hair"] * change_true
        + sd["residual_sd"] * rng.standard_normal((n, k))
    )
    shaft = np.round(np.clip(shaft, 5.0, 200.0), 1)

    an = params["anagen"]
    anagen = 100.0 * _logistic(
        _logit(an["mean_pct"] / 100.0)
        + an["sd_logit"] * rng.standard_normal((n, 1))
        + an["per_hair"] * change_true
        + an["residual_sd"] * rng.standard_normal((n, k))
    )
    anagen = np.round(anagen, 1)

    gpa = gpa_scores(change_true, rng.standard_normal((n, k)), params)  # cumulative probit
    gpa_given = (np.arange(k)[None, :] > 0) & (rng.random((n, k)) >= miss)

    pv = params["pain_vas"]
    shift = np.array([pv["ingredient_shift"][ing] for ing in active])
    pain = (
        pv["mean"]
        + (x @ shift)[:, None]
        + pv["subject_sd"] * rng.standard_normal((n, 1))
        + pv["residual_sd"] * rng.standard_normal((n, k))
    )
    pain = np.round(np.clip(pain, 0.0, 10.0), 1)
    pain_given = rng.random((n, k)) >= miss
    return {
        "hair_count": hair_count,
        "terminal": terminal,
        "vellus": vellus,
        "shaft": shaft,
        "anagen": anagen,
        "gpa": gpa,
        "gpa_given": gpa_given,
        "pain": pain,
        "pain_given": pain_given,
        "area": np.broadcast_to(area[:, None], (n, k)),
    }


def _adverse_events(
    any_event: np.ndarray,
    subj: Mapping[str, np.ndarray],
    cocktail_ids: list[str],
    recipes: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
    rng: np.random.Generator,
    worst_grade: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per event: 1 + Binomial(2, extra_event_prob) distinct terms per session with
    an event, chosen by the Gumbel-top-k trick; severity, seriousness, relatedness, text.
    Also each event's session as a flat (subject × visit) grid index."""
    ev_subject, ev_visit = np.nonzero(any_event)
    n_sessions_with = ev_subject.size
    terms = [t for t, w in params["event_terms"].items() if w > 0]
    allergy = params["allergy"]
    allergy_ing, allergy_w = allergy.get("ingredient"), float(allergy.get("weight", 0.0))
    term_names = np.array([*terms, "allergic_reaction"], dtype=object)
    log_w = np.log(np.array([params["event_terms"][t] for t in terms], dtype=float))
    has_allergen = np.array([allergy_ing in recipes[c] for c in cocktail_ids])[
        subj["arm"][ev_subject]
    ]
    allergy_log_w = np.where(
        has_allergen & (allergy_w > 0), math.log(max(allergy_w, 1e-300)), -np.inf
    )
    keys = np.column_stack([np.broadcast_to(log_w, (n_sessions_with, log_w.size)), allergy_log_w])
    keys = keys + rng.gumbel(size=keys.shape)
    ranked = np.argsort(-keys, axis=1, kind="stable")
    n_events = 1 + rng.binomial(2, params["extra_event_prob"], size=n_sessions_with)
    take = np.arange(keys.shape[1])[None, :] < n_events[:, None]
    row, rank = np.nonzero(take)
    term_idx = ranked[row, rank]
    term = term_names[term_idx]
    m = term.size

    sev_table = np.array([_SEVERITY[str(t)] for t in term_names])
    cum = np.cumsum(sev_table, axis=1)[term_idx]
    sev_idx = (rng.random(m)[:, None] * cum[:, -1:] >= cum).sum(axis=1)
    # the session's first event carries its worst grade (cumulative-logit truth,
    # mesostats.simulate.ordinal); the others take their term's grade, capped by it
    worst = worst_grade[ev_subject, ev_visit][row] - 1
    sev_idx = np.where(rank == 0, worst, np.minimum(sev_idx, worst))
    severity = np.array(["mild", "moderate", "severe"], dtype=object)[np.minimum(sev_idx, 2)]
    is_allergy = term == "allergic_reaction"
    p_serious = np.where(sev_idx >= 2, 0.1, 0.0) + np.where(is_allergy, 0.1, 0.0)
    serious = rng.random(m) < p_serious
    p_related = np.array([_RELATED.get(str(t), 0.97) for t in term_names])[term_idx]
    related = rng.random(m) < p_related

    # verbatim: a template of the term, sometimes with where on the scalp
    n_templates = np.array([len(_VERBATIM[str(t)]) for t in term_names])
    offsets = np.r_[0, np.cumsum(n_templates)[:-1]]
    templates = np.array([s for t in term_names for s in _VERBATIM[str(t)]], dtype=object)
    pick = offsets[term_idx] + (rng.random(m) * n_templates[term_idx]).astype(np.int64)
    place = np.asarray(_VERBATIM_PLACE, dtype=object)[rng.integers(0, len(_VERBATIM_PLACE), size=m)]
    verbatim = pd.Series(templates[pick], dtype="str") + pd.Series(place, dtype="str")

    grid_index = ev_subject[row] * any_event.shape[1] + ev_visit[row]
    return pd.DataFrame(
        {
            "subject_id": _strings(subj["subject_id"][ev_subject[row]]),
            "visit": (ev_visit[row] + 1).astype(np.int64),
            "event": _strings(term),
            "severity": _strings(severity),
            "serious": serious,
            "related": related,
            "verbatim": verbatim.array,
        }
    ), grid_index
