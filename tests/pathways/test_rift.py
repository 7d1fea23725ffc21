"""Logit lens and rift: every boundary equals a hand computation through ``ln_final`` and the
unembedding (the last one the model's logits), ranks and probabilities match a per-prompt
loop, a planted crossing is found with its interval, the context-free prior is the model's
prediction on the cut prompt, and bad input raises."""

from __future__ import annotations

import pytest
import torch
from helpers import gpt2, tiny_model

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import Prompts, iteration_prompts
from iteration_heads.pathways.rift import (
    LogitLens,
    context_free_prior,
    lens_logits,
    logit_lens,
    rift_layer,
)


def random_prompts(n: int = 9, width: int = 12, vocab: int = 16, seed: int = 0) -> Prompts:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (n, width), generator=g)
    position = torch.randint(0, width, (n,), generator=g)
    answer = torch.randint(0, vocab, (n,), generator=g)
    labels = tuple("ab"[i % 2] for i in range(n))
    return Prompts(clean, None, position, answer, torch.zeros_like(clean), ("s",), labels)


@pytest.fixture(scope="module")
def polynomial():
    return zoo.load("polynomial_paper")


@pytest.fixture(scope="module")
def zoo_prompts():
    data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=4))
    return iteration_prompts(data.test, data.layout)


@pytest.mark.parametrize("build", ["zoo", "gpt2"])
def test_every_boundary_is_ln_final_and_unembed_and_the_last_is_the_logits(build, polynomial):
    model = polynomial if build == "zoo" else gpt2()
    prompts = random_prompts(7, 19 if build == "zoo" else 12)
    logits, names = lens_logits(model, prompts.clean, prompts.position, batch_size=3)
    n_layers = model.cfg.n_layers
    assert names == (*(f"{i}_pre" for i in range(n_layers)), "final_post")
    rows = torch.arange(len(prompts))
    hooks = [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)]
    hooks.append(f"blocks.{n_layers - 1}.hook_resid_post")
    with torch.no_grad():
        own, cache = model.eval().run_with_cache(prompts.clean, names_filter=hooks.__contains__)
        for b, hook in enumerate(hooks):
            resid = cache[hook][rows, prompts.position]
            hand = model.ln_final(resid[None])[0] @ model.W_U + model.b_U
            assert torch.allclose(logits[b], hand, atol=1e-5)
    assert torch.allclose(logits[-1], own[rows, prompts.position], atol=1e-5)


def test_ranks_and_probabilities_match_a_loop_on_a_random_model():
    model = tiny_model(seed=4)
    prompts = random_prompts(8, 13, seed=2)
    prior = torch.randint(0, 16, (8,), generator=torch.Generator().manual_seed(9))
    lens = logit_lens(model, prompts, prior=prior, n_boot=20)
    logits, _ = lens_logits(model, prompts.clean, prompts.position)
    for b in range(len(lens.boundaries)):
        for i in range(len(prompts)):
            row = logits[b, i]
            for token, lp, rank in (
                (prompts.answer[i], lens.answer_log_prob, lens.answer_rank),
                (prior[i], lens.prior_log_prob, lens.prior_rank),
            ):
                ahead = sum(float(row[v]) > float(row[token]) for v in range(16))
                assert int(rank[b, i]) == ahead
                p = torch.softmax(row.double(), 0)[token]
                assert float(lp[b, i].exp()) == pytest.approx(float(p), abs=1e-6)
    assert bool(((lens.outranks() >= 0) & (lens.outranks() <= 1)).all())
    mean, low, high = lens.curve("answer_prob", "a")
    rows = [i for i in range(8) if i % 2 == 0]
    assert torch.allclose(mean, lens.answer_log_prob[:, rows].exp().mean(1))
    assert bool((low <= mean + 1e-6).all() and (mean <= high + 1e-6).all())


def test_rift_layer_on_synthetic_curves():
    assert rift_layer(torch.tensor([0.1, 0.6, 0.4, 0.7, 0.9])) == 3
    assert rift_layer(torch.tensor([0.5, 0.5])) == 0  # at least half counts
    assert rift_layer(torch.tensor([0.9, 0.2])) is None  # not kept to the end
    assert rift_layer(torch.tensor([0.2, float("nan"), 0.8])) == 2
    assert rift_layer(torch.tensor([0.2, 0.3]), threshold=0.25) == 1
    with pytest.raises(IterationHeadsError, match="expected a non-empty 1-D tensor"):
        rift_layer(torch.zeros(2, 2))


def planted(n_boot: int = 200) -> LogitLens:
    """4 informative prompts + 1 whose prior is its answer: the answer overtakes the prior
    (rank 1) for half of them at boundary 1 and for all at boundary 2."""
    answer_rank = torch.tensor([[5, 5, 5, 5, 0], [0, 0, 9, 9, 0], [0, 0, 0, 0, 0]])
    prior_rank = torch.ones_like(answer_rank)
    answer, prior = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 7, 8, 9, 5])
    return LogitLens(
        ("0_pre", "1_pre", "final_post"), -answer_rank.float(), answer_rank,
        -prior_rank.float(), prior_rank, answer, prior, ("x", "x", "y", "y", "x"), n_boot, 3,
    )  # fmt: skip


