"""Errors and warnings raised by mesostats.

Every message names what happened (with the values), the likely cause, and what to try.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # keeps `import mesostats` light

__all__ = [
    "ConvergenceWarning",
    "ExclusionWarning",
    "MesostatsError",
    "ModelSpecError",
    "SchemaError",
    "SingularFitWarning",
    "ValidationError",
]

PROBLEM_COLUMNS = ["table", "row", "column", "value", "rule", "message"]
_SHOWN_PROBLEMS = 50


class MesostatsError(Exception):
    """Base class of every error raised by mesostats."""


class ValidationError(MesostatsError, ValueError):
    """Input tables break their schema or a cross-table rule.

    Attributes
    ----------
    problems : pandas.DataFrame
        One row per problem, *all* problems, with columns
        ``table, row, column, value, rule, message``. ``row`` is the 1-based line number in the
        file (header = line 1) when the table was read from a file, else the DataFrame index
        label.
    """

    def __init__(self, problems: pd.DataFrame) -> None:
        import pandas as pd  # keeps `import mesostats` light

        missing = [c for c in PROBLEM_COLUMNS if c not in problems.columns]
        if missing:
            raise TypeError(f"problems table lacks columns {missing}")
        self.problems: pd.DataFrame = pd.DataFrame(problems[PROBLEM_COLUMNS]).reset_index(drop=True)
        super().__init__(self._render())

    def _render(self) -> str:
        n = len(self.problems)
        tables = sorted({str(t) for t in self.problems["table"]})
        head = (
            f"{n} validation problem{'s' if n != 1 else ''} in "
            f"{', '.join(tables) if tables else 'the input'}:"
        )
        lines = [head]
        for rec in self.problems.head(_SHOWN_PROBLEMS).itertuples(index=False):
            where = str(rec.table)
            if not _is_missing(rec.row):
                where += f", row {rec.row}"
            if rec.column is not None and str(rec.column) not in ("", "nan", "None"):
                where += f", column {rec.column}"
            value = "" if _is_missing(rec.value) else f" (value {_short(rec.value)!r})"
            lines.append(f"  - {where}{value}: {rec.message} [rule: {rec.rule}]")
        if n > _SHOWN_PROBLEMS:
            lines.append(f"  … and {n - _SHOWN_PROBLEMS} more")
        return "\n".join(lines)


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN
    except (TypeError, ValueError):
        return False


def _short(value: object, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SchemaError(MesostatsError):
    """A schema file itself is broken (a packaging or editing mistake, not a data problem)."""


class ModelSpecError(MesostatsError, ValueError):
    """A formula or option that cannot be fitted; the message names the column or term."""


class ConvergenceWarning(UserWarning):
    """The optimiser did not meet a convergence check; says which, with values."""


class SingularFitWarning(UserWarning):
    """A variance component is on its boundary (SD 0 or correlation ±1); says which."""


class ExclusionWarning(UserWarning):
    """Rows were set aside (listed with their reason); says how many and why."""
