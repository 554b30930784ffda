"""Figures of the report: matplotlib drawings embedded as base64 PNG data URIs.

Axes-level plots are drawn on a figure made without pyplot (no global state); figure-level
plots (seaborn grids, made through pyplot) are rendered and their figures closed. A drawing
runs as a guarded step (:func:`~mesostats.reporting.steps.guarded`), so a failed figure shows
its reason instead of breaking the report.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure

from mesostats.reporting.steps import Failure, Figure, MessageLog, guarded

__all__ = ["FIGURE_DPI", "draw_figure", "facets_uri", "png_data_uri"]

#: Figure resolution (dots per inch) of the embedded PNGs.
FIGURE_DPI = 100


def png_data_uri(figure: Any, *, tight: bool = False) -> str:
    """A matplotlib figure as a ``data:image/png;base64,…`` URI (PNG at :data:`FIGURE_DPI`;
    ``tight`` crops to the drawn area, for figures not laid out by matplotlib)."""
    buffer = io.BytesIO()
    figure.savefig(
        buffer,
        format="png",
        dpi=FIGURE_DPI,
        metadata={"Software": None},
        bbox_inches="tight" if tight else None,
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _axes_uri(draw: Callable[[Axes], Any], size: tuple[float, float]) -> str:
    """Draw on the Axes of a new figure (no pyplot, no global state); return its data URI."""
    fig = MplFigure(figsize=size, dpi=FIGURE_DPI, layout="constrained")
    draw(fig.add_subplot())
    return png_data_uri(fig)


def draw_figure(
    log: MessageLog,
    what: str,
    draw: Callable[[Axes], Any],
    *,
    size: tuple[float, float],
    alt: str,
    caption: str,
) -> Figure | Failure:
    """Draw one axes-level figure as a guarded step: the figure, or why it is missing."""
    uri, failure = guarded(log, what, lambda: _axes_uri(draw, size))
    if failure is not None or uri is None:
        return failure or Failure(what, "no figure was drawn")
    return Figure(uri=uri, alt=alt, caption=caption, width=int(size[0] * FIGURE_DPI))


def facets_uri(draw: Callable[[], Any]) -> str:
    """Render a figure-level plot (a seaborn grid made through pyplot), then close it."""
    before = set(plt.get_fignums())
    try:
        grid = draw()
        return png_data_uri(grid.figure, tight=True)
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
