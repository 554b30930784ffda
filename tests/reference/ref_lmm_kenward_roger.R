# Kenward-Roger reference values for fit_lmm(df="kenward-roger") (pbkrtest via lmerTest).
# Usage: Rscript ref_lmm_kenward_roger.R  (in tests/reference/; reads sleepstudy.csv,
# pastes.csv, penicillin.csv from /work/shared/reference or this folder; writes
# ref_lmm_kenward_roger.json). Unbalanced sleepstudy: rows with (Subject %% 3 == 0 & Days >= 7)
# or (Subject %% 4 == 1 & Days <= 1) are dropped, so the KR adjustment is not zero.
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)})
args <- commandArgs(TRUE); src <- if (length(args)) args[1] else "."
ctrl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_rel = 1e-14, ftol_rel = 1e-15, ftol_abs = 1e-15, xtol_abs = 1e-15, maxeval = 1e5))
one <- function(formula, data, L = NULL) {
  fit <- lmer(formula, data = data, REML = TRUE, control = ctrl)
  kr <- summary(fit, ddf = "Kenward-Roger")$coefficients
  va <- as.matrix(vcovAdj(fit))
  res <- list(formula = deparse(formula), n = nrow(data),
              fixef = as.list(fixef(fit)), theta = unname(getME(fit, "theta")),
              se_unadjusted = as.list(sqrt(diag(as.matrix(vcov(fit))))),
              se = as.list(kr[, "Std. Error"]), df = as.list(kr[, "df"]),
              vcov_adjusted = unname(va))
  if (!is.null(L)) {
    res$contrast <- L
    res$contrast_df <- get_Lb_ddf(fit, matrix(L, nrow = 1))
  }
  res
}
sleep <- read.csv(file.path(src, "sleepstudy.csv"))
sid <- as.integer(factor(sleep$Subject))
keep <- !((sid %% 3 == 0 & sleep$Days >= 7) | (sid %% 4 == 1 & sleep$Days <= 1))
sleep_unbal <- sleep[keep, ]
sleep_unbal$Subject <- factor(sleep_unbal$Subject)
sleep$Subject <- factor(sleep$Subject)
sleep_unbal$Days2 <- (sleep_unbal$Days - 4.5)^2
pastes <- read.csv(file.path(src, "pastes.csv"))
pen <- read.csv(file.path(src, "penicillin.csv"))
out <- list(
  sleepstudy_unbalanced = one(Reaction ~ Days + (Days | Subject), sleep_unbal, L = c(1, 3)),
  sleepstudy_unbalanced_quadratic = one(Reaction ~ Days + Days2 + (1 | Subject), sleep_unbal),
  pastes = one(strength ~ 1 + (1 | batch / cask), pastes),
  penicillin = one(diameter ~ 1 + (1 | plate) + (1 | sample), pen)
)
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")),
                     pbkrtest = as.character(packageVersion("pbkrtest")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "ref_lmm_kenward_roger.json")

# Satterthwaite df of the same contrast (lmerTest::contest1D), for MixedResults.df_for
fit_s <- lmer(Reaction ~ Days + (Days | Subject), data = sleep_unbal, REML = TRUE, control = ctrl)
out$sleepstudy_unbalanced$contrast_df_satterthwaite <- contest1D(fit_s, c(1, 3))$df
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "ref_lmm_kenward_roger.json")
