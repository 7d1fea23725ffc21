"""HuggingFace models as TransformerLens bridges, offline (no hub): a model in memory, or a
checkpoint folder with its tokenizer.

:func:`wrap_hf_model` is the one place that calls TransformerLens's private
``build_bridge_from_module``; if a TransformerLens release moves it, only this module changes.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads._io import WEIGHTS_FILE
from iteration_heads._torch import without_gradients
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

SUPPORTED_MODEL_TYPES = (
    "gemma", "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "qwen2", "qwen3",
)  # fmt: skip
"""``model_type`` values of the causal decoder-only architectures an audit reads: each builds a
TransformerLens bridge with attention hooks (``blocks.{layer}.attn.hook_pattern``)."""

INDEX_FILE = "model.safetensors.index.json"

SIZE_FIELDS = (
    "n_layer", "n_head", "n_embd", "n_inner", "n_positions", "n_ctx", "vocab_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size",
    "intermediate_size", "max_position_embeddings", "head_dim", "rotary_dim",
)  # fmt: skip
"""``config.json`` fields that are sizes: where present (and not null), an integer >= 1."""

LOGIT_TOLERANCE = 1e-3
"""The bridge must reproduce transformers' own logits within this fraction of their largest
magnitude (at least 1): beyond it, TransformerLens does not run the model the checkpoint
describes (a config field it does not support), and no audit of the bridge would be about it."""

UNCOMMON_FIELDS = (
    "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn",
    "attn_logit_softcapping", "final_logit_softcapping", "rope_scaling", "sliding_window",
    "use_parallel_residual", "rotary_pct", "partial_rotary_factor", "query_pre_attn_scalar",
)  # fmt: skip
"""Config fields away from their defaults that a logit mismatch names as likely causes."""

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
"""safetensors dtypes of usable weights: a checkpoint holding other tensors (integers, booleans)
is refused rather than silently cast."""


def _first_line(err: BaseException) -> str:
    """An exception's message on one line (at most 300 characters)."""
    text = " ".join(str(err).split())
    if not text:
        return type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def read_hf_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of a HuggingFace checkpoint folder, checked: a JSON object whose
    ``model_type`` is one of :data:`SUPPORTED_MODEL_TYPES`.

    Raises:
        IterationHeadsError: for a file that is not a JSON object, or another ``model_type``.

    Example:
        >>> read_hf_config("tests/fixtures/gpt2_polynomial")["n_layer"]
        2
    """
    file = Path(directory) / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise IterationHeadsError(
            f"{str(file)!r} is not readable JSON: {_first_line(err)}"
        ) from None
    if not isinstance(config, dict):
        raise IterationHeadsError(
            f"{str(file)!r} holds a JSON {type(config).__name__}: expected an object"
        )
    kind = config.get("model_type")
    if kind not in SUPPORTED_MODEL_TYPES:
        raise IterationHeadsError(
            f"{str(file)!r}: model_type {kind!r} is not supported: expected one of "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (causal decoder-only models with attention hooks)"
        )
    for field in SIZE_FIELDS:
        value = config.get(field)
        if value is not None and (type(value) is not int or value < 1):
            raise IterationHeadsError(f"{str(file)!r}: {field} {value!r}, expected an integer >= 1")
    return config


def weight_shapes(
    directory: str | os.PathLike[str], dtypes: dict[str, str] | None = None
) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a checkpoint folder's safetensors weights (``model.safetensors``,
    or the shards its ``model.safetensors.index.json`` lists), read from the file headers only;
    an index must match its shards' headers exactly. ``dtypes``: filled with each tensor's
    safetensors dtype (``"F32"``, ``"I64"``, ...).

    Raises:
        IterationHeadsError: for missing, empty, truncated or unreadable weights.

    Example:
        >>> weight_shapes("tests/fixtures/gpt2_polynomial")["transformer.wpe.weight"]
        (19, 64)
    """
    from safetensors import safe_open

    path = Path(directory)
    index: dict[str, str] | None = None
    if (path / WEIGHTS_FILE).is_file():
        files = [path / WEIGHTS_FILE]
    elif (path / INDEX_FILE).is_file():
        try:
            index = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))["weight_map"]
            if not isinstance(index, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in index.items()
            ):
                raise TypeError
            files = [path / name for name in sorted(set(index.values()))]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise IterationHeadsError(
                f"{str(path / INDEX_FILE)!r} is not a safetensors index (a JSON object with a "
                "weight_map of tensor names to files)"
            ) from None
        bad = [n for n in sorted(set(index.values())) if (path / n).parent != path or n == ".."]
        if bad or not files:
            raise IterationHeadsError(
                f"{str(path / INDEX_FILE)!r} names shard {bad[0] if bad else None!r}: expected "
                "file names inside the folder"
            )
    else:
        raise IterationHeadsError(
            f"{str(path)!r} holds no {WEIGHTS_FILE}: expected safetensors weights "
            "(model.save_pretrained(folder) writes them)"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(file, "pt") as weights:
                held = list(weights.keys())
                for key in held:
                    shapes[key] = tuple(weights.get_slice(key).get_shape())
                    if dtypes is not None:
                        dtypes[key] = str(weights.get_slice(key).get_dtype())
        except Exception as err:  # safetensors raises its own error types, and OSError
            raise IterationHeadsError(
                f"{str(file)!r} is not a readable safetensors file (empty, truncated or "
                f"corrupt?): {_first_line(err)}"
            ) from None
        if index is not None:
            check_shard(index, file.name, held)
    if not shapes:
        raise IterationHeadsError(f"{str(files[0])!r} holds no tensors")
    return shapes


def check_shard(index: dict[str, str], name: str, held: list[str]) -> None:
    """Refuse a shard whose tensors are not exactly those a safetensors index's ``weight_map``
    assigns to it (``index``: tensor name -> shard file name).

    Example:
        >>> check_shard({"a": "one.safetensors", "b": "two.safetensors"}, "one.safetensors", ["a"])
        >>> check_shard({"a": "one.safetensors"}, "one.safetensors", ["a", "b"])
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: model.safetensors.index.json does not match shard 'one.safetensors': tensor 'b' is in the shard but the index lists it in no shard
    """
    for key in sorted(held):
        if index.get(key) != name:
            where = "no shard" if key not in index else f"shard {index[key]!r}"
            raise IterationHeadsError(
                f"{INDEX_FILE} does not match shard {name!r}: tensor {key!r} is in the shard but "
                f"the index lists it in {where}"
            )
    listed = sorted(k for k, v in index.items() if v == name and k not in set(held))
    if listed:
        raise IterationHeadsError(
            f"{INDEX_FILE} does not match shard {name!r}: the index lists tensor {listed[0]!r} "
            f"in it ({len(listed)} in all), which the shard does not hold"
        )


def check_weights(
    model: torch.nn.Module,
    shapes: dict[str, tuple[int, ...]],
    where: str,
    dtypes: dict[str, str] | None = None,
) -> None:
    """Refuse weights that do not fit ``model`` (built from the folder's config, e.g. on the meta
    device): the first missing, unexpected or shape-mismatched tensor, by name, or (``dtypes``:
    safetensors dtype per tensor) one the model reads that is not floating-point
    (:data:`FLOAT_DTYPES`), which loading would silently cast.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=8))
        >>> shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        >>> check_weights(model, shapes, "here")
        >>> check_weights(model, {**shapes, "transformer.wte.weight": (9, 8)}, "here")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: here: tensor 'transformer.wte.weight' has shape [9, 8] in the weights, but config.json makes it [8, 8]
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    aliases = set(dict(model.named_parameters(remove_duplicate=False))) - set(
        dict(model.named_parameters())
    )  # tied weights (an output embedding shared with the input's): saved once
    ignore_unexpected = getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []
    ignore_missing = getattr(model, "_keys_to_ignore_on_load_missing", None) or []
    missing = [
        k for k in expected
        if k not in shapes and k not in aliases and not any(re.search(p, k) for p in ignore_missing)
    ]  # fmt: skip
    if missing:
        raise IterationHeadsError(
            f"{where}: the weights lack tensor {missing[0]!r} ({len(missing)} missing in all), "
            "which config.json asks for: config.json and the weights disagree"
        )
    unexpected = [
        k for k in shapes
        if k not in expected and not any(re.search(p, k) for p in ignore_unexpected)
    ]  # fmt: skip
    if unexpected:
        raise IterationHeadsError(
            f"{where}: the weights hold tensor {unexpected[0]!r} ({len(unexpected)} unexpected in "
            "all), which a model built from config.json lacks: config.json and the weights disagree"
        )
    for key, shape in shapes.items():
        if key in expected and shape != expected[key]:
            raise IterationHeadsError(
                f"{where}: tensor {key!r} has shape {list(shape)} in the weights, but config.json "
                f"makes it {list(expected[key])}"
            )
    for key, dtype in sorted((dtypes or {}).items()):
        if key in expected and dtype not in FLOAT_DTYPES:
            raise IterationHeadsError(
                f"{where}: tensor {key!r} holds {dtype} values: expected floating-point weights "
                f"({', '.join(FLOAT_DTYPES)})"
            )


def check_finite(model: torch.nn.Module, where: str) -> None:
    """Refuse a model with NaN or infinite weights, naming the first such tensor.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> check_finite(layer, "here")
        >>> with without_gradients():
        ...     layer.bias[0] = float("nan")
        >>> check_finite(layer, "here")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: here: tensor 'bias' holds 1 NaN or infinite value(s): the weights are not usable
    """
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise IterationHeadsError(
                f"{where}: tensor {name!r} holds {bad} NaN or infinite value(s): the weights are "
                "not usable"
            )


def check_same_logits(mine: torch.Tensor, theirs: torch.Tensor, config: Any, where: str) -> None:
    """Refuse a bridge whose logits (``mine``) differ from transformers' own (``theirs``) by more
    than :data:`LOGIT_TOLERANCE` of their largest magnitude, naming config fields that commonly
    cause it (those of :data:`UNCOMMON_FIELDS` away from their defaults).

    Example:
        >>> from transformers import GPT2Config
        >>> check_same_logits(torch.ones(1, 2, 3), torch.ones(1, 2, 3), GPT2Config(), "here")
        >>> check_same_logits(torch.zeros(1, 2, 3), torch.ones(1, 2, 3), GPT2Config(), "here")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: here: TransformerLens does not reproduce this model: max logit difference 1 against transformers' own (tolerance 0.001); config fields it may not support: none known
    """
    gap = float((mine - theirs).abs().max()) if mine.shape == theirs.shape else float("inf")
    allowed = LOGIT_TOLERANCE * max(1.0, float(theirs.abs().max()))
    if not gap <= allowed:
        defaults = type(config)()
        odd = [
            f"{f}={getattr(config, f)!r}"
            for f in UNCOMMON_FIELDS
            if hasattr(config, f) and getattr(config, f) != getattr(defaults, f, None)
        ]
        raise IterationHeadsError(
            f"{where}: TransformerLens does not reproduce this model: max logit difference "
            f"{gap:.3g} against transformers' own (tolerance {allowed:.3g}); config fields it may "
            f"not support: {', '.join(odd) or 'none known'}"
        )


def load_hf_folder(
    directory: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[TransformerBridge, Any]:
    """Load a HuggingFace checkpoint folder (``config.json``, safetensors weights, and a
    tokenizer if saved with it) as a ``TransformerBridge``, offline and strictly.

    Strict as :func:`~iteration_heads.model.checkpoint.load` is for the library's own models:
    ``config.json`` must name a supported ``model_type`` (:data:`SUPPORTED_MODEL_TYPES`); every
    tensor of the model it describes must be in the weights with its shape, and no other tensor
    (nothing is left randomly initialised or dropped); every weight must be finite.

    Returns:
        ``(bridge, tokenizer)``; the tokenizer is None when the folder holds none.

    Raises:
        IterationHeadsError: one line, naming the folder and the field or tensor at fault.

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
    with warnings.catch_warnings():  # one line on stderr: torch's and transformers' warnings off
        warnings.simplefilter("ignore")
        return _load_hf_folder(path, device)


def _load_hf_folder(path: Path, device: str | torch.device) -> tuple[TransformerBridge, Any]:
    """:func:`load_hf_folder` on an existing folder, warnings already silenced."""
    if not (path / "config.json").is_file():
        raise IterationHeadsError(
            f"{str(path)!r} is not a HuggingFace checkpoint folder: it has no config.json"
        )
    read_hf_config(path)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where = repr(str(path))
    dtypes: dict[str, str] = {}
    shapes = weight_shapes(path, dtypes)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # no "loading weights" chatter in a command's output
    hf_logging.disable_progress_bar()
    try:
        step = "config.json"
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        step = "building the model config.json describes"
        with torch.device("meta"):  # shapes only: nothing allocated
            skeleton = AutoModelForCausalLM.from_config(config)
        check_weights(skeleton, shapes, where, dtypes)
        step = "loading the weights"
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, output_loading_info=True
        )
        model: Any = loaded[0]
        info: dict[str, Any] = loaded[1]
        left = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)]
        if left:
            raise IterationHeadsError(
                f"{where}: transformers reports {left[0].replace('_', ' ')} "
                f"{sorted(map(str, info[left[0]]))[:3]}: config.json and the weights disagree"
            )
        check_finite(model, where)
        step = "the tokenizer"
        tokenizer = None
        if any((path / name).is_file() for name in TOKENIZER_FILES):
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        step = "a forward pass"
        model.eval()
        model.to(device)
        width = min(8, int(getattr(config, "n_positions", None) or 8))
        tokens = (torch.arange(width, device=device) * 7 % int(config.vocab_size))[None]
        with without_gradients():
            theirs = model(tokens).logits.float()
        step = "wrapping the model"
        bridge = wrap_hf_model(model, architecture=type(model).__name__)
        if "blocks.0.attn.hook_pattern" not in bridge.hook_dict:
            raise IterationHeadsError(f"{where}: the model has no attention hooks to read")
        step = "a forward pass of the bridge"
        with without_gradients():
            mine = bridge(tokens).float()
        check_same_logits(mine, theirs, config, where)
    except IterationHeadsError:
        raise
    except Exception as err:  # transformers raises many types for a bad config or file
        raise IterationHeadsError(
            f"transformers cannot load {where} ({step}): {_first_line(err)}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    return bridge, tokenizer
