"""The smallest circuit of a ranking found by bisection over k, every number exact.

:func:`~iteration_heads.pathways.pruning.pruning_curve` runs every k of its sweep with
``n_random`` random draws each: about ``(1 + n_random)·32`` passes over the prompts, hours at
language-model scale. :func:`bisected_pruning_curve` asks only where the curve crosses
``threshold``: it runs k = 0, then halves the interval ``(k failing, k reaching)`` (the full
model, k = every head, agrees by definition) until the two are adjacent, about
``log2(heads)`` exact passes over the prompts (8 for GPT-2 small's 144 heads, 9 for 512),
then ``n_random`` random sets of the circuit's size. Every point it reports is an exact run;
the ks it did not visit are not estimated. It assumes that agreement grows with k between the
visited points (keeping more top-ranked heads helps): where the exact curve is not monotone,
a smaller k than the one found may also reach the threshold, and only the full curve tells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from iteration_heads._torch import Head
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.pruning import PrunedRuns, PruningCurve, kept_mask, pruning_sweep
from iteration_heads.pathways.random_control import mean_by_label
from iteration_heads.pathways.reference import MeanKind


def bisection_rounds(n_heads: int) -> int:
    """Variants :func:`bisected_pruning_curve` runs at most for ``n_heads`` heads (its random
    draws left out): k = 0, then one k per halving of ``(0, n_heads)``.

    Example:
        >>> bisection_rounds(144), bisection_rounds(512), bisection_rounds(1)
        (9, 10, 1)
    """
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1:
        raise IterationHeadsError(f"n_heads={n_heads!r}, expected an integer >= 1")
    return 1 + math.ceil(math.log2(n_heads))


def bisected_pruning_curve(
    model: Any,
    prompts: Prompts,
    ranking: Sequence[Head],
    reference: Int[Tensor, "m pos"],
    *,
    threshold: float = 0.9,
    n_random: int = 5,
    seed: int = 0,
    batch_size: int | None = None,
    mean: MeanKind = "position",
    reference_mask: Bool[Tensor, "m pos"] | None = None,
) -> PruningCurve:
    """The smallest k whose top-k heads of ``ranking`` (every other head mean-ablated over
    ``reference``) agree with the full model on at least ``threshold`` of the prompts, found by
    bisection (module docstring), and ``n_random`` random sets of that many heads. Arguments
    as :func:`~iteration_heads.pathways.pruning.pruning_curve`.

    Returns:
        A :class:`~iteration_heads.pathways.pruning.PruningCurve` over the visited ks only
        (``method="bisection"``): its ``smallest_circuit(threshold)`` is the circuit found, and
        its random draws are NaN at every k but that one.

    Raises:
        IterationHeadsError: a threshold outside [0, 1], or what
            :func:`~iteration_heads.pathways.pruning.pruning_curve` refuses.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> curve = bisected_pruning_curve(model, prompts, [(1, 0), (0, 0)], data.train.tokens,
        ...                                n_random=2)
        >>> curve.ks, curve.smallest_circuit()[0], curve.method
        ((0, 1, 2), 2, 'bisection')
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise IterationHeadsError(f"threshold={threshold!r}, expected a number in [0, 1]")
    if not 0 <= threshold <= 1:
        raise IterationHeadsError(f"threshold={threshold!r}, expected a number in [0, 1]")
    heads, _, _ = pruning_sweep(model, ranking, None, n_random=n_random, seed=seed)
    runs = PrunedRuns(model, prompts, reference, batch_size, mean, reference_mask)
    predictions: dict[int, Tensor] = {len(heads): runs.full}
    passes = 0

    def agreement(k: int) -> float:
        nonlocal passes
        if k not in predictions:
            top, used = runs.run(kept_mask(model, heads[:k])[None], True)
            predictions[k], passes = top[0], passes + used
        return float((predictions[k] == runs.full).float().mean())

    low, high = 0, len(heads)  # agreement(high) >= threshold always: the full model
    if agreement(0) >= threshold:
        high = 0
    while high - low > 1:
        middle = (low + high) // 2
        if agreement(middle) >= threshold:
            high = middle
        else:
            low = middle
    _, _, draws = pruning_sweep(model, heads, [high], n_random=n_random, seed=seed)
    random_top, used = runs.run(
        torch.stack([kept_mask(model, [heads[i] for i in d]) for d in draws]), True
    )
    ks = sorted(predictions)
    top = torch.stack([predictions[k] for k in ks])
    agree, correct = (top == runs.full).float(), (top == prompts.answer).float()
    random = torch.full((len(ks), n_random), float("nan"))
    random_accuracy = random.clone()
    random[ks.index(high)] = (random_top == runs.full).float().mean(-1)
    random_accuracy[ks.index(high)] = (random_top == prompts.answer).float().mean(-1)
    return PruningCurve(
        ks=tuple(ks),
        agreement=agree.mean(-1),
        accuracy=correct.mean(-1),
        random_agreement=random,
        random_accuracy=random_accuracy,
        agreement_by_label=mean_by_label(agree, prompts.labels),
        predictions=top,
        full_predictions=runs.full,
        full_accuracy=float((runs.full == prompts.answer).float().mean()),
        ranking=tuple(heads),
        labels=tuple(prompts.labels),
        n_forward=passes + used,
        seed=seed,
        method="bisection",
        threshold=float(threshold),
    )
