"""Parameters of a simulated study: the default truth (cocktails, effects, variation,
dropout), overrides through ``effects=``, and their checks."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mesostats._defaults import DEFAULT_DROPOUT, DEFAULT_MISSING_RATE
from mesostats.exceptions import ModelSpecError
from mesostats.simulate.counts import DEFAULT_HAIR_COUNT_DISPERSION

# Defaults (the numbers follow the project's clinical background notes: baseline density
# ~120 hairs/cm², effective ingredients +20–35 hairs/cm² at 3–6 months, injection pain the
# commonest event).
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
_REALISED_KEYS = ("n_clipped", "visit_days", "subject_effects", "ordinal_truth")


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
        # worst severity per session: spacings of the cumulative-logit thresholds above the
        # any-event one (see mesostats.simulate.ordinal)
        "severity_cuts": {"mild|moderate": 1.5, "moderate|severe": 3.5},
        "dropout": DEFAULT_DROPOUT,
        "missing_rate": DEFAULT_MISSING_RATE,
        "unassessed_rate": 0.03,
        "extra_event_prob": 0.15,
        "event_terms": dict(_EVENT_TERMS),
        "allergy": {"ingredient": "minoxidil", "weight": 0.008},
        "site_weight_concentration": 8.0,
        "volume_ml": {"mean": 1.0, "sd": 0.15},
        "target_area_cm2": [0.65, 1.0],
        "hair_count_dispersion": DEFAULT_HAIR_COUNT_DISPERSION,  # NB2 k of the hair counts
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
    cuts = params["severity_cuts"]
    spacing = [cuts.get(k) for k in ("mild|moderate", "moderate|severe")]
    if (
        set(cuts) != {"mild|moderate", "moderate|severe"}
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in spacing)
        or not 0 < spacing[0] < spacing[1]
    ):
        raise ModelSpecError(
            "severity_cuts must be {'mild|moderate': s1, 'moderate|severe': s2} with "
            f"0 < s1 < s2 (spacings above the any-event threshold), got {cuts!r}."
        )
    areas = params["target_area_cm2"]
    if not isinstance(areas, list) or not areas or not all(0 < float(a) <= 10 for a in areas):
        raise ModelSpecError(f"target_area_cm2 must be a list of areas in (0, 10], got {areas!r}.")
    k = params["hair_count_dispersion"]
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0):
        raise ModelSpecError(
            f"hair_count_dispersion must be a positive number (the NB2 k of the hair counts, "
            f"Var = μ + μ²/k) or None (counts = rounded density × area), got {k!r}."
        )


# --------------------------------------------------------------------------------------------
