"""One simulated trial of a power study: its random stream, its plan, and its analysis.

Stream of trial *j* at sample size *n*: ``SeedSequence(seed, spawn_key=(n, j))``, so its
numbers depend only on (seed, n, j). The analysis is exactly the study's
(:func:`mesostats.fit_regrowth` or :func:`mesostats.fit_side_effects`).

What is fixed across the trials of a plan is built once per worker process and reused: the
plan's tables are validated once (the probe trial; the draws then take the trusted path of
:func:`mesostats.simulate.api._simulated_study`, which also hands the adverse events' session
rows to the Study), the cocktails table of the recipes (``mesostats.simulate.tables``), the
estimability check of the cocktails used (``mesostats.domain.aliasing``) and the compiled
formula pieces (``mesostats.mixed.compiled``). Each trial's numbers equal those of the plain
public path bit for bit (``tests/test_power_reuse.py``). BLAS runs single-threaded in every
fit (``mesostats._parallel.single_threaded_blas``).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mesostats.domain import fit_regrowth, fit_side_effects
from mesostats.exceptions import MesostatsError, ModelSpecError
from mesostats.simulate import simulate_study
from mesostats.simulate.api import _simulated_study

if TYPE_CHECKING:
    from mesostats.data.study import Study


SIDE_EFFECT = "side_effect"
BACKENDS = ("loky", "dask")
_MIN_SUBJECTS = 4
_AUTO_PROGRESS_TRIALS = 200  # show a bar by default from this many trials (on a terminal)
#: What counts as a failed trial (its reason is kept): errors of the model or the data
#: (MesostatsError), numerical breakdowns (LinAlgError, ArithmeticError, ValueError from
#: numpy/scipy on non-finite input) and RuntimeError (also the fault-injection hook). Anything
#: else (TypeError, KeyError, AttributeError, …) is a programming error and propagates.
TRIAL_FAILURES: tuple[type[BaseException], ...] = (
    MesostatsError,
    np.linalg.LinAlgError,
    ArithmeticError,
    ValueError,
    RuntimeError,
)
_NO_RESULT = (math.nan, math.nan, math.nan, False, False, False)  # estimate … singular
#: Columns of :attr:`~mesostats.planning.table.PowerTrials.simulations`, one row per trial.
TRIAL_COLUMNS = [
    "n_subjects",
    "simulation",
    "estimate",
    "std_error",
    "p_value",
    "rejected",
    "converged",
    "singular",
    "error",
]
#: One trial's record: its columns and the seconds spent simulating and fitting.
_SIMULATION_FIELDS = (*TRIAL_COLUMNS, "seconds_simulate", "seconds_fit")


# --------------------------------------------------------------------------------------------
# Streams, plan, fault injection
# --------------------------------------------------------------------------------------------


def simulation_seed(seed: int, n_subjects: int, simulation: int) -> np.random.SeedSequence:
    """The random stream of one simulated trial.

    Child ``simulation`` of child ``n_subjects`` of ``numpy.random.SeedSequence(seed)``:
    identical to ``SeedSequence(seed).spawn(n_subjects + 1)[n_subjects]
    .spawn(simulation + 1)[simulation]``, without building the earlier children. The stream
    depends only on these three numbers, so results do not depend on the grid order, on
    ``n_sims`` or on how trials are spread over workers.
    """
    return np.random.SeedSequence(int(seed), spawn_key=(int(n_subjects), int(simulation)))


@dataclass(frozen=True)
class FaultInjection:
    """Test-only hook: make chosen trials fail, or make a worker process die.

    Used by the tests of the failure accounting; never needed in an analysis.

    Attributes
    ----------
    fail : frozenset of (n_subjects, simulation)
        Trials whose analysis raises ``RuntimeError`` (counted in ``n_failed``).
    kill : frozenset of (n_subjects, simulation)
        Trials at which the worker process exits at once (``os._exit``), as a crashed or
        killed worker would. Refused with ``n_jobs=1`` (the worker is this process).
    kill_marker : str, optional
        A file path. When given, a worker dies only if the file does not exist yet and
        creates it first, so the kill happens once; without it, every attempt dies.
    """

    fail: frozenset[tuple[int, int]] = frozenset()
    kill: frozenset[tuple[int, int]] = frozenset()
    kill_marker: str | None = None

    def before_analysis(self, n_subjects: int, simulation: int) -> None:
        """Die or raise as configured for this trial."""
        key = (n_subjects, simulation)
        if key in self.kill and self._claim_kill():
            os._exit(70)
        if key in self.fail:
            raise RuntimeError(f"injected analysis failure (test hook) at trial {key}")

    def _claim_kill(self) -> bool:
        if self.kill_marker is None:
            return True
        try:
            with open(self.kill_marker, "x", encoding="utf-8") as marker:
                marker.write(f"killed pid {os.getpid()}\n")
        except FileExistsError:
            return False
        return True


@dataclass(frozen=True)
class _TrialPlan:
    """Everything a worker needs to simulate and analyse one trial (picklable)."""

    seed: int
    n_sessions: int
    effects: Mapping[str, Any] | None
    design: Mapping[str, Any]
    outcome: str
    test: str
    event: str | None
    random_slope: bool
    nagq: int
    alpha: float
    faults: FaultInjection | None = None


@dataclass(frozen=True)
class _TestedEffect:
    estimate: float
    std_error: float
    p_value: float
    converged: bool
    singular: bool
    messages: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# One trial: simulate, analyse, test
# --------------------------------------------------------------------------------------------


def _tested_effect(study: Study, plan: _TrialPlan) -> _TestedEffect:
    """Fit the analysis model to one simulated study and read the tested ingredient's row."""
    if plan.outcome == SIDE_EFFECT:
        model, term = _side_effect_model(study, plan)
    else:
        model, term = _regrowth_model(study, plan)
    row = model.fixed_effects.loc[term]
    return _TestedEffect(
        estimate=float(row["estimate"]),
        std_error=float(row["std_error"]),
        p_value=float(row["p_value"]),
        converged=bool(model.converged),
        singular=bool(model.singular),
        messages=tuple(str(m) for m in model.messages),
    )


