"""Causal interventions on attention heads: what they share, and ablation.

Every intervention edits a head's own output or pattern through TransformerLens hooks, so it works
on native and HuggingFace-wrapped ``TransformerBridge`` models alike and needs none of the flags
native models lack (``hook_result``, ``set_use_attn_result``):

* a head's output is its slice of ``blocks.{layer}.attn.hook_z`` ``[batch, pos, head, d_head]``
  (the head writes ``z @ W_O[head]`` to the residual stream);
* a head's pattern is its slice of ``blocks.{layer}.attn.hook_pattern`` ``[batch, head, q, k]``.

:func:`ablate` is a context manager (zero, mean or resampled output, at all or chosen positions);
:func:`ablation_effect` runs a batch with and without it and scores the chain of thought
(sequence accuracy, loss, logit difference of the correct token on the scored positions,
``targets != -100``). The other interventions build on this module: planted patterns
(:mod:`iteration_heads.patterns`), activation and path patching (:mod:`iteration_heads.patching`),
the position-shift experiment (:mod:`iteration_heads.shift`) and the causal check of a detected
circuit (:mod:`iteration_heads.verification`). Models are left as found: mode and hooks, also
after an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads.data import IGNORE, DataConfig, Split, make_dataset
from iteration_heads.detect import _device, _evaluating
from iteration_heads.errors import IterationHeadsError
from iteration_heads.evaluate import SUMMARY_MIN_LEN
from iteration_heads.model import model_config
from iteration_heads.probes import _spread

Head = tuple[int, int]
"""``(layer, head)``."""

Data = Split | tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor] | None
"""A :class:`~iteration_heads.data.Split`, ``(tokens, targets)`` or ``(tokens, targets, lengths)``;
None: the test split of the task a library model was trained on."""

AblationKind = Literal["zero", "mean", "resample"]
ABLATION_KINDS: tuple[str, ...] = ("zero", "mean", "resample")

BATCH_SIZE = 1024
"""Default sequences per forward pass."""


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Batch:
    """Token ids, next-token targets (``-100``: not scored) and input lengths (may be unknown)."""

    tokens: Int[Tensor, "batch pos"]
    targets: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"] | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def rows(self, index: slice) -> Batch:
        """The sequences at ``index``."""
        lengths = None if self.lengths is None else self.lengths[index]
        return Batch(self.tokens[index], self.targets[index], lengths)

    def as_data(self) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        """``(tokens, targets[, lengths])``, as the functions of this module take it."""
        if self.lengths is None:
            return (self.tokens, self.targets)
        return (self.tokens, self.targets, self.lengths)

    def need_lengths(self, what: str) -> Int[Tensor, " batch"]:
        """The lengths, or a clear error saying ``what`` needs them."""
        if self.lengths is None:
            raise IterationHeadsError(
                f"{what} needs the input length of every sequence: pass a Split or "
                "(tokens, targets, lengths)"
            )
        return self.lengths


def as_batch(model: torch.nn.Module, data: Data = None, *, n: int | None = None) -> Batch:
    """Resolve ``data`` to a :class:`Batch` (library layout: EoI at ``L+1``).

    None takes the test split of the task the model was trained on (from its metadata), as
    :meth:`~iteration_heads.probes.Probes.from_model` does; ``n`` keeps at most that many
    sequences, spread over the lengths.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> as_batch(build_model(ModelConfig(d_model=32, max_len=4)), split, n=8).tokens.shape
        torch.Size([8, 11])
    """
    if data is None:
        from iteration_heads.checkpoint import model_metadata

        try:
            config = model_config(model)
        except IterationHeadsError:
            raise IterationHeadsError(
                f"{type(model).__name__} was not built by iteration_heads, so there is no test "
                "split to use: pass data=Split or (tokens, targets)"
            ) from None
        meta = model_metadata(model)
        if "data" not in meta:
            raise IterationHeadsError(
                "the model has no data config in its metadata (built, not trained by this "
                "library?); pass data=Split or (tokens, targets)"
            )
        data_config = DataConfig.from_dict({**meta["data"], "cot": True})
        data = make_dataset(data_config, config.layout).test
    if isinstance(data, Split):
        batch = Batch(data.tokens, data.targets, data.lengths)
    elif isinstance(data, tuple) and len(data) in (2, 3):
        tokens, targets = torch.as_tensor(data[0]), torch.as_tensor(data[1])
        lengths = torch.as_tensor(data[2]).long() if len(data) == 3 else None
        if tokens.ndim != 2 or tokens.shape != targets.shape:
            raise IterationHeadsError(
                f"tokens and targets must both be [batch, pos], got shapes {tuple(tokens.shape)} "
                f"and {tuple(targets.shape)}"
            )
        if lengths is not None and lengths.shape != (tokens.shape[0],):
            raise IterationHeadsError(
                f"lengths must have shape [{tokens.shape[0]}], got {tuple(lengths.shape)}"
            )
        batch = Batch(tokens.long(), targets.long(), lengths)
    else:
        raise IterationHeadsError(
            f"data must be a Split, (tokens, targets) or (tokens, targets, lengths), got "
            f"{type(data).__name__}"
        )
    if len(batch) == 0:
        raise IterationHeadsError("data holds no sequence")
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if isinstance(n_ctx, int) and batch.tokens.shape[1] > n_ctx:
        raise IterationHeadsError(
            f"sequences of width {batch.tokens.shape[1]} exceed the model's n_ctx={n_ctx}"
        )
    if n is not None:
        if batch.lengths is None:
            index = torch.arange(min(n, len(batch)))
        else:
            index = _spread(batch.lengths, n, 0)
        lengths = None if batch.lengths is None else batch.lengths[index]
        batch = Batch(batch.tokens[index], batch.targets[index], lengths)
    return batch


def check_heads(model: Any, heads: Sequence[Head] | Head) -> list[Head]:
    """``heads`` as a sorted list of ``(layer, head)``, or a clear error naming the bad one.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> check_heads(build_model(ModelConfig(d_model=32, max_len=4)), [(1, 0), (0, 0)])
        [(0, 0), (1, 0)]
    """
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(v, int) for v in heads):
        heads = [heads]  # type: ignore[list-item]
    result = []
    for spec in heads:
        if not (
            isinstance(spec, Sequence)
            and len(spec) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in spec)
        ):
            raise IterationHeadsError(f"head {spec!r}: expected a (layer, head) pair of ints")
        layer, head = spec
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise IterationHeadsError(
                f"head (layer={layer}, head={head}) does not exist: the model has layers "
                f"0..{n_layers - 1} and heads 0..{n_heads - 1}"
            )
        result.append((layer, head))
    if not result:
        raise IterationHeadsError("no head given: expected at least one (layer, head)")
    return sorted(set(result))


def _check_positions(positions: int | Sequence[int] | None, width: int | None) -> list[int] | None:
    if positions is None:
        return None
    values = [positions] if isinstance(positions, int) else list(positions)
    bad = [p for p in values if not isinstance(p, int) or p < 0 or (width and p >= width)]
    if bad or not values:
        limit = f"0..{width - 1}" if width else ">= 0"
        raise IterationHeadsError(f"positions {values!r}: expected a non-empty list of {limit}")
    return sorted(set(values))


def _check_kind(kind: str, allowed: tuple[str, ...], what: str) -> None:
    if kind not in allowed:
        raise IterationHeadsError(f"unknown {what} {kind!r}; expected one of {list(allowed)}")


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scores:
    """Per-sequence scores of a teacher-forced run on the scored (CoT) positions.

    Attributes:
        accuracy: 1 when every scored token is predicted right (sequence accuracy), else 0.
        token_accuracy: Fraction of scored tokens predicted right.
        loss: Mean cross-entropy over the scored tokens.
        logit_diff: Mean over scored tokens of the correct token's logit minus the best other
            logit (> 0 exactly when the prediction is right).
        lengths: Input length of every sequence, when known.
    """

    accuracy: Float[Tensor, " batch"]
    token_accuracy: Float[Tensor, " batch"]
    loss: Float[Tensor, " batch"]
    logit_diff: Float[Tensor, " batch"]
    lengths: Int[Tensor, " batch"] | None = None

    METRICS = ("accuracy", "token_accuracy", "loss", "logit_diff")

    @classmethod
    def of(
        cls,
        logits: Float[Tensor, "batch pos vocab"],
        targets: Int[Tensor, "batch pos"],
        lengths: Tensor | None = None,
    ) -> Scores:
        """Score ``logits`` against ``targets`` (``-100`` = not scored)."""
        scored = targets != IGNORE
        if not bool(scored.any(1).all()):
            raise IterationHeadsError("a sequence has no scored target (targets all -100)")
        safe = targets.clamp(min=0)
        logits = logits.float()
        right_logit = logits.gather(-1, safe[..., None])[..., 0]
        others = logits.scatter(-1, safe[..., None], float("-inf")).amax(-1)
        n = scored.sum(1)
        right = (logits.argmax(-1) == targets) & scored
        loss = F.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none"
        )
        diff = ((right_logit - others) * scored).sum(1) / n
        return cls(
            accuracy=(right | ~scored).all(1).float().cpu(),
            token_accuracy=(right.sum(1) / n).float().cpu(),
            loss=(loss.sum(1) / n).cpu(),
            logit_diff=diff.cpu(),
            lengths=None if lengths is None else lengths.cpu(),
        )

    @classmethod
    def cat(cls, parts: list[Scores]) -> Scores:
        """One :class:`Scores` of several runs, in order."""
        lengths = [p.lengths for p in parts if p.lengths is not None]
        return cls(
            accuracy=torch.cat([p.accuracy for p in parts]),
            token_accuracy=torch.cat([p.token_accuracy for p in parts]),
            loss=torch.cat([p.loss for p in parts]),
            logit_diff=torch.cat([p.logit_diff for p in parts]),
            lengths=torch.cat(lengths) if len(lengths) == len(parts) else None,
        )

    def mean(self, metric: str, min_len: int = SUMMARY_MIN_LEN) -> float:
        """``metric`` averaged per length over lengths ``>= min_len`` (as training logs it);
        a plain mean when lengths are unknown."""
        values = getattr(self, metric)
        if self.lengths is None:
            return float(values.mean())
        present = sorted(set(self.lengths.tolist()))
        keep = [n for n in present if n >= min_len] or present
        return float(torch.stack([values[self.lengths == n].mean() for n in keep]).mean())

    def summary(self, min_len: int = SUMMARY_MIN_LEN) -> dict[str, float]:
        """Every metric, averaged as :meth:`mean` does."""
        return {m: self.mean(m, min_len) for m in self.METRICS}


def run_scored(
    model: Any,
    batch: Batch,
    make_hooks: Callable[[slice], list[tuple[str, Callable]]] | None = None,
    *,
    batch_size: int = BATCH_SIZE,
) -> Scores:
    """Run ``batch`` in chunks (eval mode, no gradients), with ``make_hooks(rows)`` attached for
    each chunk, and score it. Hooks are removed after each chunk, also on error."""
    if batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size}, expected >= 1")
    device, parts = _device(model), []
    with _evaluating(model):
        for start in range(0, len(batch), batch_size):
            rows = slice(start, start + batch_size)
            chunk = batch.rows(rows)
            hooks = make_hooks(rows) if make_hooks else []
            with model.hooks(fwd_hooks=hooks):
                logits = model(chunk.tokens.to(device))
            parts.append(Scores.of(logits, chunk.targets.to(device), chunk.lengths))
    return Scores.cat(parts)


@dataclass(frozen=True)
class Effect:
    """Scores of a batch without (``clean``) and with (``intervened``) an intervention."""

    description: str
    clean: Scores
    intervened: Scores

    def summary(self, min_len: int = SUMMARY_MIN_LEN) -> dict[str, dict[str, float]]:
        """Clean, intervened and their difference (intervened − clean), per metric."""
        clean, new = self.clean.summary(min_len), self.intervened.summary(min_len)
        return {
            "clean": clean,
            "intervened": new,
            "change": {m: new[m] - clean[m] for m in clean},
        }

    @property
    def accuracy(self) -> float:
        """Sequence accuracy with the intervention (lengths ``>= 4`` averaged per length)."""
        return self.intervened.mean("accuracy")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"description": self.description, **self.summary()}

    def __repr__(self) -> str:
        s = self.summary()
        cells = ", ".join(
            f"{m} {s['clean'][m]:.3f} -> {s['intervened'][m]:.3f}" for m in Scores.METRICS
        )
        return f"Effect({self.description}: {cells})"


# ---------------------------------------------------------------- ablation


def head_outputs(
    model: Any, tokens: Int[Tensor, "batch pos"], layers: Sequence[int], batch_size: int
) -> dict[int, Float[Tensor, "batch pos head d_head"]]:
    """``hook_z`` of ``layers`` for every sequence of ``tokens`` (eval mode, no gradients)."""
    names = {f"blocks.{layer}.attn.hook_z": layer for layer in layers}
    parts: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    device = _device(model)
    with _evaluating(model):
        for chunk in tokens.split(batch_size):
            _, cache = model.run_with_cache(chunk.to(device), names_filter=lambda n: n in names)
            for name, layer in names.items():
                parts[layer].append(cache[name])
    return {layer: torch.cat(p) for layer, p in parts.items()}


def _ablation_hooks(
    specs: list[Head],
    kind: str,
    positions: list[int] | None,
    reference: dict[int, Tensor] | None,
    generator: torch.Generator,
    start: int = 0,
) -> list[tuple[str, Callable]]:
    """One ``hook_z`` hook per layer replacing the heads' output (see :func:`ablate`)."""
    hooks = []
    for layer in sorted({layer for layer, _ in specs}):
        heads = [h for lay, h in specs if lay == layer]

        def hook(z: Tensor, hook: Any, layer: int = layer, heads: list[int] = heads) -> Tensor:
            batch, width = z.shape[:2]
            pos = list(range(width)) if positions is None else [p for p in positions if p < width]
            if kind == "zero":
                new = torch.zeros_like(z[:, pos][:, :, heads])
            else:
                assert reference is not None
                ref = reference[layer]
                if ref.shape[1] < width:
                    raise IterationHeadsError(
                        f"reference sequences of width {ref.shape[1]} are shorter than the run's "
                        f"{width}: pass a reference batch at least as wide"
                    )
                ref = ref[:, pos][:, :, heads].to(z.device, z.dtype)
                if kind == "mean":
                    new = ref.mean(0, keepdim=True).expand(batch, -1, -1, -1)
                else:  # resample: row i takes row (start + i + offset) of the reference
                    n_ref = ref.shape[0]
                    offset = torch.randint(1, max(n_ref, 2), (batch,), generator=generator)
                    rows = (start + torch.arange(batch) + offset) % n_ref
                    new = ref[rows.to(ref.device)]
            z = z.clone()
            index = torch.tensor(pos, device=z.device)[:, None]
            z[:, index, torch.tensor(heads, device=z.device)] = new
            return z

        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return hooks


