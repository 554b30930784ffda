"""Per-person effects: conditional modes with conditional intervals, each person's predicted
change, and a flag (clearly responded, clearly did not, uncertain). Conditional covariances as
lme4's ``condVar``; a person's prediction adds x_iᵀV_βx_i as merTools' ``predictInterval``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.domain.variation.base import VariabilityBase
from mesostats.domain.variation.quantities import _check_level, _flags, _z, conditional_mode_table
from mesostats.exceptions import ModelSpecError


class PersonsMixin(VariabilityBase):
    """Per-person tables of a :class:`Variability`."""

    # ------------------------------------------------------------------ person effects
    def _conditional_covariances(self) -> list[np.ndarray]:
        """Per design term, (n_levels, q, q) conditional covariances of the random effects.

        The engine's ``ranef_cov`` blocks (lme4's ``condVar``: LMM from the factorisation at
        θ̂, GLMM from the Laplace approximation at the mode), cut per term. A fit without
        them (built elsewhere) falls back to the conditional SDs on the diagonal.
        """
        if self._cond_cov:
            return list(self._cond_cov)
        model = self.model
        design = model.design
        blocks = model.ranef_cov
        out: list[np.ndarray] = []
        offset: dict[str, int] = {}
        for t in design.terms:
            start = offset.get(t.group, 0)
            offset[t.group] = start + t.q
            if blocks is not None:
                cols = slice(start, start + t.q)
                out.append(np.ascontiguousarray(blocks[t.group][:, cols, cols]))
                continue
            sd = model.ranef_se[t.group][list(t.names)].to_numpy(dtype=float)
            cov = np.zeros((t.n_levels, t.q, t.q))
            idx = np.arange(t.q)
            cov[:, idx, idx] = sd**2
            out.append(cov)
        self._cond_cov.extend(out)
        return out

    @property
    def person_effects(self) -> pd.DataFrame:
        """Person-level BLUP table at the default week and threshold (see
        :meth:`person_effects_table`)."""
        return self.person_effects_table()

    def person_effects_table(
        self,
        threshold: float | None = None,
        *,
        week: float | None = None,
        level: float = 0.95,
    ) -> pd.DataFrame:
        """Each person's conditional modes with intervals, predicted response and a flag.

        Parameters
        ----------
        threshold : float, optional
            Regrowth: change from baseline at week W to compare with (default 0: did the
            person improve at all?). Side effects: a per-session event probability; default
            None compares the person's random intercept with 0 (more or less prone than a
            typical person on the same cocktail). Bare models: compared with each mode.
        week : float, optional
            Regrowth: week W of the predicted change (default ``self.week``).
        level : float, default 0.95

        Returns
        -------
        DataFrame
            Regrowth: ``subject_id, cocktail, intercept, intercept_sd, intercept_lower,
            intercept_upper, slope, slope_sd, slope_lower, slope_upper, baseline, change,
            change_sd, change_lower, change_upper, week, threshold, flag`` with flag
            ``"clearly responded"`` (interval above the threshold), ``"clearly did not"``
            (below) or ``"uncertain"``. Side effects: ``subject_id, cocktail, intercept,
            intercept_sd, intercept_lower, intercept_upper, probability, probability_lower,
            probability_upper, threshold, flag`` (``"clearly above"``, ``"clearly below"``,
            ``"uncertain"``). Bare MixedResults: ``group, level, term, mode, cond_sd,
            ci_lower, ci_upper, flag``.

        Notes
        -----
        Mode intervals are mode ± z·(conditional SD) (lme4 ``condVar``). The predicted change
        adds the fixed part's variance to the conditional variance of z(W)ᵀb_i (all of the
        person's grouping factors), see the module docstring.
        """
        level = _check_level(level)
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number))
        ):
            raise ModelSpecError(f"threshold must be a number or None, got {threshold!r}.")
        ctx = self._ctx
        w = self._resolve_week(week)
        key = (threshold, w, level)
        if key not in self._person_cache:
            if ctx.kind == "model":
                table = self._generic_person_table(threshold, level)
            elif ctx.kind == "regrowth":
                table = self._regrowth_person_table(threshold, w, level)
            else:
                table = self._side_effect_person_table(threshold, level)
            self._person_cache[key] = table
        return self._person_cache[key].copy()

    def _generic_person_table(self, threshold: float | None, level: float) -> pd.DataFrame:
        t = 0.0 if threshold is None else float(threshold)
        table = conditional_mode_table(self.model, level)
        lo, hi = table["ci_lower"].to_numpy(), table["ci_upper"].to_numpy()
        return table.assign(flag=_flags(lo, hi, t, "clearly above", "clearly below"))

    def _subject_rows(self) -> tuple[pd.DataFrame, np.ndarray, int]:
        """Last analysed row per person (in the order of the subject term's levels)."""
        ctx = self._ctx
        assert ctx.data is not None and ctx.subject is not None
        model = self.model
        term_index = next(i for i, t in enumerate(model.design.terms) if t.group == ctx.subject)
        term = model.design.terms[term_index]
        data = ctx.data.loc[model.design.row_index]
        last = data.groupby(ctx.subject, sort=False).tail(1)
        labels = pd.Index(last[ctx.subject].astype(str))
        order = labels.get_indexer(pd.Index([str(v) for v in term.levels]))
        return last.iloc[order].reset_index(drop=True), order, term_index

    def _mode_columns(
        self, term_index: int, z: float, prefix: dict[int, str]
    ) -> dict[str, np.ndarray]:
        model = self.model
        term = model.design.terms[term_index]
        modes = model.ranef[term.group][list(term.names)].to_numpy(dtype=float)
        sds = model.ranef_se[term.group][list(term.names)].to_numpy(dtype=float)
        out: dict[str, np.ndarray] = {}
        for j, name in prefix.items():
            if j < term.q:
                m, s = modes[:, j], sds[:, j]
            else:
                m = s = np.full(term.n_levels, np.nan)
            out[name] = m
            out[f"{name}_sd"] = s
            out[f"{name}_lower"] = m - z * s
            out[f"{name}_upper"] = m + z * s
        return out

    def _person_prediction(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Linear predictor with every BLUP, and its variance (fixed + conditional)."""
        model = self.model
        eta = model.predict(rows, include_random=True, scale="link").to_numpy(dtype=float)
        X = model.design.fixed_matrix(rows)
        var = np.einsum("ij,jk,ik->i", X, model.vcov.to_numpy(), X)
        cond = self._conditional_covariances()
        for term, cov in zip(model.design.terms, cond, strict=True):
            codes = term.level_codes(rows)
            Z = np.asarray(term.columns_for(rows), dtype=float)
            seen = codes >= 0
            contrib = np.zeros(len(rows))
            contrib[seen] = np.einsum("ij,ijk,ik->i", Z[seen], cov[codes[seen]], Z[seen])
            var = var + contrib
        return eta, var

    def _regrowth_person_table(
        self, threshold: float | None, week: float | None, level: float
    ) -> pd.DataFrame:
        ctx = self._ctx
        assert ctx.time is not None and week is not None and ctx.subject is not None
        z = _z(level)
        t = 0.0 if threshold is None else float(threshold)
        rows, _, k = self._subject_rows()
        term = self.model.design.terms[k]
        slope_j = term.names.index(ctx.time) if ctx.time in term.names else term.q
        cols = self._mode_columns(k, z, {0: "intercept", slope_j: "slope"})
        new = rows.copy()
        new[ctx.time] = float(week)
        eta, var = self._person_prediction(new)
        baseline = rows["baseline"].to_numpy(dtype=float)
        change = eta - baseline
        sd = np.sqrt(var)
        lo, hi = change - z * sd, change + z * sd
        table = pd.DataFrame(
            {
                **self._person_columns(rows, term.levels),
                **cols,
                "baseline": baseline,
                "change": change,
                "change_sd": sd,
                "change_lower": lo,
                "change_upper": hi,
                "week": float(week),
                "threshold": t,
                "flag": _flags(lo, hi, t, "clearly responded", "clearly did not"),
            }
        )
        return table

    def _person_columns(self, rows: pd.DataFrame, levels: pd.Index) -> dict[str, Any]:
        """The person id and cocktail columns that open every person table."""
        ctx = self._ctx
        assert ctx.subject is not None
        column = ctx.cocktail_column
        return {
            ctx.subject: [str(v) for v in levels],
            "cocktail": rows[column].astype(object).to_numpy() if column in rows.columns else None,
        }

    def _side_effect_person_table(self, threshold: float | None, level: float) -> pd.DataFrame:
        ctx = self._ctx
        assert ctx.subject is not None
        z = _z(level)
        rows, _, k = self._subject_rows()
        term = self.model.design.terms[k]
        cols = self._mode_columns(k, z, {0: "intercept"})
        eta, var = self._person_prediction(rows)
        sd = np.sqrt(var)
        expit = stats.logistic.cdf
        p, p_lo, p_hi = expit(eta), expit(eta - z * sd), expit(eta + z * sd)
        if threshold is None:
            flag = _flags(
                cols["intercept_lower"],
                cols["intercept_upper"],
                0.0,
                "clearly above",
                "clearly below",
            )
            t = math.nan
        else:
            t = float(threshold)
            if not 0.0 < t < 1.0:
                raise ModelSpecError(
                    f"For side effects the threshold is a per-session event probability "
                    f"strictly between 0 and 1 (or None), got {threshold!r}."
                )
            flag = _flags(p_lo, p_hi, t, "clearly above", "clearly below")
        return pd.DataFrame(
            {
                **self._person_columns(rows, term.levels),
                **cols,
                "probability": p,
                "probability_lower": p_lo,
                "probability_upper": p_hi,
                "threshold": t,
                "flag": flag,
            }
        )
