# Reference values for tests/test_sensitivity_rbmi.py: R's rbmi conditional-mean imputation
# with jackknife standard errors (method_condmean(type = "jackknife"); Wolbers et al. 2022,
# Pharm Stat 21:1246) on the simulated trial in rbmi_trial.csv (written by rbmi_trial.py).
#
# The same imputation model, strategies and analysis as rbmi_sensitivity.R: MMRM
# chg ~ arm * visit + baseline * visit, unstructured covariance, REML; MAR and jump to
# reference (reference P) from the visit after each dropout's last visit; per-visit ANCOVA
# chg ~ arm + baseline. Deterministic: no seed. Pooled by rbmi's jackknife rule (full-data
# estimate, jackknife SE, normal CI and p).
#
# Run: Rscript rbmi_condmean.R  (writes rbmi_condmean.json here).
# Produced with R 4.2.2, rbmi 1.4.1 (source tag v1.4.1, R CMD INSTALL), mmrm 0.3.14.
suppressPackageStartupMessages({
    library(rbmi)
    library(jsonlite)
})

here <- "."
args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grepl("^--file=", args)])
if (length(file_arg) == 1) here <- dirname(normalizePath(file_arg))

dat <- read.csv(file.path(here, "rbmi_trial.csv"))
dat$id <- factor(dat$id)
dat$arm <- factor(dat$arm, levels = c("P", "A"))
dat$visit <- factor(dat$visit, levels = sort(unique(dat$visit)))
levels_v <- levels(dat$visit)

obs <- dat[!is.na(dat$chg), ]
last <- tapply(as.integer(obs$visit), obs$id, max)
drop_ids <- names(last)[last < length(levels_v)]
data_ice <- data.frame(
    id = factor(drop_ids, levels = levels(dat$id)),
    visit = factor(levels_v[last[drop_ids] + 1], levels = levels_v),
    strategy = "JR"
)
vars <- set_vars(
    outcome = "chg", visit = "visit", subjid = "id", group = "arm",
    covariates = c("baseline*visit", "arm*visit")
)
vars_an <- set_vars(
    outcome = "chg", visit = "visit", subjid = "id", group = "arm", covariates = "baseline"
)

dr <- draws(
    data = dat, data_ice = data_ice, vars = vars,
    method = method_condmean(covariance = "us", REML = TRUE, type = "jackknife"), quiet = TRUE
)

summarise <- function(imputed) {
    pooled <- pool(analyse(imputed, ancova, vars = vars_an))
    out <- list()
    for (v in levels_v) {
        row <- pooled$pars[[paste0("trt_", v)]]
        out[[v]] <- list(
            estimate = row$est, std_error = row$se, p_value = row$pvalue,
            ci_lower = row$ci[1], ci_upper = row$ci[2]
        )
    }
    out
}

mar_strategy <- data_ice
mar_strategy$strategy <- "MAR"
result <- list(
    n_subjects = nlevels(dat$id),
    n_dropouts = length(drop_ids),
    versions = list(
        R = paste(R.version$major, R.version$minor, sep = "."),
        rbmi = as.character(packageVersion("rbmi")),
        mmrm = as.character(packageVersion("mmrm"))
    ),
    mar = summarise(impute(dr, references = c(P = "P", A = "P"), update_strategy = mar_strategy)),
    jump_to_reference = summarise(impute(dr, references = c(P = "P", A = "P")))
)
write_json(result, file.path(here, "rbmi_condmean.json"), auto_unbox = TRUE, digits = 12,
           pretty = TRUE)
