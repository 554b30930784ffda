# Reference values for mesostats.marginal_means / mesostats.contrasts (tests/test_marginal_means*.py,
# tests/test_contrasts.py, tests/test_multiplicity.py).
# Usage (from this folder): Rscript ref_emmeans.R   -> emm_lmm.csv, ref_emmeans.json
# Needs R >= 4.2 with lme4, lmerTest, pbkrtest, glmmTMB, emmeans, mvtnorm, jsonlite.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(glmmTMB)
  library(emmeans); library(mvtnorm); library(jsonlite)
})
emm_options(msg.interaction = FALSE)

rows <- function(s) {
  s <- as.data.frame(s)
  for (nm in names(s)) if (is.factor(s[[nm]])) s[[nm]] <- as.character(s[[nm]])
  s
}
# Dunnett/mvt p-values and critical values recomputed with a much tighter Genz-Bretz run than
# emmeans' default (abseps = 1e-3): the frozen values to test against at 1e-4 absolute.
precise_mvt <- function(t, df, corr) {
  dfi <- if (is.finite(df)) df else 0
  alg <- GenzBretz(maxpts = 5e5, abseps = 1e-6, releps = 0)
  k <- length(t)
  p <- sapply(t, function(ti) {
    set.seed(1)
    1 - pmvt(rep(-abs(ti), k), rep(abs(ti), k), df = dfi, corr = corr, algorithm = alg)[1]
  })
  set.seed(1)
  q <- qmvt(0.95, tail = "both.tails", df = dfi, corr = corr, algorithm = alg)$quantile
  list(t = t, df = df, corr = unname(corr), p_value = p, crit_95 = q)
}
contrast_block <- function(con, adjust, df = NULL) {
  s <- if (is.null(df)) summary(con, infer = c(TRUE, TRUE), adjust = adjust)
       else summary(con, infer = c(TRUE, TRUE), adjust = adjust, df = df)
  rows(s)
}
linfct <- function(emm) {
  L <- emm@linfct
  list(colnames = colnames(L), rows = unname(split(L, row(L))))
}
out <- list(versions = list(R = R.version.string,
                            emmeans = as.character(packageVersion("emmeans")),
                            mvtnorm = as.character(packageVersion("mvtnorm")),
                            lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest")),
                            pbkrtest = as.character(packageVersion("pbkrtest")),
                            glmmTMB = as.character(packageVersion("glmmTMB"))))

## ---------------------------------------------------------------- cbpp, binomial GLMM (Laplace)
## glmmTMB: its optimum is the Laplace optimum (glmer stops short, shared/reference/README.md)
data(cbpp, package = "lme4")
g <- glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial,
             data = cbpp)
e_link <- emmeans(g, ~ period)
e_resp <- emmeans(g, ~ period, type = "response")
ctrl <- contrast(e_link, "trt.vs.ctrl")
pw <- pairs(e_link, reverse = TRUE)     # "2 - 1" order as in trt.vs.ctrl
## emmeans gives glmmTMB fits df.residual (51) as df; lme4's glmer and mesostats use z tests:
## df = Inf in every summary below.
set.seed(1)
cb <- list(
  fixef = as.list(fixef(g)$cond), vcov = unname(vcov(g)$cond),
  vcov_names = colnames(vcov(g)$cond),
  linfct = linfct(e_link),
  emm_link = rows(summary(e_link, infer = c(TRUE, TRUE), df = Inf)),
  emm_response = rows(summary(e_resp, infer = c(TRUE, FALSE), df = Inf)),
  trt_vs_ctrl_mvt = contrast_block(ctrl, "mvt", Inf),
  trt_vs_ctrl_holm = contrast_block(ctrl, "holm", Inf),
  trt_vs_ctrl_bonferroni = contrast_block(ctrl, "bonferroni", Inf),
  trt_vs_ctrl_none = contrast_block(ctrl, "none", Inf),
  pairwise_tukey = contrast_block(pw, "tukey", Inf),
  pairwise_mvt = contrast_block(pw, "mvt", Inf),
  trt_vs_ctrl_response_none = contrast_block(contrast(e_resp, "trt.vs.ctrl"), "none", Inf),
  trt_vs_ctrl_precise = precise_mvt(summary(ctrl, df = Inf)$z.ratio, Inf, cov2cor(vcov(ctrl))),
  pairwise_precise = precise_mvt(summary(pw, df = Inf)$z.ratio, Inf, cov2cor(vcov(pw)))
)
out$cbpp <- cb; message("cbpp done ", Sys.time())

