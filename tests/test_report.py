"""Tests of the HTML report (mesostats.reporting): self-contained and script-free, every section,
every exclusion and serious adverse event, the numbers of the fits, the warning banner,
escaping of hostile study values, sections that cannot be fitted, and atomic writing."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats import _display
from mesostats.reporting import build, write
from mesostats.reporting.build import SECTION_TITLES, render_report

# --- a small HTML inspector --------------------------------------------------------------------


class Page(HTMLParser):
    """Tags, attributes, text and tables (caption → rows of cell texts) of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.chunks: list[str] = []
        self.tables: list[dict] = []
        self.headings: list[str] = []
        self._table_stack: list[dict] = []
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self._heading: list[str] | None = None
        self.feed(text)
        self.close()

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name, value or "") for name, value in attrs)
        if tag == "table":
            self._table_stack.append({"caption": "", "header": [], "rows": []})
        elif tag == "tr" and self._table_stack:
            self._table_stack[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "caption":
            self._caption = []
        elif tag in ("h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag == "table" and self._table_stack:
            table = self._table_stack.pop()
            table["header"], table["rows"] = table["rows"][0], table["rows"][1:]
            self.tables.append(table)
        elif tag in ("td", "th") and self._cell is not None and self._table_stack:
            self._table_stack[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "caption" and self._caption is not None and self._table_stack:
            self._table_stack[-1]["caption"] = "".join(self._caption).strip()
            self._caption = None
        elif tag in ("h2", "h3") and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data):
        self.chunks.append(data)
        for buffer in (self._cell, self._caption, self._heading):
            if buffer is not None:
                buffer.append(data)

    def table(self, caption_start: str) -> dict:
        hits = [t for t in self.tables if t["caption"].startswith(caption_start)]
        assert len(hits) == 1, f"{len(hits)} tables captioned {caption_start!r}"
        return hits[0]


def assert_static_and_self_contained(html: str) -> Page:
    """No script, no event handler, no external reference of any kind."""
    page = Page(html)
    for tag in ("script", "link", "iframe", "object", "embed", "base", "form", "frame"):
        assert tag not in page.tags, f"<{tag}> in the report"
    handlers = [(t, n) for t, n, _ in page.attrs if n.lower().startswith("on")]
    assert handlers == []
    for tag, name, value in page.attrs:
        if name == "src":
            assert value.startswith("data:image/png;base64,"), (tag, value[:60])
        if name == "href":
            assert value.startswith("#"), (tag, value)
    lowered = html.lower()
    for needle in ("http://", "https://", "url(", "@import", "javascript:", "<script"):
        assert needle not in lowered, needle
    return page


def number(cell: str) -> float:
    return float(cell.replace("−", "-").replace(",", ""))


# --- the example study's report ------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> ms.Study:
    return ms.example_study()


@pytest.fixture(scope="module")
def example_report(example) -> tuple[str, float]:
    start = time.process_time()
    html = render_report(example)
    return html, time.process_time() - start


@pytest.fixture(scope="module")
def example_page(example_report) -> Page:
    return assert_static_and_self_contained(example_report[0])


def test_example_report_is_static_and_self_contained(example_page):
    assert example_page.tags.count("img") >= 5  # every figure embedded as a PNG data URI


def test_example_report_builds_within_its_cpu_budget(example_report):
    """The example's report takes ~5 s of CPU here; wall time depends on the machine's load."""
    assert example_report[1] < 10.0


def test_example_report_has_every_section_heading(example_page):
    for heading in SECTION_TITLES.values():
        assert heading in example_page.headings


def test_example_report_computes_every_step(example_page, example_report):
    assert "could not be computed" not in example_page.text
    assert "bug in mesostats" not in example_report[0]


def test_example_report_lists_every_exclusion_with_its_reason(example_page, example):
    listed = example_page.table("Every row set aside")["rows"]
    expected = [
        [str(t), str(r), str(reason)]
        for t, r, reason in example.exclusions[["table", "row", "reason"]].itertuples(index=False)
    ]
    assert len(expected) == 601
    assert listed == expected


def test_example_report_lists_serious_adverse_events_verbatim(example_page, example):
    ae = example.adverse_events
    serious = ae[ae["serious"].to_numpy(dtype=bool)]
    rows = example_page.table("Every serious adverse event")["rows"]
    assert [r[0] for r in rows] == list(serious["subject_id"])
    assert [r[4] for r in rows] == list(serious["event"])
    assert [r[-1] for r in rows] == list(serious["verbatim"])
    assert "itchy papules" in [r[-1] for r in rows]


def test_example_report_regrowth_table_matches_fit_regrowth(example_page, example):
    fit = ms.fit_regrowth(example)
    table = example_page.table("Effect of each ingredient")
    shown = {r[0]: number(r[1]) for r in table["rows"]}
    effects = fit.ingredient_effects.set_index("ingredient")["effect"]
    assert sorted(shown) == sorted(effects.index)
    for ingredient, value in shown.items():
        assert_allclose(value, effects[ingredient], rtol=5e-3)


def test_example_report_median_odds_ratio_matches_side_effect_sd(example_page, example):
    """MOR = exp(√2 · σ · Φ⁻¹(0.75)) of the between-person SD (Merlo et al. 2006)."""
    fit = ms.fit_side_effects(example, nagq=build.SIDE_EFFECT_NAGQ)
    vc = fit.model.variance_components
    sd = float(vc.loc[vc["var2"].isna(), "sdcor"].iloc[0])
    expected = math.exp(math.sqrt(2.0) * sd * 0.6744897501960817)
    text = example_page.text
    start = text.index("Median odds ratio: ") + len("Median odds ratio: ")
    assert_allclose(number(text[start:].split(" ")[0]), expected, rtol=5e-3)
    odds = example_page.table("Odds of a side effect")
    assert odds["header"][5] == "Population-average odds ratio (GEE)"
    assert "Population-average odds ratios (GEE) compare everyone" in text


def test_example_report_methods_list_versions_seed_and_engine_messages(example_page, example):
    from importlib import metadata

    software = dict(example_page.table("Software used")["rows"])
    for name in ("mesostats", "numpy", "scipy", "pandas", "statsmodels", "formulaic"):
        assert software[name] == metadata.version(name)
    text = example_page.text
    assert "Random seed: 0." in " ".join(text.split())
    # the example's fits converge off every boundary: the banner says so (the banner with
    # messages is tested on the singular hostile study below)
    assert ms.fit_regrowth(example).model.messages == []
    assert "No warnings: every model converged" in text


# --- a small study with hostile values whose fits are singular -------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    '" onmouseover="x',
    "<img src=x onerror=y>",
    "&amp",
    "&#x3c;",
]


def _tables(study: ms.Study) -> dict[str, pd.DataFrame]:
    return {
        k: getattr(study, k).reset_index(drop=True)
        for k in ("subjects", "cocktails", "sessions", "adverse_events")
    }


@pytest.fixture(scope="module")
def hostile_study() -> ms.Study:
    """40 people who do not differ at all (person-level SDs on their boundary: singular fits),
    with hostile text in a subject id, a site name and verbatim terms of serious events."""
    base = ms.simulate_study(40, 6, seed=3, effects={"slope_sd": 0.0, "event_sd": 0.0})
    tables = _tables(base)
    subject = "".join(HOSTILE)
    old = tables["subjects"]["subject_id"].iloc[0]
    for name in ("subjects", "sessions", "adverse_events"):
        tables[name]["subject_id"] = tables[name]["subject_id"].replace(old, subject)
    site = tables["subjects"]["site"].iloc[0]
    tables["subjects"]["site"] = tables["subjects"]["site"].replace(site, HOSTILE[2] + HOSTILE[3])
    sessions = tables["sessions"]
    ae = tables["adverse_events"]
    ae.loc[:3, "serious"] = True
    ae.loc[:3, "verbatim"] = HOSTILE[:4]
    ae.loc[0, "subject_id"] = subject
    ae.loc[0, "visit"] = int(sessions.loc[sessions["subject_id"] == subject, "visit"].iloc[1])
    return ms.load_study(tables)


@pytest.fixture(scope="module")
def hostile_html(hostile_study) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the report captures warnings; none escapes
        return render_report(hostile_study)


def test_singular_fit_shows_every_warning_in_the_banner(hostile_study, hostile_html):
    with pytest.warns(ms.SingularFitWarning, match="on the boundary") as record:
        fit = ms.fit_regrowth(hostile_study)
    assert fit.model.singular
    expected = [str(w.message) for w in record if issubclass(w.category, ms.SingularFitWarning)]
    assert expected
    page = assert_static_and_self_contained(hostile_html)
    start = hostile_html.index('<aside class="banner"')
    banner_text = Page(hostile_html[start : hostile_html.index("</aside>", start)]).text
    assert "SingularFitWarning" in banner_text
    for message in expected:
        assert message in banner_text
        assert page.text.count(message) >= 2  # banner and methods table


def test_hostile_values_are_escaped_never_markup(hostile_html):
    page = assert_static_and_self_contained(hostile_html)
    assert "could not be computed" not in page.text
    text = page.text
    for value in HOSTILE:
        assert value in text  # shown as text, exactly
    assert "".join(HOSTILE) in text  # the subject id, in the serious adverse events
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_html
    assert "&amp;amp" in hostile_html and "&amp;#x3c;" in hostile_html
    rows = page.table("Every serious adverse event")["rows"]
    assert [r[-1] for r in rows][:4] == HOSTILE[:4]
    assert HOSTILE[2] + HOSTILE[3] in [r[0] for r in page.table("People per site")["rows"]]


def test_hostile_ingredient_name_shows_in_the_failure_reason_escaped(hostile_study):
    """Ingredient names pass a schema pattern when loaded; a Study built around it still
    renders safely, with the model failure explained."""
    evil = '<b>minox</b>" onload="z'
    cocktails = hostile_study.cocktails.assign(
        ingredient=hostile_study.cocktails["ingredient"].replace("minoxidil", evil)
    )
    study = dataclasses.replace(
        hostile_study,
        cocktails=cocktails,
        ingredients=sorted([i for i in hostile_study.ingredients if i != "minoxidil"] + [evil]),
    )
    html = render_report(study)
    page = assert_static_and_self_contained(html)
    assert "b" not in page.tags
    assert evil in page.text
    assert "&lt;b&gt;minox&lt;/b&gt;&#34; onload=&#34;z" in html
    assert "Regrowth model: could not be computed." in " ".join(page.text.split())


# --- steps that cannot be computed -------------------------------------------------------------


NO_BASELINE = "MIL-002"


@pytest.fixture(scope="module")
def unassessed_study() -> ms.Study:
    """No session has its reactions assessed: there is no side-effect model to fit. And one
    person's baseline hair density is missing, so the regrowth model leaves them out."""
    tables = _tables(ms.simulate_study(40, 6, seed=3))
    sessions = tables["sessions"]
    sessions["reactions_assessed"] = False
    first = sessions.index[(sessions["subject_id"] == NO_BASELINE) & (sessions["visit"] == 1)]
    sessions.loc[first, "hair_density"] = np.nan
    return ms.load_study(tables)


@pytest.fixture(scope="module")
def failing_html(unassessed_study) -> str:
    """The report of that study, with the forest plot broken on purpose."""
    from mesostats import plots

    def broken(*args, **kwargs):
        raise RuntimeError("the forest plot broke")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "forest", broken)
        return render_report(unassessed_study)


