"""Benchmark: load_redcap on a REDCap export against pandas.read_csv of the same records file.

Two exports, written like ``scripts/make_redcap_example.py`` writes the bundled one (raw CSV,
longitudinal events, a repeating adverse-event instrument, a checkbox, coded choices):

- the bundled example export (150 subjects, ~1,300 sessions, ~1,700 records rows), and
- a simulated study 10× larger (``simulate_study`` with 1,500 subjects × 10 visits),

then times, best of ``--repeat`` in one run:

- ``pandas.read_csv(records.csv)`` (no decoding, no validation), and
- ``mesostats.load_redcap(records.csv, dictionary.csv, cocktails=cocktails.csv)`` (read as
  text, decode choices and checkboxes, build the tables, validate every rule, build the Study).

Usage::

    python bench/bench_redcap.py [--scale 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mesostats.data.redcap import load_redcap
from mesostats.datasets import EXAMPLE_SETTINGS, REDCAP_EXAMPLE_DIR
from mesostats.simulate import simulate_study

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_redcap_example.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("make_redcap_example", SCRIPT)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_export(folder: Path, scale: int) -> int:
    """Write a simulated study ``scale`` × the example as a REDCap export; return its rows."""
    script = _script()
    settings = dict(EXAMPLE_SETTINGS, n_subjects=EXAMPLE_SETTINGS["n_subjects"] * scale)
    study = simulate_study(**settings)
    sites = list(dict.fromkeys(study.subjects["site"]))
    header, rows = script.records_rows(study, sites)
    cocktails = study.cocktails.reset_index(drop=True)
    (folder / "records.csv").write_text(script._csv(header, rows), encoding="utf-8")
    dictionary = script._csv(script.DICTIONARY_HEADER, script.dictionary_rows(sites, cocktails))
    (folder / "dictionary.csv").write_text(dictionary, encoding="utf-8")
    cocktails.to_csv(folder / "cocktails.csv", index=False)
    return len(rows)


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(folder: Path, repeat: int) -> tuple[float, float]:
    files = [folder / f"{n}.csv" for n in ("records", "dictionary")]
    cocktails = folder / "cocktails.csv"
    pandas_s = best_of(repeat, lambda: pd.read_csv(files[0]))
    redcap_s = best_of(repeat, lambda: load_redcap(*files, cocktails=cocktails))
    return pandas_s, redcap_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    cases = [("example export", REDCAP_EXAMPLE_DIR, None)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_export(Path(tmp), args.scale)
        cases.append((f"simulated {args.scale}x", Path(tmp), rows))
        for name, folder, n in cases:
            n = n or sum(1 for _ in open(folder / "records.csv", encoding="utf-8")) - 1
            pandas_s, redcap_s = measure(folder, args.repeat)
            print(
                f"{name:>16}: {n:>7,} records rows  read_csv {pandas_s * 1000:7.1f} ms  "
                f"load_redcap {redcap_s * 1000:7.1f} ms  ratio {redcap_s / pandas_s:5.1f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
