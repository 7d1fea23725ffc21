"""The smallest circuit that keeps the model's answers (Dutta et al., TMLR 2024: knockout):
keep the top-k heads of a ranking and mean-ablate every other head, i.e. replace its output
(its slice of ``blocks.{layer}.attn.hook_z``) at every position by its mean there over a
``reference`` batch (theirs: the "false ontology" prompts); ``mean="sequence"`` takes one
mean over every real position instead, and ``reference_mask`` keeps padding out of both
(:mod:`~iteration_heads.pathways.reference`). The measure is **agreement**: the
fraction of prompts whose argmax next token at the studied position is the full model's (not
correctness; accuracy against the answer is reported too). :func:`ablation_check` is the causal
check of named heads: ablating them should break the task, ablating as many random other heads
should not. Variants (sets of kept heads) are stacked along the batch dimension; those that keep
every head are the full model and are not run (a call where every variant keeps every head
runs nothing but the full model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._results import Result, plain
from iteration_heads._torch import Head, check_heads, head_names
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.pruned_runs import PrunedRuns, kept_mask
from iteration_heads.pathways.random_control import (
    AblationCheck,
    all_heads,
    mean_by_label,
    random_head_sets,
)
from iteration_heads.pathways.reference import MeanKind
from iteration_heads.tasks.task import check_int

MAX_DEFAULT_KS = 32
"""Beyond this many heads the default sweep takes about this many evenly spaced values of k."""


@dataclass(frozen=True, repr=False)
class PruningCurve(Result):
    """Agreement with the full model as a function of the number of top-ranked heads kept.

    Attributes:
        ks: The numbers of heads kept.
        agreement, accuracy: Per k, the fraction of prompts whose argmax equals the full
            model's / the answer.
        random_agreement, random_accuracy: The same for k random heads kept ``[k, draw]``.
        agreement_by_label: Label -> agreement per k.
        predictions: The pruned model's argmax ``[k, n]``; ``full_predictions`` the full one's.
        full_accuracy: The full model's accuracy.
        ranking: Every head, the order heads are kept in.
        labels: The label of every prompt; ``n_forward``: forward passes (reference and full
            runs not counted); ``seed``: seeds the random draws.
        method: ``"exact"``: every k of the sweep with its random draws; ``"bisection"``: only
            the ks a bisection for ``threshold`` visited, random draws (else NaN) at the k found
            (:func:`~iteration_heads.pathways.pruning_bisection.bisected_pruning_curve`).
        threshold: The agreement :meth:`smallest_circuit` looks for by default.
    """

    ks: tuple[int, ...]
    agreement: Float[Tensor, " k"]
    accuracy: Float[Tensor, " k"]
    random_agreement: Float[Tensor, "k draw"]
    random_accuracy: Float[Tensor, "k draw"]
    agreement_by_label: dict[str, Float[Tensor, " k"]]
    predictions: Int[Tensor, "k n"]
    full_predictions: Int[Tensor, " n"]
    full_accuracy: float
    ranking: tuple[Head, ...]
    labels: tuple[str, ...]
    n_forward: int
    seed: int
    method: str = "exact"
    threshold: float = 0.9

    @property
    def random_mean(self) -> Float[Tensor, " k"]:
        """Mean agreement of the random draws per k."""
        return self.random_agreement.mean(-1)

    @property
    def random_std(self) -> Float[Tensor, " k"]:
        """Standard deviation of the random draws' agreement per k (0 for one draw)."""
        return self.random_agreement.std(-1, correction=int(self.random_agreement.shape[-1] > 1))

    def smallest_circuit(self, threshold: float | None = None) -> tuple[int, list[Head]] | None:
        """The smallest k whose agreement is at least ``threshold`` (None: :attr:`threshold`),
        and its heads (None if no k of the sweep reaches it)."""
        threshold = self.threshold if threshold is None else threshold
        if not 0 <= threshold <= 1:
            raise IterationHeadsError(f"threshold={threshold!r}, expected a number in [0, 1]")
        for k, value in zip(self.ks, self.agreement.tolist(), strict=True):
            if value >= threshold:
                return k, list(self.ranking[:k])
        return None

    def to_frame(self) -> pd.DataFrame:
        """One row per k: agreement, accuracy, and the random draws' mean and std."""
        frame = {"k": self.ks, "agreement": self.agreement, "accuracy": self.accuracy}
        frame |= {"random_mean": self.random_mean, "random_std": self.random_std}
        return pd.DataFrame(plain(frame | {"random_accuracy": self.random_accuracy.mean(-1)}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (per-prompt predictions left out)."""
        names = ["ks", "agreement", "accuracy", "random_agreement", "random_accuracy"]
        names += ["agreement_by_label", "full_accuracy", "ranking", "n_forward", "seed"]
        found = self.smallest_circuit()
        return plain(
            {name: getattr(self, name) for name in [*names, "method", "threshold"]}
            | {f"smallest_circuit_{self.threshold:g}": found and found[1]}
            | {"n_prompts": len(self.labels)}
        )

    def format(self) -> str:
        """The smallest circuit at 0.9 agreement, then the curve against random."""
        found = self.smallest_circuit()
        circuit = "none" if found is None else f"{found[0]} heads ({head_names(found[1])})"
        how = ""
        if self.method == "bisection":
            how = " by bisection (every row exact; the ks between them not run)"
        return (
            f"pruning curve on {len(self.labels)} prompts (full model accuracy "
            f"{self.full_accuracy:.3f}); smallest circuit at {self.threshold:g} agreement{how}: "
            f"{circuit}\n" + self.to_frame().to_string(index=False, float_format="{:.3f}".format)
        )


def pruning_curve(
    model: Any,
    prompts: Prompts,
    ranking: Sequence[Head],
    reference: Int[Tensor, "m pos"],
    *,
    ks: Sequence[int] | None = None,
    n_random: int = 5,
    seed: int = 0,
    batch_size: int | None = None,
    mean: MeanKind = "position",
    reference_mask: Bool[Tensor, "m pos"] | None = None,
) -> PruningCurve:
    """Agreement with the full model when only the top-k heads of ``ranking`` are kept and every
    other head is mean-ablated over ``reference``, for each k of ``ks`` (default: every k, or
    about 32 evenly spaced values beyond 32 heads), against ``n_random`` draws of k random
    heads kept (seeded by ``seed``). ``mean``: ``"position"`` (per-position means over the
    reference) or ``"sequence"`` (one mean per head over every real reference position);
    ``reference_mask``: True at the reference's real tokens, False at padding (None: all real;
    e.g. ``reference != pad_id``); see :mod:`~iteration_heads.pathways.reference`.

    Raises:
        IterationHeadsError: a ranking that does not hold every head of the model exactly once,
            a reference narrower than the prompts (per-position means), a reference mask of
            another shape or dtype or with no real token, or a bad option.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> curve = pruning_curve(model, prompts, [(1, 0), (0, 0)], data.train.tokens)
        >>> curve.ks, curve.agreement[-1].item(), curve.smallest_circuit()[0]
        ((0, 1, 2), 1.0, 2)
    """
    heads, ks, draws = pruning_sweep(model, ranking, ks, n_random=n_random, seed=seed)
    masks = [kept_mask(model, heads[:k]) for k in ks]
    masks += [kept_mask(model, [heads[i] for i in draw]) for draw in draws]
    run = PrunedRuns(model, prompts, reference, batch_size, mean, reference_mask)
    preds, passes = run.run(torch.stack(masks), True)
    agree = (preds == run.full).float()
    correct = (preds == prompts.answer).float()
    nk = len(ks)
    return PruningCurve(
        ks=tuple(ks),
        agreement=agree[:nk].mean(-1),
        accuracy=correct[:nk].mean(-1),
        random_agreement=agree[nk:].mean(-1).reshape(nk, n_random),
        random_accuracy=correct[nk:].mean(-1).reshape(nk, n_random),
        agreement_by_label=mean_by_label(agree[:nk], prompts.labels),
        predictions=preds[:nk],
        full_predictions=run.full,
        full_accuracy=float((run.full == prompts.answer).float().mean()),
        ranking=tuple(heads),
        labels=tuple(prompts.labels),
        n_forward=passes,
        seed=seed,
    )


def pruning_sweep(
    model: Any, ranking: Sequence[Head], ks: Sequence[int] | None, *, n_random: int, seed: int
) -> tuple[list[Head], list[int], list[Tensor]]:
    """What :func:`pruning_curve` sweeps: the ranking checked, the ks (sorted, default as there)
    and ``n_random`` seeded draws per k (indices into the ranking, ``k`` each, k by k).

    Example:
        >>> from iteration_heads import zoo
        >>> heads, ks, draws = pruning_sweep(zoo.load("polynomial_paper"), [(1, 0), (0, 0)],
        ...                                  None, n_random=2, seed=0)
        >>> heads, ks, [len(d) for d in draws]
        ([(1, 0), (0, 0)], [0, 1, 2], [0, 0, 1, 1, 2, 2])
    """
    heads = _check_ranking(model, ranking)
    n = len(heads)
    ks = _check_ks(ks, n)
    check_int("n_random", n_random, minimum=1)
    check_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    draws = [torch.randperm(n, generator=generator)[:k] for k in ks for _ in range(n_random)]
    return heads, ks, draws


def ablation_check(
    model: Any,
    prompts: Prompts,
    heads: Sequence[Head],
    reference: Int[Tensor, "m pos"],
    *,
    n_random: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
    mean: MeanKind = "position",
    reference_mask: Bool[Tensor, "m pos"] | None = None,
) -> AblationCheck:
    """Mean-ablate exactly ``heads`` (over ``reference``, as :func:`pruning_curve` does), and in
    ``n_random`` draws as many random heads among the others: agreement with the full model
    and accuracy of each, per label. The named heads pass the causal check when ablating them
    breaks the task more than every (or most) random draws. ``mean`` and ``reference_mask`` as
    in :func:`pruning_curve`.

    Raises:
        IterationHeadsError: a head that does not exist, fewer other heads than named ones, a
            bad reference or reference mask, or a bad option.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> check = ablation_check(model, prompts, [(1, 0)], data.train.tokens, n_random=3)
        >>> check.agreement < 0.5, check.random_heads[0]
        (True, ((0, 0),))
    """
    named, draws = random_head_sets(model, heads, n_random=n_random, seed=seed)
    every = all_heads(model)
    ablated = [named, *draws]
    masks = torch.stack([kept_mask(model, [h for h in every if h not in set(a)]) for a in ablated])
    run = PrunedRuns(model, prompts, reference, batch_size, mean, reference_mask)
    preds, _ = run.run(masks, True)
    return AblationCheck.of(named, draws, preds, run.full, prompts)


def pruned_logits(
    model: Any,
    prompts: Prompts,
    keep: Sequence[Head],
    reference: Int[Tensor, "m pos"],
    *,
    batch_size: int | None = None,
    mean: MeanKind = "position",
    reference_mask: Bool[Tensor, "m pos"] | None = None,
) -> Float[Tensor, "n vocab"]:
    """The logits at ``prompts.position`` with every head but ``keep`` mean-ablated over
    ``reference``: one point of :func:`pruning_curve` (``mean`` and ``reference_mask`` as
    there).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> pruned_logits(model, prompts, [(1, 0)], data.train.tokens).shape
        torch.Size([288, 16])
        >>> width = data.train.tokens.shape[1]  # real: up to each sequence's EoS, padding after
        >>> real = torch.arange(width) < 2 * data.train.lengths[:, None] + 3
        >>> pruned_logits(model, prompts, [(1, 0)], data.train.tokens, reference_mask=real).shape
        torch.Size([288, 16])
    """
    kept = check_heads(model, keep) if len(keep) else []
    run = PrunedRuns(model, prompts, reference, batch_size, mean, reference_mask)
    return run.run(kept_mask(model, kept)[None], False)[0][0]


def pruned_predictions(
    model: Any,
    prompts: Prompts,
    keeps: Sequence[Sequence[Head]],
    reference: Int[Tensor, "m pos"],
    *,
    batch_size: int | None = None,
    mean: MeanKind = "position",
    reference_mask: Bool[Tensor, "m pos"] | None = None,
) -> Int[Tensor, "variant n"]:
    """The top-1 at ``prompts.position`` for each set of kept heads in ``keeps`` (every other
    head mean-ablated over ``reference``): many variants, the reference means computed once
    (``mean`` and ``reference_mask`` as in :func:`pruning_curve`). Variants that keep every
    head are the full model's top-1 and are not run.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> top = pruned_predictions(model, prompts, [[(1, 0)], [(0, 0), (1, 0)]], data.train.tokens)
        >>> top.shape, bool((top[1] == prompts.answer).all())
        (torch.Size([2, 288]), True)
        >>> full = pruned_predictions(model, prompts, [all_heads(model)], data.train.tokens,
        ...                           mean="sequence")
        >>> bool((full[0] == top[1]).all())
        True
    """
    if isinstance(keeps, str) or not isinstance(keeps, Sequence) or not len(keeps):
        raise IterationHeadsError(f"keeps {keeps!r}: expected a non-empty list of head lists")
    masks = torch.stack([kept_mask(model, check_heads(model, k) if len(k) else []) for k in keeps])
    run = PrunedRuns(model, prompts, reference, batch_size, mean, reference_mask)
    return run.run(masks, True)[0]


def _check_ranking(model: Any, ranking: Sequence[Head]) -> list[Head]:
    if isinstance(ranking, str) or not isinstance(ranking, Sequence) or not ranking:
        raise IterationHeadsError(f"ranking {ranking!r}: expected a list of (layer, head)")
    check_heads(model, list(ranking))  # each one exists
    heads = [(int(layer), int(head)) for layer, head in ranking]
    every = all_heads(model)
    twice = sorted({h for h in heads if heads.count(h) > 1})
    missing = [h for h in every if h not in heads]
    if twice or missing:
        raise IterationHeadsError(
            f"ranking must hold each of the model's {len(every)} heads exactly once; "
            + (f"{head_names(twice)} repeated" if twice else f"{head_names(missing)} missing")
        )
    return heads


def _check_ks(ks: Sequence[int] | None, n: int) -> list[int]:
    if ks is None:
        step = max(1, math.ceil(n / MAX_DEFAULT_KS))
        return sorted({*range(0, n, step), n})
    values = list(ks)
    bad = [k for k in values if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n]
    if bad or not values:
        raise IterationHeadsError(f"ks {values!r}: expected a non-empty list of 0..{n}")
    return sorted(set(values))
