"""Simulation-based power and sample size for a planned mesotherapy trial.

How many patients does the next trial need to show that an ingredient works, given how much
people vary? No formula answers this for the analysis we actually run (a mixed model of
regrowth over irregular visits with dropout, random intercepts and slopes, baseline
adjustment, Satterthwaite tests; or a binomial GLMM of side effects). So we do what Arnold et
al. (2011) and Green & MacLeod (2016, R package ``simr``) recommend: simulate many trials from
the planned design with :func:`mesostats.simulate_study`, analyse each with exactly the model
of the analysis (:func:`mesostats.fit_regrowth` or :func:`mesostats.fit_side_effects`), and
count how often the tested ingredient's effect is significant. Power is that share among the
trials whose fit succeeded, with its Monte Carlo standard error √(p(1−p)/n) and an exact
Clopper–Pearson (1934) interval; fits that raise or do not converge are counted, with their
reasons, never dropped silently.

Reproducible parallelism follows numpy's guidance for parallel streams (O'Neill 2015, PCG;
``numpy.random.SeedSequence``): the trial with index *j* at sample size *n* draws from child
*j* of child *n* of ``SeedSequence(seed)``, i.e. ``SeedSequence(seed, spawn_key=(n, j))``.
Its numbers therefore depend only on (seed, n, j): not on the grid order, the other grid
values, ``n_sims``, the number of workers or the backend. Trials run in chunks (several per
task, to keep scheduling overhead small) with joblib's loky processes or on a
``dask.distributed`` cluster; finished chunks are kept when a worker dies, the chunk that was
running is retried, and one that keeps killing its worker is reported as failed trials.

Why hand-written: simr does this for lme4 in R; no Python package simulates and refits mixed
models with per-trial streams, failure accounting and crash-tolerant scheduling. The
building blocks (joblib, dask.distributed, scipy's beta quantiles, tqdm, matplotlib) are
libraries.

References
----------
Arnold BF, Hogan DR, Colford JM, Hubbard AE (2011). Simulation methods to estimate design
power: an overview for applied research. *BMC Med Res Methodol* 11:94.
Green P, MacLeod CJ (2016). SIMR: an R package for power analysis of generalized linear mixed
models by simulation. *Methods Ecol Evol* 7(4):493–498.
Clopper CJ, Pearson ES (1934). The use of confidence or fiducial limits illustrated in the
case of the binomial. *Biometrika* 26(4):404–413.
Morris TP, White IR, Crowther MJ (2019). Using simulation studies to evaluate statistical
methods. *Stat Med* 38(11):2074–2102 (Monte Carlo standard errors).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
import types
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from mesostats.data.study import Study

__all__ = [
    "POWER_COLUMNS",
    "FaultInjection",
    "SampleSize",
    "plot_power",
    "power",
    "sample_size",
    "simulation_seed",
]

#: Columns of the table :func:`power` returns, in order.
POWER_COLUMNS = [
    "n_subjects",
    "power",
    "mc_se",
    "ci_lower",
    "ci_upper",
    "n_sims",
    "n_failed",
    "n_rejected",
    "n_singular",
]
SIDE_EFFECT = "side_effect"
BACKENDS = ("loky", "dask")
_MIN_SUBJECTS = 4
_AUTO_PROGRESS_TRIALS = 200  # show a bar by default from this many trials (on a terminal)
_NO_RESULT = (math.nan, math.nan, math.nan, False, False, False)  # estimate … singular
_SIMULATION_FIELDS = (
    "n_subjects",
    "simulation",
    "estimate",
    "std_error",
    "p_value",
    "rejected",
    "converged",
    "singular",
    "error",
    "seconds_simulate",
    "seconds_fit",
)


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
    from mesostats.outcomes import fit_regrowth

    fit = fit_regrowth(study, plan.outcome, random_slope=plan.random_slope)
    return fit.model, _effect_term(fit, plan.test)


def _side_effect_model(study: Study, plan: _TrialPlan) -> tuple[Any, str]:
    """The side-effect analysis, :func:`mesostats.fit_side_effects` → (MixedResults, term)."""
    from mesostats.outcomes import fit_side_effects

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


def _run_trial(plan: _TrialPlan, n_subjects: int, simulation: int) -> tuple[Any, ...]:
    """Simulate and analyse one trial; a row of :data:`_SIMULATION_FIELDS`. Any error or
    non-convergence becomes the ``error`` text (the trial counts as failed)."""
    from mesostats.simulate import simulate_study

    t0 = time.perf_counter()
    t1 = t0
    error: str | None = None
    effect = _TestedEffect(math.nan, math.nan, math.nan, False, False)
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")  # warnings are read from the results, not raised
            study = simulate_study(
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
    except Exception as err:  # every failure is counted and its reason kept
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


# --------------------------------------------------------------------------------------------
# Scheduling: in process, joblib (loky) or dask.distributed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    n_subjects: int
    simulations: tuple[int, ...]


@dataclass
class _Collected:
    """Trial rows as they arrive, and a progress callback."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    on_done: Callable[[int], None] = lambda k: None

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.rows.extend(rows)
        self.on_done(len(rows))

    def fail_chunk(self, chunk: _Chunk, reason: str) -> None:
        self.add(
            [
                (chunk.n_subjects, j, *_NO_RESULT, reason, math.nan, math.nan)
                for j in chunk.simulations
            ]
        )


