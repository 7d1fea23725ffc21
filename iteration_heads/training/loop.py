"""Training with the masked chain-of-thought loss, evaluation as it goes, checkpoints and resume
(the run directory's files: :mod:`iteration_heads.training.run_dir`).

Each epoch's shuffling and dropout draw from generators seeded by ``(seed, epoch)``, so a run
resumed from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bar: no ipywidgets needed in notebooks

from iteration_heads._io import strict_from_dict
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import attach_metadata, save
from iteration_heads.model.fast_forward import Weights, forward
from iteration_heads.model.transformer import check_device, model_config
from iteration_heads.tasks.data import IGNORE, BatchOrder, Dataset
from iteration_heads.tasks.ontology_data import OntologyDataset
from iteration_heads.tasks.task import check_bool, check_choice, check_int, check_number
from iteration_heads.training.evaluation import evaluation_records
from iteration_heads.training.metrics import reaches_accuracy
from iteration_heads.training.resume import checkpoints, save_checkpoint
from iteration_heads.training.run_dir import (
    append_history,
    at_target,
    check_run_folder,
    locked_run,
    prepare_run,
    run_metadata,
)

OPTIMIZERS = ("adam", "adamw", "sgd")  # adamw: Adam with decoupled weight decay


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults: the paper's optimiser (Adam 3e-4, batch 256, no weight decay)
    and the library's recipe (shuffled batches, embedding dropout 0.1: see docs/guide/training.md).

    Example:
        >>> TrainConfig(epochs=200).lr
        0.0003
    """

    epochs: int = 1000  # the paper trains 1000 epochs
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # one of OPTIMIZERS
    lr: float = 3e-4
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD only
    batch_size: int = 256
    batch_order: BatchOrder = "shuffled"  # "sorted": the authors' length-sorted, unshuffled order
    embedding_dropout: float = 0.1  # dropout on token + position embeddings (authors: 0.1)
    eval_every: int = 10  # epochs between evaluations (the paper: 10)
    checkpoint_every: int = 50  # epochs between checkpoints (0: only at the end)
    seed: int = 0  # seeds shuffling and dropout
    device: str = "cpu"
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    stop_at_target: bool = (
        False  # stop at the first evaluation where accuracy and head reach target
    )
    # Submodules to train, by name (e.g. ("blocks.1.mlp",): the second MLP only, as in the
    # paper's transfer experiment); None trains every parameter that requires grad.
    trainable: tuple[str, ...] | None = None
    # A budget in optimiser steps: the run ends after the epoch in which it reaches max_steps
    # (or at ``epochs``, whichever comes first), so runs over different lengths or batch sizes
    # get the same number of updates. None: ``epochs`` alone.
    max_steps: int | None = None
    # Linear warm-up of the learning rate over the first optimiser steps (0: none): step s uses
    # lr * min(1, (s + 1) / warmup_steps).
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        ints = {"epochs": 0, "batch_size": 1, "eval_every": 1, "checkpoint_every": 0, "seed": 0,
                "warmup_steps": 0}  # fmt: skip
        for name, minimum in ints.items():
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=minimum))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("batch_order", self.batch_order, ("shuffled", "sorted"))
        numbers = {
            "lr": check_number("lr", self.lr, minimum=0, open_min=True),
            "weight_decay": check_number("weight_decay", self.weight_decay, minimum=0),
            "momentum": check_number("momentum", self.momentum, minimum=0),
            "embedding_dropout": check_number(
                "embedding_dropout", self.embedding_dropout, minimum=0, maximum=1, open_max=True
            ),
        }
        for name, value in numbers.items():
            object.__setattr__(self, name, value)
        for name, most in (("threads", 1024), ("max_steps", None)):  # torch takes a C int
            if getattr(self, name) is not None:
                checked = check_int(name, getattr(self, name), minimum=1, maximum=most)
                object.__setattr__(self, name, checked)
        object.__setattr__(self, "device", str(check_device(self.device)))
        check_bool("stop_at_target", self.stop_at_target)
        if self.trainable is not None:
            if (
                isinstance(self.trainable, str)
                or not isinstance(self.trainable, (tuple, list))
                or not self.trainable
                or not all(isinstance(name, str) and name for name in self.trainable)
            ):
                raise IterationHeadsError(
                    f"trainable={self.trainable!r}: expected a non-empty tuple of submodule "
                    "names such as ('blocks.1.mlp',)"
                )
            object.__setattr__(self, "trainable", tuple(self.trainable))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; inverse of :meth:`from_dict`."""
        data = asdict(self)
        if self.trainable is not None:
            data["trainable"] = list(self.trainable)
        if self.max_steps is None:  # configs (and run cache keys) from before the step budget
            del data["max_steps"]
        if not self.warmup_steps:  # ... and before the warm-up
            del data["warmup_steps"]
        return data

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based): ``lr`` after the warm-up.

        Example:
            >>> config = TrainConfig(lr=1e-3, warmup_steps=4)
            >>> [config.learning_rate(s) for s in (0, 1, 3, 10)]
            [0.00025, 0.0005, 0.001, 0.001]
        """
        if not self.warmup_steps:
            return self.lr
        return self.lr * min(1.0, (step + 1) / self.warmup_steps)

    def last_epoch(self, steps_per_epoch: int) -> int:
        """The epoch a run ends at: ``epochs``, or earlier when ``max_steps`` is reached.

        Example:
            >>> TrainConfig(epochs=1000, max_steps=100).last_epoch(steps_per_epoch=32)
            4
        """
        if self.max_steps is None:
            return self.epochs
        return min(self.epochs, math.ceil(self.max_steps / max(steps_per_epoch, 1)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config saved with :meth:`to_dict`; unknown keys are an error."""
        return strict_from_dict(cls, data)


def cot_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the scored positions (targets != -100).

    Example:
        >>> logits = torch.zeros(1, 3, 4)
        >>> round(float(cot_loss(logits, torch.tensor([[-100, 2, 3]]))), 4)  # log 4
        1.3863
    """
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def train(
    model: torch.nn.Module,
    data: Dataset | OntologyDataset,
    config: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``data`` with the masked CoT loss; returns the evaluation history.

    Args:
        model: A model from :func:`~iteration_heads.build_model` or :func:`~iteration_heads.model.checkpoint.load`.
        data: Train and test splits (:func:`~iteration_heads.make_dataset`).
        config: Optimiser, epochs, batch order, dropout, evaluation and checkpoint frequency.
        out_dir: Run directory (configs, history, checkpoints, final model). None: keep nothing.
        resume: Continue from the last checkpoint in ``out_dir`` (configs must match, except
            ``epochs``); history after that checkpoint is recomputed identically.
        progress: Show a tqdm bar with the loss and test accuracy.
        callback: Called with every history record as it is written.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> data = make_dataset(DataConfig(task="copy", max_len=4, n_train=64, n_test=64))
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> history = train(model, data, TrainConfig(epochs=2, eval_every=1), progress=False)
        >>> [record["epoch"] for record in history]
        [0, 1, 2]
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise IterationHeadsError(f"config must be a TrainConfig, got {type(config).__name__}")
    mconfig = model_config(model)
    if isinstance(data, OntologyDataset):
        if data.d_vocab != mconfig.d_vocab or data.width > mconfig.n_ctx:
            raise IterationHeadsError(
                f"ontology data needs d_vocab={data.d_vocab} and n_ctx >= {data.width}; the "
                f"model has d_vocab={mconfig.d_vocab}, n_ctx={mconfig.n_ctx} (set d_vocab_ "
                "and n_ctx_ in its ModelConfig)"
            )
    elif not isinstance(data, Dataset):
        raise IterationHeadsError(
            "data must be a Dataset (make_dataset(DataConfig(...))) or an OntologyDataset, "
            f"got {type(data).__name__}"
        )
    elif data.layout != mconfig.layout:
        raise IterationHeadsError(
            f"data layout {data.layout.to_dict()} differs from the model's {mconfig.layout.to_dict()}"
        )
    elif data.train.tokens.shape[1] > mconfig.n_ctx:
        raise IterationHeadsError(
            f"max_len={data.config.max_len} needs {data.train.tokens.shape[1]} positions, "
            f"the model's n_ctx is {mconfig.n_ctx} (max_len={mconfig.max_len})"
        )
    if out_dir is None:
        return _train(model, data, config, mconfig, None, resume, progress, callback)
    run = Path(out_dir)
    check_run_folder(run, resume)  # before the folder or its lock exist
    with locked_run(run):
        return _train(model, data, config, mconfig, run, resume, progress, callback)


def _train(
    model: torch.nn.Module,
    data: Dataset | OntologyDataset,
    config: TrainConfig,
    mconfig: Any,
    run: Path | None,
    resume: bool,
    progress: bool,
    callback: Callable[[dict[str, Any]], None] | None,
) -> list[dict[str, Any]]:
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    if any(p.device != device for p in model.parameters()):
        model.to(device)
    params = trainable_parameters(model, config.trainable)
    optimizer = make_optimizer(params, config)
    record_base = {
        "model": mconfig.to_dict(),
        "data": data.config.to_dict(),
        "train": config.to_dict(),
    }
    start_epoch = 0
    history: list[dict[str, Any]] = []
    if run is not None:
        start_epoch, history = prepare_run(run, model, optimizer, record_base, resume)

    weights = Weights.of(model, mconfig)
    was_training = model.training
    chosen = {id(p) for p in params}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    seconds = {"train": 0.0, "eval": 0.0, "train_cpu": 0.0}
    if history:
        seconds = {k: history[-1].get(f"{k}_seconds", 0.0) for k in seconds}
    per_epoch = steps_per_epoch(data.train, config.batch_size, config.batch_order)
    last = config.last_epoch(per_epoch)
    bar = tqdm(range(start_epoch, last), disable=not progress, desc="train", unit="epoch")

    def log(epoch: int, train_loss: float | None) -> None:
        tick = time.perf_counter()
        test, train_eval = evaluation_records(model, data)
        seconds["eval"] += time.perf_counter() - tick
        record = {
            "epoch": epoch,
            "step": epoch * per_epoch,
            "train_loss": train_loss,
            "train_seconds": round(seconds["train"], 3),
            "eval_seconds": round(seconds["eval"], 3),
            "train_cpu_seconds": round(seconds["train_cpu"], 3),  # CPU time of all threads
            "test": test,
            "train": train_eval,
        }
        history.append(record)
        if run is not None:
            append_history(run, record)
        if callback is not None:
            callback(record)
        bar.set_postfix(loss=train_loss, acc=round(test["summary"]["accuracy"], 3))

    try:  # an interrupt anywhere (even while freezing) restores gradients and mode
        for p in frozen:  # no gradient for what is not trained; restored below
            p.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            if not history:
                log(0, None)
            train_loss = None
            for epoch in bar:
                tick, cpu_tick = time.perf_counter(), time.process_time()
                model.train()
                seed = (config.seed * 1_000_003 + epoch) % 2**63  # torch takes 64 bits
                torch.manual_seed(seed)  # dropout of this epoch
                order = torch.Generator().manual_seed(seed)
                total, batches = 0.0, 0
                for tokens, targets in data.train.batches(
                    config.batch_size, order=config.batch_order, generator=order
                ):
                    logits, _ = forward(
                        weights, tokens.to(device), embedding_dropout=config.embedding_dropout
                    )
                    loss = cot_loss(logits, targets.to(device))
                    value = loss.item()
                    if not math.isfinite(value):
                        raise _diverged(value, epoch + 1, batches + 1, config, run)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.warmup_steps:
                        set_learning_rate(
                            optimizer, config.learning_rate(epoch * per_epoch + batches)
                        )
                    optimizer.step()
                    total += value
                    batches += 1
                model.eval()
                seconds["train"] += time.perf_counter() - tick
                seconds["train_cpu"] += time.process_time() - cpu_tick
                train_loss = round(total / max(batches, 1), 6)
                done = epoch + 1
                if done % config.eval_every == 0 or done == last:
                    log(done, train_loss)
                if (
                    run is not None
                    and config.checkpoint_every
                    and done % config.checkpoint_every == 0
                ):
                    save_checkpoint(run, model, optimizer, done, configs=record_base)
                reached = reaches_accuracy if isinstance(data, OntologyDataset) else at_target
                if (
                    config.stop_at_target
                    and history[-1]["epoch"] == done
                    and reached(history[-1]["test"]["summary"])
                ):
                    break
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    metadata = run_metadata(record_base, history)
    if run is not None:
        save_checkpoint(run, model, optimizer, history[-1]["epoch"], configs=record_base)
        save(model, run, metadata=metadata)
    else:  # detect(model) and friends probe the task it was just trained on
        attach_metadata(model, metadata)
    return history


def steps_per_epoch(split: Any, batch_size: int, order: BatchOrder = "shuffled") -> int:
    """Optimiser steps in one epoch over ``split`` (the batches of ``split.batches``).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset
        >>> data = make_dataset(DataConfig(task="copy", max_len=4, n_train=64, n_test=8))
        >>> steps_per_epoch(data.train, 100), steps_per_epoch(data.train, 100, "sorted")
        (3, 4)
    """
    lengths = getattr(split, "lengths", None)
    if order == "sorted" and lengths is not None:
        counts = torch.unique(lengths, return_counts=True)[1]
        return int(sum(math.ceil(int(c) / batch_size) for c in counts))
    return math.ceil(len(split) / batch_size)


def _diverged(
    loss: float, epoch: int, batch: int, config: TrainConfig, run: Path | None
) -> IterationHeadsError:
    """The error of a run whose loss stopped being finite."""
    kept = ""
    if run is not None:
        found = checkpoints(run)
        kept = f"; {str(run)!r} keeps its checkpoint of epoch {found[0][0]}" if found else ""
    return IterationHeadsError(
        f"training diverged: loss {loss} at epoch {epoch}, batch {batch} (lr={config.lr}); "
        f"nothing was saved as final{kept}"
    )


def trainable_parameters(
    model: torch.nn.Module, trainable: tuple[str, ...] | None = None
) -> list[torch.nn.Parameter]:
    """The parameters that training updates: those of the named submodules (every parameter
    that requires grad when ``trainable`` is None).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=64, max_len=8))
        >>> sum(p.numel() for p in trainable_parameters(model, ("blocks.1.mlp",)))
        33088
        >>> trainable_parameters(model, ("blocks.7.mlp",))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: trainable submodule 'blocks.7.mlp' not found; expected names such as 'blocks.1.mlp', 'blocks.0.attn', 'embed', 'pos_embed', 'unembed'
    """
    if trainable is None:
        return [p for p in model.parameters() if p.requires_grad]
    chosen: dict[int, torch.nn.Parameter] = {}
    for name in trainable:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise IterationHeadsError(
                f"trainable submodule {name!r} not found; expected names such as "
                "'blocks.1.mlp', 'blocks.0.attn', 'embed', 'pos_embed', 'unembed'"
            ) from None
        for p in module.parameters():
            if p.requires_grad:
                chosen[id(p)] = p
    if not chosen:
        raise IterationHeadsError(f"trainable={trainable!r} selects no trainable parameter")
    return [p for p in model.parameters() if id(p) in chosen]


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer``.

    Example:
        >>> optimizer = make_optimizer([torch.zeros(1, requires_grad=True)], TrainConfig())
        >>> set_learning_rate(optimizer, 0.5); optimizer.param_groups[0]["lr"]
        0.5
    """
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_optimizer(params: Sequence[torch.Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``config`` (Adam, AdamW or SGD, its learning rate, momentum and weight
    decay) over ``params``. Adam and SGD add the weight decay to the gradient (L2); AdamW decays
    the weights themselves, outside the adaptive step.

    Example:
        >>> make_optimizer([torch.zeros(2, requires_grad=True)], TrainConfig(lr=0.1))
        Adam (...)
        >>> make_optimizer([torch.zeros(2, requires_grad=True)], TrainConfig(optimizer="adamw"))
        AdamW (...)
    """
    adaptive = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(config.optimizer)
    if adaptive is not None:
        return adaptive(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
