"""The authors' model on the bridge: their block (ModelConfig(residual="authors")) and their
initialisation (weight_init="pytorch" draws as nn.Linear does; weight_init="authors" draws every
weight as their model does after torch.manual_seed(seed)), checked against plain PyTorch."""

import math

import pytest
import torch
from helpers import renormalising_by_hand, tiny_config, tiny_data
from torch import nn

from iteration_heads import IterationHeadsError, TrainConfig, build_model, train
from iteration_heads.model import (
    Weights,
    additive_residual,
    check_additive_residual,
    forward,
    load,
    model_config,
    save,
)
from iteration_heads.model.authors import AUTHORS_VOCAB, authors_token_ids
from iteration_heads.tasks import TokenLayout


def by_hand(model, tokens):
    return renormalising_by_hand(model, tokens, before_mlp=False)


@pytest.mark.parametrize("normalization", ["LN", "LNPre", "RMS"])
def test_the_authors_block_bridge_training_forward_and_hand_computation_agree(normalization):
    config = tiny_config(residual="authors", normalization=normalization, seed=1)
    model = build_model(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # norms and biases off their initial values: a skipped one would show
        for name, param in model.named_parameters():
            if "ln" in name or name.endswith(".bias"):
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    tokens = torch.randint(0, config.d_vocab, (3, config.n_ctx))
    bridge = model(tokens)
    trained, patterns = forward(Weights.of(model, config), tokens, return_patterns=True)
    assert torch.allclose(bridge, by_hand(model, tokens), atol=1e-5)
    assert torch.allclose(trained, bridge, atol=1e-5)
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.1.attn.hook_pattern"])
    assert torch.allclose(cache["blocks.1.attn.hook_pattern"], patterns[1], atol=1e-6)
    # the same weights in the pre-LN and the fully renormalised blocks compute something else
    for residual in ("pre-LN", "renormalised"):
        other = build_model(tiny_config(residual=residual, normalization=normalization, seed=1))
        other.load_state_dict(model.state_dict())
        assert (other(tokens) - bridge).abs().max() > 0.01


def authors_draws(d_model, n_ctx, n_layers, seed):
    """The authors' model's weights in their draw order (embeddings, then per layer the fused
    q/k/v, the attention output, the MLP in and out; then the unembedding), made with plain
    PyTorch modules after torch.manual_seed(seed), as their model keeps PyTorch's defaults."""
    torch.manual_seed(seed)
    d = d_model
    drawn = {"tok": nn.Embedding(AUTHORS_VOCAB, d).weight, "pos": nn.Embedding(n_ctx, d).weight}
    for layer in range(n_layers):
        shapes = {"qkv": (d, 3 * d), "o": (d, d), "in": (d, 4 * d), "out": (4 * d, d)}
        for name, (fan_in, fan_out) in shapes.items():
            drawn[f"{layer}.{name}"] = nn.Linear(fan_in, fan_out, bias=False).weight
    drawn["unembed"] = nn.Linear(d, AUTHORS_VOCAB, bias=False).weight
    return {k: v.detach() for k, v in drawn.items()}


@pytest.mark.parametrize("seed", [0, 3])
def test_authors_init_gives_the_authors_weights_for_the_same_seed(seed):
    config = tiny_config(weight_init="authors", d_vocab_=AUTHORS_VOCAB, biases=False, seed=seed)
    w = build_model(config).state_dict()
    theirs = authors_draws(config.d_model, config.n_ctx, config.n_layers, seed)
    ids = authors_token_ids(config.layout)  # library token i is their token ids[i]
    assert torch.equal(w["embed.weight"], theirs["tok"][ids])
    assert torch.equal(w["pos_embed.weight"], theirs["pos"])
    assert torch.equal(w["embed.weight"][config.layout.eoi], theirs["tok"][62])
    for layer in range(config.n_layers):
        p = f"blocks.{layer}"
        qkv = torch.cat([w[f"{p}.attn.{n}.weight"] for n in "qkv"])
        assert torch.equal(qkv, theirs[f"{layer}.qkv"])
        assert torch.equal(w[f"{p}.attn.o.weight"], theirs[f"{layer}.o"])
        assert torch.equal(w[f"{p}.mlp.in.weight"], theirs[f"{layer}.in"])
        assert torch.equal(w[f"{p}.mlp.out.weight"], theirs[f"{layer}.out"])
        assert torch.equal(w[f"{p}.ln1.weight"], torch.ones(config.d_model))
    assert torch.equal(w["unembed.weight"], theirs["unembed"][ids])
    assert all(not v.any() for k, v in w.items() if k.endswith(".bias"))


def test_pytorch_init_draws_the_linear_weights_as_nn_linear_and_keeps_the_embeddings():
    config = tiny_config(d_model=64, max_len=8, weight_init="pytorch", seed=2)
    default = build_model(tiny_config(d_model=64, max_len=8, seed=2)).state_dict()
    w = build_model(config).state_dict()
    for name in ("embed.weight", "pos_embed.weight"):
        assert torch.equal(w[name], default[name])  # only the linear weights change
    fan_ins = {"attn.q": 64, "attn.o": 64, "mlp.in": 64, "mlp.out": 256}
    for layer in range(2):
        for name, fan_in in fan_ins.items():
            weight = w[f"blocks.{layer}.{name}.weight"]
            assert weight.abs().max() <= 1 / math.sqrt(fan_in)
            assert weight.std() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)
    assert w["unembed.weight"].abs().max() <= 1 / 8
    # TransformerLens's init: N(0, 0.8/sqrt(d)) = 0.1, output projections 0.1/sqrt(2·n_layers)
    assert default["blocks.0.attn.q.weight"].std() == pytest.approx(0.1, rel=0.05)
    assert default["blocks.0.mlp.out.weight"].std() == pytest.approx(0.05, rel=0.05)


