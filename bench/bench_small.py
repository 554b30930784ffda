"""Benchmark: small fits (30–500 people), where the cost is per-fit overhead, not arithmetic.

Items (each tool fits the same rows; R and mixedlm read the CSV written from our DataFrame):

=============  =============================================================================
sleepstudy     ``Reaction ~ Days + (Days | Subject)``, REML, 180 rows (lme4's sleepstudy)
penicillin     ``diameter ~ 1 + (1 | plate) + (1 | sample)``, REML, 144 rows (crossed)
cbpp           ``cbind(incidence, size - incidence) ~ period + (1 | herd)``, binomial, Laplace
regrowth       ``ms.fit_regrowth(ms.simulate_study(60, 6, seed=1))``: the domain call (rows,
               exposures, estimability checks, Holm) around a REML LMM with random intercept
               and slope; peers fit the model's formula on the model's rows
side_effects   ``ms.fit_side_effects(ms.simulate_study(60, 6, seed=1))``: binomial GLMM with a
               random intercept per person (Laplace); peers fit its formula on its rows
fev_mmrm       ``ms.fit_mmrm("FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)",
               fev_data, df="kenward-roger")``: mmrm's fev_data (197 people, 537 rows),
               unstructured covariance, Kenward–Roger; ours only
wine_clmm      ``ms.fit_clmm("rating ~ temp + contact + (1 | judge)", wine)``: ordinal's wine
               (72 rows, 9 judges), Laplace; ours only
power          ``ms.power([60], n_sims=N, seed=0)``: simulated trials per second, ours only,
               in process (``n_jobs=1``) and with 2 loky workers (warmed up before timing)
=============  =============================================================================

Run from the repository root::

    .venv/bin/python bench/bench_small.py                       # every item, every tool
    .venv/bin/python bench/bench_small.py --repeats 20 --engines ours,mixedlm
    .venv/bin/python bench/bench_small.py --mixedlm-python /path/to/venv/bin/python

Fairness: each tool runs in its own process (ours: this interpreter; mixedlm: the
interpreter of ``--mixedlm-python``, default ``$MIXEDLM_PYTHON``, skipped when unset or when
``import mixedlm`` fails; lme4: ``Rscript bench/r/small.R``, skipped without Rscript), each
single-threaded (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``RAYON_NUM_THREADS`` = 1; ours pins BLAS to one thread during fits anyway). In
every process each item is first fitted once (warm-up: imports, byte-compilation), then
``--repeats`` times with a garbage collection before each; the best time is reported.
``--clock cpu`` times CPU seconds of the fitting process instead of elapsed seconds (R:
user + system of ``system.time``): on a machine shared with other work, elapsed times of
every tool swing by 2–4× while CPU times stay within ~20 %.
What is timed: ours, the full public call, DataFrame (or Study) in, results out, **including
Satterthwaite df for the LMMs and Hessian-based SEs for the GLMMs**; mixedlm, ``lmer`` /
``glmer`` (and, in an extra row, ``lmer`` + ``pvalues_with_ddf`` for the Satterthwaite df);
lme4, ``lmer`` / ``glmer`` inside R (``system.time``; R start-up and CSV reading excluded).
mixedlm has no ``cbind`` response: its cbpp fit is the proportion with ``size`` as weights
(the same likelihood up to the binomial constant).

Prints a Markdown table with ratios (peer seconds / ours: > 1 means we are faster) and writes
the JSON to ``bench/results/small_<timestamp>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REFERENCE = BENCH_DIR.parent / "tests" / "reference"
STUDY_ARGS = {"n_subjects": 60, "n_sessions": 6, "seed": 1}

# name: (kind, formula, csv file, categorical columns)
TABLE_ITEMS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "sleepstudy": ("lmm", "Reaction ~ Days + (Days | Subject)", "sleepstudy.csv", ("Subject",)),
    "penicillin": (
        "lmm",
        "diameter ~ 1 + (1 | plate) + (1 | sample)",
        "penicillin.csv",
        ("plate", "sample"),
    ),
    "cbpp": (
        "glmm",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "cbpp.csv",
        ("herd", "period"),
    ),
}
DOMAIN_ITEMS = ("regrowth", "side_effects")
#: ours-only items (the peers have no such models): name -> (formula, CSV under tests/reference)
OURS_ONLY_ITEMS = {
    "fev_mmrm": (
        "FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)",
        "mmrm/fev_data.csv",
    ),
    "wine_clmm": ("rating ~ temp + contact + (1 | judge)", "wine.csv"),
}
SINGLE_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RAYON_NUM_THREADS",
)


# ----------------------------------------------------------------------------- timing


#: the clock of the Python children: "wall" (perf_counter) or "cpu" (process_time: this
#: process's CPU time, steadier when other programs load the machine)
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def best_of(fit: Any, repeats: int) -> tuple[float, list[float], Any]:
    """Warm-up once, then ``repeats`` timed calls (gc before each); best, all, last result."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit()
        times = []
        for _ in range(repeats):
            gc.collect()
            start = _clock()
            result = fit()
            times.append(_clock() - start)
    return min(times), times, result


