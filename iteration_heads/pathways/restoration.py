"""Which heads carry each subtask: per-head activation patching, clean into corrupted.

Dutta et al. (TMLR 2024) run the corrupted prompts with one head's output (its slice of
``blocks.{layer}.attn.hook_z``, before ``W_O``) replaced at every position by its value in the
clean run ("denoising"), and score how far the next-token distribution at the studied position
returns to the clean one. :func:`head_patching` does this for every head, stacking the
(head, prompt) pairs along the batch so that a sweep is a few forward passes, and reports two
normalised scores per subtask label:

* **KL score** ``(KL(P_clean‖P_corr) − KL(P_clean‖P_patched)) / KL(P_clean‖P_corr)``: 1 when
  restoring the head alone restores the clean distribution, 0 when it does nothing;
* **logit-difference score** ``(LD_patched − LD_corr) / (LD_clean − LD_corr)`` with
  ``LD = logit[answer] − logit[foil]``. The foil is the corrupted run's top-1 token at the
  position, or its second when the top-1 is the answer (the corruption did not flip the
  prediction): the token the corruption pushes the model towards.

Each score is aggregated two ways: the mean over prompts of the per-prompt score (``kl_score``,
``logit_diff_score``, with a standard error) and, as Dutta et al. compute it, the ratio of batch
means (``kl_ratio``, ``logit_diff_ratio``). Prompts whose corruption barely changes the output
(``KL(P_clean‖P_corr) < min_kl``) enter neither: their ratio is noise. They are counted per
label in ``n_excluded``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import Head, device_of, evaluating, head_names, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.interventions.patching import SWEEP_BATCH
from iteration_heads.interventions.scores import standard_error
from iteration_heads.passes import scored_logits
from iteration_heads.pathways.prompts import Prompts

ALL_LABELS = "all"
"""The label under which every prompt is aggregated."""

PatchingMetric = Literal["kl", "logit_diff"]
_FIELDS = [f"{m}_{s}" for m in ("kl", "logit_diff") for s in ("score", "stderr", "ratio")]
"""The per-label maps of :class:`HeadPatching`."""


@dataclass(frozen=True, repr=False)
class HeadPatching(Result):
    """Per-head patching scores, per label (subtask) and over all prompts (``"all"``).

    ``values`` is ``kl_score["all"]``: the mean over the included prompts of the per-prompt KL
    score. Dutta et al.'s own number is ``kl_ratio`` (ratio of the batch-mean KL divergences).

    Attributes:
        kl_score, logit_diff_score: Label -> mean per-prompt score ``[layer, head]`` (NaN for a
            label whose prompts are all excluded).
        kl_stderr, logit_diff_stderr: Label -> standard error of that mean.
        kl_ratio, logit_diff_ratio: Label -> ratio of batch means over the same prompts.
        n_prompts: Label -> prompts that enter the scores.
        n_excluded: Label -> prompts left out (``KL(P_clean‖P_corr) < min_kl``).
        per_prompt_kl, per_prompt_logit_diff: Every prompt's score ``[layer, head, n]`` (NaN
            for excluded prompts), float64 like the per-prompt values below.
        kl_corrupted: ``KL(P_clean‖P_corr)`` of every prompt.
        logit_diff_clean, logit_diff_corrupted: ``LD`` of every prompt in the clean and the
            corrupted run.
        foil: The foil token of every prompt (see the module notes).
        labels: The label of every prompt.
        min_kl: The exclusion threshold; ``n_forward``: forward passes of the sweep (the clean
            and corrupted runs not counted).
    """

    kl_score: dict[str, Float[Tensor, "layer head"]]
    kl_stderr: dict[str, Float[Tensor, "layer head"]]
    kl_ratio: dict[str, Float[Tensor, "layer head"]]
    logit_diff_score: dict[str, Float[Tensor, "layer head"]]
    logit_diff_stderr: dict[str, Float[Tensor, "layer head"]]
    logit_diff_ratio: dict[str, Float[Tensor, "layer head"]]
    n_prompts: dict[str, int]
    n_excluded: dict[str, int]
    per_prompt_kl: Float[Tensor, "layer head n"]
    per_prompt_logit_diff: Float[Tensor, "layer head n"]
    kl_corrupted: Float[Tensor, " n"]
    logit_diff_clean: Float[Tensor, " n"]
    logit_diff_corrupted: Float[Tensor, " n"]
    foil: Int[Tensor, " n"]
    labels: tuple[str, ...]
    min_kl: float
    n_forward: int

    @property
    def values(self) -> Float[Tensor, "layer head"]:
        """The mean per-prompt KL score over all prompts (``kl_score["all"]``)."""
        return self.kl_score[ALL_LABELS]

    @property
    def groups(self) -> list[str]:
        """The labels, in order of first appearance, then ``"all"``."""
        return list(self.kl_score)

    def scores(self, metric: PatchingMetric = "kl") -> dict[str, Float[Tensor, "layer head"]]:
        """``kl_score`` or ``logit_diff_score``, or a clear error for another metric."""
        if metric not in ("kl", "logit_diff"):
            raise IterationHeadsError(f"metric {metric!r}, expected 'kl' or 'logit_diff'")
        return self.kl_score if metric == "kl" else self.logit_diff_score

    def stderr(self, metric: PatchingMetric = "kl") -> dict[str, Float[Tensor, "layer head"]]:
        """``kl_stderr`` or ``logit_diff_stderr``."""
        self.scores(metric)
        return self.kl_stderr if metric == "kl" else self.logit_diff_stderr

    def ranking(self, label: str = ALL_LABELS, metric: PatchingMetric = "kl") -> list[Head]:
        """Every head, highest score first (NaN scores last; ties by layer, then head)."""
        scores = self.scores(metric)
        if label not in scores:
            raise IterationHeadsError(f"label {label!r}, expected one of {list(scores)}")
        values = scores[label]
        heads = [(lay, h) for lay in range(values.shape[0]) for h in range(values.shape[1])]

        def key(head: Head) -> tuple[float, Head]:
            v = float(values[head])
            return (math.inf if math.isnan(v) else -v, head)

        return sorted(heads, key=key)

    def top(self, k: int = 5, label: str = ALL_LABELS, metric: PatchingMetric = "kl") -> list[Head]:
        """The ``k`` highest-scoring heads of ``label``."""
        return self.ranking(label, metric)[:k]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (label, layer, head) with every score, its standard error,
        the ratio of means, ``n`` and ``n_excluded``."""
        rows = []
        for label, kl in self.kl_score.items():
            for layer in range(kl.shape[0]):
                for head in range(kl.shape[1]):
                    rows.append(
                        {
                            "label": label,
                            "layer": layer,
                            "head": head,
                            "kl_score": float(kl[layer, head]),
                            "kl_stderr": float(self.kl_stderr[label][layer, head]),
                            "kl_ratio": float(self.kl_ratio[label][layer, head]),
                            "logit_diff_score": float(self.logit_diff_score[label][layer, head]),
                            "logit_diff_stderr": float(self.logit_diff_stderr[label][layer, head]),
                            "logit_diff_ratio": float(self.logit_diff_ratio[label][layer, head]),
                            "n": self.n_prompts[label],
                            "n_excluded": self.n_excluded[label],
                        }
                    )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: the per-label maps and counts (per-prompt scores left out)."""
        return {
            "min_kl": self.min_kl,
            "n_forward": self.n_forward,
            "labels": self.groups,
            "n_prompts": dict(self.n_prompts),
            "n_excluded": dict(self.n_excluded),
            **{
                name: {label: t.tolist() for label, t in getattr(self, name).items()}
                for name in _FIELDS
            },
        }

    def format(self, k: int = 3) -> str:
        """A line per label: its counts and its ``k`` top heads by KL score (± stderr) with
        their logit-difference score."""
        n_layers, n_heads = self.values.shape
        lines = [
            f"head patching (clean into corrupted, every position): {n_layers} layers x "
            f"{n_heads} heads, {len(self.labels)} prompts, {self.n_excluded[ALL_LABELS]} "
            f"excluded (KL(clean||corrupted) < {self.min_kl:g})"
        ]
        for label in self.groups:
            heads = self.top(k, label) if self.n_prompts[label] else []
            tops = ", ".join(
                f"{head_names([h])} KL {float(self.kl_score[label][h]):.3f}"
                f"±{float(self.kl_stderr[label][h]):.3f} LD "
                f"{float(self.logit_diff_score[label][h]):.3f}"
                for h in heads
            )
            lines.append(
                f"  {label} (n={self.n_prompts[label]}, excluded {self.n_excluded[label]}): "
                f"{tops or 'no prompt'}"
            )
        return "\n".join(lines)


def head_patching(
    model: Any, prompts: Prompts, *, min_kl: float = 1e-3, batch_size: int = SWEEP_BATCH
) -> HeadPatching:
    """Patch each head's clean output into the corrupted run, at every position, one head at a
    time, and score the next-token distribution at ``prompts.position`` (see the module notes).

    Each (head, prompt) pair is one row of a stacked batch, ``batch_size`` rows per forward
    pass; pairs whose clean and corrupted head outputs are equal are not run (the patch is a
    no-op: score 0). Only positions up to the last studied one are run (attention is causal).

    Args:
        model: A TransformerLens bridge (native or wrapped HuggingFace) or ``HookedTransformer``.
        prompts: Prompts with ``corrupted`` tokens.
        min_kl: Prompts with ``KL(P_clean‖P_corr)`` below this (nats) enter no score.
        batch_size: Rows per forward pass.

    Raises:
        IterationHeadsError: prompts without corruption, token ids outside the vocabulary, a bad
            option, or no prompt whose corruption changes the output by ``min_kl``.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> result = head_patching(model, iteration_prompts(data.test, data.layout))
        >>> result.ranking()[0], result.values.shape
        ((1, 0), torch.Size([2, 1]))
    """
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    corrupted = prompts.need_corrupted("head patching")
    if ALL_LABELS in prompts.labels:
        raise IterationHeadsError(
            f"a prompt is labelled {ALL_LABELS!r}, the name of the overall aggregate; rename it"
        )
    if isinstance(min_kl, bool) or not isinstance(min_kl, int | float) or not min_kl >= 0:
        raise IterationHeadsError(f"min_kl={min_kl!r}, expected a number >= 0")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size!r}, expected an integer >= 1")
    d_vocab = getattr(model.cfg, "d_vocab", None)
    if isinstance(d_vocab, int):
        check_token_ids(prompts.clean, d_vocab, "clean token")
        check_token_ids(corrupted, d_vocab, "corrupted token")
        check_token_ids(prompts.answer, d_vocab, "answer token")
    width = int(prompts.position.max()) + 1  # causal: later positions change nothing studied
    clean_tokens, corrupt_tokens = prompts.clean[:, :width], corrupted[:, :width]
    position, answer = prompts.position, prompts.answer
    clean_logits, clean_z = _run(model, clean_tokens, position, batch_size)
    corrupt_logits, corrupt_z = _run(model, corrupt_tokens, position, batch_size)
    clean_lp = clean_logits.double().log_softmax(-1)
    kl_corr = _kl(clean_lp, corrupt_logits)
    foil = _foil(corrupt_logits, answer)
    ld_clean, ld_corr = (
        _logit_diff(clean_logits, answer, foil),
        _logit_diff(corrupt_logits, answer, foil),
    )
    included = kl_corr >= min_kl
    if not bool(included.any()):
        raise IterationHeadsError(
            f"no prompt's corruption changes its next-token distribution by min_kl={min_kl:g} "
            f"(largest KL(clean||corrupted) {float(kl_corr.max()):.3g}): nothing to restore"
        )

    def score(logits: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        return _kl(clean_lp[rows], logits), _logit_diff(logits, answer[rows], foil[rows])

    kl_patched, ld_patched, n_forward = _sweep(
        model, corrupt_tokens, position, clean_z, corrupt_z, score, (kl_corr, ld_corr), batch_size
    )  # layer head n
    nan = torch.tensor(math.nan, dtype=torch.float64)
    per_kl = torch.where(included, (kl_corr - kl_patched) / kl_corr, nan)
    per_ld = torch.where(included, (ld_patched - ld_corr) / (ld_clean - ld_corr), nan)
    out: dict[str, dict[str, Tensor]] = {name: {} for name in _FIELDS}
    n_prompts, n_excluded = {}, {}
    groups = [*dict.fromkeys(prompts.labels), ALL_LABELS]
    for label in groups:
        rows = torch.tensor([label in (ALL_LABELS, x) for x in prompts.labels])
        use = rows & included
        n_prompts[label], n_excluded[label] = int(use.sum()), int((rows & ~included).sum())
        kl_c, kl_p = kl_corr[use], kl_patched[..., use]
        ld_gap = (ld_clean - ld_corr)[use].mean()
        for name, value in (
            ("kl_score", _mean(per_kl[..., use])),
            ("kl_stderr", _stderr(per_kl[..., use])),
            ("kl_ratio", (kl_c.mean() - kl_p.mean(-1)) / kl_c.mean()),
            ("logit_diff_score", _mean(per_ld[..., use])),
            ("logit_diff_stderr", _stderr(per_ld[..., use])),
            ("logit_diff_ratio", (ld_patched[..., use].mean(-1) - ld_corr[use].mean()) / ld_gap),
        ):
            out[name][label] = value.float()
    return HeadPatching(
        **out,
        n_prompts=n_prompts,
        n_excluded=n_excluded,
        per_prompt_kl=per_kl,
        per_prompt_logit_diff=per_ld,
        kl_corrupted=kl_corr,
        logit_diff_clean=ld_clean,
        logit_diff_corrupted=ld_corr,
        foil=foil,
        labels=tuple(prompts.labels),
        min_kl=float(min_kl),
        n_forward=n_forward,
    )


def _mean(values: Tensor) -> Tensor:
    if values.shape[-1] == 0:
        return torch.full(values.shape[:-1], math.nan, dtype=torch.float64)
    return values.mean(-1)


def _stderr(values: Tensor) -> Tensor:
    if values.shape[-1] == 0:  # a label whose prompts were all excluded
        return torch.full(values.shape[:-1], math.nan, dtype=torch.float64)
    return standard_error(values)


def _kl(clean_lp: Tensor, logits: Tensor) -> Tensor:
    """``KL(P_clean‖P)`` over the last dimension (float64), broadcast over leading ones."""
    lp = logits.double().log_softmax(-1)
    return (clean_lp.exp() * (clean_lp - lp)).sum(-1)


def _foil(logits: Tensor, answer: Tensor) -> Tensor:
    """The top-1 token of ``logits`` ``[n, vocab]``, or its second where the top-1 is the answer."""
    top2 = logits.topk(2, dim=-1).indices
    return torch.where(top2[:, 0] == answer, top2[:, 1], top2[:, 0])


def _logit_diff(logits: Tensor, answer: Tensor, foil: Tensor) -> Tensor:
    """``logit[answer] − logit[foil]`` (float64) for logits ``[n, vocab]``."""
    a = logits.gather(-1, answer[:, None]).squeeze(-1)
    b = logits.gather(-1, foil[:, None]).squeeze(-1)
    return a.double() - b.double()


def _run(
    model: Any, tokens: Tensor, position: Tensor, size: int
) -> tuple[Tensor, dict[int, Tensor]]:
    """Logits at ``position`` ``[n, vocab]`` and every layer's ``hook_z``."""
    n_layers = int(model.cfg.n_layers)
    device = device_of(model)
    logits: list[Tensor] = []
    z: dict[int, list[Tensor]] = {layer: [] for layer in range(n_layers)}
    with evaluating(model):
        for t, p in zip(tokens.split(size), position.split(size), strict=True):
            hooks = [(z_hook(layer), _keep(z[layer])) for layer in range(n_layers)]
            logits.append(scored_logits(model, t.to(device), _at(t, p), hooks=hooks).cpu())
    return torch.cat(logits), {layer: torch.cat(parts) for layer, parts in z.items()}


