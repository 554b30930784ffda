"""Tests of ``mesostats fit`` and ``mesostats report``: exit codes, messages, the documented
JSON keys and numbers, and that a bad invocation leaves no file and no traceback."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.cli import FIT_JSON_KEYS, main
from mesostats.datasets import EXAMPLE_DIR, EXAMPLE_SETTINGS


def run(*args: str) -> tuple[int, str, str]:
    """Run the command line in-process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def no_traceback(text: str) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text


@pytest.fixture(scope="module")
def small_study_folder(tmp_path_factory) -> Path:
    """A 40-person simulated study written by ``mesostats simulate``."""
    folder = tmp_path_factory.mktemp("small") / "study"
    code, _, err = run(
        "simulate", "--subjects", "40", "--sessions", "6", "--seed", "3", "-o", str(folder)
    )
    assert code == 0, err
    return folder


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    shutil.copytree(EXAMPLE_DIR, folder)
    return folder


def _edit_csv(folder: Path, name: str, column: str, value: str, row: int | None = None) -> None:
    path = folder / f"{name}.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if row is None:
        table[column] = value
    else:
        table.loc[row, column] = value
    table.to_csv(path, index=False, lineterminator="\n")


# --- fit --json (regrowth) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def regrowth_json() -> tuple[int, dict, str]:
    code, out, err = run("fit", "example", "--json")
    return code, json.loads(out), err


def test_fit_json_has_the_documented_keys(regrowth_json):
    code, payload, _ = regrowth_json
    assert code == 0
    assert tuple(payload) == FIT_JSON_KEYS
    assert payload["analysis"] == "regrowth"
    assert payload["outcome"] == "hair_density"
    assert payload["event"] is None
    assert payload["rates"] is None and payload["population_average"] is None
    assert set(payload["model"]) == {
        "method",
        "family",
        "nobs",
        "ngroups",
        "loglik",
        "aic",
        "bic",
        "converged",
        "singular",
    }
    assert set(payload["variability"]) == {
        "components",
        "icc",
        "median_odds_ratio",
        "week",
        "prediction_interval",
        "notes",
    }


def test_fit_json_ingredient_effects_are_the_week_terms_of_the_fixed_effects(regrowth_json):
    _, payload, _ = regrowth_json
    fixed = {row["term"]: row for row in payload["fixed_effects"]}
    for row in payload["ingredient_effects"]:
        term = fixed[f"week:{row['ingredient']}"]
        assert_allclose(
            [row["effect"], row["std_error"], row["ci_lower"], row["ci_upper"]],
            [term["estimate"], term["std_error"], term["ci_lower"], term["ci_upper"]],
            rtol=1e-12,
        )


def test_fit_json_ingredient_effects_are_near_the_example_truth(regrowth_json):
    """The example study is simulated: the true extra slopes lie within 3 SE."""
    from mesostats.simulate import simulate_tables

    truth = simulate_tables(**EXAMPLE_SETTINGS)[1]["ingredient_slopes"]
    _, payload, _ = regrowth_json
    for row in payload["ingredient_effects"]:
        assert abs(row["effect"] - truth[row["ingredient"]]) < 3 * row["std_error"]


def test_fit_json_counts_rows_set_aside(regrowth_json):
    _, payload, err = regrowth_json
    expected = ms.example_study().outcome_exclusions("hair_density")
    assert payload["excluded_rows"] == len(expected) == 20
    assert payload["excluded_by_reason"] == expected["reason"].value_counts().to_dict()
    assert payload["model"]["singular"] is False
    assert payload["messages"] == [] and err == ""


