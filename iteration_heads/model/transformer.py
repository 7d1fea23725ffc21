"""The paper's transformer as a TransformerLens model (docs/paper.md §3).

:class:`ModelConfig` describes the architecture; :func:`build_model` is the one place that turns
it into a TransformerLens ``TransformerBridge`` (via ``boot_native``). The native block is the
standard pre-LN block with biases and TransformerLens's initialisation: *paper-like*, not
identical to the authors' model, whose block renormalises the stream before the attention
(``x = LN1(x); x = x + attn(x); x = x + mlp(LN2(x))``), which has no biases and keeps PyTorch's
initialisation. ``ModelConfig(residual="authors", biases=False, weight_init="authors",
d_vocab_=64)`` builds the authors' model on the same bridge (:mod:`~iteration_heads.model.authors`);
``residual="renormalised"`` renormalises before the MLP too (:func:`renormalised_block_forward`).
"""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads._io import strict_from_dict
from iteration_heads._torch import without_gradients
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import available_memory
from iteration_heads.model.authors import (
    AUTHORS_VOCAB,
    authors_block_forward,
    authors_token_ids,
    init_authors,
    init_linear_weights,
)
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import check_bool, check_choice, check_int

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")
NORMALIZATIONS = ("LN", "LNPre", "RMS", None)
RESIDUALS = ("pre-LN", "renormalised", "authors")
WEIGHT_INITS = ("transformer_lens", "pytorch", "authors")
_CONFIG_ATTR = "_iteration_heads_config"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model; ``n_ctx`` and ``d_vocab`` derive from the layout and ``max_len``.

    Defaults are the paper's model: 2 layers, 1 head, d_model 128, MLP 4·d, GELU, learned
    positional embeddings, LayerNorm.

    Example:
        >>> cfg = ModelConfig(d_model=64, max_len=8)
        >>> cfg.n_ctx, cfg.d_vocab, cfg.d_head, cfg.d_mlp
        (19, 16, 64, 256)
        >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    layout: TokenLayout = field(default_factory=TokenLayout.default)
    max_len: int = 16  # longest input length L; n_ctx = 2·max_len + 3
    d_model: int = 128  # residual stream width
    n_layers: int = 2
    n_heads: int = 1  # heads per layer
    d_head_: int | None = None  # per-head width; None: d_model // n_heads
    d_mlp_: int | None = None  # MLP width; None: 4·d_model
    # vocabulary and context of a task outside the layout (the ontology task), or a vocabulary
    # wider than the layout's (the authors' 64 tokens); None: the layout's
    d_vocab_: int | None = None
    n_ctx_: int | None = None
    activation: str = "gelu"  # one of ACTIVATIONS
    positional: Literal["learned", "frozen"] = "learned"  # frozen: fixed random N(0, 1)
    normalization: str | None = "LN"  # "LN", "LNPre", "RMS" or None
    # "normal": token and position embeddings N(0, 1), PyTorch's nn.Embedding default and the
    # authors' model; "transformer_lens": TransformerLens's own init (N(0, 0.64/d_model)).
    embedding_init: Literal["normal", "transformer_lens"] = "normal"
    # False: every bias (linear layers and LayerNorms) is zero and frozen, as in the authors'
    # model, which has none; the TransformerLens model keeps the bias tensors.
    biases: bool = True
    # "pre-LN": x = x + attn(LN1(x)); x = x + mlp(LN2(x)), TransformerLens's block. "authors":
    # the authors' block, x = LN1(x); x = x + attn(x); x = x + mlp(LN2(x)): the attention's skip
    # path carries the normalised stream. "renormalised": x = LN1(x); x = x + attn(x);
    # x = LN2(x); x = x + mlp(x), both skip paths normalised (a post-LN transformer with a
    # normalised embedding; an earlier reading of the authors' block).
    residual: Literal["pre-LN", "renormalised", "authors"] = "pre-LN"
    # Linear weights (attention, MLP, unembedding): "transformer_lens", N(0, 0.64/d_model) and
    # the output projections scaled by 1/sqrt(2·n_layers); "pytorch", nn.Linear's default (the
    # authors'), uniform in ±1/sqrt(fan_in); "authors", every weight (embeddings too) drawn as
    # the authors' model draws it after torch.manual_seed(seed), over their 64 tokens (needs
    # d_vocab_=64). Biases stay zero under all three.
    weight_init: Literal["transformer_lens", "pytorch", "authors"] = "transformer_lens"
    seed: int = 0  # seeds the initialisation

    def __post_init__(self) -> None:
        if not isinstance(self.layout, TokenLayout):
            raise IterationHeadsError(
                f"layout={self.layout!r}, expected a TokenLayout (e.g. TokenLayout.default())"
            )
        for name in ("max_len", "d_model", "n_layers", "n_heads", "seed"):
            value = check_int(name, getattr(self, name), minimum=0 if name == "seed" else 1)
            object.__setattr__(self, name, value)  # a numpy integer becomes an int
        for name in ("d_head_", "d_mlp_", "d_vocab_", "n_ctx_"):
            if getattr(self, name) is not None:
                value = check_int(name, getattr(self, name), minimum=1)
                object.__setattr__(self, name, value)
        if self.d_head_ is None and self.d_model % self.n_heads:
            raise IterationHeadsError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "set d_head_ explicitly"
            )
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("positional", self.positional, ("learned", "frozen"))
        check_choice("embedding_init", self.embedding_init, ("normal", "transformer_lens"))
        check_bool("biases", self.biases)
        check_choice("residual", self.residual, RESIDUALS)
        if self.residual != "pre-LN" and self.normalization is None:
            block = "renormalised block" if self.residual == "renormalised" else "authors' block"
            raise IterationHeadsError(
                f"residual={self.residual!r} with normalization=None: the {block} needs "
                "a normalisation ('LN', 'LNPre' or 'RMS')"
            )
        check_choice("weight_init", self.weight_init, WEIGHT_INITS)
        if self.weight_init == "authors":
            if self.embedding_init != "normal":
                raise IterationHeadsError(
                    f"weight_init='authors' with embedding_init={self.embedding_init!r}: the "
                    "authors' initialisation draws the embeddings N(0, 1); expected 'normal'"
                )
            if self.d_vocab != AUTHORS_VOCAB:
                raise IterationHeadsError(
                    f"weight_init='authors' draws the authors' {AUTHORS_VOCAB}-token vocabulary, "
                    f"the model has {self.d_vocab}; set d_vocab_={AUTHORS_VOCAB}"
                )
            authors_token_ids(self.layout)  # a layout their vocabulary holds

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_head_ if self.d_head_ is not None else self.d_model // self.n_heads

    @property
    def d_mlp(self) -> int:
        """Hidden width of the MLP."""
        return self.d_mlp_ if self.d_mlp_ is not None else 4 * self.d_model

    @property
    def n_ctx(self) -> int:
        """Context length: one CoT sequence of length ``max_len`` (``2·max_len + 3``), or
        ``n_ctx_`` when set."""
        if self.n_ctx_ is not None:
            return self.n_ctx_
        return TokenLayout.seq_len(self.max_len, cot=True)

    @property
    def d_vocab(self) -> int:
        """Vocabulary size, from the layout, or ``d_vocab_`` when set."""
        return self.d_vocab_ if self.d_vocab_ is not None else self.layout.d_vocab

    @property
    def n_weights(self) -> int:
        """Numbers in the model's state dict (weights, biases, norms; 4 bytes each in float32),
        computed from the config without building the model.

        Example:
            >>> cfg = ModelConfig(d_model=64, max_len=8)
            >>> cfg.n_weights == sum(v.numel() for v in build_model(cfg).state_dict().values())
            True
        """
        d, heads = self.d_model, self.n_heads * self.d_head
        norm = {"LN": 2 * d, "RMS": d}.get(str(self.normalization), 0)
        attention = 3 * (d * heads + heads) + heads * d + d
        mlp = d * self.d_mlp + self.d_mlp + self.d_mlp * d + d
        layer = 2 * norm + attention + mlp
        embeddings = self.d_vocab * d + self.n_ctx * d
        return embeddings + self.n_layers * layer + norm + d * self.d_vocab + self.d_vocab

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; inverse of :meth:`from_dict`."""
        data = asdict(self)
        data["layout"] = self.layout.to_dict()
        for name in ("d_vocab_", "n_ctx_"):  # configs of the layout's tasks stay as they were
            if data[name] is None:
                del data[name]
        if self.residual == "pre-LN":  # ... and so do configs from before the option
            del data["residual"]
        if self.weight_init == "transformer_lens":  # ... and before this one
            del data["weight_init"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config saved with :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, dict):
            raise IterationHeadsError(
                f"model config must be a JSON object, got {type(data).__name__}"
            )
        fields = dict(data)
        if "layout" in fields:
            fields["layout"] = TokenLayout.from_dict(fields["layout"])
        return strict_from_dict(cls, fields)

    def transformer_lens_config(
        self, device: str | torch.device = "cpu"
    ) -> TransformerBridgeConfig:
        """The TransformerLens config this model is built from."""
        return TransformerBridgeConfig(
            d_model=self.d_model,
            d_head=self.d_head,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            n_ctx=self.n_ctx,
            d_vocab=self.d_vocab,
            d_mlp=self.d_mlp,
            act_fn=self.activation,
            normalization_type=self.normalization,
            positional_embedding_type="standard",
            init_mode="gpt2",
            seed=self.seed,
            device=str(device),
        )


def build_model(
    config: ModelConfig | None = None, *, device: str | torch.device = "cpu"
) -> TransformerBridge:
    """Build a freshly initialised model (deterministic for ``config.seed``), in eval mode.

    Example:
        >>> model = build_model(ModelConfig(d_model=64, max_len=8))
        >>> model.cfg.n_layers, model.cfg.n_ctx, sum(p.numel() for p in model.parameters())
        (2, 19, 103360)
        >>> model_config(model).d_model
        64
    """
    config = ModelConfig() if config is None else config
    if not isinstance(config, ModelConfig):
        raise IterationHeadsError(f"config must be a ModelConfig, got {type(config).__name__}")
    device = check_device(device)
    need, have = 2 * 4 * config.n_weights, available_memory()  # the weights and one copy
    if device.type == "cpu" and have is not None and need > have:
        raise IterationHeadsError(
            f"d_model={config.d_model}, n_layers={config.n_layers}: the model needs about "
            f"{need / 1e9:.1f} GB to build ({config.n_weights:,} weights); this machine has "
            f"{have / 1e9:.1f} GB available"
        )
    model = TransformerBridge.boot_native(config.transformer_lens_config(device))  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(config.seed + 1)
    with without_gradients():
        if config.embedding_init == "normal":
            model.embed.weight.copy_(torch.randn(model.embed.weight.shape, generator=generator))
        if config.embedding_init == "normal" or config.positional == "frozen":
            pos = model.pos_embed.weight
            pos.copy_(torch.randn(pos.shape, generator=generator))
    if config.weight_init == "authors":
        init_authors(model, config.layout, config.seed)
    elif config.weight_init == "pytorch":  # its own stream: the embeddings stay the default's
        init_linear_weights(model, torch.Generator().manual_seed(config.seed + 2))
    if config.positional == "frozen":
        model.pos_embed.weight.requires_grad_(False)
    block_forward = {"renormalised": renormalised_block_forward, "authors": authors_block_forward}
    if config.residual in block_forward:
        for block in model.blocks:
            native = block.original_component
            native.forward = types.MethodType(block_forward[config.residual], native)
    if not config.biases:
        for name, param in model.state_dict(keep_vars=True).items():
            if name.endswith(".bias") and isinstance(param, torch.nn.Parameter):
                with without_gradients():
                    param.zero_()
                param.requires_grad_(False)
    setattr(model, _CONFIG_ATTR, config)
    return model.eval()


def renormalised_block_forward(
    block: Any,  # a TransformerLens NativeBlock (its ln1, attn, ln2, mlp are bridge components)
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor]:
    """The authors' block, as the forward of a TransformerLens native block: ``x = ln1(x);
    x = x + attn(x); x = ln2(x); x = x + mlp(x)``. :func:`build_model` installs it on every
    block of a ``residual="renormalised"`` model; the block's own ``ln1``/``ln2`` (and their
    hooks) renormalise, so ``hook_resid_pre`` is the block's input before renormalisation,
    ``blocks.L.ln1.hook_out`` the renormalised stream, and ``hook_resid_mid`` the stream before
    ``ln2``.

    Example:
        >>> model = build_model(ModelConfig(d_model=16, max_len=2, residual="renormalised"))
        >>> _, cache = model.run_with_cache(torch.tensor([[0, 1, 2]]),
        ...                                 names_filter=lambda n: "resid_pre" in n or "ln1" in n)
        >>> x = cache["blocks.1.hook_resid_pre"]
        >>> bool(torch.allclose(cache["blocks.1.ln1.hook_out"], model.blocks[1].ln1(x), atol=1e-6))
        True
    """
    hidden_states = block.ln1(hidden_states)
    attn_out, _pattern = block.attn(
        hidden_states, attention_mask=attention_mask, position_ids=position_ids
    )
    hidden_states = block.ln2(hidden_states + attn_out)
    return (hidden_states + block.mlp(hidden_states),)


def additive_residual(model: torch.nn.Module) -> bool:
    """Whether ``model``'s residual stream is the sum of its components' outputs: False only
    for a model this library built with ``residual="renormalised"`` or ``"authors"``.

    Example:
        >>> additive_residual(build_model(ModelConfig(d_model=16, max_len=2))), additive_residual(
        ...     build_model(ModelConfig(d_model=16, max_len=2, residual="renormalised")))
        (True, False)
    """
    config = getattr(model, _CONFIG_ATTR, None)
    return not (isinstance(config, ModelConfig) and config.residual != "pre-LN")


def check_additive_residual(model: torch.nn.Module, analysis: str) -> None:
    """Refuse an analysis that reads the residual stream as a sum of the components' outputs
    (path patching, direct logit attribution) on a ``residual="renormalised"`` or ``"authors"``
    model, where blocks renormalise the stream so that an output reaches later layers rescaled.
    Models built elsewhere (wrapped HuggingFace models) pass.

    Example:
        >>> check_additive_residual(build_model(ModelConfig(d_model=16, max_len=2)), "path patching")
        >>> check_additive_residual(
        ...     build_model(ModelConfig(d_model=16, max_len=2, residual="renormalised")),
        ...     "path patching")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: path patching reads the residual stream as a sum of the components' outputs; this model has residual='renormalised' (every block renormalises the stream), expected residual='pre-LN'
    """
    if not additive_residual(model):
        residual = model_config(model).residual
        where = "" if residual == "renormalised" else " before its attention"
        raise IterationHeadsError(
            f"{analysis} reads the residual stream as a sum of the components' outputs; this "
            f"model has residual={residual!r} (every block renormalises the stream{where}), "
            "expected residual='pre-LN'"
        )


def check_device(device: str | torch.device) -> torch.device:
    """The device ``device`` names, or an error when it does not parse or is not available here
    (``cuda`` needs ``torch.cuda.is_available()``, ``mps`` likewise).

    Example:
        >>> check_device("cpu")
        device(type='cpu')
        >>> check_device("gpu")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: device='gpu', expected a device name such as 'cpu', 'cuda' or 'cuda:0'
    """
    if not isinstance(device, (str, torch.device)):
        raise IterationHeadsError(
            f"device={device!r}, expected a device name such as 'cpu', 'cuda' or 'cuda:0'"
        )
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise IterationHeadsError(
            f"device={device!r}, expected a device name such as 'cpu', 'cuda' or 'cuda:0'"
        ) from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        probe = "torch.cuda.is_available()"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    elif parsed.type == "mps":
        probe = "torch.backends.mps.is_available()"
        count = 1 if torch.backends.mps.is_available() else 0
    else:
        raise IterationHeadsError(f"device={device!r}, expected 'cpu', 'cuda' or 'mps'")
    if count == 0:
        raise IterationHeadsError(
            f"device={device!r} is not available on this machine ({probe} is False); expected 'cpu'"
        )
    if parsed.index is not None and parsed.index >= count:
        raise IterationHeadsError(
            f"device={device!r} is not available: this machine has {count} {parsed.type} "
            f"device(s), {parsed.type}:0..{parsed.type}:{count - 1}"
        )
    return parsed


def model_config(model: torch.nn.Module) -> ModelConfig:
    """The :class:`ModelConfig` of a model built by :func:`build_model` or loaded by
    :func:`~iteration_heads.model.load`.

    Raises:
        IterationHeadsError: for a model this library did not build.

    Example:
        >>> model_config(build_model(ModelConfig(d_model=32, max_len=4))).d_model
        32
        >>> model_config(torch.nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: Linear was not built by iteration_heads (no ModelConfig attached); use iteration_heads.build_model or iteration_heads.load
    """
    config = getattr(model, _CONFIG_ATTR, None)
    if not isinstance(config, ModelConfig):
        raise IterationHeadsError(
            f"{type(model).__name__} was not built by iteration_heads (no ModelConfig attached); "
            "use iteration_heads.build_model or iteration_heads.load"
        )
    return config


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (``trainable_only``: those with ``requires_grad``).

    Example:
        >>> count_parameters(build_model(ModelConfig(positional="frozen", max_len=8, d_model=64)),
        ...                  trainable_only=True)
        102144
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def paper_parameter_count(
    d_model: int, max_len: int, *, n_layers: int = 2, d_vocab: int = 64
) -> int:
    """Parameters of the authors' model (no biases, LayerNorm weights only, untied unembedding).

    Useful to compare sizes with docs/paper.md §7; our TransformerLens model adds biases.

    Example:
        >>> paper_parameter_count(64, 8), paper_parameter_count(128, 16)
        (108032, 414720)
    """
    for name, value in (("d_model", d_model), ("max_len", max_len), ("n_layers", n_layers)):
        check_int(name, value, minimum=1)
    check_int("d_vocab", d_vocab, minimum=1)
    n_ctx = TokenLayout.seq_len(max_len, cot=True)
    embeddings = 2 * d_vocab * d_model + n_ctx * d_model
    blocks = n_layers * 12 * d_model * d_model  # 4·d² attention + 8·d² MLP
    norms = (2 * n_layers + 1) * d_model
    return embeddings + blocks + norms
