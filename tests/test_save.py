"""save_study (mesostats.data.save): a Study written to a folder (CSV, Parquet) or a database
and read back equal; nothing is overwritten."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import mesostats as ms

TABLES = ("subjects", "cocktails", "sessions", "adverse_events")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_folder_round_trip_gives_an_equal_study(tmp_path: Path, fmt: str) -> None:
    example = ms.example_study()
    target = tmp_path / "copy"
    assert ms.save_study(example, target, format=fmt) == target
    study = ms.load_study(target)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(example, name), getattr(study, name))
    pd.testing.assert_frame_equal(example.exclusions, study.exclusions)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{n}.{fmt}" for n in TABLES)


def in_key_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def test_sqlite_round_trip_of_a_simulated_study(tmp_path: Path) -> None:
    """A database table is read in primary-key order: equal rows, values and types."""
    simulated = ms.simulate_study(n_subjects=12, n_sessions=4, seed=3)
    study = ms.load_study(ms.save_study(simulated, f"sqlite:///{tmp_path / 's.db'}"))
    for name in TABLES:
        pd.testing.assert_frame_equal(
            in_key_order(getattr(simulated, name)), in_key_order(getattr(study, name))
        )
    assert study.ingredients == simulated.ingredients
    assert len(study.outcome_table()) == len(simulated.outcome_table())


def test_nothing_is_overwritten_and_bad_targets_are_refused(tmp_path: Path) -> None:
    example = ms.example_study()
    ms.save_study(example, tmp_path / "a")
    before = (tmp_path / "a" / "sessions.csv").read_bytes()
    with pytest.raises(ms.MesostatsError, match=r"already holds subjects\.csv, cocktails\.csv"):
        ms.save_study(example, tmp_path / "a", format="parquet")
    assert (tmp_path / "a" / "sessions.csv").read_bytes() == before
    with pytest.raises(ms.MesostatsError, match=r"format must be 'csv' or 'parquet'"):
        ms.save_study(example, tmp_path / "b", format="xlsx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ms.MesostatsError, match=r"is a file; give a folder"):
        ms.save_study(example, tmp_path / "file")


def test_extra_columns_with_odd_names_and_missing_values_survive_a_database(tmp_path: Path):
    example = ms.example_study()
    tables = {
        "subjects": example.subjects.assign(**{"note (free text)": "ok", "weight kg": 70.5}),
        "cocktails": example.cocktails,
        "sessions": example.sessions,
        "adverse_events": example.adverse_events,
    }
    study = ms.load_study(tables)
    back = ms.load_study(ms.save_study(study, f"sqlite:///{tmp_path / 'x.db'}"))
    pd.testing.assert_frame_equal(
        in_key_order(study.subjects), in_key_order(back.subjects), check_dtype=False
    )
    assert (
        back.sessions["hair_density"].isna().sum() == example.sessions["hair_density"].isna().sum()
    )
