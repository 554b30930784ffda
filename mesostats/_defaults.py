"""Default settings that several layers share, in one place.

Plain numbers with no imports, so the command line can show them in ``--help`` without
loading numpy or pandas.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DROPOUT", "DEFAULT_MISSING_RATE", "SIDE_EFFECT_NAGQ"]

#: Per-visit dropout hazard of a simulated study (monotone dropout).
DEFAULT_DROPOUT = 0.03
#: Share of outcome values missing at random in a simulated study.
DEFAULT_MISSING_RATE = 0.02
#: Adaptive Gauss–Hermite nodes of the side-effect GLMM in the report and ``mesostats fit``
#: (exact maximum likelihood for a binary outcome; ``fit_side_effects`` itself defaults to
#: Laplace, nagq=1, as lme4 does).
SIDE_EFFECT_NAGQ = 25
