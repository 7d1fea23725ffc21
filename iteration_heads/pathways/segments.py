"""Parallel pathways: which segment of the prompt (question context, generated chain of thought,
...) the answer comes from, traced and causal (Dutta et al. §2.8).

* :func:`trace_many` traces many prompts (:func:`~iteration_heads.pathways.flow.trace_flows`)
  and labels every head by the segment its value reads come from most (Dutta's per-head pathway
  label), with the head-to-head edges found in most prompts.
* :func:`segment_pathways` cuts attention to one segment at a time (and to all but one, with
  three segments or more) in every head of every layer: the rows of the queries in ``scope``
  put zero weight on the segment's keys and are renormalised over the rest (the same as scores
  of -inf). ``scope="answer"`` edits only the studied position's row, the direct pathways into
  the prediction; ``"all"`` every query outside the segment, so nothing flows out of it. A row
  with no weight left outside the segment keeps its original weights. Metrics per prompt: the
  answer's probability, its logit difference to the clean run's second choice, accuracy and
  agreement with the clean argmax; a segment's share is its drop in answer logit over the
  summed absolute drops of the single-segment cuts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import device_of, evaluating, pattern_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import batch_rows, rows_per_pass
from iteration_heads.passes import scored_logits
from iteration_heads.pathways.attribution import position_mask
from iteration_heads.pathways.flow import FlowGraph, FlowNode, trace_flows
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.tasks.task import check_int

Scope = Literal["answer", "all"]


@dataclass(frozen=True, repr=False)
class FlowSummary(Result):
    """Traces of many prompts, aggregated.

    Attributes:
        graphs: One :class:`~iteration_heads.pathways.flow.FlowGraph` per prompt.
        edges: Head-level edges ``source -> target`` per ``kind`` and the fraction of graphs
            that have them: value edges run from each head that wrote the moved token (else
            ``"embedding"``/``"moved"``) to the reader; writes edges end at a token role.
        heads: Per head: fraction of graphs where it writes the answer (``writer``) or appears
            (``present``), its value reads per source segment and the ``majority`` segment.
        correct: Whether each traced token is the prompt's answer.
    """

    graphs: tuple[FlowGraph, ...]
    edges: pd.DataFrame
    heads: pd.DataFrame
    correct: Tensor

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the two tables and the accuracy (graphs left out)."""
        tables = {"edges": self.edges.to_dict("records"), "heads": self.heads.to_dict("records")}
        centres = sorted({g.centre for g in self.graphs})  # what the writers were scored against
        n, accuracy = len(self.graphs), float(self.correct.float().mean())
        return {"n": n, "accuracy": accuracy, "centre": "/".join(centres)} | tables

    def format(self) -> str:
        """The edges found in most graphs and each head's pathway label."""
        accuracy = float(self.correct.float().mean())
        centre = "/".join(sorted({g.centre for g in self.graphs}))
        lines = [
            f"information flow over {len(self.graphs)} prompts ({accuracy:.0%} correct; "
            f"writers scored against the {centre})"
        ]
        for table in (self.edges.head(12), self.heads):
            lines.append(table.to_string(index=False, float_format="{:.2f}".format))
        return "\n".join(lines)


def _head_edges(graph: FlowGraph) -> set[tuple[str, str, str]]:
    def name(node: FlowNode) -> str:
        return f"L{node.layer}H{node.head}" if node.role == "head" else node.role

    incoming, found = graph.incoming(), set()
    for e in graph.edges:
        writers = [w.source for w in incoming.get(e.source, [])] if e.kind == "value" else []
        found |= {(name(w), name(e.target), e.kind) for w in writers or [e.source]}
    return found