def test_planted_crossing_is_found_with_its_bootstrap_interval():
    lens = planted()
    assert lens.outranks().tolist() == [0.0, 0.5, 1.0]  # the tied prompt left out
    rift = lens.rift()
    assert (rift.layer, rift.boundary, rift.n_prompts) == (1, "1_pre", 4)
    assert (rift.low, rift.high, rift.never) == (1.0, 2.0, 0.0)  # resamples: 1 or 2
    assert lens.outranks("x").tolist() == [0.0, 1.0, 1.0] and lens.rift("x").layer == 1
    assert lens.outranks("y").tolist() == [0.0, 0.0, 1.0] and lens.rift("y").layer == 2
    mean, low, high = lens.curve("answer_rank")
    assert mean.tolist() == pytest.approx([4.0, 3.6, 0.0])
    assert torch.equal(torch.stack(lens.curve("answer_rank")), torch.stack((mean, low, high)))
    assert float(low[1]) <= 3.6 <= float(high[1]) and float(low[2]) == float(high[2]) == 0
    frame = lens.curves("y")
    assert frame["outranks"].tolist() == [0.0, 0.0, 1.0]
    assert frame["answer_rank"].tolist() == [5.0, 9.0, 0.0]
    assert "rift at boundary 1" in lens.format() and lens.to_json().startswith("{")


def test_context_free_prior_is_the_models_prediction_on_the_cut_prompt(polynomial, zoo_prompts):
    prompts = zoo_prompts.select([0, 1, 5, 40, 143])
    for keep, first in ((2, True), (1, False), (3, True), (30, True)):
        prior = context_free_prior(polynomial, prompts, keep=keep, first_token=first)
        for i in range(len(prompts)):
            pos, row = int(prompts.position[i]), prompts.clean[i].tolist()
            tail = row[max(pos - keep + 1, 1 if first else 0) : pos + 1]
            tokens = torch.tensor([([row[0]] if first else []) + tail])
            with torch.no_grad():
                assert int(prior[i]) == int(polynomial.eval()(tokens)[0, -1].argmax())
    whole = context_free_prior(polynomial, prompts, keep=30)
    with torch.no_grad():
        full = polynomial(prompts.clean)[torch.arange(5), prompts.position].argmax(-1)
    assert torch.equal(whole, full)  # keeping everything is the model's own prediction


def test_zoo_answer_overtakes_the_context_free_prior_inside_the_model(polynomial, zoo_prompts):
    prior = context_free_prior(polynomial, zoo_prompts)
    lens = logit_lens(polynomial, zoo_prompts, prior=prior, n_boot=200)
    answer = lens.curve("answer_prob")[0]
    assert answer[0] < answer[1] < answer[2] and float(answer[2]) > 0.99
    assert float(lens.outranks()[-1]) == 1.0
    rift = lens.rift()
    assert rift.layer == 1 and rift.low <= 1 <= rift.high and rift.never == 0


def test_a_wrapped_gpt2_runs_and_is_left_as_found():
    model = gpt2().train()
    prompts = random_prompts(5, 10)
    lens = logit_lens(model, prompts, prior=context_free_prior(model, prompts), n_boot=10)
    assert model.training and lens.answer_rank.shape == (3, 5)


def test_bad_input_raises(polynomial, zoo_prompts):
    n = len(zoo_prompts)
    with pytest.raises(IterationHeadsError, match=rf"prior of shape \(3,\), expected \({n},\)"):
        logit_lens(polynomial, zoo_prompts, prior=torch.zeros(3, dtype=torch.long))
    with pytest.raises(IterationHeadsError, match="prior id 16 outside"):
        logit_lens(polynomial, zoo_prompts, prior=torch.full((n,), 16))
    with pytest.raises(IterationHeadsError, match="prior must hold integers"):
        logit_lens(polynomial, zoo_prompts, prior=torch.zeros(n))
    bad = random_prompts(3, 8)
    wrong = Prompts(bad.clean, None, bad.position, torch.tensor([0, 1, 40]), bad.segments,
                    bad.segment_names, bad.labels)  # fmt: skip
    with pytest.raises(IterationHeadsError, match="answer id 40 outside"):
        logit_lens(polynomial, wrong)
    with pytest.raises(IterationHeadsError, match="prompts must be Prompts"):
        context_free_prior(polynomial, bad.clean)
    with pytest.raises(IterationHeadsError, match="keep=0"):
        context_free_prior(polynomial, bad, keep=0)
    with pytest.raises(IterationHeadsError, match="n_boot=0"):
        logit_lens(polynomial, bad, n_boot=0)
    lens = logit_lens(polynomial, bad, n_boot=5)
    with pytest.raises(IterationHeadsError, match="needs a prior"):
        lens.rift()
    with pytest.raises(IterationHeadsError, match="quantity 'answer_logit'"):
        lens.curve("answer_logit")
    with pytest.raises(IterationHeadsError, match="label 'c'"):
        lens.curve("answer_prob", "c")
