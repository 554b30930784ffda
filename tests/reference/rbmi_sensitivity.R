# Reference values for tests/test_sensitivity_rbmi.py: R's rbmi on the simulated trial in
# rbmi_trial.csv (written by rbmi_trial.py from mesostats' simulator).
#
# Imputation model: the MMRM chg ~ arm * visit + baseline * visit, unstructured covariance,
# REML (rbmi's defaults), the same model as mesostats.fit_trial's primary analysis.
# Route: method_approxbayes (parameters from REML fits to bootstrap samples of the people),
# n_samples = M imputations, Rubin's rules with Barnard-Rubin df. Analysis of each completed
# data set: rbmi's ancova at each visit, chg ~ arm + baseline.
# Strategies: MAR for everyone; jump to reference (J2R, reference = P) from the first visit
# after a person's last observed visit (earlier missing visits are intermittent: MAR).
#
# Run: Rscript rbmi_sensitivity.R  (writes rbmi_sensitivity.json here).
# Produced with R 4.2.2, rbmi 1.4.1 (source tag v1.4.1, R CMD INSTALL), mmrm 0.3.14.
suppressPackageStartupMessages({
    library(rbmi)
    library(jsonlite)
})

here <- tryCatch(dirname(normalizePath(sys.frame(1)$ofile)), error = function(e) ".")
args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grepl("^--file=", args)])
if (length(file_arg) == 1) here <- dirname(normalizePath(file_arg))

M <- as.integer(Sys.getenv("RBMI_M", "2000"))
dat <- read.csv(file.path(here, "rbmi_trial.csv"))
dat$id <- factor(dat$id)
dat$arm <- factor(dat$arm, levels = c("P", "A"))
dat$visit <- factor(dat$visit, levels = sort(unique(dat$visit)))
levels_v <- levels(dat$visit)

# J2R from the visit after each person's last observed visit
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

set.seed(20261205)
dr <- draws(
    data = dat, data_ice = data_ice, vars = vars,
    method = method_approxbayes(covariance = "us", REML = TRUE, n_samples = M), quiet = TRUE
)

summarise <- function(imputed) {
    an <- analyse(imputed, ancova, vars = vars_an)
    pooled <- pool(an)
    out <- list()
    for (v in levels_v) {
        key <- paste0("trt_", v)
        ests <- vapply(an$results, function(r) r[[key]]$est, numeric(1))
        ses <- vapply(an$results, function(r) r[[key]]$se, numeric(1))
        row <- pooled$pars[[key]]
        v_com <- an$results[[1]][[key]]$df
        # rbmi's pool() keeps the Barnard-Rubin df internal; the same function gives it here
        df <- rbmi:::rubin_df(v_com, var(ests), row$se^2, length(ests))
        out[[v]] <- list(
            estimate = row$est, std_error = row$se, df = df, p_value = row$pvalue,
            between_variance = var(ests), within_variance = mean(ses^2), complete_df = v_com
        )
    }
    out
}

mar_strategy <- data_ice
mar_strategy$strategy <- "MAR"
result <- list(
    n_imputations = M,
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
write_json(result, file.path(here, "rbmi_sensitivity.json"), auto_unbox = TRUE, digits = 12,
           pretty = TRUE)
