"""``mesostats fit SOURCE --trial`` (text and --json) and its usage errors. The engine calls
are the stand-ins of trial_doubles.py (monkeypatched in for these tests only); test_trial.py
runs the command with the real engine."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from trial_doubles import fake_engine

import mesostats.domain.trial as trial_module
from mesostats.cli import main
from mesostats.cli.trial import TRIAL_JSON_KEYS


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(trial_module, "_default_engine", lambda: fake_engine({"us": False}))


def test_trial_json_has_the_documented_keys_and_tables(stand_in):
    code, out, err = run("fit", "example", "--trial", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert tuple(payload) == TRIAL_JSON_KEYS
    assert payload["analysis"] == "trial" and payload["control"] == "P"
    assert payload["primary_visit"] == 10 and payload["covariance"] == "toeph"
    assert [r["contrast"] for r in payload["primary"]] == ["A - P", "B - P", "C - P"]
    assert set(payload["vs_control"][0]) == {
        "contrast",
        "visit",
        "estimate",
        "std_error",
        "df",
        "statistic",
        "p_value",
        "p_adjusted",
        "ci_lower",
        "ci_upper",
    }
    assert "message from the fit: Covariance fallback: unstructured (us)" in err


def test_trial_text_with_visit_and_control(stand_in):
    code, out, err = run("fit", "example", "--trial", "--visit", "7", "--control", "A")
    assert code == 0, err
    assert out.startswith("Primary analysis: MMRM of change from baseline in hair_density")
    assert "Primary visit:       visit 7 (week 11)" in out
    assert "B - A" in out
    assert "People not analysed: 8; post-baseline visits set aside: 0" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--visit", "3"], 2, "--visit only make sense with --trial"),
        (["--trial", "--side-effects"], 2, "--trial cannot be combined with --side-effects"),
        (["--trial", "--visit", "1"], 1, "visit 1 is not a scheduled post-baseline visit"),
        (["--trial", "--control", "Q"], 1, "control 'Q' is not a cocktail of the analysed"),
        (["--trial", "--covariance", "UN"], 1, "covariance must be one of us, toep"),
    ],
)
def test_trial_errors(stand_in, args, code, message):
    got, out, err = run("fit", "example", *args)
    assert got == code
    assert message in err
    assert out == ""
