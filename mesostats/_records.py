"""Immutable results records: one rule for every results object of the package.

A results object never changes after it is built, and nothing a caller does to what it hands
out can change it: attribute assignment is refused, and each public DataFrame or dict attribute
is handed out as a copy (so ``fit.ingredient_effects.loc[0, "effect"] = 0`` edits the caller's
copy, not the fit). Used by the domain results (frozen dataclasses, which refuse assignment
themselves) and :class:`~mesostats.domain.variation.Variability` (a plain class, which gets
the refusal from here).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["FrozenRecord"]


class FrozenRecord:
    """Mixin: refuse attribute assignment; hand out copies of DataFrame and dict attributes.

    Names starting with ``_`` are the object's own state and are returned as they are (the
    object's methods read them without copying). ``__init__`` of a non-dataclass subclass sets
    its attributes with ``object.__setattr__``.
    """

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name.startswith("_"):
            return value
        if isinstance(value, pd.DataFrame):
            return value.copy()
        if isinstance(value, dict):
            return dict(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}.")
