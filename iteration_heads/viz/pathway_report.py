"""One self-contained HTML page of the pathway analyses run on any model
(``iteration-heads pathways PATH --report FILE``): what was run on which prompts, each result's
text, its figure, and a line for every analysis that was skipped and why."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from iteration_heads._io import checked_output, write_output_text
from iteration_heads._results import Result
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.flow import FlowGraph
from iteration_heads.pathways.pruning import PruningCurve
from iteration_heads.pathways.pruning_attribution import LinearPruningCurve
from iteration_heads.pathways.restoration import HeadPatching
from iteration_heads.pathways.rift import LogitLens
from iteration_heads.pathways.segments import SegmentPathways
from iteration_heads.pathways.writers import AnswerWriters
from iteration_heads.viz.page import HtmlPage
from iteration_heads.viz.pathway_circuits import (
    head_patching_heatmap,
    linear_pruning_chart,
    pruning_chart,
)
from iteration_heads.viz.pathway_flow import flow_graph_chart, segment_chart
from iteration_heads.viz.pathway_layers import logit_lens_chart, writers_chart

FIGURE_CLASS = "pathway-figure"
"""The class of the ``div`` around every figure of the page (its ``id``: ``figure-<key>``)."""


def _figure_of(result: Any, names: Sequence[str] | None) -> Callable[[], go.Figure] | None:
    """The figure that draws ``result``, or None for results shown as text only."""
    if isinstance(result, HeadPatching):
        return partial(head_patching_heatmap, result)
    if isinstance(result, AnswerWriters):
        return partial(writers_chart, result)
    if isinstance(result, LogitLens):
        return partial(logit_lens_chart, result)
    if isinstance(result, SegmentPathways):
        return partial(segment_chart, result)
    if isinstance(result, PruningCurve):
        return partial(pruning_chart, result)
    if isinstance(result, LinearPruningCurve):
        return partial(linear_pruning_chart, result)
    if isinstance(result, FlowGraph):
        return partial(flow_graph_chart, result, names=names)
    return None


def pathway_report_html(
    results: Mapping[str, Any],
    *,
    title: str,
    summary: Sequence[str] = (),
    skipped: Mapping[str, str] | None = None,
    names: Sequence[str] | None = None,
) -> str:
    """The page: ``summary`` lines, then one section per result (its text, and its figure for
    head patching, answer writers, the logit lens, segment knockouts, pruning curves and a
    traced flow), then the skipped analyses with their reasons. ``names``: the vocabulary's
    token strings, to label a traced flow.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import answer_writers, iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=4, n_train=2, n_test=2))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> page = pathway_report_html(
        ...     {"writers": answer_writers(zoo.load("polynomial_paper"), prompts)},
        ...     title="demo", skipped={"lens": "no prior"})
        >>> page.count('class="pathway-figure"'), "no prior" in page
        (1, True)
    """
    skipped = dict(skipped or {})
    page = HtmlPage(title)
    page.add(f"<h1>{html.escape(title)}</h1>")
    for line in summary:
        page.add(f"<p>{html.escape(line)}</p>")
    for key, result in results.items():
        if not isinstance(result, Result):
            raise IterationHeadsError(
                f"results[{key!r}] is a {type(result).__name__}, expected a result object of "
                "iteration_heads.pathways"
            )
        page.section(key, partial(_section, page, key, result, names))
    if skipped:
        page.add("<h2>Skipped</h2>")
        items = "".join(
            f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped.items()
        )
        page.add(f'<ul class="skipped">{items}</ul>')
    return page.html()


def _section(page: HtmlPage, key: str, result: Result, names: Sequence[str] | None) -> None:
    wrap = "white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.8em"  # fits the page
    page.add(f'<pre style="{wrap}">{html.escape(result.format())}</pre>')
    make = _figure_of(result, names)
    if make is not None:
        figure = make()
        page.add(f'<div class="{FIGURE_CLASS}" id="figure-{re.sub("[^a-z0-9]+", "-", key)}">')
        page.figure(figure)
        page.add("</div>")


def write_pathway_report(
    path: str | os.PathLike[str],
    results: Mapping[str, Any],
    *,
    title: str,
    summary: Sequence[str] = (),
    skipped: Mapping[str, str] | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """Write :func:`pathway_report_html` to ``path`` (one offline HTML file, plotly.js inlined).

    Example:
        >>> import tempfile
        >>> out = write_pathway_report(Path(tempfile.mkdtemp()) / "p.html", {}, title="empty")
        >>> "<h1>empty</h1>" in out.read_text()
        True
    """
    out = checked_output(path)
    text = pathway_report_html(results, title=title, summary=summary, skipped=skipped, names=names)
    write_output_text(out, text)
    return out
