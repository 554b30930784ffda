# R side of bench/bench_clmm.py: time ordinal::clmm on the CSV, write JSON.
# Usage: Rscript clmm.R data.csv out.json repeats nagq
suppressPackageStartupMessages({
  library(ordinal)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
repeats <- as.integer(args[3])
nagq <- as.integer(args[4])
d$grade <- factor(d$grade, levels = sort(unique(d$grade)), ordered = TRUE)
d$subject <- factor(d$subject)
times <- cpu <- numeric(repeats)
for (k in seq_len(repeats)) {
  t0 <- proc.time()
  m <- clmm(grade ~ treated + week + baseline + dressing + (1 | subject), data = d,
            nAGQ = nagq)
  t1 <- proc.time() - t0
  times[k] <- t1[["elapsed"]]
  cpu[k] <- t1[["user.self"]] + t1[["sys.self"]]
}
se <- sqrt(diag(vcov(m)))
write_json(list(seconds = min(times), cpu_seconds = min(cpu), loglik = as.numeric(logLik(m)),
                coefficients = as.list(coef(m)), std_errors = as.list(se),
                sd = as.numeric(m$ST[[1]]), max_gradient = max(abs(m$gradient)),
                ordinal = as.character(packageVersion("ordinal"))),
           args[2], digits = NA, auto_unbox = TRUE)