def test_side_effect_section_shows_why_it_cannot_be_fitted(unassessed_study, failing_html):
    with pytest.raises(ms.ModelSpecError, match="No session has reactions_assessed") as err:
        ms.fit_side_effects(unassessed_study, nagq=build.SIDE_EFFECT_NAGQ)
    page = assert_static_and_self_contained(failing_html)
    text = page.text
    assert f"Side-effect model: could not be computed. {err.value}" in " ".join(text.split())
    assert text.count(str(err.value)) >= 3  # section 3, the banner and the methods table
    assert page.table("Effect of each ingredient")["rows"]  # regrowth still reported


def test_rows_left_out_by_a_model_are_listed_with_their_reason(unassessed_study, failing_html):
    table = unassessed_study.outcome_table("hair_density")
    expected = table.index[(table["subject_id"] == NO_BASELINE) & (table["week"] > 0)]
    assert len(expected) >= 3
    with pytest.warns(ms.ExclusionWarning, match=rf"{len(expected)} post-baseline visits were not"):
        ms.fit_regrowth(unassessed_study)
    rows = Page(failing_html).table("Rows the models leave out")["rows"]
    assert [r[2] for r in rows] == [str(i) for i in expected]
    assert {(r[0], r[3]) for r in rows} == {
        ("Regrowth", "no baseline hair_density: the baseline-adjusted model needs it")
    }
    assert "ExclusionWarning" in failing_html  # and the warning is in the banner


