#!/usr/bin/env Rscript
## GLMM reference values not covered by ref_values.R / ref_more.R.
## Usage: Rscript ref_glmm_more.R OUTDIR      (from this folder: Rscript ref_glmm_more.R .)
## Needs lme4, glmmTMB, jsonlite; sources glmm_exact.R from this folder (independent AGQ).
##
## Data (simulated here, frozen as CSV beside this script):
##   glmm_more.csv              set.seed(20261125): 80 subjects x 8 sessions; subject, week, dose,
##                              event (0/1), exposure, count
##   glmm_more_binary.csv       set.seed(20261126): 80 groups g x 25 rows; x in {-1,-0.5,0,0.5,1},
##                              5 replicates each; y (0/1) from logit = -0.3 + 0.8 x + b0 + b1 x,
##                              SD(b0) = 1, SD(b1) = 0.7, corr 0.4
##   glmm_more_binary_agg.csv   the same y aggregated per g x x: successes, failures (n = 5)
##
## JSON layout of ref_glmm_more.json (a "fit" block is {fixef: {term: value}, se: {term: value},
## logLik, sd_* / corr, ...}; term names as formulaic spells them, "Intercept"):
##   versions, data
##   random_slope_glmmTMB          glmm_more.csv, event ~ dose + week + (1 + week | subject),
##                                 glmmTMB Laplace: fixef, se, sd_intercept, sd_week, corr,
##                                 logLik, pdHess
##   offset_poisson_glmmTMB        glmm_more.csv, count ~ dose + offset(log(exposure)) + (1 | subject)
##   offset_poisson_glmer_agq15    same model, glmer nAGQ = 15: logLik as lme4 reports it (drops
##                                 the Poisson constant) and logLik_integrate (exact, full scale)
##   binary_random_slope           (a) glmm_more_binary.csv, y ~ x + (1 + x | g):
##       glmmTMB                   Laplace: fixef, se, sd_intercept, sd_x, corr, theta (lme4
##                                 order: Cholesky factor of the RE covariance, column-wise
##                                 lower triangle), logLik, pdHess, max_abs_gradient, and
##                                 newton_polished {fixef, se, sd_intercept, sd_x, corr, logLik,
##                                 max_abs_gradient}: glmmTMB's optimum after Newton steps on its
##                                 own objective, the Laplace optimum to ~1e-9 (MATCH THIS)
##       glmer_laplace             glmer nAGQ = 1 (defaults), same fields + messages: contrast
##                                 (glmer may stop short; its SEs come from a finite-difference
##                                 Hessian)
##   poisson_random_intercept      (b) glmm_more.csv, count ~ dose + (1 | subject) (no offset):
##       glmmTMB, glmer_laplace    Laplace fits: fixef, se, sd_intercept, logLik (full scale);
##                                 every glmmTMB block here also has newton_polished
##       glmer_agq20               nAGQ = 20: fixef, sd_intercept, logLik (lme4's, constant
##                                 dropped), logLik_integrate (exact marginal logLik at these
##                                 estimates, full scale incl. -log y!), saturated_loglik =
##                                 sum(dpois(y, y, log = TRUE))
##   binary_aggregated             (c) scale check on glmm_more_binary(_agg).csv:
##       lchoose_sum               sum(lchoose(n, successes)) over the aggregated rows: the
##                                 aggregated logLik = binary logLik + lchoose_sum, same estimates
##       random_slope              cbind(successes, failures) ~ x + (1 + x | g): glmmTMB,
##                                 glmer_laplace (fields as in binary_random_slope)
##       random_intercept          formula_binary y ~ x + (1 | g), formula_aggregated
##                                 cbind(successes, failures) ~ x + (1 | g);
##           binary, aggregated    each with glmmTMB, glmer_laplace, glmer_agq20 (logLik as lme4
##                                 reports it) and exact: glmm_exact.R at glmer_agq20's estimates
##                                 (agq20_loglik: 20-node AGQ on the full scale,
##                                 integrate_loglik, saturated_loglik) and the maximised 20-node
##                                 AGQ (agq20_optimum: fixef, se, sd_intercept, logLik).
##                                 lme4's aggregated nAGQ = 20 logLik is on another scale (lme4
##                                 issue #161: it equals agq20_loglik - saturated_loglik); its
##                                 binary one is not (saturated_loglik = 0).
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
pois_integrate <- function(fit, offset = log(d$exposure)) {
  X <- getME(fit, "X"); beta <- fixef(fit); sd <- attr(VarCorr(fit)$subject, "stddev")[[1]]
  eta <- drop(X %*% beta) + offset; y <- d$count
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
ref <- list(
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
)

## ---- added blocks: (a) binary random slope, (b) Poisson random intercept, (c) scale check
here <- local({
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(f) == 1) dirname(normalizePath(f)) else "."
})
source(file.path(here, "glmm_exact.R"))
ref$versions$TMB <- as.character(packageVersion("TMB"))
ref$versions$Matrix <- as.character(packageVersion("Matrix"))
ref$versions$jsonlite <- as.character(packageVersion("jsonlite"))
ref$data <- paste(ref$data, "| glmm_more_binary.csv: set.seed(20261126); 80 groups x 25 rows",
                  "| glmm_more_binary_agg.csv: glmm_more_binary.csv aggregated per g x x")

