"""``check_model``: does the fitted model describe the data? Simulated-residual tests after
Hartig's DHARMa, the normality of person effects and each person's influence.

Method (DHARMa, Hartig 2022, R package vignette "DHARMa: residual diagnostics for
hierarchical regression models"): draw ``n_sim`` response vectors from the fitted model with
new random effects (:meth:`simulate` with ``include_random=True``, the unconditional
simulation of lme4 and of DHARMa before 0.5 — DHARMa 0.5 simulates conditionally on the
modes by default, which gives more power to detect overdispersion but makes the residuals
only approximately uniform under a correct model; pass ``conditional=True`` for that), take
each observation's randomised probability integral transform against its simulations
(:mod:`mesostats.checks.residuals`) and test the residuals
(:mod:`mesostats.checks.simulation_tests`). The influence of each person is the
leave-one-person-out change of the fixed effects in one step at the fitted variance
parameters (:mod:`mesostats.checks.influence`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats._display import Summary, SummaryDisplay, format_number, format_p, table_from_frame
from mesostats._records import FrozenRecord
from mesostats.checks.influence import person_influence
from mesostats.checks.linearised import linearise
from mesostats.checks.residuals import scaled_residuals, simulated_residuals
from mesostats.checks.simulation_tests import (
    dispersion_test,
    outlier_test,
    person_effects_test,
    trend_test,
    uniformity_test,
    zero_inflation_test,
)
from mesostats.checks.view import ModelView, model_view
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.results import MixedResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ALPHA", "TEST_COLUMNS", "ModelCheck", "check_model"]

#: Columns of :attr:`ModelCheck.tests`.
TEST_COLUMNS = ("test", "statistic", "p_value", "verdict")
#: A test with p below this is flagged.
ALPHA = 0.05

_PROBLEM = {
    "uniformity": "the scaled residuals are not uniform: the model's distribution does not "
    "match the data (wrong family, link or a missing term)",
    "dispersion": "the residual spread differs from the simulated one",
    "zero_inflation": "the number of zeros differs from what the model implies",
    "outliers": "more (or fewer) observations fall outside every simulation than expected",
    "residual_trend": "the residuals change with the fitted value (a missing term, a wrong "
    "link or a variance that grows with the mean)",
    "person_effects_normality": "the person effects do not look normal (see the Q–Q plot; "
    "shrinkage makes this test approximate)",
}


class ModelCheck(FrozenRecord, SummaryDisplay):
    """Checks of a fitted model (from :func:`check_model`), immutable.

    Attributes
    ----------
    tests : DataFrame
        ``test, statistic, p_value, verdict`` (``"ok"`` or ``"problem"`` at p < 0.05).
    residuals : Series
        Scaled simulated residuals (in [0, 1]) of the fitted rows.
    fitted : Series
        Population-level fitted means of the fitted rows (count scale for binomial).
    person_effects : DataFrame or None
        Conditional modes of the person factor.
    influence : DataFrame
        Leave-one-person-out change of each fixed effect (persons × effects, one step).
    key_effect : str or None
        The effect whose influence :meth:`plot` shows (the key term a person moves most,
        relative to its standard error).
    kind : str
    n_sim, seed : int
    problems : tuple of str
        One sentence per flagged test (what the report's banner shows).
    """

    def __init__(
        self,
        *,
        tests: pd.DataFrame,
        residuals: pd.Series,
        fitted: pd.Series,
        person_effects: pd.DataFrame | None,
        influence: pd.DataFrame,
        key_effect: str | None,
        std_errors: pd.Series,
        kind: str,
        n_sim: int,
        seed: int,
        conditional: bool,
    ) -> None:
        sets = object.__setattr__
        sets(self, "tests", tests)
        sets(self, "residuals", residuals)
        sets(self, "fitted", fitted)
        sets(self, "person_effects", person_effects)
        sets(self, "influence", influence)
        sets(self, "key_effect", key_effect)
        sets(self, "_std_errors", std_errors)
        sets(self, "kind", kind)
        sets(self, "n_sim", int(n_sim))
        sets(self, "seed", int(seed))
        sets(self, "conditional", bool(conditional))

    tests: pd.DataFrame
    residuals: pd.Series
    fitted: pd.Series
    person_effects: pd.DataFrame | None
    influence: pd.DataFrame
    key_effect: str | None
    _std_errors: pd.Series
    kind: str
    n_sim: int
    seed: int
    conditional: bool

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if isinstance(value, pd.Series) and not name.startswith("_"):
            return value.copy()
        return value

    @property
    def problems(self) -> tuple[str, ...]:
        """One sentence per flagged test (p < 0.05)."""
        out = []
        for row in self.tests.to_dict("records"):
            if row["verdict"] == "problem":
                test = str(row["test"])
                out.append(
                    f"{test}: {_PROBLEM[test]} "
                    f"(statistic {format_number(row['statistic'], style='engine')}, "
                    f"p {format_p(row['p_value'], style='engine')})."
                )
        return tuple(out)

    @property
    def influence_scaled(self) -> pd.DataFrame:
        """:attr:`influence` divided by each effect's standard error (DFBETAS-like)."""
        if self.influence.empty:
            return self.influence
        return self.influence / self._std_errors[self.influence.columns]

    def plot(self) -> Figure:
        """2×2 panel: residuals vs fitted, uniform Q–Q of the scaled residuals, normal Q–Q
        of the person effects, each person's influence on :attr:`key_effect`
        (:func:`mesostats.plots.checks.check_panel`; never shown)."""
        from mesostats.plots.checks import check_panel

        return check_panel(self)

    def summary(self) -> Summary:
        """The tests table and the flagged problems (reader style)."""
        info = (
            ("Model", self.kind),
            (
                "Simulations",
                f"{self.n_sim} ({'conditional' if self.conditional else 'new random effects'})",
            ),
            ("Seed", str(self.seed)),
        )
        table = table_from_frame(self.tests, caption="Simulated-residual tests", style="engine")
        return Summary(
            "Model checks",
            info=info,
            tables=(table,),
            notes=(self.problems or ("No test flags a problem at the 5 % level.",))
            + (_CLMM_NOTE if self.kind == "CLMM" else ()),
            notes_title="Findings",
        )

    def __repr__(self) -> str:
        flagged = [
            r for r, v in zip(self.tests["test"], self.tests["verdict"], strict=True) if v != "ok"
        ]
        return f"<ModelCheck {self.kind}: n_sim={self.n_sim}, flagged={flagged or 'none'}>"


_CLMM_NOTE = (
    "Cumulative link model: person influence and the person-effect normality test are not "
    "computed (they need a linearisation of the ordinal likelihood).",
)


def _check_args(n_sim: Any, seed: Any) -> None:
    if (
        isinstance(n_sim, (bool, np.bool_))
        or not isinstance(n_sim, (int, np.integer))
        or n_sim < 10
    ):
        raise ModelSpecError(
            f"n_sim must be a whole number ≥ 10 (250 or more for stable p-values), got {n_sim!r}."
        )
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ModelSpecError(f"seed must be a whole number ≥ 0, got {seed!r}.")


def _key_effect(view: ModelView, influence: pd.DataFrame, se: pd.Series) -> str | None:
    terms = [t for t in view.key_terms if t in influence.columns]
    if influence.empty or not terms:
        return None
    scaled = (influence[terms] / se[terms]).abs().max(axis=0)
    return str(scaled.idxmax())


def _person_row(view: ModelView, sims: np.ndarray) -> tuple[str, float, float] | None:
    """Person-effect normality, calibrated on the simulated data sets' person effects."""
    model = view.model
    if not isinstance(model, MixedResults) or not model.design.terms:
        return None
    lin = linearise(model)
    observed = lin.modes(np.asarray(model.design.y, dtype=float)[:, None])[:, :, 0]
    scaled = sims / view.trials[:, None] if view.integer else sims
    return person_effects_test(observed, lin.modes(scaled))


def check_model(
    results: Any, *, n_sim: int = 250, seed: int = 0, conditional: bool = False
) -> ModelCheck:
    """Check a fitted model with simulated residuals, person effects and person influence.

    Parameters
    ----------
    results : MixedResults, MMRMResults, CLMMResults or a domain result
        From :func:`mesostats.fit_lmm`, :func:`~mesostats.fit_glmm`,
        :func:`~mesostats.fit_mmrm`, :func:`~mesostats.fit_clmm`,
        :func:`~mesostats.fit_regrowth` or :func:`~mesostats.fit_side_effects` (its
        ``.model`` is checked). A CLMM gets the simulated-residual tests on its grade
        indices (randomised PIT residuals); its person influence and person-effect test are
        not computed (``influence`` is empty).
    n_sim : int, default 250
        Simulated data sets (DHARMa's default).
    seed : int, default 0
        Seeds the simulations and the randomisation of discrete residuals.
    conditional : bool, default False
        Simulate with each person's conditional modes kept (DHARMa ≥ 0.5's default) instead
        of new random effects. Not for an MMRM.

    Returns
    -------
    ModelCheck
        ``.tests`` (``test, statistic, p_value, verdict``: rows ``uniformity``,
        ``dispersion``, ``zero_inflation`` for counts and multi-trial binomial rows,
        ``outliers``, ``residual_trend`` (40 rows or more, fitted value not constant),
        ``person_effects_normality`` for models with random effects),
        ``.residuals``, ``.influence``, ``.plot()``.

    Notes
    -----
    The tests are DHARMa's (module :mod:`mesostats.checks.simulation_tests`); p-values
    of the simulation-based tests come from ``n_sim`` simulations (0 means the observed
    value lies beyond every simulation: p < 1/n_sim). Without refitting to each simulated
    data set the tests are conservative (parameters fitted to the same data): measured
    under correct models, uniformity and dispersion rejected 0 of 40 at the 5 % level. Person
    effects are shrunken conditional modes; their normality test is a screen, not proof.

    References
    ----------
    Dunn & Smyth (1996), *J. Comput. Graph. Stat.* 5:236. Hartig, DHARMa (R package).
    Christensen, Pearson & Johnson (1992), *Technometrics* 34:38.

    Examples
    --------
    >>> import mesostats as ms
    >>> check = ms.check_model(ms.fit_side_effects(ms.example_study()))  # doctest: +SKIP
    >>> check.tests  # doctest: +SKIP
    """
    _check_args(n_sim, seed)
    view = model_view(results)
    rng_sim, rng_pit = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if conditional:
        if view.kind == "MMRM":
            raise ModelSpecError(
                "conditional=True keeps person random effects, which an MMRM does not have; "
                "use conditional=False."
            )
        sims = np.asarray(view.model.simulate(int(n_sim), seed=rng_sim, conditional=True))
        if view.integer:
            sims = np.rint(sims * view.trials[:, None])
    else:
        sims = view.simulate(int(n_sim), rng_sim)
    residuals = scaled_residuals(view.observed, sims, rng_pit)
    sim_res = simulated_residuals(sims, rng_pit)
    rows = [
        uniformity_test(residuals),
        dispersion_test(view.observed, sims, view.fitted),
    ]
    if view.aggregated:
        rows.append(zero_inflation_test(view.observed, sims))
    rows.append(outlier_test(residuals, sim_res))
    trend = trend_test(residuals, sim_res, view.fitted)
    if trend is not None:
        rows.append(trend)
    person = _person_row(view, sims)
    if person is not None:
        rows.append(person)
    tests = pd.DataFrame(rows, columns=list(TEST_COLUMNS[:3]))
    tests["verdict"] = np.where(tests["p_value"] < ALPHA, "problem", "ok")
    index = view.model.design.row_index if view.kind == "CLMM" else view.model.fitted.index
    influence = person_influence(view)
    se = view.model.fixed_effects["std_error"]
    return ModelCheck(
        tests=tests,
        residuals=pd.Series(residuals, index=index, name="scaled_residual"),
        fitted=pd.Series(view.fitted, index=index, name="fitted"),
        person_effects=view.person_effects,
        influence=influence,
        key_effect=_key_effect(view, influence, se),
        std_errors=se,
        kind=view.kind,
        n_sim=int(n_sim),
        seed=int(seed),
        conditional=conditional,
    )
