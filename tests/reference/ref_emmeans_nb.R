# emmeans on glmmTMB's nbinom2 fit of Salamanders (count ~ spp + mined + (1|site)): the marginal
# means (mean counts, response scale) and contrasts that tests/test_marginal_means_nb.py checks.
# Usage: Rscript ref_emmeans_nb.R OUTDIR   (needs glmmTMB, emmeans, jsonlite)
suppressPackageStartupMessages({library(glmmTMB); library(emmeans); library(jsonlite)})
args <- commandArgs(TRUE); outdir <- if (length(args)) args[1] else "."
data(Salamanders, package = "glmmTMB")
fit <- glmmTMB(count ~ spp + mined + (1 | site), data = Salamanders, family = nbinom2,
               control = glmmTMBControl(optCtrl = list(rel.tol = 1e-12, eval.max = 1e4, iter.max = 1e4)))
link <- as.data.frame(summary(emmeans(fit, ~ mined)))
resp <- as.data.frame(summary(emmeans(fit, ~ mined, type = "response")))
spp <- as.data.frame(summary(emmeans(fit, ~ spp, type = "response")))
pw <- as.data.frame(summary(contrast(emmeans(fit, ~ spp), "trt.vs.ctrl", adjust = "none"), infer = TRUE))
out <- list(logLik = as.numeric(logLik(fit)), mined_link = link, mined_response = resp,
            spp_response = spp, spp_trt_vs_ctrl_link = pw,
            versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                            emmeans = as.character(packageVersion("emmeans"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(outdir, "ref_emmeans_nb.json"))
