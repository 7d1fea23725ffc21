import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import gpt2, tiny_data, tiny_model, trained_gpt2

import iteration_heads.zoo
from iteration_heads import (
    IterationHeadsError,
    ablate,
    ablation_effect,
    activation_patching,
    audit,
    corrupt,
    detect,
    patch_pattern,
    path_patch,
    pattern_effect,
    position_shift,
    verify,
)
from iteration_heads.detection import spread_over_lengths
from iteration_heads.interventions import as_batch, ideal_pattern
from iteration_heads.model import load
from iteration_heads.tasks import DataConfig, make_dataset

ZOO = Path(iteration_heads.zoo.__file__).parent
FIXTURES = Path(__file__).parent / "fixtures"
TOL = 1e-6


@pytest.fixture(scope="module")
def polynomial():
    return load(ZOO / "polynomial_paper")


@pytest.fixture(scope="module")
def test_split():
    split = make_dataset(DataConfig(task="polynomial", max_len=8)).test
    return split.select(spread_over_lengths(split.lengths, 512, 0))


def attached(model) -> int:
    """Forward hooks on the model's hook points (TransformerLens handles and torch hooks)."""
    return sum(len(hp.fwd_hooks) + len(hp._forward_hooks) for hp in model.hook_dict.values())


def run(model, tokens, hooks=()):
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=list(hooks))


# ---------------------------------------------------------------- 1. equal to hand-written hooks


@pytest.mark.parametrize("kind", ["zero", "mean", "resample"])
def test_ablation_equals_a_hand_written_hook(kind):
    model = tiny_model(n_heads=2, max_len=6)
    data = tiny_data(max_len=6).test
    tokens, reference = data.tokens[:8], data.tokens[8:24]
    positions = [2, 5, 7]
    with ablate(model, [(1, 1)], kind=kind, positions=positions, reference=reference, seed=3):
        ablated = run(model, tokens)
    _, cache = model.run_with_cache(reference, names_filter=lambda n: n == "blocks.1.attn.hook_z")
    ref_z = cache["blocks.1.attn.hook_z"]
    generator = torch.Generator().manual_seed(3)
    offset = torch.randint(1, len(reference), (len(tokens),), generator=generator)

    def hand(z, hook):
        z = z.clone()
        for p in positions:
            if kind == "zero":
                z[:, p, 1] = 0
            elif kind == "mean":
                z[:, p, 1] = ref_z[:, p, 1].mean(0)
            else:
                z[:, p, 1] = ref_z[(torch.arange(len(tokens)) + offset) % len(reference), p, 1]
        return z

    expected = run(model, tokens, [("blocks.1.attn.hook_z", hand)])
    assert (ablated - expected).abs().max() < TOL
    assert (ablated - run(model, tokens)).abs().max() > 1e-3
    assert attached(model) == 0


def test_ablation_effect_scores_the_cot_positions():
    model = tiny_model(max_len=6)
    split = tiny_data(max_len=6).test
    effect = ablation_effect(model, [(0, 0)], split, kind="zero")
    logits = run(model, split.tokens, [("blocks.0.attn.hook_z", lambda z, hook: z * 0)])
    scored = split.targets != -100
    right = (logits.argmax(-1) == split.targets) | ~scored
    assert torch.equal(effect.intervened.accuracy, right.all(1).float())
    ce = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), split.targets, ignore_index=-100, reduction="none"
    )
    assert (effect.intervened.loss - ce.sum(1) / scored.sum(1)).abs().max() < TOL
    correct = logits.gather(-1, split.targets.clamp(min=0)[..., None])[..., 0]
    other = logits.scatter(-1, split.targets.clamp(min=0)[..., None], -1e9).amax(-1)
    diff = ((correct - other) * scored).sum(1) / scored.sum(1)
    assert (effect.intervened.logit_diff - diff).abs().max() < TOL


