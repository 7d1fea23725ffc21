"""Pruning curves and the ablation check: keeping every head agrees exactly, keeping none breaks
the shipped polynomial model, one mean-ablated pass equals a hand-written hook (native and
HuggingFace models), the named circuit breaks the task more than random heads, bad rankings and
references raise."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import gpt2, llama

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import Prompts, iteration_prompts
from iteration_heads.pathways.pruning import (
    AblationCheck,
    PruningCurve,
    ablation_check,
    pruned_logits,
    pruned_predictions,
    pruning_curve,
)
from iteration_heads.pathways.restoration import head_patching

TOL = 1e-6


@pytest.fixture(scope="module")
def data():
    return make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=8))


@pytest.fixture(scope="module")
def prompts(data):
    return iteration_prompts(data.test, data.layout)


@pytest.fixture(scope="module")
def reference(data):
    return data.train.tokens  # 64 other sequences of every length


@pytest.fixture(scope="module")
def polynomial():
    return zoo.load("polynomial_paper")


@pytest.fixture(scope="module")
def three_by_two():
    return zoo.load("polynomial_3x2")


@pytest.fixture(scope="module")
def curve(polynomial, prompts, reference):
    return pruning_curve(polynomial, prompts, [(1, 0), (0, 0)], reference, n_random=3)


# ---------------------------------------------------------------- 1. the curve's ends


def test_keeping_every_head_agrees_exactly_and_keeping_none_breaks_polynomial(curve, prompts):
    assert isinstance(curve, PruningCurve)
    assert curve.ks == (0, 1, 2)
    assert curve.agreement[-1].item() == 1.0  # the full model: not run, exactly itself
    assert torch.equal(curve.predictions[-1], curve.full_predictions)
    assert curve.random_agreement[-1].eq(1.0).all()
    assert curve.full_accuracy == 1.0
    assert curve.agreement[0].item() < 0.3  # measured 0.125: every head mean-ablated
    assert curve.agreement[1].item() < 0.7  # the iteration head alone: 0.51
    assert curve.random_agreement.shape == (3, 3)
    assert curve.random_std[0].item() == 0.0  # k = 0: every draw is the same
    assert curve.smallest_circuit() == (2, [(1, 0), (0, 0)])
    assert curve.smallest_circuit(0.45) == (1, [(1, 0)])  # measured 0.49
    assert torch.equal(curve.accuracy, curve.agreement)  # the full model is always right
    assert set(curve.agreement_by_label) == set(prompts.labels)
    assert curve.agreement_by_label["step 3"][-1].item() == 1.0


def test_random_draws_are_seeded(polynomial, prompts, reference, three_by_two):
    chosen = prompts.select(range(0, len(prompts), 4))
    ranking = [(lay, h) for lay in range(3) for h in range(2)]
    a = pruning_curve(three_by_two, chosen, ranking, reference, ks=[2, 4], n_random=4, seed=1)
    b = pruning_curve(three_by_two, chosen, ranking, reference, ks=[4, 2], n_random=4, seed=1)
    c = pruning_curve(three_by_two, chosen, ranking, reference, ks=[2, 4], n_random=4, seed=2)
    assert a.ks == b.ks == (2, 4)
    assert torch.equal(a.random_agreement, b.random_agreement)
    assert not torch.equal(a.random_agreement, c.random_agreement)
    assert torch.equal(a.agreement, c.agreement)  # the ranked curve has no randomness


# ---------------------------------------------------------------- 2. equal to a hand-written hook


def random_prompts(d_vocab: int, n: int = 10, width: int = 12) -> Prompts:
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, d_vocab, (n, width), generator=g)
    position = torch.randint(2, width, (n,), generator=g)
    answer = torch.randint(0, d_vocab, (n,), generator=g)
    labels = tuple("ab"[i % 2] for i in range(n))
    return Prompts(clean, None, position, answer, torch.zeros_like(clean), ("s",), labels)


@pytest.mark.parametrize("which", ["polynomial_3x2", "gpt2", "llama"])
def test_one_mean_ablated_pass_equals_a_hand_computation(which, prompts, reference):
    if which == "polynomial_3x2":
        model = zoo.load(which)
        chosen = prompts.select(range(0, len(prompts), 5))
        ref = reference
    else:
        model = gpt2(n_layer=3) if which == "gpt2" else llama(n_layers=3)
        chosen = random_prompts(model.cfg.d_vocab)
        ref = torch.randint(0, model.cfg.d_vocab, (7, 14), generator=torch.Generator())
    keep = [(1, 1), (0, 0), (2, 1)]
    model = model.double().eval()  # float64: the comparison holds to 1e-6 on any CPU
    width = chosen.clean.shape[1]
    with torch.no_grad():
        _, cache = model.run_with_cache(
            ref[:, :width], names_filter=lambda name: name.endswith("attn.hook_z")
        )
    hooks = []
    for layer in range(3):
        mean = cache[f"blocks.{layer}.attn.hook_z"].mean(0)  # pos head d_head

        def hook(z, hook, layer=layer, mean=mean):
            z = z.clone()
            for head in range(2):
                if (layer, head) not in keep:
                    z[:, :, head] = mean[: z.shape[1], head]
            return z

        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    with torch.no_grad():
        logits = model.run_with_hooks(chosen.clean, fwd_hooks=hooks)
        full = model(chosen.clean)
    rows = torch.arange(len(chosen))
    hand = logits[rows, chosen.position]
    ours = pruned_logits(model, chosen, keep, ref, batch_size=4)
    scale = max(1.0, float(hand.abs().max()))  # float32 logits: 1e-6 of their scale
    assert torch.allclose(ours, hand, atol=TOL * scale)
    others = [h for h in [(lay, h) for lay in range(3) for h in range(2)] if h not in keep]
    curve = pruning_curve(model, chosen, keep + others, ref, ks=[3], n_random=1, batch_size=7)
    assert torch.equal(curve.predictions[0], hand.argmax(-1))
    agreement = (hand.argmax(-1) == full[rows, chosen.position].argmax(-1)).float().mean()
    assert curve.agreement[0].item() == pytest.approx(agreement.item())


# ---------------------------------------------------------------- 3. the causal check


def test_ablating_the_iteration_head_breaks_polynomial(polynomial, prompts, reference):
    check = ablation_check(polynomial, prompts, [(1, 0)], reference, n_random=4)
    assert isinstance(check, AblationCheck)
    assert check.agreement < 0.5  # measured 0.40
    assert check.full_accuracy == 1.0
    assert check.random_heads == (((0, 0),),) * 4  # the only other head
    assert check.breaks_more_than_every  # the EoI head alone: 0.51
    assert set(check.agreement_by_label) == set(prompts.labels)
    assert "breaks the task more than every random draw" in check.format()
    assert repr(check) == check.format() and "<script" not in check._repr_html_()


def test_the_circuit_of_the_3x2_model_breaks_it_more_than_random_heads(
    three_by_two, prompts, reference
):
    chosen = prompts.select(range(0, len(prompts), 2))
    iteration = sorted(head_patching(three_by_two, chosen).top(2))
    assert iteration == [(1, 0), (1, 1)]  # detect's iteration heads, fed by EoI heads L0H0+L0H1
    eoi = [(0, 0), (0, 1)]
    check = ablation_check(three_by_two, chosen, iteration, reference, n_random=10, seed=3)
    assert all(not set(draw) & set(iteration) for draw in check.random_heads)
    assert all(len(draw) == 2 for draw in check.random_heads)
    assert check.breaks_more_than_most  # measured: 8 of 10 draws keep more agreement
    # the draws that break it as much are the other half of the circuit, the EoI heads:
    # every draw outside the detected circuit keeps more agreement (0.67..0.90 against 0.56)
    for draw, value in zip(check.random_heads, check.random_agreement.tolist(), strict=True):
        assert (value > check.agreement) == (list(draw) != eoi), draw
    assert eoi in [list(d) for d in check.random_heads]
    assert not check.breaks_more_than_every
    assert check.p_value == pytest.approx(3 / 11)
    # a head outside the circuit does not break it more than single random heads
    control = ablation_check(three_by_two, chosen, [(2, 0)], reference, n_random=10, seed=3)
    assert control.agreement > 0.9 and not control.breaks_more_than_most
    data = json.loads(check.to_json())
    assert data["heads"] == [[1, 0], [1, 1]] and len(data["random_agreement"]) == 10


# ---------------------------------------------------------------- 4. views and errors


def test_result_views(curve):
    frame = curve.to_frame()
    assert list(frame["k"]) == [0, 1, 2]
    assert frame["agreement"].tolist() == pytest.approx(curve.agreement.tolist())
    data = json.loads(curve.to_json())
    assert data["smallest_circuit_0.9"] == [[1, 0], [0, 0]]
    assert data["agreement"][-1] == 1.0
    assert "smallest circuit at 0.9 agreement: 2 heads (L1H0+L0H0)" in curve.format()
    assert repr(curve) == curve.format() and "<script" not in curve._repr_html_()
    with pytest.raises(IterationHeadsError, match="threshold=2"):
        curve.smallest_circuit(2)


def test_bad_rankings_and_references_raise(polynomial, prompts, reference):
    chosen = prompts.select(range(6))
    ok = [(1, 0), (0, 0)]
    for ranking, message in (
        ([(1, 0)], "L0H0 missing"),
        ([(1, 0), (0, 0), (1, 0)], "L1H0 repeated"),
        ([(1, 0), (0, 0), (2, 0)], r"head \(layer=2, head=0\) does not exist"),
        ("L1H0", "expected a list"),
    ):
        with pytest.raises(IterationHeadsError, match=message):
            pruning_curve(polynomial, chosen, ranking, reference)
    with pytest.raises(IterationHeadsError, match=r"at least as wide as the prompts"):
        pruning_curve(polynomial, chosen, ok, reference[:, :10])
    with pytest.raises(IterationHeadsError, match="reference must hold integers"):
        pruning_curve(polynomial, chosen, ok, reference.float())
    with pytest.raises(IterationHeadsError, match=r"reference token id \d+ outside"):
        pruning_curve(polynomial, chosen, ok, reference + 16)
    with pytest.raises(IterationHeadsError, match=r"ks \[3\]"):
        pruning_curve(polynomial, chosen, ok, reference, ks=[3])
    with pytest.raises(IterationHeadsError, match="n_random=0"):
        pruning_curve(polynomial, chosen, ok, reference, n_random=0)
    with pytest.raises(IterationHeadsError, match="prompts must be Prompts"):
        pruning_curve(polynomial, chosen.clean, ok, reference)
    with pytest.raises(IterationHeadsError, match="only 0 other heads"):
        ablation_check(polynomial, chosen, ok, reference)
    with pytest.raises(IterationHeadsError, match="does not exist"):
        ablation_check(polynomial, chosen, [(0, 3)], reference)


def test_many_kept_sets_at_once_equal_one_at_a_time():
    model = zoo.load("polynomial_3x2")
    data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=4))
    prompts = iteration_prompts(data.test, data.layout)
    keeps = [[(0, 0), (1, 1), (2, 1)], [], [(2, 0)]]
    together = pruned_predictions(model, prompts, keeps, data.train.tokens, batch_size=50)
    for row, keep in zip(together, keeps, strict=True):
        alone = pruned_logits(model, prompts, keep, data.train.tokens).argmax(-1)
        assert torch.equal(row, alone)
