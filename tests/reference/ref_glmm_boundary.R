# Poisson GLMMs whose maximum is inside (random-intercept SD > 0) but where a gradient
# optimiser started at SD = 1 can end at SD = 0, where the gradient in the SD vanishes by
# symmetry (mesostats before the boundary probe in mixed/glmm/optimise.py did, on these).
# Data: tests/reference/glmm_boundary.csv, four seeded data sets of the poisson_log case of
# tests/test_check_wrong_link.py (60 persons x 6 visits, mu = exp(0.5 + 0.28 x + u)).
# Run from tests/reference:  Rscript ref_glmm_boundary.R  -> ref_glmm_boundary.json
suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})
data <- read.csv("glmm_boundary.csv", stringsAsFactors = FALSE)
data$pid <- factor(data$pid)
out <- list()
for (name in unique(data$dataset)) {
  d <- data[data$dataset == name, ]
  tmb <- glmmTMB(y ~ x + (1 | pid), data = d, family = poisson)
  gl <- glmer(y ~ x + (1 | pid), data = d, family = poisson)
  out[[name]] <- list(
    glmmTMB = list(
      loglik = as.numeric(logLik(tmb)),
      fixef = as.list(fixef(tmb)$cond),
      se = as.list(sqrt(diag(vcov(tmb)$cond))),
      sd = attr(VarCorr(tmb)$cond$pid, "stddev")[[1]]
    ),
    glmer = list(
      loglik = as.numeric(logLik(gl)),
      fixef = as.list(fixef(gl)),
      se = as.list(sqrt(diag(as.matrix(vcov(gl))))),
      sd = attr(VarCorr(gl)$pid, "stddev")[[1]]
    )
  )
}
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     glmmTMB = as.character(packageVersion("glmmTMB")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "ref_glmm_boundary.json")
