"""Tests of the command line (mesostats.cli): exit codes, messages, and every problem of a
deliberately broken copy of the example study."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mesostats.cli import main
from mesostats.datasets import EXAMPLE_DIR, example_study

TABLES = ["subjects", "cocktails", "sessions", "adverse_events"]


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    shutil.copytree(EXAMPLE_DIR, folder)
    return folder


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


def _write(folder: Path, name: str, table: pd.DataFrame) -> None:
    table.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n")


def _problem_rows(out: str) -> list[str]:
    """Lines of the problem table (after its header line)."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("table "))
    return lines[header + 1 :]


# --- validate ---------------------------------------------------------------------------------


def test_validate_example_exits_0_with_summary(capsys):
    assert main(["validate", "example"]) == 0
    out, err = capsys.readouterr()
    first, *rest = out.splitlines()
    assert first.startswith("OK example: valid study, 150 subjects at 3 sites, 4 cocktails")
    body = "\n".join(rest)
    assert "Subjects per site and cocktail received:" in body
    assert "Cocktails: P = saline; A = minoxidil + biotin" in body
    assert "Outcomes (values present): hair_density 1285," in body
    assert "Visits: 1305 (1070 with an injection); per subject median 10, range 1–10" in body
    assert "Adverse events: 215 (3 serious) at 176 of 1030 assessed sessions: pain 80," in body
    assert f"Exclusions: {len(example_study().exclusions)} rows set aside" in body
    assert err == ""


