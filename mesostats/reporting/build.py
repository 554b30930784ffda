"""Build the self-contained HTML report of a study (:func:`report`).

The report answers the study's three questions in five sections: (1) the data — who was
treated, with what, when, and every row set aside with its reason; (2) regrowth by
ingredient (:func:`mesostats.fit_regrowth`); (3) side effects by ingredient
(:func:`mesostats.fit_side_effects`, adaptive Gauss–Hermite quadrature, with the GEE
population-average odds ratios beside them) and every serious adverse event verbatim; (4)
"varied results" (:func:`mesostats.variability`): between-person SDs with profile-likelihood
CIs, ICC, median odds ratio, prediction intervals, responders and per-person estimates;
(5) methods: formulas, software versions, the seed, and every warning or message of every
fit, which also appear in a banner at the top.

How it is built, and why by hand: the statistics come from the domain layer; this module only
gathers them into plain values (strings, tables of strings, PNG data URIs) and renders the
Jinja2 templates in ``templates/`` (loaded with :class:`jinja2.PackageLoader`, so they ship
in the wheel). Safety and robustness rules:

* autoescaping is on for every template and no template marks a value ``|safe``: study
  values (ids, site and ingredient names, verbatim text) are always escaped. Figures are
  base64 PNG data URIs (only ``[A-Za-z0-9+/=]``, unchanged by escaping). No JavaScript, no
  external stylesheet, font or image: the file works offline.
* every model, table and figure is computed in its own guarded step: one that fails shows its
  reason in place of its content (and in the banner) instead of failing the whole report.
  Warnings raised while fitting are captured and shown in the report, not re-issued.
* the file is written atomically (a temporary file in the target folder, then
  :func:`os.replace`), so a failure never leaves a partial report behind.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import math
import os
import platform
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from mesostats.exceptions import MesostatsError, ModelSpecError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from mesostats.data.study import Study

__all__ = ["SECTION_TITLES", "SOFTWARE", "BuiltReport", "build_report", "render_report", "report"]

T = TypeVar("T")

#: Section anchors and headings, in report order.
SECTION_TITLES: dict[str, str] = {
    "data": "1. The data",
    "regrowth": "2. Regrowth by ingredient",
    "side_effects": "3. Side effects by ingredient",
    "variability": "4. Varied results: how much people differ",
    "methods": "5. Methods",
}

#: Distributions whose versions the methods section lists.
SOFTWARE: tuple[str, ...] = (
    "mesostats",
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "formulaic",
    "matplotlib",
    "seaborn",
    "jinja2",
)

#: Units of the outcome columns, for captions and sentences.
OUTCOME_UNITS: dict[str, str] = {
    "hair_density": "hairs/cm²",
    "hair_count": "hairs",
    "terminal_density": "hairs/cm²",
    "vellus_density": "hairs/cm²",
    "shaft_diameter_um": "µm",
    "anagen_pct": "percentage points",
    "gpa_score": "points",
    "pain_vas": "points",
}

#: Quadrature nodes of the side-effect GLMM (adaptive Gauss–Hermite; 1 would be Laplace).
SIDE_EFFECT_NAGQ = 25
#: Figure resolution (dots per inch) of the embedded PNGs.
FIGURE_DPI = 100

_EXPECTED_ERRORS = (MesostatsError, ValueError, ArithmeticError, np.linalg.LinAlgError)


# --------------------------------------------------------------------------------------------
# Plain values handed to the templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table of preformatted strings; ``numeric[i]`` right-aligns column i."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    numeric: tuple[bool, ...] = ()

    @property
    def alignments(self) -> tuple[str, ...]:
        """``"num"`` or ``"text"`` per column (CSS classes of the template)."""
        flags = self.numeric or (False,) * len(self.columns)
        return tuple("num" if f else "text" for f in flags)


@dataclass(frozen=True)
class Figure:
    """An embedded figure: a ``data:image/png;base64,…`` URI, alt text and a caption."""

    uri: str
    alt: str
    caption: str
    width: int


@dataclass(frozen=True)
class Failure:
    """What could not be computed, and why (shown in place of the missing content)."""

    what: str
    reason: str


@dataclass(frozen=True)
class Message:
    """A warning or message of one step of the analysis."""

    source: str
    kind: str
    text: str


@dataclass
class MessageLog:
    """Every warning, engine message and failure, in order, without duplicates."""

    items: list[Message] = field(default_factory=list)

    def add(self, source: str, kind: str, text: str) -> None:
        """Record one message (a repeat of the same source and text is ignored)."""
        text = str(text).strip()
        if text and not any(m.source == source and m.text == text for m in self.items):
            self.items.append(Message(source, kind, text))

    def add_warnings(self, source: str, caught: Iterable[warnings.WarningMessage]) -> None:
        """Record captured Python warnings under their class name."""
        for w in caught:
            self.add(source, w.category.__name__, str(w.message))


def _attempt(
    log: MessageLog, source: str, compute: Callable[[], T]
) -> tuple[T | None, Failure | None]:
    """Run one step, capturing its warnings; a failure is returned (and logged), not raised.

    Expected failures (our errors, numerical errors) show their message; anything else is
    shown with its type and flagged as a likely bug, so that one broken step never takes the
    whole report down.
    """
    value: T | None = None
    failure: Failure | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = compute()
        except _EXPECTED_ERRORS as err:
            failure = Failure(source, str(err) or type(err).__name__)
        except Exception as err:  # one step must not break the report
            reason = (
                f"{type(err).__name__}: {err}. This looks like a bug in mesostats; please "
                "report it with the study's shape (not its data)."
            )
            failure = Failure(source, reason)
    log.add_warnings(source, caught)
    if failure is not None:
        log.add(source, "not computed", failure.reason)
    return value, failure


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def num(value: Any, digits: int = 3) -> str:
    """A number for a reader: about ``digits`` significant digits, no exponent for common
    sizes, an en dash when missing."""
    if _is_missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v == 0:
        return "0"
    size = abs(v)
    if size >= 1e6 or size < 1e-4:
        text = f"{v:.{digits - 1}e}"
    elif size >= 10 ** (digits - 1):
        text = f"{v:,.0f}"
    else:
        decimals = digits - 1 - math.floor(math.log10(size))
        text = f"{v:.{decimals}f}"
    return text.replace("-", "−")


def plain(value: Any) -> str:
    """A number as written by hand (``0.5``, ``37.5``, ``224``): Python's ``g`` format."""
    if _is_missing(value):
        return "–"
    return f"{float(value):g}".replace("-", "−")


