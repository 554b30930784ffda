#!/usr/bin/env Rscript
## Negative-binomial (NB2) GLMM reference values for tests/test_glmm_negbin.py.
## Usage: Rscript ref_nb.R OUTDIR      (from this folder: Rscript ref_nb.R .)
## Needs glmmTMB (its Salamanders data) and jsonlite.
##
## Data written beside this script: salamanders.csv = glmmTMB's Salamanders (644 rows; site,
## mined, spp, sample, cover, count) plus a made-up exposure column `area` (survey area in m^2,
## 1.0 / 1.5 / 2.0 / 2.5 for sample 1-4) for the offset case. Factor levels in R's order
## are stored in the JSON ("levels"), so Python builds the same contrasts.
##
## JSON layout of ref_nb.json: versions; levels; for each case a block
##   {fixef: {term: value}, se: {term: value}, sd_site, k (= sigma(fit), the NB2 dispersion
##    with Var = mu + mu^2/k), log_k, se_log_k (from the joint Hessian over (beta, theta,
##    log k), TMB's sdreport), se_log_sd_site, logLik, max_abs_gradient, pdHess}, all at
##   glmmTMB's optimum polished by Newton steps on its objective (see polish())
## term names as formulaic spells them ("Intercept", "spp[T.PR]", "mined[T.no]").
##   laplace          count ~ spp + mined + (1 | site), nbinom2
##   offset_laplace   count ~ spp + mined + offset(log(area)) + (1 | site), nbinom2
##   crossed_laplace  count ~ mined + cover + (1 | site) + (1 | spp), nbinom2 (two grouping
##                    factors: the general Laplace path); sd_site and sd_spp
##   agq              no AGQ in glmmTMB: the exact marginal log-likelihood (integrate() per
##                    site of the NB2 likelihood times the N(0, sd^2) density) at the
##                    "agq_at" parameter values (the Laplace estimates), logLik_integrate
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
suppressPackageStartupMessages({ library(glmmTMB); library(jsonlite) })
data(Salamanders, package = "glmmTMB")
d <- Salamanders
d$site <- factor(as.character(d$site))
d$area <- c(1.0, 1.5, 2.0, 2.5)[d$sample]
write.csv(d[, c("site", "mined", "spp", "sample", "cover", "count", "area")],
          file.path(out, "salamanders.csv"), row.names = FALSE)

pyname <- function(n) {
  n <- sub("^\\(Intercept\\)$", "Intercept", n)
  n <- sub("^spp(.*)$", "spp[T.\\1]", n)
  sub("^mined(.*)$", "mined[T.\\1]", n)
}
ctrl <- glmmTMBControl(optCtrl = list(rel.tol = 1e-12, iter.max = 1e4, eval.max = 1e4))
## glmmTMB's optimum polished by Newton steps on its own objective (TMB's exact gradient,
## optimHess's Hessian): the Laplace optimum to ~1e-9, as in ref_glmm_more.R
polish <- function(f) {
  obj <- f$obj
  par <- f$fit$par
  for (i in 1:6) {
    H <- optimHess(par, obj$fn, obj$gr)
    par <- par - solve(H, obj$gr(par))
  }
  list(par = par, sdr = TMB::sdreport(obj, par.fixed = par), nll = obj$fn(par),
       grad = max(abs(obj$gr(par))))
}
block <- function(f) {
  p <- polish(f)
  par <- p$par
  sdr <- p$sdr
  nm <- pyname(names(fixef(f)$cond))
  nb <- length(nm)
  fe <- par[names(par) == "beta"]
  se <- sqrt(diag(sdr$cov.fixed))
  dname <- if ("betad" %in% names(par)) "betad" else "betadisp"
  list(
    fixef = as.list(setNames(unname(fe), nm)),
    se = as.list(setNames(unname(se[seq_len(nb)]), nm)),
    sd_site = unname(exp(par[names(par) == "theta"])),
    se_log_sd_site = unname(se[names(par) == "theta"]),
    k = unname(exp(par[names(par) == dname])),
    log_k = unname(par[names(par) == dname]),
    se_log_k = unname(se[names(par) == dname]),
    logLik = -p$nll,
    logLik_glmmTMB_unpolished = as.numeric(logLik(f)),
    max_abs_gradient = p$grad,
    pdHess = sdr$pdHess
  )
}
m1 <- glmmTMB(count ~ spp + mined + (1 | site), data = d, family = nbinom2, control = ctrl)
m2 <- glmmTMB(count ~ spp + mined + offset(log(area)) + (1 | site), data = d,
              family = nbinom2, control = ctrl)

## exact marginal log-likelihood of the NB2 GLMM at given (beta, sd, k) by integrate()
exact_loglik <- function(b, dat, with_offset) {
  X <- model.matrix(~ spp + mined, dat)
  beta <- unlist(b$fixef)
  sd <- b$sd_site
  k <- b$k
  eta0 <- drop(X %*% beta) + if (with_offset) log(dat$area) else 0
  total <- 0
  for (s in levels(dat$site)) {
    rows <- dat$site == s
    y <- dat$count[rows]; e <- eta0[rows]
    lf <- function(bb) sum(dnbinom(y, size = k, mu = exp(e + bb), log = TRUE)) +
      dnorm(bb, 0, sd, log = TRUE)
    m <- optimize(lf, c(-10 * sd, 10 * sd), maximum = TRUE, tol = 1e-12)$maximum
    top <- lf(m)
    g <- function(b) sapply(b, function(bb) exp(lf(bb) - top))
    ## centred at the site's mode and split there: integrate() is then accurate to ~1e-13
    val <- integrate(g, m - 15 * sd, m, rel.tol = 1e-13, subdivisions = 2000L)$value +
      integrate(g, m, m + 15 * sd, rel.tol = 1e-13, subdivisions = 2000L)$value
    total <- total + top + log(val)
  }
  total
}
m3 <- glmmTMB(count ~ mined + cover + (1 | site) + (1 | spp), data = d, family = nbinom2,
              control = ctrl)
b1 <- block(m1)
b2 <- block(m2)
b3 <- block(m3)
b3$sd_spp <- b3$sd_site[2]
b3$sd_site <- b3$sd_site[1]
b3$se_log_sd_spp <- b3$se_log_sd_site[2]
b3$se_log_sd_site <- b3$se_log_sd_site[1]
res <- list(
  versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                  TMB = as.character(packageVersion("TMB"))),
  levels = list(spp = levels(d$spp), mined = levels(d$mined)),
  laplace = b1,
  offset_laplace = b2,
  crossed_laplace = b3,
  agq = list(agq_at = "laplace", logLik_integrate = exact_loglik(b1, d, FALSE),
             offset_logLik_integrate = exact_loglik(b2, d, TRUE))
)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "ref_nb.json"))
