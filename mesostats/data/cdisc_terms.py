"""The names CDISC gives the same things in ADaM and in SDTM, for reading and for messages.

:mod:`.cdisc_adam` reads one layout (ADaM variable names); an SDTM delivery is renamed into it
by :mod:`.cdisc_sdtm`. A :class:`Vocabulary` says how each variable is called in the standard
the data came in, so that every problem names the variable the user has in their files
(``VISITNUM`` and ``XHTESTCD`` in SDTM, ``AVISITN`` and ``PARAMCD`` in ADaM).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ADAM", "SDTM", "Vocabulary"]


@dataclass(frozen=True)
class Vocabulary:
    """Dataset and variable names of one CDISC standard."""

    standard: str  # "ADaM" or "SDTM"
    subjects: str  # ADSL / DM
    exposure: str  # ADEX / EX
    events: str  # ADAE / AE
    visit: str  # AVISITN / VISITNUM

    def _findings(self, dataset: str, adam: str, suffix: str) -> str:
        return adam if self.standard == "ADaM" else f"{dataset}{suffix}"

    def test(self, dataset: str) -> str:
        """The parameter code: PARAMCD, or --TESTCD."""
        return self._findings(dataset, "PARAMCD", "TESTCD")

    def value(self, dataset: str) -> str:
        """The numeric result: AVAL, or --STRESN."""
        return self._findings(dataset, "AVAL", "STRESN")

    def text(self, dataset: str) -> str:
        """The character result: AVALC, or --STRESC."""
        return self._findings(dataset, "AVALC", "STRESC")

    def day(self, dataset: str) -> str:
        """The study day: ADY, or --DY."""
        return self._findings(dataset, "ADY", "DY")

    def baseline(self, dataset: str) -> str:
        """The baseline flag: ABLFL, or --LOBXFL (last observation before exposure)."""
        return self._findings(dataset, "ABLFL", "LOBXFL")

    def name(self, dataset: str, variable: str) -> str:
        """What the ADaM ``variable`` of ``dataset`` is called in this standard."""
        renamed = {
            "PARAMCD": self.test(dataset),
            "AVAL": self.value(dataset),
            "AVALC": self.text(dataset),
            "ADY": self.day(dataset),
            "ABLFL": self.baseline(dataset),
            "AVISITN": self.visit,
        }
        return renamed.get(variable, variable)

    def names(self, dataset: str, variables: str) -> str:
        """:meth:`name` of each of the comma-separated ``variables``."""
        return ", ".join(self.name(dataset, v) for v in variables.split(", "))

    def sequence(self, dataset: str) -> str | None:
        """The record's sequence number: --SEQ in SDTM (AESEQ in ADAE), else none."""
        if self.standard == "SDTM" or dataset == self.events:
            return f"{'AE' if dataset == self.events else dataset}SEQ"
        return None


ADAM = Vocabulary("ADaM", "ADSL", "ADEX", "ADAE", "AVISITN")
SDTM = Vocabulary("SDTM", "DM", "EX", "AE", "VISITNUM")