@pytest.mark.parametrize("kind", ["iteration", "eoi", "uniform", "random"])
def test_planted_patterns_equal_a_hand_written_hook(kind):
    model = tiny_model(max_len=6)
    split = tiny_data(max_len=6).test.for_length(5)
    width = split.tokens.shape[1]
    with patch_pattern(model, (1, 0), kind, lengths=split.lengths, seed=1):
        planted = run(model, split.tokens)
    L = 5

    def hand(p, hook):
        p = p.clone()
        for q in range(width):
            if kind == "iteration" and L < q <= 2 * L:
                p[:, 0, q] = 0
                p[:, 0, q, q - L] = 1
            elif kind == "eoi" and L + 2 <= q <= 2 * L + 1:
                p[:, 0, q] = 0
                p[:, 0, q, L + 1] = 1
            elif kind == "uniform" and L + 1 <= q <= 2 * L + 1:
                p[:, 0, q] = 0
                p[:, 0, q, : q + 1] = 1 / (q + 1)
        return p

    if kind == "random":  # rows L+1..2L+1 are random causal distributions; other rows untouched
        pattern, rows = ideal_pattern("random", split.lengths, width, seed=1)
        assert torch.allclose(pattern[rows].sum(-1), torch.ones(int(rows.sum())))
        assert (pattern.triu(1) == 0).all()
        hand = lambda p, hook: torch.where(rows[:, None, :, None], pattern[:, None], p)  # noqa: E731
    expected = run(model, split.tokens, [("blocks.1.attn.hook_pattern", hand)])
    assert (planted - expected).abs().max() < TOL
    assert attached(model) == 0


