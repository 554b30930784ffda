"""Missing-data sensitivity of a trial's primary analysis: multiple imputation under MAR and
reference-based assumptions (:func:`sensitivity`) and the tipping point (:func:`tipping_point`).

Files: ``setup`` (the person × visit grid of a fit_trial result), ``impute`` (posterior draws
and conditional-normal imputation), ``pooling`` (per-visit ANCOVA, Rubin's rules), ``api``.
"""

from mesostats.imputation.api import sensitivity, tipping_point
from mesostats.imputation.impute import METHODS

__all__ = ["METHODS", "sensitivity", "tipping_point"]
