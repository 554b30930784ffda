"""Tests of mesostats.plots: every figure renders (Agg), returns its documented type, never
calls plt.show, and gives an ingredient / a cocktail the same colour in every figure."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats import plots
from mesostats.exceptions import ModelSpecError

REF = Path(__file__).parent / "reference"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_show_and_close(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("plots must never call plt.show()")

    monkeypatch.setattr(plt, "show", refuse)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def study() -> ms.Study:
    return ms.simulate_study(60, 6, seed=5)


@pytest.fixture(scope="module")
def regrowth(study):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a site SD at 0 is not under test here
        return ms.fit_regrowth(study)


@pytest.fixture(scope="module")
def side_effects(study):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ms.fit_side_effects(study)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    data = buffer.getvalue()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    return data


def _labelled_colours(ax: Axes) -> dict[str, tuple[float, float, float]]:
    """Colour of every labelled artist: error bars, lines and filled areas."""
    out: dict[str, tuple[float, float, float]] = {}
    for container in ax.containers:
        label = container.get_label()
        if label and not label.startswith("_"):
            out[label] = to_rgb(container.lines[0].get_color())
    for line in ax.get_lines():
        label = line.get_label()
        if label and not label.startswith("_"):
            out[label] = to_rgb(line.get_color())
    for coll in ax.collections:
        label = coll.get_label()
        if label and not label.startswith("_"):
            out[label] = to_rgb(coll.get_facecolor()[0])
    return out


# ------------------------------------------------------------------------------ palette
def test_palette_is_keyed_by_sorted_names():
    full = plots.palette(["minoxidil", "biotin", "dutasteride"], kind="ingredient")
    base = sns.color_palette("colorblind")
    assert list(full) == ["biotin", "dutasteride", "minoxidil"]
    assert_allclose(full["dutasteride"], base[1])
    assert plots.palette(["dutasteride", "biotin"], kind="ingredient")["biotin"] == full["biotin"]


def test_palette_with_many_names_gives_distinct_colours():
    names = [f"c{i:02d}" for i in range(14)]
    colours = plots.palette(names)
    assert len(set(colours.values())) == 14


def test_palette_unknown_kind_raises():
    with pytest.raises(ModelSpecError, match="kind must be 'cocktail' or 'ingredient'"):
        plots.palette(["a"], kind="site")


# ------------------------------------------------------------------------------ rendering
def test_spaghetti_facets_render_and_return_facetgrid(study):
    grid = plots.spaghetti(study)
    assert isinstance(grid, sns.FacetGrid)
    assert len(grid.axes.flat) == study.cocktails["cocktail_id"].nunique()
    _png(grid.figure)


def test_spaghetti_on_given_axes_returns_it(regrowth):
    fig, ax = plt.subplots()
    out = plots.spaghetti(regrowth, ax=ax)
    assert out is ax
    assert {"A", "B", "C", "P"} <= set(_labelled_colours(ax))
    _png(fig)


def test_caterpillar_renders_for_each_input(regrowth, side_effects):
    for source, which in (
        (regrowth, None),
        (regrowth, "slope"),
        (side_effects, "probability"),
        (regrowth.variability, "intercept"),
    ):
        ax = plots.caterpillar(source, which=which)
        assert isinstance(ax, Axes)
        _png(ax.figure)


def test_caterpillar_sorts_people_by_estimate(regrowth):
    ax = plots.caterpillar(regrowth)
    xs = np.array([c.lines[0].get_xdata()[0] for c in ax.containers])
    ys = np.array([c.lines[0].get_ydata()[0] for c in ax.containers])
    assert np.all(np.diff(xs[np.argsort(ys)]) >= 0)
    assert len(xs) == len(regrowth.variability.person_effects)


def test_caterpillar_bare_model():
    data = pd.read_csv(REF / "sleepstudy.csv", dtype={"Subject": str})
    fit = ms.fit_lmm("Reaction ~ Days + (Days | Subject)", data)
    ax = plots.caterpillar(fit, which="Days")
    assert "Days | Subject" in ax.get_xlabel()
    _png(ax.figure)
    with pytest.raises(ModelSpecError, match="Unknown group 'Site'"):
        plots.caterpillar(fit, group="Site")


def test_forest_regrowth_and_side_effects(regrowth, side_effects):
    ax = plots.forest(regrowth)
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(regrowth.ingredients)
    _png(ax.figure)
    ax = plots.forest(side_effects)
    assert ax.get_xscale() == "log"
    null = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert null == [1.0]
    _png(ax.figure)


def test_response_distribution_regrowth_and_side_effects(regrowth, side_effects):
    ax = plots.response_distribution(regrowth, week=12.0)
    assert "week 12" in ax.get_ylabel()
    n_people = len(regrowth.variability.person_effects)
    points = sum(len(c.get_offsets()) for c in ax.collections if c.get_label().startswith("_"))
    assert points == n_people
    _png(ax.figure)
    ax = plots.response_distribution(side_effects)
    assert ax.get_ylim()[0] == 0.0
    _png(ax.figure)


def test_side_effect_rates_from_results_and_study(side_effects, study):
    ax = plots.side_effect_rates(side_effects)
    rates = side_effects.rates
    ing = rates[(rates["level"] == "ingredient") & (rates["per"] == "session")]
    xs = [c.lines[0].get_xdata()[0] for c in ax.containers]
    assert_allclose(xs, 100 * ing["rate"].to_numpy())
    _png(ax.figure)
    fig, given = plt.subplots()
    out = plots.side_effect_rates(study, per="person", event="pain", ax=given)
    assert out is given and "pain" in out.get_xlabel()
    _png(fig)


# ------------------------------------------------------------------------------ colours
def test_ingredient_colour_identical_across_figures(regrowth, side_effects):
    forest_colours = _labelled_colours(plots.forest(regrowth))
    rate_colours = _labelled_colours(plots.side_effect_rates(side_effects))
    assert set(forest_colours) == set(regrowth.ingredients)
    for name in regrowth.ingredients:
        assert forest_colours[name] == rate_colours[name]
    expected = plots.ingredient_palette(regrowth.study)
    assert_allclose(forest_colours["minoxidil"], expected["minoxidil"])


def test_cocktail_colour_identical_across_figures(regrowth):
    grid = plots.spaghetti(regrowth)
    spaghetti_colours: dict[str, tuple[float, float, float]] = {}
    for ax in grid.axes.flat:
        spaghetti_colours.update(_labelled_colours(ax))
    violin_colours = _labelled_colours(plots.response_distribution(regrowth))
    caterpillar_colours = _labelled_colours(plots.caterpillar(regrowth))
    for name in ("A", "B", "C", "P"):
        assert spaghetti_colours[name] == violin_colours[name] == caterpillar_colours[name]


# ------------------------------------------------------------------------------ errors
def test_wrong_inputs_raise(study, regrowth, side_effects):
    with pytest.raises(ModelSpecError, match=r"spaghetti\(\) takes a Study or a RegrowthResults"):
        plots.spaghetti(side_effects)
    with pytest.raises(ModelSpecError, match=r"forest\(\) takes a RegrowthResults"):
        plots.forest(study)
    with pytest.raises(ModelSpecError, match=r"response_distribution\(\) takes"):
        plots.response_distribution(study)
    with pytest.raises(ModelSpecError, match=r"side_effect_rates\(\) takes"):
        plots.side_effect_rates(regrowth)
    with pytest.raises(ModelSpecError, match=r"caterpillar\(\) takes"):
        plots.caterpillar(study)


def test_bad_options_raise(regrowth, side_effects):
    with pytest.raises(ModelSpecError, match="which must be one of change, intercept, slope"):
        plots.caterpillar(regrowth, which="probability")
    with pytest.raises(ModelSpecError, match="per must be 'session' or 'person'"):
        plots.side_effect_rates(side_effects, per="visit")
    with pytest.raises(ModelSpecError, match="event applies to a Study input"):
        plots.side_effect_rates(side_effects, event="pain")
    with pytest.raises(ModelSpecError, match="ax must be a matplotlib Axes"):
        plots.forest(regrowth, ax="left")
