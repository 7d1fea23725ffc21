"""Mean ablation over a reference with padding: per-position and whole-sequence means equal hand
computations with padding kept out, the pruned runs use them, and variants that keep every
head (an empty selection of heads to ablate) run without error."""

from __future__ import annotations

import pytest
import torch

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import (
    ablation_check,
    all_heads,
    iteration_prompts,
    pruned_logits,
    pruned_predictions,
    pruning_curve,
)
from iteration_heads.pathways.reference import reference_means


@pytest.fixture(scope="module")
def model():
    return zoo.load("polynomial_3x2")


@pytest.fixture(scope="module")
def setup():
    data = make_dataset(DataConfig(max_len=6, n_train=8, n_test=2))
    prompts = iteration_prompts(data.test, data.layout)
    g = torch.Generator().manual_seed(0)
    reference = torch.randint(0, 16, (5, prompts.clean.shape[1]), generator=g)
    mask = torch.ones(reference.shape, dtype=torch.bool)
    mask[0, 4:] = mask[1, 2:] = mask[3, 7:] = False  # right padding of different lengths
    mask[:, -1] = False  # the last position: no real token anywhere
    reference[~mask] = 15  # padding tokens
    return prompts, reference, mask


def hand_z(model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    return cache[f"blocks.{layer}.attn.hook_z"].double()  # m pos head d_head


def test_both_means_equal_hand_computations_with_padding_out(model, setup):
    _, reference, mask = setup
    width = reference.shape[1]
    by_position = reference_means(model, reference, reference_mask=mask)
    whole = reference_means(model, reference, mean="sequence", reference_mask=mask)
    for layer in range(3):
        z = hand_z(model, reference, layer)
        real = [(i, p) for i in range(len(reference)) for p in range(width) if mask[i, p]]
        sequence = sum(z[i, p] for i, p in real) / len(real)
        for p in range(width):
            rows = [i for i in range(len(reference)) if mask[i, p]]
            expected = sum(z[i, p] for i in rows) / len(rows) if rows else sequence
            assert torch.allclose(by_position[layer][p].double(), expected, atol=1e-6)
            assert torch.allclose(whole[layer][p].double(), sequence, atol=1e-6)
    # padding changes nothing once masked out; unmasked it enters the means
    repadded = reference.clone()
    repadded[~mask] = 3
    again = reference_means(model, repadded, reference_mask=mask)
    assert torch.allclose(again[1], by_position[1], atol=1e-6)
    unmasked = reference_means(model, reference)
    assert not torch.allclose(unmasked[1][2], by_position[1][2], atol=1e-4)


def test_pruned_runs_ablate_with_the_chosen_means(model, setup):
    prompts, reference, mask = setup
    chosen = prompts.select(range(6))
    whole = reference_means(model, reference, mean="sequence", reference_mask=mask)
    cut = int(chosen.position.max()) + 1
    hooks = [
        (
            f"blocks.{layer}.attn.hook_z",
            lambda z, hook, m=whole[layer]: m[: z.shape[1]].expand_as(z),
        )
        for layer in range(3)
    ]
    with torch.no_grad():
        hand = model.run_with_hooks(chosen.clean[:, :cut], fwd_hooks=hooks)
    hand = hand[torch.arange(6), chosen.position]
    got = pruned_logits(model, chosen, [], reference, mean="sequence", reference_mask=mask)
    assert torch.allclose(got, hand, atol=1e-5)
    # the sequence mean needs no reference as wide as the prompts
    narrow = pruned_logits(model, chosen, [], reference[:, :3], mean="sequence")
    assert narrow.shape == got.shape
    curve = pruning_curve(model, chosen, all_heads(model), reference, ks=[0, 6], n_random=1,
                          mean="sequence", reference_mask=mask)  # fmt: skip
    assert float(curve.agreement[-1]) == 1.0
    top = pruned_predictions(model, chosen, [[]], reference, mean="sequence", reference_mask=mask)
    assert torch.equal(top[0], hand.argmax(-1))


def test_variants_that_keep_every_head_run_nothing_and_do_not_fail(model, setup):
    prompts, reference, _ = setup
    chosen = prompts.select(range(6))
    with torch.no_grad():
        full = model(chosen.clean)[torch.arange(6), chosen.position].argmax(-1)
    top = pruned_predictions(model, chosen, [all_heads(model)], reference)  # raised IndexError
    assert torch.equal(top, full[None])
    twice = pruned_predictions(model, chosen, [all_heads(model), all_heads(model)[::-1]], reference)
    assert torch.equal(twice, full[None].repeat(2, 1))
    curve = pruning_curve(model, chosen, all_heads(model), reference, ks=[6], n_random=2)
    assert curve.n_forward == 0 and float(curve.agreement[0]) == 1.0
    check = ablation_check(model, chosen, [(0, 0)], reference, n_random=2)
    assert 0.0 <= check.agreement <= 1.0


def test_bad_means_and_masks_raise(model, setup):
    prompts, reference, mask = setup
    chosen = prompts.select(range(2))
    bad = [
        ({"mean": "median"}, "mean='median', expected one of"),
        ({"reference_mask": mask.int()}, "reference_mask of type torch.int32"),
        ({"reference_mask": mask[:, :3]}, "reference_mask of shape"),
        ({"reference_mask": torch.zeros_like(mask)}, "no position as a real token"),
    ]
    for kw, message in bad:
        with pytest.raises(IterationHeadsError, match=message):
            pruned_logits(model, chosen, [], reference, **kw)
    with pytest.raises(IterationHeadsError, match="at least as wide as the prompts"):
        pruned_logits(model, chosen, [], reference[:, :3])