def _keep(store: list[Tensor]) -> Callable[[Tensor, Any], None]:
    def hook(value: Tensor, hook: Any) -> None:
        store.append(value.detach().cpu())

    return hook


def _at(tokens: Tensor, position: Tensor) -> Tensor:
    """A boolean mask ``[n, pos]`` true at each row's position."""
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[torch.arange(len(tokens)), position] = True
    return mask


def _sweep(
    model: Any,
    corrupted: Tensor,
    position: Tensor,
    clean_z: dict[int, Tensor],
    corrupt_z: dict[int, Tensor],
    score: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    base: tuple[Tensor, Tensor],
    batch_size: int,
) -> tuple[Tensor, Tensor, int]:
    """``KL(P_clean‖P_patched)`` and ``LD_patched`` ``[layer, head, n]`` of every single-head
    patch; ``score(logits, rows)`` gives both for the logits at the position of ``rows``,
    ``base`` those of the corrupted run (kept where the patch is a no-op)."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    differs = torch.stack(
        [(clean_z[lay] != corrupt_z[lay]).any(-1).any(1).T for lay in range(n_layers)]
    )  # layer head n
    kl, ld = (b[None, None].repeat(n_layers, n_heads, 1) for b in base)
    layer_i, head_i, seq_i = differs.nonzero(as_tuple=True)
    device, passes = device_of(model), 0
    with evaluating(model):
        for start in range(0, len(layer_i), batch_size):
            rows = slice(start, start + batch_size)
            lay, head, seq = layer_i[rows], head_i[rows], seq_i[rows]
            hooks = []
            for layer in lay.unique().tolist():
                pick = (lay == layer).nonzero().flatten()
                value = clean_z[layer][seq[pick], :, head[pick]]  # rows pos d_head
                hooks.append((z_hook(layer), _patch(pick, head[pick], value)))
            tokens = corrupted[seq]
            logits = scored_logits(
                model, tokens.to(device), _at(tokens, position[seq]), hooks=hooks
            )
            kl[lay, head, seq], ld[lay, head, seq] = score(logits.cpu(), seq)
            passes += 1
    return kl, ld, passes


def _patch(rows: Tensor, heads: Tensor, value: Tensor) -> Callable[[Tensor, Any], Tensor]:
    def hook(z: Tensor, hook: Any) -> Tensor:
        z = z.clone()
        z[rows.to(z.device), :, heads.to(z.device)] = value.to(z.device, z.dtype)
        return z

    return hook
