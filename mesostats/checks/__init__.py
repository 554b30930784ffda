"""Model checks: simulated (DHARMa-style) residual tests, person effects and influence.

:func:`check_model` → :class:`ModelCheck`. This package sits between the report and the
plots (it draws with :mod:`mesostats.plots.checks`, the report shows it) and reads the fitted
models of :mod:`mesostats.mixed` and the domain results that hold them.
"""

from __future__ import annotations

from mesostats.checks.model_check import ALPHA, TEST_COLUMNS, ModelCheck, check_model

__all__ = ["ALPHA", "TEST_COLUMNS", "ModelCheck", "check_model"]