def _chunks(grid: Sequence[int], n_sims: int, chunk_size: int) -> list[_Chunk]:
    return [
        _Chunk(n, tuple(range(start, min(start + chunk_size, n_sims))))
        for n in grid
        for start in range(0, n_sims, chunk_size)
    ]


def _run_in_process(plan: _TrialPlan, chunks: Sequence[_Chunk], out: _Collected) -> None:
    for chunk in chunks:
        for j in chunk.simulations:
            out.add([_run_trial(plan, chunk.n_subjects, j)])


def _run_joblib(
    plan: _TrialPlan, chunks: Sequence[_Chunk], out: _Collected, n_jobs: int, retries: int
) -> None:
    """Chunks on joblib's loky worker processes; survives workers that die.

    A dead worker breaks the whole pool, so every chunk that was not finished is resubmitted
    (finished ones are kept). After a second broken round, the remaining chunks run one at a
    time so that a chunk that kills its worker is identified: it gets ``retries`` more
    attempts, then its trials are reported as failed with the reason.
    """
    from joblib import Parallel, delayed

    pending = list(chunks)
    deaths = 0
    while pending and deaths < 2:
        done: set[_Chunk] = set()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # joblib's note on a lost worker
                results = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")(
                    delayed(_run_chunk_tagged)(plan, chunk) for chunk in pending
                )
                for chunk, rows in results:
                    out.add(rows)
                    done.add(chunk)
        except Exception as err:
            if not _is_worker_death(err):
                raise
            deaths += 1
        pending = [c for c in pending if c not in done]
    for chunk in pending:  # isolate: one chunk per pool, so a death is attributed to it
        last = ""
        for _attempt in range(retries + 1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    [(_, rows)] = Parallel(n_jobs=2, backend="loky")(
                        [delayed(_run_chunk_tagged)(plan, chunk)]
                    )
            except Exception as err:
                if not _is_worker_death(err):
                    raise
                last = f"{type(err).__name__}: {str(err).splitlines()[0]}"
                continue
            out.add(rows)
            break
        else:
            out.fail_chunk(
                chunk,
                "worker process died each time it ran this chunk of trials (also alone, "
                f"{retries + 1} time{'s' if retries else ''}); last error: {last}",
            )


def _run_chunk_tagged(plan: _TrialPlan, chunk: _Chunk) -> tuple[_Chunk, list[tuple[Any, ...]]]:
    return chunk, _run_chunk(plan, chunk.n_subjects, chunk.simulations)


def _is_worker_death(err: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    from joblib.externals.loky.process_executor import TerminatedWorkerError

    return isinstance(err, (TerminatedWorkerError, BrokenProcessPool))


def _dask_client(client: Any, n_jobs: int) -> tuple[Any, Callable[[], None]]:
    """A ``dask.distributed`` client and a function that closes what we opened."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError(
            "backend='dask' needs dask.distributed, which is not installed. Install the "
            "optional extra: pip install 'mesostats[distributed]' (or use backend='loky')."
        ) from err
    if isinstance(client, distributed.Client):
        return client, lambda: None
    if isinstance(client, str):
        opened = distributed.Client(client)
        return opened, opened.close
    if client is not None:
        raise ModelSpecError(
            f"client must be a dask.distributed.Client or a scheduler address such as "
            f"'tcp://127.0.0.1:8786', not {type(client).__name__}."
        )
    try:
        return distributed.default_client(), lambda: None
    except ValueError:  # no client yet: a temporary local cluster with n_jobs processes
        cluster = distributed.LocalCluster(
            n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None
        )
        local = distributed.Client(cluster)

        def close() -> None:
            local.close()
            cluster.close()

        return local, close


def _run_dask(
    plan: _TrialPlan,
    chunks: Sequence[_Chunk],
    out: _Collected,
    client: Any,
    n_jobs: int,
    retries: int,
) -> None:
    """Chunks as dask futures; survives workers that die.

    The scheduler reschedules the tasks of a dead worker itself, and gives up on a task
    (``KilledWorker``) after ``distributed.scheduler.allowed-failures`` deaths. Tasks merely
    queued on a dying worker are blamed too, so chunks that got ``KilledWorker`` are run
    again at the end, one at a time (a death is then theirs alone), up to ``retries`` times;
    a chunk that still kills its worker, or raises after dask's own ``retries``, is
    reported as failed trials with the reason.
    """
    dask_client, close = _dask_client(client, n_jobs)
    import distributed

    tag = uuid.uuid4().hex[:12]

    def submit(chunk: _Chunk, attempt: int) -> Any:
        key = f"mesostats-power-{tag}-{chunk.n_subjects}-{chunk.simulations[0]}-{attempt}"
        return dask_client.submit(
            _run_chunk,
            plan,
            chunk.n_subjects,
            chunk.simulations,
            key=key,
            pure=False,
            retries=retries,
        )

    def outcome(future: Any, chunk: _Chunk) -> str | None:
        """Store the chunk's rows; return why it failed (None when it worked)."""
        try:
            out.add(future.result())
        except distributed.KilledWorker as err:
            return f"KilledWorker: {err}"
        except Exception as err:
            out.fail_chunk(
                chunk, f"chunk failed after {retries} retries: {type(err).__name__}: {err}"
            )
        finally:
            future.release()
        return None

    try:
        futures = {submit(chunk, 0): chunk for chunk in chunks}
        suspects: list[tuple[_Chunk, str]] = []
        for future in distributed.as_completed(list(futures)):
            chunk = futures.pop(future)
            killed = outcome(future, chunk)
            if killed is not None:
                suspects.append((chunk, killed))
        for chunk, killed in suspects:
            for attempt in range(1, retries + 1):
                killed = outcome(submit(chunk, attempt), chunk) or ""
                if not killed:
                    break
            if killed:
                out.fail_chunk(
                    chunk,
                    "worker process died each time it ran this chunk of trials (also alone "
                    f"on the cluster, {retries} more time{'s' if retries != 1 else ''}); "
                    f"last error: {killed}",
                )
    finally:
        close()


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _subject_grid(n_subjects: int | Sequence[int]) -> list[int]:
    values: list[Any] = list(n_subjects) if isinstance(n_subjects, Iterable) else [n_subjects]
    if not values:
        raise ModelSpecError("n_subjects is empty: give a number or a list such as [40, 80, 120].")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
    if bad:
        raise ModelSpecError(f"n_subjects must be whole numbers, got {bad!r}.")
    small = [int(v) for v in values if v < _MIN_SUBJECTS]
    if small:
        raise ModelSpecError(
            f"n_subjects must be ≥ {_MIN_SUBJECTS} (a trial needs people in the cocktail arms "
            f"to estimate ingredient effects), got {small}."
        )
    grid = [int(v) for v in values]
    repeated = sorted({v for v in grid if grid.count(v) > 1})
    if repeated:
        raise ModelSpecError(f"n_subjects lists {repeated} more than once; give each size once.")
    return grid


def _check_options(
    *,
    n_sims: int,
    alpha: float,
    seed: int,
    n_jobs: int,
    backend: str,
    chunk_size: int | None,
    retries: int,
    conf_level: float,
) -> None:
    counts: tuple[tuple[str, Any, int], ...] = (
        ("n_sims", n_sims, 1),
        ("seed", seed, 0),
        ("retries", retries, 0),
    )
    for name, value, low in counts:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ModelSpecError(f"{name} must be a whole number ≥ {low}, got {value!r}.")
    levels: tuple[tuple[str, Any], ...] = (("alpha", alpha), ("conf_level", conf_level))
    for name, level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
            raise ModelSpecError(
                f"{name} must lie strictly between 0 and 1 (e.g. 0.05), got {level!r}."
            )
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ModelSpecError(f"n_jobs must be ≥ 1, or -1 for every core, got {n_jobs!r}.")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ModelSpecError(f"chunk_size must be a whole number ≥ 1, got {chunk_size!r}.")
    if backend not in BACKENDS:
        raise ModelSpecError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")


def _probe_plan(plan: _TrialPlan, n_subjects: int) -> None:
    """Simulate and analyse one trial in this process so that mistakes in the plan (unknown
    effects keys, outcome, event or test ingredient; a design the model refuses, such as
    aliased ingredients) raise here, once, instead of failing every trial. Numerical trouble
    in this one draw is not an error of the plan and is ignored here."""
    from mesostats.simulate import simulate_study

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
        except Exception:  # numerical trouble in one draw: the trials count such failures
            pass


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _clopper_pearson(k: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval (Clopper & Pearson 1934) from beta quantiles."""
    a = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(k > 0, stats.beta.ppf(a, k, n - k + 1), 0.0)
        upper = np.where(k < n, stats.beta.ppf(1.0 - a, k + 1, n - k), 1.0)
    empty = n == 0
    return np.where(empty, np.nan, lower), np.where(empty, np.nan, upper)


def _power_table(sims: pd.DataFrame, grid: Sequence[int], level: float) -> pd.DataFrame:
    by_n = sims.groupby("n_subjects", sort=False)
    counts = pd.DataFrame(
        {
            "n_sims": by_n.size(),
            "n_failed": by_n["error"].agg(lambda e: int(e.notna().sum())),
            "n_rejected": by_n["rejected"].sum(),
            "n_singular": by_n["singular"].sum(),
        }
    ).reindex(grid)
    n_sims = counts["n_sims"].to_numpy(dtype=np.int64)
    n_failed = counts["n_failed"].to_numpy(dtype=np.int64)
    k = counts["n_rejected"].to_numpy(dtype=np.int64)
    n_ok = n_sims - n_failed
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_ok > 0, k / n_ok, np.nan)
        mc_se = np.sqrt(p * (1.0 - p) / n_ok)
    lower, upper = _clopper_pearson(k, n_ok, level)
    return pd.DataFrame(
        {
            "n_subjects": np.asarray(grid, dtype=np.int64),
            "power": p,
            "mc_se": mc_se,
            "ci_lower": lower,
            "ci_upper": upper,
            "n_sims": n_sims,
            "n_failed": n_failed,
            "n_rejected": k,
            "n_singular": counts["n_singular"].to_numpy(dtype=np.int64),
        }
    )


def _progress_bar(progress: bool | None, total: int) -> Any:
    from tqdm import tqdm

    if progress is None:
        isatty = getattr(sys.stderr, "isatty", lambda: False)
        progress = total >= _AUTO_PROGRESS_TRIALS and bool(isatty())
    return tqdm(total=total, disable=not progress, unit="trial", desc="power", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# The public function
# --------------------------------------------------------------------------------------------


def power(
    n_subjects: int | Sequence[int],
    *,
    n_sessions: int = 8,
    effects: Mapping[str, Any] | None = None,
    n_sims: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    n_jobs: int = 1,
    outcome: str = "hair_density",
    test: str = "minoxidil",
    backend: str = "loky",
    client: Any = None,
    progress: bool | None = None,
    event: str | None = None,
    random_slope: bool = True,
    nagq: int = 1,
    n_sites: int = 3,
    cocktails: Mapping[str, Any] | pd.DataFrame | None = None,
    dropout: float = 0.03,
    missing_rate: float = 0.02,
    n_followup: int | None = None,
    chunk_size: int | None = None,
    retries: int = 2,
    conf_level: float = 0.95,
    _faults: FaultInjection | None = None,
) -> pd.DataFrame:
    """Power of a planned trial to show an ingredient's effect, by simulation.

    For each sample size, ``n_sims`` trials are drawn with :func:`mesostats.simulate_study`
    (the planned design, true values overridden by ``effects``), each is analysed with the
    model of the analysis — :func:`mesostats.fit_regrowth` for an outcome,
    :func:`mesostats.fit_side_effects` for ``outcome="side_effect"`` — and the trial counts
    as a rejection when the tested ingredient's effect has p < ``alpha``.

    Parameters
    ----------
    n_subjects : int or sequence of int
        Sample sizes (subjects randomised), each ≥ 4; one row of output each.
    n_sessions : int, default 8
        Visits per subject (the last ones follow-ups), as in ``simulate_study``.
    effects : dict, optional
        True values overriding the simulator's, with the keys of ``simulate_study``'s
        ``truth``, e.g. ``{"ingredient_slopes": {"minoxidil": 0.6}, "slope_sd": 1.0}``.
    n_sims : int, default 500
        Trials per sample size. The Monte Carlo SE of a power near 0.8 is about
        0.4/√n_sims (0.018 for 500).
    alpha : float, default 0.05
        Two-sided significance level of the test of the ingredient effect.
    seed : int, default 0
        Trial *j* at sample size *n* draws from :func:`simulation_seed` ``(seed, n, j)``:
        the same seed gives the same table for any ``n_jobs``, backend or grid order.
    n_jobs : int, default 1
        Worker processes (-1: every core). 1 runs in this process.
    outcome : str, default "hair_density"
        An outcome column of the sessions table, or ``"side_effect"`` to test the
        ingredient's odds ratio of a side effect (any event, or ``event``).
    test : str, default "minoxidil"
        The ingredient whose effect is tested (extra change per week for an outcome; log
        odds ratio for side effects).
    backend : {"loky", "dask"}, default "loky"
        joblib's process pool, or a ``dask.distributed`` cluster (optional extra
        ``mesostats[distributed]``).
    client : dask.distributed.Client or str, optional
        With ``backend="dask"``: a client, or a scheduler address. Default: the current
        client if any, else a temporary ``LocalCluster`` with ``n_jobs`` processes.
    progress : bool, optional
        Show a tqdm bar on stderr. Default: when there are ≥ 200 trials and stderr is a
        terminal.
    event : str, optional
        With ``outcome="side_effect"``: a coded event term (default: any event).
    random_slope : bool, default True
        Passed to ``fit_regrowth`` (False: random intercept only).
    nagq : int, default 1
        Passed to ``fit_side_effects`` (1 = Laplace; more = adaptive Gauss–Hermite).
    n_sites, cocktails, dropout, missing_rate, n_followup
        Design of the planned trial, passed to ``simulate_study``.
    chunk_size : int, optional
        Trials per scheduled task; default about n_sims / (4 · workers), at most 25.
    retries : int, default 2
        Further attempts for a chunk whose worker died (loky) or that raised (dask; a dask
        worker's death is retried by the scheduler's ``allowed-failures``).
    conf_level : float, default 0.95
        Level of the Clopper–Pearson interval.

    Returns
    -------
    pandas.DataFrame
        One row per sample size, in the order given: ``n_subjects, power, mc_se, ci_lower,
        ci_upper, n_sims, n_failed``, then ``n_rejected`` and ``n_singular`` (fits with a
        variance component on its boundary: kept, they are valid tests). ``power`` =
        ``n_rejected / (n_sims − n_failed)``; ``mc_se`` = √(p(1−p)/(n_sims − n_failed)).
        ``attrs``: ``"failures"`` (list of ``{"n_subjects", "simulation", "reason"}``),
        ``"simulations"`` (per-trial columns: estimate, std_error, p_value, rejected, …, as
        a dict of lists: ``pd.DataFrame(df.attrs["simulations"])``) and ``"settings"``
        (the seed and every option).

    Raises
    ------
    ModelSpecError
        Bad sizes or options, unknown ``effects`` keys, outcome, event or ``test``
        ingredient (the message lists those available), or a planned design the analysis
        cannot fit (checked once on a probe trial before any work is spread out).
    ImportError
        ``backend="dask"`` without dask.distributed installed.

    Notes
    -----
    A trial whose fit raises, does not converge, or gives no p-value counts in
    ``n_failed`` and is left out of the power's denominator; its reason is kept in
    ``attrs["failures"]``. Many failures mean the design or model is too rich for that
    sample size, which is itself an answer. The p-value is the unadjusted Satterthwaite
    t-test (regrowth) or Wald z-test (side effects) of the one prespecified ingredient.
    Method: Arnold et al. (2011); Green & MacLeod (2016); see :mod:`mesostats.power`.

    Examples
    --------
    >>> import mesostats as ms
    >>> table = ms.power([40, 80], n_sims=20, seed=1)  # doctest: +SKIP
    >>> list(table.columns[:7])  # doctest: +SKIP
    ['n_subjects', 'power', 'mc_se', 'ci_lower', 'ci_upper', 'n_sims', 'n_failed']
    """
    grid = _subject_grid(n_subjects)
    _check_options(
        n_sims=n_sims,
        alpha=alpha,
        seed=seed,
        n_jobs=n_jobs,
        backend=backend,
        chunk_size=chunk_size,
        retries=retries,
        conf_level=conf_level,
    )
    workers = (os.cpu_count() or 1) if n_jobs < 0 else int(n_jobs)
    if _faults is not None and _faults.kill and workers == 1 and backend == "loky":
        raise ModelSpecError("FaultInjection.kill needs worker processes (n_jobs ≥ 2).")
    design = {
        "n_sites": n_sites,
        "cocktails": cocktails,
        "dropout": dropout,
        "missing_rate": missing_rate,
        "n_followup": n_followup,
    }
    plan = _TrialPlan(
        seed=int(seed),
        n_sessions=n_sessions,
        effects=effects,
        design=design,
        outcome=outcome,
        test=test,
        event=event,
        random_slope=bool(random_slope),
        nagq=nagq,
        alpha=float(alpha),
        faults=_faults,
    )
    _probe_plan(plan, max(grid))

    size = chunk_size or max(1, min(25, math.ceil(n_sims / (4 * workers))))
    chunks = _chunks(grid, int(n_sims), int(size))
    bar = _progress_bar(progress, len(grid) * int(n_sims))
    out = _Collected(on_done=bar.update)
    try:
        if backend == "dask":
            _run_dask(plan, chunks, out, client, workers, retries)
        elif workers == 1:
            _run_in_process(plan, chunks, out)
        else:
            _run_joblib(plan, chunks, out, workers, retries)
    finally:
        bar.close()
    return _assemble(out.rows, grid, plan, conf_level=conf_level, n_sims=int(n_sims))


def _assemble(
    rows: Iterable[tuple[Any, ...]],
    grid: Sequence[int],
    plan: _TrialPlan,
    *,
    conf_level: float,
    n_sims: int,
) -> pd.DataFrame:
    sims = pd.DataFrame.from_records(list(rows), columns=list(_SIMULATION_FIELDS))
    sims = sims.astype({"error": object}).sort_values(["n_subjects", "simulation"])
    sims = sims.reset_index(drop=True)
    table = _power_table(sims, grid, conf_level)
    failed = sims[sims["error"].notna()]
    table.attrs["failures"] = [
        {"n_subjects": int(n), "simulation": int(j), "reason": str(r)}
        for n, j, r in zip(failed["n_subjects"], failed["simulation"], failed["error"], strict=True)
    ]
    table.attrs["simulations"] = {
        col: sims[col].tolist() for col in _SIMULATION_FIELDS if not col.startswith("seconds")
    }
    table.attrs["timing"] = {
        "seconds_simulate": sims["seconds_simulate"].tolist(),
        "seconds_fit": sims["seconds_fit"].tolist(),
    }
    table.attrs["settings"] = {
        "seed": plan.seed,
        "n_sims": n_sims,
        "alpha": plan.alpha,
        "conf_level": conf_level,
        "outcome": plan.outcome,
        "event": plan.event,
        "test": plan.test,
        "n_sessions": plan.n_sessions,
        "effects": copy.deepcopy(plan.effects),
        "random_slope": plan.random_slope,
        "nagq": plan.nagq,
        **{k: v for k, v in plan.design.items() if k != "cocktails"},
        "cocktails": None if plan.design["cocktails"] is None else "custom",
    }
    return table


# --------------------------------------------------------------------------------------------
# Sample size and the power curve
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSize:
    """The smallest sample size in a power grid that reaches a target power.

    Attributes
    ----------
    target : float
        The power aimed at.
    n_subjects : int or None
        Smallest ``n_subjects`` whose estimated power ≥ target (None: none in the grid).
    power, ci_lower, ci_upper : float
        Estimated power at that size and its Clopper–Pearson interval (NaN when None).
    n_subjects_sure : int or None
        Smallest size whose interval's *lower* bound ≥ target: enough even allowing for
        Monte Carlo error.
    n_subjects_possible : int or None
        Smallest size whose interval's *upper* bound ≥ target: smaller sizes are too small
        even allowing for Monte Carlo error.
    """

    target: float
    n_subjects: int | None
    power: float
    ci_lower: float
    ci_upper: float
    n_subjects_sure: int | None
    n_subjects_possible: int | None
    largest: int

    def __str__(self) -> str:
        if self.n_subjects is None:
            return (
                f"No sample size in the grid reaches power {self.target:g} (largest "
                f"{self.largest}); extend the grid upwards."
            )
        sure = (
            f"{self.n_subjects_sure}"
            if self.n_subjects_sure is not None
            else f"more than {self.largest}"
        )
        return (
            f"{self.n_subjects} subjects reach power {self.power:.3f} "
            f"(95% CI {self.ci_lower:.3f}–{self.ci_upper:.3f}) ≥ {self.target:g}; allowing "
            f"for Monte Carlo error the answer lies between {self.n_subjects_possible} and "
            f"{sure}."
        )


def sample_size(table: pd.DataFrame, target: float = 0.8) -> SampleSize:
    """Smallest sample size of a :func:`power` table that reaches the target power.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`power` (columns ``n_subjects, power, ci_lower, ci_upper``).
    target : float, default 0.8
        Power aimed at, in (0, 1).

    Returns
    -------
    SampleSize
        The smallest grid size with estimated power ≥ target, with its interval, and the
        range the answer spans under Monte Carlo error (smallest size whose interval's upper
        bound, resp. lower bound, reaches the target). ``str()`` says it in words.

    Raises
    ------
    ModelSpecError
        ``target`` outside (0, 1) or a table without the columns of :func:`power`.

    Notes
    -----
    Only sizes in the grid are answers: refine the grid around the answer to narrow it.
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ModelSpecError(f"target power must lie strictly between 0 and 1, got {target!r}.")
    needed = ["n_subjects", "power", "ci_lower", "ci_upper"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ModelSpecError(
            f"table lacks columns {missing}; pass the DataFrame that mesostats.power returns."
        )
    ordered = table.sort_values("n_subjects")
    n = ordered["n_subjects"].to_numpy(dtype=np.int64)

    def first(mask: np.ndarray) -> int | None:
        hits = np.flatnonzero(mask)
        return int(n[hits[0]]) if hits.size else None

    with np.errstate(invalid="ignore"):
        reached = ordered["power"].to_numpy(dtype=float) >= target
        sure = ordered["ci_lower"].to_numpy(dtype=float) >= target
        possible = ordered["ci_upper"].to_numpy(dtype=float) >= target
    best = first(reached)
    row = ordered[n == best].iloc[0] if best is not None else None
    return SampleSize(
        target=float(target),
        n_subjects=best,
        power=float(row["power"]) if row is not None else math.nan,
        ci_lower=float(row["ci_lower"]) if row is not None else math.nan,
        ci_upper=float(row["ci_upper"]) if row is not None else math.nan,
        n_subjects_sure=first(sure),
        n_subjects_possible=first(possible),
        largest=int(n.max()) if n.size else 0,
    )


def plot_power(table: pd.DataFrame, *, target: float = 0.8, ax: Axes | None = None) -> Axes:
    """Power curve: estimated power against sample size with Clopper–Pearson intervals.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`power`.
    target : float, default 0.8
        Drawn as a dashed line; the sample size of :func:`sample_size` is marked.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; default a new figure's.

    Returns
    -------
    matplotlib.axes.Axes
        The axes (the figure is not shown).
    """
    import matplotlib.pyplot as plt

    answer = sample_size(table, target)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.0))
    ordered = table.sort_values("n_subjects")
    n = ordered["n_subjects"].to_numpy(dtype=float)
    p = ordered["power"].to_numpy(dtype=float)
    settings = table.attrs.get("settings", {})
    label = settings.get("test", "power")
    ax.fill_between(
        n, ordered["ci_lower"], ordered["ci_upper"], alpha=0.25, color="C0", linewidth=0
    )
    ax.plot(n, p, marker="o", color="C0", label=f"{label}: power ({_conf_label(settings)} CI)")
    ax.axhline(target, linestyle="--", color="0.4", linewidth=1, label=f"target {target:g}")
    if answer.n_subjects is not None:
        ax.axvline(answer.n_subjects, linestyle=":", color="C3", linewidth=1)
        ax.annotate(
            f"n = {answer.n_subjects}",
            (answer.n_subjects, target),
            textcoords="offset points",
            xytext=(-6, -14),
            ha="right",
            color="C3",
        )
    ax.set_ylim(0, 1.02)
    ax.margins(x=0.05)
    ax.set_xlabel("subjects randomised")
    outcome = settings.get("outcome", "")
    what = "odds of side effects" if outcome == SIDE_EFFECT else f"change in {outcome} per week"
    ax.set_ylabel("power")
    alpha = settings.get("alpha")
    ax.set_title(
        f"Power to detect the {label} effect on {what}"
        + (f" (α = {alpha:g})" if alpha is not None else "")
    )
    ax.legend(loc="lower right", frameon=False)
    return ax


def _conf_label(settings: Mapping[str, Any]) -> str:
    """The interval level of a power table's settings as text, e.g. ``"95%"``."""
    level = settings.get("conf_level", 0.95)
    return f"{100 * level:g}%"


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`power`.

    API.md makes ``ms.power`` the function, but importing the submodule ``mesostats.power``
    (``from mesostats.power import sample_size``) binds the package attribute ``power`` to
    the module. Calling the module forwards to the function, so ``ms.power(...)`` works
    whatever was imported first.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return power(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
