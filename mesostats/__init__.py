"""mesostats: clinical outcome statistics for mesotherapy studies.

The public names of ``API.md``. Heavy modules (plots, report, engines) load on first use so
that ``import mesostats`` stays fast; every name below is importable as
``from mesostats import name``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from mesostats.exceptions import (
    ConvergenceWarning,
    ExclusionWarning,
    MesostatsError,
    ModelSpecError,
    SingularFitWarning,
    ValidationError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "load_study": "mesostats.data.load",
    "Study": "mesostats.data.study",
    "example_study": "mesostats.datasets",
    "simulate_study": "mesostats.simulate",
    "fit_lmm": "mesostats.mixed.lmm",
    "fit_glmm": "mesostats.mixed.glmm",
    "MixedResults": "mesostats.mixed.results",
    "compare": "mesostats.mixed.inference",
    "fit_regrowth": "mesostats.outcomes",
    "fit_side_effects": "mesostats.outcomes",
    "RegrowthResults": "mesostats.outcomes",
    "SideEffectResults": "mesostats.outcomes",
    "variability": "mesostats.variability",
    "Variability": "mesostats.variability",
    "report": "mesostats.reporting",
    "power": "mesostats.power",
    "sample_size": "mesostats.power",
    "plot_power": "mesostats.power",
}

__all__ = [
    "ConvergenceWarning",
    "ExclusionWarning",
    "MesostatsError",
    "ModelSpecError",
    "SingularFitWarning",
    "ValidationError",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mesostats' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Three public functions share their name with the submodule that defines them
# (``mesostats.variability``, ``mesostats.power``, ``mesostats.report``). Python's import system
# binds a submodule to its parent's attribute when it is first imported, which would replace
# the function ``ms.variability`` by the module. The package therefore keeps those attributes
# for the functions: the binding of such a submodule is not stored, and the name resolves through
# ``__getattr__`` above. ``from mesostats.variability import Variability`` works as usual.
_FUNCTIONS_NAMED_LIKE_THEIR_MODULE = frozenset({"variability", "power", "report"})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS_NAMED_LIKE_THEIR_MODULE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
