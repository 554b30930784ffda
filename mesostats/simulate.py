"""Simulated mesotherapy studies with a known truth.

A study is drawn from the models that :func:`mesostats.fit_regrowth` and
:func:`mesostats.fit_side_effects` estimate, so that the truth is known: tests compare
estimates with it, :func:`mesostats.power` repeats the draw many times, and demos run without
patient data.

The drawing is written here by hand because no library simulates a whole study in our table
layout (subjects, cocktail recipes, irregular visits with dropout, session outcomes and
adverse-event rows with free text). Every step is vectorised over subjects × visits with
numpy; a 100,000-subject study with 10 visits takes a few seconds.

Models
------
Regrowth, the random-coefficients model of Laird & Ware (1982), for subject *i* at visit *j*
with ``week = (day - 1) / 7``::

    hair_density_ij = intercept_mean + u0_i
                      + (slope_placebo + sum_k ingredient_slopes[k] * x_ik + u1_i) * week_ij
                      + e_ij,
    (u0_i, u1_i) ~ N(0, [[intercept_sd², ρ·intercept_sd·slope_sd],
                         [ρ·intercept_sd·slope_sd, slope_sd²]]),  e_ij ~ N(0, residual_sd²),

where ``x_ik`` is 1 when the cocktail assigned to subject *i* for the course contains the
active ingredient *k* (saline is not active) and ρ = ``intercept_slope_corr``. The
indicators belong to the subject (the course), so they also apply at follow-up visits where
nothing is injected. Values are clipped to the schema range 0–600 (the number clipped is
``truth["n_clipped"]``; the default parameters make it essentially zero).

Side effects, the logistic-normal model of Breslow & Clayton (1993), per assessed injection
session::

    any_event_ij ~ Bernoulli(logistic(event_intercept + sum_k event_log_or[k] * x_ik + v_i)),
    v_i ~ N(0, event_sd²).

A session with an event has 1 + Binomial(2, ``extra_event_prob``) distinct coded events,
drawn without replacement from ``event_terms`` by the Gumbel-top-k trick (Vieira 2014; Kool,
van Hoof & Welling 2019); ``allergic_reaction`` can only occur with the ingredient
``allergy["ingredient"]``.

Design: each subject receives one cocktail for the whole course, allocated by permuted blocks
of size 2 × (number of cocktails) within each site (stratified block randomisation; Zelen
1974). Visits follow a weekly → two-weekly → monthly injection schedule with follow-up
visits without injection; visit days are jittered; dropout is monotone with a constant
per-visit hazard; outcomes are missing completely at random after baseline.

References
----------
Laird NM, Ware JH (1982). Random-effects models for longitudinal data. *Biometrics* 38(4).
Breslow NE, Clayton DG (1993). Approximate inference in generalized linear mixed models.
*JASA* 88(421).
Zelen M (1974). The randomization and stratification of patients to clinical trials.
*J Chronic Dis* 27(7–8).
Kool W, van Hoof H, Welling M (2019). Stochastic beams and where to find them: the
Gumbel-top-k trick. *ICML*.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = [
    "DEFAULT_COCKTAILS",
    "simulate_study",
    "simulate_tables",
    "truth_to_json",
    "write_tables",
]

# --------------------------------------------------------------------------------------------
# Defaults (the numbers follow /work/shared/domain.md: baseline density ~120 hairs/cm²,
# effective ingredients +20–35 hairs/cm² at 3–6 months, injection pain the commonest event).
# --------------------------------------------------------------------------------------------

#: Default recipes: a saline placebo and three cocktails that make minoxidil, dutasteride and
#: biotin separable (the ingredient-indicator matrix of A, B, C has full rank).
DEFAULT_COCKTAILS: dict[str, dict[str, dict[str, Any]]] = {
    "P": {"saline": {"concentration": 0.9, "unit": "%"}},
    "A": {
        "minoxidil": {"concentration": 0.5, "unit": "%"},
        "biotin": {"concentration": 5.0, "unit": "mg/mL"},
    },
    "B": {
        "dutasteride": {"concentration": 0.01, "unit": "%"},
        "biotin": {"concentration": 5.0, "unit": "mg/mL"},
    },
    "C": {
        "minoxidil": {"concentration": 0.5, "unit": "%"},
        "dutasteride": {"concentration": 0.01, "unit": "%"},
        "biotin": {"concentration": 5.0, "unit": "mg/mL"},
    },
}

# Extra regrowth (hairs/cm²/week) and side-effect log odds ratios for ingredients we know;
# any other active ingredient of a user recipe defaults to 0 (no effect).
_KNOWN_SLOPES = {"minoxidil": 1.2, "dutasteride": 1.0, "biotin": 0.1}
_KNOWN_LOG_OR = {"minoxidil": 0.5, "dutasteride": 0.25, "biotin": 0.0}
_KNOWN_PAIN_SHIFT = {"minoxidil": 0.8, "dutasteride": 0.3, "biotin": 0.0}

PLACEBO_INGREDIENT = "saline"
UNITS = ("%", "mg/mL", "ug/mL", "IU/mL")

_SITES = [
    ("Lyon", "LYO"),
    ("Madrid", "MAD"),
    ("Milano", "MIL"),
    ("Porto", "POR"),
    ("Gent", "GEN"),
    ("Kraków", "KRA"),
    ("Wien", "WIE"),
    ("Zürich", "ZUR"),
    ("Sevilla", "SEV"),
    ("Göteborg", "GOT"),
]

# Coded terms with their share among events (allergic_reaction is added for sessions with the
# allergy ingredient), severity probabilities (mild, moderate, severe) and P(related).
_EVENT_TERMS = {
    "pain": 0.42,
    "erythema": 0.18,
    "oedema": 0.10,
    "haematoma": 0.10,
    "headache": 0.08,
    "pruritus": 0.06,
    "tightness": 0.03,
    "bleeding": 0.03,
}
_SEVERITY = {
    "pain": (0.60, 0.34, 0.06),
    "erythema": (0.80, 0.18, 0.02),
    "oedema": (0.70, 0.27, 0.03),
    "haematoma": (0.85, 0.14, 0.01),
    "headache": (0.65, 0.30, 0.05),
    "pruritus": (0.85, 0.14, 0.01),
    "tightness": (0.90, 0.10, 0.00),
    "bleeding": (0.95, 0.05, 0.00),
    "allergic_reaction": (0.30, 0.50, 0.20),
}
_RELATED = {"headache": 0.6}  # every other term: 0.97
_VERBATIM = {
    "pain": [
        "pain during injection",
        "injection pain, VAS > 6",
        "douleur à l'injection",
        "burning sensation < 5 min",
        'pt said "it stings" at each pass',
        "pain & discomfort at injection sites",
        "Schmerzen bei der Injektion",
    ],
    "erythema": [
        "erythema at injection sites",
        "érythème léger",
        "redness > 2 cm around papules",
        "diffuse redness & warmth",
        "'red patches', resolved in 24 h",
    ],
    "oedema": [
        "oedema of the forehead",
        "œdème frontal",
        "swelling at injection sites",
        "papules + swelling < 48 h",
        'puffy eyelids ("swollen")',
    ],
    "haematoma": [
        "small haematoma",
        "hématome < 1 cm",
        "bruising at vertex",
        "ecchymosis & tenderness",
        "pinpoint bruises",
    ],
    "headache": [
        "headache after session",
        "céphalée",
        "mild headache, paracetamol 1 g",
        "tension headache > 2 h",
        '"head felt heavy"',
    ],
    "pruritus": [
        "itching of scalp",
        "prurit du cuir chevelu",
        "itchy papules",
        "pruritus & flaking",
    ],
    "tightness": ["scalp tightness", "tight feeling < 24 h", "sensation de tiraillement"],
    "bleeding": ["pinpoint bleeding", "bleeding at injection points", "saignement ponctuel"],
    "allergic_reaction": [
        "contact dermatitis, suspected propylene glycol",
        "urticaria < 1 h after injection",
        "réaction allergique : eczéma",
        "allergic reaction & facial swelling",
    ],
}
_VERBATIM_PLACE = ["", "", "", " (vertex)", " – frontal scalp", ", temporal area", " <crown>"]

# Keys of truth that arguments set (not overridable through effects=) and realised values.
_DESIGN_KEYS = ("seed", "n_subjects", "n_sessions", "n_followup", "n_sites")
_REALISED_KEYS = ("n_clipped", "visit_days", "subject_effects")


def _default_parameters() -> dict[str, Any]:
    """Model parameters with their default values (the overridable part of ``truth``)."""
    return {
        "cocktails": copy.deepcopy(DEFAULT_COCKTAILS),
        "intercept_mean": 120.0,
        "intercept_sd": 22.0,
        "slope_placebo": 0.1,
        "slope_sd": 0.8,
        "intercept_slope_corr": -0.2,
        "residual_sd": 7.0,
        "ingredient_slopes": {},  # filled per recipe from _KNOWN_SLOPES (0 when unknown)
        "event_intercept": -2.2,
        "event_sd": 1.0,
        "event_log_or": {},  # filled per recipe from _KNOWN_LOG_OR (0 when unknown)
        "dropout": 0.03,
        "missing_rate": 0.02,
        "unassessed_rate": 0.03,
        "extra_event_prob": 0.15,
        "event_terms": dict(_EVENT_TERMS),
        "allergy": {"ingredient": "minoxidil", "weight": 0.008},
        "site_weight_concentration": 8.0,
        "volume_ml": {"mean": 1.0, "sd": 0.15},
        "target_area_cm2": [0.65, 1.0],
        "shaft_diameter": {"mean": 52.0, "sd": 4.0, "per_hair": 0.12, "residual_sd": 1.5},
        "anagen": {"mean_pct": 68.0, "sd_logit": 0.35, "per_hair": 0.02, "residual_sd": 0.15},
        "terminal_share": {"mean": 0.72, "sd_logit": 0.3, "per_hair": 0.015, "residual_sd": 0.1},
        "gpa": {"hairs_per_point": 12.0, "rater_sd": 0.5},
        "pain_vas": {"mean": 3.0, "subject_sd": 1.2, "residual_sd": 1.0, "ingredient_shift": {}},
    }


# --------------------------------------------------------------------------------------------
# Parameters: recipes, overrides, checks
# --------------------------------------------------------------------------------------------


def _recipes_from(cocktails: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Normalise ``cocktails=`` (mapping of recipes or a cocktails table) to nested dicts."""
    if isinstance(cocktails, pd.DataFrame):
        needed = ["cocktail_id", "ingredient", "concentration", "unit"]
        missing = [c for c in needed if c not in cocktails.columns]
        if missing:
            raise ModelSpecError(
                f"cocktails table lacks columns {missing}; it needs {needed} "
                "(one row per cocktail × ingredient)."
            )
        recipes: dict[str, dict[str, dict[str, Any]]] = {}
        for cid, ing, conc, unit in cocktails[needed].itertuples(index=False):
            recipes.setdefault(str(cid), {})[str(ing)] = {
                "concentration": float(conc),
                "unit": str(unit),
            }
        return recipes
    if not isinstance(cocktails, Mapping):
        raise ModelSpecError(
            f"cocktails must be a mapping cocktail_id -> {{ingredient: (concentration, unit)}} "
            f"or a cocktails DataFrame, not {type(cocktails).__name__}."
        )
    recipes = {}
    for cid, recipe in cocktails.items():
        if not isinstance(recipe, Mapping) or not recipe:
            raise ModelSpecError(
                f"cocktail {cid!r}: the recipe must be a non-empty mapping "
                f"ingredient -> (concentration, unit), got {recipe!r}."
            )
        recipes[str(cid)] = {}
        for ing, spec in recipe.items():
            if isinstance(spec, Mapping):
                conc, unit = spec.get("concentration"), spec.get("unit")
            elif isinstance(spec, (tuple, list)) and len(spec) == 2:
                conc, unit = spec
            else:
                raise ModelSpecError(
                    f"cocktail {cid!r}, ingredient {ing!r}: expected (concentration, unit) "
                    f"such as (0.5, '%'), got {spec!r}."
                )
            recipes[str(cid)][str(ing)] = {"concentration": conc, "unit": unit}
    return recipes