# ----------------------------------------------------------------------------- data


def read_table(csv: Path, categorical: tuple[str, ...]) -> Any:
    import pandas as pd

    data = pd.read_csv(csv)
    for col in categorical:
        data[col] = data[col].astype(str)
    return data


def prepare(workdir: Path) -> list[dict[str, Any]]:
    """The manifest: one entry per item, each with a CSV in ``workdir`` for the peers."""
    import mesostats as ms

    items: list[dict[str, Any]] = []
    for name, (kind, formula, csv, categorical) in TABLE_ITEMS.items():
        path = workdir / csv
        read_table(REFERENCE / csv, categorical).to_csv(path, index=False)
        items.append(
            {
                "name": name,
                "kind": kind,
                "formula": formula,
                "csv": str(path),
                "categorical": list(categorical),
            }
        )
    study = ms.simulate_study(**STUDY_ARGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = {"regrowth": ms.fit_regrowth(study), "side_effects": ms.fit_side_effects(study)}
    for name, fit in fits.items():
        path = workdir / f"{name}.csv"
        frame = fit.data.copy()
        frame["subject_id"] = frame["subject_id"].astype(str)
        frame.to_csv(path, index=False)
        items.append(
            {
                "name": name,
                "kind": "lmm" if name == "regrowth" else "glmm",
                "formula": fit.formula,
                "csv": str(path),
                "categorical": ["subject_id"],
            }
        )
    return items


# ----------------------------------------------------------------------------- children


def child_ours(manifest: list[dict[str, Any]], repeats: int, n_sims: int) -> dict[str, Any]:
    import mesostats as ms

    out: dict[str, Any] = {"engine": "mesostats", "version": ms.__version__, "results": {}}
    for item in manifest:
        name = item["name"]
        if name in DOMAIN_ITEMS:
            study = ms.simulate_study(**STUDY_ARGS)
            call = ms.fit_regrowth if name == "regrowth" else ms.fit_side_effects
            seconds, times, res = best_of(lambda c=call, s=study: c(s), repeats)
            model = res.model
        else:
            data = read_table(Path(item["csv"]), tuple(item["categorical"]))
            if item["kind"] == "lmm":
                seconds, times, model = best_of(
                    lambda d=data, f=item["formula"]: ms.fit_lmm(f, d, reml=True), repeats
                )
            else:
                seconds, times, model = best_of(
                    lambda d=data, f=item["formula"]: ms.fit_glmm(f, d, family="binomial"),
                    repeats,
                )
        fe = model.fixed_effects
        out["results"][name] = {
            "seconds": seconds,
            "times": times,
            "loglik": float(model.loglik),
            "fixef": {str(k): float(v) for k, v in fe["estimate"].items()},
            "se": {str(k): float(v) for k, v in fe["std_error"].items()},
            "df": {str(k): float(v) for k, v in fe["df"].items()},
        }
    for name, (formula, csv) in OURS_ONLY_ITEMS.items():
        if not hasattr(ms, "fit_mmrm" if name == "fev_mmrm" else "fit_clmm"):
            continue  # an older mesostats (the benchmark also times earlier commits)
        seconds, times, model = best_of(ours_only_fit(name, formula, csv), repeats)
        out["results"][name] = {
            "seconds": seconds,
            "times": times,
            "loglik": float(model.loglik),
        }
    if n_sims:
        out["power"] = power_throughput(n_sims, repeats=max(1, min(repeats, 3)))
    return out


def ours_only_fit(name: str, formula: str, csv: str) -> Any:
    """The call timed for an ours-only item (data read once, outside the timing)."""
    import pandas as pd

    import mesostats as ms

    if name == "fev_mmrm":
        data = pd.read_csv(REFERENCE / csv, dtype={"USUBJID": str, "AVISIT": str, "ARMCD": str})
        data["SEX"] = pd.Categorical(data["SEX"], categories=["Male", "Female"])
        return lambda: ms.fit_mmrm(formula, data, df="kenward-roger")
    data = pd.read_csv(REFERENCE / csv, dtype={"judge": str, "bottle": str})
    return lambda: ms.fit_clmm(formula, data)


def power_throughput(n_sims: int, repeats: int) -> dict[str, Any]:
    """Trials per second of ``ms.power([60], n_sims=n_sims, seed=0)``, 1 and 2 workers."""
    import mesostats as ms

    result: dict[str, Any] = {"n_subjects": 60, "n_sims": n_sims}
    global _clock
    chosen = _clock
    for jobs in (1, 2):
        # the workers' CPU time is not this process's: 2 workers are timed on the wall clock
        _clock = chosen if jobs == 1 else time.perf_counter
        ms.power([60], n_sims=4, seed=0, n_jobs=jobs)  # warm-up (starts the workers)
        seconds, times, table = best_of(
            lambda j=jobs: ms.power([60], n_sims=n_sims, seed=0, n_jobs=j), repeats
        )
        result[f"n_jobs={jobs}"] = {
            "clock": "cpu" if _clock is time.process_time else "wall",
            "seconds": seconds,
            "times": times,
            "trials_per_second": n_sims / seconds,
            "power": float(table["power"].iloc[0]),
        }
    _clock = chosen
    return result


def child_mixedlm(manifest: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    import mixedlm as m

    out: dict[str, Any] = {"engine": "mixedlm", "version": m.__version__, "results": {}}
    for item in manifest:
        data = read_table(Path(item["csv"]), tuple(item["categorical"]))
        formula = item["formula"]
        if item["kind"] == "lmm":
            seconds, times, res = best_of(lambda d=data, f=formula: m.lmer(f, d), repeats)
            ddf_seconds, _, _ = best_of(
                lambda d=data, f=formula: m.pvalues_with_ddf(m.lmer(f, d)), repeats
            )
        else:
            kwargs: dict[str, Any] = {"family": m.families.Binomial()}
            if formula.startswith("cbind("):
                data = data.assign(prop=data["incidence"] / data["size"])
                formula = "prop ~ " + formula.split("~", 1)[1]
                kwargs["weights"] = data["size"].to_numpy(dtype=float)
            seconds, times, res = best_of(
                lambda d=data, f=formula, k=kwargs: m.glmer(f, d, **k), repeats
            )
            ddf_seconds = None
        out["results"][name_of(item)] = {
            "seconds": seconds,
            "times": times,
            "with_df_seconds": ddf_seconds,
            "fixef": {str(k): float(v) for k, v in res.fixef().items()},
        }
    return out


def name_of(item: dict[str, Any]) -> str:
    return str(item["name"])


# ----------------------------------------------------------------------------- parent


def run_child(cmd: list[str], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    # every tool single-threaded, as lme4 is (ours pins BLAS to one thread during fits)
    env.update({k: "1" for k in SINGLE_THREAD_ENV})
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR.parent), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--n-sims", type=int, default=20, help="power trials (0: skip)")
    parser.add_argument("--engines", default="ours,mixedlm,lme4")
    parser.add_argument("--mixedlm-python", default=os.environ.get("MIXEDLM_PYTHON"))
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCK),
        default="wall",
        help="wall: elapsed time; cpu: CPU time of the fitting process (R: user + system)",
    )
    parser.add_argument("--child", choices=["ours", "mixedlm"])
    parser.add_argument("--manifest")
    args = parser.parse_args(argv)

    global _clock
    _clock = CLOCK[args.clock]
    if args.child:
        manifest = json.loads(Path(args.manifest).read_text())
        if args.child == "ours":
            result = child_ours(manifest, args.repeats, args.n_sims)
        else:
            result = child_mixedlm(manifest, args.repeats)
        print(json.dumps(result))
        return

    engines = set(args.engines.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        manifest = prepare(workdir)
        manifest_path = workdir / "manifest.json"
        manifest_path.write_text(json.dumps(manifest))
        common = [
            "--manifest",
            str(manifest_path),
            "--repeats",
            str(args.repeats),
            "--clock",
            args.clock,
        ]
        outputs: dict[str, Any] = {}
        notes: list[str] = []
        if "ours" in engines:
            outputs["ours"] = run_child(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "ours",
                    "--n-sims",
                    str(args.n_sims),
                    *common,
                ],
                timeout=1800,
            )
        if "mixedlm" in engines:
            if not args.mixedlm_python:
                notes.append("mixedlm skipped: no --mixedlm-python / $MIXEDLM_PYTHON")
            else:
                try:
                    outputs["mixedlm"] = run_child(
                        [args.mixedlm_python, __file__, "--child", "mixedlm", *common],
                        timeout=1800,
                    )
                except (RuntimeError, OSError) as exc:
                    notes.append(f"mixedlm skipped: {exc}")
        if "lme4" in engines:
            import shutil

            exe = shutil.which("Rscript")
            if exe is None:
                notes.append("lme4 skipped: Rscript not on PATH")
            else:
                out = workdir / "lme4.json"
                cmd = [
                    exe,
                    str(BENCH_DIR / "r" / "small.R"),
                    str(manifest_path),
                    str(out),
                    str(args.repeats),
                    args.clock,
                ]
                env = {**os.environ, **{k: "1" for k in SINGLE_THREAD_ENV}}
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
                if proc.returncode != 0:
                    notes.append(f"lme4 failed: {proc.stderr[-2000:]}")
                else:
                    outputs["lme4"] = json.loads(out.read_text())
    report(outputs, notes, args)


