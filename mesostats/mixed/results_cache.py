"""Tables of :class:`~mesostats.mixed.results.MixedResults` built on first access.

The fixed-effects and variance-component tables cost about half a millisecond per fit to
build, and many callers never read them (a power trial or a bootstrap replicate reads the
estimates only). They are built on first access and kept in the instance, so the object
still answers the same every time and stays immutable to its users.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

__all__ = ["LazyTables"]


class LazyTables:
    """Mixin: ``_fixed_effects`` and ``_variance_components`` built once, on first access."""

    #: how the denominator df were computed (``"satterthwaite"`` or ``"kenward-roger"``)
    df_method: str

    def _fixed_effects_table(self) -> pd.DataFrame:  # provided by MixedResults
        raise NotImplementedError

    def _variance_components_table(self) -> pd.DataFrame:  # provided by MixedResults
        raise NotImplementedError

    def _cached_table(self, name: str, build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        cache: dict[str, pd.DataFrame] = self.__dict__.setdefault("_lazy_tables", {})
        table = cache.get(name)
        if table is None:
            table = cache[name] = build()
        return table

    @property
    def _fixed_effects(self) -> pd.DataFrame:
        return self._cached_table("fixed_effects", self._fixed_effects_table)

    @property
    def _variance_components(self) -> pd.DataFrame:
        return self._cached_table("variance_components", self._variance_components_table)
