# Two-dimensional spatial exponential MMRM references from R's mmrm (coordinates VISITN and
# VISITN2 of fev_data, Euclidean distance: mmrm's `sp_exp(VISITN, VISITN2 | USUBJID)`).
# Usage: Rscript ref_mmrm_spatial.R OUTDIR   (needs mmrm, jsonlite); reads mmrm's own fev_data.
suppressPackageStartupMessages({library(mmrm); library(jsonlite)})
args <- commandArgs(TRUE); outdir <- if (length(args)) args[1] else "."
data(fev_data, package = "mmrm")
one_fit <- function(formula, reml, method, vcov = NULL) {
  f <- as.formula(formula)
  fit <- if (is.null(vcov)) mmrm(f, data = fev_data, reml = reml, method = method)
         else mmrm(f, data = fev_data, reml = reml, method = method, vcov = vcov)
  s <- summary(fit)$coefficients
  cov <- VarCorr(fit)
  cov <- if (is.list(cov)) lapply(cov, unname) else unname(cov)
  list(formula = formula, reml = reml, method = method,
       vcov = if (is.null(vcov)) "default" else vcov,
       logLik = as.numeric(logLik(fit)), coef = as.list(s[, "Estimate"]),
       se = as.list(s[, "Std. Error"]), df = as.list(s[, "df"]),
       theta = as.numeric(fit$theta_est), covariance = cov,
       beta_vcov = unname(as.matrix(vcov(fit))))
}
full <- "FEV1 ~ RACE + SEX + ARMCD * AVISIT + sp_exp(VISITN, VISITN2 | USUBJID)"
small <- "FEV1 ~ ARMCD + sp_exp(VISITN, VISITN2 | USUBJID)"
grouped <- "FEV1 ~ ARMCD + sp_exp(VISITN, VISITN2 | SEX / USUBJID)"
out <- list()
out$sp_exp2_reml_kenwardroger <- one_fit(full, TRUE, "Kenward-Roger")
out$sp_exp2_reml_krlinear <- one_fit(full, TRUE, "Kenward-Roger", "Kenward-Roger-Linear")
out$sp_exp2_reml_satterthwaite <- one_fit(full, TRUE, "Satterthwaite")
out$sp_exp2_ml_satterthwaite <- one_fit(full, FALSE, "Satterthwaite")
# the model of SAS's sp(exp)(VISITN VISITN2) case in sas_kr.json (ARMCDTRT's SE and df)
out$sp_exp2_armcd_kenwardroger <- one_fit(small, TRUE, "Kenward-Roger")
out$sp_exp2_armcd_krlinear <- one_fit(small, TRUE, "Kenward-Roger", "Kenward-Roger-Linear")
out$sp_exp2_grouped_reml_kenwardroger <- one_fit(grouped, TRUE, "Kenward-Roger")
out$versions <- list(R = R.version.string, mmrm = as.character(packageVersion("mmrm")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(outdir, "ref_fev_spatial.json"))
cat("wrote", length(out), "blocks\n")
