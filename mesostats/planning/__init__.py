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

Files: ``trials`` (streams, plan, one trial), ``schedule`` (in process, joblib, dask),
``table`` (the power table), ``api`` (:func:`power`), ``sample_size`` (:func:`sample_size`,
:func:`plot_power`).
"""

from __future__ import annotations

from mesostats.planning.api import power
from mesostats.planning.sample_size import SampleSize, plot_power, sample_size
from mesostats.planning.table import POWER_COLUMNS, PowerTable, PowerTrials
from mesostats.planning.trials import TRIAL_COLUMNS, FaultInjection, simulation_seed

__all__ = [
    "POWER_COLUMNS",
    "TRIAL_COLUMNS",
    "FaultInjection",
    "PowerTable",
    "PowerTrials",
    "SampleSize",
    "plot_power",
    "power",
    "sample_size",
    "simulation_seed",
]
