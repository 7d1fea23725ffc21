"""Several seeds of one configuration trained in one process, their parameters stacked.

:func:`train_seeds` trains K seeds as K separate :func:`~iteration_heads.training.loop.train`
runs would, to float tolerance, but each step runs the K models at once: the parameters are
stacked along a new first dimension and :func:`torch.func.vmap` maps the library's own forward
pass (:func:`~iteration_heads.model.fast_forward.forward`) over them. Each seed keeps what a
separate run has: its own data set, initialisation, batch order (a generator per seed and epoch)
and dropout masks (a random-number state per seed, swapped in for its dropout draw only).

Adam and SGD act elementwise, so one optimiser over the stacked parameters, stepping on the sum
of the K mean losses, moves each slice as the seed's own optimiser would. Losses, accuracies and
weights then agree with separate runs to float rounding, except the attention key biases: their
gradient is zero in exact arithmetic (softmax ignores a shift shared by all keys), so Adam turns
rounding noise into steps of up to ``lr`` that differ between any two ways of computing the same
run (other thread counts too), and that change no output.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from torch.func import vmap
from tqdm import tqdm

from iteration_heads._torch import without_gradients
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import attach_metadata, save
from iteration_heads.model.fast_forward import Weights, forward
from iteration_heads.model.transformer import ModelConfig, build_model
from iteration_heads.tasks.data import IGNORE, DataConfig, Dataset, make_dataset
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import check_bool, check_int
from iteration_heads.training.evaluation import evaluation_records
from iteration_heads.training.loop import (
    TrainConfig,
    cot_loss,
    make_optimizer,
    set_learning_rate,
    steps_per_epoch,
    trainable_parameters,
)
from iteration_heads.training.resume import save_checkpoint
from iteration_heads.training.run_dir import (
    append_history,
    at_target,
    check_run_folder,
    locked_run,
    prepare_run,
    run_metadata,
)

SEED_STRIDE = 1_000_003
"""A run's epoch ``e`` draws its dropout and batch order from seed ``seed * SEED_STRIDE + e``
(as :func:`~iteration_heads.training.loop.train` does)."""


@dataclass
class _Member:
    """One seed: its model (evaluated, returned and saved), data, configs and random state."""

    config: TrainConfig
    model: torch.nn.Module
    data: Dataset
    record: dict[str, Any]
    run: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=lambda: {"train": 0.0, "eval": 0.0, "train_cpu": 0.0}
    )
    rng: Tensor | None = None  # dropout generator state during an epoch


def train_seeds(
    model_config: ModelConfig,
    data_config: DataConfig,
    train_config: TrainConfig,
    seeds: Sequence[int],
    *,
    out_dirs: Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = False,
) -> list[tuple[torch.nn.Module, list[dict[str, Any]]]]:
    """Train one configuration for every seed in ``seeds`` in one process; returns
    ``(model, history)`` per seed, in order, as K separate runs of
    :func:`~iteration_heads.training.loop.train` would give them (to float tolerance).

    Seed ``k`` is ``dataclasses.replace(config, seed=k)`` for all three configs: its own data,
    initialisation, batch order and dropout masks.

    Args:
        model_config: Architecture (its ``seed`` is replaced by each seed).
        data_config: Task and data (its ``seed`` likewise); a task of the token layout.
        train_config: Optimiser and schedule (its ``seed`` likewise). ``stop_at_target`` stops
            a seed at the evaluation where the separate run would stop (its weights and
            optimiser state leave the stack); the others go on.
        seeds: Distinct seeds, at least one.
        out_dirs: One new run directory per seed, written as ``train(..., out_dir=...)``
            writes it (configs, history, checkpoints at ``checkpoint_every`` and at the end,
            final model); None keeps nothing on disk.
        progress: Show a tqdm bar over epochs.

    Unlike ``train``: no ``resume`` or callback; data of the token layout only (not the
    ontology task); every seed's training set has the same size, so the same number of batches
    per epoch (shapes follow the config, not the seed); a history's ``train_seconds`` and
    ``train_cpu_seconds`` are the seed's share of the stacked steps' time; a loss that stops
    being finite stops every seed with an error (no model saved as final, run directories keep
    their checkpoints).

    Example:
        >>> cfg = ModelConfig(d_model=16, max_len=3)
        >>> data = DataConfig(task="copy", max_len=3, n_train=16, n_test=16)
        >>> runs = train_seeds(cfg, data, TrainConfig(epochs=1, batch_size=16), [0, 1])
        >>> [history[-1]["epoch"] for _, history in runs]
        [1, 1]
    """
    seeds = _check(model_config, data_config, train_config, seeds, out_dirs, progress)
    runs = [None] * len(seeds) if out_dirs is None else [Path(d) for d in out_dirs]
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    members = []
    for seed, run in zip(seeds, runs, strict=True):
        mc, dc = replace(model_config, seed=seed), replace(data_config, seed=seed)
        tc = replace(train_config, seed=seed)
        data = make_dataset(dc, mc.layout)
        record = {"model": mc.to_dict(), "data": dc.to_dict(), "train": tc.to_dict()}
        members.append(_Member(tc, build_model(mc), data, record, run))
    if len({len(m.data.train) for m in members}) > 1:
        sizes = [len(m.data.train) for m in members]
        raise IterationHeadsError(f"training sets of unequal sizes {sizes}: expected one size")
    with ExitStack() as stack:
        for m in members:
            if m.run is not None:
                stack.enter_context(locked_run(m.run))
        for m in members:
            if m.run is not None:
                optimizer = make_optimizer(
                    trainable_parameters(m.model, m.config.trainable), m.config
                )
                prepare_run(m.run, m.model, optimizer, m.record, False)
        _train_stacked(members, model_config, train_config, progress)
    return [(m.model, m.history) for m in members]


def _check(mc: Any, dc: Any, tc: Any, seeds: Any, out_dirs: Any, progress: Any) -> list[int]:
    """The seeds as ints; a one-line error for bad arguments, before anything is written."""
    for name, value, kind in (
        ("model_config", mc, ModelConfig),
        ("data_config", dc, DataConfig),
        ("train_config", tc, TrainConfig),
    ):
        if not isinstance(value, kind):
            raise IterationHeadsError(
                f"{name} must be a {kind.__name__}, not {type(value).__name__}"
            )
    check_bool("progress", progress)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise IterationHeadsError(f"seeds={seeds!r}, expected a non-empty list of integers >= 0")
    checked = [check_int(f"seeds[{i}]", seed, minimum=0) for i, seed in enumerate(seeds)]
    if len(set(checked)) != len(checked):
        raise IterationHeadsError(f"seeds={checked} repeat a seed; expected distinct seeds")
    width = TokenLayout.seq_len(dc.max_len, cot=dc.cot)
    if width > mc.n_ctx:
        raise IterationHeadsError(
            f"data max_len={dc.max_len} needs {width} positions, the model's n_ctx is "
            f"{mc.n_ctx} (max_len={mc.max_len})"
        )
    if out_dirs is None:
        return checked
    if isinstance(out_dirs, (str, bytes, os.PathLike)) or not isinstance(out_dirs, Sequence):
        raise IterationHeadsError(
            f"out_dirs={out_dirs!r}, expected a list of folders, one per seed"
        )
    if len(out_dirs) != len(seeds):
        raise IterationHeadsError(
            f"out_dirs has {len(out_dirs)} folders for {len(seeds)} seeds; expected one per seed"
        )
    if not all(isinstance(d, (str, os.PathLike)) and str(d) for d in out_dirs):
        raise IterationHeadsError(f"out_dirs={list(out_dirs)!r}, expected folder paths")
    resolved = [Path(d).resolve() for d in out_dirs]
    if len(set(resolved)) != len(resolved):
        raise IterationHeadsError(
            f"out_dirs={[str(d) for d in out_dirs]} name a folder twice; expected one per seed"
        )
    for folder in out_dirs:
        check_run_folder(Path(folder), False)
    return checked


def _member_logits(
    tensors: dict[str, Tensor],
    tokens: Int[Tensor, "batch pos"],
    mask: Float[Tensor, "batch pos d_model"] | None,
    *,
    config: ModelConfig,
    eps: float,
) -> Float[Tensor, "batch pos d_vocab"]:
    """One model's logits (mapped over the stack by vmap): its embeddings times its dropout
    mask, fed to the library's forward pass as the rows of an embedding looked up in order
    (with a zero positional embedding), so the rest of the pass is the library's own."""
    batch, seq = tokens.shape
    x = F.embedding(tokens, tensors["embed.weight"]) + tensors["pos_embed.weight"][:seq]
    if mask is not None:
        x = x * mask  # = F.dropout(x) with the mask drawn from the same random state
    embedded = dict(tensors)
    embedded["embed.weight"] = x.reshape(batch * seq, x.shape[-1])
    embedded["pos_embed.weight"] = torch.zeros_like(x[0])
    rows = torch.arange(batch * seq, device=tokens.device).view(batch, seq)
    logits, _ = forward(Weights(config, embedded, eps), rows)
    return logits