## ---------------------------------------------------------------- LMM with unbalanced cells
## 3 treatments x 2 sites x 2 sexes, a covariate, a random intercept per subject; unbalanced so
## that equal, proportional, outer and cells weights all differ.
set.seed(20261204)
n_subj <- 40
subj <- sprintf("s%02d", seq_len(n_subj))
trt <- rep(c("P", "A", "B"), times = c(16, 13, 11))
site <- ifelse(runif(n_subj) < 0.62, "north", "south")
sex <- ifelse(runif(n_subj) < ifelse(site == "north", 0.7, 0.3), "F", "M")
n_vis <- sample(2:4, n_subj, replace = TRUE)
d <- data.frame(subj = rep(subj, n_vis), trt = rep(trt, n_vis), site = rep(site, n_vis),
                sex = rep(sex, n_vis))
d$x <- round(rnorm(nrow(d), 50, 8), 2)
b <- rnorm(n_subj, 0, 2)[match(d$subj, subj)]
eff <- c(P = 0, A = 1.5, B = 2.5)[d$trt] + ifelse(d$site == "south", 1, 0) +
  ifelse(d$site == "south" & d$trt == "B", -1.2, 0) + ifelse(d$sex == "M", 0.8, 0)
d$y <- round(20 + eff + 0.1 * d$x + b + rnorm(nrow(d), 0, 1.5), 3)
write.csv(d, "emm_lmm.csv", row.names = FALSE)
d$trt <- factor(d$trt, levels = c("P", "A", "B"))
d$site <- factor(d$site, levels = c("north", "south"))
d$sex <- factor(d$sex, levels = c("F", "M"))
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15, xtol_rel = 1e-14,
                                    ftol_rel = 1e-15, maxeval = 1e5))
m <- lmer(y ~ trt * site + sex + x + (1 | subj), data = d, REML = TRUE, control = tight)

lmm_block <- function(dfm) {
  e <- emmeans(m, ~ trt, lmer.df = dfm)
  eb <- emmeans(m, ~ trt | site, lmer.df = dfm)
  ctrl <- contrast(e, "trt.vs.ctrl")
  ctrl_by <- contrast(eb, "trt.vs.ctrl")
  pw <- pairs(e, reverse = TRUE)
  blk <- list(
    vcov = unname(as.matrix(if (dfm == "kenward-roger") vcovAdj(m) else vcov(m))),
    emm_vcov = unname(vcov(e)),
    emm_equal = rows(summary(e, infer = c(TRUE, FALSE))),
    emm_proportional = rows(summary(emmeans(m, ~ trt, lmer.df = dfm, weights = "proportional"),
                                    infer = c(TRUE, FALSE))),
    emm_outer = rows(summary(emmeans(m, ~ trt, lmer.df = dfm, weights = "outer"),
                             infer = c(TRUE, FALSE))),
    emm_cells = rows(summary(emmeans(m, ~ trt, lmer.df = dfm, weights = "cells"),
                             infer = c(TRUE, FALSE))),
    emm_by_site = rows(summary(eb, infer = c(TRUE, FALSE))),
    emm_at_x = rows(summary(emmeans(m, ~ trt, lmer.df = dfm, at = list(x = 45)),
                            infer = c(TRUE, FALSE))),
    emm_two_specs = rows(summary(emmeans(m, ~ trt * sex, lmer.df = dfm), infer = c(TRUE, FALSE))),
    trt_vs_ctrl_mvt = contrast_block(ctrl, "mvt"),
    trt_vs_ctrl_none = contrast_block(ctrl, "none"),
    trt_vs_ctrl_by_site_mvt = contrast_block(ctrl_by, "mvt"),
    trt_vs_ctrl_by_site_holm = contrast_block(ctrl_by, "holm"),
    pairwise_tukey = contrast_block(pw, "tukey"),
    pairwise_bonferroni = contrast_block(pw, "bonferroni"),
    custom_none = contrast_block(contrast(e, list(active_vs_p = c(-1, 0.5, 0.5))), "none")
  )
  blk
}
set.seed(1)
lmm <- list(formula = "y ~ trt * site + sex + x + (1 | subj)",
            fixef = as.list(fixef(m)), fixef_names = names(fixef(m)),
            satterthwaite = lmm_block("satterthwaite"),
            kenward_roger = lmm_block("kenward-roger"))
