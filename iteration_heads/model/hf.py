"""HuggingFace models as TransformerLens bridges, offline (no hub): a model in memory, or a
checkpoint folder with its tokenizer.

:func:`wrap_hf_model` is the one place that calls TransformerLens's private
``build_bridge_from_module``; if a TransformerLens release moves it, only this module changes.
"""

from __future__ import annotations

import os
from pathlib import Path
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


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
"""Files whose presence marks a tokenizer saved with a HuggingFace checkpoint."""


def load_hf_folder(
    directory: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[TransformerBridge, Any]:
    """Load a HuggingFace checkpoint folder (``config.json``, the weights, and a tokenizer if
    saved with it) as a ``TransformerBridge``, offline.

    Returns:
        ``(bridge, tokenizer)``; the tokenizer is None when the folder holds none.

    Raises:
        IterationHeadsError: for a folder that does not exist, lacks ``config.json``, holds a
            config or weights transformers cannot read, or an architecture TransformerLens lacks.

    Example:
        >>> bridge, tokenizer = load_hf_folder("tests/fixtures/gpt2_text_polynomial")
        >>> bridge.cfg.n_layers, tokenizer.convert_ids_to_tokens([0, 3])
        (3, ['<s>', '='])
        >>> load_hf_folder("docs")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: 'docs' is not a HuggingFace checkpoint folder: it has no config.json
    """
    path = Path(directory)
    if not path.is_dir():
        raise IterationHeadsError(f"checkpoint folder {str(path)!r} does not exist")
    if not (path / "config.json").is_file():
        raise IterationHeadsError(
            f"{str(path)!r} is not a HuggingFace checkpoint folder: it has no config.json"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # no "loading weights" chatter in a command's output
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        tokenizer = None
        if any((path / name).is_file() for name in TOKENIZER_FILES):
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise IterationHeadsError(
            f"transformers cannot load {str(path)!r}: {str(err).splitlines()[0]}"
        ) from err
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    model.eval()
    model.to(device)  # type: ignore[arg-type]
    return wrap_hf_model(model), tokenizer
