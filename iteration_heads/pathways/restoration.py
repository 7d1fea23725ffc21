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

Each score is aggregated two ways (:mod:`~iteration_heads.pathways.patching_stats`): as Dutta
et al. compute it, the ratio of batch means (``kl_ratio``, ``logit_diff_ratio``: the default of
``values``, the rankings and the figures), and the mean over prompts of the per-prompt score
(``kl_score``, ``logit_diff_score``, with a standard error and the spread of the per-prompt
scores: ``aggregate="mean"``). A per-prompt score explodes where the corruption barely changes
that prompt's output; the ratio of means weighs each prompt by its effect and stays stable.
Prompts with ``KL(P_clean‖P_corr) < min_kl`` enter neither; they are counted per label in
``n_excluded``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import Head, device_of, evaluating, head_names, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.memory import batch_rows
from iteration_heads.passes import scored_logits
from iteration_heads.pathways.attribution import (
    attribution_estimates,
    choose_method,
    linearised_sweep,
    patching_rows,
    position_mask,
    run_keeping_z,
)
from iteration_heads.pathways.patching_shards import only_heads
from iteration_heads.pathways.patching_stats import (
    ALL_LABELS,
    FIELDS,
    SPREAD_STATS,
    answer_foil,
    check_patching_request,
    kl_from_clean,
    logit_difference,
    patching_aggregates,
    spread,
)
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.tasks.task import check_int

PatchingMetric = Literal["kl", "logit_diff"]
Aggregate = Literal["ratio", "mean"]