def _check_recipes(recipes: dict[str, dict[str, dict[str, Any]]]) -> None:
    if len(recipes) < 1:
        raise ModelSpecError("cocktails is empty: give at least one recipe.")
    for cid, recipe in recipes.items():
        for ing, spec in recipe.items():
            conc, unit = spec.get("concentration"), spec.get("unit")
            if not isinstance(conc, (int, float)) or isinstance(conc, bool) or not conc >= 0:
                raise ModelSpecError(
                    f"cocktail {cid!r}, ingredient {ing!r}: concentration {conc!r} must be a "
                    "number ≥ 0."
                )
            if unit not in UNITS:
                raise ModelSpecError(
                    f"cocktail {cid!r}, ingredient {ing!r}: unit {unit!r} is not one of "
                    f"{list(UNITS)}."
                )
            if not ing or ing != ing.lower() or not ing.replace("_", "").isalnum():
                raise ModelSpecError(
                    f"cocktail {cid!r}: ingredient name {ing!r} must be lower-case snake_case "
                    "(e.g. 'minoxidil', 'vitamin_d')."
                )


def _active_ingredients(recipes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return sorted({ing for r in recipes.values() for ing in r if ing != PLACEBO_INGREDIENT})


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``, merging nested dicts key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_parameters(
    cocktails: Any, dropout: float, missing_rate: float, effects: Mapping[str, Any] | None
) -> dict[str, Any]:
    params = _default_parameters()
    if cocktails is not None:
        params["cocktails"] = _recipes_from(cocktails)
    params["dropout"] = dropout
    params["missing_rate"] = missing_rate
    effects = {} if effects is None else effects
    if not isinstance(effects, Mapping):
        raise ModelSpecError(
            f"effects must be a dict of true values to override, not {type(effects).__name__}."
        )
    valid = sorted(params)
    for key in effects:
        if key in _DESIGN_KEYS:
            raise ModelSpecError(
                f"effects={{{key!r}: ...}}: {key} is a design setting, not a true value; pass "
                f"it as the argument {key}= instead."
            )
        if key in _REALISED_KEYS:
            raise ModelSpecError(
                f"effects={{{key!r}: ...}}: {key} is realised by the draw and cannot be set. "
                f"Valid keys: {', '.join(valid)}."
            )
        if key not in params:
            raise ModelSpecError(
                f"effects has an unknown key {key!r}. Valid keys: {', '.join(valid)}."
            )
    if "cocktails" in effects:
        params["cocktails"] = _deep_merge(params["cocktails"], _recipes_from(effects["cocktails"]))
    params = _deep_merge(params, {k: v for k, v in effects.items() if k != "cocktails"})
    _check_recipes(params["cocktails"])

    active = _active_ingredients(params["cocktails"])
    for key, known in (
        ("ingredient_slopes", _KNOWN_SLOPES),
        ("event_log_or", _KNOWN_LOG_OR),
    ):
        given = params[key]
        _check_ingredient_keys(key, given, active)
        params[key] = {ing: float(given.get(ing, known.get(ing, 0.0))) for ing in active}
    shifts = params["pain_vas"]["ingredient_shift"]
    _check_ingredient_keys("pain_vas.ingredient_shift", shifts, active)
    params["pain_vas"]["ingredient_shift"] = {
        ing: float(shifts.get(ing, _KNOWN_PAIN_SHIFT.get(ing, 0.0))) for ing in active
    }
    _check_values(params)
    return params


def _check_ingredient_keys(key: str, given: Any, active: list[str]) -> None:
    if not isinstance(given, Mapping):
        raise ModelSpecError(
            f"{key} must be a dict ingredient -> value, got {given!r}. Ingredients in these "
            f"cocktails: {', '.join(active)}."
        )
    unknown = sorted(set(given) - set(active))
    if unknown:
        raise ModelSpecError(
            f"{key} names ingredients that no cocktail contains: {', '.join(unknown)}. "
            f"Ingredients in these cocktails: {', '.join(active) or '(none)'}; add a recipe "
            "with cocktails= or drop those keys."
        )


def _number(params: Mapping[str, Any], key: str, label: str | None = None) -> float:
    value = params[key]
    label = label or key
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ModelSpecError(f"{label} must be a number, got {value!r}.")
    if not math.isfinite(float(value)):
        raise ModelSpecError(f"{label} must be finite, got {value!r}.")
    return float(value)


def _check_values(params: dict[str, Any]) -> None:
    for key in (
        "intercept_mean",
        "slope_placebo",
        "event_intercept",
        "intercept_sd",
        "slope_sd",
        "residual_sd",
        "event_sd",
    ):
        params[key] = _number(params, key)
        if key.endswith("_sd") and params[key] < 0:
            raise ModelSpecError(f"{key} = {params[key]} is negative; an SD must be ≥ 0.")
    for mapping in ("ingredient_slopes", "event_log_or"):
        for ing in params[mapping]:
            _number(params[mapping], ing, f"{mapping}[{ing!r}]")
    rho = _number(params, "intercept_slope_corr")
    if not -1 <= rho <= 1:
        raise ModelSpecError(f"intercept_slope_corr = {rho} must lie in [-1, 1].")
    for key in ("dropout", "missing_rate", "unassessed_rate", "extra_event_prob"):
        p = _number(params, key)
        if not 0 <= p < 1:
            raise ModelSpecError(
                f"{key} = {p} must be a probability in [0, 1) (e.g. 0.03 for 3 % per visit)."
            )
    terms = params["event_terms"]
    bad = sorted(set(terms) - set(_VERBATIM))
    if bad:
        raise ModelSpecError(
            f"event_terms has unknown coded terms {bad}; use some of {sorted(_EVENT_TERMS)}."
        )
    weights = [terms[t] for t in terms]
    if any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ModelSpecError(
            f"event_terms weights must be numbers ≥ 0 with a positive sum, got {terms!r}."
        )
    if len([w for w in weights if w > 0]) < 3:
        raise ModelSpecError(
            "event_terms needs at least 3 terms with positive weight (a session can have up "
            f"to 3 distinct events), got {terms!r}."
        )
    areas = params["target_area_cm2"]
    if not isinstance(areas, list) or not areas or not all(0 < float(a) <= 10 for a in areas):
        raise ModelSpecError(f"target_area_cm2 must be a list of areas in (0, 10], got {areas!r}.")


# --------------------------------------------------------------------------------------------
# Design: subjects, randomisation, visit schedule, dropout
# --------------------------------------------------------------------------------------------


def _nominal_schedule(n_injections: int, n_followup: int) -> tuple[np.ndarray, np.ndarray]:
    """Nominal visit days and day jitter: weekly × 4, two-weekly × 2, then monthly injections;
    follow-ups 4 weeks after the last injection, then every 3 months."""
    inj_gaps = np.array([7, 7, 7, 14, 14] + [28] * max(0, n_injections - 6))[: n_injections - 1]
    fu_gaps = np.array([28] + [91] * max(0, n_followup - 1))[:n_followup]
    gaps = np.concatenate([inj_gaps, fu_gaps]).astype(np.int64)
    days = np.concatenate([[1], 1 + np.cumsum(gaps)]).astype(np.int64)
    jitter_by_gap = {7: 1, 14: 2, 28: 3, 91: 7}
    jitter = np.concatenate([[0], [jitter_by_gap[int(g)] for g in gaps]]).astype(np.int64)
    return days, jitter


def _site_names(n_sites: int) -> tuple[list[str], list[str]]:
    names = [s[0] for s in _SITES[:n_sites]]
    codes = [s[1] for s in _SITES[:n_sites]]
    for k in range(len(_SITES), n_sites):
        names.append(f"Site {k + 1:02d}")
        codes.append(f"S{k + 1:02d}")
    return names, codes


def _block_randomise(site: np.ndarray, n_arms: int, rng: np.random.Generator) -> np.ndarray:
    """Permuted blocks of size 2·n_arms within each site (subjects in enrolment order)."""
    n = site.size
    order_in_site = _rank_within(site)
    block = order_in_site // (2 * n_arms)
    shuffle = rng.random(n)
    order = np.lexsort((shuffle, block, site))
    position = np.empty(n, dtype=np.int64)
    position[order] = _rank_within(np.stack([site[order], block[order]], axis=1))
    return position % n_arms


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """0-based running count of each row within its group, for rows already grouped in
    order (1-d keys in any order; 2-d keys must be sorted)."""
    if keys.ndim == 1:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(keys.size), 0))
        rank = np.empty(keys.size, dtype=np.int64)
        rank[order] = np.arange(keys.size) - group_start
        return rank
    starts = np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    return np.arange(len(keys)) - group_start


