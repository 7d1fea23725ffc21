"""The graph :func:`~iteration_heads.pathways.flow.trace_flow` builds: nodes (heads at a
position, tokens in the stream), edges (writes, value and query reads) and the graph's views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxtyping import Int
from torch import Tensor

from iteration_heads._results import Result


@dataclass(frozen=True, order=True)
class FlowNode:
    """A head at a position (``role="head"``), or a token in the stream entering ``layer`` at
    ``position``: ``"answer"`` (``layer = n_layers``), ``"embedding"`` or ``"moved"`` (lens)."""

    layer: int
    position: int
    head: int = -1
    token: int = -1
    role: str = "head"

    @property
    def name(self) -> str:
        """``"L1H0@7"``, ``"answer 3@7"``, ``"embedding 9@2"`` or ``"L1 in 5@3"``."""
        if self.role == "head":
            return f"L{self.layer}H{self.head}@{self.position}"
        prefix = f"L{self.layer} in" if self.role == "moved" else self.role
        return f"{prefix} {self.token}@{self.position}"


@dataclass(frozen=True)
class FlowEdge:
    """``weight``: the writer's score (``"writes"``), the attention on the source (``"value"``)
    or the share of the attention score on ``key`` (``"query"``); ``token``: written or moved;
    ``position`` and its ``segment``: where it happens; ``prob``: Dutta's probability of the
    token under the logit lens of the head's output alone (``"writes"``)."""

    source: FlowNode
    target: FlowNode
    kind: str
    weight: float
    token: int | None
    position: int
    segment: str | None
    depth: int
    prob: float | None = None
    key: int | None = None


@dataclass(frozen=True, repr=False)
class FlowGraph(Result):
    """The traced graph of one prediction (module docstring); ``nodes[0]`` is the answer.

    Attributes:
        nodes, edges: The graph in tracing order.
        tokens, position, target: The input, the studied position and the traced token;
            ``answer``, ``label``, ``segments`` (per position): from prompts, else None.
        centre: What the writers of the traced token were scored against: ``"foils"`` (the
            prompt's answer and foils, the token itself left out) or ``"vocab"``.
    """

    nodes: tuple[FlowNode, ...]
    edges: tuple[FlowEdge, ...]
    tokens: Int[Tensor, " pos"]
    position: int
    target: int
    answer: int | None
    label: str | None
    segments: tuple[str | None, ...]
    centre: str = "vocab"

    @property
    def root(self) -> FlowNode:
        """The answer node."""
        return self.nodes[0]

    def heads(self) -> list[tuple[int, int]]:
        """The distinct ``(layer, head)`` of the graph, sorted."""
        return sorted({(n.layer, n.head) for n in self.nodes if n.role == "head"})

    def incoming(self) -> dict[FlowNode, list[FlowEdge]]:
        """The edges into each node."""
        return {n: into for n in self.nodes if (into := [e for e in self.edges if e.target == n])}

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` keyed by node name, every field an attribute."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from((n.name, vars(n)) for n in self.nodes)
        graph.add_edges_from((e["source"], e["target"], e) for e in self.to_dict()["edges"])
        return graph

    def paths(self) -> list[list[FlowNode]]:
        """Every path from the answer back to a leaf (a node nothing flows into)."""
        incoming, found, stack = self.incoming(), [], [[self.root]]
        while stack:
            path = stack.pop()
            parents = [e.source for e in incoming.get(path[-1], [])]
            found += [] if parents else [path]
            stack += [[*path, parent] for parent in reversed(parents)]
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the prediction, nodes and edges (nodes referred to by name)."""
        keys = ("position", "target", "answer", "label", "tokens", "segments", "centre")
        edges = [vars(e) | {"source": e.source.name, "target": e.target.name} for e in self.edges]
        nodes = [vars(n) | {"name": n.name} for n in self.nodes]
        return {k: getattr(self, k) for k in keys} | {"nodes": nodes, "edges": edges}

    def format(self) -> str:
        """The prediction, then the graph as an indented tree from the answer back."""
        answer = "" if self.answer is None else f" (answer {self.answer})"
        lines = [f"information flow to token {self.target} at position {self.position}{answer}: "
                 f"{len(self.heads())} heads, {len(self.edges)} edges, writers against the {self.centre}",
                 self.root.name]  # fmt: skip
        incoming, shown = self.incoming(), set()
        stack = [(e, 1) for e in reversed(incoming.get(self.root, []))]
        while stack:
            e, indent = stack.pop()
            seen = e.source in shown and e.source in incoming
            where = f" [{e.segment}]" if e.segment else ""
            where += " (above)" if seen else ""
            lines.append(f"{'  ' * indent}<- {e.kind} {e.weight:.3f} {e.source.name}{where}")
            shown.add(e.source)
            stack += [] if seen else [(f, indent + 1) for f in reversed(incoming.get(e.source, []))]
        return "\n".join(lines)
