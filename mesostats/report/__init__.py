"""Old path of :mod:`mesostats.reporting`, kept for one release: ``import mesostats.report``
still works and re-exports :func:`~mesostats.reporting.report`.

The package was renamed because a module may not share its name with the public function
``ms.report``. This shim issues no DeprecationWarning yet because tests outside the reporting
code still import it (``tests/test_api.py``); add one when they have moved.
"""

from __future__ import annotations

from mesostats.reporting import report

__all__ = ["report"]
