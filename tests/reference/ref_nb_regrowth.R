# The hair-count regrowth model of `ms.simulate_study(150, seed=5)` (NB2 GLMM, log link,
# offset log(area), person and site intercepts), fitted by glmmTMB 1.1.5 (Laplace).
# Data: nb_regrowth_seed5.csv, the model frame `ms.fit_regrowth(study, "hair_count",
# random_slope=False)` fits (tests/test_glmm_negbin.py checks that they are the same rows).
# Before mesostats probed variance parameters at 0 (mixed/glmm/optimise.py) its fit ended at a
# person SD of 0, 46.7 log-likelihood units below this optimum.
# Run from tests/reference:  Rscript ref_nb_regrowth.R  -> ref_nb_regrowth.json
suppressPackageStartupMessages({
  library(glmmTMB)
  library(jsonlite)
})
d <- read.csv("nb_regrowth_seed5.csv")
d$subject_id <- factor(d$subject_id)
d$site <- factor(d$site)
m <- glmmTMB(
  value ~ offset(log(area)) + baseline_centered + week + week:biotin + week:dutasteride +
    week:minoxidil + (1 | subject_id) + (1 | site),
  data = d, family = nbinom2
)
vc <- VarCorr(m)$cond
out <- list(
  loglik = as.numeric(logLik(m)),
  fixef = as.list(fixef(m)$cond),
  se = as.list(sqrt(diag(vcov(m)$cond))),
  sd_subject = attr(vc$subject_id, "stddev")[[1]],
  sd_site = attr(vc$site, "stddev")[[1]],
  dispersion = sigma(m),
  versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "ref_nb_regrowth.json")
