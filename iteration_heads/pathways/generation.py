"""Greedy generation with some layers' heads fed a corrupted run, at every step (the machinery
of Dutta et al.'s horizon experiment, :mod:`~iteration_heads.pathways.horizon`).

Each patched row runs in the same batch as its corrupted twin (the corrupted prompt followed by
the row's own generated tokens); at each patched layer, the row's ``hook_z`` (every head, every
position) is replaced by the twin's. The corrupted prompt is a substitution of the clean one, so
positions align by construction; a corruption of another length is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._torch import device_of, evaluating, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import analysis_rows, batch_rows
from iteration_heads.passes import scored_logits
from iteration_heads.tasks.task import check_int


def patched_logits(
    model: Any,
    tokens: Int[Tensor, "n pos"],
    corrupted: Int[Tensor, "n pos"],
    positions: Int[Tensor, " n"],
    layers: Sequence[int],
) -> Float[Tensor, "n vocab"]:
    """The logits at ``positions`` of ``tokens`` with every head's output (``hook_z``) at
    ``layers`` replaced, at every position, by its value in the run of ``corrupted`` (same
    shape: a substitution). The corrupted rows run in the same batch, unpatched.

    Example:
        >>> from iteration_heads import zoo
        >>> from iteration_heads.experiments.ontology_study import model_ontology
        >>> from iteration_heads.tasks import make_ontology_problems
        >>> model = zoo.load("ontology")
        >>> problems = make_ontology_problems(model_ontology(model), 2, kind="fictional")
        >>> tokens, at = problems.tokens, torch.tensor([20, 20])
        >>> same = patched_logits(model, tokens, tokens, at, [0, 1, 2, 3])
        >>> bool(torch.allclose(same, model(tokens)[:, 20], atol=1e-5))
        True
    """
    _check_pair(tokens, corrupted)
    patch = layer_mask(layers, int(model.cfg.n_layers), len(tokens))
    positions, width = torch.as_tensor(positions).cpu(), tokens.shape[1]
    if positions.shape != (len(tokens),) or bool(((positions < 0) | (positions >= width)).any()):
        raise IterationHeadsError(f"positions {positions.tolist()}, expected one per row in "
                                  f"0..{width - 1}")  # fmt: skip
    with evaluating(model):
        return _step(model, tokens, corrupted, positions, patch)


def patched_generation(
    model: Any,
    tokens: Int[Tensor, "n pos"],
    start: Int[Tensor, " n"],
    *,
    corrupted: Int[Tensor, "n pos"] | None = None,
    layers: Sequence[int] | Bool[Tensor, "n layer"] = (),
    stop: int | None = None,
    max_new: int | None = None,
    batch_size: int | None = None,
) -> Int[Tensor, "n new"]:
    """Greedy continuation of each row of ``tokens`` from position ``start[i]`` (the tokens
    before it are given), with the heads of ``layers`` (a list for every row, or a mask
    ``[row, layer]``) fed, at every step and position, the run of ``corrupted`` before
    ``start[i]`` followed by the row's generated tokens. A row stops after the token ``stop``,
    after ``max_new`` tokens, or at the model's ``n_ctx``. Returns the tokens generated, ``-1``
    after a row stopped. ``batch_size``: rows per pass (None: sized to the memory budget).

    Example:
        >>> from iteration_heads import zoo
        >>> from iteration_heads.experiments.ontology_study import model_ontology
        >>> from iteration_heads.tasks import make_ontology_problems
        >>> model = zoo.load("ontology")
        >>> problems = make_ontology_problems(model_ontology(model), 1, seed=7, kind="fictional")
        >>> problems.decode(0).split(" => ")[0]
        '<s> e0 is c7 . c11 is p3 . c7 is c11 . Q e0 is p3 ?'
        >>> names, start, stop = problems.vocab.names, torch.tensor([19]), problems.vocab.id("</s>")
        >>> def show(out): return " ".join(names[t] for t in out[0] if t >= 0)
        >>> show(patched_generation(model, problems.tokens, start, stop=stop))  # after "=>"
        'e0 is c7 . c7 is c11 . e0 is c11 . c11 is p3 . e0 is p3 . True </s>'
        >>> from iteration_heads.pathways.horizon import corrupt_fact
        >>> corrupted = corrupt_fact(problems)  # c11 is p5
        >>> show(patched_generation(model, problems.tokens, start, corrupted=corrupted,
        ...                         layers=[2], stop=stop))  # layer 2 fed the corrupted fact
        'e0 is c7 . c7 is c11 . e0 is c11 . c11 is p5 . e0 is p5 . False </s>'
    """
    n_ctx, start = int(model.cfg.n_ctx), torch.as_tensor(start).cpu()
    corrupted = tokens if corrupted is None else corrupted
    _check_pair(tokens, corrupted)
    patch = layer_mask(layers, int(model.cfg.n_layers), len(tokens), empty=True)
    check_int("max_new", max_new, minimum=1, none=True)
    check_int("stop", stop, minimum=0, none=True)
    if tokens.shape[1] > n_ctx or start.shape != (len(tokens),) or bool(
            ((start < 1) | (start >= min(tokens.shape[1] + 1, n_ctx))).any()):  # fmt: skip
        raise IterationHeadsError(
            f"start {start.tolist()} for tokens of shape {tuple(tokens.shape)}, expected one "
            f"position per row in 1..{min(tokens.shape[1], n_ctx - 1)} (the model's n_ctx is "
            f"{n_ctx})"
        )
    size = batch_rows(batch_size, analysis_rows(model, n_ctx))
    return _generate(model, tokens, corrupted, start, patch, stop, max_new, size)


def _generate(
    model: Any, tokens: Tensor, corrupted: Tensor, start: Tensor, patch: Tensor,
    stop: int | None, max_new: int | None, size: int,
) -> Tensor:  # fmt: skip
    """:func:`patched_generation`, checked."""
    n, n_ctx = len(tokens), int(model.cfg.n_ctx)
    end = (start + (max_new or n_ctx)).clamp(max=n_ctx)
    seq = torch.zeros(n, n_ctx, dtype=torch.long)
    corr = torch.zeros(n, n_ctx, dtype=torch.long)
    seq[:, : tokens.shape[1]], corr[:, : tokens.shape[1]] = tokens, corrupted
    out = torch.full((n, int((end - start).max())), -1, dtype=torch.long)
    at, done = start.clone(), start >= end
    with evaluating(model):
        while not bool(done.all()):
            active = (~done).nonzero().flatten()
            for rows in active.split(max(1, size // 2)):  # a patched row runs with its twin
                width = int(at[rows].max())
                given = torch.arange(width)[None] < start[rows, None]
                mixed = torch.where(given, corr[rows, :width], seq[rows, :width])
                logits = _step(model, seq[rows, :width], mixed, at[rows] - 1, patch[rows])
                chosen = logits.argmax(-1).cpu()
                seq[rows, at[rows]] = chosen
                out[rows, at[rows] - start[rows]] = chosen
                if stop is not None:
                    done[rows] |= chosen == stop
            at[active] += 1
            done |= at >= end
    return out


def _step(model: Any, seq: Tensor, corr: Tensor, at: Tensor, patch: Tensor) -> Tensor:
    """Logits of ``seq`` at positions ``at`` with each row's patched layers fed its twin
    (``corr``).
    The patched rows run first, then every distinct unpatched sequence (unpatched rows and the
    twins, cut after each row's ``at``: patched layers rarely change the generation, so most
    twins are one sequence)."""
    device, width = device_of(model), seq.shape[1]
    patched = patch.any(1)
    cut = torch.arange(width)[None] > at[:, None]  # never read by position at (causal)
    free = torch.cat([seq[~patched], corr[patched]]).masked_fill(
        torch.cat([cut[~patched], cut[patched]]), 0)  # fmt: skip
    keys = torch.cat([free, torch.cat([at[~patched], at[patched]])[:, None]], 1)
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    m, u = int(patched.sum()), int((~patched).sum())
    hooks = []
    for layer in range(patch.shape[1]):
        dst = patch[patched, layer].nonzero().flatten()  # among the patched rows
        if len(dst):
            src = m + inverse[u + dst]
            hooks.append((z_hook(layer), _swap(dst.to(device), src.to(device))))
    batch = torch.cat([seq[patched], unique[:, :-1]])
    scored = torch.zeros(batch.shape, dtype=torch.bool)
    scored[torch.arange(len(batch)), torch.cat([at[patched], unique[:, -1]])] = True
    logits = scored_logits(model, batch.to(device), scored.to(device), hooks=hooks).float().cpu()
    out = torch.empty(len(seq), logits.shape[1])
    out[patched], out[~patched] = logits[:m], logits[m + inverse[:u]]
    return out


def _swap(dst: Tensor, src: Tensor) -> Callable[[Tensor, Any], Tensor]:
    """A ``hook_z`` hook: rows ``dst`` take the value of rows ``src`` (every head, position)."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        z = z.clone()
        z[dst] = z[src]
        return z

    return hook


