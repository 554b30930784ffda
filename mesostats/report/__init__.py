"""One self-contained, static HTML report of a study: :func:`report`.

The report is rendered from the Jinja2 templates in ``templates/`` (shipped inside the
package) with autoescaping on; figures are embedded as base64 PNG data URIs, so the file
needs no network, no other file and no JavaScript. See :mod:`mesostats.report.build`.

``mesostats.report`` is both this subpackage and the public function
``mesostats.report(study, path)``: once the subpackage is imported, Python's import system
sets the attribute ``mesostats.report`` to the *module*, whatever ``mesostats/__init__.py``
maps the name to. So the module is made callable: calling it calls :func:`report`, and
``ms.report(study, "report.html")`` works in every import order.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from mesostats.report.build import report

__all__ = ["report"]


class _CallableModule(types.ModuleType):
    """This package's module type: calling the module calls :func:`report`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