def pvalue(value: Any) -> str:
    """A p-value: ``<0.001`` below 0.001, else three decimals."""
    if _is_missing(value):
        return "–"
    v = float(value)
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def interval(lower: Any, upper: Any, digits: int = 3) -> str:
    """``lower to upper`` (a missing bound shows an en dash)."""
    return f"{num(lower, digits)} to {num(upper, digits)}"


def percent(value: Any, digits: int = 1) -> str:
    """A proportion as a percentage."""
    if _is_missing(value):
        return "–"
    return f"{100 * float(value):.{digits}f} %"


def percent_range(lower: Any, upper: Any, digits: int = 1) -> str:
    """Two proportions as a percentage range, ``18.0–22.9 %``."""
    if _is_missing(lower) or _is_missing(upper):
        return "–"
    return f"{100 * float(lower):.{digits}f}–{100 * float(upper):.{digits}f} %"


def _text(value: Any) -> str:
    return "–" if _is_missing(value) else str(value)


def _table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str = "",
    numeric: Sequence[bool] = (),
) -> Table:
    return Table(
        columns=tuple(columns),
        rows=tuple(tuple(_text(c) for c in row) for row in rows),
        caption=caption,
        numeric=tuple(numeric),
    )


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def png_data_uri(figure: Any, *, tight: bool = False) -> str:
    """A matplotlib figure as a ``data:image/png;base64,…`` URI (PNG at :data:`FIGURE_DPI`;
    ``tight`` crops to the drawn area, for figures not laid out by matplotlib)."""
    buffer = io.BytesIO()
    figure.savefig(
        buffer,
        format="png",
        dpi=FIGURE_DPI,
        metadata={"Software": None},
        bbox_inches="tight" if tight else None,
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw(draw: Callable[[Axes], Any], size: tuple[float, float]) -> str:
    """Draw on the Axes of a new figure (no pyplot, no global state); return its data URI."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=size, dpi=FIGURE_DPI, layout="constrained")
    draw(fig.add_subplot())
    return png_data_uri(fig)


def _figure(
    log: MessageLog,
    what: str,
    draw: Callable[[Axes], Any],
    *,
    size: tuple[float, float],
    alt: str,
    caption: str,
) -> Figure | Failure:
    uri, failure = _attempt(log, what, lambda: _draw(draw, size))
    if failure is not None or uri is None:
        return failure or Failure(what, "no figure was drawn")
    return Figure(uri=uri, alt=alt, caption=caption, width=int(size[0] * FIGURE_DPI))


# --------------------------------------------------------------------------------------------
# Section 1: the data
# --------------------------------------------------------------------------------------------


def _cocktails_received(study: Study) -> pd.DataFrame:
    """subject_id, cocktail_id: each cocktail a subject received (once per pair)."""
    s = study.sessions
    if "cocktail_id" not in s.columns:
        return pd.DataFrame({"subject_id": [], "cocktail_id": []}, dtype="str")
    given = s.loc[s["cocktail_id"].notna().to_numpy(dtype=bool), ["subject_id", "cocktail_id"]]
    return given.drop_duplicates().reset_index(drop=True)


def _recipes(study: Study) -> dict[str, str]:
    c = study.cocktails
    parts = c["ingredient"].astype(str) + (
        " " + c["concentration"].map(plain) + " " + c["unit"].astype(str)
        if {"concentration", "unit"} <= set(c.columns)
        else ""
    )
    frame = pd.DataFrame({"cocktail_id": c["cocktail_id"].astype(str), "part": parts})
    return frame.groupby("cocktail_id", sort=True)["part"].agg(", ".join).to_dict()


def _overview(study: Study) -> list[tuple[str, str]]:
    s, ae = study.sessions, study.adverse_events
    injected = int(s["cocktail_id"].notna().sum()) if "cocktail_id" in s.columns else 0
    assessed = int(s["reactions_assessed"].fillna(False).astype(bool).sum())
    per_subject = s.groupby("subject_id").size()
    n_serious = int(ae["serious"].fillna(False).astype(bool).sum()) if len(ae) else 0
    sites = sorted(pd.unique(study.subjects["site"].dropna().astype(str)))
    return [
        ("Source", study.source or "(tables given in memory)"),
        ("Subjects", f"{len(study.subjects):,}"),
        ("Sites", f"{len(sites)}: {', '.join(sites)}"),
        (
            "Visits",
            f"{len(s):,} ({injected:,} with an injection, {assessed:,} with side effects "
            f"assessed); {per_subject.median():g} per subject (median, range "
            f"{per_subject.min()}–{per_subject.max()}); study days {s['day'].min()} to "
            f"{s['day'].max()}",
        ),
        ("Cocktails", f"{study.cocktails['cocktail_id'].nunique()}"),
        ("Active ingredients", ", ".join(study.ingredients) or "none"),
        ("Adverse events", f"{len(ae):,} recorded, {n_serious} serious"),
        (
            "Validation",
            "passed: every table was checked against the published schemas and the "
            "cross-table rules when the study was loaded",
        ),
        ("Rows set aside", f"{len(study.exclusions):,} (listed below with the reason)"),
    ]


def _cocktail_table(study: Study) -> Table:
    received = _cocktails_received(study)
    subjects = received.groupby("cocktail_id").size()
    s = study.sessions
    sessions = s.groupby("cocktail_id").size() if "cocktail_id" in s.columns else pd.Series()
    rows = [
        (cid, recipe, num(int(subjects.get(cid, 0))), num(int(sessions.get(cid, 0))))
        for cid, recipe in _recipes(study).items()
    ]
    return _table(
        ["Cocktail", "Ingredients (concentration)", "People given it", "Injection sessions"],
        rows,
        caption="Cocktails: what each recipe contains and how often it was given.",
        numeric=[False, False, True, True],
    )


def _people_table(study: Study, outcome: str) -> Table:
    """Per cocktail received: people, women, age, diagnoses, baseline outcome."""
    received = _cocktails_received(study)
    subj = study.subjects.drop_duplicates("subject_id")
    merged = received.merge(subj, on="subject_id", how="left")
    baseline = pd.Series(dtype=float)
    if outcome in study.outcomes:
        table = study.outcome_table(outcome)
        baseline = table.groupby("subject_id")["baseline"].first()
    merged["baseline"] = merged["subject_id"].map(baseline)
    diagnoses = sorted(pd.unique(subj["diagnosis"].dropna().astype(str)))
    rows = []
    for cid, group in merged.groupby("cocktail_id", sort=True):  # a few cocktails
        age = group["age"].astype(float)
        base = group["baseline"].astype(float)
        counts = group["diagnosis"].astype(str).value_counts()
        rows.append(
            (
                str(cid),
                num(len(group)),
                num(int((group["sex"] == "F").sum())),
                f"{plain(age.median())} ({plain(age.min())}–{plain(age.max())})",
                ", ".join(f"{d} {int(counts.get(d, 0))}" for d in diagnoses),
                f"{num(base.mean())} ({num(base.std())})" if base.notna().any() else "–",
            )
        )
    return _table(
        [
            "Cocktail",
            "People",
            "Women",
            "Age, median (range)",
            "Diagnosis",
            f"Baseline {outcome}, mean (SD)",
        ],
        rows,
        caption="Who received each cocktail (a person given two cocktails counts in both).",
        numeric=[False, True, True, True, False, True],
    )


def _site_table(study: Study) -> Table:
    received = _cocktails_received(study).merge(
        study.subjects[["subject_id", "site"]].drop_duplicates("subject_id"), on="subject_id"
    )
    cross = pd.crosstab(received["site"].astype(str), received["cocktail_id"].astype(str))
    total = study.subjects.groupby(study.subjects["site"].astype(str)).size()
    cross = cross.reindex(total.index, fill_value=0)
    rows = [
        (str(site), *(num(int(v)) for v in cross.loc[site]), num(int(total[site])))
        for site in cross.index
    ]
    return _table(
        ["Site", *(f"Cocktail {c}" for c in cross.columns), "Subjects"],
        rows,
        caption="People per site and cocktail received.",
        numeric=[False, *([True] * (len(cross.columns) + 1))],
    )


def _visit_table(study: Study, outcome: str) -> Table:
    s = study.sessions
    grouped = s.groupby("visit", sort=True)
    measured: dict[Any, Any] = (
        s[outcome].notna().groupby(s["visit"]).sum().to_dict() if outcome in s.columns else {}
    )
    injected: dict[Any, Any] = s["cocktail_id"].notna().groupby(s["visit"]).sum().to_dict()
    assessed: dict[Any, Any] = (
        s["reactions_assessed"].fillna(False).astype(bool).groupby(s["visit"]).sum().to_dict()
    )
    day: dict[Any, Any] = grouped["day"].agg(["median", "min", "max"]).to_dict("index")
    rows = [
        (
            plain(v),
            f"{plain(day[v]['median'])} ({plain(day[v]['min'])} to {plain(day[v]['max'])})",
            num(int(n)),
            num(int(injected.get(v, 0))),
            num(int(measured.get(v, 0))),
            num(int(assessed.get(v, 0))),
        )
        for v, n in grouped.size().items()
    ]
    return _table(
        [
            "Visit",
            "Study day, median (range)",
            "People seen",
            "Injected",
            f"{outcome} measured",
            "Side effects assessed",
        ],
        rows,
        caption="Visits: when they happened and what was recorded (day 1 = first injection).",
        numeric=[True] * 6,
    )


def _exclusion_tables(study: Study) -> tuple[Table, Table]:
    ex = study.exclusions
    by_reason: dict[Any, Any] = (
        ex.groupby(["table", "reason"], sort=False).size().sort_values(ascending=False).to_dict()
    )
    summary = _table(
        ["Table", "Reason", "Rows"],
        [(key[0], key[1], num(int(n))) for key, n in by_reason.items()],
        caption="Rows set aside from some analysis, by reason.",
        numeric=[False, False, True],
    )
    full = _table(
        ["Table", "Row (file line)", "Reason"],
        ex[["table", "row", "reason"]].itertuples(index=False),
        caption="Every row set aside, with its reason.",
        numeric=[False, True, False],
    )
    return summary, full


def _data_section(study: Study, outcome: str, log: MessageLog) -> dict[str, Any]:
    source = "Data summary"
    tables: dict[str, Table | Failure] = {}
    for key, build in (
        ("cocktails", lambda: _cocktail_table(study)),
        ("people", lambda: _people_table(study, outcome)),
        ("sites", lambda: _site_table(study)),
        ("visits", lambda: _visit_table(study, outcome)),
    ):
        value, failure = _attempt(log, source, build)
        tables[key] = value if value is not None else failure or Failure(source, "empty")
    exclusions, failure = _attempt(log, source, lambda: _exclusion_tables(study))
    return {
        "overview": _overview(study),
        "tables": tables,
        "exclusions": exclusions,
        "exclusions_failure": failure,
        "n_exclusions": len(study.exclusions),
        "spaghetti": _spaghetti(study, outcome, log),
    }


def _facets(draw: Callable[[], Any]) -> str:
    """Render a figure-level plot (a seaborn grid made through pyplot), then close it."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        grid = draw()
        return png_data_uri(grid.figure, tight=True)
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def _spaghetti(study: Study, outcome: str, log: MessageLog) -> Figure | Failure:
    def draw() -> Any:
        from mesostats import plots

        return plots.spaghetti(study, outcome, col_wrap=4, height=2.4)

    what = "Figure of individual trajectories"
    uri, failure = _attempt(log, what, lambda: _facets(draw))
    if uri is None:
        return failure or Failure(what, "no figure was drawn")
    return Figure(
        uri=uri,
        alt=f"{outcome} over time, one line per person, one panel per cocktail",
        caption=f"Each thin line is one person's {outcome} over the study weeks, one panel per "
        "cocktail; the thick line is the cocktail's mean at each visit.",
        width=1100,
    )


def analysis_exclusions(study: Study, outcome: str, regrowth: Any, side: Any) -> pd.DataFrame:
    """Rows the models leave out beyond ``study.exclusions``: ``analysis, table, row, reason``.

    Taken from the fits' own ``excluded_rows`` (regrowth: post-baseline visits without a
    baseline value, rows the engine did not fit; side effects: assessed sessions without an
    injection, the engine's rows). ``study`` and ``outcome`` are kept for callers.
    """
    parts = [
        pd.DataFrame(
            {
                "analysis": analysis,
                "table": "sessions",
                "row": pd.Series(list(fit.excluded_rows["row"]), dtype=object),
                "reason": pd.Series(list(fit.excluded_rows["reason"]), dtype=object),
            }
        )
        for analysis, fit in (("Regrowth", regrowth), ("Side effects", side))
        if fit is not None and len(fit.excluded_rows)
    ]
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype=object) for c in ("analysis", "table", "row", "reason")}
        )
    return pd.concat(parts, ignore_index=True)


