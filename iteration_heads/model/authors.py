"""The authors' model on the library's bridge: their initialisation and their block
(docs/paper.md §3; the authors' ``src/cot/models/transformer.py``, read, not copied).

* **Initialisation.** The authors keep PyTorch's defaults: ``nn.Embedding`` draws N(0, 1), and
  ``nn.Linear`` draws its weight uniformly in ``±1/√fan_in`` (``kaiming_uniform_`` with
  ``a = √5``), where TransformerLens draws N(0, 0.64/d_model) and scales the output projections
  by ``1/√(2·n_layers)``. :func:`init_linear_weights` draws the library's linear weights the
  PyTorch way (``ModelConfig(weight_init="pytorch")``); :func:`init_authors` draws every weight
  exactly as the authors' model does after ``torch.manual_seed(seed)``, in their order and over
  their 64-token vocabulary (``ModelConfig(weight_init="authors", d_vocab_=64)``), so that seed
  ``s`` here starts from the weights of their seed ``s``.
* **Block.** Their block renormalises the stream before the attention only:
  ``x = LN1(x); x = x + attn(x); x = x + mlp(LN2(x))`` (:func:`authors_block_forward`,
  ``ModelConfig(residual="authors")``). The library's ``residual="renormalised"`` also
  renormalises before the MLP, which the authors' block does not.

Example:
    >>> from iteration_heads.tasks.layout import TokenLayout
    >>> ids = authors_token_ids(TokenLayout.default())
    >>> ids[11], ids[12], ids[15], sorted(ids) == list(range(AUTHORS_VOCAB))  # EoI, EoS, task
    (62, 63, 58, True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from iteration_heads._torch import without_gradients
from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import check_int

AUTHORS_VOCAB = 64
"""Vocabulary size of the authors' model (``vocab_size=64`` in their training entry point)."""

AUTHORS_TOKEN_IDS = {"EoI": 62, "EoS": 63, "polynomial": 58, "parity": 59, "copy": 60}
"""The authors' ids of the special tokens and task tokens (their ``binary_copy`` is our
``copy``); a data symbol ``v`` is ``v`` in both vocabularies."""


def authors_token_ids(layout: TokenLayout) -> list[int]:
    """The authors' token id of every library token id ``0 .. 63``: data symbols keep their
    id, EoI, EoS and the task tokens take the authors' ids, and the ids beyond the layout take
    the authors' unused ids in order. A permutation of ``0 .. 63``.

    Raises:
        IterationHeadsError: for a layout the authors' vocabulary cannot hold (a task other
            than copy, parity and polynomial, or more than 58 data symbols).

    Example:
        >>> authors_token_ids(TokenLayout.default())[:13]
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 62, 63]
    """
    if not isinstance(layout, TokenLayout):
        raise IterationHeadsError(f"layout must be a TokenLayout, got {type(layout).__name__}")
    unknown = [t for t in layout.tasks if t not in AUTHORS_TOKEN_IDS]
    if unknown:
        raise IterationHeadsError(
            f"the authors' vocabulary has no token for tasks {unknown}; expected tasks among "
            "('copy', 'parity', 'polynomial')"
        )
    lowest = min(AUTHORS_TOKEN_IDS.values())
    if layout.n_symbols > lowest:
        raise IterationHeadsError(
            f"layout has {layout.n_symbols} data symbols; the authors' vocabulary holds {lowest}"
        )
    ids = list(range(layout.n_symbols))
    ids += [AUTHORS_TOKEN_IDS["EoI"], AUTHORS_TOKEN_IDS["EoS"]]
    ids += [AUTHORS_TOKEN_IDS[t] for t in layout.tasks]
    return ids + [i for i in range(AUTHORS_VOCAB) if i not in ids]


