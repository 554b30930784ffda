#!/usr/bin/env Rscript
## R side of bench/bench_nb.py: glmmTMB nbinom2 on one benchmark trial, timed INSIDE R.
##
## Usage: Rscript bench/r/nb.R DATA.csv OUT.json [REPEATS] [SLOW]
## Model: hair_count ~ minoxidil + dutasteride + biotin + week + offset(log(area)) + (1 | subject),
## family = nbinom2 (glmmTMB's defaults). R start-up, package loading and CSV reading are not
## timed; warm-up on the first 50 subjects; gc() before every timed fit; best of REPEATS
## elapsed times (fewer once one fit took longer than SLOW seconds).
suppressPackageStartupMessages({ library(glmmTMB); library(jsonlite) })
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                   value = TRUE)[1])), "common.R"))
args <- commandArgs(trailingOnly = TRUE)
repeats <- if (length(args) >= 3) as.integer(args[3]) else 3L
slow <- if (length(args) >= 4) as.numeric(args[4]) else 30
d <- read_trial(args[1])
warm <- first_subjects(d)
form <- hair_count ~ minoxidil + dutasteride + biotin + week + offset(log(area)) + (1 | subject)
fitter <- function(data) glmmTMB(form, data = data, family = nbinom2)
timed <- time_fit(fitter, warm, d, repeats, slow)
fit <- timed$fit
times <- timed$times
fe <- fixef(fit)$cond
names(fe)[names(fe) == "(Intercept)"] <- "Intercept"
se <- sqrt(diag(vcov(fit)$cond))
names(se) <- names(fe)
res <- list(
  versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                  TMB = as.character(packageVersion("TMB"))),
  label = "glmmTMB nbinom2 (Laplace)", method = "Laplace",
  seconds = min(times), times = times, logLik = as.numeric(logLik(fit)),
  fixef = as.list(fe), se = as.list(se),
  sd_subject = unname(attr(VarCorr(fit)$cond$subject, "stddev")[1]), k = unname(sigma(fit)),
  converged = identical(as.integer(fit$fit$convergence), 0L) && isTRUE(fit$sdr$pdHess),
  messages = as.list(unique(timed$msgs))
)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA), args[2])
