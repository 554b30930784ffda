"""Fuzzing load_redcap with hypothesis: mutate a valid REDCap export (unknown choices, out-of-range
numbers, missing-data codes in required and optional fields, unknown events, checkbox columns
with unknown codes, several boxes checked, a field the dictionary lacks) and check that

- loading raises ValidationError and never another exception,
- every injected problem is among the reported ones (same table, row, REDCap field, rule),
- missing-data codes in optional fields load, recorded in ``exclusions``,
- the input DataFrames and files are left byte-identical.

The export is the one scripts/make_redcap_example.py writes, for the small study of conftest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from conftest import make_valid_tables
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mesostats.data.load import load_study
from mesostats.data.redcap import load_redcap
from mesostats.exceptions import ValidationError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_redcap_example.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("make_redcap_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _base_export() -> dict[str, pd.DataFrame]:
    script = _script()
    study = load_study(make_valid_tables())
    sites = list(dict.fromkeys(study.subjects["site"]))
    header, rows = script.records_rows(study, sites)
    dictionary = pd.DataFrame(
        script.dictionary_rows(sites, study.cocktails), columns=script.DICTIONARY_HEADER
    )
    return {
        "records": pd.DataFrame(rows, columns=header),
        "dictionary": dictionary,
        "cocktails": study.cocktails.reset_index(drop=True).astype(str),
    }


BASE = _base_export()
EVENT = BASE["records"]["redcap_event_name"]
ENROLMENT = [int(i) for i in BASE["records"].index[EVENT == "enrolment_arm_1"]]
REPEATING = BASE["records"]["redcap_repeat_instrument"] == "adverse_event"
VISITS = [int(i) for i in BASE["records"].index[(EVENT != "enrolment_arm_1") & ~REPEATING]]
EVENTS = [int(i) for i in BASE["records"].index[REPEATING]]
ROWS = {"subjects": ENROLMENT, "sessions": VISITS, "adverse_events": EVENTS}
CODED = [("subjects", "sex"), ("subjects", "site"), ("subjects", "stage"),
         ("adverse_events", "severity"), ("adverse_events", "event"),
         ("sessions", "cocktail_id"), ("sessions", "reactions_assessed")]  # fmt: skip
RANGES = [("subjects", "age", "5", "minimum"), ("sessions", "hair_density", "900", "maximum"),
          ("sessions", "volume_ml", "11", "maximum")]  # fmt: skip
REQUIRED = [("subjects", "age"), ("sessions", "day")]
OPTIONAL = [("sessions", "hair_density"), ("sessions", "pain_vas")]
CODES = ["UNK", "NASK", "NA", "ASKU"]


@dataclass
class Mutated:
    export: dict[str, pd.DataFrame]
    expected: set[tuple[str, Any, str, str]] = field(default_factory=set)
    excluded: set[tuple[str, Any]] = field(default_factory=set)
    used: set[int] = field(default_factory=set)
    unknown_events: int = 0

    def free(self, data: st.DataObject, table: str) -> int | None:
        free = [i for i in ROWS[table] if i not in self.used]
        if not free:
            return None
        row = data.draw(st.sampled_from(free))
        self.used.add(row)
        return row

    def put(self, row: int, column: str, value: str) -> None:
        self.export["records"].loc[row, column] = value


def mutate(data: st.DataObject, m: Mutated) -> None:
    kind = data.draw(
        st.sampled_from(
            ["choice", "range", "code_required", "code_optional", "event", "checkbox_code",
             "checkbox_multiple", "unknown_field"]
        )
    )  # fmt: skip
    records = m.export["records"]
    if kind in ("choice", "range", "code_required", "code_optional"):
        if kind == "choice":
            table, column = data.draw(st.sampled_from(CODED))
            value, rule = "~" + data.draw(st.text("xyz9", min_size=1, max_size=3)), "choice"
        elif kind == "range":
            table, column, value, rule = data.draw(st.sampled_from(RANGES))
        else:
            pool = REQUIRED if kind == "code_required" else OPTIONAL
            table, column = data.draw(st.sampled_from(pool))
            value, rule = data.draw(st.sampled_from(CODES)), "required"
        row = m.free(data, table)
        if row is None or column not in records.columns:
            return
        m.put(row, column, value)
        if kind == "code_optional":
            m.excluded.add((table, row))
        else:
            m.expected.add((table, row, column, rule))
    elif kind == "event":
        row = m.free(data, "sessions")
        if row is None:
            return
        m.unknown_events += 1
        name = f"week_{m.unknown_events}_arm_1"
        m.put(row, "redcap_event_name", name)
        m.expected.add(("records", row, "redcap_event_name", "unknown_event"))
    elif kind == "checkbox_code":
        name = "diagnosis___" + data.draw(st.sampled_from(["zz", "9", "x_1"]))
        if name not in records.columns:
            records.insert(records.columns.get_loc("stage"), name, "0")
            m.expected.add(("records", None, name, "checkbox_code"))
    elif kind == "checkbox_multiple":
        row = m.free(data, "subjects")
        if row is not None:
            m.put(row, "diagnosis___aga", "1")
            m.put(row, "diagnosis___te", "1")
            m.expected.add(("subjects", row, "diagnosis", "choice"))
    else:
        column = data.draw(st.sampled_from(["pain_vas", "verbatim", "arm"]))
        dictionary = m.export["dictionary"]
        m.export["dictionary"] = dictionary[dictionary["Variable / Field Name"] != column]
        m.expected.add(("records", None, column, "unknown_field"))


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _load(records: Any, dictionary: Any, cocktails: Any) -> Any:
    try:
        return load_redcap(records, dictionary, cocktails=cocktails)
    except ValidationError as exc:
        return exc


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), for_files=st.booleans(), n_mutations=st.integers(1, 4))
def test_mutated_export_raises_validation_error_listing_every_injected_problem(
    data: st.DataObject, for_files: bool, n_mutations: int
) -> None:
    m = Mutated({k: v.copy(deep=True) for k, v in BASE.items()})
    for _ in range(n_mutations):
        mutate(data, m)
    if for_files:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for name, frame in m.export.items():
                frame.to_csv(folder / f"{name}.csv", index=False)
            before = digest(folder)
            outcome = _load(*(folder / f"{n}.csv" for n in ("records", "dictionary", "cocktails")))
            assert digest(folder) == before, "input files were modified"
    else:
        snapshot = {k: v.copy(deep=True) for k, v in m.export.items()}
        outcome = _load(m.export["records"], m.export["dictionary"], m.export["cocktails"])
        for name, frame in m.export.items():
            pd.testing.assert_frame_equal(frame, snapshot[name])
    shift = 2 if for_files else 0  # files: line numbers (header = line 1)
    header = 1 if for_files else None
    expected = {(t, header if r is None else r + shift, c, rule) for t, r, c, rule in m.expected}
    event("expected problems" if expected else "valid after mutation")
    if not expected:
        assert not isinstance(outcome, ValidationError), str(outcome)[:2000]
        reasons = set(zip(outcome.exclusions["table"], outcome.exclusions["row"], strict=True))
        assert {(t, r + shift) for t, r in m.excluded} <= reasons
        return
    assert isinstance(outcome, ValidationError), f"no error; expected {sorted(map(str, expected))}"
    found = set(outcome.problems[["table", "row", "column", "rule"]].itertuples(index=False))
    missing = {e for e in expected if e not in found}
    assert not missing, f"not reported: {missing}\n{str(outcome)[:3000]}"
