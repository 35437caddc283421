"""The pictures' common parts: an off-screen figure, and a bar per layer with its value."""

from pathlib import Path

BAR = "#4c72b0"
HIGHLIGHT = "#dd8452"


def new_figure(path: Path, width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no display needed); `path`'s folder is created.
    matplotlib is imported here: commands that draw nothing do not pay for it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def layer_bars(axes, labels: list[str], values: list[float], highlight: int) -> None:
    """One bar per layer, bar `highlight` in the second colour, each value written above it."""
    bars = axes.bar(labels, values, color=BAR)
    bars[highlight].set_color(HIGHLIGHT)
    for bar, value in zip(bars, values, strict=True):
        axes.annotate(
            f"{value:.3f}",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=8,
        )
