"""Attribution patching: the fast path of head patching (``head_patching(method=...)``).

Exact head patching (:mod:`~iteration_heads.pathways.restoration`) runs one forward pass per
(head, prompt) pair. Attribution patching replaces each of them by its first-order estimate: with
``M`` a metric of the corrupted run and ``z`` a head's output (its slice of ``attn.hook_z``),

    ``M(patched) − M(corrupted) ≈ Σ_positions (z_clean − z_corr) · ∂M/∂z |_corrupted``,

so one corrupted forward pass and one backward pass per metric give every head at once. The
metrics are head patching's own: ``KL(P_clean‖P)`` at the studied position (its gradient at the
corrupted point is not zero: ``P_corr`` differs from ``P_clean``) and ``logit[answer] −
logit[foil]``. The estimates go through the same aggregates as the exact sweep
(``KL_patched ≈ KL_corr + estimate``), so every field of
:class:`~iteration_heads.pathways.restoration.HeadPatching` is filled, as an estimate, and the
result says ``method="attribution"``. A linear metric of ``z`` (the logit difference of an
attention-only model from its last layer's heads) is estimated exactly; KL, quadratic near its
minimum, is not: the estimate is a ranking aid, and the exact sweep stays for checking
(``benchmarks/attribution_validation.py`` measures the agreement).

The gradient bookkeeping is the library's own (:func:`linearised_sweep`): each layer's
``hook_z`` returns ``z + δ`` with a zero tensor ``δ`` that requires a gradient, and
``torch.autograd.grad`` of the summed metric over the batch with respect to the ``δ`` gives
``∂M/∂z`` of every prompt (prompts are independent rows), touching no parameter's ``.grad``.
TransformerLens 4.3's ``transformer_lens.tools.analysis.attribution_patching.attribution_patch``
computes the same node scores and agrees to 1e-5 on native, GPT-2 and grouped-query Llama
bridges (:func:`transformer_lens_estimates`, tested), but is not the engine here because
(1) its ``metric_fn`` sees only the logits of one example, while head patching's metrics depend
on the prompt (its clean distribution, position, answer and foil): it must be called once per
prompt and per metric; (2) it loops over the examples one at a time (a clean forward, then a
corrupted forward and backward each) and converts every (position, head) node score to a Python
float, which is slower than one batched pass (the benchmark gives both times); (3) it needs the
whole model in eval mode and gradients enabled, which the caller must arrange. Its node
granularity does not check grouped-query attention (only the edge granularity refuses
``n_key_value_heads != n_heads``): ``hook_z`` is per query head in both.

``method="auto"`` (the default of ``head_patching``) runs the exact sweep when its estimated
cost, :func:`exact_cost` (multiply-adds of the (head, prompt) forward passes), is at most
:data:`EXACT_BUDGET`, and attribution patching above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from iteration_heads._torch import attached_hooks, device_of, evaluating, without_gradients, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.memory import analysis_rows, rows_per_pass
from iteration_heads.passes import scored_logits
from iteration_heads.pathways.prompts import Prompts

Method = Literal["exact", "attribution", "auto"]
METHODS = ("exact", "attribution", "auto")
"""The methods of ``head_patching``."""

EXACT_BUDGET = 1.2e12
"""The most floating-point operations (:func:`exact_cost`) for which ``method="auto"`` runs the
exact sweep: about two minutes at the 0.9-1.4e10 operations per second the exact sweeps of the
fixtures reached on one CPU thread (benchmarks/attribution_validation.py). GPT-2 small's 144
heads on 64 prompts of 200 tokens cost about 3e14: attribution."""


def exact_cost(model: Any, prompts: Any) -> float:
    """Estimated floating-point operations of the exact sweep: one forward pass per (head, prompt) pair, up to
    the last studied position, with the unembedding of that position only
    (``2·n_layers·(4·d_model·n_heads·d_head + 2·d_model·d_mlp)`` per token).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> f"{exact_cost(model, iteration_prompts(data.test, data.layout)):.2e}"
        '1.93e+09'
    """
    _check(model, prompts)
    cfg = model.cfg
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    d_model, d_head = int(cfg.d_model), int(cfg.d_head)
    d_mlp = 0 if getattr(cfg, "attn_only", False) else int(getattr(cfg, "d_mlp", None) or 0)
    per_token = 2 * n_layers * (4 * d_model * n_heads * d_head + 2 * d_model * d_mlp)
    width = int(prompts.position.max()) + 1
    per_row = width * per_token + 2 * d_model * int(cfg.d_vocab)
    return float(n_layers * n_heads * len(prompts) * per_row)


def _check(model: Any, prompts: Any) -> None:
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    cfg = getattr(model, "cfg", None)
    names = ("n_layers", "n_heads", "d_model", "d_head", "d_vocab")
    if cfg is None or not all(isinstance(getattr(cfg, n, None), int) for n in names):
        raise IterationHeadsError(
            f"model {type(model).__name__} has no TransformerLens config (cfg with {', '.join(names)})"
        )


def patching_rows(model: Any, width: int, method: str) -> int:
    """Rows per pass of head patching at ``width`` by ``method`` (``"exact"`` or
    ``"attribution"``, whose gradient passes keep every layer's activations), sized to the
    memory budget (:mod:`iteration_heads.memory`).

    Example:
        >>> from iteration_heads import zoo
        >>> model = zoo.load("polynomial_paper")
        >>> patching_rows(model, 12, "attribution") <= patching_rows(model, 12, "exact")
        True
    """
    if method == "exact":
        return analysis_rows(model, width)
    return rows_per_pass(model, width, cached=2 * int(model.cfg.n_layers), grad=True)


def choose_method(model: Any, prompts: Any, method: str) -> Literal["exact", "attribution"]:
    """The method ``head_patching`` runs: ``method`` itself, or for ``"auto"`` exact when
    :func:`exact_cost` is at most :data:`EXACT_BUDGET`, attribution above.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> choose_method(model, iteration_prompts(data.test, data.layout), "auto")
        'exact'
    """
    if not isinstance(method, str) or method not in METHODS:
        raise IterationHeadsError(f"method={method!r}, expected one of {', '.join(METHODS)}")
    _check(model, prompts)
    if method == "auto":
        return "exact" if exact_cost(model, prompts) <= EXACT_BUDGET else "attribution"
    return "exact" if method == "exact" else "attribution"


def run_keeping_z(
    model: Any, tokens: Tensor, position: Tensor, size: int
) -> tuple[Tensor, dict[int, Tensor]]:
    """Logits at ``position`` ``[n, vocab]`` and every layer's ``hook_z`` (on the CPU), ``size``
    rows per pass: the clean and corrupted runs of head patching.

    Example:
        >>> from iteration_heads import zoo
        >>> logits, z = run_keeping_z(zoo.load("polynomial_paper"), torch.zeros(3, 5).long(),
        ...                           torch.tensor([4, 4, 2]), 2)
        >>> logits.shape, z[1].shape
        (torch.Size([3, 16]), torch.Size([3, 5, 1, 64]))
    """
    n_layers = int(model.cfg.n_layers)
    device = device_of(model)
    logits: list[Tensor] = []
    z: dict[int, list[Tensor]] = {layer: [] for layer in range(n_layers)}
    with evaluating(model):
        for t, p in zip(tokens.split(size), position.split(size), strict=True):
            hooks = [(z_hook(layer), keep_into(z[layer])) for layer in range(n_layers)]
            logits.append(
                scored_logits(model, t.to(device), position_mask(t, p), hooks=hooks).cpu()
            )
    return torch.cat(logits), {layer: torch.cat(parts) for layer, parts in z.items()}


def keep_into(store: list[Tensor]) -> Callable[[Tensor, Any], None]:
    """A hook that appends each value it sees, detached, on the CPU, to ``store``."""

    def hook(value: Tensor, hook: Any) -> None:
        store.append(value.detach().cpu())

    return hook


def attribution_estimates(
    model: Any,
    corrupted: Tensor,
    position: Tensor,
    clean_z: dict[int, Tensor],
    clean_lp: Tensor,
    answer: Tensor,
    size: int,
) -> tuple[Tensor, tuple[Tensor, Tensor], int]:
    """The corrupted run of head patching and its first-order estimates in one forward pass per
    ``size`` rows: the logits at ``position`` ``[n, vocab]``, the estimated changes of
    ``KL(P_clean‖P)`` and of ``logit[answer] − logit[foil]`` after each single-head patch
    ``[layer, head, n]`` (:func:`linearised_sweep` with ``steps=1``, whose corrupted forward is
    this one: a forward pass fewer), and the passes (each with two backward passes, one per
    metric). ``clean_lp``: the clean log-probabilities at ``position``; the foil is the
    corrupted run's top-1, or its second where that is the answer.

    Example:
        >>> from iteration_heads import zoo
        >>> model = zoo.load("polynomial_paper")
        >>> clean, corrupted = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 5, 3, 4]])
        >>> logits, clean_z = run_keeping_z(model, clean, torch.tensor([3]), 1)
        >>> out, (kl, ld), passes = attribution_estimates(
        ...     model, corrupted, torch.tensor([3]), clean_z, logits.double().log_softmax(-1),
        ...     torch.tensor([2]), 1)
        >>> out.shape, kl.shape, passes
        (torch.Size([1, 16]), torch.Size([2, 1, 1]), 1)
    """
    from iteration_heads.pathways.patching_stats import answer_foil, kl_from_clean, logit_difference

    n_layers, device = int(model.cfg.n_layers), device_of(model)
    logits_parts: list[Tensor] = []
    estimates: tuple[list[Tensor], list[Tensor]] = ([], [])
    passes = 0
    with evaluating(model), torch.enable_grad():
        for rows in torch.arange(len(corrupted)).split(size):
            deltas = [
                torch.zeros_like(clean_z[lay][rows], device=device, requires_grad=True)
                for lay in range(n_layers)
            ]  # fmt: skip
            seen: list[list[Tensor]] = [[] for _ in range(n_layers)]
            hooks = [
                (z_hook(lay), _shift_keeping(deltas[lay], seen[lay])) for lay in range(n_layers)
            ]
            tokens = corrupted[rows]
            logits = scored_logits(
                model, tokens.to(device), position_mask(tokens, position[rows]), hooks=hooks
            ).cpu()
            foil = answer_foil(logits.detach(), answer[rows])
            kl = kl_from_clean(clean_lp[rows], logits)
            ld = logit_difference(logits, answer[rows], foil)
            for m, (value, keep) in enumerate(((kl, True), (ld, False))):
                grads = torch.autograd.grad(value.sum(), deltas, retain_graph=keep)
                estimates[m].append(torch.stack([
                    ((clean_z[lay][rows] - seen[lay][0]).double() * grads[lay].cpu().double())
                    .sum((1, 3)).T
                    for lay in range(n_layers)
                ]))  # fmt: skip
            logits_parts.append(logits.detach())
            passes += 1
    kl_est, ld_est = (torch.cat(parts, -1) for parts in estimates)
    return torch.cat(logits_parts), (kl_est, ld_est), passes


def _shift_keeping(delta: Tensor, seen: list[Tensor]) -> Callable[[Tensor, Any], Tensor]:
    """A ``hook_z`` hook: keeps ``z`` (detached, on the CPU) and returns ``z + delta``."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        seen.append(z.detach().cpu())
        return z + delta.to(z.dtype)

    return hook


