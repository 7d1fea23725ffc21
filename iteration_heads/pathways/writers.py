"""Answer-writing heads: direct logit attribution of every head onto the answer, per source.

Dutta et al. (§2.2, §2.3 of their method) look for the heads that *write* the answer of each
chain-of-thought step: a head whose output, read through the final norm and the unembedding,
raises the answer's logit. :func:`answer_writers` measures this as direct logit attribution
(DLA) at each prompt's studied position, for every head and also for every other component
of the residual stream, so that the parts add up to the model's own logit:

* the answer direction is centred (``centre``, :mod:`~iteration_heads.pathways.centring`): on
  the answer's foils, ``u = W_U[:, answer] - mean_f W_U[:, f]`` over the valid foils of
  ``prompts.foils`` (the default when the prompts have foils), or on the vocabulary, ``u =
  W_U[:, answer] - mean_v W_U[:, v]``; a shift of every competitor's logit by the same amount
  does not count, and the attributions sum to the *centred* answer logit ``logit[answer] -
  mean(logit[foils])`` (or ``- mean(logits)``);
* the final norm is linearised with its cached scale ``s`` at the position (the standard DLA
  convention): a component ``c`` contributes ``((c - mean c) / s) · (w ⊙ u)`` (no centring
  for RMS norms), the norm's bias and the unembedding bias contribute the constant
  ``b · u + b_U[answer] - mean(b_U[foils])`` (or ``- mean(b_U)``);
* a head writes ``z_h W_O[h]`` (``b_O`` belongs to the layer, not to a head, and is its own
  term). TransformerLens's ``cache.logit_attrs`` leaves the final norm's weight ``w`` out on a
  raw bridge (it assumes folded norms), so the projection is computed here; the tests check it
  against ``cache.stack_head_results(apply_ln=True)``.

Each head's DLA is split further by the key position it reads: ``z_h = Σ_k A[q, k] v_k``, so
``DLA_h = Σ_k A[q, k] (v_k W_O[h]) · ê`` exactly, and these parts, summed over the positions of
each segment of ``prompts.segments``, say from which part of the prompt a writer takes the
answer (positions of no segment are the ``"other"`` column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import (
    Head,
    cached_run,
    device_of,
    evaluating,
    head_names,
    input_hook,
    mlp_out_hook,
    pattern_hook,
    z_hook,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.interventions.scores import standard_error
from iteration_heads.memory import batch_rows, rows_per_pass
from iteration_heads.model.transformer import check_additive_residual
from iteration_heads.passes import shared_sequences
from iteration_heads.pathways.centring import Centre, competitor_weights, resolve_centre
from iteration_heads.pathways.prompts import Prompts

WRITERS_BATCH = 64
"""Prompts per forward pass of :func:`answer_writers`."""

OTHER_SEGMENT = "other"
"""The last segment column: key positions of no segment (``segments == -1``)."""

FINAL_BIAS = "final bias"
"""The component of the final norm's bias and the unembedding bias."""

_CENTRE_NAMES = {"foils": "foils", "vocab": "vocabulary"}


