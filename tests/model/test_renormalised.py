"""The renormalised block (ModelConfig(residual="renormalised"): renormalised before the
attention and before the MLP; the authors' own block renormalises before the attention only,
test_authors_model.py): the bridge, its hooks, the training forward and the analyses agree on
what it computes."""

import pytest
import torch
from helpers import renormalising_by_hand, tiny_config, tiny_data

from iteration_heads import IterationHeadsError, Probes, TrainConfig, build_model, detect, train
from iteration_heads.interventions import path_patch
from iteration_heads.model import Weights, additive_residual, forward, load, model_config, save

NORMALIZATIONS = ["LN", "LNPre", "RMS"]


def perturbed(config):
    """A model whose norms and biases are not at their initial values (so a forward that skipped
    a weight, or applied a norm twice, would show)."""
    model = build_model(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and ("ln" in name or name.endswith(".bias")):
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return model


def by_hand(model, tokens):
    return renormalising_by_hand(model, tokens, before_mlp=True)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_bridge_training_forward_and_hand_computation_agree(normalization):
    config = tiny_config(residual="renormalised", normalization=normalization, seed=2)
    model = perturbed(config)
    tokens = torch.randint(0, config.d_vocab, (3, config.n_ctx))
    bridge = model(tokens)
    trained, patterns = forward(Weights.of(model, config), tokens, return_patterns=True)
    assert torch.allclose(bridge, by_hand(model, tokens), atol=1e-5)
    assert torch.allclose(trained, bridge, atol=1e-5)
    # the same weights in the pre-LN block compute something else
    standard = build_model(tiny_config(normalization=normalization, seed=2))
    standard.load_state_dict(model.state_dict())
    assert (standard(tokens) - bridge).abs().max() > 0.1
    # the bridge's hooks see the renormalised block: patterns, and the stream before each norm
    names = ["blocks.1.attn.hook_pattern", "blocks.0.ln1.hook_out", "blocks.0.hook_attn_out",
             "blocks.0.hook_resid_mid", "blocks.0.hook_resid_pre", "hook_embed", "hook_pos_embed"]  # fmt: skip
    _, cache = model.run_with_cache(tokens, names_filter=names)
    assert torch.allclose(cache["blocks.1.attn.hook_pattern"], patterns[1], atol=1e-6)
    renormalised = cache["blocks.0.ln1.hook_out"]
    attn_out = cache["blocks.0.hook_attn_out"]
    assert torch.allclose(cache["blocks.0.hook_resid_mid"], renormalised + attn_out, atol=1e-5)
    assert torch.allclose(cache["blocks.0.hook_resid_pre"], cache["hook_embed"] +
                          cache["hook_pos_embed"], atol=1e-6)  # fmt: skip


def test_round_trip_training_and_detection(tmp_path):
    config = tiny_config(residual="renormalised", biases=False)
    assert model_config(build_model(config)).to_dict()["residual"] == "renormalised"
    assert "residual" not in tiny_config().to_dict()  # older configs keep their keys
    data = tiny_data("copy", n_train=512, n_test=256)
    model = build_model(config)
    recipe = TrainConfig(epochs=12, eval_every=4, batch_size=64, lr=1e-3)
    history = train(model, data, recipe, progress=False)
    assert history[-1]["test"]["summary"]["accuracy"] == 1.0
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    tokens = data.test.tokens[:4]
    assert torch.equal(loaded(tokens), model(tokens))
    assert not additive_residual(loaded)
    # detection reads the bridge's patterns; training scored the plain forward's: they agree
    report = detect(loaded, Probes.from_split(data.test))
    logged = history[-1]["test"]["summary"]["iteration_peakiness"]
    assert report.heads["iteration_peakiness"].tolist() == pytest.approx(logged, abs=1e-6)
    assert logged[1] == 1.0  # the copy head reads x_t at every step


def test_additive_analyses_refuse_with_one_line_and_bad_configs():
    model = build_model(tiny_config(residual="renormalised"))
    data = tiny_data(max_len=6, n_train=8, n_test=8).test
    data = data.select(data.lengths >= 2)
    with pytest.raises(IterationHeadsError, match=r"^path patching reads the residual stream"):
        path_patch(model, data, data, sender=(0, 0), receiver=(1, 0))
    with pytest.raises(IterationHeadsError, match="residual 'post-LN', expected one of"):
        tiny_config(residual="post-LN")
    with pytest.raises(IterationHeadsError, match="needs a normalisation"):
        tiny_config(residual="renormalised", normalization=None)


def test_the_audit_leaves_out_the_route_of_a_renormalised_model():
    from dataclasses import replace

    from iteration_heads import audit, zoo

    model = zoo.load("polynomial_paper")
    full = audit(model, n_probes=64)
    assert full.route is not None and full.has_iteration_heads
    # the same weights labelled renormalised: the route (path patching) is left out, the rest runs
    model._iteration_heads_config = replace(model_config(model), residual="renormalised")
    renormalised = audit(model, n_probes=64)
    assert renormalised.route is None
    assert renormalised.has_iteration_heads and renormalised.ablation is not None
