"""Noising check: the batched run equals hand-made hooks, the iteration head breaks the paper's
model when fed the corrupted input while the EoI head does not, and bad input is refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import gpt2

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import iteration_prompts
from iteration_heads.pathways.noising import noising_check


@pytest.fixture(scope="module")
def steps():
    data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=8))
    return iteration_prompts(data.test, data.layout, seed=3)


def hand_predictions(model, prompts, heads):
    """The clean run with ``heads`` given the corrupted run's hook_z, one hook per layer."""
    _, noisy = model.run_with_cache(prompts.corrupted, names_filter=lambda n: n.endswith("hook_z"))

    def noise(layer, chosen):
        def hook(z, hook):
            z = z.clone()
            z[:, :, chosen] = noisy[f"blocks.{layer}.attn.hook_z"][:, :, chosen]
            return z

        return hook

    layers = sorted({layer for layer, _ in heads})
    hooks = [
        (f"blocks.{la}.attn.hook_z", noise(la, [h for l2, h in heads if l2 == la])) for la in layers
    ]
    with torch.no_grad():
        logits = model.run_with_hooks(prompts.clean, fwd_hooks=hooks)
    return logits[torch.arange(len(prompts)), prompts.position].argmax(-1)


@pytest.mark.parametrize("which", ["polynomial_3x2", "gpt2"])
def test_batched_noising_equals_hand_made_hooks(which, steps) -> None:
    model = zoo.load(which) if which != "gpt2" else gpt2(n_layer=2, n_head=2)
    model.eval()
    prompts = steps.select(list(range(40)))
    heads = [(1, 0), (0, 1)] if which == "gpt2" else [(2, 1), (1, 0)]
    check = noising_check(model, prompts, heads, n_random=2, seed=5, batch_size=7)
    hand = hand_predictions(model, prompts, heads)
    assert check.accuracy == pytest.approx(float((hand == prompts.answer).float().mean()))
    for draw, accuracy in zip(check.random_heads, check.random_accuracy, strict=True):
        by_hand = hand_predictions(model, prompts, list(draw))
        assert float(accuracy) == pytest.approx(float((by_hand == prompts.answer).float().mean()))
    assert check.method == "noising" and "noising" in check.format()


def test_the_iteration_head_carries_the_input_and_the_eoi_head_does_not(steps) -> None:
    model = zoo.load("polynomial_paper")
    iteration = noising_check(model, steps, [(1, 0)], n_random=1)
    eoi = noising_check(model, steps, [(0, 0)], n_random=1)
    assert iteration.accuracy < 0.3 and iteration.breaks_more_than_every
    assert eoi.accuracy > 0.6 and not eoi.breaks_more_than_most
    assert iteration.full_accuracy == 1.0 and set(iteration.agreement_by_label) == set(steps.labels)


def test_bad_input_is_refused(steps) -> None:
    model = zoo.load("polynomial_paper")
    with pytest.raises(IterationHeadsError, match="needs corrupted prompts"):
        noising_check(model, dataclasses.replace(steps, corrupted=None), [(1, 0)])
    with pytest.raises(IterationHeadsError, match="only 0 other heads"):
        noising_check(model, steps, [(1, 0), (0, 0)])
    with pytest.raises(IterationHeadsError, match="n_random=0"):
        noising_check(model, steps, [(1, 0)], n_random=0)
    with pytest.raises(IterationHeadsError, match="prompts must be Prompts"):
        noising_check(model, steps.clean, [(1, 0)])
