"""mesostats: clinical outcome statistics for mesotherapy studies.

The public names of ``API.md``. Heavy modules (plots, report, engines) load on first use so
that ``import mesostats`` stays fast; every name below is importable as
``from mesostats import name``.
"""

from __future__ import annotations

import importlib
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
    "load_redcap": "mesostats.data.redcap",
    "load_cdisc": "mesostats.data.cdisc_study",
    "save_study": "mesostats.data.save",
    "Study": "mesostats.data.study",
    "example_study": "mesostats.datasets",
    "simulate_study": "mesostats.simulate",
    "fit_lmm": "mesostats.mixed.lmm",
    "fit_glmm": "mesostats.mixed.glmm",
    "fit_clmm": "mesostats.mixed.clmm",
    "CLMMResults": "mesostats.mixed.clmm",
    "MixedResults": "mesostats.mixed.results",
    "fit_mmrm": "mesostats.mixed.mmrm",
    "MMRMResults": "mesostats.mixed.mmrm",
    "compare": "mesostats.mixed.inference",
    "marginal_means": "mesostats.mixed.marginal",
    "contrasts": "mesostats.mixed.marginal",
    "check_model": "mesostats.checks",
    "ModelCheck": "mesostats.checks",
    "fit_regrowth": "mesostats.domain",
    "fit_side_effects": "mesostats.domain",
    "fit_severity": "mesostats.domain",
    "fit_global_assessment": "mesostats.domain",
    "SeverityResults": "mesostats.domain",
    "GlobalAssessmentResults": "mesostats.domain",
    "RegrowthResults": "mesostats.domain",
    "SideEffectResults": "mesostats.domain",
    "variability": "mesostats.domain",
    "fit_trial": "mesostats.domain.trial",
    "TrialResults": "mesostats.domain.trial_results",
    "Variability": "mesostats.domain",
    "report": "mesostats.reporting",
    "power": "mesostats.planning",
    "sample_size": "mesostats.planning",
    "plot_power": "mesostats.planning",
    "sensitivity": "mesostats.imputation",
    "tipping_point": "mesostats.imputation",
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