def _analysis_exclusion_table(frame: pd.DataFrame) -> Table:
    return _table(
        ["Analysis", "Table", "Row (file line)", "Reason"],
        frame[["analysis", "table", "row", "reason"]].itertuples(index=False),
        caption="Rows the models leave out, beyond those above, with the reason.",
        numeric=[False, False, True, False],
    )


# --------------------------------------------------------------------------------------------
# Section 2: regrowth by ingredient
# --------------------------------------------------------------------------------------------


def _horizon_week(data: pd.DataFrame) -> float:
    """The last scheduled post-baseline week: the highest median week of a visit."""
    weeks = data.groupby("visit")["week"].median() if "visit" in data else data["week"]
    return round(float(weeks.max()), 1)


def signed(value: Any, digits: int = 3) -> str:
    """A number with its sign (``+1.21``, ``−0.104``)."""
    text = num(value, digits)
    return text if text.startswith(("−", "–")) or text == "0" else "+" + text


def unit_of(outcome: str) -> str:
    """Unit of an outcome column (``""`` when unknown)."""
    return OUTCOME_UNITS.get(outcome, "")


def _effect_sentences(effects: pd.DataFrame, outcome: str, horizon: float) -> list[str]:
    unit = f" {unit_of(outcome)}" if unit_of(outcome) else ""
    return [
        f"{r['ingredient']}: {signed(r['effect'])}{unit} per week over the common trend (95 % "
        f"CI {interval(r['ci_lower'], r['ci_upper'])}; Holm-adjusted p "
        f"{pvalue(r['p_adjusted'])}), about {signed(r['effect'] * horizon, 2)}{unit} over "
        f"{horizon:g} weeks."
        for r in effects.to_dict("records")
    ]


