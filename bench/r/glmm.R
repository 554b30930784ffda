#!/usr/bin/env Rscript
## R side of bench/bench_glmm.py: binomial GLMMs on one benchmark trial, timed INSIDE R.
##
## Usage: Rscript bench/r/glmm.R DATA.csv OUT.json [REPEATS] [VARIANTS] [NAGQ] [SLOW]
##   REPEATS   timed fits per variant (best is reported; default 3)
##   VARIANTS  comma-separated, any of
##             glmmTMB        glmmTMB(..., family = binomial): Laplace, TMB's defaults
##             glmer_laplace  lme4::glmer(..., nAGQ = 1) with lme4's defaults
##             glmer_agq      lme4::glmer(..., nAGQ = NAGQ) with lme4's defaults
##             (default: all three)
##   NAGQ      adaptive Gauss-Hermite nodes for glmer_agq (default 15)
##   SLOW      stop repeating a variant once one fit took longer than SLOW seconds (default 30)
##
## Model: side_effect ~ minoxidil + dutasteride + biotin + week + (1 | subject).
## Fairness: R start-up, package loading and CSV reading are not timed; system.time() wraps the
## fit only. Each variant is warmed up once on the first 50 subjects, gc() runs before every
## timed fit, and the best of REPEATS elapsed times is the result (fewer repeats when one fit
## is slower than SLOW).
## For 0/1 data glmer's nAGQ > 1 logLik is on the same scale as the Laplace one
## (log C(1, y) = 0); only aggregated binomial data are affected by lme4's scale issue.
suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                   value = TRUE)[1])), "common.R"))
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: Rscript glmm.R DATA.csv OUT.json [REPEATS] [VARIANTS] [NAGQ] [SLOW]")
repeats <- if (length(args) >= 3) as.integer(args[3]) else 3L
variants <- if (length(args) >= 4) strsplit(args[4], ",")[[1]] else
  c("glmmTMB", "glmer_laplace", "glmer_agq")
nagq <- if (length(args) >= 5) as.integer(args[5]) else 15L
slow <- if (length(args) >= 6) as.numeric(args[6]) else 30

d <- read_trial(args[1])
warm <- first_subjects(d)
form <- side_effect ~ minoxidil + dutasteride + biotin + week + (1 | subject)

fitters <- list(
  glmmTMB = function(data) glmmTMB(form, data = data, family = binomial),
  glmer_laplace = function(data) glmer(form, data = data, family = binomial, nAGQ = 1L),
  glmer_agq = function(data) glmer(form, data = data, family = binomial, nAGQ = nagq)
)
labels <- c(glmmTMB = "glmmTMB (Laplace)", glmer_laplace = "lme4 glmer (Laplace, nAGQ=1)",
            glmer_agq = sprintf("lme4 glmer (nAGQ=%d)", nagq))
methods <- c(glmmTMB = "Laplace", glmer_laplace = "Laplace", glmer_agq = sprintf("AGQ(%d)", nagq))

summarise <- function(v, fit, msgs) {
  if (v == "glmmTMB") {
    vc <- VarCorr(fit)$cond$subject
    list(fixef = nm(fixef(fit)$cond), se = nm(sqrt(diag(vcov(fit)$cond))),
         sd_subject = unname(attr(vc, "stddev")[1]),
         converged = identical(as.integer(fit$fit$convergence), 0L) && isTRUE(fit$sdr$pdHess),
         feval = unname(fit$fit$evaluations[["function"]]), messages = as.list(unique(msgs)))
  } else {
    conv <- fit@optinfo$conv
    list(fixef = nm(fixef(fit)), se = nm(sqrt(diag(as.matrix(vcov(fit))))),
         sd_subject = unname(attr(VarCorr(fit)$subject, "stddev")[1]),
         converged = length(conv$lme4$messages) == 0 && identical(as.integer(conv$opt), 0L),
         feval = fit@optinfo$feval,
         messages = as.list(unique(c(msgs, unlist(conv$lme4$messages)))))
  }
}

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  glmmTMB = as.character(packageVersion("glmmTMB")),
                  TMB = as.character(packageVersion("TMB")),
                  Matrix = as.character(packageVersion("Matrix"))),
  n_obs = nrow(d), n_subjects = nlevels(d$subject), repeats = repeats, results = list())

for (v in variants) {
  if (is.null(fitters[[v]])) stop("unknown variant: ", v)
  res <- time_fit(fitters[[v]], warm, d, repeats, slow)
  times <- res$times
  out$results[[length(out$results) + 1]] <- c(
    list(variant = v, label = labels[[v]], method = methods[[v]], seconds = min(times),
         times = as.list(times), logLik = as.numeric(logLik(res$fit))),
    summarise(v, res$fit, res$msgs))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), args[2])
