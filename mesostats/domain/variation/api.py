"""The entry point :func:`variability` and the :class:`Variability` results object."""

from __future__ import annotations

import numpy as np

from mesostats._display import Summary, SummaryDisplay, table_from_frame
from mesostats.domain.variation.context import DescribesVariation, context_of
from mesostats.domain.variation.persons import PersonsMixin
from mesostats.domain.variation.prediction import PredictionMixin
from mesostats.domain.variation.quantities import CI_METHODS
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.profile import (
    CONFINT_COLUMNS,
    VarianceBootstrap,
    VarianceProfile,
    bootstrap_variance_components,
    profile_variance_components,
)
from mesostats.mixed.results import MixedResults


class Variability(SummaryDisplay, PersonsMixin, PredictionMixin):
    """How much results vary between people (see :func:`variability`).

    Attributes
    ----------
    components : DataFrame
        ``parameter, group, var1, var2, kind, estimate, ci_lower, ci_upper, level, method``:
        every SD (``kind="sd"``), correlation (``"cor"``) and the residual SD (``"sigma"``),
        lme4 names (``.sig01`` …, ``.sigma``).
    icc : IntervalEstimate or None
        Linear models: between-person share of variance at week 0 (with a random slope it
        changes with time: :meth:`icc_at`). Binomial models: latent-scale ICC
        τ²/(τ² + π²/3) (Snijders & Bosker 2012, §17.3). ``None`` for Poisson models.
    median_odds_ratio : IntervalEstimate or None
        Binomial models only (Merlo et al. 2006).
    week : float or None
        Default week W of the time-dependent summaries (regrowth): the last scheduled
        post-baseline week; ``week_note`` says how it was chosen.
    study : Study or None
        The study of a regrowth / side-effect fit (None for a bare MixedResults).
    ci_method, n_boot, seed : as given to :func:`variability`.
    profile, bootstrap : VarianceProfile / VarianceBootstrap or None
        The underlying interval computations.
    notes : tuple of str
    """

    # ------------------------------------------------------------------ display
    def _headline(self) -> list[tuple[str, str]]:
        lines: list[tuple[str, str]] = []
        model = self.model
        lines.append(("Model", f"{model.family} {model.method}: {model.formula}"))
        lines.append(("Intervals", self._interval_text()))
        if self.icc is not None:
            lines.append((self.icc.name, self.icc.describe()))
        if self.median_odds_ratio is not None:
            lines.append(("Median odds ratio", self.median_odds_ratio.describe()))
        if self.week is not None:
            lines.append(("Week W", self.week_note))
        return lines

    def _interval_text(self) -> str:
        if self.ci_method == "bootstrap":
            return f"parametric bootstrap, {self.n_boot} refits, seed {self.seed}"
        return "profile likelihood (95 %)"

    def summary(self) -> Summary:
        """Components, ICC / MOR, the range of a new person's response, notes."""
        tables = [
            table_from_frame(self.components, caption="Variance components (SD, correlation)")
        ]
        if self._ctx.kind != "model":
            caption = "Range of a new person's response"
            if self.week is not None:
                caption += f" at week {self.week:g}"
            tables.append(table_from_frame(self.prediction_interval(), caption=caption))
        return Summary(
            title="Varied results (between-person variation)",
            info=tuple(self._headline()),
            tables=tuple(tables),
            notes=self.notes,
        )

    def __repr__(self) -> str:
        sds = self.components[self.components["kind"] != "cor"]
        shown = ", ".join(
            f"{r.group}:{r.var1 if isinstance(r.var1, str) else 'sigma'}={r.estimate:.3g}"
            for r in sds.itertuples()
        )
        extra = ""
        if self.icc is not None:
            extra += f", {self.icc.name} {self.icc.estimate:.3g}"
        if self.median_odds_ratio is not None:
            extra += f", MOR {self.median_odds_ratio.estimate:.3g}"
        week = f", week {self.week:g}" if self.week is not None else ""
        return f"<Variability {self._ctx.kind}: SDs {shown}{extra}{week}; CIs {self.ci_method}>"