## the same grid with a constant df = 20 (machinery checks that need no df method); plain vcov
e20 <- emmeans(m, ~ trt, lmer.df = "asymptotic")
eb20 <- emmeans(m, ~ trt | site, lmer.df = "asymptotic")
c20 <- contrast(e20, "trt.vs.ctrl")
cb20 <- contrast(eb20, "trt.vs.ctrl")
p20 <- pairs(e20, reverse = TRUE)
## site and sex interacting: "proportional" (joint site x sex frequencies) and "outer" (product
## of their margins) differ only when the averaged factors interact in the model
m2 <- lmer(y ~ trt + site * sex + x + (1 | subj), data = d, REML = TRUE, control = tight)
lmm$interaction <- list(
  formula = "y ~ trt + site * sex + x + (1 | subj)",
  linfct_proportional = linfct(emmeans(m2, ~ trt, weights = "proportional")),
  linfct_outer = linfct(emmeans(m2, ~ trt, weights = "outer"))
)
lmm$df20 <- list(
  linfct_equal = linfct(e20),
  linfct_proportional = linfct(emmeans(m, ~ trt, lmer.df = "asymptotic", weights = "proportional")),
  linfct_outer = linfct(emmeans(m, ~ trt, lmer.df = "asymptotic", weights = "outer")),
  linfct_cells = linfct(emmeans(m, ~ trt, lmer.df = "asymptotic", weights = "cells")),
  linfct_by_site = linfct(eb20),
  emm_equal = rows(summary(e20, infer = c(TRUE, FALSE), df = 20)),
  trt_vs_ctrl_mvt = contrast_block(c20, "mvt", 20),
  trt_vs_ctrl_bonferroni = contrast_block(c20, "bonferroni", 20),
  trt_vs_ctrl_holm = contrast_block(c20, "holm", 20),
  trt_vs_ctrl_by_site_mvt = contrast_block(cb20, "mvt", 20),
  pairwise_tukey = contrast_block(p20, "tukey", 20),
  pairwise_mvt = contrast_block(p20, "mvt", 20),
  trt_vs_ctrl_precise = precise_mvt(summary(c20, df = 20)$t.ratio, 20, cov2cor(vcov(c20))),
  pairwise_precise = precise_mvt(summary(p20, df = 20)$t.ratio, 20, cov2cor(vcov(p20)))
)
out$lmm <- lmm; message("lmm done ", Sys.time())

## ---------------------------------------------------------------- multiplicity tables
## Dunnett two-sided 95 % critical values for equicorrelated contrasts (rho = 0.5: k treatments
## vs one control, equal n), by Dunnett's (1955) one-dimensional integral (outer integral over
## the chi scale for finite df) -- exact to ~1e-10, independent of mvtnorm -- and qtukey/ptukey.
dunnett_prob <- function(cc, k, df, rho = 0.5) {
  inner <- function(s) sapply(s, function(si) integrate(function(z) dnorm(z) *
    (pnorm((cc * si + sqrt(rho) * z) / sqrt(1 - rho)) -
     pnorm((-cc * si + sqrt(rho) * z) / sqrt(1 - rho)))^k, -Inf, Inf, rel.tol = 1e-12)$value)
  if (!is.finite(df)) return(inner(1))
  integrate(function(s) inner(s) * dchisq(df * s^2, df) * 2 * df * s, 0, Inf,
            rel.tol = 1e-11)$value
}
dun <- expand.grid(k = c(2, 3, 5, 9), df = c(5, 10, 20, 60, Inf))
dun$crit <- mapply(function(k, df) uniroot(function(cc) dunnett_prob(cc, k, df) - 0.95,
                                           c(1.5, 6), tol = 1e-11)$root, dun$k, dun$df)
tuk <- expand.grid(n = c(2, 3, 4, 6, 10), df = c(5, 12, 30, 120, Inf))
tuk$q95 <- qtukey(0.95, tuk$n, tuk$df)
tuk$p_at_3 <- ptukey(3, tuk$n, tuk$df, lower.tail = FALSE)
out$multiplicity <- list(dunnett = dun, tukey = tuk,
                         holm_p = p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.2), "holm"),
                         bonferroni_p = p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.2), "bonferroni"))

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null",
                  na = "null"), "ref_emmeans.json")