def test_fit_json_keeps_engine_messages_of_a_singular_fit(tmp_path, capsys):
    """A study simulated with no between-person slope variance gives a boundary fit."""
    from mesostats.datasets import EXAMPLE_SETTINGS
    from mesostats.simulate import simulate_tables, write_tables

    settings = {**EXAMPLE_SETTINGS, "n_sites": 1}
    settings["effects"] = {**settings["effects"], "slope_sd": 0.0}
    tables, _ = simulate_tables(**settings)
    write_tables(tables, tmp_path)
    assert main(["fit", str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)
    assert payload["model"]["singular"] is True
    assert payload["messages"] and "within `subject_id`" in payload["messages"][0]
    # also on stderr, for a human watching the pipeline
    assert f"mesostats: message from the fit: {payload['messages'][0]}" in err


def test_fit_json_variability_has_intervals_around_estimates(regrowth_json):
    _, payload, _ = regrowth_json
    var = payload["variability"]
    for row in var["components"]:
        assert row["ci_lower"] <= row["estimate"] <= row["ci_upper"]
    icc = var["icc"]
    assert 0 < icc["ci_lower"] < icc["estimate"] < icc["ci_upper"] < 1
    assert var["median_odds_ratio"] is None
    assert {r["cocktail"] for r in var["prediction_interval"]} == {"A", "B", "C", "P"}
    assert var["week"] == pytest.approx(32.0)


# --- fit, other modes ----------------------------------------------------------------------------


def test_fit_side_effects_json_odds_ratios_are_exp_of_the_fixed_effects():
    code, out, _ = run("fit", "example", "--side-effects", "--nagq", "1", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["analysis"] == "side_effects" and payload["event"] is None
    assert payload["model"]["method"] == "Laplace"
    fixed = {row["term"]: row["estimate"] for row in payload["fixed_effects"]}
    for row in payload["ingredient_effects"]:
        assert_allclose(row["odds_ratio"], math.exp(fixed[row["ingredient"]]), rtol=1e-12)
    assert len(payload["population_average"]) == 3
    mor = payload["variability"]["median_odds_ratio"]
    sd = payload["variability"]["components"][0]["estimate"]
    assert_allclose(mor["estimate"], math.exp(math.sqrt(2) * sd * 0.6744897501960817), rtol=1e-9)
    overall = [r for r in payload["rates"] if r["level"] == "overall" and r["per"] == "session"]
    assert overall[0]["n_with_event"] == 176 and overall[0]["n_assessed"] == 1030


def test_fit_event_implies_side_effects_and_text_output_has_the_tables():
    code, out, err = run("fit", "example", "--event", "erythema", "--nagq", "1")
    assert code == 0, err
    assert "Side effects: ingredient effects on erythema" in out
    assert "Varied results" in out
    assert "Median odds ratio" in out
    assert "Rows set aside from this analysis: 0" in out


def test_fit_text_regrowth_prints_summary_and_rows_set_aside(small_study_folder):
    code, out, err = run("fit", str(small_study_folder), "--outcome", "shaft_diameter_um")
    assert code == 0, err
    assert out.startswith("Regrowth: ingredient effects on shaft_diameter_um")
    study = ms.load_study(small_study_folder)
    n = len(study.outcome_exclusions("shaft_diameter_um"))
    assert n > 0
    assert f"Rows set aside from this analysis: {n}" in out


# --- fit errors ----------------------------------------------------------------------------------


def test_fit_missing_source_exits_2_without_traceback(tmp_path):
    code, out, err = run("fit", str(tmp_path / "nowhere"))
    assert code == 2
    assert "SOURCE" in err and "does not exist" in err
    assert out == ""
    no_traceback(err)


def test_fit_unknown_outcome_exits_2_listing_the_outcomes():
    code, _, err = run("fit", "example", "--outcome", "hair_colour")
    assert code == 2
    assert "--outcome 'hair_colour' is not an outcome column" in err
    assert "hair_density, hair_count" in err


def test_fit_unknown_event_exits_1_with_the_terms():
    code, out, err = run("fit", "example", "--event", "sunburn")
    assert code == 1
    assert "event 'sunburn' is not a coded event term; use one of erythema" in err
    assert out == ""


def test_fit_invalid_data_exits_1_listing_problems(example_copy):
    _edit_csv(example_copy, "sessions", "hair_density", "700", row=4)
    code, _, err = run("fit", str(example_copy))
    assert code == 1
    assert "1 validation problem in sessions" in err
    assert "sessions, row 6, column hair_density (value '700')" in err
    no_traceback(err)


def test_fit_model_that_cannot_be_fitted_exits_1_with_the_reason(small_study_folder, tmp_path):
    folder = tmp_path / "unassessed"
    shutil.copytree(small_study_folder, folder)
    _edit_csv(folder, "sessions", "reactions_assessed", "false")
    code, out, err = run("fit", str(folder), "--side-effects", "--json")
    assert code == 1
    assert out == ""
    assert "No session has reactions_assessed = true, so there is no denominator" in err
    no_traceback(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nagq", "0"], "expected a number ≥ 1, got 0"),
        (["--seed", "-3"], "expected a seed ≥ 0, got -3"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_fit_bad_options_are_usage_errors(args, message):
    code, _, err = run("fit", "example", *args)
    assert code == 2
    assert message in err


# --- report --------------------------------------------------------------------------------------


def test_report_writes_one_html_file(small_study_folder, tmp_path):
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    code, out, err = run("report", str(small_study_folder), "-o", str(target), "--seed", "5")
    assert code == 0, err
    assert out.startswith(f"Wrote {target} (")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]
    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    n_banner = html.count('<li><span class="tag">')
    assert len([line for line in err.splitlines() if line.startswith("mesostats: warning: [")]) == (
        n_banner
    )
    assert "<script" not in html.lower()
    assert "Random seed: <strong>5</strong>" in html


def test_report_missing_source_exits_2_and_writes_nothing(tmp_path):
    target = tmp_path / "report.html"
    code, out, err = run("report", str(tmp_path / "nowhere"), "-o", str(target))
    assert code == 2
    assert "does not exist" in err and out == ""
    assert list(tmp_path.iterdir()) == []
    no_traceback(err)


def test_report_into_missing_folder_exits_2(tmp_path):
    code, _, err = run("report", "example", "-o", str(tmp_path / "no" / "r.html"))
    assert code == 2
    assert "does not exist; create it first" in err
    assert list(tmp_path.iterdir()) == []


def test_report_onto_a_folder_exits_2(tmp_path):
    code, _, err = run("report", "example", "-o", str(tmp_path))
    assert code == 2
    assert "is a folder; give a file name" in err


def test_report_unknown_outcome_exits_2_and_writes_nothing(tmp_path):
    code, _, err = run("report", "example", "-o", str(tmp_path / "r.html"), "--outcome", "x")
    assert code == 2
    assert "--outcome 'x' is not an outcome column" in err
    assert list(tmp_path.iterdir()) == []


def test_report_invalid_data_exits_1_and_writes_nothing(example_copy, tmp_path):
    _edit_csv(example_copy, "subjects", "sex", "X", row=2)
    target = tmp_path / "r.html"
    code, _, err = run("report", str(example_copy), "-o", str(target))
    assert code == 1
    assert "validation problem" in err and "subjects, row 4, column sex" in err
    assert not target.exists()


def test_report_write_failure_exits_1_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from mesostats.reporting import build

    monkeypatch.setattr(build, "build_report", lambda *a, **k: build.BuiltReport("<p>", ()))

    def no_replace(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(build.os, "replace", no_replace)
    code, _, err = run("report", "example", "-o", str(tmp_path / "r.html"))
    assert code == 1
    assert "cannot write the report" in err and "Permission denied" in err
    assert list(tmp_path.iterdir()) == []
    no_traceback(err)


def test_report_bad_threshold_is_a_usage_error(tmp_path):
    code, _, err = run("report", "example", "-o", str(tmp_path / "r.html"), "--threshold", "nan")
    assert code == 2
    assert "expected a finite number, got 'nan'" in err


def test_report_without_output_is_a_usage_error():
    code, _, err = run("report", "example")
    assert code == 2
    assert "-o/--output" in err


# --- help and the real entry point ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["fit", "report"])
def test_help_shows_an_example(command):
    code, out, _ = run(command, "--help")
    assert code == 0
    assert "examples:" in out
    assert f"mesostats {command} example" in out


def test_main_help_lists_fit_and_report():
    code, out, _ = run("--help")
    assert code == 0
    assert "mesostats fit example --json" in out and "mesostats report example -o" in out


def test_python_dash_m_bad_source_exits_2_without_traceback(tmp_path):
    for args in (["fit", "missing"], ["report", "missing", "-o", "r.html"]):
        result = subprocess.run(
            [sys.executable, "-m", "mesostats", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 2, result.stderr
        assert "mesostats: error: SOURCE 'missing' does not exist" in result.stderr
        no_traceback(result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_json_values_are_plain_json():
    from mesostats.cli.common import json_safe

    assert json_safe({"a": np.float64("nan"), "b": np.int64(3), "c": [np.inf, pd.NA]}) == {
        "a": None,
        "b": 3,
        "c": [None, None],
    }
