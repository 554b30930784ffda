"""Regenerate the bundled example study, mesostats/datasets/example/*.csv.

Usage::

    python scripts/make_example_study.py            # rewrite the bundled files
    python scripts/make_example_study.py --out DIR  # write them elsewhere

The output is a pure function of ``mesostats.datasets.EXAMPLE_SETTINGS`` (fixed seed), so the
committed files equal this script's output; tests/test_datasets.py checks it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mesostats.datasets import EXAMPLE_DIR, EXAMPLE_SETTINGS
from mesostats.simulate import simulate_tables, write_tables


def write_example(folder: Path) -> list[Path]:
    """Write the four example tables into ``folder`` and return their paths."""
    tables, _truth = simulate_tables(**EXAMPLE_SETTINGS)
    return write_tables(tables, folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "mesostats" / "datasets" / "example",
        help=f"output folder (default: the package's {EXAMPLE_DIR.name}/ folder in this checkout)",
    )
    args = parser.parse_args(argv)
    for path in write_example(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
