"""Export a library model as a HuggingFace checkpoint folder: a ``GPT2LMHeadModel`` (config.json
+ model.safetensors), a word-level tokenizer over the model's token names, and a README.md with
the ``iteration-heads audit`` command for the folder.

The library's pre-LN block is GPT-2's block: learned (or frozen) positions are ``wpe``, LayerNorm
is ``ln_1``/``ln_2``/``ln_f`` (``LNPre``: weight 1, bias 0), the query/key/value projections are
``c_attn`` (GPT-2's ``Conv1D`` holds the transposed weight), the unembedding is an untied
``lm_head``; a model without biases gets zero biases. What GPT-2 cannot express exactly is refused
in one line naming the field: the renormalised block, RMS or no normalisation, a head width other
than ``d_model // n_heads``, a non-zero unembedding bias. The export checks its own logits against
the library model's (float64: exact; float32: to 1e-5) before anything lands in the folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from iteration_heads._io import versions, write_error, write_json, write_text
from iteration_heads._torch import without_gradients
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import load, model_metadata
from iteration_heads.model.fast_forward import Weights, forward
from iteration_heads.model.transformer import ModelConfig, model_config
from iteration_heads.tasks.task import get_task

EXPORT_INFO_FILE = "iteration_heads.json"
"""What an exported folder records about its origin: task, layout, token names, audit options."""

EXPORT_FORMAT_VERSION = 1
TOLERANCE = 1e-5
"""The exported model's float32 logits match the library model's to ``atol = rtol = 1e-5``
(``torch.allclose``): the library model's own float32 rounding is of that order; in float64 the
two agree to 1e-12."""


def check_exportable(config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    """Refuse, in one line naming the field, a model GPT-2 cannot express exactly.

    Example:
        >>> from iteration_heads.model.transformer import build_model
        >>> config = ModelConfig(d_model=16, max_len=2, residual="renormalised")
        >>> check_exportable(config, build_model(config).state_dict())
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: residual='renormalised' does not map onto a HuggingFace architecture (GPT-2's block is pre-LN: x + attn(ln_1(x)), the skip path is not renormalised); export needs residual='pre-LN'
    """
    if config.residual != "pre-LN":
        raise IterationHeadsError(
            f"residual={config.residual!r} does not map onto a HuggingFace architecture (GPT-2's "
            "block is pre-LN: x + attn(ln_1(x)), the skip path is not renormalised); export "
            "needs residual='pre-LN'"
        )
    if config.normalization not in ("LN", "LNPre"):
        raise IterationHeadsError(
            f"normalization={config.normalization!r} does not map onto GPT-2, whose blocks have "
            "LayerNorm (the RMSNorm architectures, such as Llama, use rotary positions, not "
            "learned ones); export needs normalization='LN' or 'LNPre'"
        )
    if config.d_head * config.n_heads != config.d_model:
        raise IterationHeadsError(
            f"d_head_={config.d_head_} with n_heads={config.n_heads} and d_model="
            f"{config.d_model} does not map onto GPT-2, whose heads are d_model // n_heads wide; "
            "export needs d_head_=None"
        )
    bias = state.get("unembed.bias")
    if bias is not None and bool(bias.ne(0).any()):
        raise IterationHeadsError(
            f"unembed.bias is not zero (max |b_U| {float(bias.abs().max()):.3g}): GPT-2's lm_head "
            "has no bias, so the export would change the logits"
        )
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if broken:
        raise IterationHeadsError(
            f"tensor {broken[0]!r} holds NaN or infinite values: a diverged model is not exported"
        )


def token_names(config: ModelConfig, metadata: dict[str, Any]) -> list[str]:
    """The name of every token id: the layout's (``0``..``10``, ``<EoI>``, ``<EoS>``, ``<task>``),
    the ontology vocabulary for an ontology model, else ``<t0>``, ``<t1>``, ...

    Example:
        >>> token_names(ModelConfig(d_model=16, max_len=2), {})[9:]
        ['9', '10', '<EoI>', '<EoS>', '<copy>', '<parity>', '<polynomial>']
    """
    names = config.layout.token_names()
    if config.d_vocab_ is not None:
        names = [f"<t{i}>" for i in range(config.d_vocab)]
        data = metadata.get("data")
        if isinstance(data, dict) and data.get("task") == "ontology":
            from iteration_heads.tasks.ontology import OntologyVocab
            from iteration_heads.tasks.ontology_data import OntologyDataConfig

            try:
                vocab = OntologyVocab.of(OntologyDataConfig.from_dict(data).ontology).names
            except (IterationHeadsError, TypeError, ValueError, AttributeError):
                vocab = ()
            if len(vocab) == config.d_vocab:
                names = list(vocab)
    return names


def audit_options(config: ModelConfig, metadata: dict[str, Any]) -> str | None:
    """The ``iteration-heads audit`` options that read an exported folder's task in token ids
    (None when the model's task is unknown or is not written in the layout).

    Example:
        >>> audit_options(ModelConfig(d_model=16, max_len=2), {"task": "parity"})
        '--task parity --symbol-tokens 0,1 --eoi-token 11 --eos-token 12 --task-token 14'
    """
    task = metadata.get("task")
    layout = config.layout
    if not isinstance(task, str) or config.d_vocab_ is not None or task not in layout.tasks:
        return None
    symbols = ",".join(str(v) for v in range(get_task(task).n_symbols))
    return (
        f"--task {task} --symbol-tokens {symbols} --eoi-token {layout.eoi} "
        f"--eos-token {layout.eos} --task-token {layout.task_token(task)}"
    )


def gpt2_state_dict(config: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The library's weights under ``GPT2LMHeadModel``'s names (``Conv1D`` weights transposed).

    Example:
        >>> from iteration_heads.model.transformer import build_model
        >>> config = ModelConfig(d_model=16, max_len=2)
        >>> gpt2 = gpt2_state_dict(config, build_model(config).state_dict())
        >>> tuple(gpt2["transformer.h.0.attn.c_attn.weight"].shape), len(gpt2)
        ((16, 48), 29)
    """
    d = config.d_model
    ones, zeros = torch.ones(d), torch.zeros(d)

    def norm(prefix: str, target: str) -> dict[str, torch.Tensor]:
        return {
            f"{target}.weight": state.get(f"{prefix}.weight", ones),
            f"{target}.bias": state.get(f"{prefix}.bias", zeros),
        }

    out = {
        "transformer.wte.weight": state["embed.weight"],
        "transformer.wpe.weight": state["pos_embed.weight"],
        "lm_head.weight": state["unembed.weight"],
        **norm("ln_final", "transformer.ln_f"),
    }
    for layer in range(config.n_layers):
        p, h = f"blocks.{layer}", f"transformer.h.{layer}"
        qkv = [state[f"{p}.attn.{n}.weight"] for n in "qkv"]
        out |= norm(f"{p}.ln1", f"{h}.ln_1") | norm(f"{p}.ln2", f"{h}.ln_2")
        out[f"{h}.attn.c_attn.weight"] = torch.cat(qkv).T
        out[f"{h}.attn.c_attn.bias"] = torch.cat([state[f"{p}.attn.{n}.bias"] for n in "qkv"])
        out[f"{h}.attn.c_proj.weight"] = state[f"{p}.attn.o.weight"].T
        out[f"{h}.attn.c_proj.bias"] = state[f"{p}.attn.o.bias"]
        out[f"{h}.mlp.c_fc.weight"] = state[f"{p}.mlp.in.weight"].T
        out[f"{h}.mlp.c_fc.bias"] = state[f"{p}.mlp.in.bias"]
        out[f"{h}.mlp.c_proj.weight"] = state[f"{p}.mlp.out.weight"].T
        out[f"{h}.mlp.c_proj.bias"] = state[f"{p}.mlp.out.bias"]
    return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}


def gpt2_model(config: ModelConfig, state: dict[str, torch.Tensor], eps: float, eos: int) -> Any:
    """A ``GPT2LMHeadModel`` (eval mode) with the library model's weights, dropout off.

    Example:
        >>> from iteration_heads.model.transformer import build_model
        >>> config = ModelConfig(d_model=16, max_len=2)
        >>> model = build_model(config)
        >>> gpt2 = gpt2_model(config, model.state_dict(), 1e-5, eos=12)
        >>> tokens = torch.tensor([[15, 3, 11, 3, 12]])
        >>> bool(torch.allclose(gpt2(tokens).logits, model(tokens), atol=1e-5, rtol=1e-5))
        True
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_config = GPT2Config(
        vocab_size=config.d_vocab,
        n_positions=config.n_ctx,
        n_embd=config.d_model,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        n_inner=config.d_mlp,
        activation_function=config.activation,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=eps,
        bos_token_id=eos,
        eos_token_id=eos,
        tie_word_embeddings=False,
        architectures=["GPT2LMHeadModel"],
    )
    model = GPT2LMHeadModel(hf_config)
    model.load_state_dict(gpt2_state_dict(config, state), strict=False)  # + the causal-mask buffers
    return model.eval()


def word_tokenizer(names: list[str], eos: str, n_ctx: int) -> Any:
    """A ``PreTrainedTokenizerFast``: one word per token name, split on whitespace, no special
    tokens added, so ``encode("<polynomial> 3 2 <EoI>")`` gives the ids.

    Example:
        >>> tokenizer = word_tokenizer(["0", "1", "<EoI>", "<EoS>"], "<EoS>", 8)
        >>> tokenizer.encode("1 0 <EoI> 0 1 <EoS>")
        [1, 0, 2, 0, 1, 3]
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({name: i for i, name in enumerate(names)}))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=eos, pad_token=eos, model_max_length=n_ctx
    )


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a path, refused when it exists and is not an empty folder.

    Example:
        >>> check_out_dir("no/such/export").name
        'export'
        >>> import pathlib, tempfile
        >>> full = pathlib.Path(tempfile.mkdtemp()); _ = (full / "config.json").write_text("{}")
        >>> check_out_dir(full)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: output folder '...' exists and is not empty: expected a new or empty folder
    """
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise IterationHeadsError(f"out_dir={out_dir!r}, expected a folder path")
    path = Path(out_dir)
    if path.is_symlink():
        raise IterationHeadsError(
            f"output folder {str(path)!r} is a symlink: expected a new folder"
        )
    if path.exists():
        if not path.is_dir():
            raise IterationHeadsError(f"output folder {str(path)!r} is a file: expected a folder")
        try:
            empty = not any(path.iterdir())
        except OSError:
            raise IterationHeadsError(f"output folder {str(path)!r} cannot be read") from None
        if not empty:
            raise IterationHeadsError(
                f"output folder {str(path)!r} exists and is not empty: expected a new or empty "
                "folder"
            )
    for parent in path.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise IterationHeadsError(f"{str(parent)!r} is a file: cannot create {str(path)!r}")
    return path


def readme(source: str, options: str | None, names: list[str]) -> str:
    """The README.md of an exported folder."""
    audit = (
        f"    iteration-heads audit FOLDER {options}"
        if options
        else "    iteration-heads audit FOLDER --symbol-tokens ... --eoi-token ..."
    )
    return (
        f"# {source}, exported by iteration_heads\n\n"
        "A GPT2LMHeadModel (untied lm_head) with a word-level tokenizer: one token per name, "
        "separated by spaces.\n\n"
        f"Tokens, in id order: {' '.join(names)}\n\n"
        f"Audit it for iteration heads:\n\n{audit}\n\n"
        f"{EXPORT_INFO_FILE} records the task, the layout and the token names.\n"
    )


def export_hf(model_or_path: Any, out_dir: str | os.PathLike[str]) -> Path:
    """Save a library model (in memory, a saved folder or a shipped name) as a HuggingFace
    checkpoint folder that ``transformers.AutoModelForCausalLM`` and
    ``AutoTokenizer.from_pretrained`` load, giving the library model's logits (to 1e-5).

    Atomic: the folder is written beside ``out_dir`` and renamed into place; a refused input
    writes nothing.

    Raises:
        IterationHeadsError: one line, for what GPT-2 cannot express (:func:`check_exportable`),
            a model this library did not build, or an ``out_dir`` that exists and is not empty.

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForCausalLM, AutoTokenizer
        >>> folder = export_hf("polynomial", Path(tempfile.mkdtemp()) / "polynomial")
        >>> sorted(p.name for p in folder.iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['README.md', 'config.json', 'generation_config.json', 'iteration_heads.json',
         'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']
        >>> AutoTokenizer.from_pretrained(folder).encode("<polynomial> 3 2 <EoI>")
        [15, 3, 2, 11]
        >>> logits = AutoModelForCausalLM.from_pretrained(folder)(torch.tensor([[15, 3]])).logits
        >>> bool(torch.allclose(logits, load("polynomial")(torch.tensor([[15, 3]])), atol=1e-5, rtol=1e-5))
        True
    """
    out = check_out_dir(out_dir)
    if isinstance(model_or_path, (str, os.PathLike)):
        source = str(model_or_path)
        model: torch.nn.Module = load(model_or_path)
    elif isinstance(model_or_path, torch.nn.Module):
        source = type(model_or_path).__name__
        model = model_or_path
    else:
        raise IterationHeadsError(
            f"model {model_or_path!r}: expected a model built by iteration_heads, a saved model "
            "folder or a shipped model's name"
        )
    config = model_config(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check_exportable(config, state)
    metadata = model_metadata(model)
    names = token_names(config, metadata)
    eos = next((names.index(n) for n in ("<EoS>", "</s>") if n in names), len(names) - 1)
    eps = float(getattr(model.cfg, "eps", 1e-5))
    gpt2 = gpt2_model(config, state, eps, eos)
    tokens = torch.randint(
        0, config.d_vocab, (4, config.n_ctx), generator=torch.Generator().manual_seed(0)
    )
    double = {k: v.double() for k, v in state.items()}
    with without_gradients():  # the mapping is exact (float64), and float32 agrees to 1e-5
        mapped = gpt2_model(config, double, eps, eos).double()(tokens).logits
        exact = forward(Weights(config, double, eps), tokens)[0]
        expected = model(tokens.to(next(model.parameters()).device)).detach().cpu()
        got = gpt2(tokens).logits
    gap = float((mapped - exact).abs().max())
    if not gap <= 1e-9 * max(1.0, float(exact.abs().max())) or not torch.allclose(
        got, expected, atol=TOLERANCE, rtol=TOLERANCE
    ):
        raise IterationHeadsError(
            f"the exported GPT-2 model's logits differ from the library model's (float64 gap "
            f"{gap:.2g}, float32 gap {float((got - expected).abs().max()):.2g}): this model does "
            "not map onto GPT-2"
        )
    options = audit_options(config, metadata)
    info = {
        "format": "iteration_heads.export",
        "format_version": EXPORT_FORMAT_VERSION,
        "source": source,
        "architecture": "GPT2LMHeadModel",
        "task": metadata.get("task"),
        "model_config": config.to_dict(),
        "token_names": names,
        "audit_options": options,
        "versions": versions(),
    }
    try:
        out.absolute().parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(dir=out.absolute().parent, prefix=f".{out.name}.", suffix=".tmp")
        )
    except OSError as err:
        raise write_error(out, err) from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in a command's output
    try:
        gpt2.save_pretrained(tmp, safe_serialization=True)
        word_tokenizer(names, names[eos], config.n_ctx).save_pretrained(tmp)
        write_json(tmp / EXPORT_INFO_FILE, info)
        write_text(tmp / "README.md", readme(source, options, names))
        if out.is_dir():
            out.rmdir()  # empty: checked above
        os.replace(tmp, out)
    except OSError as err:
        raise write_error(out, err) from None
    finally:
        hf_logging.enable_progress_bar()
        shutil.rmtree(tmp, ignore_errors=True)
    return out
