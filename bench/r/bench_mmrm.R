#!/usr/bin/env Rscript
## R side of bench/bench_mmrm.py: mmrm::mmrm on one data set, timed INSIDE R.
##
## Usage: Rscript bench/r/bench_mmrm.R DATA.csv OUT.json FORMULA METHODS SUBJECT
##                                     [REPEATS] [SLOW] [LEVELS]
##   FORMULA   e.g. "chg ~ base * visit + arm * visit + us(visit | id)"
##   METHODS   comma-separated mmrm df methods, e.g. "Satterthwaite,Kenward-Roger"
##   SUBJECT   the subject column (the warm-up fits that column's first 50 subjects)
##   REPEATS   timed fits per method (best is reported; default 3)
##   SLOW      stop repeating a method once one fit took longer than SLOW seconds (default 30)
##   LEVELS    factor levels where alphabetical is not R's order, "COL=a|b;COL2=x|y|z"
##             (every other character column becomes a factor with sorted levels)
##
## What is timed: system.time() around mmrm(..., method = METHOD) *and* summary() of the fit
## (which computes the df of every coefficient), i.e. formula and data in, coefficient table
## with df out; R start-up, package loading and CSV reading are not timed. Each method is
## first warmed up once on the first 50 subjects, gc() runs before every timed fit, and the
## best of REPEATS elapsed times is the result.
## Writes JSON (jsonlite) with, per method: seconds (best elapsed), all times, the CPU seconds
## (user + system; on a busy machine the fairer measure), logLik (REML), the
## coefficient table (estimate, SE, df), the fitted covariance, theta, the optimiser, its
## evaluation counts and convergence message, and the versions of R, mmrm and TMB.
suppressPackageStartupMessages({
  library(mmrm)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 5) {
  stop("usage: Rscript bench_mmrm.R DATA.csv OUT.json FORMULA METHODS SUBJECT [REPEATS] [SLOW] [LEVELS]")
}
form <- as.formula(args[3])
methods <- strsplit(args[4], ",")[[1]]
subject <- args[5]
repeats <- if (length(args) >= 6) as.integer(args[6]) else 3L
slow <- if (length(args) >= 7) as.numeric(args[7]) else 30
levels_spec <- if (length(args) >= 8 && nzchar(args[8])) strsplit(args[8], ";")[[1]] else character(0)

d <- read.csv(args[1], stringsAsFactors = FALSE)
fixed_levels <- list()
for (spec in levels_spec) {
  parts <- strsplit(spec, "=")[[1]]
  fixed_levels[[parts[1]]] <- strsplit(parts[2], "|", fixed = TRUE)[[1]]
}
for (col in names(d)) {
  if (!is.null(fixed_levels[[col]])) {
    d[[col]] <- factor(d[[col]], levels = fixed_levels[[col]])
  } else if (is.character(d[[col]])) {
    d[[col]] <- factor(d[[col]], levels = sort(unique(d[[col]]), method = "radix"))
  }
}
first <- levels(d[[subject]])[seq_len(min(50L, nlevels(d[[subject]])))]
warm <- d[d[[subject]] %in% first, ]
warm[[subject]] <- droplevels(warm[[subject]])

fit_once <- function(data, method) {
  msgs <- character(0)
  res <- withCallingHandlers({
    fit <- mmrm(form, data = data, reml = TRUE, method = method)
    list(fit = fit, summary = summary(fit))
  },
  warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
  message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m))); invokeRestart("muffleMessage") })
  res$msgs <- msgs
  res
}

out <- list(
  versions = list(R = R.version.string, mmrm = as.character(packageVersion("mmrm")),
                  TMB = as.character(packageVersion("TMB"))),
  n_obs = sum(!is.na(d[[all.vars(form)[1]]])), n_subjects = nlevels(d[[subject]]),
  formula = args[3], repeats = repeats, results = list())

for (m in methods) {
  invisible(fit_once(warm, m))  # warm-up
  times <- numeric(0)
  cpu <- numeric(0)
  for (r in seq_len(repeats)) {
    gc()
    res <- NULL
    st <- system.time(res <- fit_once(d, m))
    times[r] <- st[["elapsed"]]
    cpu[r] <- st[["user.self"]] + st[["sys.self"]]
    if (times[r] > slow) break
  }
  fit <- res$fit
  co <- res$summary$coefficients
  cov <- VarCorr(fit)
  out$results[[length(out$results) + 1]] <- list(
    method = m, seconds = min(times), times = as.list(times),
    cpu_seconds = min(cpu), cpu_times = as.list(cpu),
    logLik = as.numeric(logLik(fit)),
    terms = rownames(co), estimate = unname(co[, "Estimate"]),
    se = unname(co[, "Std. Error"]), df = unname(co[, "df"]),
    covariance = unname(cov), visits = rownames(cov),
    theta = as.numeric(fit$theta_est),
    optimizer = fit$optimizer,
    evaluations = as.list(fit$opt_details$counts),
    optimizer_message = if (is.null(fit$opt_details$message)) NA else fit$opt_details$message,
    converged = identical(as.integer(fit$opt_details$convergence), 0L),
    messages = as.list(unique(res$msgs)))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), args[2])
