# Reference values for fit_severity / fit_global_assessment (tests/test_severity.py):
# ordinal::clmm / clm on the model rows of mesostats' example study, written by the tests'
# data step to severity_example.csv (worst severity per assessed injection session, grades
# 1 = none … 4 = severe; ingredient indicators) and gpa_example.csv (gpa_score coded 1 = −3 …
# 7 = +3; cocktail, visit, subject). Run from this folder: Rscript ref_severity.R
suppressPackageStartupMessages({
  library(ordinal)
  library(jsonlite)
})
tight <- clmm.control(gradTol = 1e-8, maxIter = 500, maxLineIter = 200,
                      rel.tol = 1e-15, x.tol = 1e-15, eval.max = 5000, iter.max = 5000)
sev <- read.csv("severity_example.csv", colClasses = c(subject_id = "character"))
sev$severity <- factor(sev$severity, levels = 1:4, ordered = TRUE)
gpa <- read.csv("gpa_example.csv", colClasses = c(subject_id = "character"))
gpa$gpa <- factor(gpa$gpa, ordered = TRUE)
gpa$cocktail <- factor(gpa$cocktail, levels = c("P", "A", "B", "C"))
gpa$visit_f <- factor(gpa$visit)
one <- droplevels(gpa[gpa$visit == 6, ])

clmm_summary <- function(m) {
  d <- update(m, control = clmm.control())  # SEs from clean inner updates (see ref_clmm.R)
  list(coefficients = as.list(coef(m)), std_errors_default = as.list(sqrt(diag(vcov(d)))),
       loglik = as.numeric(logLik(m)), sd = as.numeric(attr(VarCorr(m)[[1]], "stddev")),
       nobs = m$dims$nobs, max_gradient = max(abs(m$gradient)))
}
out <- list(
  severity_laplace = clmm_summary(clmm(severity ~ biotin + dutasteride + minoxidil +
                                         (1 | subject_id), data = sev, control = tight)),
  severity_agq10 = clmm_summary(clmm(severity ~ biotin + dutasteride + minoxidil +
                                       (1 | subject_id), data = sev, nAGQ = 10,
                                     control = tight)),
  gpa_all_laplace = clmm_summary(clmm(gpa ~ cocktail + visit_f + (1 | subject_id),
                                      data = gpa, control = tight))
)
m <- clm(gpa ~ cocktail, data = one, control = clm.control(gradTol = 1e-10))
out$gpa_visit6_clm <- list(coefficients = as.list(coef(m)),
                           std_errors = as.list(sqrt(diag(vcov(m)))),
                           loglik = as.numeric(logLik(m)), nobs = m$nobs,
                           levels = levels(one$gpa))
out$versions <- list(R = R.version.string, ordinal = as.character(packageVersion("ordinal")))
write_json(out, "ref_severity.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