def test_a_figure_that_fails_is_explained_and_the_rest_is_written(failing_html):
    text = " ".join(Page(failing_html).text.split())
    assert (
        "Forest plot of ingredient effects: could not be computed. RuntimeError: the forest "
        "plot broke" in text
    )
    assert "bug in mesostats" in text
    assert SECTION_TITLES["methods"] in text
    assert Page(failing_html).tags.count("img") >= 3  # the other figures are there


# --- writing -----------------------------------------------------------------------------------


def test_ms_report_is_callable_in_every_import_order(tmp_path, monkeypatch, example):
    """Importing the reporting subpackage leaves ``mesostats.report`` the function."""
    import mesostats
    import mesostats.reporting

    monkeypatch.setattr(build, "render_report", lambda *a, **k: "<p>ok</p>")
    assert mesostats.report(example, tmp_path / "a.html").read_text() == "<p>ok</p>"
    assert mesostats.report.__name__ == "report"


def test_report_writes_one_file_and_returns_its_path(tmp_path, monkeypatch, example):
    monkeypatch.setattr(build, "render_report", lambda *a, **k: "<!DOCTYPE html><p>é</p>")
    out = ms.report(example, tmp_path / "r.html")
    assert out == (tmp_path / "r.html").resolve()
    assert out.read_text(encoding="utf-8") == "<!DOCTYPE html><p>é</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_failed_render_leaves_no_file(tmp_path, monkeypatch, example):
    def fail(*args, **kwargs):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(build, "render_report", fail)
    with pytest.raises(RuntimeError, match="rendering failed"):
        ms.report(example, tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_the_old_report_and_leaves_no_temporary_file(
    tmp_path, monkeypatch, example
):
    target = tmp_path / "r.html"
    target.write_text("old report", encoding="utf-8")
    monkeypatch.setattr(build, "render_report", lambda *a, **k: "new report")

    def no_replace(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(build.os, "replace", no_replace)
    with pytest.raises(PermissionError, match="Permission denied"):
        ms.report(example, target)
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert target.read_text(encoding="utf-8") == "old report"


def test_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(fd, *args, **kwargs):
        raise KeyboardInterrupt("interrupted while writing")

    monkeypatch.setattr(write.os, "fdopen", interrupted)
    with pytest.raises(KeyboardInterrupt, match="interrupted while writing"):
        write.write_atomic(tmp_path / "r.html", "text")
    assert list(tmp_path.iterdir()) == []


def test_report_into_missing_folder_raises_before_any_work(tmp_path, example):
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        ms.report(example, tmp_path / "missing" / "r.html")


def test_report_onto_a_folder_raises(tmp_path, example):
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        ms.report(example, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outcome": "hair_colour"}, "'hair_colour' is not an outcome column.*available: hair"),
        ({"seed": -1}, "seed must be a whole number ≥ 0, got -1"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"threshold": "10"}, "threshold must be a finite number"),
    ],
)
def test_bad_options_raise_model_spec_errors(tmp_path, example, kwargs, message):
    with pytest.raises(ms.ModelSpecError, match=message):
        ms.report(example, tmp_path / "r.html", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_not_a_study_raises(tmp_path):
    with pytest.raises(ms.ModelSpecError, match=r"study must be a mesostats Study.*got dict"):
        ms.report({"subjects": pd.DataFrame()}, tmp_path / "r.html")


# --- formatting and packaging --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.207315, "1.21"),
        (-0.103507, "−0.104"),
        (124.3, "124"),
        (0.0464, "0.0464"),
        (12345.6, "12,346"),
        (3, "3"),
        (float("nan"), "–"),
        (None, "–"),
        (2.5e-7, "2.50e−07"),
        (0.0, "0"),
    ],
)
def test_num_formats_like_a_table_in_a_paper(value, text):
    assert _display.format_number(value) == text