quiet <- function(expr) {
  msgs <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m))); invokeRestart("muffleMessage") })
  attr(val, "msgs") <- msgs
  val
}
chol_theta <- function(S) { L <- t(chol(S)); L[lower.tri(L, diag = TRUE)] }
## Newton steps on glmmTMB's own objective (exact TMB gradient, Hessian by differencing it)
## from glmmTMB's estimates: the Laplace optimum to ~1e-9 (nlminb's defaults stop ~1e-7 short).
## glmmTMB's parameters: beta, then theta = log SDs (and, for 2 x 2, t with corr = t/sqrt(1+t^2)).
tmb_polish <- function(fit, slope = NULL) {
  fn <- fit$obj$fn; gr <- fit$obj$gr; par <- fit$fit$par
  for (i in 1:4) par <- par - solve(optimHess(par, fn, gr), as.vector(gr(par)))
  V <- solve(optimHess(par, fn, gr))
  ib <- which(names(par) == "beta"); th <- unname(par[names(par) == "theta"])
  terms <- names(fixef(fit)$cond)
  b <- list(fixef = nm(setNames(par[ib], terms)), se = nm(setNames(sqrt(diag(V)[ib]), terms)),
            sd_intercept = exp(th[1]), logLik = -fn(par), max_abs_gradient = max(abs(gr(par))))
  if (!is.null(slope)) {
    b[[paste0("sd_", slope)]] <- exp(th[2])
    b$corr <- th[3] / sqrt(1 + th[3]^2)
  }
  b
}
tmb_block <- function(fit, group, slope = NULL) {
  vc <- VarCorr(fit)$cond[[group]]
  sds <- unname(attr(vc, "stddev"))
  b <- list(fixef = nm(fixef(fit)$cond), se = nm(sqrt(diag(vcov(fit)$cond))),
            sd_intercept = sds[1], logLik = as.numeric(logLik(fit)),
            pdHess = fit$sdr$pdHess, max_abs_gradient = max(abs(fit$sdr$gradient.fixed)),
            theta = chol_theta(unclass(vc)[seq_along(sds), seq_along(sds), drop = FALSE]))
  if (!is.null(slope)) {
    b[[paste0("sd_", slope)]] <- sds[2]
    b$corr <- unname(attr(vc, "correlation")[1, 2])
  }
  b$newton_polished <- tmb_polish(fit, slope)
  b
}
glmer_block <- function(fit, group, slope = NULL) {
  vc <- VarCorr(fit)[[group]]
  sds <- unname(attr(vc, "stddev"))
  b <- list(fixef = nm(fixef(fit)), se = nm(sqrt(diag(as.matrix(vcov(fit))))),
            sd_intercept = sds[1], logLik = as.numeric(logLik(fit)),
            theta = unname(getME(fit, "theta")), nAGQ = fit@devcomp$dims[["nAGQ"]],
            messages = as.list(unique(c(attr(fit, "msgs"),
                                        unlist(fit@optinfo$conv$lme4$messages)))))
  if (!is.null(slope)) {
    b[[paste0("sd_", slope)]] <- sds[2]
    b$corr <- unname(attr(vc, "correlation")[1, 2])
  }
  b
}

set.seed(20261126)
n_g <- 80; xs <- c(-1, -0.5, 0, 0.5, 1); n_rep <- 5
g <- rep(sprintf("g%02d", 1:n_g), each = length(xs) * n_rep)
x <- rep(rep(xs, each = n_rep), n_g)
z1 <- rnorm(n_g); z2 <- rnorm(n_g)
b0 <- 1.0 * z1; b1 <- 0.7 * (0.4 * z1 + sqrt(1 - 0.4^2) * z2)
gi <- rep(1:n_g, each = length(xs) * n_rep)
y <- rbinom(length(x), 1, plogis(-0.3 + 0.8 * x + b0[gi] + b1[gi] * x))
bin <- data.frame(g, x, y)
write.csv(bin, file.path(out, "glmm_more_binary.csv"), row.names = FALSE)
agg <- aggregate(y ~ g + x, data = bin, FUN = sum)
names(agg)[names(agg) == "y"] <- "successes"
agg$failures <- n_rep - agg$successes
agg <- agg[order(agg$g, agg$x), ]
rownames(agg) <- NULL
write.csv(agg, file.path(out, "glmm_more_binary_agg.csv"), row.names = FALSE)

