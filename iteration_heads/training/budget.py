"""Memory budget of a training run: what the dataset, the model and its optimiser state, and the
largest forward pass (an evaluation, or a training step) need, checked before anything is
allocated, so that a run too large for the machine stops with one line instead of exhausting it.

The figures are estimates (float32 weights and activations, int64 tokens), meant to refuse runs
that cannot fit, not to account for every byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import available_memory
from iteration_heads.model.transformer import ModelConfig, check_device
from iteration_heads.tasks.data import DataConfig, dataset_bytes
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.training.loop import TrainConfig

EVAL_BATCH = 1024
"""Sequences per forward pass of :func:`~iteration_heads.training.evaluation.evaluate` in training."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs, by part.

    Attributes:
        dataset: Train and test splits (:func:`~iteration_heads.tasks.data.dataset_bytes`).
        model: Weights, their gradients and the optimiser's state.
        evaluation: Peak of one evaluation pass: with chain of thought it keeps every layer's
            attention pattern ``[batch, head, pos, pos]``.
        training: Activations one training step keeps for the backward pass.
        device: Where the model and its passes live.

    Example:
        >>> MemoryEstimate(dataset=10**9, model=10**6, evaluation=4 * 10**9, training=10**8).total
        5001000000
    """

    dataset: int
    model: int
    evaluation: int
    training: int
    device: str = "cpu"

    @property
    def total(self) -> int:
        """The peak: dataset and model, and the larger of the two passes (never at once)."""
        return self.dataset + self.on_device

    @property
    def on_device(self) -> int:
        """What lives on the model's device: the model and the larger pass."""
        return self.model + max(self.evaluation, self.training)

    def describe(self) -> str:
        """The parts in one line.

        Example:
            >>> MemoryEstimate(4 * 10**9, 10**6, 16 * 10**9, 10**8).describe()
            'dataset 4.0 GB, model 1.0 MB, evaluation pass 16.0 GB, training step 100.0 MB'
        """
        parts = {
            "dataset": self.dataset,
            "model": self.model,
            "evaluation pass": self.evaluation,
            "training step": self.training,
        }
        return ", ".join(f"{name} {_size(value)}" for name, value in parts.items())


def memory_estimate(
    data: DataConfig, model: ModelConfig, train: TrainConfig | None = None
) -> MemoryEstimate:
    """What training ``model`` on ``data`` with ``train`` needs, by part (see :class:`MemoryEstimate`).

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig
        >>> small = memory_estimate(DataConfig(max_len=8), ModelConfig(d_model=64, max_len=8))
        >>> small.describe()
        'dataset 7.7 MB, model 1.7 MB, evaluation pass 89.3 MB, training step 60.7 MB'
        >>> big = memory_estimate(DataConfig(max_len=1000, n_train=64, n_test=64),
        ...                       ModelConfig(max_len=1000))
        >>> big.describe()
        'dataset 6.2 GB, model 10.5 MB, evaluation pass 82.9 GB, training step 12.7 GB'
    """
    train = TrainConfig() if train is None else train
    for name, value, kind in (
        ("data", data, DataConfig),
        ("model", model, ModelConfig),
        ("train", train, TrainConfig),
    ):
        if not isinstance(value, kind):
            raise IterationHeadsError(
                f"{name} must be a {kind.__name__}, got {type(value).__name__}"
            )
    width = TokenLayout.seq_len(max(data.max_len, 1), cot=data.cot)
    lengths = data.max_len - data.min_len + 1
    d, heads, mlp, vocab = model.d_model, model.n_heads * model.d_head, model.d_mlp, model.d_vocab
    # weights, gradients and the optimiser's state (Adam: two moments; SGD: momentum or none)
    copies = 4 if train.optimizer == "adam" else (3 if train.momentum else 2)
    weights = 4 * model.n_weights * copies
    # evaluation: residual, q/k/v/z, MLP hidden and logits of one batch, and with CoT every
    # layer's pattern kept, plus the scores and masked scores of the layer being computed
    b = min(EVAL_BATCH, data.n_test * lengths)
    activations = b * width * (4 * d + 4 * heads + 2 * mlp + 3 * vocab)
    patterns = (model.n_layers + 2) * b * model.n_heads * width * width if data.cot else 0
    evaluation = 4 * (activations + patterns)
    # a training step keeps each layer's inputs, q/k/v, z and MLP hidden for the backward pass
    b = min(train.batch_size, data.n_train * lengths)
    per_layer = 6 * d + 6 * heads + 3 * mlp
    training = 4 * b * width * (model.n_layers * per_layer + 3 * vocab)
    return MemoryEstimate(dataset_bytes(data), weights, evaluation, training, train.device)


def check_memory(
    data: DataConfig,
    model: ModelConfig,
    train: TrainConfig | None = None,
    *,
    available: int | None = None,
) -> MemoryEstimate:
    """The :func:`memory_estimate` of a run, or an error naming the figures when it cannot fit:
    in ``available`` bytes (default: what this machine has free), and for a CUDA model also in
    the free memory of its GPU. Call it before building the model or the dataset.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig
        >>> _ = check_memory(DataConfig(max_len=8), ModelConfig(max_len=8))  # fits
        >>> check_memory(DataConfig(max_len=1000, n_train=64, n_test=64), ModelConfig(max_len=1000),
        ...              available=23 * 10**9)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: max_len=1000, d_model=128, n_layers=2 needs about 89.1 GB (dataset 6.2 GB, model 10.5 MB, evaluation pass 82.9 GB, training step 12.7 GB); this machine has 23.0 GB available
    """
    estimate = memory_estimate(data, model, train)
    device = check_device(estimate.device)
    have = available_memory() if available is None else available
    host = estimate.total if device.type == "cpu" else estimate.dataset
    if have is not None and host > have:
        raise IterationHeadsError(
            f"{_run(data, model)} needs about {_size(host)} ({estimate.describe()}); "
            f"this machine has {_size(have)} available"
        )
    if device.type == "cuda" and available is None:
        free, _ = torch.cuda.mem_get_info(device)
        if estimate.on_device > free:
            raise IterationHeadsError(
                f"{_run(data, model)} needs about {_size(estimate.on_device)} on {device} "
                f"({estimate.describe()}); {device} has {_size(free)} free"
            )
    return estimate


def _run(data: DataConfig, model: ModelConfig) -> str:
    return f"max_len={data.max_len}, d_model={model.d_model}, n_layers={model.n_layers}"


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 10**9 else f"{n / 1e6:.1f} MB"
