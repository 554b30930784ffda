#!/usr/bin/env Rscript
## R side of bench/bench_lmm.py: lme4::lmer on one benchmark trial, timed INSIDE R.
##
## Usage: Rscript bench/r/lmm.R DATA.csv OUT.json [REPEATS] [VARIANTS] [SLOW]
##   REPEATS   timed fits per variant (best is reported; default 3)
##   VARIANTS  comma-separated, any of
##             default            lme4::lmer with lme4's defaults (the fair comparison)
##             calc_derivs_false  lmerControl(calc.derivs = FALSE): the fastest lme4 setting
##                                (skips the finite-difference gradient/Hessian check)
##             tight              nloptwrap run to xtol_abs/xtol_rel 1e-10/1e-12 and ftol_abs/
##                                ftol_rel 1e-12/1e-14 (nloptr's default xtol_rel = 1e-4 can stop
##                                BOBYQA early, whatever xtol_abs says): not a speed
##                                setting but the reference optimum for the logLik comparison
##             lmertest           summary(lmerTest::lmer(...)): a fit that also yields
##                                Satterthwaite df, as mesostats' fit_lmm does
##             (default: "default,calc_derivs_false")
##   SLOW      stop repeating a variant once one fit took longer than SLOW seconds (default 30)
##
## Model (REML): density ~ week * (minoxidil + dutasteride + biotin) + baseline
##                         + (1 + week | subject)
## Fairness: R start-up, package loading and CSV reading are not timed; system.time() wraps the
## fit only. Each variant is first warmed up once on the first 50 subjects (byte-compiles and
## loads lazily loaded code), gc() runs before every timed fit, and the best of REPEATS
## elapsed times is the result (fewer repeats when one fit is slower than SLOW).
## Writes JSON (jsonlite) with, per variant: seconds (best), all times, logLik (REML criterion
## on lme4's scale), fixed effects, their SEs, the variance components (SDs, correlation,
## residual SD), theta, optimiser evaluations and convergence messages.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                   value = TRUE)[1])), "common.R"))
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: Rscript lmm.R DATA.csv OUT.json [REPEATS] [VARIANTS] [SLOW]")
repeats <- if (length(args) >= 3) as.integer(args[3]) else 3L
variants <- if (length(args) >= 4) strsplit(args[4], ",")[[1]] else c("default", "calc_derivs_false")
slow <- if (length(args) >= 5) as.numeric(args[5]) else 30

d <- read_trial(args[1])
warm <- first_subjects(d)
form <- density ~ week * (minoxidil + dutasteride + biotin) + baseline + (1 + week | subject)

fitters <- list(
  default = function(data) lmer(form, data = data, REML = TRUE),
  calc_derivs_false = function(data) lmer(form, data = data, REML = TRUE,
                                          control = lmerControl(calc.derivs = FALSE)),
  tight = function(data) lmer(form, data = data, REML = TRUE, control = lmerControl(
    optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12, xtol_rel = 1e-12, ftol_rel = 1e-14,
                   maxeval = 1e5))),
  lmertest = function(data) {
    fit <- lmerTest::lmer(form, data = data, REML = TRUE)
    attr(fit, "summary") <- summary(fit)
    fit
  }
)
labels <- c(default = "lme4 lmer (defaults)",
            calc_derivs_false = "lme4 lmer (calc.derivs=FALSE)",
            tight = "lme4 lmer (tight tolerances: reference optimum)",
            lmertest = "lmerTest lmer + summary (Satterthwaite df)")

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  Matrix = as.character(packageVersion("Matrix")),
                  lmerTest = if (requireNamespace("lmerTest", quietly = TRUE))
                    as.character(packageVersion("lmerTest")) else NA),
  n_obs = nrow(d), n_subjects = nlevels(d$subject), repeats = repeats, results = list())

for (v in variants) {
  if (is.null(fitters[[v]])) stop("unknown variant: ", v)
  res <- time_fit(fitters[[v]], warm, d, repeats, slow)
  times <- res$times
  fit <- res$fit
  vc <- as.data.frame(VarCorr(fit))
  conv <- fit@optinfo$conv
  msgs <- unique(c(res$msgs, unlist(conv$lme4$messages)))
  out$results[[length(out$results) + 1]] <- list(
    variant = v, label = labels[[v]], seconds = min(times), times = as.list(times),
    logLik = as.numeric(logLik(fit)),
    fixef = nm(fixef(fit)), se = nm(sqrt(diag(as.matrix(vcov(fit))))),
    sd_intercept = vc$sdcor[1], sd_week = vc$sdcor[2], corr_intercept_week = vc$sdcor[3],
    sd_residual = vc$sdcor[4], theta = unname(getME(fit, "theta")),
    feval = fit@optinfo$feval, optimizer = fit@optinfo$optimizer,
    converged = (length(conv$lme4$messages) == 0) && identical(as.integer(conv$opt), 0L),
    messages = as.list(msgs))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), args[2])
