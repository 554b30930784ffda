"""Benchmark: load_study on other sources than plain CSV, against pandas on the same data.

Writes the study of ``bench_load.py`` (100,000 subjects × 10 visits = 1,000,000 session rows,
plus subjects, cocktails and adverse events; the adverse-event text holds accented letters)

- as **European CSV** (``;`` delimiter, ``,`` decimal mark, Windows-1252), and times
  ``pandas.read_csv(sep=";", decimal=",", encoding="cp1252")`` of the four files (told the
  dialect; no validation) against ``mesostats.load_study(folder)`` (dialect detected, every
  rule validated, Study built);
- into a **SQLite** database (the tables as ``ms.save_study`` writes them, primary keys
  declared), and times ``pandas.read_sql("SELECT * FROM <table>")`` of the four tables against
  ``mesostats.load_study("sqlite:///…")``.

Each time is the best of ``--repeat`` runs in one process. Targets: ≤ 2× pandas for both.

Usage::

    python bench/bench_sources.py [--subjects 100000] [--visits 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import best_of, write_study

from mesostats.data.load import load_study
from mesostats.data.save import save_study

TABLES = ("subjects", "cocktails", "sessions", "adverse_events")


def european_copy(plain: Path, folder: Path) -> None:
    """The CSV files of ``plain`` rewritten as Excel writes them in France."""
    folder.mkdir()
    for name in TABLES:
        frame = pd.read_csv(plain / f"{name}.csv")
        if "verbatim" in frame:
            frame["verbatim"] = "érythème, local"
        frame.to_csv(folder / f"{name}.csv", sep=";", decimal=",", index=False, encoding="cp1252")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("csv", "sql"), help="time one source only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "plain").mkdir()
        n = write_study(root / "plain", args.subjects, args.visits)
        folder = root / "eu"
        european_copy(root / "plain", folder)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"{n:,} session rows, {args.subjects:,} subjects")
        print(f"European CSV (';', ',' decimals, cp1252): {size:.0f} MB")

        def eu_pandas() -> object:
            return [
                pd.read_csv(folder / f"{name}.csv", sep=";", decimal=",", encoding="cp1252")
                for name in TABLES
            ]

        if args.only != "sql":
            t_eu_pandas = best_of(args.repeat, eu_pandas)
            t_eu_study = best_of(args.repeat, lambda: load_study(folder))
            print(f"  pandas.read_csv : {t_eu_pandas:6.2f} s (best of {args.repeat})")
            print(f"  load_study      : {t_eu_study:6.2f} s")
            print(f"  ratio           : {t_eu_study / t_eu_pandas:6.2f}x (target <= 2x)")
        if args.only == "csv":
            return

        url = f"sqlite:///{root / 'study.db'}"
        start = time.perf_counter()
        save_study(load_study(root / "plain"), url)
        size = (root / "study.db").stat().st_size / 1e6
        print(f"SQLite database: {size:.0f} MB (save_study: {time.perf_counter() - start:.1f} s)")
        engine = sa.create_engine(url)

        def sql_pandas() -> object:
            with engine.connect() as connection:
                return [pd.read_sql(f"SELECT * FROM {name}", connection) for name in TABLES]

        t_sql_pandas = best_of(args.repeat, sql_pandas)
        t_sql_study = best_of(args.repeat, lambda: load_study(url))
        engine.dispose()
        print(f"  pandas.read_sql : {t_sql_pandas:6.2f} s (best of {args.repeat})")
        print(f"  load_study      : {t_sql_study:6.2f} s")
        print(f"  ratio           : {t_sql_study / t_sql_pandas:6.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
