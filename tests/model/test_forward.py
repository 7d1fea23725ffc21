import pytest
import torch
from helpers import tiny_config

from iteration_heads import build_model
from iteration_heads.model import Weights, forward


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"n_heads": 2},
        {"n_layers": 3, "n_heads": 2, "activation": "relu"},
        {"normalization": "RMS"},
        {"normalization": "LNPre", "activation": "gelu_new"},
        {"normalization": None, "activation": "silu"},
        {"n_layers": 1, "positional": "frozen", "embedding_init": "transformer_lens"},
    ],
)
def test_matches_the_bridge(changes):
    cfg = tiny_config(**changes)
    model = build_model(cfg)
    tokens = torch.randint(
        0, cfg.d_vocab, (3, cfg.n_ctx), generator=torch.Generator().manual_seed(0)
    )
    logits, patterns = forward(Weights.of(model, cfg), tokens, return_patterns=True)
    fused, _ = forward(Weights.of(model, cfg), tokens)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    expected = model(tokens)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(fused, expected, atol=1e-5)
    for layer, pattern in enumerate(patterns):
        assert torch.allclose(pattern, cache[f"blocks.{layer}.attn.hook_pattern"], atol=1e-6)


def test_gradients_reach_the_bridge_and_dropout_acts():
    cfg = tiny_config()
    model = build_model(cfg)
    tokens = torch.randint(0, cfg.d_vocab, (2, 9))
    weights = Weights.of(model, cfg)
    logits, _ = forward(weights, tokens)
    logits.sum().backward()
    assert model.blocks[0].attn.q.weight.grad is not None
    torch.manual_seed(0)
    a, _ = forward(weights, tokens, embedding_dropout=0.5)
    torch.manual_seed(0)
    b, _ = forward(weights, tokens, embedding_dropout=0.5)
    assert torch.equal(a, b) and not torch.allclose(a, logits)