def _dropout_mask(
    member: _Member, shape: tuple[int, int, int], p: float, device: torch.device
) -> Tensor:
    """The mask F.dropout applies in this seed's separate run: drawn with its random state."""
    assert member.rng is not None
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_rng_state(member.rng, device)
    else:
        torch.random.set_rng_state(member.rng)
    mask = F.dropout(torch.ones(shape, device=device), p, training=True)
    member.rng = torch.cuda.get_rng_state(device) if cuda else torch.random.get_rng_state()
    return mask


class _Stack:
    """The active seeds' parameters stacked (leaves of autograd) and their optimiser."""

    def __init__(self, members: list[_Member], config: TrainConfig, device: torch.device):
        model = members[0].model
        every = [m.model.state_dict(keep_vars=True) for m in members]
        chosen = {id(p) for p in trainable_parameters(model, config.trainable)}
        self.trained = [n for n, t in every[0].items() if id(t) in chosen]
        self.config = config
        self.tensors = {
            name: torch.stack([tensors[name].detach() for tensors in every]).to(device)
            for name in every[0]
        }
        for name in self.trained:
            self.tensors[name].requires_grad_(True)
        self.optimizer = make_optimizer([self.tensors[n] for n in self.trained], config)

    def keep(self, index: list[int]) -> None:
        """Keep the seeds at ``index`` (positions in the stack), with their optimiser state."""
        old, old_state = self.tensors, self.optimizer.state
        self.tensors = {n: t.detach()[index].clone() for n, t in old.items()}
        for name in self.trained:
            self.tensors[name].requires_grad_(True)
        self.optimizer = make_optimizer([self.tensors[n] for n in self.trained], self.config)
        for name in self.trained:
            state = old_state.get(old[name], {})
            self.optimizer.state[self.tensors[name]] = {
                key: value[index].clone() if _stacked(value, old[name]) else value
                for key, value in state.items()
            }

    def export(self, member: _Member, i: int) -> torch.optim.Optimizer:
        """Copy slice ``i`` into ``member.model``; returns the seed's own optimiser with the
        state the stacked one holds for it (what its separate run would checkpoint)."""
        params = dict(member.model.state_dict(keep_vars=True))
        with without_gradients():
            for name, stacked in self.tensors.items():
                params[name].copy_(stacked[i])
        mine = trainable_parameters(member.model, member.config.trainable)
        optimizer = make_optimizer(mine, member.config)
        names = {id(t): n for n, t in params.items()}
        for p in mine:
            state = self.optimizer.state.get(self.tensors[names[id(p)]], {})
            optimizer.state[p] = {
                key: value[i].clone()
                if _stacked(value, self.tensors[names[id(p)]])
                else (value.clone() if isinstance(value, Tensor) else value)
                for key, value in state.items()
            }
        return optimizer