def _draw_subjects(
    n: int, n_sites: int, n_arms: int, params: Mapping[str, Any], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    names, codes = _site_names(n_sites)
    weights = rng.dirichlet(np.full(n_sites, params["site_weight_concentration"]))
    site = np.sort(rng.choice(n_sites, size=n, p=weights))
    number = _rank_within(site) + 1
    width = max(3, len(str(int(number.max())))) if n else 3
    subject_id = (
        pd.Series(np.asarray(codes, dtype=object)[site])
        + "-"
        + pd.Series(number).astype(str).str.zfill(width)
    ).to_numpy(dtype=object)
    arm = _block_randomise(site, n_arms, rng)

    female = rng.random(n) < 0.45
    u = rng.random(n)
    diagnosis = np.where(
        female, np.where(u < 0.8, "FPHL", "TE"), np.where(u < 0.95, "AGA", "TE")
    ).astype(object)
    age = np.where(female, rng.normal(42, 11, n), rng.normal(37, 10, n))
    age = np.clip(np.rint(age), 18, 75).astype(np.int64)
    nh = np.array(["NH-II", "NH-IIa", "NH-III", "NH-IIIa", "NH-IIIv", "NH-IV", "NH-IVa", "NH-V"])
    nh_p = np.array([0.10, 0.05, 0.22, 0.08, 0.15, 0.20, 0.08, 0.12])
    ludwig = np.array(["Ludwig-I", "Ludwig-II", "Ludwig-III"])
    ludwig_p = np.array([0.50, 0.42, 0.08])
    stage = np.where(
        female,
        ludwig[np.searchsorted(np.cumsum(ludwig_p), rng.random(n) * ludwig_p.sum())],
        nh[np.searchsorted(np.cumsum(nh_p), rng.random(n) * nh_p.sum())],
    ).astype(object)
    stage[diagnosis == "TE"] = None
    return {
        "site": site,
        "site_name": np.asarray(names, dtype=object)[site],
        "subject_id": subject_id,
        "arm": arm,
        "sex": np.where(female, "F", "M").astype(object),
        "age": age,
        "diagnosis": diagnosis,
        "stage": stage,
    }


# --------------------------------------------------------------------------------------------
# The draw
# --------------------------------------------------------------------------------------------


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _followup_count(n_sessions: int, n_followup: int | None) -> int:
    if n_followup is None:
        return 2 if n_sessions >= 6 else (1 if n_sessions >= 4 else 0)
    return n_followup


def _check_design(
    n_subjects: int, n_sessions: int, n_followup: int, n_sites: int, seed: Any
) -> None:
    for name, value, low in (
        ("n_subjects", n_subjects, 1),
        ("n_sessions", n_sessions, 1),
        ("n_followup", n_followup, 0),
        ("n_sites", n_sites, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ModelSpecError(f"{name} must be an integer ≥ {low}, got {value!r}.")
    if n_followup >= n_sessions:
        raise ModelSpecError(
            f"n_followup = {n_followup} leaves no injection session among n_sessions = "
            f"{n_sessions} visits; use n_followup < n_sessions."
        )
    if not isinstance(seed, np.random.SeedSequence) and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ModelSpecError(f"seed must be an integer ≥ 0 or a numpy SeedSequence, got {seed!r}.")


def simulate_tables(
    n_subjects: int = 120,
    n_sessions: int = 8,
    *,
    seed: int | np.random.SeedSequence = 0,
    effects: Mapping[str, Any] | None = None,
    n_sites: int = 3,
    cocktails: Mapping[str, Any] | pd.DataFrame | None = None,
    dropout: float = 0.03,
    missing_rate: float = 0.02,
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
        (logit), ``event_sd``, ``event_log_or`` ({ingredient: log OR}), ``dropout,
        missing_rate, unassessed_rate, extra_event_prob, event_terms, allergy,
        site_weight_concentration, volume_ml, target_area_cm2, shaft_diameter, anagen,
        terminal_share, gpa, pain_vas`` (secondary outcomes), and the realised values
        ``n_clipped`` ({outcome: count}), ``visit_days`` (nominal days) and
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
    tables = {
        "subjects": _subjects_table(subj, cid_arr),
        "cocktails": _cocktails_table(recipes),
        "sessions": _sessions_table(subj, cid_arr, grid, regrowth, secondary, events),
        "adverse_events": _adverse_events(
            events["any_event"], subj, cocktail_ids, recipes, params, rng_events
        ),
    }
    truth: dict[str, Any] = {
        "seed": _seed_record(seed),
        "n_subjects": int(n_subjects),
        "n_sessions": int(n_sessions),
        "n_followup": n_followup,
        "n_sites": int(n_sites),
        **params,
        "n_clipped": {"hair_density": int(regrowth["clipped"].sum())},
        "visit_days": [int(d) for d in grid["nominal"]],
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
    return tables, truth


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
    measurements missing completely at random after baseline."""
    week = grid["week"]
    n, k = week.shape
    sd0, sd1, rho = params["intercept_sd"], params["slope_sd"], params["intercept_slope_corr"]
    z = rng.standard_normal((n, 2))
    u0 = sd0 * z[:, 0]
    u1 = sd1 * (rho * z[:, 0] + math.sqrt(max(0.0, 1.0 - rho * rho)) * z[:, 1])
    beta = np.array([params["ingredient_slopes"][ing] for ing in active])
    slope = params["slope_placebo"] + x @ beta + u1
    change_true = slope[:, None] * week
    density = (
        params["intercept_mean"]
        + u0[:, None]
        + change_true
        + params["residual_sd"] * rng.standard_normal((n, k))
    )
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
    (Breslow & Clayton 1993) at each assessed session."""
    n, k = grid["week"].shape
    assessed = (
        grid["attended"] & grid["injected"] & (rng.random((n, k)) >= params["unassessed_rate"])
    )
    v = params["event_sd"] * rng.standard_normal(n)
    log_or = np.array([params["event_log_or"][ing] for ing in active])
    eta = params["event_intercept"] + x @ log_or + v
    any_event = assessed & (rng.random((n, k)) < _logistic(eta)[:, None])
    return {"assessed": assessed, "v": v, "any_event": any_event}


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
    rows = [
        (cid, ing, float(spec["concentration"]), str(spec["unit"]))
        for cid, recipe in recipes.items()
        for ing, spec in recipe.items()
    ]
    return pd.DataFrame(
        rows, columns=["cocktail_id", "ingredient", "concentration", "unit"]
    ).astype({"cocktail_id": "str", "ingredient": "str", "unit": "str"})


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
    hair_count = np.rint(density * area[:, None])

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

    g = params["gpa"]
    gpa = np.clip(
        np.rint(change_true / g["hairs_per_point"] + g["rater_sd"] * rng.standard_normal((n, k))),
        -3,
        3,
    )
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
) -> pd.DataFrame:
    """One row per event: 1 + Binomial(2, extra_event_prob) distinct terms per session with
    an event, chosen by the Gumbel-top-k trick; severity, seriousness, relatedness, text."""
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
    )


def simulate_study(
    n_subjects: int = 120,
    n_sessions: int = 8,
    *,
    seed: int | np.random.SeedSequence = 0,
    effects: Mapping[str, Any] | None = None,
    n_sites: int = 3,
    cocktails: Mapping[str, Any] | pd.DataFrame | None = None,
    dropout: float = 0.03,
    missing_rate: float = 0.02,
    n_followup: int | None = None,
) -> Study:
    """Simulate a randomised mesotherapy study with a known truth.

    Draws the tables with :func:`simulate_tables` (random-coefficients regrowth after Laird &
    Ware 1982, logistic-normal side effects after Breslow & Clayton 1993, site-stratified
    block randomisation, monotone dropout), validates them with
    :func:`mesostats.load_study`, and attaches the truth.

    Parameters
    ----------
    n_subjects, n_sessions, seed, effects, n_sites, cocktails, dropout, missing_rate, n_followup
        As in :func:`simulate_tables`.

    Returns
    -------
    Study
        The validated study; ``study.truth`` is the dict of every true value used (layout in
        :func:`simulate_tables`).

    Raises
    ------
    ModelSpecError
        Unknown or invalid keys in ``effects``, bad recipes or design settings.

    Examples
    --------
    >>> study = simulate_study(40, 6, seed=3, effects={"ingredient_slopes": {"biotin": 0.0}})
    >>> study.truth["ingredient_slopes"]["biotin"]
    0.0
    """
    from mesostats.data.load import load_study

    tables, truth = simulate_tables(
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
    return dataclasses.replace(load_study(tables), truth=truth)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_tables(tables: Mapping[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """Write tables as UTF-8 CSV files ``<folder>/<name>.csv`` in the table contract's
    format (booleans ``true``/``false``, missing values empty, ``\\n`` line ends).

    Returns the paths written. The folder is created if needed; existing files of the same
    names are replaced.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in tables.items():
        out = table.copy()
        for col in out.columns:
            if pd.api.types.is_bool_dtype(out[col]):
                out[col] = out[col].map({True: "true", False: "false"}).astype("str")
        path = folder / f"{name}.csv"
        out.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        paths.append(path)
    return paths


def truth_to_json(truth: Mapping[str, Any]) -> str:
    """The truth dict as JSON text (DataFrames become ``{column: [values]}``, NaN → null)."""

    def convert(value: Any) -> Any:
        if isinstance(value, pd.DataFrame):
            return {col: [convert(v) for v in value[col].tolist()] for col in value.columns}
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [convert(v) for v in value]
        if isinstance(value, (np.integer,)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return None if not math.isfinite(float(value)) else float(value)
        if value is pd.NA:
            return None
        return value

    return json.dumps(convert(truth), indent=2, ensure_ascii=False) + "\n"
