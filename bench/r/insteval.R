#!/usr/bin/env Rscript
## R side of bench/bench_crossed.py: lme4's InstEval, exported or fitted (timed INSIDE R).
##
## Usage: Rscript bench/r/insteval.R DATA.csv OUT.json [REPEATS]
##   REPEATS = 0  writes lme4::InstEval (73,421 rows) to DATA.csv: y, service, s, d, dept
##   REPEATS > 0  fits y ~ service + (1 | s) + (1 | d) + (1 | dept), REML, lme4's defaults, to
##                DATA.csv: one warm-up fit on the first 5,000 rows, then the best of REPEATS
##                (default 3) elapsed times, gc() before each. Writes JSON to OUT.json:
##                seconds, times, logLik, theta, fixef, feval.
## R start-up, package loading and CSV reading are not timed.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: insteval.R DATA.csv OUT.json [REPEATS]")
repeats <- if (length(args) >= 3) as.integer(args[3]) else 3L
if (repeats == 0L) {
  d <- InstEval[, c("y", "service", "s", "d", "dept")]
  d$service <- as.integer(as.character(d$service))
  write.csv(d, args[1], row.names = FALSE)
  writeLines(toJSON(list(rows = nrow(d)), auto_unbox = TRUE), args[2])
  quit(save = "no")
}
d <- read.csv(args[1])
for (g in c("s", "d", "dept")) d[[g]] <- factor(d[[g]])
d$service <- factor(d$service)
form <- y ~ service + (1 | s) + (1 | d) + (1 | dept)
invisible(lmer(form, data = droplevels(d[seq_len(5000), ]), REML = TRUE))  # warm-up
times <- numeric(0)
for (i in seq_len(repeats)) {
  gc()
  t <- system.time(fit <- lmer(form, data = d, REML = TRUE))[["elapsed"]]
  times <- c(times, t)
}
fe <- fixef(fit)
names(fe)[names(fe) == "(Intercept)"] <- "Intercept"
out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
  seconds = min(times), times = times, logLik = as.numeric(logLik(fit)),
  theta = unname(getME(fit, "theta")), theta_names = names(getME(fit, "theta")),
  fixef = as.list(fe), feval = fit@optinfo$feval,
  messages = c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings)
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), args[2])
