#!/usr/bin/env Rscript
## Conditional modes (BLUPs) and conditional SDs of the simulated crossed-slopes and
## three-effects fits of tests/test_lmm.py (lme4's ranef(condVar = TRUE), first levels).
## Usage: write crossed_slopes_data() and three_effects_data() of tests/test_lmm.py to
## DIR/crossed_slopes.csv and DIR/three_effects.csv (index=False), then
##   Rscript ref_blups_simulated.R DIR     (writes DIR/ref_blups_simulated.json)
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1] else "."
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
tight <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15, maxeval = 1e5))
modes <- function(fit, n = 3) {
  r <- ranef(fit, condVar = TRUE)
  lapply(r, function(g) {
    pv <- attr(g, "postVar"); k <- seq_len(min(n, nrow(g)))
    cols <- colnames(g); cols[cols == "(Intercept)"] <- "Intercept"
    sd <- t(sapply(k, function(i) sqrt(diag(as.matrix(pv[, , i])))))
    if (length(cols) == 1) sd <- matrix(sd, ncol = 1)
    list(levels = rownames(g)[k], columns = cols, mode = unname(as.matrix(g[k, , drop = FALSE])), cond_sd = unname(sd))
  })
}
d <- read.csv(file.path(dir, "crossed_slopes.csv")); d$subj <- factor(d$subj); d$item <- factor(d$item)
three <- read.csv(file.path(dir, "three_effects.csv")); three$g <- factor(three$g)
out <- list(
  crossed_REML = modes(lmer(y ~ x + (1 | subj) + (1 + x | item), d, REML = TRUE, control = tight)),
  crossed_ML = modes(lmer(y ~ x + (1 | subj) + (1 + x | item), d, REML = FALSE, control = tight)),
  three_REML = modes(lmer(y ~ t + z + (1 + t + z | g), three, REML = TRUE, control = tight)))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "ref_blups_simulated.json"))