def _regrowth_effect_table(effects: pd.DataFrame, horizon: float) -> Table:
    rows = [
        (
            r["ingredient"],
            num(r["effect"]),
            interval(r["ci_lower"], r["ci_upper"]),
            pvalue(r["p_value"]),
            pvalue(r["p_adjusted"]),
            num(r["effect"] * horizon),
        )
        for r in effects.to_dict("records")
    ]
    return _table(
        [
            "Ingredient",
            "Extra change per week",
            "95 % CI",
            "p",
            "Holm-adjusted p",
            f"Extra change over {horizon:g} weeks",
        ],
        rows,
        caption="Effect of each ingredient: the extra change per week in people whose cocktail "
        "contains it, over the change common to every cocktail (the placebo trend).",
        numeric=[False, True, True, True, True, True],
    )


def fixed_effects_table(model: Any, caption: str) -> Table:
    """A MixedResults' fixed effects, formatted (estimate, SE, df, p, 95 % CI)."""
    fe = model.fixed_effects
    rows = [
        (
            str(term),
            num(r["estimate"]),
            num(r["std_error"]),
            num(r["df"]),
            pvalue(r["p_value"]),
            interval(r["ci_lower"], r["ci_upper"]),
        )
        for term, r in fe.iterrows()
    ]
    return _table(
        ["Term", "Estimate", "Std. error", "df", "p", "95 % CI (Wald)"],
        rows,
        caption=caption,
        numeric=[False, True, True, True, True, True],
    )


def _component_label(group: str, var1: Any, var2: Any, kind: str, family: str) -> str:
    var1 = "" if _is_missing(var1) else str(var1)
    var2 = "" if _is_missing(var2) else str(var2)
    who = "People" if group == "subject_id" else f"{group}" if group != "site" else "Sites"
    if kind == "sigma" or group == "Residual":
        return "Visit-to-visit noise (residual SD)"
    if kind == "cor":
        return f"{who}: correlation of {_term_words(var1)} and {_term_words(var2)}"
    if family == "binomial" and var1 == "Intercept":
        return f"{who}: SD of proneness to the event (log-odds scale)"
    return f"{who}: SD of {_term_words(var1)}"


def _term_words(term: str) -> str:
    return {"Intercept": "the level", "week": "the change per week"}.get(term, term)


def variance_table(model: Any, caption: str) -> Table:
    """A MixedResults' variance components in words (SD or correlation, no intervals)."""
    vc = model.variance_components
    rows = []
    for r in vc.itertuples(index=False):
        kind = "cor" if not _is_missing(r.var2) else "sigma" if r.group == "Residual" else "sd"
        rows.append(
            (_component_label(str(r.group), r.var1, r.var2, kind, model.family), num(r.sdcor))
        )
    return _table(["Component", "Estimate"], rows, caption=caption, numeric=[False, True])


def _regrowth_section(
    fit: Any, failure: Failure | None, outcome: str, log: MessageLog
) -> dict[str, Any]:
    if fit is None:
        return {"failure": failure or Failure("Regrowth model", "not fitted")}
    horizon = _horizon_week(fit.data)
    effects = fit.ingredient_effects
    model = fit.model

    def draw(ax: Axes) -> Any:
        from mesostats import plots

        return plots.forest(fit, ax=ax)

    forest = _figure(
        log,
        "Forest plot of ingredient effects",
        draw,
        size=(7.5, 0.45 * len(effects) + 1.3),
        alt="Extra change per week for each ingredient, with 95 % confidence intervals",
        caption="Each dot is an ingredient's extra change per week; the bar is its 95 % "
        "confidence interval. A bar that crosses 0 means the data cannot tell that "
        "ingredient's effect from none.",
    )
    return {
        "failure": None,
        "formula": fit.formula,
        "horizon": horizon,
        "sentences": _effect_sentences(effects, outcome, horizon),
        "effects": _regrowth_effect_table(effects, horizon),
        "forest": forest,
        "fixed": fixed_effects_table(model, "Every fixed effect of the model."),
        "variance": variance_table(model, "Variance components (SDs in outcome units)."),
        "rows": f"{model.nobs:,} post-baseline visits of {model.ngroups.get('subject_id', 0):,} "
        "people",
        "notes": list(fit.notes),
    }


# --------------------------------------------------------------------------------------------
# Section 3: side effects by ingredient
# --------------------------------------------------------------------------------------------


