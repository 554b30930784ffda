"""The pre-specified covariance fallback of the primary analysis (:func:`fit_with_fallback`).

Statistical analysis plans of MMRM primary analyses fix, before unblinding, the
within-subject covariance to use when the unstructured one cannot be fitted (Mallinckrodt et
al. 2008, *Drug Inf. J.* 42(4), "Recommendations for the primary analysis of continuous
endpoints in longitudinal clinical trials"; EMA/CHMP Guideline on missing data in
confirmatory clinical trials, 2010). The order used here, :data:`FALLBACK_ORDER`, is

    us → toeph → ar1h → cs

each step estimating fewer parameters (v(v+1)/2, 2v − 1, v + 1, 2 for v visits) while keeping
what matters longest: the variance of the change from baseline usually grows with time, so
the heterogeneous structures (a variance per visit) come first; heterogeneous Toeplitz keeps
a correlation per lag, heterogeneous AR(1) a geometric decay; compound symmetry (one
variance, one correlation) is the last resort. A structure "does not converge" when the
engine reports ``converged=False`` or cannot fit it (an error such as a covariance that is
not positive definite); each attempt is recorded, and the messages say which structure was
used and why the earlier ones were not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import MesostatsError, ModelSpecError

__all__ = [
    "ATTEMPT_COLUMNS",
    "COVARIANCE_STRUCTURES",
    "FALLBACK_ORDER",
    "FallbackFit",
    "covariance_order",
    "fit_with_fallback",
]

#: The pre-specified order: unstructured, heterogeneous Toeplitz, heterogeneous AR(1),
#: compound symmetry.
FALLBACK_ORDER: tuple[str, ...] = ("us", "toeph", "ar1h", "cs")
#: Structures fit_trial accepts (those of :func:`mesostats.fit_mmrm` on a visit factor).
COVARIANCE_STRUCTURES: dict[str, str] = {
    "us": "unstructured",
    "toep": "Toeplitz",
    "toeph": "heterogeneous Toeplitz",
    "ar1": "AR(1)",
    "ar1h": "heterogeneous AR(1)",
    "ad": "ante-dependence",
    "adh": "heterogeneous ante-dependence",
    "cs": "compound symmetry",
    "csh": "heterogeneous compound symmetry",
}
#: Columns of :attr:`FallbackFit.attempts`.
ATTEMPT_COLUMNS = ["covariance", "converged", "used", "message"]

#: Failures of one structure that move on to the next (anything else is a bug and propagates).
_FIT_FAILURES = (MesostatsError, ValueError, ArithmeticError, np.linalg.LinAlgError)


def covariance_order(covariance: str | Sequence[str]) -> tuple[str, ...]:
    """The structures to try, in order.

    A structure of :data:`FALLBACK_ORDER` gives the order from it on (``"us"``: all four;
    ``"ar1h"``: ar1h then cs); another structure is tried alone; a sequence is the caller's
    own pre-specified order.
    """
    if isinstance(covariance, str):
        if covariance in FALLBACK_ORDER:
            order: tuple[str, ...] = FALLBACK_ORDER[FALLBACK_ORDER.index(covariance) :]
        else:
            order = (covariance,)
    elif isinstance(covariance, Sequence) and covariance:
        order = tuple(covariance)
    else:
        order = ()
    bad = [c for c in order if not isinstance(c, str) or c not in COVARIANCE_STRUCTURES]
    if not order or bad or len(set(order)) != len(order):
        raise ModelSpecError(
            f"covariance must be one of {', '.join(COVARIANCE_STRUCTURES)} or a sequence of "
            f"them without repeats (the fallback order), got {covariance!r}."
        )
    return order


@dataclass(frozen=True)
class FallbackFit:
    """The fit of the first structure that converged, and every attempt."""

    model: Any
    covariance: str
    attempts: pd.DataFrame
    messages: tuple[str, ...]


def fit_with_fallback(fit: Callable[[str], Any], order: Sequence[str]) -> FallbackFit:
    """Fit each structure of ``order`` in turn until one converges.

    Parameters
    ----------
    fit : callable
        ``fit(structure) -> results`` with a ``converged`` attribute (and ``messages``).
    order : sequence of str
        From :func:`covariance_order`.

    Returns
    -------
    FallbackFit

    Raises
    ------
    ModelSpecError
        No structure converged; the message gives each one's reason.
    """
    rows: list[tuple[str, bool, bool, str]] = []
    for structure in order:
        try:
            model = fit(structure)
        except _FIT_FAILURES as err:
            rows.append((structure, False, False, f"not fitted: {err}"))
            continue
        if bool(getattr(model, "converged", False)):
            rows.append((structure, True, True, "converged"))
            attempts = pd.DataFrame(rows, columns=ATTEMPT_COLUMNS)
            return FallbackFit(model, structure, attempts, _messages(rows, order))
        said = "; ".join(str(m) for m in getattr(model, "messages", ()) or ())
        rows.append((structure, False, False, "did not converge" + (f": {said}" if said else "")))
    tried = "; ".join(f"{s}: {m}" for s, _, _, m in rows)
    raise ModelSpecError(
        f"no covariance structure of the pre-specified order ({' → '.join(order)}) could be "
        f"fitted: {tried}. Check the visits (people per visit), or give a simpler structure, "
        "e.g. covariance='cs'."
    )


def _messages(rows: list[tuple[str, bool, bool, str]], order: Sequence[str]) -> tuple[str, ...]:
    used = rows[-1][0]
    if len(rows) == 1:
        return (
            f"Covariance: {_name(used)} ({used}), the first of the pre-specified order "
            f"{' → '.join(order)}, converged.",
        )
    failed = "; ".join(f"{_name(s)} ({s}) {m}" for s, _, _, m in rows[:-1])
    return (
        f"Covariance fallback: {failed}. Used {_name(used)} ({used}), the next structure of "
        f"the pre-specified order {' → '.join(order)}.",
    )


def _name(structure: str) -> str:
    return COVARIANCE_STRUCTURES.get(structure, structure)
