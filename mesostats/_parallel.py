"""Parallel-execution helpers shared by the engines: BLAS thread limits.

The engines do memory-bound elementwise arithmetic over groups plus many tiny LAPACK calls;
with OpenBLAS threads on a busy machine each small call can cost milliseconds of thread
synchronisation (measured: a deviance evaluation ten times slower, a sleepstudy profile 26 s
instead of 2.5 s). :func:`single_threaded_blas` limits BLAS to one thread with threadpoolctl.
Its controller (which scans the loaded shared libraries, ~5 ms) is built once, on first use,
and reused: BLAS is loaded with numpy, before any fit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from threadpoolctl import ThreadpoolController

__all__ = ["blas_single_threaded", "single_threaded_blas"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@functools.cache
def _controller() -> ThreadpoolController:
    """The process's threadpool controller, built once."""
    return ThreadpoolController()


def single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """Context manager: BLAS limited to one thread inside, restored on exit."""
    return _controller().limit(limits=1, user_api="blas")


def blas_single_threaded(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: run ``func`` inside :func:`single_threaded_blas`."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with single_threaded_blas():
            return func(*args, **kwargs)

    return wrapper