## (a) correlated random intercept and slope, binary
f_a <- y ~ x + (1 + x | g)
ref$binary_random_slope <- list(
  formula = deparse(f_a), data = "glmm_more_binary.csv",
  glmmTMB = tmb_block(glmmTMB(f_a, data = bin, family = binomial), "g", "x"),
  glmer_laplace = glmer_block(quiet(glmer(f_a, data = bin, family = binomial)), "g", "x"),
  note = paste("Match glmmTMB (Laplace optimum, Hessian SEs). glmer_laplace is a contrast: it",
               "may stop short of the optimum and its SEs come from a finite-difference Hessian."))

## (b) Poisson random intercept (glmm_more.csv, no offset)
f_b <- count ~ dose + (1 | subject)
pb_agq <- quiet(glmer(f_b, data = d, family = poisson, nAGQ = 20))
pb_agq_block <- glmer_block(pb_agq, "subject")
pb_agq_block$se <- NULL
pb_agq_block$logLik_integrate <- pois_integrate(pb_agq, offset = 0)
pb_agq_block$saturated_loglik <- sum(dpois(d$count, d$count, log = TRUE))
ref$poisson_random_intercept <- list(
  formula = deparse(f_b), data = "glmm_more.csv",
  glmmTMB = tmb_block(glmmTMB(f_b, data = d, family = poisson), "subject"),
  glmer_laplace = glmer_block(quiet(glmer(f_b, data = d, family = poisson)), "subject"),
  glmer_agq20 = pb_agq_block,
  note = paste("glmer_agq20$logLik is lme4's nAGQ>1 value, which drops the Poisson constant",
               "(lme4 issue #161); logLik_integrate is the exact marginal log-likelihood at",
               "glmer_agq20's estimates on the full scale (compare nagq=20 fits with it)."))

## (c) the same binary data aggregated: a check of the log-likelihood scale
f_ca <- cbind(successes, failures) ~ x + (1 + x | g)
f_ib <- y ~ x + (1 | g)
f_ia <- cbind(successes, failures) ~ x + (1 | g)
exact_block <- function(dd, agq_fit) {
  beta <- fixef(agq_fit); sigma <- attr(VarCorr(agq_fit)$g, "stddev")[[1]]
  opt <- glmm_maximise(dd, beta, sigma, K = 20)
  list(agq20_loglik = glmm_loglik_agq(dd, beta, sigma, K = 20),
       integrate_loglik = glmm_loglik_integrate(dd, beta, sigma),
       saturated_loglik = sum(dbinom(dd$y, dd$n, dd$y / dd$n, log = TRUE)),
       agq20_optimum = list(fixef = nm(setNames(opt$beta, names(beta))),
                            se = nm(setNames(opt$se_beta, names(beta))),
                            sd_intercept = opt$sigma, logLik = opt$logLik),
       note = paste("glmm_exact.R (independent of lme4) at glmer_agq20's estimates, full scale",
                    "(incl. log choose(n, y)); agq20_optimum maximises the 20-node AGQ.",
                    "lme4's nAGQ>1 logLik = agq20_loglik - saturated_loglik (0 for 0/1 data)."))
}
intercept_fits <- function(form, dd, ed) {
  agq <- quiet(glmer(form, data = dd, family = binomial, nAGQ = 20))
  list(glmmTMB = tmb_block(glmmTMB(form, data = dd, family = binomial), "g"),
       glmer_laplace = glmer_block(quiet(glmer(form, data = dd, family = binomial)), "g"),
       glmer_agq20 = glmer_block(agq, "g"),
       exact = exact_block(ed, agq))
}
ed_bin <- glmm_data(bin$y, rep(1, nrow(bin)), model.matrix(~ x, bin), bin$g)
ed_agg <- glmm_data(agg$successes, agg$successes + agg$failures, model.matrix(~ x, agg), agg$g)
ref$binary_aggregated <- list(
  data = "glmm_more_binary_agg.csv (aggregated) and glmm_more_binary.csv (binary)",
  lchoose_sum = sum(lchoose(agg$successes + agg$failures, agg$successes)),
  random_slope = list(
    formula = deparse(f_ca),
    glmmTMB = tmb_block(glmmTMB(f_ca, data = agg, family = binomial), "g", "x"),
    glmer_laplace = glmer_block(quiet(glmer(f_ca, data = agg, family = binomial)), "g", "x")),
  random_intercept = list(
    formula_binary = deparse(f_ib), formula_aggregated = deparse(f_ia),
    binary = intercept_fits(f_ib, bin, ed_bin),
    aggregated = intercept_fits(f_ia, agg, ed_agg)),
  note = paste("Same data, two layouts: estimates agree, logLik(aggregated) = logLik(binary) +",
               "lchoose_sum for Laplace and for correct AGQ. lme4's nAGQ=20 logLik for the",
               "aggregated layout is on another scale (issue #161): use exact$agq20_loglik."))

J(ref, file.path(out, "ref_glmm_more.json"))
cat("done\n")
