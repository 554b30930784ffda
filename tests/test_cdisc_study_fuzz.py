"""Fuzzing load_cdisc with hypothesis: mutate valid ADaM or SDTM datasets (out-of-range AGE and
results, unknown coded values, duplicated records, unknown PARAMCD/--TESTCD, exposure not in mL,
records set aside by DTYPE or --STAT) and check that

- loading raises ValidationError and never another exception,
- every injected problem is among the reported ones (same dataset, observation, variable, rule),
- records set aside by the flags load, listed in ``exclusions``,
- the input DataFrames and files are left unchanged.

The datasets are those scripts/make_cdisc_example.py makes, for the first 4 example subjects.
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
COCKTAILS = example_study().cocktails.reset_index(drop=True)


@dataclass(frozen=True)
class Standard:
    """A valid delivery of the first 4 example subjects, and where its variables are."""

    datasets: dict[str, pd.DataFrame]
    findings: str  # ADHAIR / XH
    exposure: str  # ADEX / EX
    test: str  # PARAMCD / XHTESTCD
    visit: str  # AVISITN / VISITNUM
    analysed: list[int]  # findings rows that may be mutated
    values: list[tuple[str, str, Any, str, list[int]]]  # dataset, variable, value, rule, rows


def _adam() -> Standard:
    base = SCRIPT_MODULE.adam_datasets(4)
    adhair = base["ADHAIR"]
    analysed = adhair.index[adhair["ANL01FL"] == "Y"].tolist()
    density = adhair.index[(adhair["PARAMCD"] == "HAIRDENS") & (adhair["ANL01FL"] == "Y")]
    values = [
        ("ADSL", "AGE", 5.0, "minimum", base["ADSL"].index.tolist()),
        ("ADSL", "SEX", "X", "enum", base["ADSL"].index.tolist()),
        ("ADAE", "AESEV", "FATAL", "enum", base["ADAE"].index.tolist()),
        ("ADHAIR", "AVAL", 900.0, "maximum", density.tolist()),
    ]
    return Standard(base, "ADHAIR", "ADEX", "PARAMCD", "AVISITN", analysed, values)


def _sdtm() -> Standard:
    base = SCRIPT_MODULE.sdtm_datasets(4)
    xh = base["XH"]
    analysed = xh.index[xh["XHSTAT"] == ""].tolist()
    density = xh.index[(xh["XHTESTCD"] == "HAIRDENS") & (xh["XHSTAT"] == "")]
    values = [
        ("DM", "AGE", 5.0, "minimum", base["DM"].index.tolist()),
        ("DM", "SEX", "X", "enum", base["DM"].index.tolist()),
        ("AE", "AESEV", "FATAL", "enum", base["AE"].index.tolist()),
        ("XH", "XHSTRESN", 900.0, "maximum", density.tolist()),
    ]
    return Standard(base, "XH", "EX", "XHTESTCD", "VISITNUM", analysed, values)


STANDARDS = {"ADaM": _adam(), "SDTM": _sdtm()}


@dataclass
class Mutated:
    standard: Standard
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
    kind = data.draw(st.sampled_from(["value", "duplicate", "paramcd", "unit", "set_aside"]))
    std = m.standard
    findings = m.datasets[std.findings]
    if kind == "value":
        name, variable, value, rule, rows = data.draw(st.sampled_from(std.values))
        row = m.free(data, name, rows)
        if row is not None:
            m.datasets[name].loc[row, variable] = value
            m.expected.add((name, row + 1, variable, rule))
    elif kind == "duplicate":
        row = m.free(data, std.findings, std.analysed)
        if row is not None:
            m.datasets[std.findings] = pd.concat([findings, findings.loc[[row]]], ignore_index=True)
            new = len(m.datasets[std.findings]) - 1
            m.used.add((std.findings, new))
            column = f"USUBJID, {std.test}, {std.visit}"
            m.expected |= {(std.findings, row + 1, column, "duplicate_record"),
                           (std.findings, new + 1, column, "duplicate_record")}  # fmt: skip
    elif kind == "paramcd":
        row = m.free(data, std.findings, std.analysed)
        if row is not None:
            code = "ZZ" + data.draw(st.text("ABC", min_size=1, max_size=3))
            findings.loc[row, std.test] = code
            m.unknown_codes[code] = min(row, m.unknown_codes.get(code, row))
    elif kind == "unit":
        exposure = m.datasets[std.exposure]
        row = m.free(data, std.exposure, exposure.index.tolist())
        if row is not None:
            exposure.loc[row, "EXDOSU"] = "uL"
            m.expected.add((std.exposure, row + 1, "EXTRT", "exposure"))
    else:  # a derived (ADaM) or not-done (SDTM) record that must be set aside, not read
        row = m.free(data, std.findings, std.analysed)
        if row is not None:
            extra = findings.loc[[row]]
            if std.findings == "ADHAIR":
                extra = extra.assign(AVAL=-1.0, DTYPE="LOCF")
            else:
                extra = extra.assign(XHSTRESN=-1.0, XHSTRESC="", XHSTAT="NOT DONE")
            m.datasets[std.findings] = pd.concat([findings, extra], ignore_index=True)
            new = len(m.datasets[std.findings]) - 1
            m.used.add((std.findings, new))
            m.excluded.add((std.findings, new + 1))


def _load(source: Any) -> Any:
    try:
        return load_cdisc(source, cocktails=COCKTAILS)
    except ValidationError as exc:
        return exc


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    standard=st.sampled_from(sorted(STANDARDS)),
    for_files=st.booleans(),
    n_mutations=st.integers(1, 4),
)
def test_mutated_delivery_raises_validation_error_listing_every_injected_problem(
    data: st.DataObject, standard: str, for_files: bool, n_mutations: int
) -> None:
    std = STANDARDS[standard]
    m = Mutated(std, {k: v.copy(deep=True) for k, v in std.datasets.items()})
    for _ in range(n_mutations):
        mutate(data, m)
    m.expected |= {
        (std.findings, r + 1, std.test, "unknown_param") for r in m.unknown_codes.values()
    }
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
