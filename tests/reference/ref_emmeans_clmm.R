# Reference values for marginal means of fit_clmm (tests/test_marginal_means_clmm.py):
# emmeans on ordinal::clmm, the wine data (Randall 1989; tests/reference/wine.csv).
# Run from this folder: Rscript ref_emmeans_clmm.R   (writes ref_emmeans_clmm.json)
suppressPackageStartupMessages({
  library(ordinal)
  library(emmeans)
  library(jsonlite)
})

wine <- read.csv("wine.csv", colClasses = c(judge = "character", bottle = "character"))
wine$rating <- factor(wine$rating, levels = 1:5, ordered = TRUE)
wine$temp <- factor(wine$temp, levels = c("cold", "warm"))
wine$contact <- factor(wine$contact, levels = c("no", "yes"))
wine$judge <- factor(wine$judge)

# (clmm warns "iteration limit reached when updating the random effects": its inner mode
# updates under gradTol = 1e-8; harmless for the optimum, max |gradient| ~ 2e-5.)
m <- clmm(rating ~ temp + contact + (1 | judge), data = wine, link = "logit",
          threshold = "flexible", control = clmm.control(gradTol = 1e-8))
# clmm's vcov is the inverse of a finite-difference Hessian of the Laplace objective; with the
# tight control its noisy inner updates move the SEs by up to ~1%. The default control gives
# clean SEs (what tests/test_clmm.py compares SEs with, rtol 1e-3): recorded as *_default.
d <- update(m, control = clmm.control())

tab <- function(x) {
  d <- as.data.frame(summary(x))
  lapply(d, function(col) if (is.factor(col)) as.character(col) else col)
}

k <- length(coef(m))
out <- list(
  coefficients = as.list(coef(m)),
  vcov = unname(vcov(m)[seq_len(k), seq_len(k)]),
  coef_names = names(coef(m)),
  latent_temp = tab(emmeans(m, ~temp, mode = "latent")),
  latent_temp_by_contact = tab(emmeans(m, ~temp | contact, mode = "latent")),
  latent_temp_pairs = tab(pairs(emmeans(m, ~temp, mode = "latent"))),
  latent_temp_by_contact_pairs = tab(pairs(emmeans(m, ~temp | contact, mode = "latent"))),
  prob_temp = tab(emmeans(m, ~temp | rating, mode = "prob")),
  prob_temp_by_contact = tab(emmeans(m, ~temp | contact + rating, mode = "prob")),
  prob_temp_pairs = tab(pairs(emmeans(m, ~temp | rating, mode = "prob"))),
  mean_class_temp = tab(emmeans(m, ~temp, mode = "mean.class")),
  mean_class_temp_by_contact = tab(emmeans(m, ~temp | contact, mode = "mean.class")),
  latent_temp_by_contact_default = tab(emmeans(d, ~temp | contact, mode = "latent")),
  prob_temp_by_contact_default = tab(emmeans(d, ~temp | contact + rating, mode = "prob")),
  mean_class_temp_default = tab(emmeans(d, ~temp, mode = "mean.class")),
  equidistant = with(list(e = update(m, threshold = "equidistant")), list(
    coefficients = as.list(coef(e)),
    vcov = unname(vcov(e)[seq_along(coef(e)), seq_along(coef(e))]),
    coef_names = names(coef(e)),
    latent_temp = tab(emmeans(e, ~temp, mode = "latent")),
    prob_temp = tab(emmeans(e, ~temp | rating, mode = "prob"))
  ))
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "ref_emmeans_clmm.json")
