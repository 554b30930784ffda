"""The range of a new person's response and the expected share of responders.

Prediction of a new cluster (Skrondal & Rabe-Hesketh 2009, *JRSS A* 172(3)): fixed part
± z·√(x̂ᵀV_βx̂ + z(W)ᵀΣz(W) [+ σ²]); responder shares Φ((μ_c − t)/√v(W)) with uncertainty by
simulation of the estimates' sampling distribution (Gelman & Hill 2007, §7.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.domain.variation.base import VariabilityBase
from mesostats.domain.variation.quantities import _between_variance, _check_level, _share_above, _z
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.profile import (
    blas_single_threaded,
)

#: Gauss–Hermite nodes of the marginal (population-average) event probability
#: E[expit(η + σZ)]: absolute error below 1e-3 for between-person SDs σ ≤ 5 on the logit
#: scale (4e-4 at σ = 5, 4e-3 at σ = 8; checked against adaptive quadrature).
MARGINAL_NODES = 40


class PredictionMixin(VariabilityBase):
    """New-person ranges and responder shares of a :class:`Variability`."""

    # ------------------------------------------------------------------ prediction interval
    def prediction_interval(
        self,
        week: float | None = None,
        cocktail: str | Sequence[str] | None = None,
        level: float = 0.95,
        include_residual: bool = False,
    ) -> pd.DataFrame:
        """Range of one new person's response under each cocktail.

        Parameters
        ----------
        week : float, optional
            Regrowth: the week W (default: the last scheduled post-baseline week,
            ``self.week``). Side effects: must be None (no time term).
        cocktail : str or sequence of str, optional
            Cocktail id(s); default every cocktail given.
        level : float, default 0.95
        include_residual : bool, default False
            Regrowth: add the residual variance σ² (range of one *measured* value rather than
            the person's true change).

        Returns
        -------
        DataFrame
            Regrowth: ``cocktail, week, estimate`` (mean change from baseline of a person
            with the average baseline), ``ci_lower, ci_upper`` (CI of that mean), ``sd_fixed``
            (its standard error), ``sd_between`` (between-person SD at W: random intercept,
            slope, their covariance, and other grouping factors such as site),
            ``sd_residual``, ``sd_total``, ``pi_lower, pi_upper, level``.
            Side effects: ``cocktail, probability`` (a typical person, random effect 0),
            ``marginal_probability`` (population average), ``ci_lower, ci_upper``,
            ``sd_fixed, sd_between, sd_total`` (logit scale), ``pi_lower, pi_upper, level``
            (a new person's per-session event probability).

        Raises
        ------
        ModelSpecError
            A bare MixedResults, unknown cocktail, bad week or level, ``include_residual``
            for side effects.

        Notes
        -----
        x̂ᵀβ̂ ± z·√(x̂ᵀV_βx̂ + z(W)ᵀΣz(W) [+ σ²]) (prediction for a new cluster, Skrondal &
        Rabe-Hesketh 2009); side effects on the logit scale, then transformed.
        """
        ctx = self._require_domain("prediction_interval()")
        level = _check_level(level)
        w = self._resolve_week(week)
        if include_residual and ctx.kind == "side_effects":
            raise ModelSpecError(
                "include_residual applies to regrowth (a linear model); a side-effect model "
                "has no residual SD on the probability scale."
            )
        cocktails = self._cocktails(cocktail)
        model = self.model
        X, offset, zs = self._new_person_design(cocktails, w)
        eta = X @ model.params.to_numpy() + offset
        var_fixed = np.einsum("ij,jk,ik->i", X, model.vcov.to_numpy(), X)
        var_between = _between_variance(model, zs, np.asarray(model.theta), model.sigma)
        z = _z(level)
        sd_fixed = np.sqrt(var_fixed)
        sd_between = np.sqrt(var_between)
        if ctx.kind == "regrowth":
            est = eta - ctx.shift
            var_res = np.full(len(cocktails), model.sigma**2 if include_residual else 0.0)
            sd_total = np.sqrt(var_fixed + var_between + var_res)
            return pd.DataFrame(
                {
                    "cocktail": cocktails,
                    "week": w,
                    "estimate": est,
                    "ci_lower": est - z * sd_fixed,
                    "ci_upper": est + z * sd_fixed,
                    "sd_fixed": sd_fixed,
                    "sd_between": sd_between,
                    "sd_residual": np.sqrt(var_res),
                    "sd_total": sd_total,
                    "pi_lower": est - z * sd_total,
                    "pi_upper": est + z * sd_total,
                    "level": level,
                }
            )
        sd_total = np.sqrt(var_fixed + var_between)
        expit = stats.logistic.cdf
        nodes, weights = np.polynomial.hermite_e.hermegauss(MARGINAL_NODES)
        marginal = (expit(eta[:, None] + sd_between[:, None] * nodes[None, :]) @ weights) / (
            math.sqrt(2.0 * math.pi)
        )
        return pd.DataFrame(
            {
                "cocktail": cocktails,
                "probability": expit(eta),
                "marginal_probability": marginal,
                "ci_lower": expit(eta - z * sd_fixed),
                "ci_upper": expit(eta + z * sd_fixed),
                "sd_fixed": sd_fixed,
                "sd_between": sd_between,
                "sd_total": sd_total,
                "pi_lower": expit(eta - z * sd_total),
                "pi_upper": expit(eta + z * sd_total),
                "level": level,
            }
        )

    # ------------------------------------------------------------------ responders
    def _parameter_draws(
        self, n_sim: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Draws of (β, θ, σ) from the estimates' sampling distribution."""
        model = self.model
        beta = model.params.to_numpy()
        theta = np.asarray(model.theta, dtype=float)
        gaussian = model.family == "gaussian"
        boot = self.bootstrap
        if boot is not None:
            ok = np.isfinite(boot.sigma) & np.all(np.isfinite(boot.theta), axis=1)
            ok &= np.all(np.isfinite(boot.beta), axis=1)
            if ok.sum() >= 2:
                return (
                    boot.beta[ok],
                    boot.theta[ok],
                    boot.sigma[ok],
                    f"parametric bootstrap replicates ({int(ok.sum())})",
                )
        B = rng.multivariate_normal(beta, model.vcov.to_numpy(), size=n_sim, method="eigh")
        cov = model.variance_parameter_cov
        lower = model.design.theta_lower
        k = len(theta)
        if cov is not None and cov.shape[0] in (k, k + 1):
            mean = np.append(theta, model.sigma) if cov.shape[0] == k + 1 else theta
            draws = rng.multivariate_normal(mean, cov.to_numpy(), size=n_sim, method="eigh")
            T = np.maximum(draws[:, :k], lower)
            S = np.abs(draws[:, k]) if cov.shape[0] == k + 1 else np.full(n_sim, model.sigma)
            how = "simulation: β ~ N(β̂, V_β), (θ, σ) ~ N(estimate, asymptotic covariance)"
        else:
            T = np.tile(theta, (n_sim, 1))
            S = np.full(n_sim, model.sigma)
            how = "simulation: β ~ N(β̂, V_β); variance parameters held at their estimates"
        if not gaussian:
            S = np.ones(n_sim)
        return B, T, S, how

    @blas_single_threaded
    def responders(
        self,
        threshold: float,
        *,
        week: float | None = None,
        level: float = 0.95,
        n_sim: int = 4000,
    ) -> pd.DataFrame:
        """Expected share of people per cocktail whose true response exceeds a threshold.

        Parameters
        ----------
        threshold : float
            Regrowth: a clinically meaningful change from baseline at week W, in outcome
            units (e.g. 10 hairs/cm²). Side effects: a per-session event probability in
            (0, 1); the share is that of people whose probability exceeds it.
        week : float, optional
            Regrowth only; default ``self.week``.
        level : float, default 0.95
        n_sim : int, default 4000
            Draws of the parameters for the interval (ignored when bootstrap replicates
            are available: they are used instead).

        Returns
        -------
        DataFrame
            ``cocktail, week, threshold, share, ci_lower, ci_upper, mean, sd_between, level,
            uncertainty`` (``mean`` = expected change, or logit of a typical person's
            probability; ``sd_between`` on the same scale).

        Notes
        -----
        share = Φ((μ_c − t)/√v(W)) for the normal between-person distribution of true
        changes N(μ_c, v(W)) implied by the model (side effects: of logits, t = logit of the
        threshold). The interval is the percentile interval of the share over draws of the
        parameters (Gelman & Hill 2007, §7.2), seeded by ``self.seed``.
        """
        ctx = self._require_domain("responders()")
        level = _check_level(level)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
            raise ModelSpecError(f"threshold must be a number, got {threshold!r}.")
        t = float(threshold)
        if ctx.kind == "side_effects":
            if not 0.0 < t < 1.0:
                raise ModelSpecError(
                    f"For side effects the threshold is a per-session event probability "
                    f"strictly between 0 and 1 (e.g. 0.2), got {threshold!r}."
                )
            t_scale = math.log(t / (1.0 - t))
        else:
            t_scale = t
        if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 100:
            raise ModelSpecError(f"n_sim must be an integer ≥ 100, got {n_sim!r}.")
        w = self._resolve_week(week)
        cocktails = self._cocktails(None)
        model = self.model
        X, offset, zs = self._new_person_design(cocktails, w)
        mean = X @ model.params.to_numpy() + offset - ctx.shift
        sd = np.sqrt(_between_variance(model, zs, np.asarray(model.theta), model.sigma))
        share = _share_above(mean, sd, t_scale)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed))
        B, T, S, how = self._parameter_draws(int(n_sim), rng)
        sim_mean = B @ X.T + offset[None, :] - ctx.shift  # (draws, cocktails)
        sim_sd = np.sqrt(_between_variance(model, zs, T, S))
        sim_share = _share_above(sim_mean, sim_sd, t_scale)
        a = (1.0 - level) / 2.0
        lo, hi = np.quantile(sim_share, [a, 1.0 - a], axis=0)
        return pd.DataFrame(
            {
                "cocktail": cocktails,
                "week": w,
                "threshold": t,
                "share": share,
                "ci_lower": lo,
                "ci_upper": hi,
                "mean": mean,
                "sd_between": sd,
                "level": level,
                "uncertainty": how,
            }
        )
