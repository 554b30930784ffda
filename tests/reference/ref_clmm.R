# Reference values for fit_clmm (tests/test_clmm.py): ordinal::clmm on the wine data
# (Randall 1989; shipped with ordinal). Run from this folder: Rscript ref_clmm.R
# Writes wine.csv and ref_clmm.json.
suppressPackageStartupMessages({
  library(ordinal)
  library(jsonlite)
})

write.csv(wine[, c("rating", "temp", "contact", "bottle", "judge")], "wine.csv",
          row.names = FALSE)

tight <- clmm.control(gradTol = 1e-8, maxIter = 500, maxLineIter = 200,
                      rel.tol = 1e-15, x.tol = 1e-15, eval.max = 5000, iter.max = 5000)

summarise <- function(m) {
  # SEs: clmm's Hessian is second differences of the Laplace objective (step 1e-4), whose
  # inner mode updates stop early under the tight control (warnings "iteration limit
  # reached when updating the random effects"); that noise moves the Laplace SEs by up to 2%.
  # The same model refitted with the default control has clean inner updates: its SEs
  # are recorded as std_errors_default / threshold_se_default.
  d <- update(m, control = clmm.control())
  vd <- vcov(d)
  vc <- vcov(m)
  se <- sqrt(diag(vc))
  re <- ranef(m, condVar = TRUE)
  cv <- condVar(m)
  list(
    coefficients = as.list(coef(m)),
    std_errors = as.list(se),
    thresholds = as.list(m$Theta),
    sd = lapply(VarCorr(m), function(v) as.numeric(attr(v, "stddev"))),
    sdcor = lapply(VarCorr(m), function(v) {
      r <- attr(v, "correlation")
      c(as.numeric(attr(v, "stddev")), if (nrow(v) > 1) r[lower.tri(r)] else NULL)
    }),
    loglik = as.numeric(logLik(m)),
    aic = AIC(m),
    bic = BIC(m),
    nobs = m$dims$nobs,
    max_gradient = max(abs(m$gradient)),
    ranef = lapply(re, function(r) setNames(as.list(r[, 1]), rownames(r))),
    ranef_var = lapply(cv, function(r) if (is.null(dim(r)) || length(dim(r)) == 2)
      as.numeric(as.matrix(r)[, 1]) else NULL),
    n_alpha = length(m$alpha),
    std_errors_default = as.list(sqrt(diag(vd))),
    threshold_se_default = sqrt(diag(d$tJac %*% vd[seq_along(d$alpha), seq_along(d$alpha)] %*%
                                     t(d$tJac))),
    threshold_se = sqrt(diag(m$tJac %*% vc[seq_along(m$alpha), seq_along(m$alpha)] %*%
                             t(m$tJac)))
  )
}

fits <- list(
  laplace_logit_flexible = clmm(rating ~ temp + contact + (1 | judge), data = wine,
                                control = tight),
  laplace_logit_equidistant = clmm(rating ~ temp + contact + (1 | judge), data = wine,
                                   threshold = "equidistant", control = tight),
  laplace_logit_symmetric = clmm(rating ~ temp + contact + (1 | judge), data = wine,
                                 threshold = "symmetric", control = tight),
  agq10_logit_flexible = clmm(rating ~ temp + contact + (1 | judge), data = wine,
                              nAGQ = 10, control = tight),
  laplace_probit_flexible = clmm(rating ~ temp + contact + (1 | judge), data = wine,
                                 link = "probit", control = tight),
  # ordinal 2022.11.16's clmm swaps the cloglog and loglog links in its C code: its
  # link = "loglog" fits P(Y <= j) = 1 - exp(-exp(theta_j - eta)), which is clm's (and our)
  # cloglog. clm(link = "cloglog") below (no random effect) pins the definition down.
  agq10_cloglog_flexible = clmm(rating ~ temp + contact + (1 | judge), data = wine,
                                link = "loglog", nAGQ = 10, control = tight),
  laplace_logit_two_terms = clmm(rating ~ temp + contact + (1 | judge) + (1 | bottle),
                                 data = wine, control = tight),
  laplace_logit_crossed_bottle = clmm(rating ~ contact + (1 | judge) + (1 | bottle),
                                      data = wine, control = tight),
  laplace_logit_random_slope = clmm(rating ~ temp + contact + (1 + temp | judge),
                                    data = wine, control = tight),
  laplace_logit_nested = clmm(rating ~ temp + contact + (1 | judge / bottle), data = wine,
                              control = tight)
)

out <- lapply(fits, summarise)

# Independent check of the Laplace log-likelihood of the single-judge models at clmm's own
# estimates: per judge, the mode by optimize() and the curvature by numDeriv.
independent_laplace <- function(m, cdf) {
  X <- model.matrix(~ temp + contact, wine)[, -1]
  eta <- drop(X %*% m$beta)
  y <- as.integer(wine$rating)
  ext <- c(-Inf, m$Theta, Inf)
  s <- m$ST[[1]][1, 1]
  total <- 0
  for (j in levels(wine$judge)) {
    i <- wine$judge == j
    h <- function(u) {
      sum(log(cdf(ext[y[i] + 1] - eta[i] - s * u) - cdf(ext[y[i]] - eta[i] - s * u))) - u^2 / 2
    }
    o <- optimize(h, c(-20, 20), maximum = TRUE, tol = 1e-12)
    curvature <- -numDeriv::hessian(h, o$maximum)
    total <- total + o$objective - 0.5 * log(curvature)
  }
  total
}
out$independent_laplace_at_clmm_estimates <- list(
  laplace_logit_flexible = independent_laplace(fits$laplace_logit_flexible, plogis),
  laplace_probit_flexible = independent_laplace(fits$laplace_probit_flexible, pnorm)
)
clm_cloglog <- clm(rating ~ temp + contact, data = wine, link = "cloglog")
out$clm_cloglog_no_random <- list(coefficients = as.list(coef(clm_cloglog)),
                                  loglik = as.numeric(logLik(clm_cloglog)))
# No random effects (fit_clmm with a formula without random terms = clm)
clm_summary <- function(m) {
  vc <- vcov(m)
  list(coefficients = as.list(coef(m)), std_errors = as.list(sqrt(diag(vc))),
       thresholds = as.list(m$Theta), loglik = as.numeric(logLik(m)), aic = AIC(m),
       bic = BIC(m), nobs = m$nobs, max_gradient = max(abs(m$gradient)),
       threshold_se = sqrt(diag(m$tJac %*% vc[seq_along(m$alpha), seq_along(m$alpha)] %*%
                                t(m$tJac))))
}
clm_tight <- clm.control(gradTol = 1e-10, maxIter = 500)
out$clm_no_random <- list(
  logit_flexible = clm_summary(clm(rating ~ temp + contact, data = wine, control = clm_tight)),
  logit_equidistant = clm_summary(clm(rating ~ temp + contact, data = wine,
                                      threshold = "equidistant", control = clm_tight)),
  probit_flexible = clm_summary(clm(rating ~ temp + contact, data = wine, link = "probit",
                                    control = clm_tight))
)
out$versions <- list(R = R.version.string,
                     ordinal = as.character(packageVersion("ordinal")),
                     ucminf = as.character(packageVersion("ucminf")))
write_json(out, "ref_clmm.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
