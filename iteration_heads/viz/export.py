"""Saving figures: one self-contained HTML file (plotly.js or the circuitsvis bundle inlined, no
CDN), or PNG when kaleido and a Chromium are installed (optional); figures in notebooks that
static viewers show (:func:`notebook_figures`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from iteration_heads._io import write_output_bytes, write_output_text
from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import check_number
from iteration_heads.viz.attention import AttentionView


def save_html(obj: go.Figure | AttentionView, path: str | os.PathLike[str]) -> Path:
    """Write a figure or attention view as one self-contained HTML file (no CDN), atomically,
    creating missing folders.

    Example:
        >>> import tempfile
        >>> path = save_html(go.Figure(go.Bar(y=[1, 2])), Path(tempfile.mkdtemp()) / "f.html")
        >>> "cdn.plot.ly/plotly" in path.read_text()
        False
    """
    out = Path(path)
    if isinstance(obj, AttentionView):
        return obj.save(out)
    if isinstance(obj, go.Figure):
        write_output_text(out, obj.to_html(include_plotlyjs=True, full_html=True))
        return out
    raise IterationHeadsError(
        f"save_html takes a plotly Figure or an AttentionView, got {type(obj).__name__}"
    )


def find_chromium() -> str | None:
    """Path of a Chromium to drive headless (``BROWSER_PATH``, then ``chromium`` on PATH).

    Example:
        >>> find_chromium() is None or Path(find_chromium()).exists()
        True
    """
    explicit = os.environ.get("BROWSER_PATH")
    if explicit and Path(explicit).exists():
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell"):
        found = shutil.which(name)
        if found:
            return found
    return None


def save_png(fig: go.Figure, path: str | os.PathLike[str], *, scale: float = 1.0) -> Path:
    """Export a figure as PNG (optional: needs ``kaleido>=1`` and a Chromium).

    Raises:
        IterationHeadsError: saying what to install when kaleido or a browser is missing.
    """
    check_number("scale", scale, minimum=0, open_min=True)
    if not isinstance(fig, go.Figure):
        raise IterationHeadsError(f"save_png takes a plotly Figure, got {type(fig).__name__}")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise IterationHeadsError(
            "PNG export needs kaleido>=1: pip install 'kaleido>=1' (and a Chromium: "
            "apt-get install chromium); HTML export needs neither (save_html)"
        ) from None
    browser = find_chromium()
    if browser is None:
        raise IterationHeadsError(
            "PNG export needs a Chromium browser: apt-get install chromium (Debian), or set "
            "BROWSER_PATH to a chromium-headless-shell; HTML export needs none (save_html)"
        )
    os.environ.setdefault("BROWSER_PATH", browser)
    out = Path(path)
    write_output_bytes(out, fig.to_image(format="png", scale=scale))  # atomically
    return out


NOTEBOOK_RENDERER = "plotly_mimetype+iteration_heads_html"
"""plotly's renderer that :func:`notebook_figures` selects."""


class _OfflineHtml(pio.base_renderers.NotebookRenderer):
    """plotly's "notebook" renderer without the MathJax script it loads from a CDN."""

    def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, str]:
        page = pio.to_html(
            fig_dict,
            config=self.config,
            include_plotlyjs=False,  # embedded once, by the renderer's activation
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=525,
            validate=False,
        )
        return {"text/html": page}


def notebook_figures() -> None:
    """Show plotly figures in notebooks as plotly's JSON (interactive in Jupyter) and as HTML with
    plotly.js embedded once (no CDN), which static viewers such as nbviewer, VS Code and
    ``jupyter nbconvert --to html`` show: sets plotly's default renderer to
    ``NOTEBOOK_RENDERER``.

    plotly's own ``"notebook"`` renderer would load MathJax from a CDN in every figure.

    Example:
        >>> import plotly.io as pio
        >>> before = pio.renderers.default
        >>> notebook_figures()
        >>> pio.renderers.default
        'plotly_mimetype+iteration_heads_html'
        >>> bundle = pio.renderers["iteration_heads_html"].to_mimebundle(go.Figure().to_dict())
        >>> "Plotly.newPlot" in bundle["text/html"], "src=" in bundle["text/html"]
        (True, False)
        >>> pio.renderers.default = before
    """
    pio.renderers["iteration_heads_html"] = _OfflineHtml(connected=False)
    pio.renderers.default = NOTEBOOK_RENDERER