def _prepare_ablation(
    model: Any,
    heads: Sequence[Head] | Head,
    kind: str,
    positions: int | Sequence[int] | None,
    reference: Int[Tensor, "batch pos"] | None,
    batch_size: int,
) -> tuple[list[Head], list[int] | None, dict[int, Tensor] | None]:
    _check_kind(kind, ABLATION_KINDS, "ablation kind")
    specs = check_heads(model, heads)
    width = getattr(model.cfg, "n_ctx", None)
    pos = _check_positions(positions, width if isinstance(width, int) else None)
    ref = None
    if kind != "zero":
        if reference is None:
            raise IterationHeadsError(
                f"{kind} ablation needs reference=tokens [batch, pos] to take the head outputs from"
            )
        reference = torch.as_tensor(reference)
        if reference.ndim != 2 or len(reference) < 2:
            raise IterationHeadsError(
                f"reference must be token ids [batch >= 2, pos], got shape {tuple(reference.shape)}"
            )
        ref = head_outputs(model, reference, sorted({lay for lay, _ in specs}), batch_size)
    return specs, pos, ref


@contextmanager
def ablate(
    model: Any,
    heads: Sequence[Head] | Head,
    *,
    kind: AblationKind = "zero",
    positions: int | Sequence[int] | None = None,
    reference: Int[Tensor, "batch pos"] | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Any]:
    """Ablate the output of ``heads`` inside the ``with`` block.

    The head's own output (its slice of ``blocks.{layer}.attn.hook_z``, before ``W_O``) is
    replaced at ``positions`` (None: all) by zero, by its mean over the ``reference`` sequences
    at the same position (``"mean"``), or by its value in another reference sequence
    (``"resample"``: row ``i`` of a forward pass takes reference row ``i + offset``, a random
    ``offset`` in ``1 .. n_ref - 1``, so when the reference is the batch itself no sequence
    keeps its own output).

    Args:
        model: A TransformerLens bridge (native or wrapped HuggingFace) or ``HookedTransformer``.
        heads: ``(layer, head)`` or a list of them.
        kind: ``"zero"``, ``"mean"`` or ``"resample"``.
        positions: Positions to ablate (None: every position).
        reference: Token ids whose head outputs feed mean and resample ablation (run once, on
            entry); at least as wide as the batches run inside the block.
        seed: Seeds the resampling.
        batch_size: Reference sequences per forward pass.

    Yields:
        The model, with the ablation hooks attached; they are removed on exit, also on error.

    Raises:
        IterationHeadsError: for a head that does not exist, an unknown kind, bad positions, or
            a missing reference; nothing stays attached.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> tokens = torch.randint(0, 16, (4, 11))
        >>> with ablate(model, heads=[(1, 0)], kind="mean", reference=tokens):
        ...     ablated = model(tokens)
        >>> ablated.shape, bool((ablated != model(tokens)).any())
        (torch.Size([4, 11, 16]), True)
    """
    specs, pos, ref = _prepare_ablation(model, heads, kind, positions, reference, batch_size)
    generator = torch.Generator().manual_seed(seed)
    with model.hooks(fwd_hooks=_ablation_hooks(specs, kind, pos, ref, generator)):
        yield model


