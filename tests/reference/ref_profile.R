# Reference values for profile-likelihood confidence intervals of variance components
# (tests/test_profile.py reads ref_profile.json). Run from this folder:
#   Rscript ref_profile.R
# Produces ref_profile.json with lme4's confint(method = "profile") bounds, at lme4's default
# profile grid (delta.cutoff = 1/8) and on a finer grid (delta.cutoff = 1/64, less spline
# interpolation error). NB: lme4 profiles the *ML* deviance even for a REML fit (devfun2 calls
# refitML), so these bounds are those of the ML profile.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

ci_list <- function(ci, parms) {
  out <- list()
  for (p in parms) out[[p]] <- unname(ci[p, ])
  out
}

# sleepstudy: Reaction ~ Days + (Days | Subject), REML fit (as in the brief)
sleep <- read.csv("sleepstudy.csv")
sleep$Subject <- factor(sleep$Subject)
fm <- lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE)
fm_ml <- refitML(fm)
sig_parms <- c(".sig01", ".sig02", ".sig03", ".sigma")
ci_default <- confint(fm, parm = "theta_", method = "profile", oldNames = TRUE)
ci_fine <- confint(profile(fm, which = "theta_", delta.cutoff = 1 / 64, signames = TRUE))
vc_ml <- as.data.frame(VarCorr(fm_ml))
# uncorrelated random intercept and slope: (Days || Subject)
fu <- lmer(Reaction ~ Days + (Days || Subject), sleep, REML = TRUE)
uci_fine <- confint(profile(fu, which = "theta_", delta.cutoff = 1 / 64, signames = TRUE))

# cbpp: binomial GLMM, Laplace
cbpp <- read.csv("cbpp.csv")
cbpp$period <- factor(cbpp$period)
cbpp$herd <- factor(cbpp$herd)
gm <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
gci_default <- confint(gm, parm = "theta_", method = "profile", oldNames = TRUE)
gci_fine <- confint(profile(gm, which = "theta_", delta.cutoff = 1 / 64), parm = "theta_")

# Dyestuff2: the between-batch SD is estimated as 0 -> the lower bound is 0
dy <- lme4::Dyestuff2
fd <- suppressMessages(lmer(Yield ~ 1 + (1 | Batch), dy, REML = TRUE))
dci_default <- confint(fd, parm = "theta_", method = "profile", oldNames = TRUE)
dci_fine <- confint(profile(fd, which = "theta_", delta.cutoff = 1 / 64))

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
  level = 0.95,
  note = paste(
    "confint(fit, method = 'profile'): lme4 profiles the ML deviance even for REML fits",
    "(devfun2 -> refitML). 'default' = delta.cutoff 1/8 (lme4 default), 'fine' = 1/64.",
    ".sig01/.sig02/.sig03 = SD(Intercept), cor(Intercept, Days), SD(Days); .sigma = residual SD."
  ),
  sleepstudy = list(
    formula = "Reaction ~ Days + (Days | Subject)",
    fit = "REML (profile on the ML deviance, as lme4)",
    ml_estimates = list(
      .sig01 = vc_ml$sdcor[1], .sig02 = vc_ml$sdcor[3], .sig03 = vc_ml$sdcor[2],
      .sigma = vc_ml$sdcor[4]
    ),
    default = ci_list(ci_default, sig_parms),
    fine = ci_list(ci_fine, sig_parms)
  ),
  sleepstudy_uncorrelated = list(
    formula = "Reaction ~ Days + (Days || Subject)",
    fit = "REML (profile on the ML deviance, as lme4)",
    note = ".sig01 = SD(Intercept), .sig02 = SD(Days) (two scalar terms)",
    fine = ci_list(uci_fine, c(".sig01", ".sig02", ".sigma"))
  ),
  cbpp = list(
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
    fit = "glmer Laplace (nAGQ = 1)",
    estimate = list(.sig01 = unname(getME(gm, "theta"))),
    default = ci_list(gci_default, ".sig01"),
    fine = ci_list(gci_fine, ".sig01")
  ),
  dyestuff2 = list(
    formula = "Yield ~ 1 + (1 | Batch)",
    fit = "REML (singular: SD(Batch) = 0)",
    data = list(Batch = as.character(dy$Batch), Yield = dy$Yield),
    default = ci_list(dci_default, c(".sig01", ".sigma")),
    fine = ci_list(dci_fine, c(".sig01", ".sigma"))
  )
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "ref_profile.json")