def _stacked(value: Any, param: Tensor) -> bool:
    """Whether an optimiser state entry holds one slice per seed (not Adam's shared step)."""
    return isinstance(value, Tensor) and value.shape == param.shape


def _log(member: _Member, epoch: int, per_epoch: int, train_loss: float | None) -> None:
    """Evaluate ``member.model`` (its weights copied in) and record it as ``train`` does."""
    tick = time.perf_counter()
    test, train_eval = evaluation_records(member.model, member.data)
    member.seconds["eval"] += time.perf_counter() - tick
    record = {
        "epoch": epoch,
        "step": epoch * per_epoch,
        "train_loss": train_loss,
        "train_seconds": round(member.seconds["train"], 3),
        "eval_seconds": round(member.seconds["eval"], 3),
        "train_cpu_seconds": round(member.seconds["train_cpu"], 3),
        "test": test,
        "train": train_eval,
    }
    member.history.append(record)
    if member.run is not None:
        append_history(member.run, record)


def _finish(member: _Member, optimizer: torch.optim.Optimizer) -> None:
    """What ``train`` does after its last epoch: final checkpoint and model, or metadata."""
    member.model.eval()
    metadata = run_metadata(member.record, member.history)
    if member.run is not None:
        save_checkpoint(
            member.run, member.model, optimizer, member.history[-1]["epoch"], configs=member.record
        )
        save(member.model, member.run, metadata=metadata)
    else:
        attach_metadata(member.model, metadata)