def linearised_sweep(
    model: Any,
    corrupted: Tensor,
    position: Tensor,
    clean_z: dict[int, Tensor],
    corrupt_z: dict[int, Tensor],
    score: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    base: tuple[Tensor, Tensor],
    batch_size: int,
    steps: int = 1,
) -> tuple[Tensor, Tensor, int]:
    """First-order estimates of both metrics after every single-head patch, ``[layer, head, n]``:
    ``base + Σ_pos (z_clean − z_corr) · ∂metric/∂z`` at the corrupted run, the drop-in
    replacement of the exact sweep (same arguments and returns; ``score(logits, rows)`` must be
    differentiable in ``logits``). The third value counts forward-and-backward passes.
    ``steps > 1``: integrated gradients, ``∂metric/∂z`` averaged over the midpoints of ``steps``
    intervals on the path where every head moves together from corrupted to clean.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import head_patching, iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> result = head_patching(model, iteration_prompts(data.test, data.layout),
        ...                        method="attribution")
        >>> result.method, result.ranking()[0]
        ('attribution', (1, 0))
    """
    n_layers = int(model.cfg.n_layers)
    device = device_of(model)
    kl_parts: list[Tensor] = []
    ld_parts: list[Tensor] = []
    passes = 0
    with evaluating(model), torch.enable_grad():
        for start in range(0, len(corrupted), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(corrupted)))
            gaps = [
                (clean_z[lay][rows] - corrupt_z[lay][rows]).to(device) for lay in range(n_layers)
            ]
            grads = [[torch.zeros_like(g) for g in gaps] for _ in range(2)]
            for alpha in ((k + 0.5) / steps if steps > 1 else 0.0 for k in range(steps)):
                deltas = [torch.zeros_like(g, requires_grad=True) for g in gaps]
                hooks = [
                    (z_hook(lay), _shift(deltas[lay] + alpha * gaps[lay]))
                    for lay in range(n_layers)
                ]
                tokens = corrupted[rows]
                logits = scored_logits(
                    model, tokens.to(device), position_mask(tokens, position[rows]), hooks=hooks
                )
                kl, ld = score(logits.cpu(), rows)
                for m, (value, keep) in enumerate(((kl, True), (ld, False))):
                    got = torch.autograd.grad(value.sum(), deltas, retain_graph=keep)
                    for lay in range(n_layers):
                        grads[m][lay] += got[lay] / steps
                passes += 1
            for parts, grad in zip((kl_parts, ld_parts), grads, strict=True):
                parts.append(
                    torch.stack(
                        [
                            (
                                (clean_z[lay][rows] - corrupt_z[lay][rows]).double()
                                * grad[lay].cpu().double()
                            )
                            .sum((1, 3))
                            .T
                            for lay in range(n_layers)
                        ]
                    )
                )  # layer head rows
    kl_est, ld_est = (torch.cat(parts, -1) for parts in (kl_parts, ld_parts))
    return base[0] + kl_est, base[1] + ld_est, passes


