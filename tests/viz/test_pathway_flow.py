"""Figures of the pathway analyses carry the numbers of their results and refuse anything else."""

from __future__ import annotations

import pytest
import torch

from iteration_heads import DataConfig, IterationHeadsError, make_dataset, zoo
from iteration_heads.pathways.flow import trace_flow
from iteration_heads.pathways.prompts import iteration_prompts
from iteration_heads.pathways.segments import segment_pathways
from iteration_heads.viz.pathway_flow import KIND_COLOURS, flow_graph_chart, segment_chart


@pytest.fixture(scope="module")
def model():
    return zoo.load("polynomial_paper")


@pytest.fixture(scope="module")
def prompts():
    data = make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=2))
    return iteration_prompts(data.test, data.layout), data.layout


def test_flow_graph_chart_draws_every_node_and_edge(model, prompts) -> None:
    items, layout = prompts
    graph = trace_flow(model, items, index=17)
    fig = flow_graph_chart(graph, decode=layout.decode)
    *edges, nodes = fig.data
    assert len(edges) == len(graph.edges) and len(nodes.x) == len(graph.nodes)
    top = max(abs(e.weight) for e in graph.edges)
    for trace, edge in zip(edges, graph.edges, strict=True):
        assert trace.customdata[0] == pytest.approx(edge.weight)
        assert trace.line.width == pytest.approx(1 + 7 * abs(edge.weight) / top)
        assert trace.line.color == KIND_COLOURS[edge.kind]
    heads = {n.name: (x, y) for n, x, y in zip(graph.nodes, nodes.x, nodes.y, strict=True)}
    q = graph.position
    assert heads[f"L1H0@{q}"] == (q, 1.5) and heads[graph.root.name] == (q, 2)
    writes = next(e for e in graph.edges if e.source.name == f"L1H0@{q}")
    assert f"L1H0@{q} ('{writes.token}')" in nodes.text
    ticks = dict(zip(fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext, strict=True))
    assert ticks[q] == f"{layout.decode(items.clean[17].tolist())[q]} ({q})"
    named = flow_graph_chart(graph, names=[f"t{i}" for i in range(16)])
    assert named.layout.xaxis.ticktext[0].startswith("t")


def test_segment_chart_carries_share_and_accuracy(model, prompts) -> None:
    result = segment_pathways(model, prompts[0])
    fig = segment_chart(result)
    table = result.to_frame()
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["input", "input", "chain of thought", "chain of thought"]
    for trace, metric in zip(bars, ["share", "accuracy"] * 2, strict=True):
        rows = table[table["cut"] == trace.name]
        assert list(trace.x) == list(rows["label"])
        assert list(trace.y) == pytest.approx(list(rows[metric]))
    clean = fig.data[-1]
    assert clean.name == "clean accuracy" and list(clean.y) == [1.0] * len(clean.x)


def test_wrong_input_raises(model, prompts) -> None:
    with pytest.raises(IterationHeadsError, match="must be a FlowGraph"):
        flow_graph_chart(segment_pathways(model, prompts[0].select([0])))
    with pytest.raises(IterationHeadsError, match="must be a SegmentPathways"):
        segment_chart(trace_flow(model, torch.tensor([15, 3, 11, 3])))
    graph = trace_flow(model, torch.tensor([15, 3, 11, 3]))
    with pytest.raises(IterationHeadsError, match="2 names for token ids up to 15"):
        flow_graph_chart(graph, names=["a", "b"])
    with pytest.raises(IterationHeadsError, match="decode gave 1 labels"):
        flow_graph_chart(graph, decode=lambda ids: ["x"])
