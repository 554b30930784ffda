"""One self-contained, static HTML report of a study: :func:`report`.

The report is rendered from the Jinja2 templates in ``templates/`` (shipped inside the
package) with autoescaping on; figures are embedded as base64 PNG data URIs, so the file
needs no network, no other file and no JavaScript. See :mod:`mesostats.report.build`.

``ms.report`` is the function even though this subpackage has the same name: the package
keeps that attribute for the function (see ``mesostats/__init__.py``).
"""

from __future__ import annotations

from mesostats.report.build import report

__all__ = ["report"]