def _rate_table(rates: pd.DataFrame) -> Table:
    wide = rates.set_index(["level", "name", "per"])
    keys = list(dict.fromkeys(zip(rates["level"], rates["name"], strict=True)))
    level_words = {"overall": "All injections", "ingredient": "With", "cocktail": "Cocktail"}
    rows = []
    for level, name in keys:
        s = wide.loc[(level, name, "session")]
        p = wide.loc[(level, name, "person")]
        label = "All assessed sessions" if level == "overall" else f"{level_words[level]} {name}"
        rows.append(
            (
                label,
                f"{int(s['n_with_event']):,} / {int(s['n_assessed']):,}",
                f"{percent(s['rate'])} ({percent_range(s['ci_lower'], s['ci_upper'])})",
                f"{int(p['n_with_event']):,} / {int(p['n_assessed']):,}",
                f"{percent(p['rate'])} ({percent_range(p['ci_lower'], p['ci_upper'])})",
                f"{int(s['n_events']):,}",
            )
        )
    return _table(
        [
            "Group",
            "Sessions with an event",
            "Rate per session (95 % CI)",
            "People with an event",
            "Rate per person (95 % CI)",
            "Events recorded",
        ],
        rows,
        caption="Observed side effects at assessed injection sessions, with exact "
        "(Clopper–Pearson) 95 % confidence intervals.",
        numeric=[False, True, True, True, True, True],
    )


def _odds_ratio_table(fit: Any) -> Table:
    effects = fit.ingredient_effects
    gee = fit.gee.table.set_index("ingredient") if fit.gee is not None else None
    rows = []
    for r in effects.itertuples(index=False):
        if gee is not None and r.ingredient in gee.index:
            g = gee.loc[r.ingredient]
            pa = num(g["population_average_or"])
            pa_ci = interval(g["pa_ci_lower"], g["pa_ci_upper"])
        else:
            pa, pa_ci = "–", "–"
        rows.append(
            (
                r.ingredient,
                num(r.odds_ratio),
                interval(r.ci_lower, r.ci_upper),
                pvalue(r.p_value),
                pvalue(r.p_adjusted),
                pa,
                pa_ci,
            )
        )
    return _table(
        [
            "Ingredient",
            "Odds ratio (same person)",
            "95 % CI",
            "p",
            "Holm-adjusted p",
            "Population-average odds ratio (GEE)",
            "95 % CI (GEE)",
        ],
        rows,
        caption="Odds of a side effect at a session with vs without each ingredient. Above 1: "
        "more side effects with the ingredient.",
        numeric=[False, True, True, True, True, True, True],
    )


def _event_table(study: Study) -> Table:
    ae = study.adverse_events
    severity = ae["severity"].astype(str) if "severity" in ae else pd.Series("", index=ae.index)
    crosstab = pd.crosstab(ae["event"].astype(str), severity)
    levels = [c for c in ("mild", "moderate", "severe") if c in crosstab.columns]
    cross: dict[Any, Any] = crosstab.to_dict("index")
    serious = ae["serious"].fillna(False).astype(bool).groupby(ae["event"].astype(str)).sum()
    total = crosstab.sum(axis=1).sort_values(ascending=False)
    rows = [
        (
            str(event),
            num(int(n)),
            *(num(int(cross[event][c])) for c in levels),
            num(int(serious.get(event, 0))),
        )
        for event, n in total.items()
    ]
    return _table(
        ["Event", "Recorded", *levels, "Serious"],
        rows,
        caption="Every adverse event recorded, by coded term and severity.",
        numeric=[False, *([True] * (len(levels) + 2))],
    )


def _serious_table(study: Study) -> Table:
    ae = study.adverse_events
    serious = ae[ae["serious"].fillna(False).astype(bool).to_numpy(dtype=bool)]
    sessions = study.sessions.drop_duplicates(["subject_id", "visit"])
    serious = serious.merge(
        sessions[["subject_id", "visit", "day", "cocktail_id"]],
        on=["subject_id", "visit"],
        how="left",
    )
    rows = [
        (
            r["subject_id"],
            num(r["visit"]),
            num(r["day"]),
            r["cocktail_id"],
            r["event"],
            r.get("severity"),
            "yes" if bool(r.get("related", False)) else "no",
            r.get("verbatim"),
        )
        for r in serious.to_dict("records")
    ]
    return _table(
        ["Subject", "Visit", "Day", "Cocktail", "Event", "Severity", "Related", "Verbatim text"],
        rows,
        caption="Every serious adverse event, with the investigator's verbatim description.",
        numeric=[False, True, True, False, False, False, False, False],
    )


def _side_effect_section(
    study: Study,
    fit: Any,
    failure: Failure | None,
    variation: Any,
    log: MessageLog,
) -> dict[str, Any]:
    events, _ = _attempt(log, "Table of adverse events", lambda: _event_table(study))
    serious, _ = _attempt(log, "Listing of serious adverse events", lambda: _serious_table(study))
    n_serious = len(serious.rows) if serious is not None else 0
    section: dict[str, Any] = {
        "failure": failure,
        "events": events,
        "serious": serious,
        "n_serious": n_serious,
        "n_events": len(study.adverse_events),
    }
    if fit is None:
        section["failure"] = failure or Failure("Side-effect model", "not fitted")
        return section

    def draw(ax: Axes) -> Any:
        from mesostats import plots

        return plots.side_effect_rates(fit, ax=ax)

    mor = getattr(variation, "median_odds_ratio", None)
    section.update(
        {
            "formula": fit.formula,
            "method": fit.model.method,
            "rates": _rate_table(fit.rates),
            "odds_ratios": _odds_ratio_table(fit),
            "gee_explanation": fit.gee.explanation if fit.gee is not None else "",
            "mor": None
            if mor is None
            else f"{num(mor.estimate)} (95 % CI {interval(mor.ci_lower, mor.ci_upper)})",
            "figure": _figure(
                log,
                "Figure of side-effect rates",
                draw,
                size=(8.0, 3.0),
                alt="Per-session side-effect rates by ingredient and cocktail with 95 % CIs",
                caption="Share of assessed injection sessions with a side effect, with exact "
                "95 % confidence intervals.",
            ),
            "fixed": fixed_effects_table(fit.model, "Every fixed effect (log-odds scale)."),
            "notes": list(fit.notes),
        }
    )
    return section


# --------------------------------------------------------------------------------------------
# Section 4: varied results
# --------------------------------------------------------------------------------------------

#: Simulated draws of the estimates behind the responder intervals (percentile intervals of
#: a share; 1000 draws keep their Monte Carlo error well below the reported precision).
RESPONDER_DRAWS = 1000

#: Default clinically meaningful change per outcome for the responder table (outcome units).
RESPONDER_THRESHOLDS: dict[str, float] = {
    "hair_density": 10.0,
    "hair_count": 10.0,
    "terminal_density": 10.0,
    "vellus_density": 10.0,
    "shaft_diameter_um": 5.0,
    "anagen_pct": 5.0,
    "gpa_score": 1.0,
}


