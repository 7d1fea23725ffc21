"""The library's recipe: how the experiments, the shipped zoo, the demo and
``iteration-heads train`` build and train a model unless told otherwise.

Two heads per layer (each of width ``d_model / 2``, so as many weights as one head of full width),
Adam at 1e-3 with a linear warm-up over the first 200 optimiser steps, and the rest of
:class:`~iteration_heads.training.loop.TrainConfig`'s defaults (batch 256, shuffled batches,
embedding dropout 0.1). At d 64 / Lmax 8 it forms the iteration head on 9 of the 10 seeds of the
search that chose it, and on 10 of 10 seeds the search never used (101, 202, ..., 1000), first
at epochs 20 to 100, median 35 (examples/sweeps/out-of-sample.toml); the paper's settings (one
head per layer, Adam 3e-4, no warm-up) form it on 7 of 10 (docs/guide/training.md, "Which
ingredients matter").

The dataclass defaults of :class:`~iteration_heads.model.transformer.ModelConfig` and
:class:`~iteration_heads.training.loop.TrainConfig` stay the paper's model and optimiser, so a
config written by an earlier version, and every run cached under its hash, keeps its meaning.

Example:
    >>> model, train = recipe_model_config(d_model=64, max_len=8), recipe_train_config(epochs=100)
    >>> model.n_heads, model.d_head, train.lr, train.warmup_steps
    (2, 32, 0.001, 200)
"""

from __future__ import annotations

from typing import Any

from iteration_heads.model.transformer import ModelConfig
from iteration_heads.training.loop import TrainConfig

RECIPE_HEADS_PER_LAYER = 2
"""Attention heads per layer in the recipe (each ``d_model / 2`` wide)."""
RECIPE_LR = 1e-3
"""The recipe's Adam learning rate (the paper's: 3e-4)."""
RECIPE_WARMUP_STEPS = 200
"""Optimiser steps of the recipe's linear learning-rate warm-up (the paper's: none)."""


def recipe_model_config(**fields: Any) -> ModelConfig:
    """A :class:`~iteration_heads.model.transformer.ModelConfig` with the recipe's heads per
    layer; ``fields`` set the rest (and may override ``n_heads``).

    Example:
        >>> recipe_model_config(d_model=128, max_len=16).d_head
        64
        >>> recipe_model_config(n_heads=1).n_heads
        1
    """
    return ModelConfig(**{"n_heads": RECIPE_HEADS_PER_LAYER, **fields})


def recipe_train_config(**fields: Any) -> TrainConfig:
    """A :class:`~iteration_heads.training.loop.TrainConfig` with the recipe's learning rate and
    warm-up; ``fields`` set the rest (and may override either).

    Example:
        >>> config = recipe_train_config(epochs=100, seed=3)
        >>> config.lr, config.warmup_steps, config.seed, config.learning_rate(99)
        (0.001, 200, 3, 0.0005)
    """
    return TrainConfig(**{"lr": RECIPE_LR, "warmup_steps": RECIPE_WARMUP_STEPS, **fields})
