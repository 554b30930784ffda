"""Benchmark: mesostats.fit_mmrm against R's mmrm (TMB), ``us`` covariance, REML.

Data sets and models (each fitted with Satterthwaite and with Kenward–Roger df)::

    fev      FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)   (mmrm's fev_data)
    1000     chg ~ base * visit + arm * visit + us(visit | id)            (bench/mmrm_data.py,
    10000    the same, 10,000 subjects                                    1,000 x 10 visits)

Run from the repository root::

    .venv/bin/python bench/bench_mmrm.py                          # fev, 1000, 10000
    .venv/bin/python bench/bench_mmrm.py --datasets fev,1000 --repeats 5
    .venv/bin/python bench/bench_mmrm.py --skip-r-above 1000      # R only up to 1,000 subjects
    .venv/bin/python bench/bench_mmrm.py --profile 1000           # cProfile of ours, no R

Each tool runs in its own process on the same CSV file: ours in a child of this script
(``--child``), R in ``Rscript bench/r/bench_mmrm.R``. Both warm up once per df method on the
first 50 subjects, then time the best of ``--repeats`` fits (fewer when one fit takes
longer than ``--r-slow-seconds`` / ``--ours-slow-seconds``). What is timed is the same on
both sides: formula and data in, fitted model *and* its coefficient table with the df of
every coefficient out — ours ``fit_mmrm(formula, data, df=...)`` and its ``fixed_effects``;
R ``mmrm(formula, data, method=...)`` and ``summary()`` of it, measured inside R
(R start-up, package loading and CSV reading excluded). R rows are skipped with a note when
``Rscript`` or the mmrm package is missing (CI has no R).

Reported per data set and df method: seconds (elapsed), the ratio R / ours (target ≥ 5),
the CPU seconds of the same fits and their ratio (the fairer measure when other work shares
the machine: elapsed time then includes waiting for a core), both REML
log-likelihoods and ours − R (must be ≥ −1e-6: ours may not stop below mmrm's optimum),
and the largest differences from mmrm's coefficients (in units of mmrm's SE), SEs and df
(relative).
Results go to ``bench/results/mmrm_<timestamp>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mmrm_data
import numpy as np
import pandas as pd
from common import (
    BENCH_DIR,
    best_of,
    fmt,
    machine_info,
    markdown_table,
    rscript,
    run_r,
    save_results,
)

FEV_CSV = BENCH_DIR.parent / "tests" / "reference" / "mmrm" / "fev_data.csv"
FEV_FORMULA = "FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)"
SIM_FORMULA = "chg ~ base * visit + arm * visit + us(visit | id)"
#: R's factor levels where they are not alphabetical (fev_data: SEX Male < Female)
FEV_LEVELS = {"SEX": ["Male", "Female"]}
#: our df method -> mmrm's ``method``
METHODS = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}
WARMUP_SUBJECTS = 50
SPEED_TARGET = 5.0
LOGLIK_FLOOR = -1e-6


# ----------------------------------------------------------------------------- data


def dataset_spec(name: str) -> tuple[str, str]:
    """(formula, subject column) of a data set name (``fev`` or a number of subjects)."""
    return (FEV_FORMULA, "USUBJID") if name == "fev" else (SIM_FORMULA, "id")


def read_data(csv: Path, name: str) -> pd.DataFrame:
    """Read the CSV R reads, with R's factor levels (strings sort as R sorts them)."""
    if name == "fev":
        data = pd.read_csv(csv, dtype={"USUBJID": str, "AVISIT": str, "ARMCD": str})
        for col, levels in FEV_LEVELS.items():
            data[col] = pd.Categorical(data[col], categories=levels)
        return data
    return pd.read_csv(csv, dtype={"id": str, "arm": str, "visit": str})


def write_dataset(name: str, folder: Path, seed: int) -> Path:
    """The CSV both sides read: fev_data as shipped, or a fresh simulated trial."""
    if name == "fev":
        return FEV_CSV
    n_subjects = int(name)
    trial = mmrm_data.simulate_mmrm_trial(n_subjects, seed=seed)
    return mmrm_data.write_csv(trial, folder, f"mmrm_{n_subjects}x{mmrm_data.N_VISITS}")


