import pytest
import torch
from helpers import tiny_data, tiny_model

from iteration_heads import IterationHeadsError
from iteration_heads.tasks import IGNORE
from iteration_heads.training import evaluate, score_heads, target_weights


def reference(model, split):
    """Per-sequence loop over the bridge's own forward and hook_pattern (docs/paper.md §6)."""
    out = {}
    for length in sorted(set(split.lengths.tolist())):
        part = split.for_length(length)
        logits, cache = model.run_with_cache(
            part.tokens, names_filter=lambda n: n.endswith("hook_pattern")
        )
        correct = []
        for b in range(len(part)):
            scored = [i for i in range(part.tokens.shape[1]) if part.targets[b, i] != IGNORE]
            correct.append(
                all(int(logits[b, i].argmax()) == int(part.targets[b, i]) for i in scored)
            )
        eoi, it = [], []
        for layer in range(model.cfg.n_layers):
            p = cache[f"blocks.{layer}.attn.hook_pattern"]  # batch head query key
            eoi.append(
                torch.stack([p[:, :, length + 1 + t, length + 1] for t in range(1, length + 1)], 1)
            )
            it.append(torch.stack([p[:, :, length + t, t] for t in range(1, length + 1)], 1))
        out[length] = (
            sum(correct) / len(correct),
            torch.stack(eoi, 2),
            torch.stack(it, 2),
        )  # batch t layer head
    return out


def summarise(w):
    return w.mean((0, 1)), (w > 0.5).float().mean((0, 1)), 1 - w.std(0, unbiased=False).mean(0)


@pytest.mark.parametrize("changes", [{}, {"n_layers": 3, "n_heads": 2}])
def test_matches_a_loop_over_the_bridge(changes):
    model = tiny_model(**changes)
    with torch.no_grad():  # sharpen attention so that peakiness is not trivially zero
        for block in model.blocks:
            block.attn.q.weight.mul_(8)
    data = tiny_data(n_test=32)
    result = evaluate(model, data.test, batch_size=50)
    ref = reference(model, data.test)
    assert result.lengths == list(range(1, 7))
    for i, length in enumerate(result.lengths):
        acc, eoi, it = ref[length]
        assert result.sequence_accuracy[i] == pytest.approx(acc)
        for scores, w in ((result.eoi, eoi), (result.iteration, it)):
            mean, peak, inv = summarise(w)
            assert torch.allclose(scores.mean[i], mean, atol=1e-5)
            assert torch.allclose(scores.peakiness[i], peak, atol=1e-6)
            assert torch.allclose(scores.invariance[i], inv, atol=1e-5)
    assert result.iteration.peakiness.max() > 0  # the check above compares something non-trivial


def ideal_patterns(lengths, width):
    """Head 0: ideal EoI pattern; head 1: ideal iteration pattern; head 2: uniform causal."""
    batch = len(lengths)
    p = torch.zeros(batch, 3, width, width)
    causal = torch.tril(torch.ones(width, width))
    p[:, 2] = causal / causal.sum(1, keepdim=True)
    for b, L in enumerate(lengths.tolist()):
        for q in range(width):
            p[b, 0, q, min(q, L + 1) if q > L + 1 else q] = 1.0
            p[b, 1, q, q - L if L < q <= 2 * L else q] = 1.0
    return p


def test_planted_patterns_score_one_and_uniform_is_hand_computed():
    lengths = torch.tensor([2, 2, 3, 3, 3])
    pattern = ideal_patterns(lengths, 9)
    eoi, it, valid = target_weights(pattern, lengths)
    eoi_s = score_heads(eoi[:, :, None], valid, lengths, [2, 3])
    it_s = score_heads(it[:, :, None], valid, lengths, [2, 3])
    assert eoi_s.mean[:, 0, 0].tolist() == [1.0, 1.0] and eoi_s.peakiness[:, 0, 0].tolist() == [
        1.0,
        1.0,
    ]
    assert it_s.mean[:, 0, 1].tolist() == [1.0, 1.0] and it_s.invariance[:, 0, 1].tolist() == [
        1.0,
        1.0,
    ]
    assert eoi_s.mean[:, 0, 1].max() == 0 and it_s.mean[:, 0, 0].max() == 0
    # uniform causal attention, L = 2: EoI weights from queries 4, 5 are 1/5, 1/6;
    # iteration weights from queries 3, 4 are 1/4, 1/5
    assert eoi_s.mean[0, 0, 2] == pytest.approx((1 / 5 + 1 / 6) / 2)
    assert it_s.mean[0, 0, 2] == pytest.approx((1 / 4 + 1 / 5) / 2)
    assert eoi_s.peakiness[:, 0, 2].tolist() == [0.0, 0.0]
    assert eoi_s.invariance[:, 0, 2].tolist() == pytest.approx([1.0, 1.0])


def test_invariance_is_one_minus_mean_std():
    w = torch.tensor([[1.0, 0.2], [0.0, 0.2]])[..., None, None]  # two sequences of length 2
    s = score_heads(w, torch.ones(2, 2, dtype=torch.bool), torch.tensor([2, 2]), [2])
    # std over sequences: 0.5 at t=1, 0 at t=2
    assert s.invariance.item() == pytest.approx(1 - 0.25)
    assert s.peakiness.item() == pytest.approx(0.25)


def test_bad_inputs():
    model = tiny_model(max_len=4)
    data = tiny_data(max_len=6)
    with pytest.raises(IterationHeadsError, match="exceed the model's n_ctx=11"):
        evaluate(model, data.test)
    with pytest.raises(IterationHeadsError, match="needs 8"):
        target_weights(torch.zeros(1, 1, 5, 5), torch.tensor([3]))
