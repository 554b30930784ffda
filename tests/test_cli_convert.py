"""The command line on every source (mesostats.cli.common.load_source) and ``mesostats
convert`` (mesostats.cli.convert): folders, European CSV, SQLite URLs; passwords masked."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_csv_dialect import european_copy

from mesostats.cli import main


def test_convert_example_to_sqlite_then_validate_and_fit_the_database(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'example.db'}"
    assert main(["convert", "example", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Wrote {url}: 150 subjects, 1305 sessions, 215 adverse events")
    assert main(["validate", url, "-q"]) == 0
    assert capsys.readouterr().out.startswith(f"OK {url}: valid study, 150 subjects")
    assert main(["fit", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == url


def test_convert_european_csv_to_a_parquet_folder(tmp_path, capsys):
    source = european_copy(tmp_path / "eu")
    target = tmp_path / "clean"
    assert main(["convert", str(source), str(target), "--format", "parquet"]) == 0
    assert sorted(p.suffix for p in target.iterdir()) == [".parquet"] * 4
    assert main(["validate", str(target), "-q"]) == 0
    assert "OK" in capsys.readouterr().out


def test_invalid_database_lists_its_problems_by_key(tmp_path, capsys):
    path = tmp_path / "bad.db"
    url = f"sqlite:///{path}"
    assert main(["convert", "example", url]) == 0
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE sessions SET pain_vas = 42 WHERE visit = 2")
    connection.close()
    capsys.readouterr()
    assert main(["validate", url]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"INVALID {url}: ")
    assert "('LYO-001', 2)" in out and "pain_vas" in out


def test_unreachable_database_is_one_message_without_the_password(capsys):
    url = "postgresql+psycopg://clinic:TopSecret99@127.0.0.1:9/trial"
    assert main(["validate", url]) == 1
    out, err = capsys.readouterr()
    assert "TopSecret99" not in out + err and "Traceback" not in out + err
    assert "INVALID postgresql+psycopg://clinic:***@127.0.0.1:9/trial: 1 problem" in out
    assert main(["convert", "example", url]) == 1
    _, err = capsys.readouterr()
    assert "TopSecret99" not in err
    assert "cannot write the study to postgresql+psycopg://clinic:***@127.0.0.1:9" in err


def test_convert_usage_errors(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    assert main(["convert", "example", str(tmp_path / "full")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    db = tmp_path / "a.db"
    db.write_bytes(b"")
    assert main(["validate", str(db)]) == 2
    assert f"for a SQLite file write sqlite:///{db}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "fit", "report", "convert"])
def test_help_names_database_sources(command, capsys):
    assert main([command, "--help"]) == 0
    assert "database URL" in capsys.readouterr().out


def test_nothing_is_written_when_the_source_is_invalid(tmp_path: Path, capsys):
    source = european_copy(tmp_path / "eu")
    target = tmp_path / "out"
    assert main(["convert", str(source), str(target)]) == 0
    (source / "sessions.csv").write_text("subject_id;visit\n")
    assert main(["convert", str(source), str(tmp_path / "out2")]) == 1
    assert not (tmp_path / "out2").exists()
