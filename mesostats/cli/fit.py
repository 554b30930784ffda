"""``mesostats fit SOURCE``: fit the regrowth (or side-effect) model of a study and print its
results, how much people differ, the warnings and the rows set aside, as text or one JSON
object (``--json``, keys :data:`FIT_JSON_KEYS`)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import TYPE_CHECKING, Any

from mesostats._defaults import SIDE_EFFECT_NAGQ
from mesostats.cli.common import (
    EXIT_OK,
    PROG,
    UsageError,
    add_outcome_argument,
    add_seed_argument,
    add_source_argument,
    command_parser,
    emit,
    json_records,
    json_safe,
    load_source,
    model_json,
    positive_int,
    source_label,
)
from mesostats.cli.trial import run_trial
from mesostats.exceptions import MesostatsError

if TYPE_CHECKING:
    import pandas as pd

    from mesostats.data.study import Study

__all__ = ["FIT_JSON_KEYS", "add_fit", "run_fit"]

# fit
# --------------------------------------------------------------------------------------------

#: Top-level keys of ``mesostats fit --json`` (documented in the command's help).
FIT_JSON_KEYS = (
    "source",
    "analysis",
    "outcome",
    "event",
    "formula",
    "model",
    "fixed_effects",
    "variance_components",
    "ingredient_effects",
    "variability",
    "rates",
    "population_average",
    "warnings",
    "messages",
    "notes",
    "excluded_rows",
    "excluded_by_reason",
)

_FIT_EXAMPLES = """\
examples:
  mesostats fit example                                # regrowth of hair_density
  mesostats fit data/my_study --outcome shaft_diameter_um
  mesostats fit example --side-effects                 # any side effect, AGQ with 25 nodes
  mesostats fit example --event erythema --json > erythema.json
  mesostats fit example --trial                        # primary analysis (MMRM)
  mesostats fit example --trial --visit 9 --covariance toeph --json
  mesostats fit example --severity                     # worst severity per session
--json prints one JSON object with the keys: source, analysis ("regrowth" or
"side_effects"), outcome, event, formula, model (method, family, nobs, ngroups, loglik,
aic, bic, converged, singular), fixed_effects, variance_components, ingredient_effects,
variability (components with 95 % CIs, icc, median_odds_ratio, week, prediction_interval,
notes; or error), rates and population_average (side effects; null for regrowth),
warnings ([{category, message}]), messages (the engine's), notes, excluded_rows (rows set
aside from this analysis) and excluded_by_reason. Missing numbers are null.
--trial --json prints the primary analysis instead: source, analysis ("trial"), outcome,
formula, control, cocktails, visits, primary_visit, covariance, covariance_attempts,
df_method, model, lsmeans, vs_control, primary, warnings, messages, notes, excluded_rows,
excluded_subjects.
exit status: 0 fitted (warnings go to stderr and into the JSON), 1 invalid data or a model
that cannot be fitted, 2 usage error"""


def add_fit(subparsers: Any) -> None:
    """Declare ``mesostats fit SOURCE [--outcome O] [--side-effects] [--event T] [--trial
    [--visit V] [--control C] [--covariance S]] [--json]``."""
    parser = command_parser(
        subparsers,
        "fit",
        help="fit the regrowth or side-effect model and print the results",
        description=(
            "Fit the baseline-adjusted linear mixed model of regrowth by ingredient (default) "
            "or, with --side-effects / --event, the binomial mixed model of side effects by "
            "ingredient, and print the ingredient effects, the variance components and how "
            "much people differ (SDs with profile-likelihood CIs, ICC or median odds ratio, "
            "prediction intervals). Warnings are printed on stderr."
        ),
        examples=_FIT_EXAMPLES,
    )
    add_source_argument(parser)
    add_outcome_argument(parser)
    parser.add_argument(
        "--side-effects",
        action="store_true",
        help="fit the side-effect model (any event) instead of regrowth",
    )
    parser.add_argument(
        "--event",
        default=None,
        metavar="TERM",
        help="side-effect model of one coded event term, e.g. erythema (implies --side-effects)",
    )
    parser.add_argument(
        "--severity",
        action="store_true",
        help="fit the cumulative-logit model of the worst severity per session (none < mild "
        "< moderate < severe) by ingredient; --event grades one coded term",
    )
    parser.add_argument(
        "--nagq",
        type=positive_int,
        default=SIDE_EFFECT_NAGQ,
        metavar="K",
        help="side effects: adaptive Gauss-Hermite nodes, 1 = Laplace (default %(default)s)",
    )
    parser.add_argument(
        "--trial",
        action="store_true",
        help="the trial's primary analysis: MMRM of change from baseline by cocktail and "
        "visit, differences to the control (Dunnett-adjusted at the primary visit)",
    )
    parser.add_argument(
        "--visit",
        type=positive_int,
        default=None,
        metavar="V",
        help="--trial: the primary visit number (default the last scheduled visit)",
    )
    parser.add_argument(
        "--control",
        default=None,
        metavar="COCKTAIL",
        help="--trial: the control cocktail (default the one made only of saline/placebo)",
    )
    parser.add_argument(
        "--covariance",
        default=None,
        metavar="STRUCTURE",
        help="--trial: within-subject covariance (default us, falling back to toeph, ar1h, cs)",
    )
    add_seed_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object (pipelines)")
    parser.set_defaults(handler=run_fit)


def _interval_json(estimate: Any) -> dict[str, Any] | None:
    if estimate is None:
        return None
    keys = ("name", "estimate", "ci_lower", "ci_upper", "level", "method", "note")
    return {k: json_safe(getattr(estimate, k, None)) for k in keys}


def _variability_json(var: Any, error: str | None) -> dict[str, Any]:
    if var is None:
        return {"error": error}
    return {
        "components": json_records(var.components),
        "icc": _interval_json(var.icc),
        "median_odds_ratio": _interval_json(var.median_odds_ratio),
        "week": json_safe(var.week),
        "prediction_interval": json_records(var.prediction_interval()),
        "notes": list(var.notes),
    }


def _exclusions_for(study: Study, results: Any, side_effects: bool) -> pd.DataFrame:
    """Rows set aside from this analysis: the study's (for this outcome or the events) and
    the model's own."""
    import pandas as pd  # loads only when a fit ran (`mesostats --help` stays fast)

    if side_effects:
        ex = study.exclusions
        study_rows = ex[(ex["table"] == "adverse_events").to_numpy(dtype=bool)]
    else:
        study_rows = study.outcome_exclusions(results.outcome)
    model_rows = results.model.excluded_rows
    reasons = (
        model_rows["reason"].astype(str)
        if "reason" in model_rows.columns
        else pd.Series(["missing value in a model column"] * len(model_rows), dtype="str")
    )
    return pd.concat(
        [study_rows[["reason"]], pd.DataFrame({"reason": reasons.to_numpy()})],
        ignore_index=True,
    )