def first_subjects(data: pd.DataFrame, subject: str, n: int = WARMUP_SUBJECTS) -> pd.DataFrame:
    """The rows of the first ``n`` subjects (in order of appearance): the warm-up fit."""
    keep = pd.unique(data[subject])[:n]
    return data[data[subject].isin(keep)].reset_index(drop=True)


# ----------------------------------------------------------------------------- ours


def load_fit_mmrm() -> tuple[Callable[..., Any] | None, str]:
    """``mesostats.fit_mmrm`` (or the engine's module while it is not exported yet)."""
    try:
        import mesostats

        return mesostats.fit_mmrm, "mesostats.fit_mmrm"
    except (ImportError, AttributeError):
        pass
    try:
        from mesostats.mixed.mmrm import fit_mmrm

        return fit_mmrm, "mesostats.mixed.mmrm.fit_mmrm"
    except ImportError as exc:
        return None, f"mesostats engine not available yet ({type(exc).__name__}: {exc})"


def r_term(name: str) -> str:
    """formulaic's ``ARMCD[T.TRT]:AVISIT[T.VIS2]`` as R spells it (``ARMCDTRT:AVISITVIS2``)."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[T\.(.*?)\]", r"\1", name)


def child(csv: Path, name: str, methods: list[str], repeats: int, slow: float) -> None:
    """In the child process: time ours per df method and print one JSON line."""
    fit_mmrm, engine = load_fit_mmrm()
    if fit_mmrm is None:
        print(json.dumps({"note": engine}))
        return
    formula, subject = dataset_spec(name)
    data = read_data(csv, name)
    out: dict[str, Any] = {"engine": engine, "results": {}}
    for method in methods:
        cpu: list[float] = []  # CPU seconds of every call, the warm-up first

        def fit(d: pd.DataFrame, method: str = method, cpu: list[float] = cpu) -> Any:
            start = time.process_time()
            res = fit_mmrm(formula, d, df=method)
            _ = res.fixed_effects  # the coefficient table with df, as R's summary()
            cpu.append(time.process_time() - start)
            return res

        try:
            seconds, times, res, messages = best_of(
                fit,
                data,
                repeats=repeats,
                warmup=first_subjects(data, subject),
                slow_seconds=slow,
            )
        except Exception as exc:  # report and continue: the engine is being written
            out["results"][method] = {"note": f"error: {type(exc).__name__}: {exc}"}
            continue
        table = res.fixed_effects
        out["results"][method] = {
            "seconds": seconds,
            "times": times,
            "cpu_seconds": min(cpu[1:]),
            "cpu_times": cpu[1:],
            "loglik": float(res.loglik),
            "terms": [r_term(str(t)) for t in table.index],
            "estimate": table["estimate"].tolist(),
            "se": table["std_error"].tolist(),
            "df": table["df"].tolist(),
            "theta": [float(t) for t in np.asarray(res.theta)],
            "converged": bool(res.converged),
            "messages": list(res.messages),
            "warnings": messages,
        }
    print(json.dumps(out))


def run_ours(csv: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Ours in a fresh Python process (this script with ``--child``)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(csv),
        "--datasets",
        name,
        "--methods",
        args.methods,
        "--repeats",
        str(args.repeats),
        "--ours-slow-seconds",
        str(args.ours_slow_seconds),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"note": f"child failed: {proc.stderr[-2000:]}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def profile(csv: Path, name: str, methods: list[str], top: int) -> str:
    """cProfile of one fit per df method (after a warm-up): the ``top`` functions by
    cumulative time."""
    fit_mmrm, engine = load_fit_mmrm()
    if fit_mmrm is None:
        return engine
    formula, subject = dataset_spec(name)
    data = read_data(csv, name)
    report = []
    for method in methods:
        _ = fit_mmrm(formula, first_subjects(data, subject), df=method).fixed_effects
        prof = cProfile.Profile()
        prof.enable()
        _ = fit_mmrm(formula, data, df=method).fixed_effects
        prof.disable()
        buffer = io.StringIO()
        pstats.Stats(prof, stream=buffer).sort_stats("cumulative").print_stats(top)
        report.append(f"### {engine}({formula!r}, df={method!r}) on {name}\n{buffer.getvalue()}")
    return "\n".join(report)


# ----------------------------------------------------------------------------- R


def r_available() -> str:
    """ "" when Rscript and R's mmrm are there, else why the R rows are skipped."""
    exe = rscript()
    if exe is None:
        return "Rscript not found: R rows skipped (R is optional; CI has none)."
    probe = subprocess.run(
        [exe, "-e", "quit(status = !requireNamespace('mmrm', quietly = TRUE))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return "R package mmrm not installed: R rows skipped (see bench/README.md, R peers)."
    return ""


def run_mmrm(csv: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """mmrm timed inside R (bench/r/bench_mmrm.R)."""
    formula, subject = dataset_spec(name)
    levels = ";".join(f"{c}={'|'.join(v)}" for c, v in FEV_LEVELS.items()) if name == "fev" else ""
    methods = ",".join(METHODS[m] for m in args.methods.split(","))
    try:
        return run_r(
            "bench_mmrm.R",
            csv,
            [formula, methods, subject, args.repeats, args.r_slow_seconds, levels],
            timeout=args.r_timeout,
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"note": f"R failed: {type(exc).__name__}: {str(exc)[-1500:]}"}


# ----------------------------------------------------------------------------- comparison


def max_diff(
    ours: dict[str, Any], r: dict[str, Any], key: str, scale: str | None = None
) -> float | None:
    """Largest |ours − R| / |R[scale or key]| over the coefficients (None unless all match).

    Coefficients are compared relative to R's SE (``scale="se"``): a relative difference
    of a coefficient near zero says nothing about the fit.
    """
    theirs = dict(zip(r["terms"], zip(r[key], r[scale or key], strict=True), strict=True))
    pairs = [(o, *theirs[t]) for t, o in zip(ours["terms"], ours[key], strict=True) if t in theirs]
    if not pairs or len(pairs) != len(theirs):
        return None
    return max(abs(o - t) / max(abs(s), 1e-12) for o, t, s in pairs)


def compare(name: str, method: str, ours: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    """One table row: ours and R for a data set and df method."""
    row: dict[str, Any] = {"dataset": name, "method": method}
    mine = ours.get("results", {}).get(method, {"note": ours.get("note")})
    theirs = next((x for x in r.get("results", []) if x["method"] == METHODS[method]), None)
    row.update(
        ours_seconds=mine.get("seconds"),
        ours_cpu=mine.get("cpu_seconds"),
        ours_loglik=mine.get("loglik"),
    )
    notes = [n for n in (mine.get("note"), r.get("note")) if n]
    if mine.get("times") and len(mine["times"]) < ours.get("repeats", len(mine["times"])):
        notes.append(f"ours best of {len(mine['times'])}")
    if theirs is not None:
        row.update(
            r_seconds=theirs["seconds"], r_cpu=theirs.get("cpu_seconds"), r_loglik=theirs["logLik"]
        )
        if len(theirs["times"]) < r.get("repeats", 0):
            notes.append(f"R best of {len(theirs['times'])}")
        if not theirs.get("converged", True):
            notes.append("R: not converged")
    if row.get("ours_seconds") and row.get("r_seconds"):
        row["ratio"] = row["r_seconds"] / row["ours_seconds"]
        row["fast_enough"] = row["ratio"] >= SPEED_TARGET
    if row.get("ours_cpu") and row.get("r_cpu"):
        row["cpu_ratio"] = row["r_cpu"] / row["ours_cpu"]
    if row.get("ours_loglik") is not None and row.get("r_loglik") is not None:
        row["dloglik"] = row["ours_loglik"] - row["r_loglik"]
        row["loglik_ok"] = row["dloglik"] >= LOGLIK_FLOOR
    if theirs is not None and "terms" in mine:
        row["rel_estimate"] = max_diff(mine, theirs, "estimate", "se")
        row["rel_se"] = max_diff(mine, theirs, "se")
        row["rel_df"] = max_diff(mine, theirs, "df")
    row["note"] = "; ".join(notes) or None
    return row


COLUMNS = [
    ("dataset", "data", ""),
    ("method", "df", ""),
    ("ours_seconds", "ours (s)", ".3f"),
    ("r_seconds", "mmrm (s)", ".3f"),
    ("ratio", "mmrm / ours", ".1f"),
    ("fast_enough", "≥ 5×", ""),
    ("ours_cpu", "ours CPU (s)", ".3f"),
    ("r_cpu", "mmrm CPU (s)", ".3f"),
    ("cpu_ratio", "CPU ratio", ".1f"),
    ("ours_loglik", "logLik ours", ".6f"),
    ("dloglik", "ours − mmrm", ".2e"),
    ("loglik_ok", "≥ −1e-6", ""),
    ("rel_estimate", "max \\|Δ coef\\| / SE", ".1e"),
    ("rel_se", "max rel. Δ SE", ".1e"),
    ("rel_df", "max rel. Δ df", ".1e"),
    ("note", "note", ""),
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MMRM benchmark: mesostats vs R's mmrm")
    parser.add_argument("--datasets", default="fev,1000,10000", help="fev and/or subjects")
    parser.add_argument("--methods", default="satterthwaite,kenward-roger")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per tool (best)")
    parser.add_argument("--engines", default="ours,r", help="ours and/or r")
    parser.add_argument(
        "--skip-r-above",
        type=int,
        default=None,
        metavar="N",
        help="no R on simulated trials of more than N subjects (10,000 x 10 with KR: minutes)",
    )
    parser.add_argument("--r-slow-seconds", type=float, default=30.0)
    parser.add_argument("--ours-slow-seconds", type=float, default=20.0)
    parser.add_argument("--r-timeout", type=float, default=7200.0, help="per Rscript run")
    parser.add_argument("--seed", type=int, default=mmrm_data.DEFAULT_SEED)
    parser.add_argument("--profile", metavar="DATASET", help="cProfile ours on one data set")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument("--child", metavar="CSV", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
    methods = args.methods.split(",")
    if args.child:
        child(Path(args.child), args.datasets, methods, args.repeats, args.ours_slow_seconds)
        return
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="mesostats-bench-") as tmp:
            csv = write_dataset(args.profile, Path(tmp), args.seed)
            print(profile(csv, args.profile, methods, args.top))
        return
    info = machine_info()
    engines = set(args.engines.split(","))
    r_note = r_available() if "r" in engines else "R not requested (--engines)."
    notes = [r_note] if r_note else []
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mesostats-bench-") as tmp:
        for name in args.datasets.split(","):
            csv = write_dataset(name, Path(tmp), args.seed)
            n_obs = len(read_data(csv, name).dropna())
            print(f"== {name}: {n_obs} observations", flush=True)
            ours = run_ours(csv, name, args) if "ours" in engines else {"note": "not run"}
            ours["repeats"] = args.repeats
            print(f"   ours: {_brief(ours, 'seconds')}", flush=True)
            if r_note:
                r: dict[str, Any] = {"note": "not run"}
            elif name != "fev" and args.skip_r_above and int(name) > args.skip_r_above:
                r = {"note": f"R not run above {args.skip_r_above} subjects (--skip-r-above)"}
            else:
                r = run_mmrm(csv, name, args)
            print(f"   mmrm: {_brief(r, 'seconds')}", flush=True)
            raw[name] = {"n_obs": n_obs, "ours": ours, "mmrm": r}
            rows.extend(compare(name, m, ours, r) for m in methods)
    table = markdown_table(rows, COLUMNS)
    print()
    print(f"MMRM REML, us; {info['date']}, load {info['load_average']}")
    print(f"  fev: `{FEV_FORMULA}`; simulated: `{SIM_FORMULA}`")
    for note in notes:
        print(note)
    print(table)
    path = save_results(
        "mmrm",
        {"machine": info, "notes": notes, "rows": rows, "raw": raw, "args": vars(args)},
    )
    print(f"\nsaved {path}")


def _brief(result: dict[str, Any], key: str) -> str:
    """Progress line: the seconds per method, or the note."""
    found = result.get("results")
    if isinstance(found, dict):
        return ", ".join(f"{m} {fmt(v.get(key, v.get('note')))}" for m, v in found.items())
    if isinstance(found, list):
        return ", ".join(f"{v['method']} {fmt(v.get(key))}" for v in found)
    return str(result.get("note"))


if __name__ == "__main__":
    main()
