"""One self-contained HTML page built of sections: plotly.js inlined once, a library error in a
section shown as a note instead of failing the page."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from iteration_heads._io import write_text
from iteration_heads.errors import IterationHeadsError

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 6px 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; } .configs { display: flex; gap: 24px; flex-wrap: wrap; }
.configs table td:first-child { text-align: left; } .note { color: #666; font-style: italic; }
.verdict { font-weight: bold; }
"""
"""The pages' stylesheet (inlined)."""

PAGE_WIDTH = 1200
"""Width of a page's content in pixels (``max-width`` of ``STYLE``): wider figures are scaled
down to it, so every view fits a 1,300 px window."""


def fit_width(fig: go.Figure, width: int = PAGE_WIDTH) -> go.Figure:
    """``fig`` scaled down to ``width`` pixels, aspect kept (a copy), or ``fig`` if it fits.

    Example:
        >>> fig = fit_width(go.Figure(layout={"width": 1800, "height": 600}))
        >>> fig.layout.width, fig.layout.height
        (1200, 400)
        >>> fit_width(go.Figure(layout={"width": 800})).layout.width
        800
    """
    wide = fig.layout.width
    if wide is None or wide <= width:
        return fig
    scaled = go.Figure(fig)
    height = fig.layout.height
    scaled.update_layout(
        width=width, height=None if height is None else round(height * width / wide)
    )
    return scaled


def write_shared_plotly(folder: Path) -> Path:
    """Write ``folder/plotly.min.js`` (atomically) unless it is there: the script that pages
    written with ``include_plotlyjs="directory"`` (or ``HtmlPage(plotly="directory")``) load.

    Example:
        >>> import tempfile
        >>> path = write_shared_plotly(Path(tempfile.mkdtemp()))
        >>> path.name, path.stat().st_size > 1_000_000
        ('plotly.min.js', True)
    """
    path = folder / "plotly.min.js"
    if not path.is_file():
        write_text(path, get_plotlyjs())
    return path


class HtmlPage:
    """Sections of HTML; plotly.js goes into the first figure only.

    Example:
        >>> page = HtmlPage("demo")
        >>> page.section("Figure", lambda: page.figure(go.Figure(go.Bar(y=[1]))))
        >>> text = page.html()
        >>> text.count("plotly.js v"), "<h2>Figure</h2>" in text
        (1, True)
    """

    def __init__(self, title: str, *, plotly: Literal["inline", "directory"] = "inline") -> None:
        # "directory": pages that sit next to a shared plotly.min.js (docs/results/)
        self.title = title
        self.parts: list[str] = []
        self.plotly_included = False
        self.plotly = plotly

    def add(self, text: str) -> None:
        """Append raw HTML."""
        self.parts.append(text)

    def figure(self, fig: go.Figure) -> None:
        """Append a plotly figure (plotly.js inlined the first time), no wider than the page."""
        self.add(
            fit_width(fig).to_html(
                full_html=False,
                include_plotlyjs=(
                    False
                    if self.plotly_included
                    else "directory"
                    if self.plotly == "directory"
                    else True
                ),
                config={"displaylogo": False},
            )
        )
        self.plotly_included = True

    def section(self, title: str, build: Callable[[], None]) -> None:
        """A section; a library error while building it becomes a note, not a failed page."""
        self.add(f"<h2>{html.escape(title)}</h2>")
        try:
            build()
        except IterationHeadsError as err:
            self.add(f'<p class="note">skipped: {html.escape(str(err))}</p>')

    def html(self) -> str:
        """The whole page."""
        body = "\n".join(self.parts)
        return (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(self.title)}'
            f"</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
        )


def key_value_table(values: dict[str, Any], title: str) -> str:
    """A two-column HTML table of ``values`` under ``title`` (floats shortened).

    Example:
        >>> key_value_table({"lr": 0.0003}, "train")
        '<table><tr><th colspan=2>train</th></tr><tr><td>lr</td><td>0.0003</td></tr></table>'
    """
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_short(v))}</td></tr>"
        for k, v in values.items()
    )
    return f"<table><tr><th colspan=2>{html.escape(title)}</th></tr>{rows}</table>"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
    return str(value)
