#!/usr/bin/env Rscript
## R side of bench/bench_small.py: lme4 on the small items, each timed INSIDE R.
##
## Usage: Rscript bench/r/small.R MANIFEST.json OUT.json [REPEATS] [CLOCK]
## CLOCK: wall (elapsed, default) or cpu (user + system seconds of this R process).
## MANIFEST lists items (name, kind "lmm" | "glmm", formula, csv, categorical columns).
## Each item: one warm-up fit, then REPEATS fits with gc() before each (system.time around
## lmer(REML = TRUE) / glmer(binomial) only: start-up, package loading, CSV reading excluded);
## the best elapsed time is reported with the logLik and fixed effects.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
manifest <- fromJSON(args[1], simplifyDataFrame = FALSE)
repeats <- if (length(args) >= 3) as.integer(args[3]) else 10L
clock <- if (length(args) >= 4) args[4] else "wall"
seconds_of <- function(t) if (clock == "cpu") t[["user.self"]] + t[["sys.self"]] else t[["elapsed"]]
out <- list(engine = "lme4", version = as.character(packageVersion("lme4")), results = list())
for (item in manifest) {
  d <- read.csv(item$csv)
  for (col in unlist(item$categorical)) d[[col]] <- factor(d[[col]])
  form <- as.formula(item$formula)
  fitter <- if (item$kind == "lmm") {
    function() lmer(form, data = d, REML = TRUE)
  } else {
    function() glmer(form, data = d, family = binomial)
  }
  fit <- suppressWarnings(suppressMessages(fitter()))
  times <- numeric(0)
  for (r in seq_len(repeats)) {
    gc()
    times[r] <- seconds_of(system.time(fit <- suppressWarnings(suppressMessages(fitter()))))
  }
  out$results[[item$name]] <- list(seconds = min(times), times = as.list(times),
                                   logLik = as.numeric(logLik(fit)), fixef = as.list(fixef(fit)))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])
