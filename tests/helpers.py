"""Builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from iteration_heads import (
    DataConfig,
    ModelConfig,
    Probes,
    TokenLayout,
    TrainConfig,
    build_model,
    make_dataset,
    wrap_hf_model,
)
from iteration_heads.experiments import RunSpec
from iteration_heads.tasks import Dataset


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
    """The states of one input sequence, by a plain Python loop written from docs/paper.md §2."""
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


FIXTURES = Path(__file__).parent / "fixtures"
"""Files the tests load: a GPT-2 trained outside the library (make_fixtures.py)."""
IDENTITY = {v: v for v in range(11)}  # the library layout: symbol v is token v


def library_probes(n: int = 256, max_len: int = 8, **changes) -> Probes:
    """Polynomial probes in the library's vocabulary (task 15, EoI 11, EoS 12)."""
    options = {"task_token": 15, "eoi_token": 11, "eos_token": 12, "max_len": max_len, "n": n}
    options.update(changes)
    return Probes.from_task("polynomial", symbol_to_token=IDENTITY, **options)


def gpt2(
    n_layer: int = 2, n_head: int = 2, n_embd: int = 64, vocab: int = 16, n_ctx: int = 19, seed=0
):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab, n_positions=n_ctx
    )
    return wrap_hf_model(GPT2LMHeadModel(config))


def llama(n_layers: int = 2, n_heads: int = 2, d: int = 64, vocab: int = 16, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=d,
        intermediate_size=2 * d,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        vocab_size=vocab,
        max_position_embeddings=32,
    )
    return wrap_hf_model(LlamaForCausalLM(config))


def trained_gpt2():
    from transformers import GPT2LMHeadModel

    return wrap_hf_model(GPT2LMHeadModel.from_pretrained(FIXTURES / "gpt2_polynomial"))


def tiny_spec(seed: int = 0, epochs: int = 1) -> RunSpec:
    return RunSpec(
        DataConfig(task="polynomial", max_len=4, n_train=32, n_test=32, seed=seed),
        ModelConfig(d_model=16, max_len=4, seed=seed),
        TrainConfig(epochs=epochs, eval_every=1, threads=1, seed=seed),
    )