def test_configs_keep_their_keys_and_bad_values_are_refused_in_one_line():
    assert {"residual", "weight_init"}.isdisjoint(tiny_config().to_dict())
    config = tiny_config(residual="authors", weight_init="authors", d_vocab_=AUTHORS_VOCAB)
    assert config.to_dict()["weight_init"] == "authors"
    assert type(config).from_dict(config.to_dict()) == config
    cases = {
        "weight_init 'xavier', expected one of": {"weight_init": "xavier"},
        "set d_vocab_=64": {"weight_init": "authors"},
        "expected 'normal'": {
            "weight_init": "authors",
            "d_vocab_": 64,
            "embedding_init": "transformer_lens",
        },
        "the authors' block needs a normalisation": {"residual": "authors", "normalization": None},
    }
    for message, changes in cases.items():
        with pytest.raises(IterationHeadsError, match=message) as err:
            tiny_config(**changes)
        assert "\n" not in str(err.value)
    with pytest.raises(IterationHeadsError, match=r"no token for tasks \['add3'\]"):
        authors_token_ids(TokenLayout(("polynomial", "add3"), n_symbols=11))
    with pytest.raises(IterationHeadsError, match="60 data symbols; the authors' vocabulary"):
        authors_token_ids(TokenLayout(("polynomial",), n_symbols=60))


def test_an_authors_model_trains_saves_and_refuses_additive_analyses(tmp_path):
    config = tiny_config(residual="authors", biases=False, weight_init="authors",
                         d_vocab_=AUTHORS_VOCAB)  # fmt: skip
    model = build_model(config)
    data = tiny_data("copy", n_train=256, n_test=64, score_padding=True)
    recipe = TrainConfig(epochs=2, eval_every=1, batch_size=64, lr=1e-3, batch_order="sorted")
    history = train(model, data, recipe, progress=False)
    assert history[-1]["train_loss"] < history[1]["train_loss"]
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert model_config(loaded) == config
    assert torch.equal(loaded(data.test.tokens[:4]), model(data.test.tokens[:4]))
    assert not additive_residual(loaded)
    with pytest.raises(IterationHeadsError, match=r"residual='authors' \(every block renormalises "
                                                  r"the stream before its attention\)"):  # fmt: skip
        check_additive_residual(loaded, "path patching")
