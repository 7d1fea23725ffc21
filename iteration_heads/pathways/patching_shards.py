"""Exact head patching in shards: run the sweep on a subset of the heads, and assemble the
shards into the result of one run over every head.

``head_patching(model, prompts, method="exact", heads=[...])`` runs the single-head patches of
those heads only (:func:`only_heads`); every other head is not run and scores NaN in every map
(NaN, not 0: a head left out restored nothing *measured*, which is not the same as restoring
nothing). Every score of head patching is a per-head quantity (the clean and corrupted runs, the
exclusions by ``min_kl`` and the counts are the same in every shard), so
:func:`assemble_head_patching` puts the shards' heads side by side into the result of one run
over every head: the same values, rankings, ``n_prompts`` and ``n_excluded``. Only
``n_forward`` differs: it is the sum of the shards' passes (a shard packs the rows of its own
heads only, so the sum may exceed one process's count by up to one pass per shard).
:func:`~iteration_heads.runs.sharding.sharded_head_patching` runs the shards on the sweep
executors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import torch
from torch import Tensor

from iteration_heads._torch import Head, check_heads
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.patching_stats import FIELDS

Sweep = Callable[..., tuple[Tensor, Tensor, int]]
"""A sweep of head patching: ``(model, corrupted, position, clean_z, corrupt_z, score, base,
batch_size) -> (kl_patched, ld_patched, n_forward)``."""

P = TypeVar("P")

SHARED_FIELDS = (
    "kl_corrupted",
    "logit_diff_clean",
    "logit_diff_corrupted",
    "foil",
    "labels",
    "min_kl",
    "method",
    "n_prompts",
    "n_excluded",
)
"""The fields of a head-patching result that do not depend on the heads: every shard's must
be equal."""

PER_PROMPT = ("per_prompt_kl", "per_prompt_logit_diff")
"""The ``[layer, head, n]`` fields of a head-patching result."""


def head_mask(heads: Any, n_layers: int, n_heads: int) -> torch.Tensor:
    """``[layer, head]`` booleans, True at ``heads`` (a list of ``(layer, head)`` pairs; a
    repeated pair counts once).

    Example:
        >>> head_mask([(0, 1), (1, 0)], 2, 2).tolist()
        [[False, True], [True, False]]
        >>> head_mask([(2, 0)], 2, 2)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: head (layer=2, head=0) does not exist: the model has layers 0..1 and heads 0..1
    """
    shape = SimpleNamespace(cfg=SimpleNamespace(n_layers=n_layers, n_heads=n_heads))
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for layer, head in check_heads(shape, heads):
        mask[layer, head] = True
    return mask


def only_heads(heads: Sequence[Head] | None, model: Any, method: str, sweep: Sweep) -> Sweep:
    """``sweep`` itself when ``heads`` is None, else a sweep that runs the patches of ``heads``
    only and leaves every other head's patched KL and logit difference NaN. Only the exact
    method may run on a subset (``method``: the one chosen).

    Example:
        >>> from iteration_heads import zoo
        >>> model = zoo.load("polynomial_paper")
        >>> only_heads(None, model, "exact", print) is print
        True
        >>> only_heads([(0, 0)], model, "attribution", print)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: heads= needs method='exact'; this sweep would run 'attribution'
    """
    if heads is None:
        return sweep
    if method != "exact":
        raise IterationHeadsError(f"heads= needs method='exact'; this sweep would run {method!r}")
    only = head_mask(heads, int(model.cfg.n_layers), int(model.cfg.n_heads))

    def restricted(
        model: Any,
        corrupted: Tensor,
        position: Tensor,
        clean_z: dict[int, Tensor],
        corrupt_z: dict[int, Tensor],
        *rest: Any,
    ) -> tuple[Tensor, Tensor, int]:
        # a head whose clean output equals its corrupted one is not run: make it so elsewhere
        kept = {
            layer: torch.where(only[layer][:, None], z, corrupt_z[layer])
            for layer, z in clean_z.items()
        }
        kl, ld, n_forward = sweep(model, corrupted, position, kept, corrupt_z, *rest)
        kl[~only], ld[~only] = math.nan, math.nan
        return kl, ld, n_forward

    return restricted


def split_heads(n_layers: int, n_heads: int, shards: int) -> list[list[Head]]:
    """Every ``(layer, head)``, layer by layer, cut into ``shards`` runs of consecutive heads
    whose sizes differ by at most one.

    Example:
        >>> split_heads(2, 3, 4)
        [[(0, 0), (0, 1)], [(0, 2), (1, 0)], [(1, 1)], [(1, 2)]]
    """
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= len(heads):
        raise IterationHeadsError(
            f"shards={shards!r}, expected an integer from 1 to {len(heads)} (the model's heads: "
            "at least one head per shard)"
        )
    size, extra = divmod(len(heads), shards)
    bounds = [i * size + min(i, extra) for i in range(shards + 1)]
    return [heads[a:b] for a, b in pairwise(bounds)]


def assemble_head_patching(parts: Sequence[tuple[Sequence[Head], P]]) -> P:
    """One :class:`~iteration_heads.pathways.restoration.HeadPatching` from shards: pairs of
    ``(heads, result)``, each result of ``head_patching(..., method="exact", heads=heads)`` on
    the same model, prompts and ``min_kl``, the heads covering every head once. Each head's
    values come from its shard; ``n_forward`` is the sum of the shards'.

    Raises:
        IterationHeadsError: no shard, a head in two shards or in none, or shards whose
            prompts, ``min_kl`` or method differ.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import head_patching, iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> parts = [(h, head_patching(model, prompts, method="exact", heads=h))
        ...          for h in split_heads(2, 1, 2)]
        >>> whole = head_patching(model, prompts, method="exact")
        >>> bool(assemble_head_patching(parts).values.equal(whole.values))
        True
    """
    if isinstance(parts, str | bytes) or not isinstance(parts, Sequence) or not parts:
        raise IterationHeadsError(f"parts {parts!r:.60}, expected a non-empty list of shards")
    first = cast(Any, parts[0][1])
    n_layers, n_heads = first.values.shape
    owner = torch.full((n_layers, n_heads), -1)
    for i, (heads, _) in enumerate(parts):
        mask = head_mask(heads, n_layers, n_heads)
        twice = (mask & (owner >= 0)).nonzero().tolist()
        if twice:
            raise IterationHeadsError(
                f"head {tuple(twice[0])} is in shards {int(owner[tuple(twice[0])])} and {i}, "
                "expected each head in one shard"
            )
        owner[mask] = i
    missing = (owner < 0).nonzero().tolist()
    if missing:
        raise IterationHeadsError(f"head {tuple(missing[0])} is in no shard, expected every head")
    for i, (_, part) in enumerate(parts):
        for name in SHARED_FIELDS:
            if not _same(getattr(part, name), getattr(first, name)):
                raise IterationHeadsError(
                    f"shard {i} differs from shard 0 in {name}: expected shards of one model, "
                    "the same prompts and min_kl"
                )
    changes: dict[str, Any] = {"n_forward": sum(int(cast(Any, p).n_forward) for _, p in parts)}
    for name in FIELDS:
        changes[name] = {
            label: _merge([getattr(p, name)[label] for _, p in parts], owner)
            for label in getattr(first, name)
        }
    for name in PER_PROMPT:
        changes[name] = _merge([getattr(p, name) for _, p in parts], owner)
    return cast(P, dataclasses.replace(first, **changes))


def _merge(tensors: list[Tensor], owner: Tensor) -> Tensor:
    """Each head's entry (``[layer, head, ...]``) from the tensor of its shard."""
    out = tensors[0].clone()
    for i, tensor in enumerate(tensors[1:], start=1):
        out[owner == i] = tensor[owner == i]
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    return bool(a == b)
