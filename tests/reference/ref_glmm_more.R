#!/usr/bin/env Rscript
## GLMM reference values not covered by ref_values.R / ref_more.R: a random-slope binomial
## GLMM (correlated intercept and slope) and a Poisson GLMM with an exposure offset fitted by
## Laplace (glmmTMB) and by adaptive Gauss-Hermite quadrature (glmer nAGQ = 15).
## Writes glmm_more.csv (simulated data, frozen) and ref_glmm_more.json in OUTDIR.
## Usage: Rscript ref_glmm_more.R OUTDIR
suppressPackageStartupMessages({ library(lme4); library(glmmTMB); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "."
J <- function(x, file) writeLines(toJSON(x, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), file)
nm <- function(x) { n <- names(x); n[n == "(Intercept)"] <- "Intercept"; names(x) <- n; as.list(x) }

set.seed(20261125)
n_sub <- 80; n_ses <- 8
subject <- rep(sprintf("s%03d", 1:n_sub), each = n_ses)
week <- rep(0:(n_ses - 1), n_sub)
dose <- rep(rbinom(n_sub, 1, 0.5), each = n_ses)
b0 <- rnorm(n_sub, 0, 1.0); b1 <- 0.5 * b0 / 1.0 * 0.15 + rnorm(n_sub, 0, 0.15 * sqrt(1 - 0.25))
i <- rep(1:n_sub, each = n_ses)
eta_b <- -1 + 0.8 * dose - 0.1 * week + b0[i] + b1[i] * week
event <- rbinom(length(eta_b), 1, plogis(eta_b))
exposure <- round(runif(length(eta_b), 0.5, 3), 2)
eta_p <- 0.2 + 0.4 * dose + log(exposure) + rnorm(n_sub, 0, 0.6)[i]
count <- rpois(length(eta_p), exp(eta_p))
d <- data.frame(subject, week, dose, event, exposure, count)
write.csv(d, file.path(out, "glmm_more.csv"), row.names = FALSE)

f_slope <- event ~ dose + week + (1 + week | subject)
tmb_slope <- glmmTMB(f_slope, data = d, family = binomial)
vc <- VarCorr(tmb_slope)$cond$subject
f_off <- count ~ dose + offset(log(exposure)) + (1 | subject)
tmb_off <- glmmTMB(f_off, data = d, family = poisson)
agq_off <- glmer(f_off, data = d, family = poisson, nAGQ = 15,
                 control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
## exact marginal log-likelihood (full scale, incl. -log y!) at glmer's AGQ estimates
pois_integrate <- function(fit) {
  X <- getME(fit, "X"); beta <- fixef(fit); sd <- attr(VarCorr(fit)$subject, "stddev")[[1]]
  eta <- drop(X %*% beta) + log(d$exposure); y <- d$count
  ## integrate(f, -Inf, Inf) misses mass of these peaked integrands (0.2 log-units here), so
  ## integrate exp(log f - max log f) over mode +- 12 prior SDs
  sum(sapply(split(seq_along(y), d$subject), function(ix) {
    lf <- function(bb) sum(dpois(y[ix], exp(eta[ix] + bb), log = TRUE)) + dnorm(bb, 0, sd, log = TRUE)
    m <- optimize(lf, c(-12 * sd, 12 * sd), maximum = TRUE, tol = 1e-10)
    f <- function(b) exp(sapply(b, lf) - m$objective)
    I <- integrate(f, m$maximum - 12 * sd, m$maximum + 12 * sd, rel.tol = 1e-12, subdivisions = 2000L)
    m$objective + log(I$value)
  }))
}
J(list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  glmmTMB = as.character(packageVersion("glmmTMB"))),
  data = "glmm_more.csv: simulated in this script (set.seed(20261125)); 80 subjects x 8 sessions",
  random_slope_glmmTMB = list(
    formula = deparse(f_slope),
    fixef = nm(fixef(tmb_slope)$cond), se = nm(sqrt(diag(vcov(tmb_slope)$cond))),
    sd_intercept = unname(attr(vc, "stddev")[1]), sd_week = unname(attr(vc, "stddev")[2]),
    corr = unname(attr(vc, "correlation")[1, 2]), logLik = as.numeric(logLik(tmb_slope)),
    pdHess = tmb_slope$sdr$pdHess),
  offset_poisson_glmmTMB = list(
    formula = deparse(f_off),
    fixef = nm(fixef(tmb_off)$cond), se = nm(sqrt(diag(vcov(tmb_off)$cond))),
    sd_intercept = unname(attr(VarCorr(tmb_off)$cond$subject, "stddev")[1]),
    logLik = as.numeric(logLik(tmb_off))),
  offset_poisson_glmer_agq15 = list(
    formula = deparse(f_off),
    fixef = nm(fixef(agq_off)), sd_intercept = unname(attr(VarCorr(agq_off)$subject, "stddev")[1]),
    logLik = as.numeric(logLik(agq_off)),
    logLik_integrate = pois_integrate(agq_off),
    note = paste("glmer nAGQ=15 (bobyqa). lme4's nAGQ>1 logLik drops the Poisson constant",
                 "(lme4 issue #161); logLik_integrate is the exact marginal log-likelihood at",
                 "these estimates (stats::integrate per subject around its mode, incl. -log y!)."))
), file.path(out, "ref_glmm_more.json"))
cat("done\n")
