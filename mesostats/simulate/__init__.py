"""Simulated mesotherapy studies with a known truth.

A study is drawn from the models that :func:`mesostats.fit_regrowth` and
:func:`mesostats.fit_side_effects` estimate, so that the truth is known: tests compare
estimates with it, :func:`mesostats.power` repeats the draw many times, and demos run without
patient data.

The drawing is written here by hand because no library simulates a whole study in our table
layout (subjects, cocktail recipes, irregular visits with dropout, session outcomes and
adverse-event rows with free text). Every step is vectorised over subjects × visits with
numpy; a 100,000-subject study with 10 visits takes a few seconds.

Models
------
Regrowth, the random-coefficients model of Laird & Ware (1982), for subject *i* at visit *j*
with ``week = (day - 1) / 7``::

    hair_density_ij = intercept_mean + u0_i
                      + (slope_placebo + sum_k ingredient_slopes[k] * x_ik + u1_i) * week_ij
                      + e_ij,
    (u0_i, u1_i) ~ N(0, [[intercept_sd², ρ·intercept_sd·slope_sd],
                         [ρ·intercept_sd·slope_sd, slope_sd²]]),  e_ij ~ N(0, residual_sd²),

where ``x_ik`` is 1 when the cocktail assigned to subject *i* for the course contains the
active ingredient *k* (saline is not active) and ρ = ``intercept_slope_corr``. The
indicators belong to the subject (the course), so they also apply at follow-up visits where
nothing is injected. Values are clipped to the schema range 0–600 (the number clipped is
``truth["n_clipped"]``; the default parameters make it essentially zero).

Side effects, the logistic-normal model of Breslow & Clayton (1993), per assessed injection
session::

    any_event_ij ~ Bernoulli(logistic(event_intercept + sum_k event_log_or[k] * x_ik + v_i)),
    v_i ~ N(0, event_sd²).

A session with an event has 1 + Binomial(2, ``extra_event_prob``) distinct coded events,
drawn without replacement from ``event_terms`` by the Gumbel-top-k trick (Vieira 2014; Kool,
van Hoof & Welling 2019); ``allergic_reaction`` can only occur with the ingredient
``allergy["ingredient"]``.

Graded outcomes (:mod:`mesostats.simulate.ordinal`): the worst severity per assessed
session follows a cumulative-logit model whose first cut is the side-effect model above
(spacings ``severity_cuts`` above it; the session's first event carries that grade), and the
GPA score is the true change in points plus a normal rater error, rounded: a cumulative
probit in the true change. Both truths are stated in clm's terms in
``truth["ordinal_truth"]``.

Design: each subject receives one cocktail for the whole course, allocated by permuted blocks
of size 2 × (number of cocktails) within each site (stratified block randomisation; Zelen
1974). Visits follow a weekly → two-weekly → monthly injection schedule with follow-up
visits without injection; visit days are jittered; dropout is monotone with a constant
per-visit hazard; outcomes are missing completely at random after baseline.

References
----------
Laird NM, Ware JH (1982). Random-effects models for longitudinal data. *Biometrics* 38(4).
Breslow NE, Clayton DG (1993). Approximate inference in generalized linear mixed models.
*JASA* 88(421).
Zelen M (1974). The randomization and stratification of patients to clinical trials.
*J Chronic Dis* 27(7–8).
Kool W, van Hoof H, Welling M (2019). Stochastic beams and where to find them: the
Gumbel-top-k trick. *ICML*.
"""

from __future__ import annotations

from mesostats.simulate.api import simulate_study
from mesostats.simulate.draw import simulate_tables
from mesostats.simulate.parameters import DEFAULT_COCKTAILS, DEFAULT_DROPOUT, DEFAULT_MISSING_RATE
from mesostats.simulate.write import truth_to_json, write_tables

__all__ = [
    "DEFAULT_COCKTAILS",
    "DEFAULT_DROPOUT",
    "DEFAULT_MISSING_RATE",
    "simulate_study",
    "simulate_tables",
    "truth_to_json",
    "write_tables",
]
