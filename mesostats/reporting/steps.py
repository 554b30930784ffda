"""The report's steps: each model, table and figure is computed in its own guarded step.

:func:`guarded` runs one step, captures its warnings and turns a failure into a
:class:`Failure` shown in place of the missing content; :class:`MessageLog` gathers every
warning, engine message and failure for the banner at the top of the report. The plain
values handed to the templates are :class:`~mesostats._display.Table` (re-exported here),
:class:`Figure` and :class:`Failure`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from mesostats._display import Table
from mesostats.exceptions import MesostatsError

__all__ = [
    "EXPECTED_ERRORS",
    "Failure",
    "Figure",
    "Message",
    "MessageLog",
    "Table",
    "guarded",
    "log_concerning_notes",
    "log_model",
]

T = TypeVar("T")

#: Failures of a step that show their own message (anything else is flagged as a likely bug).
EXPECTED_ERRORS = (MesostatsError, ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass(frozen=True)
class Figure:
    """An embedded figure: a ``data:image/png;base64,…`` URI, alt text and a caption."""

    uri: str
    alt: str
    caption: str
    width: int


@dataclass(frozen=True)
class Failure:
    """What could not be computed, and why (shown in place of the missing content)."""

    what: str
    reason: str


@dataclass(frozen=True)
class Message:
    """A warning or message of one step of the analysis."""

    source: str
    kind: str
    text: str


@dataclass
class MessageLog:
    """Every warning, engine message and failure, in order, without duplicates."""

    items: list[Message] = field(default_factory=list)

    def add(self, source: str, kind: str, text: str) -> None:
        """Record one message (a repeat of the same source and text is ignored)."""
        text = str(text).strip()
        if text and not any(m.source == source and m.text == text for m in self.items):
            self.items.append(Message(source, kind, text))

    def add_warnings(self, source: str, caught: Iterable[warnings.WarningMessage]) -> None:
        """Record captured Python warnings under their class name."""
        for w in caught:
            self.add(source, w.category.__name__, str(w.message))


def guarded(
    log: MessageLog, source: str, compute: Callable[[], T]
) -> tuple[T | None, Failure | None]:
    """Run one step, capturing its warnings; a failure is returned (and logged), not raised.

    Expected failures (our errors, numerical errors) show their message; anything else is
    shown with its type and flagged as a likely bug, so that one broken step never takes the
    whole report down.
    """
    value: T | None = None
    failure: Failure | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = compute()
        except EXPECTED_ERRORS as err:
            failure = Failure(source, str(err) or type(err).__name__)
        except Exception as err:  # one step must not break the report
            reason = (
                f"{type(err).__name__}: {err}. This looks like a bug in mesostats; please "
                "report it with the study's shape (not its data)."
            )
            failure = Failure(source, reason)
    log.add_warnings(source, caught)
    if failure is not None:
        log.add(source, "not computed", failure.reason)
    return value, failure


def log_model(log: MessageLog, source: str, fit: Any) -> None:
    """A fit's engine messages, and a note if it did not converge, go to the banner."""
    if fit is None:
        return
    for text in fit.model.messages:
        log.add(source, "model message", text)
    if not fit.model.converged:
        log.add(
            source, "not converged", f"{source} did not converge; treat its numbers as approximate."
        )


# TODO(notes): the domain layer hands notes over as plain strings, so the banner picks the
# concerning ones by keyword. Select by kind once notes carry one (``Note(kind, source, text)``,
# architecture review §3.5, domain/notes.py); that change belongs to the domain layer.
_CONCERNS = ("converge", "boundary", "singular", "failed")


def log_concerning_notes(log: MessageLog, source: str, notes: Iterable[str]) -> None:
    """Notes about convergence, boundaries or failures also go to the banner."""
    for text in notes:
        if any(word in text.lower() for word in _CONCERNS):
            log.add(source, "note", text)
