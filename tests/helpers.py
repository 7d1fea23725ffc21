"""Builders shared by the tests."""

from __future__ import annotations

import torch

from iteration_heads import DataConfig, ModelConfig, TokenLayout, build_model, make_dataset
from iteration_heads.data import Dataset


def tiny_config(**changes) -> ModelConfig:
    """A small model config (fast to build and run)."""
    base = {"d_model": 32, "max_len": 6}
    base.update(changes)
    return ModelConfig(**base)


def tiny_model(**changes) -> torch.nn.Module:
    return build_model(tiny_config(**changes))


def tiny_data(task: str = "polynomial", **changes) -> Dataset:
    base = {"task": task, "max_len": 6, "n_train": 64, "n_test": 64}
    base.update(changes)
    return make_dataset(DataConfig(**base), TokenLayout.default())


def python_states(task_name: str, inputs: list[int]) -> list[int]:
    """The states of one input sequence, by a plain Python loop written from PAPER.md §2."""
    states = []
    for t, x in enumerate(inputs):
        if task_name == "copy":
            s = x
        elif task_name == "parity":
            s = x if t == 0 else states[-1] ^ x
        elif task_name == "polynomial":
            s = x if t == 0 else (states[-1] * x + 1) % 11
        else:
            raise ValueError(task_name)
        states.append(s)
    return states
