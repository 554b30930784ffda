"""Timing harness shared by the benchmark scripts (bench_lmm, bench_glmm, bench_nb,
bench_crossed): the command-line options they share, the timing of ours, the rows of the R
sides, the result tables and the JSON output.

Timing rules: an optional warm-up fit, then the best of ``repeats`` timed fits, ``gc`` before
each; peers in R are timed inside R (``run_r``) so that R start-up and CSV reading are not
counted. Results go to ``bench/results/`` (git-ignored) as JSON with the machine's details.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
NOT_AVAILABLE = "mesostats engine not available yet"
LOGLIK_TOL = 1e-4
WARMUP_SUBJECTS = 50
CALIBRATION_SUBJECTS = 200
R_SLOW_SECONDS = 30.0


def parse_size(label: str) -> tuple[int, int]:
    """``"200x8"`` -> (200, 8): subjects x sessions."""
    subjects, sessions = label.lower().split("x")
    return int(subjects), int(sessions)


def bench_parser(
    description: str,
    *,
    sizes: str,
    engines: str,
    seed: int,
    r_slow_seconds: bool = True,
    statsmodels_max_seconds: bool = False,
) -> argparse.ArgumentParser:
    """The options every fit benchmark takes: ``--sizes``, ``--repeats``, ``--engines``,
    ``--seed``, and where the script has such peers ``--r-slow-seconds`` and
    ``--statsmodels-max-seconds``; the script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", default=sizes, help="e.g. 200x8,2000x10")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per engine (best)")
    parser.add_argument("--engines", default=engines, help=f"any of {engines}")
    if r_slow_seconds:
        parser.add_argument(
            "--r-slow-seconds",
            type=float,
            default=R_SLOW_SECONDS,
            help="R stops repeating a fit slower than this (seconds)",
        )
    if statsmodels_max_seconds:
        parser.add_argument("--statsmodels-max-seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=seed)
    return parser


def load_engine(name: str) -> tuple[Callable[..., Any] | None, str]:
    """Return (``mesostats.<name>``, "") or (None, reason) when it cannot be imported yet."""
    try:
        import mesostats

        return getattr(mesostats, name), ""
    except (ImportError, AttributeError) as exc:
        return None, f"{NOT_AVAILABLE} ({type(exc).__name__}: {exc})"


def best_of(
    fit: Callable[[pd.DataFrame], Any],
    data: pd.DataFrame,
    *,
    repeats: int,
    warmup: pd.DataFrame | None,
    slow_seconds: float = math.inf,
) -> tuple[float, list[float], Any, list[str]]:
    """Time ``fit(data)``: optional warm-up, then up to ``repeats`` runs; return the best.

    Stops repeating once one run took longer than ``slow_seconds``. Warnings raised by the
    fits are collected (text only) instead of printed.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if warmup is not None:
            fit(warmup)
        caught.clear()
        times: list[float] = []
        result = None
        for _ in range(repeats):
            gc.collect()
            start = time.perf_counter()
            result = fit(data)
            times.append(time.perf_counter() - start)
            if times[-1] > slow_seconds:
                break
        messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return min(times), times, result, messages


def time_ours(
    row: dict[str, Any],
    fit: Callable[[pd.DataFrame], Any],
    data: pd.DataFrame,
    *,
    repeats: int,
    describe: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """Time ``fit(data)`` (a warm-up on :func:`warmup_rows`, then the best of ``repeats``)
    into ``row``, with ``describe(result)``'s fields. A fit or a description that fails is
    reported in the row's note (the engine may be in progress), not raised."""
    try:
        seconds, times, res, msgs = best_of(fit, data, repeats=repeats, warmup=warmup_rows(data))
    except Exception as exc:
        row["note"] = f"error: {type(exc).__name__}: {exc}"
        return row
    row.update(seconds=seconds, times=times, warnings=msgs)
    try:
        row.update(describe(res))
    except Exception as exc:
        row["note"] = f"results incomplete: {type(exc).__name__}: {exc}"
    return row


def ours_fields(result: Any) -> dict[str, Any]:
    """The fields of a row every fit of ours has: logLik, fixed effects and their SEs,
    convergence and messages."""
    return {
        "loglik": float(result.loglik),
        "fixef": ours_fixef(result),
        "se": ours_fixef(result, "std_error"),
        "converged": bool(result.converged),
        "messages": list(result.messages),
    }


def warmup_rows(data: pd.DataFrame) -> pd.DataFrame:
    """The first WARMUP_SUBJECTS subjects: a cheap fit that loads every code path."""
    return data[data["subject"] <= WARMUP_SUBJECTS].reset_index(drop=True)


def extrapolate_seconds(reference: tuple[int, float], n_obs: int, exponent: float) -> float:
    """Predicted time at ``n_obs`` from (n_obs, seconds) measured at a smaller size.

    ``seconds * (n_obs / n_ref) ** exponent``; the exponents used are the growth measured on
    this machine (statsmodels MixedLM ~1.5, BinomialBayesMixedGLM.fit_vb ~2.5).
    """
    n_ref, seconds = reference
    return seconds * (n_obs / n_ref) ** exponent


def time_unless_slow(
    fit: Callable[[pd.DataFrame], Any],
    data: pd.DataFrame,
    *,
    repeats: int,
    max_seconds: float,
    forced: bool,
    reference: tuple[int, float] | None,
    exponent: float,
    slow_seconds: float = 20.0,
) -> tuple[dict[str, Any], tuple[int, float] | None]:
    """Time a slow peer, or skip it when its extrapolated time exceeds ``max_seconds``.

    ``reference`` is (n_obs, seconds) measured at a smaller size in this run; without one, a
    calibration fit on the first ``CALIBRATION_SUBJECTS`` subjects provides it (data no larger
    than that are simply fitted). ``forced`` sizes always run. Returns
    ``{"seconds", "times", "result", "messages"[, "note"]}`` or ``{"note"}`` (skipped), and the
    reference for the next size.
    """
    n_obs = len(data)
    if reference is None and not forced and data["subject"].max() > CALIBRATION_SUBJECTS:
        sub = data[data["subject"] <= CALIBRATION_SUBJECTS]
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(sub)
        reference = (len(sub), time.perf_counter() - start)
    if reference is not None and not forced:
        predicted = extrapolate_seconds(reference, n_obs, exponent)
        if predicted > max_seconds:
            note = (
                f"skipped: extrapolated ~{predicted:.0f} s (> {max_seconds:.0f} s) from "
                f"{reference[1]:.1f} s at {reference[0]} rows (time ∝ rows^{exponent:g})"
            )
            return {"note": note}, reference
    seconds, times, result, messages = best_of(
        fit, data, repeats=repeats, warmup=warmup_rows(data), slow_seconds=slow_seconds
    )
    out: dict[str, Any] = {
        "seconds": seconds,
        "times": times,
        "result": result,
        "messages": messages,
    }
    if len(times) < repeats:
        out["note"] = f"best of {len(times)} (one fit > {slow_seconds:g} s)"
    return out, (n_obs, seconds)


def peer_row(
    fit: Callable[[pd.DataFrame], Any],
    data: pd.DataFrame,
    *,
    size: str,
    to_row: Callable[[Any, str, dict[str, Any]], dict[str, Any]],
    skipped: dict[str, Any],
    **timing_options: Any,
) -> tuple[dict[str, Any], tuple[int, float] | None]:
    """The row of a slow peer timed by :func:`time_unless_slow` (``timing_options``):
    ``to_row(result, size, timing)`` when it ran, ``skipped`` (engine, ...) with the size and
    the timing's note when its extrapolated time was too long; and the reference for the
    next size."""
    timing, reference = time_unless_slow(fit, data, **timing_options)
    if "result" in timing:
        return to_row(timing["result"], size, timing), reference
    return {"size": size, **skipped, **timing}, reference


def trials(
    sizes: str, make: Callable[[int, int], pd.DataFrame]
) -> Iterator[tuple[str, pd.DataFrame, Path]]:
    """(label, data, folder) for each size of ``--sizes`` (``"200x8,2000x10"``): the trial
    ``make(subjects, sessions)`` and a temporary folder for the CSVs the R sides read."""
    with tempfile.TemporaryDirectory(prefix="mesostats-bench-") as tmp:
        for label in sizes.split(","):
            yield label, make(*parse_size(label)), Path(tmp)


def rscript() -> str | None:
    """Path of Rscript, or None (CI has no R)."""
    return shutil.which("Rscript")


def run_r(script: str, csv: Path, args: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run ``Rscript bench/r/<script> CSV OUT.json *args`` and return the parsed JSON."""
    exe = rscript()
    if exe is None:
        raise RuntimeError("Rscript not found")
    out = csv.with_suffix(f".{Path(script).stem}.json")
    cmd = [exe, str(BENCH_DIR / "r" / script), str(csv), str(out), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def r_row(
    result: dict[str, Any],
    versions: Any,
    size: str,
    repeats: int,
    slow_seconds: float,
    keys: Mapping[str, str],
) -> dict[str, Any]:
    """A table row from one result of a ``bench/r`` script (``label``, ``seconds``,
    ``times``, ``logLik``, ``fixef``, ``se``, ``converged``, ``messages``); ``keys`` maps the
    model's own columns to the R result's names. Noted when R stopped repeating a slow fit."""
    times = result["times"] if isinstance(result["times"], list) else [result["times"]]
    row: dict[str, Any] = {
        "size": size,
        "engine": result["label"],
        "seconds": result["seconds"],
        "times": times,
        "loglik": result["logLik"],
        "fixef": {term_name(k): v for k, v in result["fixef"].items()},
        "se": {term_name(k): v for k, v in result["se"].items()},
        **{column: result[name] for column, name in keys.items()},
        "converged": result["converged"],
        "messages": result.get("messages", []),
        "r_versions": versions,
    }
    if len(times) < repeats:
        row["note"] = f"best of {len(times)} (one fit > {slow_seconds:g} s)"
    return row


def r_rows(
    out: dict[str, Any], size: str, repeats: int, slow_seconds: float, keys: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One :func:`r_row` per variant of a ``bench/r`` script's ``results``."""
    return [r_row(r, out["versions"], size, repeats, slow_seconds, keys) for r in out["results"]]


def machine_info() -> dict[str, Any]:
    """Where and when the numbers were measured (load average: other work on the machine)."""
    import scipy
    import statsmodels

    info: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "rscript": rscript(),
    }
    try:
        import mesostats

        info["mesostats"] = mesostats.__version__
    except ImportError:
        info["mesostats"] = None
    return info


def save_results(kind: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<kind>_<timestamp>.json`` (git-ignored) and return its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{kind}_{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default))
    return path


def report(
    kind: str,
    title: str,
    rows: list[dict[str, Any]],
    columns: list[tuple[str, str, str]],
    *,
    info: dict[str, Any],
    notes: Sequence[str] = (),
    **payload: Any,
) -> Path:
    """Print the title, the notes and the rows as a Markdown table; save the run as
    ``bench/results/<kind>_<timestamp>.json`` (``machine``, ``payload``, ``notes``, ``rows``)."""
    print()
    print(title)
    for note in notes:
        print(note)
    print(markdown_table(rows, columns))
    path = save_results(kind, {"machine": info, **payload, "notes": list(notes), "rows": rows})
    print(f"\nsaved {path}")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def fmt(value: Any, spec: str = ".4g") -> str:
    """Format a table cell; missing values show as an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.floating)):
        return format(value, spec)
    return str(value)


def comparison_columns(
    *model: tuple[str, str, str], by_method: bool = False
) -> list[tuple[str, str, str]]:
    """Columns of a fit benchmark's table: size, engine (and method), time and its ratio to
    ours, logLik and its distance to the best, fixed effects, then the ``model``'s own
    columns, convergence and note (the keys :func:`add_comparisons` fills)."""
    same = " (same method)" if by_method else ""
    return [
        ("size", "size", ""),
        ("engine", "engine", ""),
        *([("method", "method", "")] if by_method else []),
        ("seconds", "seconds", ".3f"),
        ("ratio_vs_ours", f"ratio vs ours{same}", ".2f"),
        ("loglik", "logLik", ".4f"),
        ("dloglik", f"\\|ΔlogLik\\| vs best{same}", ".2g"),
        ("same_loglik", "same logLik (1e-4)", ""),
        ("max_dfixef", "max \\|Δ fixef\\|", ".2g"),
        *model,
        ("converged", "converged", ""),
        ("note", "note", ""),
    ]


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a Markdown table; ``columns`` = (key, header, format spec)."""
    lines = [
        "| " + " | ".join(h for _, h, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k), s) for k, _, s in columns) + " |")
    return "\n".join(lines)


