"""Seeded benchmark trials for the mixed-model benchmarks (numpy only).

This generator is deliberately separate from ``mesostats.simulate``: the benchmark data must
stay the same from one release to the next, whatever the package simulator learns to do, so
that timings and log-likelihoods are comparable over time. Every value is drawn with numpy's
``Generator`` (PCG64) from a fixed seed, then rounded (density to 4 decimals, baseline to
2) so that the CSV text read by R holds exactly the numbers the Python engines fit.

The trial: each subject is randomised (balanced, then shuffled) to one of four cocktails,

==================  =========  ===========  ======
cocktail            minoxidil  dutasteride  biotin
==================  =========  ===========  ======
saline placebo      0          0            0
minoxidil+biotin    1          0            1
dutasteride+biotin  0          1            1
all three           1          1            1
==================  =========  ===========  ======

and seen at ``n_sessions`` sessions two weeks apart (``week`` = 0, 2, 4, ...).

* ``density`` (hairs/cm², the LMM outcome)::

      density = 20 + 0.85·baseline + (0.3 + 1.2·minoxidil + 0.9·dutasteride + 0·biotin)·week
                + b0_i + b1_i·week + e,
      (b0_i, b1_i) ~ N(0, [[30², −0.3·30·0.8], [·, 0.8²]]),  e ~ N(0, 7²)

* ``side_effect`` (0/1 per session, the GLMM outcome)::

      logit P = −2 + 0.5·minoxidil + 0.8·dutasteride + 0·biotin + 0.02·week + v_i,
      v_i ~ N(0, 1)

Use ``python bench/simdata.py --subjects 200 --sessions 8`` to write one trial as CSV into a
fresh temporary folder (never into the repository).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: benchmark sizes (label -> (subjects, sessions)); the memory check uses MEMORY_SIZE
SIZES: dict[str, tuple[int, int]] = {
    "200x8": (200, 8),
    "2000x10": (2_000, 10),
    "20000x10": (20_000, 10),
}
MEMORY_SIZE: tuple[int, int] = (1_000_000, 10)
DEFAULT_SEED = 20_240_611

#: ingredient indicators per cocktail (rows: placebo, mino+biotin, duta+biotin, all three)
COCKTAILS = np.array([[0, 0, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.int64)
INGREDIENTS = ("minoxidil", "dutasteride", "biotin")

#: the true values used by :func:`simulate_trial`
TRUTH: dict[str, float] = {
    "density_intercept": 20.0,
    "density_baseline": 0.85,
    "density_week": 0.3,
    "density_week_minoxidil": 1.2,
    "density_week_dutasteride": 0.9,
    "density_week_biotin": 0.0,
    "sd_intercept": 30.0,
    "sd_week": 0.8,
    "corr_intercept_week": -0.3,
    "sd_residual": 7.0,
    "baseline_mean": 160.0,
    "baseline_sd": 25.0,
    "side_effect_intercept": -2.0,
    "side_effect_minoxidil": 0.5,
    "side_effect_dutasteride": 0.8,
    "side_effect_biotin": 0.0,
    "side_effect_week": 0.02,
    "side_effect_sd_subject": 1.0,
}


def size_label(n_subjects: int, n_sessions: int) -> str:
    """Return the label used in tables and file names, e.g. ``"2000x10"``."""
    return f"{n_subjects}x{n_sessions}"


def simulate_trial(n_subjects: int, n_sessions: int, *, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Draw one benchmark trial (one row per subject × session), vectorised.

    Parameters
    ----------
    n_subjects, n_sessions : int
        Trial size; every subject attends every session.
    seed : int
        Seed of the trial. The same (n_subjects, n_sessions, seed) gives the same rows.

    Returns
    -------
    DataFrame
        Columns ``subject`` (int, 1-based), ``week``, ``minoxidil``, ``dutasteride``, ``biotin``
        (0/1), ``baseline``, ``density`` and ``side_effect`` (0/1), sorted by subject and week.
    """
    if n_subjects < 4 or n_sessions < 2:
        raise ValueError(
            f"need at least 4 subjects and 2 sessions, got {n_subjects} x {n_sessions}"
        )
    t = TRUTH
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_subjects, n_sessions]))
    cocktail = rng.permutation(np.resize(np.arange(4), n_subjects))
    ingredients = COCKTAILS[cocktail]  # (n_subjects, 3)
    baseline = np.round(rng.normal(t["baseline_mean"], t["baseline_sd"], n_subjects), 2)

    sd = np.array([t["sd_intercept"], t["sd_week"]])
    corr = np.array([[1.0, t["corr_intercept_week"]], [t["corr_intercept_week"], 1.0]])
    person = rng.multivariate_normal(np.zeros(2), corr * np.outer(sd, sd), n_subjects)
    v = rng.normal(0.0, t["side_effect_sd_subject"], n_subjects)

    n = n_subjects * n_sessions
    subject_index = np.repeat(np.arange(n_subjects), n_sessions)
    week = np.tile(2.0 * np.arange(n_sessions), n_subjects)
    ing = ingredients[subject_index]

    week_effect = (
        t["density_week"]
        + t["density_week_minoxidil"] * ing[:, 0]
        + t["density_week_dutasteride"] * ing[:, 1]
        + t["density_week_biotin"] * ing[:, 2]
    )
    density = (
        t["density_intercept"]
        + t["density_baseline"] * baseline[subject_index]
        + (week_effect + person[subject_index, 1]) * week
        + person[subject_index, 0]
        + rng.normal(0.0, t["sd_residual"], n)
    )
    eta = (
        t["side_effect_intercept"]
        + t["side_effect_minoxidil"] * ing[:, 0]
        + t["side_effect_dutasteride"] * ing[:, 1]
        + t["side_effect_biotin"] * ing[:, 2]
        + t["side_effect_week"] * week
        + v[subject_index]
    )
    side_effect = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)

    return pd.DataFrame(
        {
            "subject": subject_index + 1,
            "week": week,
            "minoxidil": ing[:, 0],
            "dutasteride": ing[:, 1],
            "biotin": ing[:, 2],
            "baseline": baseline[subject_index],
            "density": np.round(density, 4),
            "side_effect": side_effect,
        }
    )


def write_csv(data: pd.DataFrame, directory: Path, name: str) -> Path:
    """Write ``data`` as ``directory/name.csv`` (full precision, no index) and return the path."""
    path = Path(directory) / f"{name}.csv"
    data.to_csv(path, index=False)
    return path


def write_temp_csv(data: pd.DataFrame, name: str) -> Path:
    """Write ``data`` as ``name.csv`` into a fresh temporary folder (never into the
    repository) and return the path: what the data scripts' command lines do."""
    return write_csv(data, Path(tempfile.mkdtemp(prefix="mesostats-bench-")), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    data = simulate_trial(args.subjects, args.sessions, seed=args.seed)
    print(write_temp_csv(data, f"trial_{size_label(args.subjects, args.sessions)}"))


if __name__ == "__main__":
    main()