def components_table(variation: Any, caption: str) -> Table:
    """Variability components with their 95 % CIs, in words."""
    comp = variation.components
    family = variation.model.family
    rows = [
        (
            _component_label(str(r.group), r.var1, r.var2, str(r.kind), family),
            num(r.estimate),
            interval(r.ci_lower, r.ci_upper),
            str(r.method),
        )
        for r in comp.itertuples(index=False)
    ]
    return _table(
        ["Component", "Estimate", "95 % CI", "Interval method"],
        rows,
        caption=caption,
        numeric=[False, True, True, False],
    )


def _prediction_table(pi: pd.DataFrame, outcome: str) -> Table:
    rows = [
        (
            str(r.cocktail),
            num(r.estimate),
            interval(r.ci_lower, r.ci_upper),
            interval(r.pi_lower, r.pi_upper),
        )
        for r in pi.sort_values("cocktail").itertuples(index=False)
    ]
    return _table(
        [
            "Cocktail",
            f"Average change in {outcome}" + (f" ({unit_of(outcome)})" if unit_of(outcome) else ""),
            "95 % CI of the average",
            "95 % range for one new person",
        ],
        rows,
        caption="The average change says how the cocktail does on average; the range for one "
        "new person says what an individual patient may expect. The range is much wider "
        "because people differ.",
        numeric=[False, True, True, True],
    )


def _responder_table(resp: pd.DataFrame) -> Table:
    rows = [
        (str(r.cocktail), percent(r.share, 0), percent_range(r.ci_lower, r.ci_upper, 0))
        for r in resp.sort_values("cocktail").itertuples(index=False)
    ]
    return _table(
        ["Cocktail", "Expected share of responders", "95 % CI"],
        rows,
        caption="Expected share of people whose true change exceeds the threshold.",
        numeric=[False, True, True],
    )


def _person_flag_table(people: pd.DataFrame) -> Table:
    counts = pd.crosstab(people["cocktail"].astype(str), people["flag"].astype(str))
    order = [c for c in ("clearly responded", "uncertain", "clearly did not") if c in counts]
    order += [c for c in counts.columns if c not in order]
    rows = [
        (str(c), num(int(counts.loc[c].sum())), *(num(int(counts.loc[c, f])) for f in order))
        for c in counts.index
    ]
    return _table(
        ["Cocktail", "People", *order],
        rows,
        caption="People whose own estimated change (with its 95 % interval) is clearly above "
        "0, clearly below 0, or too uncertain to tell.",
        numeric=[False, *([True] * (len(order) + 1))],
    )


def _variability_section(
    regrowth: Any,
    reg_var: Any,
    reg_failure: Failure | None,
    side: Any,
    se_var: Any,
    se_failure: Failure | None,
    outcome: str,
    threshold: float | None,
    log: MessageLog,
) -> dict[str, Any]:
    section: dict[str, Any] = {"regrowth": None, "side_effects": None}
    if reg_var is None:
        section["regrowth_failure"] = reg_failure or Failure(
            "Varied results of regrowth", "the regrowth model could not be fitted"
        )
    else:
        section["regrowth_failure"] = None
        section["regrowth"] = _regrowth_variation(regrowth, reg_var, outcome, threshold, log)
    if se_var is None:
        section["side_effects_failure"] = se_failure or Failure(
            "Varied results of side effects", "the side-effect model could not be fitted"
        )
    else:
        section["side_effects_failure"] = None
        section["side_effects"] = _side_effect_variation(se_var, log)
    return section


def _regrowth_variation(
    fit: Any, var: Any, outcome: str, threshold: float | None, log: MessageLog
) -> dict[str, Any]:
    source = "Varied results (regrowth)"
    week = var.week
    cut = threshold if threshold is not None else RESPONDER_THRESHOLDS.get(outcome, 0.0)
    pi, pi_fail = _attempt(log, source, var.prediction_interval)
    resp, resp_fail = _attempt(log, source, lambda: var.responders(cut, n_sim=RESPONDER_DRAWS))
    people, people_fail = _attempt(log, source, lambda: var.person_effects)
    icc = var.icc

    def caterpillar(ax: Axes) -> Any:
        from mesostats import plots

        return plots.caterpillar(var, ax=ax)

    def distribution(ax: Axes) -> Any:
        from mesostats import plots

        return plots.response_distribution(var, ax=ax)

    n_people = len(people) if people is not None else 0
    return {
        "week": week,
        "week_note": var.week_note,
        "threshold": cut,
        "components": components_table(
            var,
            f"How much people (and sites) differ, in {unit_of(outcome) or outcome + ' units'}, "
            "with 95 % confidence intervals.",
        ),
        "icc": None
        if icc is None
        else f"{num(icc.estimate, 2)} (95 % CI {interval(icc.ci_lower, icc.ci_upper, 2)})",
        "prediction": _prediction_table(pi, outcome) if pi is not None else pi_fail,
        "responders": _responder_table(resp) if resp is not None else resp_fail,
        "people": _person_flag_table(people) if people is not None else people_fail,
        "caterpillar": _figure(
            log,
            "Caterpillar plot",
            caterpillar,
            size=(8.0, max(3.5, min(7.0, 0.03 * n_people + 2.0))),
            alt="Each person's estimated change with its 95 % interval, sorted",
            caption=f"Each person's own estimated change in {outcome} by week {week:g}, "
            "sorted, with its 95 % interval. Intervals that lie wholly above 0 are people who "
            "clearly improved.",
        ),
        "distribution": _figure(
            log,
            "Distribution of individual responses",
            distribution,
            size=(8.0, 3.6),
            alt="Distribution of individual responses by cocktail",
            caption=f"How true changes in {outcome} by week {week:g} are spread across people, "
            "per cocktail, as implied by the model.",
        ),
        "notes": list(var.notes),
    }


def _side_effect_variation(var: Any, log: MessageLog) -> dict[str, Any]:
    pi, pi_fail = _attempt(log, "Varied results (side effects)", var.prediction_interval)
    mor = var.median_odds_ratio
    rows = []
    if pi is not None:
        rows = [
            (
                str(r.cocktail),
                percent(r.probability),
                percent(r.marginal_probability),
                percent_range(r.pi_lower, r.pi_upper),
            )
            for r in pi.sort_values("cocktail").itertuples(index=False)
        ]
    return {
        "components": components_table(
            var, "How much people differ in their proneness to side effects (log-odds scale)."
        ),
        "mor": None
        if mor is None
        else f"{num(mor.estimate)} (95 % CI {interval(mor.ci_lower, mor.ci_upper)})",
        "prediction": _table(
            [
                "Cocktail",
                "Typical person",
                "Average over people",
                "95 % range for one new person",
            ],
            rows,
            caption="Chance of a side effect at one injection session.",
            numeric=[False, True, True, True],
        )
        if pi is not None
        else pi_fail,
        "notes": list(var.notes),
    }


