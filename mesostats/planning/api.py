"""The public entry point :func:`power`: checks the options, probes the plan once, schedules
the trials and assembles the table. Method and references: :mod:`mesostats.planning`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.planning.schedule import _chunks, _Collected, _run_dask, _run_in_process, _run_joblib
from mesostats.planning.table import (
    PowerTable,
    PowerTrials,
    _power_table,
    _progress_bar,
)
from mesostats.planning.trials import (
    _MIN_SUBJECTS,
    _SIMULATION_FIELDS,
    BACKENDS,
    TRIAL_COLUMNS,
    FaultInjection,
    _probe_plan,
    _TrialPlan,
)
from mesostats.simulate.parameters import DEFAULT_DROPOUT, DEFAULT_MISSING_RATE

if TYPE_CHECKING:
    pass


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
    dropout: float = DEFAULT_DROPOUT,
    missing_rate: float = DEFAULT_MISSING_RATE,
    n_followup: int | None = None,
    chunk_size: int | None = None,
    retries: int = 2,
    conf_level: float = 0.95,
    _faults: FaultInjection | None = None,
) -> PowerTable:
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
        A :class:`~mesostats.planning.table.PowerTable`: its ``trials`` attribute holds the
        per-trial records (``trials.simulations``: estimate, std_error, p_value, rejected,
        …; ``trials.failures``: ``{"n_subjects", "simulation", "reason"}`` per failed
        trial; ``trials.timing``; ``trials.settings``: the seed and every option).

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
    ``trials.failures``. Many failures mean the design or model is too rich for that
    sample size, which is itself an answer. The p-value is the unadjusted Satterthwaite
    t-test (regrowth) or Wald z-test (side effects) of the one prespecified ingredient.
    Method: Arnold et al. (2011); Green & MacLeod (2016); see :mod:`mesostats.planning`.

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
) -> PowerTable:
    sims = pd.DataFrame.from_records(list(rows), columns=list(_SIMULATION_FIELDS))
    sims = sims.astype({"error": object}).sort_values(["n_subjects", "simulation"])
    sims = sims.reset_index(drop=True)
    table = _power_table(sims, grid, conf_level)
    settings = {
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
    out = PowerTable(table)
    out.trials = PowerTrials(
        simulations=sims[TRIAL_COLUMNS].reset_index(drop=True),
        timing=sims[["seconds_simulate", "seconds_fit"]].reset_index(drop=True),
        settings=settings,
    )
    return out