def test_pvalue_and_percent_formats():
    assert _display.format_p(0.0004) == "<0.001"
    assert _display.format_p(0.0456) == "0.046"
    assert _display.format_percent_range(0.18, 0.229) == "18.0–22.9 %"
    assert _display.format_signed(1.5) == "+1.50"
    assert _display.format_signed(-1.5) == "−1.50"


def test_templates_ship_inside_the_package():
    from importlib import resources

    folder = resources.files("mesostats.reporting") / "templates"
    names = {p.name for p in folder.iterdir()}
    assert {
        "report.html.j2",
        "macros.html.j2",
        "style.html.j2",
        "section_data.html.j2",
        "section_regrowth.html.j2",
        "section_side_effects.html.j2",
        "section_variability.html.j2",
        "section_methods.html.j2",
    } <= names


def test_every_template_autoescapes_and_marks_nothing_safe():
    from importlib import resources

    folder = resources.files("mesostats.reporting") / "templates"
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", ""), path.name
        assert "autoescape false" not in text, path.name
        assert "Markup" not in text, path.name
    env_source = Path(build.__file__).read_text(encoding="utf-8")
    assert "autoescape=True" in env_source
    assert "Markup(" not in env_source


def test_report_file_gets_ordinary_permissions_not_private_ones(tmp_path):
    """mkstemp creates 0600 files; a report others should read gets 0666 less the umask."""
    import os

    old = os.umask(0o022)
    try:
        write.write_atomic(tmp_path / "r.html", "text")
    finally:
        os.umask(old)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o644