@dataclass(frozen=True, repr=False)
class HeadPatching(Result):
    """Per-head patching scores, per label (subtask) and over all prompts (``"all"``).

    ``values`` is ``kl_ratio["all"]``: the ratio of the batch-mean KL divergences over the
    included prompts (Dutta et al.'s number, robust to prompts the corruption barely changes);
    the rankings use it too unless ``aggregate="mean"`` (the mean of per-prompt scores, whose
    spread :meth:`spread` gives).

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
        method: ``"exact"`` or ``"attribution"`` (every score a first-order estimate).
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
    method: str = "exact"

    @property
    def values(self) -> Float[Tensor, "layer head"]:
        """The KL ratio of means over all prompts (``kl_ratio["all"]``)."""
        return self.kl_ratio[ALL_LABELS]

    @property
    def groups(self) -> list[str]:
        """The labels, in order of first appearance, then ``"all"``."""
        return list(self.kl_score)

    def scores(
        self, metric: PatchingMetric = "kl", aggregate: Aggregate = "ratio"
    ) -> dict[str, Float[Tensor, "layer head"]]:
        """Label -> ``[layer, head]`` map of ``metric`` (``"kl"``, ``"logit_diff"``), as the
        ratio of means (``aggregate="ratio"``) or the mean per-prompt score (``"mean"``)."""
        if metric not in ("kl", "logit_diff"):
            raise IterationHeadsError(f"metric {metric!r}, expected 'kl' or 'logit_diff'")
        if aggregate not in ("ratio", "mean"):
            raise IterationHeadsError(f"aggregate {aggregate!r}, expected 'ratio' or 'mean'")
        return getattr(self, f"{metric}_{'ratio' if aggregate == 'ratio' else 'score'}")

    def stderr(self, metric: PatchingMetric = "kl") -> dict[str, Float[Tensor, "layer head"]]:
        """``kl_stderr`` or ``logit_diff_stderr``: of the mean per-prompt score."""
        self.scores(metric)
        return self.kl_stderr if metric == "kl" else self.logit_diff_stderr

    def spread(
        self, label: str = ALL_LABELS, metric: PatchingMetric = "kl"
    ) -> dict[str, Float[Tensor, "layer head"]]:
        """The spread of the per-prompt scores of every head over ``label``'s included
        prompts: ``median``, ``q1``, ``q3``, ``iqr`` and the fractions ``frac_below_-1`` and
        ``frac_above_2`` (:func:`~iteration_heads.pathways.patching_stats.spread`)."""
        self.scores(metric)
        if label not in self.kl_score:
            raise IterationHeadsError(f"label {label!r}, expected one of {self.groups}")
        rows = torch.tensor([label in (ALL_LABELS, x) for x in self.labels])
        per = self.per_prompt_kl if metric == "kl" else self.per_prompt_logit_diff
        return spread(per, rows)

    def ranking(
        self,
        label: str = ALL_LABELS,
        metric: PatchingMetric = "kl",
        aggregate: Aggregate = "ratio",
    ) -> list[Head]:
        """Every head, highest ratio of means (or mean score) first (NaN last; ties by layer,
        then head)."""
        scores = self.scores(metric, aggregate)
        if label not in scores:
            raise IterationHeadsError(f"label {label!r}, expected one of {list(scores)}")
        values = scores[label]
        heads = [(lay, h) for lay in range(values.shape[0]) for h in range(values.shape[1])]

        def key(head: Head) -> tuple[float, Head]:
            v = float(values[head])
            return (math.inf if math.isnan(v) else -v, head)

        return sorted(heads, key=key)

    def top(
        self,
        k: int = 5,
        label: str = ALL_LABELS,
        metric: PatchingMetric = "kl",
        aggregate: Aggregate = "ratio",
    ) -> list[Head]:
        """The ``k`` highest-scoring heads of ``label``."""
        check_int("k", k, minimum=0)
        return self.ranking(label, metric, aggregate)[:k]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (label, layer, head) with the ratio of means, the mean
        per-prompt score, its standard error and spread (``kl_median``, ``kl_iqr``,
        ``kl_frac_below_-1``, ...) of both metrics, ``n`` and ``n_excluded``."""
        rows = []
        for label, kl in self.kl_score.items():
            spreads = {m: self.spread(label, m) for m in ("kl", "logit_diff")}
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
                        | {
                            f"{m}_{stat}": float(values[stat][layer, head])
                            for m, values in spreads.items()
                            for stat in SPREAD_STATS
                        }
                    )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: the per-label maps, the spread of the per-prompt scores
        (``spread`` -> metric -> statistic -> label -> map) and the counts (per-prompt scores
        left out). ``aggregate`` names the maps ``values`` and the rankings use."""
        spreads = {m: {g: self.spread(g, m) for g in self.groups} for m in ("kl", "logit_diff")}
        return {
            "aggregate": "ratio",
            "method": self.method,
            "min_kl": self.min_kl,
            "n_forward": self.n_forward,
            "labels": self.groups,
            "n_prompts": dict(self.n_prompts),
            "n_excluded": dict(self.n_excluded),
            **{
                name: {label: t.tolist() for label, t in getattr(self, name).items()}
                for name in FIELDS
            },
            "spread": {
                m: {
                    stat: {g: by_label[g][stat].tolist() for g in self.groups}
                    for stat in SPREAD_STATS
                }
                for m, by_label in spreads.items()
            },
        }

    def format(self, k: int = 3) -> str:
        """A line per label: its counts and its ``k`` top heads by KL ratio of means, with
        the mean per-prompt KL score (± stderr), its median and IQR and the fraction of prompts
        outside [-1, 2], and the logit-difference ratio."""
        n_layers, n_heads = self.values.shape
        lines = [
            f"head patching ({self.method}, clean into corrupted, every position): {n_layers} "
            f"layers x {n_heads} heads, {len(self.labels)} prompts, {self.n_excluded[ALL_LABELS]} "
            f"excluded (KL(clean||corrupted) < {self.min_kl:g})"
        ]
        for label in self.groups:
            heads = self.top(k, label) if self.n_prompts[label] else []
            s = self.spread(label)
            tops = ", ".join(
                f"{head_names([h])} KL ratio {float(self.kl_ratio[label][h]):.3f} (per-prompt "
                f"mean {float(self.kl_score[label][h]):.3f}±{float(self.kl_stderr[label][h]):.3f},"
                f" median {float(s['median'][h]):.3f}, IQR {float(s['iqr'][h]):.3f}, "
                f"{float(s['frac_below_-1'][h] + s['frac_above_2'][h]):.0%} outside [-1, 2]) "
                f"LD ratio {float(self.logit_diff_ratio[label][h]):.3f}"
                for h in heads
            )
            lines.append(
                f"  {label} (n={self.n_prompts[label]}, excluded {self.n_excluded[label]}): "
                f"{tops or 'no prompt'}"
            )
        return "\n".join(lines)


def head_patching(
    model: Any,
    prompts: Prompts,
    *,
    min_kl: float = 1e-3,
    batch_size: int | None = None,
    method: str = "auto",
    heads: Sequence[Head] | None = None,
    ig_steps: int = 1,
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
        batch_size: Rows per forward pass (None: sized to the memory budget,
            :func:`~iteration_heads.memory.analysis_rows`).
        method: ``"exact"``, ``"attribution"`` (first-order estimates: :mod:`~iteration_heads.
            pathways.attribution`) or ``"auto"`` (exact up to its ``EXACT_BUDGET``).
        heads: Only these ``(layer, head)`` pairs (exact method; the others are not run and
            score NaN: :mod:`~iteration_heads.pathways.patching_shards`). None: every head.
        ig_steps: Attribution with more than 1: integrated gradients over that many steps
            from the corrupted to the clean run (a forward and two backward passes each).

    Raises:
        IterationHeadsError: prompts without corruption, token ids outside the vocabulary, a bad
            option, or no prompt whose corruption changes the output by ``min_kl``.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> result = head_patching(model, iteration_prompts(data.test, data.layout))
        >>> result.ranking()[0], result.values.shape, result.ranking(aggregate="mean")[0]
        ((1, 0), torch.Size([2, 1]), (1, 0))
    """
    corrupted = check_patching_request(prompts, min_kl, batch_size)
    if isinstance(ig_steps, bool) or not isinstance(ig_steps, int) or ig_steps < 1:
        raise IterationHeadsError(f"ig_steps={ig_steps!r}, expected an integer >= 1")
    chosen = choose_method(model, prompts, method)
    sweep = only_heads(heads, model, chosen, _sweep if chosen == "exact" else linearised_sweep)
    sweep = partial(sweep, steps=ig_steps) if chosen == "attribution" else sweep
    d_vocab = getattr(model.cfg, "d_vocab", None)
    if isinstance(d_vocab, int):
        check_token_ids(prompts.clean, d_vocab, "clean token")
        check_token_ids(corrupted, d_vocab, "corrupted token")
        check_token_ids(prompts.answer, d_vocab, "answer token")
    width = int(prompts.position.max()) + 1  # causal: later positions change nothing studied
    clean_tokens, corrupt_tokens = prompts.clean[:, :width], corrupted[:, :width]
    batch_size = batch_rows(batch_size, patching_rows(model, width, chosen))
    position, answer = prompts.position, prompts.answer
    clean_logits, clean_z = run_keeping_z(model, clean_tokens, position, batch_size)
    clean_lp = clean_logits.double().log_softmax(-1)
    fast = chosen == "attribution" and ig_steps == 1
    if fast:  # the corrupted run and its gradients in one pass
        run = attribution_estimates(model, corrupt_tokens, position, clean_z, clean_lp, answer,
                                    batch_size)  # fmt: skip
        corrupt_logits, estimates, n_forward = run
    else:
        corrupt_logits, corrupt_z = run_keeping_z(model, corrupt_tokens, position, batch_size)
    kl_corr = kl_from_clean(clean_lp, corrupt_logits)
    foil = answer_foil(corrupt_logits, answer)
    ld_clean, ld_corr = (
        logit_difference(clean_logits, answer, foil),
        logit_difference(corrupt_logits, answer, foil),
    )
    included = kl_corr >= min_kl
    if not bool(included.any()):
        raise IterationHeadsError(
            f"no prompt's corruption changes its next-token distribution by min_kl={min_kl:g} "
            f"(largest KL(clean||corrupted) {float(kl_corr.max()):.3g}): nothing to restore"
        )

    def score(logits: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        return kl_from_clean(clean_lp[rows], logits), logit_difference(
            logits, answer[rows], foil[rows]
        )

    if fast:
        kl_patched, ld_patched = kl_corr + estimates[0], ld_corr + estimates[1]  # layer head n
    else:
        kl_patched, ld_patched, n_forward = sweep(
            model, corrupt_tokens, position, clean_z, corrupt_z, score, (kl_corr, ld_corr),
            batch_size,
        )  # fmt: skip
    out, per, n_prompts, n_excluded = patching_aggregates(
        kl_corr, kl_patched, ld_clean, ld_corr, ld_patched, prompts.labels, included
    )
    return HeadPatching(
        **out,
        n_prompts=n_prompts,
        n_excluded=n_excluded,
        per_prompt_kl=per["kl"],
        per_prompt_logit_diff=per["logit_diff"],
        kl_corrupted=kl_corr,
        logit_diff_clean=ld_clean,
        logit_diff_corrupted=ld_corr,
        foil=foil,
        labels=tuple(prompts.labels),
        min_kl=float(min_kl),
        n_forward=n_forward,
        method=chosen,
    )


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
                model, tokens.to(device), position_mask(tokens, position[seq]), hooks=hooks
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
