"""Fuzzing load_cdisc with hypothesis: mutate valid ADaM datasets (out-of-range AGE and AVAL,
unknown coded values, duplicated analysis records, unknown PARAMCD, exposure not in mL, records
set aside by DTYPE/ANL01FL) and check that

- loading raises ValidationError and never another exception,
- every injected problem is among the reported ones (same dataset, observation, variable, rule),
- records set aside by the flags load, listed in ``exclusions``,
- the input DataFrames and files are left unchanged.

The datasets are those scripts/make_cdisc_example.py writes, for the first 4 example subjects.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mesostats.data.cdisc_study import load_cdisc
from mesostats.datasets import example_study
from mesostats.exceptions import ValidationError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_cdisc_example.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("make_cdisc_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULE = _script()
BASE = SCRIPT_MODULE.adam_datasets(4)
COCKTAILS = example_study().cocktails.reset_index(drop=True)
ANALYSED = BASE["ADHAIR"].index[(BASE["ADHAIR"]["ANL01FL"] == "Y")].tolist()
# (dataset, variable, value, rule, rows that may be mutated)
VALUES = [
    ("ADSL", "AGE", 5.0, "minimum", BASE["ADSL"].index.tolist()),
    ("ADSL", "SEX", "X", "enum", BASE["ADSL"].index.tolist()),
    ("ADAE", "AESEV", "FATAL", "enum", BASE["ADAE"].index.tolist()),
    ("ADHAIR", "AVAL", 900.0, "maximum",
     BASE["ADHAIR"].index[(BASE["ADHAIR"]["PARAMCD"] == "HAIRDENS")
                          & (BASE["ADHAIR"]["ANL01FL"] == "Y")].tolist()),
]  # fmt: skip


@dataclass
class Mutated:
    datasets: dict[str, pd.DataFrame]
    expected: set[tuple[str, Any, str, str]] = field(default_factory=set)
    excluded: set[tuple[str, Any]] = field(default_factory=set)
    used: set[tuple[str, int]] = field(default_factory=set)
    unknown_codes: dict[str, int] = field(default_factory=dict)  # PARAMCD → first row

    def free(self, data: st.DataObject, name: str, rows: list[int]) -> int | None:
        free = [r for r in rows if (name, r) not in self.used]
        if not free:
            return None
        row = data.draw(st.sampled_from(free))
        self.used.add((name, row))
        return row


def mutate(data: st.DataObject, m: Mutated) -> None:
    kind = data.draw(st.sampled_from(["value", "duplicate", "paramcd", "unit", "flagged"]))
    adhair = m.datasets["ADHAIR"]
    if kind == "value":
        name, variable, value, rule, rows = data.draw(st.sampled_from(VALUES))
        row = m.free(data, name, rows)
        if row is not None:
            m.datasets[name].loc[row, variable] = value
            m.expected.add((name, row + 1, variable, rule))
    elif kind == "duplicate":
        row = m.free(data, "ADHAIR", ANALYSED)
        if row is not None:
            m.datasets["ADHAIR"] = pd.concat([adhair, adhair.loc[[row]]], ignore_index=True)
            new = len(m.datasets["ADHAIR"]) - 1
            m.used.add(("ADHAIR", new))
            column = "USUBJID, PARAMCD, AVISITN"
            m.expected |= {("ADHAIR", row + 1, column, "duplicate_record"),
                           ("ADHAIR", new + 1, column, "duplicate_record")}  # fmt: skip
    elif kind == "paramcd":
        row = m.free(data, "ADHAIR", ANALYSED)
        if row is not None:
            code = "ZZ" + data.draw(st.text("ABC", min_size=1, max_size=3))
            adhair.loc[row, "PARAMCD"] = code
            m.unknown_codes[code] = min(row, m.unknown_codes.get(code, row))
    elif kind == "unit":
        row = m.free(data, "ADEX", m.datasets["ADEX"].index.tolist())
        if row is not None:
            m.datasets["ADEX"].loc[row, "EXDOSU"] = "uL"
            m.expected.add(("ADEX", row + 1, "EXTRT", "exposure"))
    else:  # a derived record that must be set aside, not read
        row = m.free(data, "ADHAIR", ANALYSED)
        if row is not None:
            extra = adhair.loc[[row]].assign(AVAL=-1.0, DTYPE="LOCF")
            m.datasets["ADHAIR"] = pd.concat([adhair, extra], ignore_index=True)
            new = len(m.datasets["ADHAIR"]) - 1
            m.used.add(("ADHAIR", new))
            m.excluded.add(("ADHAIR", new + 1))


def _load(source: Any) -> Any:
    try:
        return load_cdisc(source, cocktails=COCKTAILS)
    except ValidationError as exc:
        return exc


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), for_files=st.booleans(), n_mutations=st.integers(1, 4))
def test_mutated_adam_raises_validation_error_listing_every_injected_problem(
    data: st.DataObject, for_files: bool, n_mutations: int
) -> None:
    m = Mutated({k: v.copy(deep=True) for k, v in BASE.items()})
    for _ in range(n_mutations):
        mutate(data, m)
    m.expected |= {("ADHAIR", r + 1, "PARAMCD", "unknown_param") for r in m.unknown_codes.values()}
    if for_files:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for name, frame in m.datasets.items():
                SCRIPT_MODULE.write_xpt(frame, folder / f"{name.lower()}.xpt", name)
            before = digest(folder)
            outcome = _load(folder)
            assert digest(folder) == before, "input files were modified"
    else:
        frames = {k: v.set_axis(pd.RangeIndex(1, len(v) + 1)) for k, v in m.datasets.items()}
        snapshot = {k: v.copy(deep=True) for k, v in frames.items()}
        outcome = _load(frames)
        for name, frame in frames.items():
            pd.testing.assert_frame_equal(frame, snapshot[name])
    event("expected problems" if m.expected else "valid after mutation")
    if not m.expected:
        assert not isinstance(outcome, ValidationError), str(outcome)[:2000]
        excluded = set(zip(outcome.exclusions["table"], outcome.exclusions["row"], strict=True))
        assert m.excluded <= excluded
        return
    assert isinstance(outcome, ValidationError), f"no error; expected {sorted(m.expected)}"
    found = set(outcome.problems[["table", "row", "column", "rule"]].itertuples(index=False))
    missing = {e for e in m.expected if e not in found}
    assert not missing, f"not reported: {missing}\n{str(outcome)[:3000]}"
