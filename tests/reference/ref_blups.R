#!/usr/bin/env Rscript
## Conditional modes (BLUPs) and conditional SDs of the Penicillin and Pastes fits of
## ref_more.R (same formulas, same tight optimiser), for the BLUP checks of
## tests/mixed_checks.py: lme4's ranef(condVar = TRUE), first levels of every grouping factor.
## Usage: Rscript ref_blups.R DIR   (DIR holds penicillin.csv and pastes.csv; writes ref_blups.json)
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1] else "."
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15, maxeval = 1e5))
modes <- function(fit, n = 4) {
  r <- ranef(fit, condVar = TRUE)
  lapply(r, function(g) {
    pv <- attr(g, "postVar")
    k <- seq_len(min(n, nrow(g)))
    list(levels = rownames(g)[k], mode = unname(g[k, 1]), cond_sd = sqrt(pv[1, 1, k]))
  })
}
refs <- function(formula, data) {
  out <- list(formula = deparse(formula))
  for (reml in c(TRUE, FALSE)) {
    fit <- lmer(formula, data = data, REML = reml, control = tight)
    out[[if (reml) "REML" else "ML"]] <- modes(fit)
  }
  out
}
pen <- read.csv(file.path(dir, "penicillin.csv"), stringsAsFactors = TRUE)
pas <- read.csv(file.path(dir, "pastes.csv"), stringsAsFactors = TRUE)
out <- list(
  lme4 = as.character(packageVersion("lme4")),
  penicillin = refs(diameter ~ 1 + (1 | plate) + (1 | sample), pen),
  pastes = refs(strength ~ 1 + (1 | batch/cask), pas)
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "ref_blups.json"))