def _step(
    stack: _Stack,
    active: list[_Member],
    parts: tuple[tuple[Tensor, Tensor], ...],
    logits_fn: Any,
    config: TrainConfig,
    device: torch.device,
    step: int,
) -> list[float]:
    """One optimiser step of every active seed on its own batch (padded to one width: causal
    attention and ignored targets leave the real positions as they were); their losses."""
    width = max(tokens.shape[1] for tokens, _ in parts)
    pad = [width - tokens.shape[1] for tokens, _ in parts]
    tokens = torch.stack([F.pad(t, (0, n)) for (t, _), n in zip(parts, pad, strict=True)])
    targets = torch.stack(
        [F.pad(y, (0, n), value=IGNORE) for (_, y), n in zip(parts, pad, strict=True)]
    )
    tokens, targets = tokens.to(device), targets.to(device)
    p = config.embedding_dropout
    if p > 0:
        shapes = [(*t.shape, stack.tensors["embed.weight"].shape[-1]) for t, _ in parts]
        masks = [
            _dropout_mask(m, shape, p, device) for m, shape in zip(active, shapes, strict=True)
        ]
        mask = torch.stack([F.pad(x, (0, 0, 0, n)) for x, n in zip(masks, pad, strict=True)])
        logits = vmap(logits_fn)(stack.tensors, tokens, mask)
    else:
        logits = vmap(partial(logits_fn, mask=None))(stack.tensors, tokens)
    losses = vmap(cot_loss)(logits, targets)
    stack.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # each slice's gradient is its own mean loss's
    values = losses.tolist()
    if all(math.isfinite(value) for value in values):
        if config.warmup_steps:
            set_learning_rate(stack.optimizer, config.learning_rate(step))
        stack.optimizer.step()
    return values


def _train_stacked(
    members: list[_Member], model_config: ModelConfig, config: TrainConfig, progress: bool
) -> None:
    device = torch.device(config.device)
    eps = Weights.of(members[0].model, model_config).eps
    per_epoch = steps_per_epoch(members[0].data.train, config.batch_size, config.batch_order)
    last = config.last_epoch(per_epoch)
    for m in members:
        if any(t.device != device for t in m.model.parameters()):
            m.model.to(device)
        _log(m, 0, per_epoch, None)
    stack = _Stack(members, config, device)
    active = list(members)
    logits_fn = partial(_member_logits, config=replace(model_config, seed=0), eps=eps)
    bar = tqdm(range(last), disable=not progress, desc="train seeds", unit="epoch")
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="There is a performance drop")  # CPU attention
        for epoch in bar:
            tick, cpu_tick = time.perf_counter(), time.process_time()
            streams = []
            for m in active:
                seed = (m.config.seed * SEED_STRIDE + epoch) % 2**63  # torch takes 64 bits
                m.rng = torch.Generator(device).manual_seed(seed).get_state()
                order = torch.Generator().manual_seed(seed)
                streams.append(
                    m.data.train.batches(
                        config.batch_size, order=config.batch_order, generator=order
                    )
                )
            totals, batches = [0.0] * len(active), 0
            for parts in zip(*streams, strict=True):
                step = epoch * per_epoch + batches
                values = _step(stack, active, parts, logits_fn, config, device, step)
                for m, value in zip(active, values, strict=True):
                    if not math.isfinite(value):
                        raise IterationHeadsError(
                            f"training diverged: seed {m.config.seed}, loss {value} at epoch "
                            f"{epoch + 1}, batch {batches + 1} (lr={config.lr}); no seed was "
                            "saved as final"
                        )
                totals = [t + v for t, v in zip(totals, values, strict=True)]
                batches += 1
            wall = (time.perf_counter() - tick) / len(active)
            cpu = (time.process_time() - cpu_tick) / len(active)
            done = epoch + 1
            evaluated = done % config.eval_every == 0 or done == last
            saving = bool(config.checkpoint_every) and done % config.checkpoint_every == 0
            stopped = []
            for i, m in enumerate(active):
                m.seconds["train"] += wall
                m.seconds["train_cpu"] += cpu
                if not evaluated and not (saving and m.run is not None):
                    continue
                optimizer = stack.export(m, i)  # its weights into its model, its optimiser
                if evaluated:
                    _log(m, done, per_epoch, round(totals[i] / max(batches, 1), 6))
                if saving and m.run is not None:
                    save_checkpoint(m.run, m.model, optimizer, done, configs=m.record)
                if (
                    config.stop_at_target
                    and evaluated
                    and at_target(m.history[-1]["test"]["summary"])
                ):
                    stopped.append(i)
                    _finish(m, optimizer)
            if stopped:  # these seeds' runs would stop here: they leave the stack
                kept = [i for i in range(len(active)) if i not in stopped]
                active = [active[i] for i in kept]
                if not active:
                    break
                stack.keep(kept)
            mean = sum(totals) / max(batches, 1) / len(totals)
            bar.set_postfix(loss=round(mean, 4), seeds=len(active))
    for i, m in enumerate(active):
        _finish(m, stack.export(m, i))
