"""``activation_at``: a pass stopped at one hook gives that hook's value of a whole pass, runs
nothing after it, resumes from a residual stream, and leaves no hook behind."""

from __future__ import annotations

import pytest
import torch

from iteration_heads import IterationHeadsError, ModelConfig, build_model
from iteration_heads.passes import activation_at


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(d_model=32, max_len=4, n_layers=3, n_heads=2)).eval()


def test_the_value_is_a_whole_passs_and_nothing_after_it_runs(model) -> None:
    tokens = torch.randint(0, 16, (3, 11))
    _, cache = model.run_with_cache(tokens)
    fired: list[int] = []
    model.blocks[2].register_forward_pre_hook(lambda m, a: fired.append(1))
    try:
        got = activation_at(model, tokens, "blocks.1.attn.hook_pattern")
    finally:
        model.blocks[2]._forward_pre_hooks.clear()
    assert torch.allclose(got, cache["blocks.1.attn.hook_pattern"], atol=1e-6)
    assert fired == []  # block 2 never ran
    resumed = activation_at(model, cache["blocks.2.hook_resid_pre"], "blocks.2.hook_resid_mid",
                            start_at_layer=2)  # fmt: skip
    assert torch.allclose(resumed, cache["blocks.2.hook_resid_mid"], atol=1e-5)
    assert not any(hp._forward_hooks for hp in model.hook_dict.values())  # none left behind


def test_a_hook_that_never_fires_is_one_line(model) -> None:
    tokens = torch.randint(0, 16, (1, 11))
    with pytest.raises(
        IterationHeadsError, match="did not fire the hook 'blocks.0.attn.hook_pattern'"
    ):
        resid = torch.randn(1, 11, 32)  # block 0 passes its input through: its pattern never fires
        activation_at(model, resid, "blocks.0.attn.hook_pattern", start_at_layer=1)
    assert activation_at(model, tokens, "blocks.0.hook_resid_pre").shape == (1, 11, 32)
