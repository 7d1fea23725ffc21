"""HuggingFace models as TransformerLens bridges, offline (no hub, no tokenizer).

:func:`wrap_hf_model` is the one place that calls TransformerLens's private
``build_bridge_from_module``; if a TransformerLens release moves it, only this module changes.
"""

from __future__ import annotations

from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads.errors import IterationHeadsError


def wrap_hf_model(
    model: torch.nn.Module, *, architecture: str | None = None, hf_config: Any = None
) -> TransformerBridge:
    """Wrap a HuggingFace causal LM (GPT-2, Llama, ...) as a ``TransformerBridge``.

    The bridge has the usual hook names (``blocks.{layer}.attn.hook_pattern``, ...), so
    :func:`~iteration_heads.detection.detector.detect` and every hook-based analysis work on it. Like
    TransformerLens, the bridge takes over ``model`` in place (its submodules are replaced by
    bridge components): wrap a model once, and use the bridge from then on.

    Args:
        model: A HuggingFace model, e.g. ``GPT2LMHeadModel`` or ``LlamaForCausalLM``.
        architecture: TransformerLens architecture name; default ``config.architectures[0]``,
            else the model's class name.
        hf_config: The model's HuggingFace config; default ``model.config``.

    Raises:
        IterationHeadsError: without a config, or for an architecture TransformerLens lacks.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> cfg = GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=16, n_positions=19)
        >>> bridge = wrap_hf_model(GPT2LMHeadModel(cfg))
        >>> bridge.cfg.n_layers, bridge.cfg.n_heads, "blocks.1.attn.hook_pattern" in bridge.hook_dict
        (2, 2, True)
    """
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    config = hf_config if hf_config is not None else getattr(model, "config", None)
    if config is None:
        raise IterationHeadsError(
            f"{type(model).__name__} has no .config; pass hf_config= (a HuggingFace config)"
        )
    if architecture is None:
        names = getattr(config, "architectures", None) or [type(model).__name__]
        architecture = names[0]
    try:
        return build_bridge_from_module(model, architecture, hf_config=config)
    except (ValueError, KeyError, NotImplementedError) as err:
        raise IterationHeadsError(
            f"TransformerLens cannot wrap architecture {architecture!r}: {err}"
        ) from err