# --------------------------------------------------------------------------------------------
# At a glance
# --------------------------------------------------------------------------------------------


def _glance(
    study: Study, regrowth: Any, side: Any, reg_var: Any, se_var: Any, outcome: str
) -> dict[str, Any]:
    """One table (ingredient → regrowth effect, odds ratio) and a few plain sentences."""
    unit = unit_of(outcome) or f"{outcome} units"
    growth: dict[str, str] = {}
    if regrowth is not None:
        for r in regrowth.ingredient_effects.to_dict("records"):
            growth[r["ingredient"]] = (
                f"{signed(r['effect'])} ({interval(r['ci_lower'], r['ci_upper'])})"
            )
    odds: dict[str, str] = {}
    if side is not None:
        for r in side.ingredient_effects.to_dict("records"):
            odds[r["ingredient"]] = (
                f"{num(r['odds_ratio'])} ({interval(r['ci_lower'], r['ci_upper'])})"
            )
    missing_growth = "not estimated" if regrowth is not None else "model not fitted"
    missing_odds = "not estimated" if side is not None else "model not fitted"
    rows = [
        (ing, growth.get(ing, missing_growth), odds.get(ing, missing_odds))
        for ing in study.ingredients
    ]
    sentences = []
    if reg_var is not None:
        slope = reg_var.components
        hit = slope[(slope["kind"] == "sd") & (slope["var1"] == "week")]
        if len(hit):
            h = hit.iloc[0]
            sentences.append(
                f"People differ in how fast {outcome} changes: between-person SD "
                f"{num(h['estimate'])} {unit} per week (95 % CI "
                f"{interval(h['ci_lower'], h['ci_upper'])}), so one new person's result can "
                "lie far from the average (section 4)."
            )
    if se_var is not None and se_var.median_odds_ratio is not None:
        mor = se_var.median_odds_ratio
        sentences.append(
            f"People differ in proneness to side effects: median odds ratio {num(mor.estimate)} "
            f"(95 % CI {interval(mor.ci_lower, mor.ci_upper)}) between two people on the same "
            "cocktail."
        )
    return {
        "table": _table(
            [
                "Ingredient",
                f"Regrowth: extra change per week, {unit} (95 % CI)",
                "Side effects: odds ratio (95 % CI)",
            ],
            rows,
            caption="Each ingredient's effect on regrowth (above 0: faster regrowth) and on the "
            "odds of a side effect at a session (above 1: more side effects).",
            numeric=[False, True, True],
        ),
        "sentences": sentences,
    }


# --------------------------------------------------------------------------------------------
# Section 5: methods
# --------------------------------------------------------------------------------------------


def _model_facts(label: str, fit: Any) -> dict[str, Any]:
    m = fit.model
    groups = ", ".join(f"{g}: {n:,}" for g, n in m.ngroups.items())
    return {
        "label": label,
        "facts": [
            ("Formula", fit.formula),
            ("Fitted by", m.method),
            ("Rows", f"{m.nobs:,} ({groups})"),
            ("Log-likelihood", num(m.loglik, 6)),
            ("Converged", "yes" if m.converged else "NO"),
            ("Variance on a boundary (singular)", "yes" if m.singular else "no"),
        ],
    }


def _log_model(log: MessageLog, source: str, fit: Any) -> None:
    if fit is None:
        return
    for text in fit.model.messages:
        log.add(source, "model message", text)
    if not fit.model.converged:
        log.add(
            source, "not converged", f"{source} did not converge; treat its numbers as approximate."
        )


_CONCERNS = ("converge", "boundary", "singular", "failed")


def _log_concerning_notes(log: MessageLog, source: str, notes: Iterable[str]) -> None:
    """Notes about convergence, boundaries or failures also go to the banner."""
    for text in notes:
        if any(word in text.lower() for word in _CONCERNS):
            log.add(source, "note", text)


# --------------------------------------------------------------------------------------------
# Report assembly
# --------------------------------------------------------------------------------------------


def software_versions() -> list[tuple[str, str]]:
    """(name, version) of Python and of each distribution in :data:`SOFTWARE`."""
    versions = [("python", platform.python_version())]
    for name in SOFTWARE:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return versions


def _check_inputs(study: Any, outcome: Any, seed: Any, threshold: Any) -> None:
    from mesostats.data.study import Study

    if not isinstance(study, Study):
        raise ModelSpecError(
            f"study must be a mesostats Study (from load_study, example_study or "
            f"simulate_study), got {type(study).__name__}."
        )
    if not isinstance(outcome, str) or outcome not in study.outcomes:
        raise ModelSpecError(
            f"outcome {outcome!r} is not an outcome column of this study's sessions table; "
            f"available: {', '.join(study.outcomes) or 'none'}."
        )
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ModelSpecError(f"seed must be a whole number ≥ 0, got {seed!r}.")
    if threshold is not None and (
        isinstance(threshold, (bool, np.bool_))
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not math.isfinite(float(threshold))
    ):
        raise ModelSpecError(
            f"threshold must be a finite number (a clinically meaningful change in outcome "
            f"units, e.g. 10) or None, got {threshold!r}."
        )


def _fit_everything(study: Study, outcome: str, seed: int, log: MessageLog) -> dict[str, Any]:
    """Fit the regrowth and side-effect models and their "varied results" (each guarded)."""
    from mesostats.outcomes import fit_regrowth, fit_side_effects
    from mesostats.variability import variability

    regrowth, reg_fail = _attempt(log, "Regrowth model", lambda: fit_regrowth(study, outcome))
    _log_model(log, "Regrowth model", regrowth)
    side, se_fail = _attempt(
        log, "Side-effect model", lambda: fit_side_effects(study, nagq=SIDE_EFFECT_NAGQ)
    )
    _log_model(log, "Side-effect model", side)
    reg_var, reg_var_fail = (None, reg_fail)
    if regrowth is not None:
        reg_var, reg_var_fail = _attempt(
            log, "Varied results (regrowth)", lambda: variability(regrowth, seed=seed)
        )
        if reg_var is not None:
            _log_concerning_notes(log, "Varied results (regrowth)", reg_var.notes)
    se_var, se_var_fail = (None, se_fail)
    if side is not None:
        se_var, se_var_fail = _attempt(
            log, "Varied results (side effects)", lambda: variability(side, seed=seed)
        )
        if se_var is not None:
            _log_concerning_notes(log, "Varied results (side effects)", se_var.notes)
    return {
        "regrowth": (regrowth, reg_fail),
        "side": (side, se_fail),
        "reg_var": (reg_var, reg_var_fail),
        "se_var": (se_var, se_var_fail),
    }


