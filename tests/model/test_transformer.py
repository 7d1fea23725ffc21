import pytest
import torch
from helpers import tiny_config

from iteration_heads import IterationHeadsError, ModelConfig, TokenLayout, build_model
from iteration_heads.model import count_parameters, model_config, paper_parameter_count


def test_defaults_are_the_papers_model():
    cfg = ModelConfig()
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_mlp, cfg.activation) == (
        2,
        1,
        128,
        512,
        "gelu",
    )
    assert cfg.n_ctx == 35 and cfg.d_vocab == TokenLayout.default().d_vocab
    model = build_model(ModelConfig(max_len=16))
    assert model.cfg.n_ctx == 35 and model.cfg.d_mlp == 512 and not model.training


def test_json_round_trip_and_errors():
    cfg = tiny_config(
        n_heads=2, positional="frozen", normalization="RMS", embedding_init="transformer_lens"
    )
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(IterationHeadsError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_experts": 3})
    with pytest.raises(IterationHeadsError, match="d_model=30 is not divisible by n_heads=4"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(IterationHeadsError, match="activation 'tanh'"):
        ModelConfig(activation="tanh")
    with pytest.raises(IterationHeadsError, match="not built by iteration_heads"):
        model_config(torch.nn.Linear(2, 2))


def test_vocabulary_and_context_overrides_for_tasks_outside_the_layout():
    cfg = tiny_config(d_vocab_=40, n_ctx_=61)
    model = build_model(cfg)
    assert (model.cfg.d_vocab, model.cfg.n_ctx) == (40, 61) and model.W_U.shape[-1] == 40
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.n_weights == sum(v.numel() for v in model.state_dict().values())
    # a config without overrides saves exactly as before they existed
    assert "d_vocab_" not in tiny_config().to_dict() and "n_ctx_" not in tiny_config().to_dict()
    with pytest.raises(IterationHeadsError, match="n_ctx_"):
        ModelConfig(n_ctx_=0)


def test_build_is_deterministic_and_seeded():
    a, b, c = (
        build_model(tiny_config()),
        build_model(tiny_config()),
        build_model(tiny_config(seed=1)),
    )
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.attn.q.weight"], sc["blocks.0.attn.q.weight"])


def test_embedding_init_and_frozen_positions():
    normal = build_model(tiny_config(d_model=128))
    tl = build_model(tiny_config(d_model=128, embedding_init="transformer_lens"))
    assert 0.9 < float(normal.embed.weight.detach().std()) < 1.1  # N(0, 1), PyTorch's default
    assert 0.9 < float(normal.pos_embed.weight.detach().std()) < 1.1
    assert float(tl.embed.weight.detach().std()) < 0.1  # TransformerLens: std 0.8/sqrt(d)
    frozen = build_model(tiny_config(positional="frozen", embedding_init="transformer_lens"))
    assert not frozen.pos_embed.weight.requires_grad
    assert 0.9 < float(frozen.pos_embed.weight.detach().std()) < 1.1
    n = count_parameters(frozen)
    assert count_parameters(frozen, trainable_only=True) == n - frozen.pos_embed.weight.numel()


def test_parameter_counts():
    # the authors' model at the sizes docs/paper.md §7 states
    assert paper_parameter_count(64, 8) == 108_032
    assert paper_parameter_count(128, 16) == 414_720
    # ours = theirs with our vocabulary, plus biases (4 attention + 2 MLP per layer, final LN bias,
    # and two LayerNorm biases per block)
    d, v, ctx = 64, 16, 19
    theirs = paper_parameter_count(d, 8, d_vocab=v)
    biases = 2 * (4 * d + 4 * d + d) + d + 2 * 2 * d
    assert count_parameters(build_model(ModelConfig(d_model=d, max_len=8))) == theirs + biases
    assert ctx == ModelConfig(max_len=8).n_ctx


def test_hooks_present():
    model = build_model(tiny_config())
    _, cache = model.run_with_cache(
        torch.zeros(1, 5, dtype=torch.long), names_filter=lambda n: n.endswith("hook_pattern")
    )
    assert sorted(cache.keys()) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]


def test_no_biases_means_zero_frozen_biases():
    model = build_model(tiny_config(biases=False))
    biases = {k: v for k, v in model.state_dict(keep_vars=True).items() if k.endswith(".bias")}
    assert biases and all(float(v.abs().max()) == 0 for v in biases.values())
    assert not any(v.requires_grad for v in biases.values())
    weights = count_parameters(model, trainable_only=True)
    assert weights == count_parameters(model) - sum(
        v.numel() for v in biases.values() if isinstance(v, torch.nn.Parameter)
    )