def test_activation_patching_equals_hand_written_hooks_and_transformer_lens():
    model = tiny_model(max_len=6, n_heads=2)
    split = tiny_data(max_len=6).test
    clean = split.select(spread_over_lengths(split.lengths, 24, 0))
    bad = corrupt(clean, "input", task="polynomial", seed=1)
    fast = activation_patching(model, clean, bad, metric="logprob", batch_size=100)
    assert fast.values.shape == (2, clean.tokens.shape[1], 2)
    assert 1 < fast.n_forward <= -(-2 * clean.tokens.shape[1] * 2 * 24 // 100)
    reference = activation_patching(model, clean, bad, metric="logprob", method="transformer_lens")
    assert (fast.raw - reference.raw).abs().max() < TOL
    # one cell by hand: the clean z of head 1 at position 4 of layer 0, in the corrupted run
    _, cache = model.run_with_cache(clean.tokens, names_filter=lambda n: n.endswith("hook_z"))

    def hand(z, hook):
        z = z.clone()
        z[:, 4, 1] = cache["blocks.0.attn.hook_z"][:, 4, 1]
        return z

    logits = run(model, bad.tokens, [("blocks.0.attn.hook_z", hand)])
    logp = logits.log_softmax(-1).gather(-1, clean.targets.clamp(min=0)[..., None])[..., 0]
    scored = clean.targets != -100
    expected = (logp * scored).sum(1) / scored.sum(1)
    assert (fast.raw[0, 4, 1] - expected).abs().max() < TOL
    gap = fast.clean.mean() - fast.corrupted.mean()
    assert torch.allclose(fast.per_sequence[0, 4, 1] * gap + fast.corrupted, expected, atol=TOL)
    assert torch.allclose(fast.stderr[0, 4, 1], fast.per_sequence[0, 4, 1].std() / 24**0.5)
    frame = fast.to_frame()
    assert list(frame.columns[:4]) == ["layer", "pos", "head", "value"]
    assert len(frame) == fast.values.numel()
    assert set(fast.to_dict()) >= {"values", "stderr", "per_sequence"}
    assert attached(model) == 0


@pytest.mark.parametrize("inputs", ["q", "k", "v"])
@pytest.mark.parametrize("name", ["native", "gpt2"])
def test_path_patching_equals_a_hand_written_two_pass_computation(name, inputs):
    model = tiny_model(max_len=6, n_heads=2) if name == "native" else gpt2(n_ctx=15).eval()
    split = tiny_data(max_len=6).test
    clean = split.select(spread_over_lengths(split.lengths[split.lengths >= 2], 24, 0) + 64)
    bad = corrupt(clean, "length", task="polynomial", shift=-1)
    before = attached(model)
    result = path_patch(model, clean, bad, sender=(0, 1), receiver=(1, 0), inputs=inputs)
    # by hand: the sender's output change enters the receiver's q/k/v linear input only
    names = {"blocks.0.attn.hook_z", "blocks.1.hook_resid_pre"}
    _, c = model.run_with_cache(clean.tokens, names_filter=lambda n: n in names)
    _, b = model.run_with_cache(bad.tokens, names_filter=lambda n: n in names)
    delta = (b["blocks.0.attn.hook_z"][:, :, 1] - c["blocks.0.attn.hook_z"][:, :, 1]) @ (
        model.blocks[0].attn.W_O[1]
    )
    ln = model.blocks[1].ln1.original_component
    new_in = ln(c["blocks.1.hook_resid_pre"] + delta)
    with model.hooks(fwd_hooks=[(f"blocks.1.attn.{inputs}.hook_in", lambda x, hook: new_in)]):
        _, first = model.run_with_cache(
            clean.tokens, names_filter=lambda n: n == f"blocks.1.attn.hook_{inputs}"
        )
    patched_input = first[f"blocks.1.attn.hook_{inputs}"][:, :, 0]

    def hand(x, hook):
        x = x.clone()
        x[:, :, 0] = patched_input
        return x

    logits = run(model, clean.tokens, [(f"blocks.1.attn.hook_{inputs}", hand)])
    scored = clean.targets != -100
    right = logits.gather(-1, clean.targets.clamp(min=0)[..., None])[..., 0]
    other = logits.scatter(-1, clean.targets.clamp(min=0)[..., None], -1e9).amax(-1)
    expected = ((right - other) * scored).sum(1) / scored.sum(1)
    assert (result.patched - expected).abs().max() < TOL
    assert delta.abs().max() > 1e-3 and (result.patched - result.clean).abs().max() > 1e-7
    assert attached(model) == before


# ---------------------------------------------------------------- 2.-3. the trained circuit


def test_ablating_either_circuit_head_breaks_the_polynomial_model(polynomial, test_split):
    for head in [(1, 0), (0, 0)]:
        for kind in ["zero", "mean", "resample"]:
            effect = ablation_effect(polynomial, head, test_split, kind=kind)
            summary = effect.summary()
            assert summary["clean"]["accuracy"] > 0.99
            assert summary["intervened"]["accuracy"] < 0.05, (head, kind, summary)
            assert summary["change"]["loss"] > 1.0


def test_planting_the_ideal_iteration_pattern_keeps_accuracy(polynomial, test_split):
    assert pattern_effect(polynomial, (1, 0), "iteration", test_split).accuracy >= 0.95
    for control in ["uniform", "random"]:
        assert pattern_effect(polynomial, (1, 0), control, test_split).accuracy < 0.1


def test_path_patching_the_eoi_head_into_the_iteration_query(polynomial, test_split):
    clean = test_split.select(test_split.lengths >= 2)
    bad = corrupt(clean, "length", task="polynomial", shift=-1)
    through = {
        x: path_patch(polynomial, clean, bad, sender=(0, 0), receiver=(1, 0), inputs=x)
        for x in "qkv"
    }
    assert through["q"].value > 0.3 and through["q"].patched_scores.mean("accuracy") < 0.1
    assert through["q"].value > 3 * max(through["k"].value, through["v"].value)


def test_position_shift_moves_the_iteration_head_by_the_predicted_offset(polynomial):
    result = position_shift(polynomial, n=1024, shift=1)
    assert result.eoi_heads == ((0, 0),) and result.iteration_heads == ((1, 0),)
    assert result.fraction_clean_on_target > 0.95
    assert result.fraction_shifted > 0.9, result


def test_position_shift_on_the_wrapped_trained_gpt2():
    model = trained_gpt2()
    split = make_dataset(DataConfig(task="polynomial", max_len=8)).test
    split = split.select(spread_over_lengths(split.lengths, 256, 0))
    result = position_shift(model, split, task="polynomial", shift=1)
    assert result.fraction_shifted > 0.5, result


def test_verify_confirms_the_2x1_circuit(polynomial, test_split):
    check = verify(polynomial, data=test_split)
    assert check.confirmed, check
    assert check.detected == ((0, 0), (1, 0))
    assert check.accuracy("circuit")[0] < 0.05 and check.accuracy("control") == []
    assert check.set_size == 0 and check.controls_intact is None


def test_ablating_detected_heads_hurts_far_more_than_other_heads_in_a_3x2_model():
    model = load(ZOO / "polynomial_3x2")
    split = make_dataset(DataConfig(task="polynomial", max_len=8)).test
    split = split.select(spread_over_lengths(split.lengths, 512, 0))
    check = verify(model, data=split)
    assert check.confirmed, check
    assert check.clean_accuracy > 0.99 and check.accuracy("circuit")[0] < 0.05
    # EoI head L0H0, iteration heads L1H0 and L1H1; the 3 other heads are the control triple
    assert check.detected == ((0, 0), (1, 0), (1, 1)) and check.set_size == 3
    controls = check.accuracy("control")
    assert len(controls) == 1 and controls[0] > check.accuracy("circuit")[0] + 0.3


def test_verify_tests_iteration_heads_found_without_an_eoi_head(polynomial, test_split):
    # the report of a model whose position route is not an EoI head: iteration heads, no circuit
    probes = as_batch(polynomial, test_split).as_probes("detection")
    found = detect(polynomial, probes)
    assert found.iteration is not None and found.iteration.names(1) == [(1, 0)]
    report = dataclasses.replace(found, circuit=None)
    check = verify(polynomial, report, test_split)
    assert check.detected == ((1, 0),) and check.set_size == 1, check
    assert check.table["role"].tolist() == ["iteration", "control"]
    # ablating the iteration head breaks the task; the one other head (the unreported EoI
    # head) breaks it as well, so the heads are used but not specifically
    assert check.accuracy("iteration")[0] < 0.05 and check.accuracy("control")[0] < 0.05
    assert not check.confirmed
    assert check.verdict.startswith("not confirmed (no EoI head found, iteration heads alone): ")
    # and the same heads as the audit's layer 2
    assert audit(polynomial, probes, route=False).ablation.detected == ((1, 0),)
    # no iteration heads at all: still nothing to verify
    empty = dataclasses.replace(found, circuit=None, iteration=None)
    assert verify(polynomial, empty, test_split).verdict.startswith("nothing to verify")


# ---------------------------------------------------------------- 5. batched sweep


def test_the_sweep_of_the_2x1_model_takes_a_few_forward_passes(polynomial, test_split):
    clean = test_split.select(spread_over_lengths(test_split.lengths, 256, 0))
    bad = corrupt(clean, "input", task="polynomial")
    result = activation_patching(polynomial, clean, bad)
    assert result.values.shape == (2, 19, 1)
    assert result.n_forward <= 5  # ceil(2 * 19 * 256 / 2048)
    assert result.values.abs().max() > 0.05


# ---------------------------------------------------------------- 6. bad input


def test_bad_input_raises_clear_errors_and_leaves_no_hook():
    model = tiny_model(max_len=6)
    model.train()
    split = tiny_data(max_len=6).test
    with pytest.raises(IterationHeadsError, match=r"head \(layer=2, head=0\) does not exist"):
        ablation_effect(model, [(2, 0)], split)
    bad_calls = [
        (r"head \(layer=0, head=1\) does not exist", {"heads": [(0, 1)]}),
        ("unknown ablation kind 'median'", {"heads": [(0, 0)], "kind": "median"}),
        ("mean ablation needs reference=", {"heads": [(0, 0)], "kind": "mean"}),
        (r"head \(1, 0, 0\): expected a \(layer, head\) pair", {"heads": [(1, 0, 0)]}),
    ]
    for message, options in bad_calls:
        with pytest.raises(IterationHeadsError, match=message), ablate(model, **options):
            pass
    with pytest.raises(IterationHeadsError, match="same shape"):
        activation_patching(model, split, split.select(slice(0, 10)))
    with pytest.raises(IterationHeadsError, match="same shape"):
        path_patch(model, split, split.select(slice(0, 10)), sender=(0, 0), receiver=(1, 0))
    with pytest.raises(IterationHeadsError, match="unknown pattern 'diagonal'"):
        pattern_effect(model, (1, 0), "diagonal", split)
    with pytest.raises(IterationHeadsError, match="not after the last sender layer"):
        path_patch(model, split, split, sender=(1, 0), receiver=(0, 0))
    with pytest.raises(IterationHeadsError, match="unknown metric"):
        activation_patching(model, split, split, metric="kl")
    with pytest.raises(IterationHeadsError, match="does not change the metric"):
        activation_patching(model, split, split)
    with pytest.raises(IterationHeadsError, match="does not fit"):
        corrupt(split, "length", task="polynomial", shift=1)
    # an error raised inside the block, and one raised by a hook mid-forward
    with pytest.raises(RuntimeError, match="boom"), ablate(model, [(0, 0)]):
        raise RuntimeError("boom")
    short = split.tokens[:, :5]
    with (
        pytest.raises(IterationHeadsError, match="shorter than the run"),
        ablate(model, [(0, 0)], kind="mean", reference=short),
    ):
        model(split.tokens)
    assert attached(model) == 0
    assert model.training and all(m.training for m in model.modules())


def test_interventions_leave_mode_and_other_hooks_as_found():
    model = tiny_model(max_len=6)
    model.train()
    seen = []
    model.blocks[0].attn.hook_pattern.add_hook(lambda x, hook: seen.append(1))
    before = attached(model)
    split = tiny_data(max_len=6).test
    ablation_effect(model, [(1, 0)], split, kind="resample")
    pattern_effect(model, (1, 0), "iteration", split)
    assert seen and attached(model) == before > 0
    assert model.training and all(m.training for m in model.modules())
    model.reset_hooks()


def test_as_batch_uses_the_models_test_split(polynomial):
    batch = as_batch(polynomial, n=64)
    assert batch.tokens.shape == (64, 19) and batch.lengths is not None
    with pytest.raises(IterationHeadsError, match="no test split"):
        as_batch(gpt2())


@pytest.mark.parametrize("kind", ["zero", "mean", "resample"])
def test_ablation_sets_match_one_ablation_at_a_time(kind) -> None:
    """Sets run from their first ablated layer on the clean residual stream: the same scores as
    ablating each set in a whole forward pass (to 1e-6; 1e-5 for mean ablation, whose mean is
    accumulated in float64 rather than over one float32 tensor)."""
    from iteration_heads.interventions.batch import as_batch
    from iteration_heads.interventions.many_ablations import ablation_sets

    model = load(iteration_heads.zoo.path("polynomial_3x2"))
    batch = as_batch(model, n=200)
    sets = [[(2, 1)], [(0, 0), (2, 0)], [(1, 1)], [(1, 0), (1, 1), (2, 1)]]
    clean, ablated = ablation_sets(model, batch, sets, kind=kind, seed=3, batch_size=64)
    for heads, scores in zip(sets, ablated, strict=True):
        effect = ablation_effect(model, heads, batch.as_data(), kind=kind, seed=3, batch_size=64)
        for metric in ("accuracy", "loss", "logit_diff"):
            expected = getattr(effect.intervened, metric)
            tolerance = 1e-5 if kind == "mean" else 1e-6
            close = torch.allclose(getattr(scores, metric), expected, atol=tolerance, rtol=0)
            assert close, (heads, metric)
        assert torch.allclose(clean.loss, effect.clean.loss, atol=1e-6)
