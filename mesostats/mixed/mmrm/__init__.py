"""Mixed models for repeated measures (MMRM): structured within-subject covariance, no
random effects, fitted by (RE)ML as SAS PROC MIXED's REPEATED statement and R's mmrm do.

``fit_mmrm`` (in :mod:`mesostats.mixed.mmrm.fit`) is the entry point.
"""

from mesostats.mixed.mmrm.fit import fit_mmrm
from mesostats.mixed.mmrm.results import MMRMResults

__all__ = ["MMRMResults", "fit_mmrm"]