@dataclass(frozen=True, repr=False)
class AnswerWriters(Result):
    """Direct logit attribution of every head and component onto each prompt's answer.

    Attributes:
        dla: Mean DLA of every head ``[layer, head]`` per label (``"all"``: every prompt).
        stderr: Its standard error over the label's prompts.
        segment_dla: Mean DLA of every head split by the segment of the key position it reads
            ``[layer, head, segment]`` per label; the last segment is ``"other"``. Summed over
            segments it is ``dla``.
        component_dla: Mean DLA of every component ``[component]`` per label; the components
            sum to the mean centred answer logit.
        per_prompt: DLA of every head ``[n, layer, head]``.
        per_prompt_segments: ``[n, layer, head, segment]``.
        per_prompt_components: ``[n, component]``.
        attn_bias: DLA of every layer's ``b_O`` ``[n, layer]`` (the heads plus it give the
            layer's attention component).
        logit: The model's centred answer logit ``[n]``: ``logit[answer] - mean(logit[foils])``
            with ``centre == "foils"``, ``logit[answer] - mean(logits)`` with ``"vocab"``.
        components: Names of the components (``embed``, ``pos_embed``, ``attn L0``,
            ``mlp L0``, ..., ``final bias``).
        segment_names: The segments, ``"other"`` last.
        labels: The label of every prompt.
        centre: What the answer was centred on: ``"foils"`` or ``"vocab"``.
    """

    dla: dict[str, Float[Tensor, "layer head"]]
    stderr: dict[str, Float[Tensor, "layer head"]]
    segment_dla: dict[str, Float[Tensor, "layer head segment"]]
    component_dla: dict[str, Float[Tensor, " component"]]
    per_prompt: Float[Tensor, "n layer head"]
    per_prompt_segments: Float[Tensor, "n layer head segment"]
    per_prompt_components: Float[Tensor, "n component"]
    attn_bias: Float[Tensor, "n layer"]
    logit: Float[Tensor, " n"]
    components: tuple[str, ...]
    segment_names: tuple[str, ...]
    labels: tuple[str, ...]
    centre: str = "vocab"

    def _check_label(self, label: str) -> None:
        if label not in self.dla:
            raise IterationHeadsError(f"label {label!r}, expected one of {list(self.dla)}")

    def writers(self, label: str = "all", *, share: float = 0.8) -> list[Head]:
        """The fewest heads whose positive mean DLA reaches ``share`` of all heads' positive
        DLA, largest first (empty when no head writes the answer).

        Example:
            >>> t = torch.tensor([[[1.0, 3.0]], [[1.0, 3.0]]])  # 2 prompts, 1 layer, 2 heads
            >>> w = AnswerWriters({"all": t[0]}, {"all": t[0]}, {}, {}, t, t[..., None],
            ...                   t[:, 0], t[:, 0, :1], t[:, 0, 0], (), (), ("a", "a"))
            >>> w.writers(share=0.7), w.writers(share=0.9)
            ([(0, 1)], [(0, 1), (0, 0)])
        """
        self._check_label(label)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise IterationHeadsError(f"share={share!r}, expected a number in (0, 1]")
        values = self.dla[label]
        n_heads = values.shape[1]
        flat = values.flatten()
        total = float(flat.clamp(min=0).sum())
        if total <= 0:
            return []
        order = flat.argsort(descending=True, stable=True)
        reached = flat[order].cumsum(0) >= share * total * (1 - 1e-9)
        count = int(reached.float().argmax()) + 1
        return [(int(i) // n_heads, int(i) % n_heads) for i in order[:count]]

    def layer_histogram(self, label: str = "all", share: float = 0.8) -> pd.DataFrame:
        """Per layer: ``writers`` (how many of :meth:`writers` it holds), ``writer_dla``
        (their DLA), ``positive_dla`` (all its heads' positive DLA) and ``mass`` (that as a
        share of every layer's positive DLA)."""
        chosen = self.writers(label, share=share)
        values = self.dla[label]
        positive = values.clamp(min=0).sum(1)
        total = float(positive.sum())
        rows = []
        for layer in range(values.shape[0]):
            mine = [h for lay, h in chosen if lay == layer]
            rows.append(
                {
                    "layer": layer,
                    "writers": len(mine),
                    "writer_dla": float(sum(float(values[layer, h]) for h in mine)),
                    "positive_dla": float(positive[layer]),
                    "mass": float(positive[layer]) / total if total > 0 else 0.0,
                }
            )
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        """One row per (label, layer, head): ``dla``, ``stderr`` and ``from_<segment>``."""
        rows = []
        for label, values in self.dla.items():
            for layer in range(values.shape[0]):
                for head in range(values.shape[1]):
                    row: dict[str, Any] = {
                        "label": label,
                        "layer": layer,
                        "head": head,
                        "dla": float(values[layer, head]),
                        "stderr": float(self.stderr[label][layer, head]),
                    }
                    for s, name in enumerate(self.segment_names):
                        row[f"from_{name}"] = float(self.segment_dla[label][layer, head, s])
                    rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of the per-label means (per-prompt values left out)."""
        return {
            "n_prompts": len(self.labels),
            "centre": self.centre,
            "components": list(self.components),
            "segment_names": list(self.segment_names),
            "labels": {
                label: {
                    "dla": self.dla[label].tolist(),
                    "stderr": self.stderr[label].tolist(),
                    "segment_dla": self.segment_dla[label].tolist(),
                    "component_dla": self.component_dla[label].tolist(),
                    "writers": [list(h) for h in self.writers(label)],
                }
                for label in self.dla
            },
        }

    def format(self) -> str:
        """The top writers of every label with their DLA and the segment they read from."""
        n_layers, n_heads = self.per_prompt.shape[1:]
        lines = [
            f"answer writers: {len(self.labels)} prompts, {n_layers} layers x {n_heads} heads; "
            f"mean answer logit centred on the {_CENTRE_NAMES[self.centre]} "
            f"{float(self.logit.mean()):.3f}"
        ]
        for label in self.dla:
            chosen = self.writers(label)
            parts = []
            for layer, head in chosen[:5]:
                segments = self.segment_dla[label][layer, head]
                source = self.segment_names[int(segments.argmax())]
                parts.append(
                    f"{head_names([(layer, head)])} {float(self.dla[label][layer, head]):.3f} "
                    f"(from {source})"
                )
            more = f" +{len(chosen) - 5}" if len(chosen) > 5 else ""
            lines.append(f"  {label}: " + (", ".join(parts) or "no writer") + more)
        return "\n".join(lines)


def writers_rows(model: Any, width: int) -> int:
    """Prompts per pass of :func:`answer_writers` at ``width``: at most :data:`WRITERS_BATCH`,
    within the memory budget of a pass that caches four activations and the attention pattern
    of every layer (:func:`~iteration_heads.memory.rows_per_pass`).

    Example:
        >>> from iteration_heads import zoo
        >>> writers_rows(zoo.load("polynomial_paper"), 12)
        64
    """
    layers = int(model.cfg.n_layers)
    return rows_per_pass(model, width, logits="all", cached=4 * layers, patterns=layers,
                         cap=WRITERS_BATCH)  # fmt: skip


def answer_writers(
    model: Any, prompts: Prompts, *, batch_size: int | None = None, centre: Centre = "auto"
) -> AnswerWriters:
    """Direct logit attribution of every head (and component) onto the answer at each prompt's
    position, split by the segment each head reads from.

    Args:
        model: A TransformerLens model (native or HuggingFace-wrapped bridge).
        prompts: The prompts, their positions and answers (:class:`Prompts`).
        batch_size: Prompts per forward pass (None: :func:`writers_rows`).
        centre: ``"foils"``: centre the answer on the mean of its foils (``prompts.foils``);
            ``"vocab"``: on the whole vocabulary; ``"auto"``: foils when the prompts have them.

    Raises:
        IterationHeadsError: not :class:`Prompts`, a token, answer or foil outside the
            vocabulary, prompts wider than the model's context, a label ``"all"``, a bad
            ``batch_size`` or ``centre``, or ``centre="foils"`` for prompts without foils.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=4))
        >>> result = answer_writers(model, iteration_prompts(data.test, data.layout))
        >>> result.writers(), result.segment_names[int(result.segment_dla["all"][1, 0].argmax())]
        ([(0, 0), (1, 0)], 'input')
        >>> result.centre, answer_writers(model, iteration_prompts(data.test, data.layout),
        ...                               centre="vocab").centre
        ('foils', 'vocab')
    """
    check_additive_residual(model, "direct logit attribution")
    _check(model, prompts, batch_size)
    cfg = model.cfg
    centring = resolve_centre(centre, prompts, int(cfg.d_vocab))
    foils = prompts.foils if centring == "foils" else None
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    names = {f"blocks.{lay}.hook_attn_out" for lay in range(n_layers)}
    for lay in range(n_layers):
        names |= {z_hook(lay), pattern_hook(lay), input_hook(lay, "v"), mlp_out_hook(lay)}
    names |= {"hook_embed", "hook_pos_embed"}  # the components are those that fire
    norm = _norm_kind(model)
    if norm != "none":
        names.add("ln_final.hook_scale")
    components: list[str] = []
    n_seg = len(prompts.segment_names) + 1
    device = device_of(model)
    parts: dict[str, list[Tensor]] = {k: [] for k in ("head", "seg", "comp", "bias", "logit")}
    with evaluating(model):
        W_U, W_O = model.W_U.float(), model.W_O.float()  # DLA in float32 whatever the weights
        b_O, b_U = _bias(model, "b_O", W_O[:, 0, 0]).float(), _bias(model, "b_U", W_U[0]).float()
        ln = getattr(model, "ln_final", None)
        w, b = getattr(ln, "w", None), getattr(ln, "b", None)
        size = batch_rows(batch_size, writers_rows(model, int(prompts.clean.shape[1])))
        shared = shared_sequences(prompts.clean, prompts.position)  # each sequence runs once
        order = []
        for _, seq, width in shared.plan(1, size, int(cfg.d_model)):
            _, at, rows, _ = shared.scored_in(seq, width)  # row of the pass, prompt
            order.append(rows)
            tokens = shared.tokens[seq, :width].to(device)
            pos = prompts.position[rows].to(device)
            answer = prompts.answer[rows].to(device)
            logits, cache = cached_run(model, tokens, names_filter=lambda n: n in names)
            at = at.to(device)
            rivals = None if foils is None else foils[rows]
            weights = competitor_weights(prompts.answer[rows], rivals, W_U.shape[1])
            weights = weights.to(device, W_U.dtype)  # [b, vocab]: the mean centred on
            u = W_U[:, answer].T - weights @ W_U.T  # [b, d_model]
            direction = u * w if w is not None else u
            if norm == "ln":
                direction = direction - direction.mean(-1, keepdim=True)
            if norm != "none":
                direction = direction / cache["ln_final.hook_scale"][at, pos]
            constant = b_U[answer] - weights @ b_U
            if b is not None:
                constant = constant + (u * b).sum(-1)
            streams = [n for n in ("hook_embed", "hook_pos_embed") if n in cache.cache_dict]
            components = [n.removeprefix("hook_") for n in streams]
            comp = [(cache[n][at, pos] * direction).sum(-1) for n in streams]
            heads, sources, bias = [], [], []
            segments = prompts.segments[rows, :width].to(device)
            one_hot = torch.nn.functional.one_hot(
                torch.where(segments < 0, n_seg - 1, segments), n_seg
            ).to(direction.dtype)  # [b, key, segment]
            for lay in range(n_layers):
                wo_e = torch.einsum("hdm,bm->bhd", W_O[lay], direction)
                heads.append((cache[z_hook(lay)][at, pos] * wo_e).sum(-1))
                v = cache[input_hook(lay, "v")][at].float()  # [b, key, head, d]
                if v.shape[2] != n_heads:  # grouped-query attention: heads share values
                    v = v.repeat_interleave(n_heads // v.shape[2], dim=2)
                row = cache[pattern_hook(lay)][at, :, pos]  # [b, head, key]
                per_key = row * torch.einsum("bkhd,bhd->bhk", v, wo_e)
                sources.append(torch.einsum("bhk,bks->bhs", per_key, one_hot))
                bias.append((b_O[lay] * direction).sum(-1))
                comp.append((cache[f"blocks.{lay}.hook_attn_out"][at, pos] * direction).sum(-1))
                components.append(f"attn L{lay}")
                if mlp_out_hook(lay) in cache.cache_dict:  # not in attention-only models
                    comp.append((cache[mlp_out_hook(lay)][at, pos] * direction).sum(-1))
                    components.append(f"mlp L{lay}")
            comp.append(constant)
            components.append(FINAL_BIAS)
            final = logits[at, pos]
            parts["head"].append(torch.stack(heads, 1).float().cpu())
            parts["seg"].append(torch.stack(sources, 1).float().cpu())
            parts["comp"].append(torch.stack(comp, 1).float().cpu())
            parts["bias"].append(torch.stack(bias, 1).float().cpu())
            mine = torch.arange(len(rows), device=device)
            centred = final[mine, answer] - (weights * final).sum(-1)
            parts["logit"].append(centred.float().cpu())
    back = torch.cat(order).argsort()  # the prompts' own order
    per_prompt, per_seg, per_comp = (torch.cat(parts[k])[back] for k in ("head", "seg", "comp"))
    groups = {"all": list(range(len(prompts)))}
    for i, label in enumerate(prompts.labels):
        groups.setdefault(label, []).append(i)
    return AnswerWriters(
        dla={k: per_prompt[g].mean(0) for k, g in groups.items()},
        stderr={k: standard_error(per_prompt[g], 0) for k, g in groups.items()},
        segment_dla={k: per_seg[g].mean(0) for k, g in groups.items()},
        component_dla={k: per_comp[g].mean(0) for k, g in groups.items()},
        per_prompt=per_prompt,
        per_prompt_segments=per_seg,
        per_prompt_components=per_comp,
        attn_bias=torch.cat(parts["bias"])[back],
        logit=torch.cat(parts["logit"])[back],
        components=tuple(components),
        segment_names=(*prompts.segment_names, OTHER_SEGMENT),
        labels=prompts.labels,
        centre=centring,
    )


def _bias(model: Any, name: str, like: Tensor) -> Tensor:
    """``model.b_O`` or ``model.b_U``, zeros for a model without that bias (e.g. Llama)."""
    try:
        value = getattr(model, name)
    except AttributeError:
        value = None
    return torch.zeros_like(like) if value is None else value


def _norm_kind(model: Any) -> str:
    """``"ln"`` (centred, scaled), ``"rms"`` (scaled) or ``"none"``: the final norm's kind."""
    kind = getattr(model.cfg, "normalization_type", None)
    if kind in ("LN", "LNPre"):
        return "rms" if getattr(model.cfg, "final_rms", False) else "ln"
    return "rms" if kind in ("RMS", "RMSPre") else "none"


def _check(model: Any, prompts: Prompts, batch_size: int | None) -> None:
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(
            f"prompts must be Prompts (from iteration_heads.pathways), got {type(prompts).__name__}"
        )
    batch_rows(batch_size, 1)
    if "all" in prompts.labels:
        raise IterationHeadsError("a prompt is labelled 'all', which names every prompt here")
    d_vocab = int(model.cfg.d_vocab)
    check_token_ids(prompts.clean, d_vocab, "token")
    check_token_ids(prompts.answer, d_vocab, "answer")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if isinstance(n_ctx, int) and prompts.clean.shape[1] > n_ctx:
        raise IterationHeadsError(
            f"prompts of width {prompts.clean.shape[1]} exceed the model's n_ctx={n_ctx}"
        )