def run_fit(args: argparse.Namespace) -> int:
    """Fit the regrowth (or side-effect) model of SOURCE; print text or JSON (exit 0)."""
    trial_only = [f"--{n}" for n in ("visit", "control", "covariance") if getattr(args, n)]
    if args.trial and (args.side_effects or args.event is not None):
        raise UsageError("--trial cannot be combined with --side-effects or --event.")
    if trial_only and not args.trial:
        raise UsageError(f"{', '.join(trial_only)} only make sense with --trial.")
    study = load_source(args.source)
    if getattr(args, "severity", False):
        from mesostats.cli.fit_severity import run_severity

        return run_severity(args, study)
    side_effects = bool(args.side_effects or args.event is not None)
    if not side_effects and args.outcome not in study.outcomes:
        raise UsageError(
            f"--outcome {args.outcome!r} is not an outcome column of this study; available: "
            f"{', '.join(study.outcomes) or 'none'}."
        )
    if args.trial:
        return run_trial(args, study)
    # the models (scipy, statsmodels, formulaic) load only when this command runs, so that
    # `mesostats --help` and the other commands stay fast
    from mesostats.domain import fit_regrowth, fit_side_effects
    from mesostats.domain.variation import variability  # (as above)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if side_effects:
            results: Any = fit_side_effects(study, args.event, nagq=args.nagq)
        else:
            results = fit_regrowth(study, args.outcome)
        var, var_error = None, None
        try:
            var = variability(results, seed=args.seed)
        except (MesostatsError, ValueError, ArithmeticError) as err:
            var_error = f"{type(err).__name__}: {err}"
    found = [(w.category.__name__, str(w.message)) for w in caught]
    if var_error:
        found.append(("VariabilityError", f"varied results could not be computed: {var_error}"))
    for category, message in found:
        emit(f"{PROG}: warning: [{category}] {message}", sys.stderr)
    shown = {message for _, message in found}
    for message in results.model.messages:
        if message not in shown:
            emit(f"{PROG}: message from the fit: {message}", sys.stderr)
    excluded = _exclusions_for(study, results, side_effects)
    if args.json:
        payload = _fit_payload(args, side_effects, results, var, var_error, found, excluded)
        emit(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False))
    else:
        emit(str(results))
        emit("")
        emit(str(var) if var is not None else f"Varied results: not computed ({var_error})")
        emit("")
        emit(f"Rows set aside from this analysis: {len(excluded)}")
    return EXIT_OK


def _fit_payload(
    args: argparse.Namespace,
    side_effects: bool,
    results: Any,
    var: Any,
    var_error: str | None,
    found: list[tuple[str, str]],
    excluded: pd.DataFrame,
) -> dict[str, Any]:
    """The ``--json`` object (keys :data:`FIT_JSON_KEYS`) of a regrowth or side-effect fit."""
    model = results.model
    gee = getattr(results, "gee", None)
    by_reason = excluded.groupby("reason", sort=False).size()
    return {
        "source": source_label(args.source),
        "analysis": "side_effects" if side_effects else "regrowth",
        "outcome": None if side_effects else results.outcome,
        "event": results.event if side_effects else None,
        "formula": results.formula,
        "model": model_json(model),
        "fixed_effects": json_records(model.fixed_effects, index="term"),
        "variance_components": json_records(model.variance_components),
        "ingredient_effects": json_records(results.ingredient_effects),
        "variability": _variability_json(var, var_error),
        "rates": json_records(results.rates) if side_effects else None,
        "population_average": json_records(gee.table) if gee is not None else None,
        "warnings": [{"category": c, "message": m} for c, m in found],
        "messages": list(model.messages),
        "notes": list(results.notes),
        "excluded_rows": len(excluded),
        "excluded_by_reason": {str(k): int(v) for k, v in by_reason.items()},
    }