def _methods_section(fits: dict[str, Any]) -> dict[str, Any]:
    models = []
    regrowth, side = fits["regrowth"][0], fits["side"][0]
    if regrowth is not None:
        models.append(_model_facts("Regrowth: linear mixed model", regrowth))
    if side is not None:
        models.append(_model_facts("Side effects: binomial mixed model", side))
    return {"models": models, "software": software_versions(), "nagq": SIDE_EFFECT_NAGQ}


@dataclass(frozen=True)
class BuiltReport:
    """A rendered report: the HTML document and every warning or message it shows."""

    html: str
    messages: tuple[Message, ...]


def build_report(
    study: Study,
    *,
    outcome: str = "hair_density",
    seed: int = 0,
    threshold: float | None = None,
) -> BuiltReport:
    """Compute every section and render the report (nothing is written).

    Parameters are those of :func:`render_report`; the result also carries the messages of
    the banner (the command line prints them on stderr).
    """
    import jinja2

    _check_inputs(study, outcome, seed, threshold)
    log = MessageLog()
    data = _data_section(study, outcome, log)
    fits = _fit_everything(study, outcome, int(seed), log)
    regrowth, reg_fail = fits["regrowth"]
    side, se_fail = fits["side"]
    reg_var, reg_var_fail = fits["reg_var"]
    se_var, se_var_fail = fits["se_var"]
    left_out, left_out_fail = _attempt(
        log, "Data summary", lambda: analysis_exclusions(study, outcome, regrowth, side)
    )
    data["model_exclusions"] = (
        _analysis_exclusion_table(left_out) if left_out is not None else left_out_fail
    )
    data["n_model_exclusions"] = len(left_out) if left_out is not None else 0
    context: dict[str, Any] = {
        "title": "Mesotherapy study report",
        "source": study.source or "tables given in memory",
        "outcome": outcome,
        "unit": unit_of(outcome) or f"{outcome} units",
        "seed": int(seed),
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "sections": SECTION_TITLES,
        "data": data,
        "regrowth": _regrowth_section(regrowth, reg_fail, outcome, log),
        "side_effects": _side_effect_section(study, side, se_fail, se_var, log),
        "variability": _variability_section(
            regrowth, reg_var, reg_var_fail, side, se_var, se_var_fail, outcome, threshold, log
        ),
        "methods": _methods_section(fits),
        "glance": _glance(study, regrowth, side, reg_var, se_var, outcome),
    }
    context["messages"] = log.items
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mesostats.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    html = env.get_template("report.html.j2").render(context)
    return BuiltReport(html=html, messages=tuple(log.items))


def render_report(
    study: Study,
    *,
    outcome: str = "hair_density",
    seed: int = 0,
    threshold: float | None = None,
) -> str:
    """The report of :func:`report` as an HTML string (nothing is written).

    Parameters
    ----------
    study : Study
    outcome : str, default "hair_density"
        Outcome column for the regrowth and "varied results" sections.
    seed : int, default 0
        Seed of every random step (reported in the methods section).
    threshold : float, optional
        Clinically meaningful change (outcome units) defining a responder; default from
        :data:`RESPONDER_THRESHOLDS` (e.g. 10 hairs/cm² for hair density), else 0.

    Returns
    -------
    str
        A complete HTML document.
    """
    return build_report(study, outcome=outcome, seed=seed, threshold=threshold).html


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and
    :func:`os.replace`: readers see the old file or the whole new one, never a partial file,
    and a failure leaves no temporary file behind. The file gets the permissions a plain
    ``open(path, "w")`` would give (0666 less the umask), not mkstemp's private 0600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def report(
    study: Study,
    path: str | os.PathLike[str],
    *,
    outcome: str = "hair_density",
    seed: int = 0,
    threshold: float | None = None,
) -> Path:
    """Write one self-contained HTML report of a study.

    Parameters
    ----------
    study : Study
        From :func:`mesostats.load_study`, :func:`mesostats.example_study` or
        :func:`mesostats.simulate_study`.
    path : str or path-like
        The HTML file to write; its folder must exist. An existing file is replaced
        atomically (only once the whole report is ready).
    outcome : str, default "hair_density"
        Outcome column for regrowth and "varied results".
    seed : int, default 0
        Seed of every random step; reported in the methods section.
    threshold : float, optional
        Clinically meaningful change (outcome units) that defines a responder; default
        :data:`RESPONDER_THRESHOLDS` of the outcome (10 hairs/cm² for hair density), else 0.

    Returns
    -------
    Path
        The absolute path of the written report.

    Raises
    ------
    ModelSpecError
        ``study`` is not a Study, or ``outcome`` is not one of its outcome columns.
    FileNotFoundError, IsADirectoryError, PermissionError
        The folder of ``path`` does not exist, ``path`` is a folder, or it cannot be written.

    Notes
    -----
    Sections: the data (with every row set aside and its reason), regrowth by ingredient
    (:func:`mesostats.fit_regrowth`), side effects by ingredient
    (:func:`mesostats.fit_side_effects` with ``nagq=25``, GEE population-average odds
    ratios, serious adverse events verbatim), "varied results"
    (:func:`mesostats.variability` with profile-likelihood CIs) and methods (formulas,
    software versions, seed, every warning). A model that cannot be fitted shows its reason
    in its section; the rest of the report is still written. Warnings raised while fitting
    are captured into the report (a banner at the top and the methods section), not
    re-issued. The file uses no JavaScript and no external resource; figures are embedded
    PNGs.

    Examples
    --------
    >>> import mesostats as ms
    >>> ms.report(ms.example_study(), "report.html")  # doctest: +SKIP
    PosixPath('/…/report.html')
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(
            f"{str(target)!r} is a folder; give a file name such as report.html."
        )
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"folder {str(folder)!r} of the report does not exist; create it first or choose "
            "another path."
        )
    text = render_report(study, outcome=outcome, seed=seed, threshold=threshold)
    write_atomic(target, text)
    return target.resolve()
