"""Old path of :mod:`mesostats.cli.power`, kept for one release: re-exports the power command
(``add_power_subcommand`` is :func:`mesostats.cli.power.add_power`).

No DeprecationWarning yet, because ``tests/test_power.py`` (outside the CLI's tests) still
imports this path; add one when it has moved.
"""

from __future__ import annotations

from mesostats.cli.power import add_power as add_power_subcommand
from mesostats.cli.power import run_power

__all__ = ["add_power_subcommand", "run_power"]
