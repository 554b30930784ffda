"""Benchmark: load_study on ~1,000,000 sessions against plain pandas.read_csv of the same files.

Writes a study of 100,000 subjects × 10 visits (1,000,000 session rows, plus subjects,
cocktails and adverse events) as CSV to a temporary folder, then times, best of 3 in one run:

- ``pandas.read_csv`` of the four files (no validation, pandas' default C engine), and
- ``mesostats.load_study(folder)`` (read every column as text, parse, validate every rule,
  build the Study).

Prints both times and their ratio (target: ≤ 2×).

Usage::

    python bench/bench_load.py [--subjects 100000] [--visits 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mesostats.data.load import load_study


def write_study(folder: Path, n_subjects: int, n_visits: int, seed: int = 0) -> int:
    """Write a valid study as CSV files; return the number of session rows."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("S", np.arange(n_subjects).astype(str).astype(object).astype(str))
    subjects = pd.DataFrame(
        {
            "subject_id": ids,
            "site": rng.choice(["Lyon", "Porto", "Milano", "Graz"], n_subjects),
            "arm": "randomised",
            "sex": rng.choice(["F", "M"], n_subjects),
            "age": rng.integers(18, 80, n_subjects),
            "diagnosis": rng.choice(["AGA", "FPHL", "TE"], n_subjects),
            "stage": rng.choice(["NH-II", "NH-III", "Ludwig-I", "Ludwig-II"], n_subjects),
        }
    )
    cocktails = pd.DataFrame(
        {
            "cocktail_id": ["P", "A", "A", "B", "B", "C", "C"],
            "ingredient": [
                *("saline", "minoxidil", "biotin", "dutasteride"),
                *("biotin", "minoxidil", "dutasteride"),
            ],
            "concentration": [0.9, 0.5, 5.0, 0.01, 5.0, 0.5, 0.01],
            "unit": ["%", "%", "mg/mL", "%", "mg/mL", "%", "%"],
        }
    )
    n = n_subjects * n_visits
    visit = np.tile(np.arange(1, n_visits + 1), n_subjects)
    day = np.where(visit == 1, -7, 1 + (visit - 2) * 14)
    arm = rng.choice(["P", "A", "B", "C"], n_subjects)
    cocktail = np.repeat(arm, n_visits).astype(object)
    cocktail[(visit == 1) | (visit == n_visits)] = None
    volume = np.where(pd.isna(cocktail), np.nan, 1.0)
    density = np.round(rng.normal(120, 30, n).clip(5, 500), 1)
    sessions = pd.DataFrame(
        {
            "subject_id": np.repeat(ids, n_visits),
            "visit": visit,
            "day": day,
            "cocktail_id": cocktail,
            "volume_ml": volume,
            "hair_density": density,
            "hair_count": np.round(density * 0.65).astype(int),
            "target_area_cm2": 0.65,
            "shaft_diameter_um": np.round(rng.normal(55, 8, n).clip(10, 150), 1),
            "terminal_density": np.round(density * 0.7, 1),
            "vellus_density": np.round(density * 0.3, 1),
            "anagen_pct": np.round(rng.uniform(40, 95, n), 1),
            "gpa_score": rng.integers(-3, 4, n),
            "pain_vas": np.where(pd.isna(cocktail), np.nan, np.round(rng.uniform(0, 10, n), 1)),
            "reactions_assessed": ~pd.isna(cocktail),
            "baseline_flag": visit == 1,
        }
    )
    events = sessions.loc[sessions["reactions_assessed"]].sample(frac=0.1, random_state=seed)
    adverse_events = pd.DataFrame(
        {
            "subject_id": events["subject_id"].to_numpy(),
            "visit": events["visit"].to_numpy(),
            "event": rng.choice(["erythema", "pain", "oedema"], len(events)),
            "severity": rng.choice(["mild", "moderate"], len(events)),
            "serious": False,
            "related": True,
            "verbatim": "redness, local",
        }
    )
    for name, frame in {
        "subjects": subjects,
        "cocktails": cocktails,
        "sessions": sessions,
        "adverse_events": adverse_events,
    }.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return n


def best_of(repeat: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = write_study(folder, args.subjects, args.visits)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"{n:,} session rows, {args.subjects:,} subjects, {size:.0f} MB of CSV")
        files = sorted(folder.glob("*.csv"))

        def read_plain() -> object:
            return [pd.read_csv(p) for p in files]

        def read_study() -> object:
            return load_study(folder)

        t_pandas = best_of(args.repeat, read_plain)
        t_study = best_of(args.repeat, read_study)
    print(f"pandas.read_csv : {t_pandas:6.2f} s (best of {args.repeat})")
    print(f"load_study      : {t_study:6.2f} s (best of {args.repeat})")
    print(f"ratio           : {t_study / t_pandas:6.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
