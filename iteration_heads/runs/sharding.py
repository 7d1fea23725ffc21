"""Exact head patching sharded over the sweep executors: the heads cut into shards, each shard
a call on an executor (local processes, Ray, SLURM through submitit) that loads the model from
its folder and runs ``head_patching(..., method="exact", heads=shard)``, and the shards
assembled into the result of one process
(:func:`~iteration_heads.pathways.patching_shards.assemble_head_patching`: the same values,
rankings and counts; ``n_forward`` is the sum of the shards' passes).

Workers get the model as a folder or a shipped model's name (cheap to send, each loads its own
copy on the CPU) and the prompts as they are (tensors and tuples: picklable). Each worker runs
with the executor's threads per run (one by default). Results come back through the futures:
per-head maps and per-prompt scores, a few megabytes at most.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from iteration_heads._io import CONFIG_FILE, METADATA_FILE, read_json
from iteration_heads._torch import Head
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.pathways.patching_shards import assemble_head_patching, split_heads
from iteration_heads.pathways.patching_stats import check_patching_request
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.restoration import HeadPatching, head_patching
from iteration_heads.runs.executors import Executor


def load_source(source: str | os.PathLike[str]) -> Any:
    """The model of a library model folder, a shipped model's name or a HuggingFace checkpoint
    folder, on the CPU (what a shard's worker runs).

    Example:
        >>> load_source("polynomial_paper").cfg.n_layers
        2
        >>> load_source("README.md")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: 'README.md' is a file, expected a model folder
    """
    from iteration_heads.model.checkpoint import load, model_directory
    from iteration_heads.model.hf import load_hf_folder

    if not isinstance(source, str | os.PathLike):
        raise IterationHeadsError(
            f"model source of type {type(source).__name__}, expected a model folder or the name of a "
            "shipped model (each worker loads its own copy)"
        )
    folder = model_directory(source)
    if not (folder / CONFIG_FILE).is_file():
        raise IterationHeadsError(
            f"{str(folder)!r} holds no {CONFIG_FILE}: expected a model folder (a library model or "
            "a HuggingFace checkpoint) or a shipped name"
        )
    if (folder / METADATA_FILE).is_file() and "layout" in read_json(folder / CONFIG_FILE):
        return load(folder)
    return load_hf_folder(folder)[0]


def patch_shard(
    source: str, prompts: Prompts, heads: list[Head], min_kl: float, batch_size: int | None
) -> HeadPatching:
    """One shard, in a worker: the model loaded from ``source``, the exact patches of ``heads``.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> part = patch_shard("polynomial_paper", prompts, [(1, 0)], 1e-3, None)
        >>> part.values.isnan().tolist()
        [[True], [False]]
    """
    model = load_source(source)
    return head_patching(
        model, prompts, min_kl=min_kl, batch_size=batch_size, method="exact", heads=heads
    )


def sharded_head_patching(
    model_source: str | os.PathLike[str],
    prompts: Prompts,
    executor: Executor,
    *,
    shards: int | None = None,
    min_kl: float = 1e-3,
    batch_size: int | None = None,
) -> HeadPatching:
    """``head_patching(model, prompts, method="exact")`` with the heads cut into ``shards``
    runs of consecutive heads (None: one per executor slot, at most one per head), each run by
    ``executor`` as one call, never more at once than its ``slots``; the shards assembled give
    the same values as one process (``n_forward``: the sum of the shards' passes).

    The model is loaded here once, to check the prompts and count the heads, and once in each
    worker. The caller owns ``executor`` (it is not shut down here).

    Args:
        model_source: A library model folder, a shipped model's name or a HuggingFace
            checkpoint folder (not a live model: workers load their own copy).
        prompts: Prompts with ``corrupted`` tokens.
        executor: A :class:`~iteration_heads.runs.executors.Executor`.
        shards: How many calls (1 to the model's head count).
        min_kl: As for :func:`~iteration_heads.pathways.restoration.head_patching`.
        batch_size: As for :func:`~iteration_heads.pathways.restoration.head_patching`.

    Raises:
        IterationHeadsError: a bad option or prompt (before any call starts), or the first
            shard that failed (its first line; the shards not started are cancelled).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset
        >>> from iteration_heads.pathways import iteration_prompts
        >>> from iteration_heads.runs import LocalExecutor
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> with LocalExecutor(jobs=1) as executor:
        ...     result = sharded_head_patching("polynomial_paper", prompts, executor, shards=2)
        >>> result.ranking()[0], result.method
        ((1, 0), 'exact')
    """
    if not isinstance(executor, Executor):
        raise IterationHeadsError(
            f"executor is a {type(executor).__name__}, expected an Executor (LocalExecutor, "
            "RayExecutor, SlurmExecutor: see make_executor)"
        )
    corrupted = check_patching_request(prompts, min_kl, batch_size)
    model = load_source(model_source)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    for tokens, what in ((prompts.clean, "clean"), (corrupted, "corrupted"),
                         (prompts.answer, "answer")):  # fmt: skip
        check_token_ids(tokens, int(model.cfg.d_vocab), f"{what} token")
    del model
    if shards is None:
        shards = min(max(int(executor.slots), 1), n_layers * n_heads)
    parts = split_heads(n_layers, n_heads, shards)
    from iteration_heads.model.checkpoint import model_directory

    source = str(model_directory(model_source).resolve())  # workers may start elsewhere
    calls = [(patch_shard, (source, prompts, heads, float(min_kl), batch_size)) for heads in parts]
    results = _run_calls(executor, calls)
    return assemble_head_patching(list(zip(parts, results, strict=True)))


def _run_calls(executor: Executor, calls: list[Any]) -> list[HeadPatching]:
    """Every call's result in order, at most ``executor.slots`` submitted at once."""
    results: dict[int, HeadPatching] = {}
    running: dict[Future[Any], int] = {}
    waiting = list(enumerate(calls))
    try:
        while waiting or running:
            free = max(int(executor.slots) - len(running), 1 if not running else 0)
            batch, waiting = waiting[:free], waiting[free:]
            if batch:
                futures = executor.submit_all([call for _, call in batch])
                running |= {f: i for f, (i, _) in zip(futures, batch, strict=True)}
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                results[i] = _result(future, i, len(calls))
    finally:
        for future in running:
            future.cancel()
    return [results[i] for i in range(len(calls))]


def _result(future: Future[Any], i: int, n: int) -> HeadPatching:
    try:
        return future.result()
    except Exception as err:  # a worker's error, maybe wrapped (Ray: RayTaskError)
        cause = getattr(err, "cause", None) or err
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        kind = "" if isinstance(cause, IterationHeadsError) else f"{type(cause).__name__}: "
        raise IterationHeadsError(f"shard {i + 1} of {n} failed: {kind}{lines[0]}") from None