def report(outputs: dict[str, Any], notes: list[str], args: argparse.Namespace) -> None:
    ours = outputs.get("ours", {}).get("results", {})
    rows = []
    names = [*TABLE_ITEMS, *DOMAIN_ITEMS, *(n for n in OURS_ONLY_ITEMS if n in ours)]
    for name in names:
        base = ours.get(name, {}).get("seconds")
        row: dict[str, Any] = {"item": name, "ours_ms": base and 1e3 * base}
        peers = {
            "mixedlm": outputs.get("mixedlm", {}).get("results", {}).get(name, {}),
            "lme4": outputs.get("lme4", {}).get("results", {}).get(name, {}),
        }
        for peer, res in peers.items():
            sec = res.get("seconds")
            row[f"{peer}_ms"] = sec and 1e3 * sec
            row[f"{peer}_ratio"] = sec / base if (sec and base) else None
        ddf = peers["mixedlm"].get("with_df_seconds")
        row["mixedlm_df_ms"] = ddf and 1e3 * ddf
        row["mixedlm_df_ratio"] = ddf / base if (ddf and base) else None
        rows.append(row)
    header = (
        "| item | ours ms | mixedlm ms | ratio | mixedlm + Satterthwaite ms | ratio "
        "| lme4 ms | ratio |\n|---|---|---|---|---|---|---|---|"
    )
    print(header)
    for r in rows:
        cells = [r["item"]] + [
            "—" if r[k] is None else f"{r[k]:.3g}"
            for k in (
                "ours_ms",
                "mixedlm_ms",
                "mixedlm_ratio",
                "mixedlm_df_ms",
                "mixedlm_df_ratio",
                "lme4_ms",
                "lme4_ratio",
            )
        ]
        print("| " + " | ".join(cells) + " |")
    power = outputs.get("ours", {}).get("power")
    if power:
        for key in ("n_jobs=1", "n_jobs=2"):
            p = power[key]
            print(
                f"power([60], n_sims={power['n_sims']}, seed=0), {key}: {p['seconds']:.3f} s "
                f"({p['clock']}), "
                f"{p['trials_per_second']:.1f} trials/s (power {p['power']:.3f})"
            )
    for note in notes:
        print("note:", note)
    print(f"clock: {args.clock}; load average: {os.getloadavg()}")
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = results / f"small_{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "rows": rows,
                "outputs": outputs,
                "notes": notes,
                "repeats": args.repeats,
                "clock": args.clock,
                "load_average": os.getloadavg(),
            },
            indent=2,
            default=str,
        )
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