def ablation_effect(
    model: Any,
    heads: Sequence[Head] | Head,
    data: Data = None,
    *,
    kind: AblationKind = "mean",
    positions: int | Sequence[int] | None = None,
    reference: Int[Tensor, "batch pos"] | None = None,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Effect:
    """Score ``data`` with and without ablating ``heads`` (see :func:`ablate`).

    ``reference`` defaults to the data's own tokens (mean over the batch; resample from other
    sequences of the batch). Cost: two forward passes over the data (three for mean and
    resample ablation).

    Returns:
        An :class:`Effect`: sequence accuracy, token accuracy, loss and logit difference of the
        correct token on the scored positions, clean and ablated.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=16)).test
        >>> effect = ablation_effect(model, [(0, 0)], split, kind="zero")
        >>> sorted(effect.summary()["change"])
        ['accuracy', 'logit_diff', 'loss', 'token_accuracy']
    """
    batch = as_batch(model, data, n=n)
    ref_tokens = batch.tokens if reference is None else reference
    specs, pos, ref = _prepare_ablation(model, heads, kind, positions, ref_tokens, batch_size)
    generator = torch.Generator().manual_seed(seed)
    clean = run_scored(model, batch, batch_size=batch_size)
    ablated = run_scored(
        model,
        batch,
        lambda rows: _ablation_hooks(specs, kind, pos, ref, generator, rows.start),
        batch_size=batch_size,
    )
    where = "all positions" if pos is None else f"positions {pos}"
    return Effect(f"{kind} ablation of {_names(specs)} at {where}", clean, ablated)


def _names(specs: Sequence[Head]) -> str:
    return "+".join(f"L{layer}H{head}" for layer, head in specs) or "no head"


def standard_error(values: Tensor, dim: int = -1) -> Tensor:
    """Standard error of the mean along ``dim`` (0 for a single value)."""
    n = values.shape[dim]
    if n < 2:
        return torch.zeros_like(values.select(dim, 0))
    return values.std(dim) / math.sqrt(n)
