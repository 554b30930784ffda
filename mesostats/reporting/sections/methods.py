"""Section 7 of the report, methods: each model's formula, method, size and convergence, and
the versions of the software that produced the numbers."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from mesostats._display import format_number

__all__ = ["SOFTWARE", "methods_section", "software_versions"]

#: Distributions whose versions the methods section lists.
SOFTWARE: tuple[str, ...] = (
    "mesostats",
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "formulaic",
    "matplotlib",
    "seaborn",
    "jinja2",
)


def _model_facts(label: str, fit: Any) -> dict[str, Any]:
    """Formula, method, rows, log-likelihood and convergence of one fit."""
    m = fit.model
    groups = ", ".join(f"{g}: {n:,}" for g, n in m.ngroups.items())
    return {
        "label": label,
        "facts": [
            ("Formula", fit.formula),
            ("Fitted by", m.method),
            ("Rows", f"{m.nobs:,} ({groups})"),
            ("Log-likelihood", format_number(m.loglik, digits=6)),
            ("Converged", "yes" if m.converged else "NO"),
            ("Variance on a boundary (singular)", "yes" if m.singular else "no"),
        ],
    }


def software_versions() -> list[tuple[str, str]]:
    """(name, version) of Python and of each distribution in :data:`SOFTWARE`."""
    versions = [("python", platform.python_version())]
    for name in SOFTWARE:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return versions


def methods_section(fits: dict[str, Any], *, nagq: int) -> dict[str, Any]:
    """Facts of each fitted model, software versions and the quadrature nodes used."""
    models = []
    regrowth, side = fits["regrowth"][0], fits["side"][0]
    if regrowth is not None:
        models.append(_model_facts("Regrowth: linear mixed model", regrowth))
    if side is not None:
        models.append(_model_facts("Side effects: binomial mixed model", side))
    return {"models": models, "software": software_versions(), "nagq": nagq}