def test_writing_a_report_leaves_the_process_umask_alone(tmp_path, monkeypatch):
    """The umask is process-wide: setting it, even briefly, races with other threads that
    create files. The report still gets 0666 less the umask, applied by the OS."""
    import os

    current = os.umask(0o022)
    os.umask(current)

    def no_umask(mask):
        raise AssertionError(f"os.umask({mask:#o}) called while writing a report")

    monkeypatch.setattr(write.os, "umask", no_umask)
    write.write_atomic(tmp_path / "r.html", "text")
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == "text"
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o666 & ~current
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


# --- the study's own schema ----------------------------------------------------------------


def test_units_and_responder_threshold_come_from_the_studys_schema(tmp_path, example) -> None:
    """A study validated against its own schema is described in that schema's unit, and its
    responder threshold is the schema's (nothing hard-coded in the report)."""
    import dataclasses
    import json
    import shutil

    from mesostats.data.schema import load_schema, schema_dir
    from mesostats.reporting.vocabulary import responder_threshold, unit_of

    folder = tmp_path / "schema"
    shutil.copytree(schema_dir(), folder)
    path = folder / "sessions.schema.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    for spec in raw["fields"]:
        if spec["name"] == "hair_density":
            spec["x-mesostats-unit"] = "hairs per square cm (site protocol)"
            spec["x-mesostats-responder-threshold"] = 7
    path.write_text(json.dumps(raw), encoding="utf-8")
    custom = load_schema(folder)
    assert unit_of("hair_density", custom) == "hairs per square cm (site protocol)"
    assert responder_threshold("hair_density", custom) == 7.0
    assert unit_of("hair_density") == "hairs/cm²" and responder_threshold("hair_density") == 10
    assert unit_of("anagen_pct") == "percentage points"  # a change of a percentage
    assert unit_of("no_such_outcome") == "" and responder_threshold("no_such_outcome") == 0.0

    study = dataclasses.replace(example, schema=custom)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = build.build_report(study).html
    assert "hairs per square cm (site protocol)" in page
    assert "hairs/cm²" not in page
