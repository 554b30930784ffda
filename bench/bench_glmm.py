"""Benchmark: mesostats.fit_glmm against glmmTMB and lme4::glmer (via Rscript).

Model (binomial, logit)::

    side_effect ~ minoxidil + dutasteride + biotin + week + (1 | subject)

on the seeded trials of ``bench/simdata.py`` (200x8, 2000x10, 20000x10 subjects x sessions).

Run from the repository root::

    .venv/bin/python bench/bench_glmm.py
    .venv/bin/python bench/bench_glmm.py --sizes 2000x10 --repeats 5

Engines, all in one run: ours with ``nagq=1`` (Laplace) and ``nagq=15`` (adaptive
Gauss–Hermite), glmmTMB (Laplace), glmer Laplace (``nAGQ=1``) and glmer ``nAGQ=15``, timed
inside R (R start-up and CSV reading excluded). Log-likelihoods are compared within one
approximation (Laplace with Laplace, AGQ(15) with AGQ(15)); for 0/1 data glmer's nAGQ > 1
logLik is on the same scale as ours (only aggregated binomial data are affected by lme4's
scale issue). Standard errors of ours are compared with glmmTMB's (Hessian of the Laplace
log-likelihood; glmer's finite-difference SEs are known to be unreliable).

statsmodels has no maximum-likelihood GLMM; ``BinomialBayesMixedGLM.fit_vb`` (variational
Bayes, a different estimator) is timed as a *contrast row*, not a peer of equal kind: its
fixed effects are posterior means and its between-subject SD is exp(posterior mean of the
log SD). Its cost grows about as rows^2.5 here (dense quasi-Newton over one mean and one SD
per subject), so it is skipped where the extrapolated time exceeds
``--statsmodels-max-seconds``.

Timing rules are those of ``bench_lmm.py`` (warm-up on the first 50 subjects, best of
``--repeats``, fewer repeats when one fit takes > 20 s in Python / > 30 s in R).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sparse
import simdata
from common import (
    add_comparisons,
    bench_parser,
    comparison_columns,
    load_engine,
    machine_info,
    ours_fields,
    ours_sd,
    peer_row,
    r_rows,
    report,
    rscript,
    run_r,
    time_ours,
    trials,
)

GLMM_FORMULA = "side_effect ~ minoxidil + dutasteride + biotin + week + (1 | subject)"
FIXED_TERMS = ["minoxidil", "dutasteride", "biotin", "week"]
VB_EXPONENT = 2.5
#: columns of the R rows: row key -> key of bench/r/glmm.R's result
R_KEYS = {"method": "method", "sd_subject": "sd_subject", "feval": "feval"}
VB_ENGINE = "statsmodels BinomialBayesMixedGLM.fit_vb (contrast)"


def fit_ours(
    fit_glmm: Callable[..., Any],
    data: pd.DataFrame,
    nagq: int,
    repeats: int,
    size: str,
    *,
    formula: str = GLMM_FORMULA,
    family: str = "binomial",
    engine: str = "mesostats fit_glmm",
    extra: Callable[[Any], dict[str, Any]] = lambda res: {},
) -> dict[str, Any]:
    """Time mesostats.fit_glmm (formula -> MixedResults), best of ``repeats`` after a warm-up
    (``bench_nb`` times its NB2 model here too: ``extra`` adds the family's own fields)."""
    row = {
        "size": size,
        "engine": f"{engine} (nagq={nagq})",
        "method": "Laplace" if nagq == 1 else f"AGQ({nagq})",
        "ours": True,
    }
    return time_ours(
        row,
        lambda d: fit_glmm(formula, d, family=family, nagq=nagq),
        data,
        repeats=repeats,
        describe=lambda res: {
            **ours_fields(res),
            "sd_subject": ours_sd(res, "subject", "Intercept"),
            **extra(res),
        },
    )


def fit_statsmodels_vb(data: pd.DataFrame) -> Any:
    """statsmodels BinomialBayesMixedGLM.fit_vb with a sparse subject indicator matrix.

    The random-effect design is built directly as a sparse matrix: ``from_formula`` with
    ``{"subject": "0 + C(subject)"}`` gives the same fit but builds it dense first
    (rows x subjects), which does not fit in memory at 20,000 subjects.
    """
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    n = len(data)
    exog = np.column_stack([np.ones(n), data[FIXED_TERMS].to_numpy(dtype=float)])
    codes = pd.factorize(data["subject"])[0]
    exog_vc = sparse.csr_matrix((np.ones(n), (np.arange(n), codes)))
    model = BinomialBayesMixedGLM(
        data["side_effect"].to_numpy(dtype=float),
        exog,
        exog_vc,
        np.zeros(exog_vc.shape[1], dtype=int),
        fep_names=["Intercept", *FIXED_TERMS],
        vcp_names=["subject"],
    )
    return model.fit_vb()


def statsmodels_vb_row(res: Any, size: str, timing: dict[str, Any]) -> dict[str, Any]:
    """A contrast row from a BayesMixedGLMResults (no likelihood, no ML estimates)."""
    names = res.model.fep_names
    return {
        "size": size,
        "engine": VB_ENGINE,
        "method": "VB",
        "comparable": False,
        "seconds": timing["seconds"],
        "times": timing["times"],
        "fixef": dict(zip(names, map(float, res.fe_mean), strict=True)),
        "se": dict(zip(names, map(float, res.fe_sd), strict=True)),
        "sd_subject": float(np.exp(res.vcp_mean[0])),
        "warnings": timing["messages"],
        "note": "variational Bayes: posterior means, not ML; "
        + (timing.get("note") or "not a peer of equal kind"),
    }


def run_r_glmm(
    csv: Path, size: str, repeats: int, nagq: int, slow_seconds: float
) -> list[dict[str, Any]]:
    """glmmTMB, glmer Laplace and glmer nAGQ timed inside R; one row each."""
    variants = "glmmTMB,glmer_laplace,glmer_agq"
    out = run_r("glmm.R", csv, [repeats, variants, nagq, slow_seconds], timeout=14400)
    return r_rows(out, size, repeats, slow_seconds, R_KEYS)


def compare_se_with_glmmtmb(rows: list[dict[str, Any]]) -> None:
    """max relative |SE - SE(glmmTMB)| over the fixed effects, per Laplace row with SEs."""
    for size in {r["size"] for r in rows}:
        tmb = [r for r in rows if r["size"] == size and r["engine"].startswith("glmmTMB")]
        if not tmb or "se" not in tmb[0]:
            continue
        ref = tmb[0]["se"]
        for r in rows:
            if (
                r["size"] == size
                and r.get("se")
                and r.get("method") == "Laplace"
                and r is not tmb[0]
            ):
                common = set(r["se"]) & set(ref)
                r["max_rel_dse_tmb"] = max(abs(r["se"][k] / ref[k] - 1.0) for k in common)


COLUMNS = comparison_columns(
    ("max_rel_dse_tmb", "max rel. ΔSE vs glmmTMB", ".2g"),
    ("sd_subject", "SD subject", ".4f"),
    by_method=True,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(
        "GLMM benchmark: mesostats vs glmmTMB, glmer",
        sizes=",".join(simdata.SIZES),
        engines="ours,r,statsmodels",
        seed=simdata.DEFAULT_SEED,
        statsmodels_max_seconds=True,
    )
    parser.add_argument("--nagq", type=int, default=15, help="AGQ nodes (ours and glmer)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
    info = machine_info()
    engines = set(args.engines.split(","))
    fit_glmm, reason = load_engine("fit_glmm")
    has_r = rscript() is not None
    notes = [
        "statsmodels has no ML GLMM: the fit_vb row is variational Bayes, a contrast only.",
        "For 0/1 data glmer's nAGQ>1 logLik is on the Laplace scale (lme4 #161 concerns "
        "aggregated binomial only).",
    ]
    if not has_r and "r" in engines:
        notes.append("Rscript not found: glmmTMB and glmer rows skipped (CI has no R).")
    rows: list[dict[str, Any]] = []
    reference: tuple[int, float] | None = None
    for label, data, tmp in trials(
        args.sizes, lambda n, k: simdata.simulate_trial(n, k, seed=args.seed)
    ):
        print(f"== {label}: {len(data)} rows, {data['side_effect'].mean():.3f} events")
        if "ours" in engines:
            for nagq in (1, args.nagq):
                if fit_glmm is None:
                    engine = f"mesostats fit_glmm (nagq={nagq})"
                    rows.append({"size": label, "engine": engine, "note": reason})
                else:
                    rows.append(fit_ours(fit_glmm, data, nagq, args.repeats, label))
                print(f"   ours nagq={nagq}: {rows[-1].get('seconds', rows[-1].get('note'))}")
        if "statsmodels" in engines:
            row, reference = peer_row(
                fit_statsmodels_vb,
                data,
                size=label,
                to_row=statsmodels_vb_row,
                skipped={"engine": VB_ENGINE, "method": "VB"},
                repeats=args.repeats,
                max_seconds=args.statsmodels_max_seconds,
                forced=False,
                reference=reference,
                exponent=VB_EXPONENT,
            )
            rows.append(row)
            print(f"   statsmodels VB: {row.get('seconds', row.get('note'))}")
        if "r" in engines and has_r:
            csv = simdata.write_csv(data, tmp, f"trial_{label}")
            peers = run_r_glmm(csv, label, args.repeats, args.nagq, args.r_slow_seconds)
            rows.extend(peers)
            print(f"   R: {[(r['engine'], r['seconds']) for r in peers]}", flush=True)
    add_comparisons(rows, group_key="method")
    compare_se_with_glmmtmb(rows)
    title = f"Binomial GLMM: `{GLMM_FORMULA}`; {info['date']}, load {info['load_average']}"
    report("glmm", title, rows, COLUMNS, info=info, notes=notes, formula=GLMM_FORMULA)


if __name__ == "__main__":
    main()