def test_validate_quiet_prints_one_line(capsys):
    assert main(["validate", "example", "-q"]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 1


def test_validate_folder_path_of_example_copy_is_valid(example_copy, capsys):
    assert main(["validate", str(example_copy), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"OK {example_copy}: valid study")


def test_validate_broken_copy_exits_1_and_lists_every_problem(example_copy, capsys):
    sessions = _read(example_copy, "sessions")
    sessions.loc[4, "hair_density"] = "700"  # file line 6: above the maximum 600
    sessions.loc[0, "day"] = "0"  # file line 2: no day 0
    sessions.loc[7, "gpa_score"] = "five"  # file line 9: not an integer
    _write(example_copy, "sessions", sessions)
    subjects = _read(example_copy, "subjects")
    subjects.loc[2, "sex"] = "X"  # file line 4: not in the enum
    _write(example_copy, "subjects", subjects)
    cocktails = _read(example_copy, "cocktails")
    cocktails.loc[1, "unit"] = "percent"  # file line 3
    _write(example_copy, "cocktails", cocktails)
    events = _read(example_copy, "adverse_events")
    events.loc[0, "event"] = "sneezing"  # file line 2
    _write(example_copy, "adverse_events", events)

    assert main(["validate", str(example_copy)]) == 1
    out, _ = capsys.readouterr()
    header = out.splitlines()[0]
    assert header.startswith(f"INVALID {example_copy}: 6 problems in ")
    rows = _problem_rows(out)
    assert len(rows) == 6
    expected = [
        ("sessions", "6", "hair_density", "700"),
        ("sessions", "2", "day", "0"),
        ("sessions", "9", "gpa_score", "five"),
        ("subjects", "4", "sex", "X"),
        ("cocktails", "3", "unit", "percent"),
        ("adverse_events", "2", "event", "sneezing"),
    ]
    for table, row, column, value in expected:
        assert any(r.split()[:4] == [table, row, column, value] for r in rows), (
            f"no problem listed for {table} row {row} {column}={value}:\n{out}"
        )


def test_validate_lists_more_than_fifty_problems_without_truncation(example_copy, capsys):
    sessions = _read(example_copy, "sessions")
    sessions.loc[:59, "anagen_pct"] = "101"
    _write(example_copy, "sessions", sessions)
    assert main(["validate", str(example_copy)]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines()[0].startswith(f"INVALID {example_copy}: 60 problems in sessions")
    rows = _problem_rows(out)
    assert len(rows) == 60
    assert "more" not in out.splitlines()[-1]


def test_validate_missing_table_and_column_exit_1(example_copy, capsys):
    (example_copy / "cocktails.csv").unlink()
    sessions = _read(example_copy, "sessions").drop(columns="reactions_assessed")
    _write(example_copy, "sessions", sessions)
    assert main(["validate", str(example_copy)]) == 1
    out, _ = capsys.readouterr()
    assert "cocktails" in out and "missing_table" in out
    assert "reactions_assessed" in out and "missing_column" in out


def test_validate_problem_value_with_newline_stays_on_one_line(example_copy, capsys):
    events = _read(example_copy, "adverse_events")
    events.loc[0, "severity"] = "very\nbad"
    _write(example_copy, "adverse_events", events)
    assert main(["validate", str(example_copy)]) == 1
    out, _ = capsys.readouterr()
    rows = _problem_rows(out)
    assert len(rows) == 1
    assert "very\\nbad" in rows[0] and "severity" in rows[0]


def test_validate_datapackage_json_source(example_copy, capsys):
    resources = [{"name": t, "path": f"{t}.csv"} for t in TABLES]
    descriptor = example_copy / "datapackage.json"
    descriptor.write_text(json.dumps({"name": "copy", "resources": resources}), encoding="utf-8")
    assert main(["validate", str(descriptor), "-q"]) == 0
    assert "150 subjects at 3 sites" in capsys.readouterr().out


def test_validate_unreadable_datapackage_json_exits_1(example_copy, capsys):
    descriptor = example_copy / "datapackage.json"
    descriptor.write_text('{"resources": [', encoding="utf-8")
    assert main(["validate", str(descriptor)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"INVALID {descriptor}") and "datapackage" in out
    assert "Traceback" not in out + err


def test_validate_missing_source_is_a_usage_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["validate", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("mesostats: error: SOURCE")
    assert "does not exist" in err and "Traceback" not in err


def test_validate_csv_file_as_source_is_a_usage_error(example_copy, capsys):
    assert main(["validate", str(example_copy / "sessions.csv")]) == 2
    err = capsys.readouterr().err
    assert "is a file; give the folder" in err


def test_validate_without_source_is_a_usage_error(capsys):
    assert main(["validate"]) == 2
    assert "the following arguments are required: SOURCE" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


# --- simulate ---------------------------------------------------------------------------------


def test_simulate_writes_tables_and_truth_that_validate(tmp_path, capsys):
    out_dir = tmp_path / "sim"
    code = main(
        ["simulate", "--subjects", "40", "--sessions", "7", "--seed", "3", "-o", str(out_dir)]
    )
    assert code == 0
    assert "Wrote" in capsys.readouterr().out
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [
        "adverse_events.csv",
        "cocktails.csv",
        "sessions.csv",
        "subjects.csv",
        "truth.json",
    ]
    truth = json.loads((out_dir / "truth.json").read_text(encoding="utf-8"))
    assert (truth["seed"], truth["n_subjects"], truth["n_sessions"]) == (3, 40, 7)
    assert len(truth["subject_effects"]["u0"]) == 40
    assert len(pd.read_csv(out_dir / "subjects.csv")) == 40
    assert main(["validate", str(out_dir), "-q"]) == 0


def test_simulate_same_seed_writes_identical_files(tmp_path):
    for name in ("a", "b"):
        assert (
            main(["simulate", "--subjects", "25", "--seed", "9", "-o", str(tmp_path / name)]) == 0
        )
    for file in ("sessions.csv", "adverse_events.csv", "truth.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_simulate_refuses_non_empty_folder_unless_forced(tmp_path, capsys):
    out_dir = tmp_path / "sim"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    assert main(["simulate", "--subjects", "10", "-o", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err
    assert not (out_dir / "sessions.csv").exists()
    assert main(["simulate", "--subjects", "10", "-o", str(out_dir), "--force"]) == 0
    assert (out_dir / "sessions.csv").exists()
    assert (out_dir / "notes.txt").read_text() == "keep me"


def test_simulate_output_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    target = tmp_path / "file.csv"
    target.write_text("x")
    assert main(["simulate", "-o", str(target)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subjects", "0"], "expected a number ≥ 1, got 0"),
        (["--subjects", "many"], "expected a whole number, got 'many'"),
        (["--seed", "-4"], "expected a seed ≥ 0, got -4"),
        (["--dropout", "1.5"], "expected a probability in [0, 1), got 1.5"),
    ],
)
def test_simulate_bad_numbers_are_usage_errors(tmp_path, capsys, args, message):
    assert main(["simulate", *args, "-o", str(tmp_path / "sim")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sim").exists()


def test_simulate_one_session_per_subject_works(tmp_path, capsys):
    assert main(["simulate", "--subjects", "12", "--sessions", "1", "-o", str(tmp_path / "s")]) == 0
    assert main(["validate", str(tmp_path / "s"), "-q"]) == 0


def test_simulate_output_below_a_file_fails_cleanly_with_exit_1(tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["simulate", "--subjects", "5", "-o", str(blocker / "sim")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mesostats: error: cannot write the study into ")
    assert "blocker" in err and "Traceback" not in err


def test_simulate_without_output_is_a_usage_error(capsys):
    assert main(["simulate", "--subjects", "10"]) == 2
    assert "-o/--output" in capsys.readouterr().err


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "simulate"])
def test_every_subcommand_help_shows_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"mesostats {command} " in out


def test_python_dash_m_mesostats_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "mesostats", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: mesostats" in result.stdout
    assert "validate" in result.stdout and "simulate" in result.stdout


# --- power: JSON of a table with nullable columns -----------------------------------------------


def test_power_json_writes_pandas_na_as_null(monkeypatch, capsys):
    """Nullable columns (pandas NA) in the power table and its settings print as JSON null;
    the power command used to pass NA to json.dumps (TypeError)."""
    import importlib
    import types

    from mesostats.cli import power as power_command

    power_module = importlib.import_module("mesostats.planning")
    table = power_module.PowerTable(
        {c: pd.array([4, pd.NA], dtype="Int64") for c in power_module.POWER_COLUMNS}
    )
    empty = pd.DataFrame({c: [] for c in power_module.TRIAL_COLUMNS})
    table.trials = power_module.PowerTrials(
        simulations=empty, timing=pd.DataFrame(), settings={"seed": 0, "dropout": pd.NA}
    )
    answer = types.SimpleNamespace(
        target=0.8,
        n_subjects=None,
        power=float("nan"),
        ci_lower=None,
        ci_upper=None,
        n_subjects_sure=None,
        n_subjects_possible=None,
    )
    monkeypatch.setattr(power_command, "_power_table", lambda args: table)
    monkeypatch.setattr(power_module, "sample_size", lambda table, target: answer)
    assert main(["power", "--subjects", "4", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["power"][0]["power"] == 4
    assert payload["power"][1]["power"] is None
    assert payload["settings"] == {"seed": 0, "dropout": None}
    assert payload["sample_size"]["power"] is None
