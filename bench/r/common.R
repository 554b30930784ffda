## Shared by the R sides of the fit benchmarks (lmm.R, glmm.R, nb.R): reading a benchmark trial,
## fitting with warnings and messages collected instead of printed, and the timing rule
## (one warm-up fit on the first 50 subjects, gc() before every timed fit, system.time() around
## the fit only, fewer repeats once one fit took longer than SLOW seconds).
## Each script sources it from its own folder:
##   source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
##                                                      value = TRUE)[1])), "common.R"))

## The benchmark trial at PATH, subject as a factor.
read_trial <- function(path) {
  d <- read.csv(path)
  d$subject <- factor(d$subject)
  d
}

## The first N subjects of a trial: the warm-up fit.
first_subjects <- function(d, n = 50L) droplevels(d[as.integer(d$subject) <= n, ])

## A named vector as a list, R's "(Intercept)" spelled "Intercept".
nm <- function(x) { n <- names(x); n[n == "(Intercept)"] <- "Intercept"; names(x) <- n; as.list(x) }

## fitter(data), its warnings and messages collected: list(fit, msgs).
quiet_fit <- function(fitter, data) {
  msgs <- character(0)
  fit <- withCallingHandlers(fitter(data),
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m))); invokeRestart("muffleMessage") })
  list(fit = fit, msgs = msgs)
}

## Warm up on WARM, then up to REPEATS timed fits on D: list(times, fit, msgs) of the last fit.
time_fit <- function(fitter, warm, d, repeats, slow) {
  invisible(quiet_fit(fitter, warm))  # warm-up
  times <- numeric(0)
  for (r in seq_len(repeats)) {
    gc()
    res <- NULL
    times[r] <- system.time(res <- quiet_fit(fitter, d))[["elapsed"]]
    if (times[r] > slow) break
  }
  list(times = times, fit = res$fit, msgs = res$msgs)
}
