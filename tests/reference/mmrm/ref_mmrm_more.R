# More MMRM references from R's mmrm (weights, a grouped ML fit, conditional predictions).
# Usage: Rscript ref_mmrm_more.R OUTDIR   (needs mmrm, jsonlite); reads mmrm's own fev_data.
suppressPackageStartupMessages({library(mmrm); library(jsonlite)})
args <- commandArgs(TRUE); outdir <- if (length(args)) args[1] else "."
data(fev_data, package = "mmrm")
ctrl <- mmrm_control(method = "Satterthwaite")
one_fit <- function(formula, reml, weights = NULL) {
  f <- as.formula(formula)
  fit <- if (is.null(weights)) mmrm(f, data = fev_data, reml = reml, control = ctrl)
         else mmrm(f, data = fev_data, reml = reml, weights = fev_data[[weights]], control = ctrl)
  s <- summary(fit)$coefficients
  list(formula = formula, reml = reml, weights = if (is.null(weights)) NULL else weights,
       logLik = as.numeric(logLik(fit)), coef = as.list(s[, "Estimate"]),
       se = as.list(s[, "Std. Error"]), df = as.list(s[, "df"]),
       theta = as.numeric(fit$theta_est), covariance = unname(VarCorr(fit)),
       fit = fit)
}
out <- list()
out$us_reml_weighted <- one_fit("FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)", TRUE, "WEIGHT")
out$ar1h_ml_weighted <- one_fit("FEV1 ~ RACE + SEX + ARMCD * AVISIT + ar1h(AVISIT | USUBJID)", FALSE, "WEIGHT")
out$ad_grouped_ml <- one_fit("FEV1 ~ ARMCD * AVISIT + ad(AVISIT | ARMCD / USUBJID)", FALSE)
# predictions for every row of the first 10 subjects (observed and missing FEV1): with
# conditional = TRUE, mmrm conditions each subject's missing rows on its observed rows
us <- one_fit("FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)", TRUE)
rows <- which(fev_data$USUBJID %in% levels(droplevels(fev_data$USUBJID))[1:10])
newdata <- fev_data[rows, ]
out$us_reml_predict <- list(
  formula = us$formula, theta = us$theta, rows = rows - 1L,  # 0-based row positions
  conditional = tryCatch(as.numeric(predict(us$fit, newdata = newdata, conditional = TRUE)),
                         error = function(e) conditionMessage(e)),
  population = tryCatch(as.numeric(predict(us$fit, newdata = newdata, conditional = FALSE)),
                        error = function(e) conditionMessage(e)))
for (n in names(out)) out[[n]]$fit <- NULL
out$versions <- list(R = R.version.string, mmrm = as.character(packageVersion("mmrm")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(outdir, "ref_fev_more.json"))
cat("wrote", length(out), "blocks\n")