def add_comparisons(rows: list[dict[str, Any]], group_key: str | None = None) -> None:
    """Fill ratio vs ours, |ΔlogLik| vs the best, same-optimum flag and max |Δ fixef|.

    Rows are compared within their size (and within ``group_key``, e.g. the approximation
    method, when given; the ratio then uses ours of the same method when there is one).
    The reference for fixed effects is the row with the best logLik.
    """
    keys = {(r["size"], r.get(group_key) if group_key else None) for r in rows}
    for size, group in keys:
        block = [
            r
            for r in rows
            if r["size"] == size and (group_key is None or r.get(group_key) == group)
        ]
        ours = [r for r in rows if r["size"] == size and r.get("ours") and r.get("seconds")]
        same = [r for r in ours if group_key is None or r.get(group_key) == group]
        ours_seconds = (same or ours)[0]["seconds"] if ours else None
        for r in block:
            if ours_seconds and r.get("seconds"):
                r["ratio_vs_ours"] = r["seconds"] / ours_seconds
        fitted = [r for r in block if r.get("loglik") is not None and r.get("comparable", True)]
        if not fitted:
            continue
        best = max(fitted, key=lambda r: r["loglik"])
        for r in fitted:
            r["dloglik"] = abs(best["loglik"] - r["loglik"])
            r["same_loglik"] = r["dloglik"] <= LOGLIK_TOL
            common = set(r.get("fixef", {})) & set(best.get("fixef", {}))
            if common:
                r["max_dfixef"] = max(abs(r["fixef"][k] - best["fixef"][k]) for k in common)


def term_name(name: str) -> str:
    """R's ``(Intercept)`` as formulaic/patsy spell it."""
    return "Intercept" if name == "(Intercept)" else name


def ours_fixef(result: Any, column: str = "estimate") -> dict[str, float]:
    """A column of ``MixedResults.fixed_effects`` as {term: value}."""
    table = result.fixed_effects
    return {term_name(str(k)): float(v) for k, v in table[column].items()}


def ours_sd(result: Any, group: str, var1: str | None, var2: str | None = None) -> float | None:
    """One ``sdcor`` of ``MixedResults.variance_components`` (None when absent).

    ``var1=None`` picks the group's first row (the ``Residual`` row has no ``var1``).
    """
    vc = result.variance_components
    mask = vc["group"] == group
    if var1 is not None:
        mask &= vc["var1"] == var1
        mask &= vc["var2"].isna() if var2 is None else (vc["var2"] == var2)
    values = vc.loc[mask, "sdcor"]
    return float(values.iloc[0]) if len(values) else None