def init_linear_weights(
    model: nn.Module, generator: torch.Generator, *, rows: list[int] | None = None
) -> None:
    """Redraw every linear weight of a library ``model`` (a TransformerLens native bridge) as
    ``nn.Linear`` draws it, uniform in ``±1/√fan_in``, in the authors' order: per layer the
    query, key and value weights as one fused matrix, the attention output, the MLP's input
    and output; then the unembedding (library row ``i`` takes drawn row ``rows[i]``; None: in
    order). Biases, norms and embeddings are left as they are.

    Example:
        >>> from iteration_heads.model.transformer import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=64, max_len=4))
        >>> init_linear_weights(model, torch.Generator().manual_seed(0))
        >>> w = model.blocks[0].mlp.out.weight.detach()  # fan_in 256: uniform in ±1/16
        >>> bool(w.abs().max() <= 1 / 16), round(float(w.std()), 3)
        (True, 0.036)
    """
    weights: dict[str, torch.Tensor] = model.state_dict(keep_vars=True)
    n_layers = sum(name.endswith(".attn.q.weight") for name in weights)
    with without_gradients():
        for layer in range(n_layers):
            p = f"blocks.{layer}"
            qkv = [weights[f"{p}.attn.{n}.weight"] for n in "qkv"]
            fused = uniform_like(torch.cat(qkv), generator)
            for weight, drawn in zip(qkv, fused.split([w.shape[0] for w in qkv]), strict=True):
                weight.copy_(drawn)
            for name in ("attn.o", "mlp.in", "mlp.out"):
                weight = weights[f"{p}.{name}.weight"]
                weight.copy_(uniform_like(weight, generator))
        unembed = weights["unembed.weight"]
        drawn = uniform_like(unembed, generator)
        unembed.copy_(drawn if rows is None else drawn[rows])


def uniform_like(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A new float32 tensor shaped as the linear ``weight`` (``[out, in]``), drawn from
    ``generator`` as ``nn.Linear`` initialises its weight (``kaiming_uniform_`` with ``a = √5``:
    uniform in ``±1/√in``).

    Example:
        >>> w = uniform_like(torch.empty(8, 4), torch.Generator().manual_seed(0))
        >>> bool(w.abs().max() <= 0.5)
        True
    """
    drawn = torch.empty(weight.shape, dtype=torch.float32)
    return nn.init.kaiming_uniform_(drawn, a=math.sqrt(5), generator=generator)


def init_authors(model: nn.Module, layout: TokenLayout, seed: int) -> None:
    """Draw every weight of a library ``model`` with a 64-token vocabulary as the authors'
    model draws its own after ``torch.manual_seed(seed)``: the token embedding N(0, 1) over
    their vocabulary, the position embedding N(0, 1), then :func:`init_linear_weights`; each
    library token takes the row of its authors' id (:func:`authors_token_ids`). Biases stay
    zero and norms one (the authors' model has no biases).

    Example:
        >>> from iteration_heads.model.transformer import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=16, max_len=2, d_vocab_=AUTHORS_VOCAB))
        >>> init_authors(model, TokenLayout.default(), seed=0)
        >>> _ = torch.manual_seed(0)  # the authors' model draws its token embedding first
        >>> first = nn.Embedding(AUTHORS_VOCAB, 16)
        >>> bool(torch.equal(model.embed.weight[11], first.weight[62]))  # EoI: their id 62
        True
    """
    rows = authors_token_ids(layout)
    weights: dict[str, torch.Tensor] = model.state_dict(keep_vars=True)
    embed = weights["embed.weight"]
    if embed.shape[0] != AUTHORS_VOCAB:
        raise IterationHeadsError(
            f"the model has a vocabulary of {embed.shape[0]}; the authors' initialisation "
            f"draws {AUTHORS_VOCAB} tokens (set d_vocab_={AUTHORS_VOCAB})"
        )
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    with without_gradients():
        for weight, order in ((embed, rows), (weights["pos_embed.weight"], None)):
            drawn = nn.init.normal_(torch.empty(weight.shape), generator=generator)
            weight.copy_(drawn if order is None else drawn[order])
    init_linear_weights(model, generator, rows=rows)


def authors_block_forward(
    block: Any,  # a TransformerLens NativeBlock (its ln1, attn, ln2, mlp are bridge components)
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor]:
    """The authors' block, as the forward of a TransformerLens native block: ``x = ln1(x);
    x = x + attn(x); x = x + mlp(ln2(x))``. The attention's skip path carries the normalised
    stream, the MLP's is pre-LN. :func:`~iteration_heads.model.transformer.build_model`
    installs it on every block of a ``residual="authors"`` model; ``hook_resid_pre`` is the
    block's input before renormalisation, ``blocks.L.ln1.hook_out`` the renormalised stream.

    Example:
        >>> from iteration_heads.model.transformer import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=16, max_len=2, residual="authors"))
        >>> x = torch.randn(1, 3, 16)
        >>> native = model.blocks[0].original_component
        >>> h = native.ln1(x); h = h + native.attn(h)[0]
        >>> bool(torch.allclose(native(x)[0], h + native.mlp(native.ln2(h)), atol=1e-6))
        True
    """
    hidden_states = block.ln1(hidden_states)
    attn_out, _pattern = block.attn(
        hidden_states, attention_mask=attention_mask, position_ids=position_ids
    )
    hidden_states = hidden_states + attn_out
    return (hidden_states + block.mlp(block.ln2(hidden_states)),)