def _shift(delta: Tensor) -> Callable[[Tensor, Any], Tensor]:
    def hook(z: Tensor, hook: Any) -> Tensor:
        return z + delta.to(z.dtype)

    return hook


def position_mask(tokens: Tensor, position: Tensor) -> Tensor:
    """A boolean mask ``[n, pos]`` true at each row's position.

    Example:
        >>> position_mask(torch.zeros(2, 3), torch.tensor([2, 0])).int().tolist()
        [[0, 0, 1], [1, 0, 0]]
    """
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[torch.arange(len(tokens)), position] = True
    return mask


def transformer_lens_estimates(model: Any, prompts: Any) -> tuple[Tensor, Tensor]:
    """The first-order estimates of ``KL_patched − KL_corr`` and ``LD_patched − LD_corr``,
    ``[layer, head, n]``, through TransformerLens's
    ``attribution_patching.attribution_patch`` (node granularity, one call per prompt and per
    metric, node scores summed over positions): the reference that :func:`linearised_sweep` is
    checked against. The foil is head patching's (the corrupted run's top-1 token, or its second
    where that is the answer).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> kl, ld = transformer_lens_estimates(model, iteration_prompts(data.test, data.layout).select(torch.arange(2)))
        >>> kl.shape
        torch.Size([2, 1, 2])
    """
    from transformer_lens.tools.analysis.attribution_patching import attribution_patch

    _check(model, prompts)
    corrupted = prompts.need_corrupted("attribution patching")
    for name, tokens in (
        ("clean", prompts.clean),
        ("corrupted", corrupted),
        ("answer", prompts.answer),
    ):
        check_token_ids(tokens, int(model.cfg.d_vocab), f"{name} token")
    width = int(prompts.position.max()) + 1
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    out = torch.zeros(2, n_layers, n_heads, len(prompts), dtype=torch.float64)
    device = device_of(model)
    with evaluating(model), torch.enable_grad(), attached_hooks(model):
        for i in range(len(prompts)):
            clean, corrupt = (t[i : i + 1, :width].to(device) for t in (prompts.clean, corrupted))
            p, answer = int(prompts.position[i]), int(prompts.answer[i])
            with without_gradients():
                clean_lp = model(clean)[0, p].double().log_softmax(-1)
                top2 = model(corrupt)[0, p].topk(2).indices.tolist()
            foil = top2[1] if top2[0] == answer else top2[0]

            def kl(logits: Tensor, clean_lp: Tensor = clean_lp, p: int = p) -> Tensor:
                lp = logits[0, p].double().log_softmax(-1)
                return (clean_lp.exp() * (clean_lp - lp)).sum()

            def ld(logits: Tensor, p: int = p, a: int = answer, f: int = foil) -> Tensor:
                return logits[0, p, a].double() - logits[0, p, f].double()

            metrics: tuple[Callable[[Tensor], Tensor], ...] = (kl, ld)
            for m, metric in enumerate(metrics):
                try:
                    scores = attribution_patch(model, clean, corrupt, metric).node_scores
                except (ValueError, NotImplementedError) as err:
                    first = str(err).splitlines()[0] if str(err) else type(err).__name__
                    raise IterationHeadsError(
                        f"TransformerLens attribution_patch: {first}"
                    ) from err
                for node, value in scores.items():
                    if node.kind == "attn_head_out":
                        out[m, node.layer, node.head, i] += value
    return out[0], out[1]
