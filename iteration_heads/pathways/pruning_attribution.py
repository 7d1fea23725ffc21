"""Pruning curves by attribution: every point of a pruning curve estimated from a fixed number of
forward and backward passes per batch of prompts, and the final circuit checked exactly.

:func:`~iteration_heads.pathways.pruning.pruning_curve` runs every variant (top-k heads kept,
the others mean-ablated; ``n_random`` random sets of k heads) as exact forward passes over every
prompt: about ``(1 + n_random)·32`` passes over the prompts. :func:`linear_pruning_curve`
estimates them instead. Per prompt ``n``, with ``t`` the full model's top-1 token and ``r`` each
of its next ``candidates − 1`` tokens at the studied position, ``g = ∂(logit_t − logit_r)/∂z``
at every layer's ``hook_z``, and the contribution of head ``h``

    ``c[r, h, n] = Σ_positions Σ_d_head g · (mean_h − z_h)``

(``mean_h``: the head's reference mean, :mod:`~iteration_heads.pathways.reference`). Ablating the
set ``S`` changes the margin over ``r`` by about ``Σ_{h∈S} c[r, h, n]``; a prompt is estimated
to agree with the full model when every margin stays positive. Every k and every random draw is
then a matrix product. With ``steps = 1`` ``g`` is the clean run's gradient (plain attribution);
``steps > 1`` averages it over the midpoints of ``steps`` intervals on the path where every head
moves together from its clean output to its mean (integrated gradients): mean-ablating most
heads is far from the clean run, and on the zoo models plain attribution with one runner-up
(``candidates=2, steps=1``) estimated agreement 1.0 at every k where the exact curve fell to
0.04-0.11 (docs/guide/pathways.md gives the measurement). The estimate stays a ranking aid: the
smallest k whose **estimated** agreement reaches ``threshold`` (the largest k if none does) is
then run **exactly** (:func:`~iteration_heads.pathways.pruning.pruned_predictions`) with the
sweep's random sets of the same size. Fields, ``format()`` and ``to_dict()`` name each number
estimated or exact.
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
from iteration_heads._torch import (
    Head,
    device_of,
    evaluating,
    head_names,
    without_gradients,
    z_hook,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.memory import analysis_rows, batch_rows, rows_per_pass
from iteration_heads.passes import scored_logits
from iteration_heads.pathways.attribution import position_mask
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.pruning import pruned_predictions, pruning_sweep
from iteration_heads.pathways.random_control import all_heads, mean_by_label
from iteration_heads.pathways.reference import MeanKind, reference_means
from iteration_heads.tasks.task import check_int

LINEAR_CANDIDATES = 5
"""Default tokens whose margins the estimate tracks: the full model's top-1 and 4 rivals."""

LINEAR_STEPS = 4
"""Default points of the path from the heads' outputs to the means (integrated gradients)."""


def linear_pruning_rows(model: Any, width: int) -> int:
    """Prompts per pass of the estimate of :func:`linear_pruning_curve` at ``width``: a pass
    with gradients that keeps two activations per layer, sized to the memory budget
    (:func:`~iteration_heads.memory.rows_per_pass`).

    Example:
        >>> from iteration_heads import zoo
        >>> linear_pruning_rows(zoo.load("polynomial_paper"), 12) >= 1
        True
    """
    return rows_per_pass(model, width, cached=2 * int(model.cfg.n_layers), grad=True)