# --------------------------------------------------------------------------- entry point
def _check_args(ci_method: str, n_boot: int, seed: int, n_jobs: int) -> None:
    if ci_method not in CI_METHODS:
        raise ModelSpecError(
            f"ci_method must be 'profile' (profile likelihood, as lme4's confint) or "
            f"'bootstrap' (parametric bootstrap), got {ci_method!r}."
        )
    for name, value, low in (("n_boot", n_boot, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ModelSpecError(f"{name} must be an integer ≥ {low}, got {value!r}.")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ModelSpecError(
            f"n_jobs must be a positive integer (or -1 for every core), got {n_jobs!r}."
        )


def variability(
    results: DescribesVariation | MixedResults,
    *,
    ci_method: str = "profile",
    n_boot: int = 200,
    seed: int = 0,
    n_jobs: int = 1,
) -> Variability:
    """How much results vary between people: SDs with CIs, ICC / MOR, ranges, responders.

    Parameters
    ----------
    results : RegrowthResults, SideEffectResults or MixedResults
        From :func:`mesostats.fit_regrowth`, :func:`mesostats.fit_side_effects`, or any
        :func:`mesostats.fit_lmm` / :func:`mesostats.fit_glmm` fit (then only the generic
        parts: components, icc / median_odds_ratio, person_effects).
    ci_method : {"profile", "bootstrap"}, default "profile"
        Intervals of the variance components: profile likelihood (lme4's
        ``confint(method = "profile")``, on the fit's own criterion) or parametric bootstrap
        percentiles.
    n_boot : int, default 200
        Bootstrap refits (``ci_method="bootstrap"``).
    seed : int, default 0
        Seeds the bootstrap (``SeedSequence(seed).spawn(n_boot)``: same numbers for any
        ``n_jobs``) and the simulation behind :meth:`Variability.responders`.
    n_jobs : int, default 1
        joblib workers for the bootstrap.

    Returns
    -------
    Variability

    Raises
    ------
    ModelSpecError
        Unsupported results object or bad option.

    Notes
    -----
    See the module docstring for every formula and reference. If profiling fails (e.g. a
    fit far from convergence), the intervals fall back to the bootstrap and a note says so.

    Examples
    --------
    >>> import mesostats as ms
    >>> v = ms.variability(ms.fit_regrowth(ms.example_study()))  # doctest: +SKIP
    >>> v.prediction_interval()  # doctest: +SKIP
    """
    _check_args(ci_method, n_boot, seed, n_jobs)
    ctx = context_of(results)
    model = ctx.model
    notes: list[str] = []
    prof: VarianceProfile | None = None
    boot: VarianceBootstrap | None = None
    method = ci_method
    if ci_method == "profile":
        try:
            prof = profile_variance_components(model)
            components = prof.confint
            notes.extend(prof.messages)
        except ModelSpecError:
            raise  # a model the profiler refuses is a wrong request, not a numerical failure
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            notes.append(
                f"Profile-likelihood intervals failed ({exc}); intervals come from a "
                f"parametric bootstrap ({n_boot} refits, seed {seed}) instead."
            )
            method = "bootstrap"
    if method == "bootstrap":
        boot = bootstrap_variance_components(model, n_boot=n_boot, seed=seed, n_jobs=n_jobs)
        components = boot.confint
        if boot.n_failed:
            notes.append(f"{boot.n_failed} of {n_boot} bootstrap refits failed and were left out.")
    if model.family == "gaussian" and model.method == "REML" and method == "profile":
        notes.append(
            "Profile intervals use the REML criterion of the fit; lme4's confint() profiles "
            "the ML deviance instead (slightly narrower)."
        )
    if ctx.kind == "regrowth":
        notes.append(
            "Changes are from baseline for a person with the average baseline "
            f"({ctx.shift:.4g}); the between-person range adds the random intercept and slope "
            "(with their covariance) and any site variation."
        )
    if ctx.kind == "regrowth" and getattr(results, "design", "indicator") == "dose":
        notes.append(
            "Dose design: a new person is taken to receive 1 mL of the cocktail per session "
            "(exposure = concentration), so predictions are per 1 mL session volume."
        )
    components = components[CONFINT_COLUMNS].reset_index(drop=True)
    return Variability(
        ctx,
        components,
        ci_method=method,
        n_boot=n_boot,
        seed=seed,
        profile=prof,
        bootstrap=boot,
        notes=notes,
    )
