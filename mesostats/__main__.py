"""``python -m mesostats``: the command line of :mod:`mesostats.cli`."""

from mesostats.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