@dataclass(frozen=True, repr=False)
class LinearPruningCurve(Result):
    """A pruning curve estimated to first order, and its final circuit run exactly.

    Attributes:
        ks: The numbers of top-ranked heads kept.
        estimated_agreement: Per k, the ESTIMATED fraction of prompts whose top-1 stays the
            full model's; ``estimated_random_agreement`` the same for the random draws
            ``[k, draw]``; ``estimated_agreement_by_label`` per label.
        contributions: ``c[rival, layer, head, n]``, each head's estimated change of the
            margin over each rival token; ``margins``: the full model's ``[rival, n]``.
        full_predictions: The full model's top-1; ``full_accuracy`` its accuracy.
        circuit_k: The k run exactly (smallest with estimated agreement >= ``threshold``, else
            the largest); ``estimate_reached``: whether its estimate reached the threshold.
        exact_agreement, exact_accuracy: EXACT, the circuit's; ``exact_predictions`` its top-1.
        exact_random_agreement: EXACT, the random sets of ``circuit_k`` heads ``[draw]``
            (``exact_random_heads``: their heads; the sweep's draws at that k).
        candidates, steps: As given (``candidates`` at most the vocabulary).
        ranking, labels, seed, threshold: As given; ``n_passes``: forward passes of the
            estimate (each with ``candidates − 1`` backward passes but the clean one); ``exact_n_forward``: forward passes of the exact check (reference
            and full runs not counted in either).
    """

    ks: tuple[int, ...]
    estimated_agreement: Float[Tensor, " k"]
    estimated_random_agreement: Float[Tensor, "k draw"]
    estimated_agreement_by_label: dict[str, Float[Tensor, " k"]]
    contributions: Float[Tensor, "rival layer head n"]
    margins: Float[Tensor, "rival n"]
    full_predictions: Int[Tensor, " n"]
    full_accuracy: float
    circuit_k: int
    estimate_reached: bool
    exact_agreement: float
    exact_accuracy: float
    exact_predictions: Int[Tensor, " n"]
    exact_random_agreement: Float[Tensor, " draw"]
    exact_random_heads: tuple[tuple[Head, ...], ...]
    ranking: tuple[Head, ...]
    labels: tuple[str, ...]
    seed: int
    threshold: float
    n_passes: int
    exact_n_forward: int
    candidates: int = LINEAR_CANDIDATES
    steps: int = LINEAR_STEPS

    @property
    def circuit(self) -> list[Head]:
        """The heads of the circuit run exactly: the top ``circuit_k`` of the ranking."""
        return list(self.ranking[: self.circuit_k])

    @property
    def estimated_circuit_agreement(self) -> float:
        """The ESTIMATED agreement at ``circuit_k``, beside :attr:`exact_agreement`."""
        return float(self.estimated_agreement[self.ks.index(self.circuit_k)])

    @property
    def exact_reached(self) -> bool:
        """The circuit's EXACT agreement reaches the threshold."""
        return self.exact_agreement >= self.threshold

    def to_frame(self) -> pd.DataFrame:
        """One row per k: the ESTIMATED agreement and the random draws' estimated mean and std."""
        r = self.estimated_random_agreement
        std = r.std(-1, correction=int(r.shape[-1] > 1))
        frame: dict[str, Any] = {"k": self.ks, "estimated_agreement": self.estimated_agreement}
        frame |= {"estimated_random_mean": r.mean(-1), "estimated_random_std": std}
        return pd.DataFrame(plain(frame))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: ``estimated`` (the first-order curve) and ``exact`` (the
        circuit's check) kept apart; per-prompt values left out."""
        estimated: dict[str, Any] = {"ks": self.ks, "agreement": self.estimated_agreement}
        estimated |= {"random_agreement": self.estimated_random_agreement}
        estimated |= {"agreement_by_label": self.estimated_agreement_by_label}
        estimated |= {"candidates": self.candidates, "steps": self.steps}
        estimated |= {"method": "attribution", "n_passes": self.n_passes}
        exact: dict[str, Any] = {"k": self.circuit_k, "heads": self.circuit}
        exact |= {"agreement": self.exact_agreement}
        exact |= {"accuracy": self.exact_accuracy, "random_agreement": self.exact_random_agreement}
        exact |= {"random_heads": self.exact_random_heads, "n_forward": self.exact_n_forward}
        exact |= {"estimated_agreement": self.estimated_circuit_agreement}
        return plain(
            {"estimated": estimated, "exact": exact, "threshold": self.threshold}
            | {"estimate_reached": self.estimate_reached, "exact_reached": self.exact_reached}
            | {"full_accuracy": self.full_accuracy, "ranking": self.ranking, "seed": self.seed}
            | {"n_prompts": len(self.labels)}
        )

    def format(self) -> str:
        """The circuit's exact check, then the estimated curve."""
        r = self.exact_random_agreement
        picked = "reaches" if self.estimate_reached else "does not reach (largest k taken)"
        return (
            f"pruning curve ESTIMATED by attribution on {len(self.labels)} prompts (full model "
            f"accuracy {self.full_accuracy:.3f}); circuit of {self.circuit_k} heads "
            f"({head_names(self.circuit) or 'none'}): estimated agreement "
            f"{self.estimated_circuit_agreement:.3f} {picked} {self.threshold:g}; EXACT "
            f"agreement {self.exact_agreement:.3f} (accuracy {self.exact_accuracy:.3f}), EXACT "
            f"random {self.circuit_k} heads {float(r.mean()):.3f} (min {float(r.min()):.3f}, "
            f"{len(r)} draws)\n"
            + self.to_frame().to_string(index=False, float_format="{:.3f}".format)
        )


def linear_pruning_curve(
    model: Any,
    prompts: Prompts,
    ranking: Sequence[Head],
    reference: Int[Tensor, "m pos"],
    *,
    ks: Sequence[int] | None = None,
    n_random: int = 5,
    seed: int = 0,
    mean: MeanKind = "position",
    reference_mask: Bool[Tensor, "m pos"] | None = None,
    batch_size: int | None = None,
    threshold: float = 0.9,
    candidates: int = LINEAR_CANDIDATES,
    steps: int = LINEAR_STEPS,
) -> LinearPruningCurve:
    """The pruning curve of :func:`~iteration_heads.pathways.pruning.pruning_curve` (same
    arguments, same ks and random draws) ESTIMATED by attribution (module docstring) against
    the top ``candidates − 1`` rival tokens, over ``steps`` points of the path to the means,
    from ``steps`` forward passes (plus one clean pass when ``steps > 1``) and
    ``steps·(candidates − 1)`` backward passes per ``batch_size`` prompts, whatever the ks and
    draws; then the smallest k whose estimated agreement reaches ``threshold`` (else the
    largest k) run EXACTLY against the sweep's ``n_random`` random sets of as many heads.

    Raises:
        IterationHeadsError: a bad ranking, ks, threshold or option, a bad reference or
            reference mask (as ``pruning_curve``), or prompts with tokens beyond the vocabulary.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> curve = linear_pruning_curve(model, prompts, [(1, 0), (0, 0)], data.train.tokens)
        >>> curve.ks, curve.estimated_agreement[-1].item(), curve.circuit_k, curve.n_passes
        ((0, 1, 2), 1.0, 2, 5)
        >>> curve.exact_agreement
        1.0
    """
    _check_model(model)
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    heads, ks, draws = pruning_sweep(model, ranking, ks, n_random=n_random, seed=seed)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise IterationHeadsError(f"threshold={threshold!r}, expected a number in [0, 1]")
    if not 0 <= threshold <= 1:
        raise IterationHeadsError(f"threshold={threshold!r}, expected a number in [0, 1]")
    batch_rows(batch_size, 1)  # checked before any work
    check_int("candidates", candidates, minimum=2)
    check_int("steps", steps, minimum=1)
    candidates = min(candidates, int(model.cfg.d_vocab))
    check_token_ids(prompts.clean, int(model.cfg.d_vocab), "prompt token")
    cut = int(prompts.position.max()) + 1  # causal: later positions change nothing studied
    means = reference_means(
        model, reference, mean=mean, reference_mask=reference_mask, width=prompts.clean.shape[1],
        batch_size=batch_size,
    )  # fmt: skip
    rows = batch_rows(batch_size, linear_pruning_rows(model, cut))
    tokens = prompts.clean[:, :cut]
    means = {layer: m[:cut] for layer, m in means.items()}
    contributions, margins, top, passes = _contributions(
        model, tokens, prompts.position, means, rows, candidates, steps
    )

    every = all_heads(model)
    flat = {h: i for i, h in enumerate(every)}
    keeps = [heads[:k] for k in ks] + [[heads[i] for i in d.tolist()] for d in draws]
    ablated = torch.ones(len(keeps), len(every), dtype=torch.float64)
    for v, kept in enumerate(keeps):
        ablated[v, [flat[h] for h in kept]] = 0.0
    shift = ablated @ contributions.reshape(len(contributions), len(every), -1)  # rival v n
    stays = (margins[:, None] + shift > 0).all(0)  # variant n: t still beats every rival
    agree = (stays | (ablated.sum(-1) == 0)[:, None]).float()
    nk = len(ks)
    estimate, random_estimate = agree[:nk].mean(-1), agree[nk:].mean(-1).reshape(nk, n_random)
    reached = [k for k, value in zip(ks, estimate.tolist(), strict=True) if value >= threshold]
    k = reached[0] if reached else ks[-1]
    at = ks.index(k)
    randoms = keeps[nk + at * n_random : nk + (at + 1) * n_random]
    exact = pruned_predictions(
        model, prompts, [heads[:k], *randoms, every], reference, batch_size=batch_size,
        mean=mean, reference_mask=reference_mask,
    )  # fmt: skip
    full = exact[-1]
    variants = {frozenset(s) for s in [heads[:k], *randoms]} - {frozenset(every)}
    exact_rows = batch_rows(batch_size, analysis_rows(model, cut))
    return LinearPruningCurve(
        ks=tuple(ks),
        estimated_agreement=estimate,
        estimated_random_agreement=random_estimate,
        estimated_agreement_by_label=mean_by_label(agree[:nk], prompts.labels),
        contributions=contributions,
        margins=margins,
        full_predictions=top,
        full_accuracy=float((full == prompts.answer).float().mean()),
        circuit_k=k,
        estimate_reached=bool(reached),
        exact_agreement=float((exact[0] == full).float().mean()),
        exact_accuracy=float((exact[0] == prompts.answer).float().mean()),
        exact_predictions=exact[0],
        exact_random_agreement=(exact[1:-1] == full).float().mean(-1),
        exact_random_heads=tuple(tuple(sorted(s)) for s in randoms),
        ranking=tuple(heads),
        labels=tuple(prompts.labels),
        seed=seed,
        threshold=float(threshold),
        n_passes=passes,
        exact_n_forward=math.ceil(len(variants) * len(prompts) / exact_rows),
        candidates=candidates,
        steps=steps,
    )


def _check_model(model: Any) -> None:
    cfg = getattr(model, "cfg", None)
    names = ("n_layers", "n_heads", "d_vocab")
    if cfg is None or not all(isinstance(getattr(cfg, n, None), int) for n in names):
        raise IterationHeadsError(
            f"model {type(model).__name__} has no TransformerLens config (cfg with "
            f"{', '.join(names)})"
        )


def _contributions(
    model: Any,
    tokens: Tensor,
    position: Tensor,
    means: dict[int, Tensor],
    rows: int,
    candidates: int,
    steps: int,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """``c[rival, layer, head, n]`` (float64) against each of the ``candidates − 1`` runner-ups,
    the margins ``logit_t − logit_rival`` ``[rival, n]``, the top-1 ``t`` and the passes (one
    forward and backward per ``rows`` prompts and step, and a clean forward when ``steps > 1``)."""
    n_layers, n_heads, n = len(means), int(model.cfg.n_heads), len(tokens)
    out = torch.zeros(candidates - 1, n_layers, n_heads, n, dtype=torch.float64)
    margins = torch.zeros(candidates - 1, n, dtype=torch.float64)
    top = torch.zeros(n, dtype=torch.long)
    device, passes = device_of(model), 0
    with evaluating(model), torch.enable_grad():
        for start in range(0, n, rows):
            chunk = torch.arange(start, min(start + rows, n))
            batch = tokens[chunk]
            at = position_mask(batch, position[chunk])
            zs: dict[int, Tensor] = {}
            deltas: dict[int, Tensor] = {}
            gaps: dict[int, Tensor] = {}
            best: Tensor | None = None
            if steps > 1:  # the clean run's z first: the path's gaps
                hooks = [(z_hook(la), _tap(la, zs, {}, {}, 0.0)) for la in range(n_layers)]
                with without_gradients():
                    logits = scored_logits(model, batch.to(device), at, hooks=hooks)
                best = logits.double().topk(candidates, dim=-1).indices
                full = logits.double().gather(-1, best)
                margins[:, chunk] = (full[:, :1] - full[:, 1:]).T.cpu()
                top[chunk] = best[:, 0].cpu()
                passes += 1
            grads: list[list[Tensor]] = [[] for _ in range(candidates - 1)]
            for step in range(steps):
                alpha = (step + 0.5) / steps if steps > 1 else 0.0
                gaps = {la: means[la][None].to(device) - zs[la] for la in zs} if zs else {}
                hooks = [(z_hook(la), _tap(la, zs, deltas, gaps, alpha)) for la in range(n_layers)]
                logits = scored_logits(model, batch.to(device), at, hooks=hooks).double()
                if best is None:
                    best = logits.topk(candidates, dim=-1).indices  # rows candidates
                    full = logits.gather(-1, best)
                    margins[:, chunk] = (full[:, :1] - full[:, 1:]).T.detach().cpu()
                    top[chunk] = best[:, 0].cpu()
                picked = logits.gather(-1, best)
                for rival in range(candidates - 1):
                    margin = picked[:, 0] - picked[:, rival + 1]
                    got = torch.autograd.grad(
                        margin.sum(), [deltas[la] for la in range(n_layers)],
                        retain_graph=rival < candidates - 2,
                    )  # fmt: skip
                    grads[rival].append(torch.stack([g.cpu().double() for g in got]) / steps)
                passes += 1
            for rival in range(candidates - 1):
                grad = torch.stack(grads[rival]).sum(0)  # layer rows pos head d_head
                gap = torch.stack([means[la][None].double() - zs[la].cpu().double()
                                   for la in range(n_layers)])  # fmt: skip
                out[rival, :, :, chunk] = (gap * grad).sum((2, 4)).permute(0, 2, 1)
    return out, margins, top, passes


def _tap(
    layer: int,
    zs: dict[int, Tensor],
    deltas: dict[int, Tensor],
    gaps: dict[int, Tensor],
    alpha: float,
) -> Any:
    """A ``hook_z`` hook: keeps ``z`` (when not kept yet) and returns ``z + alpha·gap + δ`` with
    a zero ``δ`` whose gradient is ``∂metric/∂z`` there."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        if layer not in zs:
            zs[layer] = z.detach()
        if alpha:
            z = z + alpha * gaps[layer].to(z.dtype)
        deltas[layer] = torch.zeros_like(z, requires_grad=True)
        return z + deltas[layer]

    return hook
