"""Backward information-flow tracing (Dutta et al. §2.8, stages I-III), with a query side.

From token X predicted at p: **I** heads below the layer limit are scored by their logit
attribution to X at p (cached final-norm scale, onto ``W_U[:, X] - mean W_U``); the top
``writers`` above ``min_weight`` are kept (``centre="foils"``, the default for prompts with
foils: scored onto ``W_U[:, X] - mean W_U[:, rivals]`` at the answer, the rivals being the
prompt's answer and foils other than X; deeper token nodes stay on the vocabulary). **II** a kept head's top ``sources`` keys above its
row median. **III** the logit lens of its ``resid_pre`` there names the moved token (at layer 0
the input token). Recurse on (source, token) with earlier layers. **Query side** (ours): the
head's score ``q.k / sqrt(d_head)`` on its source, split exactly over its query input's parts
through ``ln1`` (cached scale) and ``W_Q``; earlier heads with ``min_share`` of it get a
``"query"`` edge. ``through_mlps``: where an MLP computes the answer from what a head moved (the
polynomial model's MLP1 makes ``s_t`` from ``s_{t-1}`` and the ``x_t`` L1H0 brings), a head is
scored by removing its output at p and re-running the MLPs at p (attention held).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads._torch import (
    cached_run,
    device_of,
    evaluating,
    input_hook,
    normalise_at,
    pattern_hook,
    resid_pre_hook,
    rotate_half,
    z_hook,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.memory import batch_rows, element_bytes, rows_per_pass
from iteration_heads.model.transformer import check_additive_residual
from iteration_heads.pathways.centring import Centre, resolve_centre, rival_tokens
from iteration_heads.pathways.flow_graph import FlowEdge, FlowGraph, FlowNode
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.tasks.task import check_int, check_number


@dataclass(frozen=True)
class _Options:
    writers: int = 3
    sources: int = 1
    min_weight: float = 0.0
    min_share: float = 0.2
    max_depth: int | None = None
    query_side: bool = True
    through_mlps: bool = True
    centre: str = "auto"

    def __post_init__(self) -> None:
        check_int("writers", self.writers, minimum=1)
        check_int("sources", self.sources, minimum=1)
        check_int("max_depth", 0 if self.max_depth is None else self.max_depth, minimum=0)
        if not 0 <= self.min_share <= 1:
            raise IterationHeadsError(f"min_share={self.min_share!r}, expected a share in [0, 1]")


class _Tracer:
    """Builds one graph from one prompt's cached activations ``run`` (hook name -> tensor)."""

    def __init__(self, model: Any, run: dict[str, Tensor], opts: _Options, segments: Any,
                 rivals: list[int] | None = None) -> None:  # fmt: skip
        self.model, self.run, self.opts, self.segments = model, run, opts, segments
        self.rivals = rivals  # what the answer's writers are scored against (None: vocab)
        self.kind = getattr(model.cfg, "normalization_type", None)
        self.n_layers, self.n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
        self.nodes: dict[FlowNode, None] = {}
        self.edges: dict[tuple[FlowNode, FlowNode, str], FlowEdge] = {}
        self.done: set[FlowNode] = set()
        self.deepest = math.inf if opts.max_depth is None else opts.max_depth
        z = torch.stack([run[z_hook(i)] for i in range(self.n_layers)])
        self.outs = list(torch.einsum("lphd,lhdm->lphm", z, model.W_O))  # every head's output

    def hook(self, layer: int, *names: str) -> Tensor | None:
        """The first of ``blocks.{layer}.{name}`` that was cached."""
        found = (self.run.get(f"blocks.{layer}.{m}") for m in names)
        return next((x for x in found if x is not None), None)

    def resid(self, layer: int) -> Tensor:
        """The stream entering ``layer`` (``n_layers``: the final stream)."""
        last = layer == self.n_layers
        return self.run[f"blocks.{layer - 1}.hook_resid_post" if last else resid_pre_hook(layer)]

    def edge(self, source: FlowNode, target: FlowNode, kind: str, weight: float, **kw: Any) -> None:
        position, token = kw.pop("position", target.position), kw.pop("token", None)
        self.nodes |= {n: None for n in (source, target) if n not in self.nodes}
        edge = FlowEdge(
            source, target, kind, weight, token, position, self.segments[position], **kw
        )
        self.edges.setdefault((source, target, kind), edge)

    def lens(self, x: Tensor) -> Tensor:
        """Logit lens ``W_U ln_final(x) + b_U``."""
        return self.model.ln_final(x) @ self.model.W_U + getattr(self.model, "b_U", 0.0)

    def stage_one(self, p: int, token: int, limit: int, root: bool) -> tuple[Tensor, Tensor]:
        """Score and Dutta's probability of ``token`` for the heads below ``limit`` (at the
        ``root``, against the rivals when there are some)."""
        outs = torch.stack([self.outs[layer][p] for layer in range(limit)])
        scale, delta = self.run.get("ln_final.hook_scale"), self.removal(outs, p, self.n_layers)
        normed, w_u = normalise_at(delta, scale, p, self.model.ln_final, self.kind), self.model.W_U
        rivals = self.rivals if root and self.rivals else None
        centre = w_u.mean(1) if rivals is None else w_u[:, rivals].mean(1)
        return normed @ (w_u[:, token] - centre), self.lens(outs).softmax(-1)[..., token]

    def removal(self, outs: Tensor, p: int, end: int) -> Tensor:
        """The change in the stream entering ``end`` at ``p`` when each of ``outs [layer, head,
        d_model]`` is removed: the output itself, or ``through_mlps`` with the MLPs re-run."""
        blocks, mlps = self.model.blocks, [self.hook(i, "hook_mlp_out") for i in range(end)]
        if not self.opts.through_mlps or all(m is None for m in mlps):
            return outs
        mids, changes = [self.hook(i, "hook_resid_mid") for i in range(end)], []
        for layer in range(len(outs)):
            mid = mids[layer][p]  # type: ignore[index]
            x = torch.cat([mid[None], mid - outs[layer]])  # row 0: nothing removed
            for i in range(layer, end):
                x = x if i == layer else x + mids[i][p] - self.resid(i)[p]  # type: ignore[index]
                x = x if mlps[i] is None else x + blocks[i].mlp(blocks[i].ln2(x[:, None]))[:, 0]
            target = self.resid(end)[p]  # float32 rounding grows with the stream's size
            if not torch.allclose(
                x[0], target, atol=1e-4 * max(1.0, float(target.abs().max())), rtol=1e-3
            ):
                raise IterationHeadsError("through_mlps: re-running the MLPs does not give the "
                                          "model's stream; pass through_mlps=False")  # fmt: skip
            changes.append(x[0] - x[1:])
        return torch.stack(changes)

    def writers_of(self, node: FlowNode, depth: int) -> None:
        """Stage I at a token node; the kept heads are traced."""
        if node in self.done or node.layer == 0 or depth > self.deepest:
            return
        self.done.add(node)
        found = self.stage_one(node.position, node.token, node.layer, node.role == "answer")
        scores, probs = (x.flatten() for x in found)
        for i in scores.argsort(descending=True)[: max(self.opts.writers - depth, 1)].tolist():
            if float(scores[i]) <= self.opts.min_weight:
                break
            head = FlowNode(i // self.n_heads, node.position, i % self.n_heads)
            kw = {"token": node.token, "depth": depth, "prob": float(probs[i])}
            self.edge(head, node, "writes", float(scores[i]), **kw)
            self.expand(head, depth)

    def expand(self, node: FlowNode, depth: int) -> None:
        """Stages II and III of a head, its query side, and the recursion."""
        if node in self.done:
            return
        self.done.add(node)
        layer, p = node.layer, node.position
        row = self.run[pattern_hook(layer)][node.head, p, : p + 1]
        keys = [0] if p == 0 else (row > row.quantile(0.5)).nonzero().flatten().tolist()
        keys = sorted(keys, key=lambda k: -float(row[k]))[: self.opts.sources]
        for k in keys:
            if layer == 0:
                source = FlowNode(0, k, token=int(self.run["tokens"][k]), role="embedding")
            else:
                token = int(self.lens(self.resid(layer)[k]).argmax())
                source = FlowNode(layer, k, token=token, role="moved")
            kw = {"token": source.token, "position": k, "depth": depth}
            self.edge(source, node, "value", float(row[k]), **kw)
            self.writers_of(source, depth + 1)
        if not self.opts.query_side or layer == 0 or depth + 1 > self.deepest:
            return
        for k in keys:
            shares = self.query_shares(layer, node.head, p, k).flatten()
            for i in shares.argsort(descending=True).tolist():
                if float(shares[i]) < self.opts.min_share:
                    break
                head = FlowNode(i // self.n_heads, p, i % self.n_heads)
                self.edge(head, node, "query", float(shares[i]), depth=depth + 1, key=k)
                self.expand(head, depth + 1)

    def query_shares(self, layer: int, head: int, p: int, k: int) -> Tensor:
        """Share of each earlier head ``[layer, head]`` in the attention score ``q_p.k_k``: its
        term over the absolute sum of an exact decomposition of the query input."""
        norm, zero = self.model.blocks[layer].ln1, torch.zeros_like(self.resid(0)[p])
        parts = [self.resid(0)[p]]  # embeddings, then per layer: MLP, output biases and the rest
        for i in range(layer):
            mlp = self.hook(i, "hook_mlp_out")
            mlp_out = zero if mlp is None else mlp[p]
            rest = self.resid(i + 1)[p] - self.resid(i)[p] - self.outs[i][p].sum(0) - mlp_out
            parts += [mlp_out, rest]
        outs = torch.stack([self.outs[i][p] for i in range(layer)])
        scale = self.hook(layer, "ln1.hook_scale")
        stack = [torch.stack(parts), outs.flatten(0, 1), self.removal(outs, p, layer).flatten(0, 1)]
        x = normalise_at(torch.cat(stack), scale, p, norm, self.kind)
        bias, b_q = getattr(norm, "b", None), getattr(self.model.blocks[layer].attn, "b_Q", None)
        x = torch.cat([(bias if isinstance(bias, Tensor) else zero)[None], x])
        q = x @ self.model.W_Q[layer, head]
        q[0] = q[0] + (b_q[head] if isinstance(b_q, Tensor) else 0.0)
        cos, sin = self.hook(layer, "attn.hook_cos"), self.hook(layer, "attn.hook_sin")
        if cos is not None and sin is not None:
            q = rotate_half(q, cos[p], sin[p])
        keys = self.hook(layer, "attn.hook_rot_k", "attn.hook_k")
        query = self.hook(layer, "attn.hook_rot_q", "attn.hook_q")
        assert keys is not None and query is not None, "hook_q and hook_k always fire"
        key = keys[k, head // (self.n_heads // keys.shape[1])] / math.sqrt(q.shape[-1])
        terms, n_direct = q @ key, 1 + len(parts) + outs.shape[0] * outs.shape[1]
        direct, total = terms[:n_direct], float(query[p, head] @ key)
        size = float(direct.abs().sum())
        if abs(float(direct.sum()) - total) > 1e-3 * (1 + size):
            raise IterationHeadsError(
                f"query side of L{layer}H{head}: the parts sum to {float(direct.sum()):.4g}, "
                f"not {total:.4g}; pass query_side=False"
            )
        return terms[n_direct:].reshape(outs.shape[:2]) / max(size, 1e-12)


def _hook_names(n_layers: int) -> set[str]:
    names = {"ln_final.hook_scale", f"blocks.{n_layers - 1}.hook_resid_post"}
    for i in range(n_layers):
        names |= {resid_pre_hook(i), z_hook(i), pattern_hook(i), input_hook(i, "q")}
        names |= {input_hook(i, "k"), f"blocks.{i}.hook_resid_mid", f"blocks.{i}.hook_mlp_out",
                  f"blocks.{i}.ln1.hook_scale"}  # fmt: skip
        names |= {f"blocks.{i}.attn.hook_{n}" for n in ("rot_q", "rot_k", "cos", "sin")}
    return names


def _graphs(model: Any, prompts: Prompts, targets: list[int | None], opts: _Options,
            size: int = 64, named: bool = True) -> list[FlowGraph]:  # fmt: skip
    """Trace every prompt at its position, one forward pass per ``size`` prompts."""
    names, graphs = _hook_names(int(model.cfg.n_layers)), []
    centre = resolve_centre(opts.centre, prompts, int(model.cfg.d_vocab))
    with evaluating(model):
        for start in range(0, len(prompts), size):
            chunk = prompts.select(list(range(start, min(start + size, len(prompts)))))
            tokens = chunk.clean.to(device_of(model))
            logits, cache = cached_run(model, tokens, names_filter=names.__contains__)
            for b, target in enumerate(targets[start : start + size]):
                run = {n: cache[n][b if cache[n].shape[0] > 1 else 0] for n in cache}
                seg = chunk.segment_names
                segments = tuple(None if s < 0 else seg[s] for s in chunk.segments[b].tolist())
                p = int(chunk.position[b])
                token = int(logits[b, p].argmax()) if target is None else target
                rivals = None
                if centre == "foils" and chunk.foils is not None:
                    rivals = rival_tokens(token, int(chunk.answer[b]), chunk.foils[b])
                tracer = _Tracer(model, run | {"tokens": chunk.clean[b]}, opts, segments, rivals)
                tracer.nodes[FlowNode(tracer.n_layers, p, token=token, role="answer")] = None
                tracer.writers_of(next(iter(tracer.nodes)), 0)
                answer, label = (int(chunk.answer[b]), chunk.labels[b]) if named else (None, None)
                nodes, edges = tuple(tracer.nodes), tuple(tracer.edges.values())
                graphs.append(
                    FlowGraph(
                        nodes, edges, chunk.clean[b], p, token, answer, label, segments, centre
                    )
                )
    return graphs


def trace_flow(
    model: Any,
    tokens: Int[Tensor, " pos"] | Prompts,
    position: int | None = None,
    *,
    index: int = 0,
    target: int | None = None,
    writers: int = 3,
    sources: int = 1,
    min_weight: float = 0.0,
    min_share: float = 0.2,
    max_depth: int | None = None,
    query_side: bool = True,
    through_mlps: bool = True,
    centre: Centre = "auto",
) -> FlowGraph:
    """Trace backwards where the prediction at ``position`` comes from (module docstring).

    Args:
        model: Any TransformerLens model (native or wrapped HuggingFace bridge).
        tokens: One sequence ``[pos]``, or prompts (row ``index``; segments named).
        position: The studied position (default: the prompt's position, else the last).
        index: The row of ``tokens`` when it is :class:`Prompts`.
        target: The traced token (default: the model's top-1 at ``position``).
        writers: Writer heads kept at depth 0 (one fewer per depth, at least 1).
        sources: Key positions kept per head (above its attention row's median).
        min_weight: Smallest writer score kept.
        min_share: Smallest share of a head's attention score for a query edge.
        max_depth: Deepest head depth traced (None: down to layer 0).
        query_side: Trace query edges too (ours; Dutta et al. trace values only).
        through_mlps: Score writers with the MLPs at the position re-run (off: Dutta's direct
            score; see the module docstring).
        centre: What the answer's writers are scored against: ``"foils"`` (the prompt's answer
            and foils but the traced token), ``"vocab"``, or ``"auto"`` (foils when given).

    Raises:
        IterationHeadsError: position, token or target out of range, a bad index or option.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> graph = trace_flow(zoo.load("polynomial_paper"), prompts, index=-3)
        >>> graph.heads(), graph.root.name, graph.centre
        ([(0, 0), (1, 0)], 'answer 7@14', 'foils')
    """
    check_number("min_weight", min_weight)
    check_number("min_share", min_share, minimum=0, maximum=1)
    check_additive_residual(model, "flow tracing (direct logit attribution)")
    opts = _Options(writers, sources, min_weight, min_share, max_depth, query_side, through_mlps,
                    centre)  # fmt: skip
    if isinstance(tokens, Prompts):
        index = check_int("index", index, minimum=-len(tokens), maximum=len(tokens) - 1)
        prompts = tokens.select([index % len(tokens)])
    elif isinstance(tokens, Tensor) and tokens.ndim == 1 and not tokens.is_floating_point():
        prompts = Prompts(tokens[None], None, torch.tensor([len(tokens) - 1]), torch.tensor([-1]),
                          torch.full_like(tokens[None], -1), (), ("",))  # fmt: skip
    else:
        raise IterationHeadsError(f"tokens {tokens!r}, expected ids [pos] or Prompts")
    width, vocab = prompts.clean.shape[1], int(model.cfg.d_vocab)
    check_token_ids(prompts.clean, vocab)
    if position is not None:
        position = check_int("position", position, minimum=0, maximum=width - 1)
        prompts = replace(prompts, position=torch.tensor([position]))
    if target is not None:
        target = check_int("target", target, minimum=0, maximum=vocab - 1)
    return _graphs(model, prompts, [target], opts, named=isinstance(tokens, Prompts))[0]


FLOW_BATCH = 64
"""Prompts per pass of :func:`trace_flows` at most."""


def flow_rows(model: Any, width: int) -> int:
    """Prompts per pass of :func:`trace_flows` at ``width``: at most :data:`FLOW_BATCH`, within
    the memory budget of a pass that caches ten activations and the attention pattern of every
    layer (:func:`~iteration_heads.memory.rows_per_pass`).

    Example:
        >>> from iteration_heads import zoo
        >>> flow_rows(zoo.load("polynomial_paper"), 12)
        64
    """
    layers = int(model.cfg.n_layers)
    return rows_per_pass(model, width, logits="all", cached=10 * layers, patterns=layers,
                         cap=FLOW_BATCH)  # fmt: skip


def trace_flows(
    model: Any,
    prompts: Prompts,
    *,
    target: Literal["prediction", "answer"] = "prediction",
    batch_size: int | None = None,
    **options: Any,
) -> list[FlowGraph]:
    """:func:`trace_flow` on every prompt (keyword ``options`` as there) in batched forward
    passes of ``batch_size`` prompts (None: :func:`flow_rows`); ``target``: trace the model's
    top-1 or the prompt's answer.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=2))
        >>> graphs = trace_flows(zoo.load("polynomial_paper"), iteration_prompts(data.test, data.layout))
        >>> len(graphs), graphs[0].heads()
        (72, [(0, 0), (1, 0)])
    """
    check_additive_residual(model, "flow tracing (direct logit attribution)")
    if element_bytes(model) != 4:
        raise IterationHeadsError(
            "flow tracing runs on float32 weights only (its decompositions are checked to 1e-4): "
            "open the model in float32 (no --dtype) or leave flow out"
        )
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    if target not in ("prediction", "answer"):
        raise IterationHeadsError(f"target={target!r}, expected 'prediction' or 'answer'")
    targets = prompts.answer.tolist() if target == "answer" else [None] * len(prompts)
    size = batch_rows(batch_size, flow_rows(model, int(prompts.clean.shape[1])))
    unknown = sorted(set(options) - set(_Options.__dataclass_fields__))
    if unknown:
        raise IterationHeadsError(
            f"unknown option {unknown[0]!r}, expected some of {list(_Options.__dataclass_fields__)}"
        )
    return _graphs(model, prompts, targets, _Options(**options), size)
