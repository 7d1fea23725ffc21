"""Figures of the pathway analyses: a traced information-flow graph laid out over positions and
layers, and what cutting attention to each prompt segment does to the answer.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.flow import FlowGraph, FlowNode
from iteration_heads.pathways.segments import SegmentPathways

KIND_COLOURS = {"writes": "#d62728", "value": "#1f77b4", "query": "#2ca02c"}
"""Colour of each edge kind of a flow graph."""


def _spot(node: FlowNode, n_heads: int) -> tuple[float, float]:
    """Heads between the streams they read and write, spread over their layer; tokens on the
    stream entering their layer."""
    if node.role != "head":
        return float(node.position), float(node.layer)
    spread = 0.0 if n_heads < 2 else 0.3 * (node.head / (n_heads - 1) - 0.5)
    return node.position + spread, node.layer + 0.5


def flow_graph_chart(
    graph: FlowGraph,
    *,
    decode: Callable[[list[int]], list[str]] | None = None,
    names: Sequence[str] | None = None,
) -> go.Figure:
    """The graph at x = position, y = layer (heads half a layer above the stream they read):
    nodes labelled ``"L1H0@7 ('3')"`` with the token they write or move, one line per edge
    (width ∝ weight, colour by kind), positions named by ``decode`` (token ids -> strings) or
    ``names`` (one per vocabulary id).

    Example:
        >>> import torch
        >>> from iteration_heads import zoo
        >>> from iteration_heads.pathways.flow import trace_flow
        >>> graph = trace_flow(zoo.load("polynomial_paper"), torch.tensor([15, 3, 2, 11, 3, 7]))
        >>> flow_graph_chart(graph).data[-1].name
        'nodes'
    """
    if not isinstance(graph, FlowGraph):
        raise IterationHeadsError(
            f"graph must be a FlowGraph (from iteration_heads.pathways.trace_flow), got "
            f"{type(graph).__name__}"
        )
    tokens = graph.tokens.tolist()
    if decode is not None:
        labels = [str(x) for x in decode(tokens)]
    elif names is not None:
        if max(tokens) >= len(names):
            raise IterationHeadsError(f"{len(names)} names for token ids up to {max(tokens)}")
        labels = [str(names[t]) for t in tokens]
    else:
        labels = [str(t) for t in tokens]
    if len(labels) != len(tokens):
        raise IterationHeadsError(f"decode gave {len(labels)} labels for {len(tokens)} tokens")

    def word(token: int | None) -> str:
        if token is None:
            return ""
        return str(names[token]) if names is not None and token < len(names) else str(token)

    n_heads = 1 + max((n.head for n in graph.nodes), default=0)
    carried = {e.source: e.token for e in graph.edges if e.kind != "query"}  # written / moved
    top = max((abs(e.weight) for e in graph.edges), default=1.0) or 1.0
    fig, shown = go.Figure(), set()
    for e in graph.edges:
        (x0, y0), (x1, y1) = _spot(e.source, n_heads), _spot(e.target, n_heads)
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={"width": 1 + 7 * abs(e.weight) / top, "color": KIND_COLOURS[e.kind]},
                name=e.kind,
                legendgroup=e.kind,
                showlegend=e.kind not in shown,
                customdata=[e.weight, e.weight],
                hovertemplate=html.escape(f"{e.kind}: {e.source.name} -> {e.target.name}")
                + ": %{customdata:.3f}<extra></extra>",
            )
        )
        shown.add(e.kind)
    spots = [_spot(n, n_heads) for n in graph.nodes]
    text = [
        f"{n.name} ('{word(carried.get(n))}')" if n.role == "head" else n.name for n in graph.nodes
    ]
    fig.add_trace(
        go.Scatter(
            x=[x for x, _ in spots],
            y=[y for _, y in spots],
            mode="markers+text",
            text=text,
            textposition="top center",
            marker={
                "size": 14,
                "symbol": ["circle" if n.role == "head" else "square" for n in graph.nodes],
                "color": ["#636363" if n.role == "head" else "#fdae6b" for n in graph.nodes],
            },
            name="nodes",
            showlegend=False,
            hovertemplate="%{text}<extra></extra>",
        )
    )
    positions = sorted({n.position for n in graph.nodes})
    fig.update_xaxes(
        title_text="position",
        tickvals=positions,
        ticktext=[f"{html.escape(labels[p])} ({p})" for p in positions],
    )
    n_layers = max(n.layer for n in graph.nodes)
    fig.update_yaxes(title_text="layer", tickvals=list(range(n_layers + 1)))
    fig.update_layout(
        title=html.escape(
            f"Information flow to token {word(graph.target)} at position {graph.position}"
        ),
        height=260 + 90 * n_layers,
        width=900,
    )
    return fig


def segment_chart(result: SegmentPathways) -> go.Figure:
    """Grouped bars per label: each cut segment's share of the answer-logit drop (top) and the
    accuracy with it cut (bottom; black dots: the clean accuracy).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> from iteration_heads.pathways.segments import segment_pathways
        >>> data = make_dataset(DataConfig(max_len=4, n_train=8, n_test=2))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> result = segment_pathways(zoo.load("polynomial_paper"), prompts)
        >>> [trace.name for trace in segment_chart(result).data][::2]
        ['input', 'chain of thought', 'clean accuracy']
    """
    if not isinstance(result, SegmentPathways):
        raise IterationHeadsError(
            f"result must be a SegmentPathways (from iteration_heads.pathways.segment_pathways), "
            f"got {type(result).__name__}"
        )
    table = result.to_frame()
    labels = list(dict.fromkeys(table["label"]))
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        subplot_titles=["share of the answer-logit drop", "accuracy with the segment cut"],
    )
    for cut in result.cuts:
        rows = table[table["cut"] == cut].set_index("label").reindex(labels)
        for row, metric in ((1, "share"), (2, "accuracy")):
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=[float(v) for v in rows[metric]],
                    name=cut,
                    legendgroup=cut,
                    showlegend=row == 1,
                    texttemplate="%{y:.2f}",
                    textposition="outside",
                    hovertemplate=html.escape(cut) + " cut, %{x}: %{y:.3f}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    clean = table.drop_duplicates("label").set_index("label").reindex(labels)
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=[float(v) for v in clean["clean_accuracy"]],
            mode="markers",
            marker={"color": "black", "symbol": "line-ew-open", "size": 18},
            name="clean accuracy",
            hovertemplate="clean, %{x}: %{y:.3f}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="share", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.1], row=2, col=1)
    fig.update_layout(
        title=f"Attention to one segment cut (scope {result.scope!r})",
        barmode="group",
        height=620,
        width=900,
    )
    return fig