def _regrowth_model(study: Study, plan: _TrialPlan) -> tuple[Any, str]:
    """The regrowth analysis, :func:`mesostats.fit_regrowth` → (MixedResults, term)."""
    fit = fit_regrowth(study, plan.outcome, random_slope=plan.random_slope)
    return fit.model, _effect_term(fit, plan.test)


def _side_effect_model(study: Study, plan: _TrialPlan) -> tuple[Any, str]:
    """The side-effect analysis, :func:`mesostats.fit_side_effects` → (MixedResults, term)."""
    fit = fit_side_effects(study, plan.event, nagq=plan.nagq)
    return fit.model, _effect_term(fit, plan.test)


def _effect_term(fit: Any, ingredient: str) -> str:
    term = fit.effect_terms.get(ingredient)
    if term is None:
        raise ModelSpecError(
            f"{ingredient} was not estimated in this simulated trial (estimated: "
            f"{', '.join(fit.effect_terms) or 'none'}); notes: {' '.join(fit.notes)}"
        )
    return str(term)


def _probe_plan(plan: _TrialPlan, n_subjects: int) -> None:
    """Simulate and analyse one trial in this process so that mistakes in the plan (unknown
    effects keys, outcome, event or test ingredient; a design the model refuses, such as
    aliased ingredients) raise here, once, instead of failing every trial. Numerical trouble
    in this one draw is not an error of the plan and is ignored here."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        study = simulate_study(
            n_subjects,
            plan.n_sessions,
            seed=np.random.SeedSequence(plan.seed),  # not one of the trials' streams
            effects=plan.effects,
            **plan.design,
        )
        if plan.test not in study.ingredients:
            raise ModelSpecError(
                f"test={plan.test!r} is not an active ingredient of the planned cocktails; "
                f"available: {', '.join(study.ingredients) or '(none)'}."
            )
        if plan.outcome == SIDE_EFFECT:
            study.event_table(plan.event)
        else:
            study.outcome_table(plan.outcome)
        try:
            _tested_effect(study, plan)
        except ModelSpecError as err:
            raise ModelSpecError(
                f"a probe trial of the planned design (n_subjects={n_subjects}, not one of the "
                f"counted trials) cannot be analysed: {err} Change the plan (cocktails, "
                "effects, outcome) or, if this is chance at a small size, use more subjects."
            ) from err
        except TRIAL_FAILURES:  # numerical trouble in one draw: the trials count such failures
            pass


def _run_trial(plan: _TrialPlan, n_subjects: int, simulation: int) -> tuple[Any, ...]:
    """Simulate and analyse one trial; a row of :data:`_SIMULATION_FIELDS`. Any error or
    non-convergence becomes the ``error`` text (the trial counts as failed)."""
    t0 = time.perf_counter()
    t1 = t0
    error: str | None = None
    effect = _TestedEffect(math.nan, math.nan, math.nan, False, False)
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")  # warnings are read from the results, not raised
            # the plan's tables were validated once by the probe trial (_probe_plan); the
            # draws are typed without re-validation (the same Study, half the time)
            study = _simulated_study(
                n_subjects,
                plan.n_sessions,
                seed=simulation_seed(plan.seed, n_subjects, simulation),
                effects=plan.effects,
                **plan.design,
            )
            t1 = time.perf_counter()
            if plan.faults is not None:
                plan.faults.before_analysis(n_subjects, simulation)
            effect = _tested_effect(study, plan)
    except TRIAL_FAILURES as err:  # a failed analysis is counted and its reason kept
        error = f"{type(err).__name__}: {err}"
    else:
        if not effect.converged:
            error = "not converged: " + ("; ".join(effect.messages) or "no message")
        elif not math.isfinite(effect.p_value):
            error = f"p-value is {effect.p_value} (std_error {effect.std_error})"
    t2 = time.perf_counter()
    rejected = error is None and effect.p_value < plan.alpha
    return (
        n_subjects,
        simulation,
        effect.estimate,
        effect.std_error,
        effect.p_value,
        rejected,
        effect.converged,
        effect.singular,
        error,
        t1 - t0,
        t2 - t1,
    )


def _run_chunk(
    plan: _TrialPlan, n_subjects: int, simulations: Sequence[int]
) -> list[tuple[Any, ...]]:
    """Run several trials of one sample size (one scheduled task)."""
    return [_run_trial(plan, n_subjects, j) for j in simulations]