def trace_many(
    model: Any,
    prompts: Prompts,
    *,
    target: Literal["prediction", "answer"] = "prediction",
    batch_size: int | None = None,
    **options: Any,
) -> FlowSummary:
    """Trace every prompt (``options`` as :func:`~iteration_heads.pathways.flow.trace_flow`)
    and aggregate per head-level edge and per head (majority source segment).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=2))
        >>> summary = trace_many(zoo.load("polynomial_paper"), iteration_prompts(data.test, data.layout))
        >>> summary.heads[["name", "majority"]].values.tolist()
        [['L0H0', 'input'], ['L1H0', 'input']]
    """
    graphs = trace_flows(model, prompts, target=target, batch_size=batch_size, **options)
    n, counts = len(graphs), Counter(edge for g in graphs for edge in _head_edges(g))
    rows = [(s, t, k, c / n) for (s, t, k), c in counts.most_common()]
    edges = pd.DataFrame(rows, columns=["source", "target", "kind", "fraction"])
    heads = []
    for layer, head in sorted({h for g in graphs for h in g.heads()}):
        name = f"L{layer}H{head}"
        reads = Counter(
            e.segment or "none"
            for g in graphs
            for e in g.edges
            if e.kind == "value" and (e.target.layer, e.target.head) == (layer, head)
        )
        heads.append(
            {
                "name": name,
                "layer": layer,
                "head": head,
                "writer": counts[(name, "answer", "writes")] / n,
                "present": sum((layer, head) in g.heads() for g in graphs) / n,
                **{f"from {s}": reads[s] for s in [*prompts.segment_names, "none"]},
                "majority": reads.most_common(1)[0][0] if reads else None,
            }
        )
    correct = torch.tensor([g.target == g.answer for g in graphs])
    return FlowSummary(tuple(graphs), edges, pd.DataFrame(heads), correct)