def layer_mask(
    layers: Sequence[int] | Bool[Tensor, "n layer"], n_layers: int, n: int, *, empty: bool = False
) -> Bool[Tensor, "n layer"]:
    """The patched layers of ``n`` rows as a mask ``[row, layer]``: ``layers`` is a list of
    distinct layers (every row) or already a mask; ``empty``: no layer at all is allowed.

    Example:
        >>> layer_mask([1], 3, 2).tolist()
        [[False, True, False], [False, True, False]]
    """
    if isinstance(layers, Tensor) and layers.dtype == torch.bool:
        if layers.shape != (n, n_layers):
            raise IterationHeadsError(f"layers mask of shape {tuple(layers.shape)}, expected "
                                      f"({n}, {n_layers})")  # fmt: skip
        return layers.cpu()
    chosen = [check_int("layers", layer, minimum=0, maximum=n_layers - 1) for layer in layers]
    if (not chosen and not empty) or len(set(chosen)) < len(chosen):
        raise IterationHeadsError(
            f"layers={list(layers)!r}, expected distinct layers in 0..{n_layers - 1}"
        )
    mask = torch.zeros(n, n_layers, dtype=torch.bool)
    mask[:, chosen] = True
    return mask


def _check_pair(tokens: Any, corrupted: Any) -> None:
    for name, t in (("tokens", tokens), ("corrupted", corrupted)):
        if not isinstance(t, Tensor) or t.ndim != 2 or t.is_floating_point() or t.numel() == 0:
            raise IterationHeadsError(f"{name} of shape {tuple(getattr(t, 'shape', ()))}, "
                                      "expected a non-empty integer tensor [n, pos]")  # fmt: skip
    if corrupted.shape != tokens.shape:
        raise IterationHeadsError(
            f"corrupted tokens of shape {tuple(corrupted.shape)}, expected the clean shape "
            f"{tuple(tokens.shape)}: a substitution (positions must align)"
        )
