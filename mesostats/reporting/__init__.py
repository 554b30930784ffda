"""One self-contained, static HTML report of a study: :func:`report`.

The report is rendered from the Jinja2 templates in ``templates/`` (shipped inside the
package) with autoescaping on; figures are embedded as base64 PNG data URIs, so the file
needs no network, no other file and no JavaScript. See :mod:`mesostats.reporting.build`
(assembly), :mod:`~mesostats.reporting.sections` (one module per section),
:mod:`~mesostats.reporting.steps` (guarded steps and the message banner),
:mod:`~mesostats.reporting.figures` and :mod:`~mesostats.reporting.write`.
"""

from __future__ import annotations

from mesostats.reporting.build import report

__all__ = ["report"]
