"""A plain-PyTorch forward pass over the weights of a native TransformerLens model.

Training and evaluation run here rather than through the bridge's hooks: the same parameters,
fused scaled-dot-product attention, and optional embedding dropout (which the native model
lacks). The tests check that it matches the bridge's own forward to 1e-5; analysis code
(detection, interventions) keeps using the bridge and its hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import ModelConfig
from iteration_heads.tasks.task import check_number

_ACT = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass(frozen=True)
class Weights:
    """Live references to a bridge's parameters (gradients flow into the bridge)."""

    config: ModelConfig
    tensors: dict[str, Tensor]
    eps: float

    @classmethod
    def of(cls, model: torch.nn.Module, config: ModelConfig) -> Weights:
        """Collect the parameters of ``model`` (a bridge built from ``config``)."""
        tensors = model.state_dict(keep_vars=True)
        expected = {"embed.weight", "pos_embed.weight", "unembed.weight"}
        missing = expected - set(tensors)
        if missing:
            raise IterationHeadsError(
                f"model has no weights {sorted(missing)}: expected a native TransformerLens model"
            )
        return cls(config, tensors, float(getattr(model.cfg, "eps", 1e-5)))

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def norm(self, prefix: str, x: Tensor) -> Tensor:
        kind, d = self.config.normalization, (x.shape[-1],)
        if kind == "LN":
            return F.layer_norm(x, d, self[f"{prefix}.weight"], self[f"{prefix}.bias"], self.eps)
        if kind == "LNPre":
            return F.layer_norm(x, d, None, None, self.eps)
        if kind == "RMS":
            return F.rms_norm(x, d, self[f"{prefix}.weight"], self.eps)
        return x


def forward(
    weights: Weights,
    tokens: Int[Tensor, "batch pos"],
    *,
    embedding_dropout: float = 0.0,
    return_patterns: bool = False,
) -> tuple[Float[Tensor, "batch pos d_vocab"], list[Float[Tensor, "batch head pos pos"]]]:
    """Logits of ``tokens`` (and, with ``return_patterns``, every layer's attention pattern).

    ``embedding_dropout`` > 0 applies dropout to the summed token and position embeddings,
    as the authors' model does during training.

    Example:
        >>> from iteration_heads.model.transformer import ModelConfig, build_model
        >>> cfg = ModelConfig(d_model=32, max_len=4)
        >>> model = build_model(cfg)
        >>> tokens = torch.randint(0, cfg.d_vocab, (2, cfg.n_ctx))
        >>> logits, patterns = forward(Weights.of(model, cfg), tokens, return_patterns=True)
        >>> bool(torch.allclose(logits, model(tokens), atol=1e-5)), patterns[1].shape
        (True, torch.Size([2, 1, 11, 11]))
    """
    check_number("embedding_dropout", embedding_dropout, minimum=0, maximum=1, open_max=True)
    cfg = weights.config
    batch, seq = tokens.shape
    x = F.embedding(tokens, weights["embed.weight"]) + weights["pos_embed.weight"][:seq]
    if embedding_dropout > 0:
        x = F.dropout(x, embedding_dropout, training=True)
    act = _ACT[cfg.activation]
    # the skip path carries the normalised stream before the attention ("renormalised" and
    # "authors") and before the MLP ("renormalised" only)
    before_attn, before_mlp = cfg.residual != "pre-LN", cfg.residual == "renormalised"
    patterns: list[Tensor] = []
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}"
        h = weights.norm(f"{p}.ln1", x)
        if before_attn:
            x = h
        # one fused projection: (batch, pos, 3·heads·d_head) -> 3 × (batch, heads, pos, d_head)
        qkv = F.linear(
            h,
            torch.cat([weights[f"{p}.attn.{n}.weight"] for n in "qkv"]),
            torch.cat([weights[f"{p}.attn.{n}.bias"] for n in "qkv"]),
        )
        q, k, v = (
            y.view(batch, seq, cfg.n_heads, cfg.d_head).transpose(1, 2)
            for y in qkv.chunk(3, dim=-1)
        )
        if return_patterns:
            scores = q @ k.transpose(-2, -1) / cfg.d_head**0.5
            causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(1)
            pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
            patterns.append(pattern)
            z = pattern @ v
        else:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        z = z.transpose(1, 2).reshape(batch, seq, cfg.n_heads * cfg.d_head)
        x = x + F.linear(z, weights[f"{p}.attn.o.weight"], weights[f"{p}.attn.o.bias"])
        h = weights.norm(f"{p}.ln2", x)
        if before_mlp:
            x = h
        h = act(F.linear(h, weights[f"{p}.mlp.in.weight"], weights[f"{p}.mlp.in.bias"]))
        x = x + F.linear(h, weights[f"{p}.mlp.out.weight"], weights[f"{p}.mlp.out.bias"])
    x = weights.norm("ln_final", x)
    logits = F.linear(x, weights["unembed.weight"], weights.tensors.get("unembed.bias"))
    return logits, patterns