@dataclass(frozen=True, repr=False)
class SegmentPathways(Result):
    """What cutting attention to each segment does to the answer (module docstring).

    Attributes:
        scope: ``"answer"`` or ``"all"``.
        cuts: The cut names (``"input"``, ``"facts+question"``...), single segments first.
        per_prompt: One row per (prompt, cut; ``"none"``: the clean run) with ``label``,
            ``prob``, ``logit``, ``logit_diff``, ``correct``, ``agree``.
    """

    scope: str
    cuts: tuple[str, ...]
    per_prompt: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """One row per (label, cut), label ``"all"`` first: the mean metrics, the mean drop of
        the answer logit and its share (single-segment cuts)."""
        frames = []
        for label, rows in [("all", self.per_prompt), *self.per_prompt.groupby("label", sort=True)]:
            clean = rows[rows["cut"] == "none"].set_index("prompt")
            cut = rows[rows["cut"] != "none"].copy()
            cut["drop"] = clean["logit"].loc[cut["prompt"]].to_numpy() - cut["logit"].to_numpy()
            metrics = ["prob", "logit_diff", "correct", "agree", "drop"]
            mean = cut.groupby("cut", sort=False)[metrics].mean()
            singles = mean.loc[[c for c in self.cuts if "+" not in c], "drop"]
            mean["share"] = singles / max(float(singles.abs().sum()), 1e-12)
            mean = mean.rename(columns={"correct": "accuracy", "agree": "agreement"})
            mean.insert(0, "n", len(clean))
            mean.insert(0, "label", label)
            mean["clean_prob"] = float(clean["prob"].mean())
            mean["clean_accuracy"] = float(clean["correct"].mean())
            frames.append(mean.reset_index())
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the scope, the cuts and the summary table."""
        table = self.to_frame().to_dict("records")
        return {"scope": self.scope, "cuts": list(self.cuts), "table": table}

    def format(self) -> str:
        """The scope and the summary over all prompts (then per label)."""
        table = self.to_frame()
        head = f"segment knockouts (scope {self.scope}): {table['n'].iloc[0]} prompts"
        return head + "\n" + table.to_string(index=False, float_format="{:.3f}".format)


def _cuts(names: tuple[str, ...]) -> list[tuple[str, frozenset[int]]]:
    cuts = [(name, frozenset([i])) for i, name in enumerate(names)]
    if len(names) >= 3:  # all but one
        for i in range(len(names)):
            rest = frozenset(range(len(names))) - {i}
            cuts.append(("+".join(names[j] for j in sorted(rest)), rest))
    return cuts


def knockout_mask(
    prompts: Prompts, cut: frozenset[int], scope: Scope
) -> Bool[Tensor, "n query key"]:
    """The attention entries a cut zeroes: keys in the cut's segments, queries in ``scope``.

    Example:
        >>> p = Prompts(torch.tensor([[1, 2, 3]]), None, torch.tensor([2]), torch.tensor([4]),
        ...             torch.tensor([[-1, 0, 1]]), ("a", "b"), ("x",))
        >>> knockout_mask(p, frozenset([0]), "answer")[0].int().tolist()
        [[0, 0, 0], [0, 0, 0], [0, 1, 0]]
    """
    for segment in cut:
        check_int("cut", segment, minimum=0)
    if scope not in ("answer", "all"):
        raise IterationHeadsError(f"scope={scope!r}, expected 'answer' or 'all'")
    inside = torch.zeros_like(prompts.segments, dtype=torch.bool)
    for s in cut:
        inside |= prompts.segments == s
    queries = torch.arange(prompts.clean.shape[1])[None] == prompts.position[:, None]
    if scope == "all":
        queries = ~inside
    return queries[:, :, None] & inside[:, None, :]


def knockout_pattern(
    pattern: Float[Tensor, "batch head query key"], mask: Bool[Tensor, "batch query key"]
) -> Float[Tensor, "batch head query key"]:
    """``pattern`` with the masked entries zeroed and their rows renormalised; a row with no
    weight left keeps its original weights.

    Example:
        >>> pattern = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
        >>> knockout_pattern(pattern, torch.tensor([[[True, False], [True, False]]]))
        tensor([[[[1., 0.],
                  [0., 1.]]]])
    """
    mask = mask[:, None].to(pattern.device)
    kept = pattern.masked_fill(mask, 0.0)
    total = kept.sum(-1, keepdim=True)
    edit = mask.any(-1, keepdim=True) & (total > 0)
    return torch.where(edit, kept / torch.where(edit, total, torch.ones_like(total)), pattern)


def knockout_hooks(model: Any, mask: Bool[Tensor, "batch query key"]) -> list[tuple[str, Callable]]:
    """``hook_pattern`` hooks applying :func:`knockout_pattern` in every layer.

    Example:
        >>> from iteration_heads import zoo
        >>> len(knockout_hooks(zoo.load("polynomial_paper"), torch.zeros(1, 19, 19, dtype=torch.bool)))
        2
    """

    def hook(pattern: Tensor, hook: Any) -> Tensor:
        width = pattern.shape[-1]
        return knockout_pattern(pattern, mask[: pattern.shape[0], :width, :width])

    return [(pattern_hook(layer), hook) for layer in range(int(model.cfg.n_layers))]


def _scored(
    model: Any,
    prompts: Prompts,
    rows: Tensor,
    device: Any,
    hooks: list[tuple[str, Callable]] | None = None,
) -> Tensor:
    """The logits ``[rows, vocab]`` at each row's studied position, from a pass over the
    tokens up to the widest such position (only those positions are unembedded)."""
    width = int(prompts.position[rows].max()) + 1
    tokens = prompts.clean[rows, :width]
    return scored_logits(model, tokens.to(device), position_mask(tokens, prompts.position[rows]),
                         hooks=hooks or [])  # fmt: skip


def _metrics(at: Tensor, prompts: Prompts, second: Tensor, top: Tensor) -> dict[str, Tensor]:
    """Per prompt, from the logits ``at`` its studied position."""
    rows = torch.arange(len(prompts))
    answer = at[rows, prompts.answer]
    return {
        "prob": at.softmax(-1)[rows, prompts.answer],
        "logit": answer,
        "logit_diff": answer - at[rows, second],
        "correct": (at.argmax(-1) == prompts.answer).float(),
        "agree": (at.argmax(-1) == top).float(),
    }


SEGMENTS_BATCH = 256
"""Rows (cuts × prompts) per pass of :func:`segment_pathways` at most."""


def segment_passes(
    position: Int[Tensor, " n"], n_cuts: int, batch_size: int
) -> tuple[list[Int[Tensor, " rows"]], list[tuple[Int[Tensor, " rows"], Int[Tensor, " rows"]]]]:
    """The forward passes of :func:`segment_pathways`: the prompts of each clean pass, then the
    ``(cut, prompt)`` rows of each pass with a cut, ``batch_size`` rows at a time. Prompts go
    in order of their studied position, so that a pass, which runs up to its widest row's
    position, wastes few tokens.

    Example:
        >>> clean, cut = segment_passes(torch.tensor([9, 3, 5]), 2, 4)
        >>> [p.tolist() for p in clean], [(c.tolist(), p.tolist()) for c, p in cut]
        ([[1, 2, 0]], [([0, 1, 0, 1], [1, 1, 2, 2]), ([0, 1], [0, 0])])
    """
    check_int("n_cuts", n_cuts, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    order = torch.argsort(position, stable=True)
    rows = torch.tensor([(c, int(i)) for i in order for c in range(n_cuts)], dtype=torch.long)
    cut = [(chunk[:, 0], chunk[:, 1]) for chunk in rows.reshape(-1, 2).split(batch_size)]
    return list(order.split(batch_size)), cut


def segments_rows(model: Any, width: int) -> int:
    """Rows per pass of :func:`segment_pathways` at ``width``: at most :data:`SEGMENTS_BATCH`,
    within the memory budget of a plain pass that unembeds one position per row
    (:func:`~iteration_heads.memory.rows_per_pass`).

    Example:
        >>> from iteration_heads import zoo
        >>> segments_rows(zoo.load("polynomial_paper"), 12)
        256
    """
    return rows_per_pass(model, width, cap=SEGMENTS_BATCH)


def segment_pathways(
    model: Any, prompts: Prompts, *, scope: Scope = "answer", batch_size: int | None = None
) -> SegmentPathways:
    """Cut attention to each segment of ``prompts`` in every head (module docstring).

    Args:
        model: Any TransformerLens model (native or wrapped HuggingFace bridge).
        prompts: The prompts; their ``segment_names`` define the cuts.
        scope: ``"answer"``: only the studied position's row; ``"all"``: every query outside
            the cut segment.
        batch_size: Rows (cuts × prompts) per forward pass (None: :func:`segments_rows`).

    Raises:
        IterationHeadsError: a bad scope, batch size or prompts without segments.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=2))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> result = segment_pathways(zoo.load("polynomial_paper"), prompts)
        >>> table = result.to_frame()
        >>> table.loc[table["label"] == "all", ["cut", "accuracy"]].round(2).values.tolist()
        [['input', 0.14], ['chain of thought', 1.0]]
    """
    if scope not in ("answer", "all"):
        raise IterationHeadsError(f"scope={scope!r}, expected 'answer' or 'all'")
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    if not prompts.segment_names:
        raise IterationHeadsError("prompts without segment names: there is nothing to cut")
    batch_size = batch_rows(batch_size, segments_rows(model, int(prompts.clean.shape[1])))
    cuts, n, device = _cuts(prompts.segment_names), len(prompts), device_of(model)
    clean_passes, cut_passes = segment_passes(prompts.position, len(cuts), batch_size)
    with evaluating(model):
        at = torch.cat([_scored(model, prompts, seq, device) for seq in clean_passes])
        at = at[torch.argsort(torch.cat(clean_passes))].float().cpu()
        top = at.argmax(-1)
        second = at.scatter(1, prompts.answer[:, None], float("-inf")).argmax(-1)
        tables = [pd.DataFrame(_metrics(at, prompts, second, top)).assign(cut="none")]
        masks = torch.stack([knockout_mask(prompts, cut, scope) for _, cut in cuts])
        for c, i in cut_passes:
            width = int(prompts.position[i].max()) + 1  # causal: later keys change nothing read
            hooks = knockout_hooks(model, masks[c, i, :width, :width].to(device))
            logits = _scored(model, prompts, i, device, hooks)
            part = _metrics(logits.float().cpu(), prompts.select(i), second[i], top[i])
            names = [cuts[j][0] for j in c.tolist()]
            tables.append(pd.DataFrame(part).assign(cut=names, prompt=i.numpy()))
    tables[0]["prompt"] = range(n)
    per_prompt = pd.concat(tables, ignore_index=True)
    per_prompt["label"] = [prompts.labels[i] for i in per_prompt["prompt"]]
    per_prompt["correct"] = per_prompt["correct"].astype(bool)
    per_prompt["agree"] = per_prompt["agree"].astype(bool)
    return SegmentPathways(scope, tuple(name for name, _ in cuts), per_prompt)
