"""Prompts that study several steps of one sequence share its forward pass
(:class:`~iteration_heads.passes.SharedSequences`): each analysis that treats every row alike
runs each distinct sequence once and reads every prompt's position from it. Here every result
on prompts that share sequences must equal the same analysis run on each prompt alone (where
nothing is shared), on the Llama PrOntoQA fixture (steps of one chain of thought, with
corruptions and segments) and on the native polynomial model.

Tolerances: logits and attributions are float32 sums whose order changes with the batch
(1e-4 on values up to ~10); agreements and accuracies are counts, compared exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iteration_heads import DataConfig, IterationHeadsError, make_dataset, zoo
from iteration_heads.model import load_hf_folder
from iteration_heads.passes import shared_sequences
from iteration_heads.pathways import (
    ablation_check,
    answer_writers,
    iteration_prompts,
    lens_logits,
    noising_check,
    pruned_logits,
)
from iteration_heads.pathways.reference import reference_means
from iteration_heads.pathways.text_ontology import prontoqa_prompts
from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa

FOLDER = Path(__file__).parents[1] / "fixtures" / "llama_prontoqa"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def llama():
    model, tokenizer = load_hf_folder(FOLDER)
    problems = make_prontoqa(ProntoQAConfig(shots=0, distractors=1, hops=(2,)), 3, seed=99)
    prompts = prontoqa_prompts(problems, tokenizer, skip_uncorruptible=True)
    shared = shared_sequences(prompts.clean, prompts.position)
    assert len(shared.tokens) < len(prompts)  # several steps of a sequence: the case tested
    return model, prompts


@pytest.fixture(scope="module")
def polynomial():
    data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=2))
    prompts = iteration_prompts(data.test, data.layout)
    return zoo.load("polynomial_paper"), prompts.select(torch.arange(0, len(prompts), 5))


def alone(prompts):
    return [prompts.select(torch.tensor([i])) for i in range(len(prompts))]


def test_the_plan_reads_every_prompt_once_from_its_sequence() -> None:
    tokens = torch.tensor([[5, 6, 7, 8], [1, 2, 3, 4], [5, 6, 7, 8], [5, 6, 7, 8]])
    shared = shared_sequences(tokens, torch.tensor([3, 2, 0, 3]))
    assert shared.tokens.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert shared.widths.tolist() == [3, 4] and shared.inverse.tolist() == [1, 0, 1, 1]
    plan = shared.plan(2, 3, 64)
    assert sorted((v, s) for p in plan for v, s in zip(p[0].tolist(), p[1].tolist(), strict=True)) == [
        (0, 0), (0, 1), (1, 0), (1, 1)
    ]  # fmt: skip
    assert all(len(v) <= 3 for v, _, _ in plan)
    at, row, prompt, index = shared.scored_in(torch.tensor([1]), 4)
    assert at.tolist() == [[True, False, False, True]]
    assert prompt.tolist() == [0, 2, 3] and row.tolist() == [0, 0, 0]
    assert index.tolist() == [1, 0, 1]  # two prompts at one position read the same logits


def test_bad_shapes_and_positions_are_refused() -> None:
    with pytest.raises(IterationHeadsError, match=r"expected \[n, pos\] and \[n\]"):
        shared_sequences(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(IterationHeadsError, match="positions 0..3: expected 0..2"):
        shared_sequences(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 3]))


@pytest.mark.parametrize("case", ["llama", "polynomial"])
def test_pruned_logits_equal_each_prompt_alone(case, request) -> None:
    model, prompts = request.getfixturevalue(case)
    reference, keep = prompts.clean, [(0, 0), (1, int(model.cfg.n_heads) - 1)]
    mask = prompts.own_positions()
    together = pruned_logits(model, prompts, keep, reference, reference_mask=mask)
    for i, one in enumerate(alone(prompts)):
        single = pruned_logits(model, one, keep, reference, reference_mask=mask)
        torch.testing.assert_close(together[i], single[0], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("case", ["llama", "polynomial"])
def test_reference_means_weigh_repeated_sequences_as_often_as_they_occur(case, request) -> None:
    model, prompts = request.getfixturevalue(case)
    tokens, mask = prompts.clean, prompts.own_positions()
    means = reference_means(model, tokens, reference_mask=mask)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_z"))
    for layer, mean in means.items():
        z = cache[f"blocks.{layer}.attn.hook_z"].double()
        weight = mask.double()[:, :, None, None]
        by_hand = (z * weight).sum(0) / weight.sum(0).clamp(min=1)
        real = mask.any(0)
        torch.testing.assert_close(mean[real].double(), by_hand[real], atol=1e-5, rtol=0)


def test_checks_count_each_prompt_as_alone(llama) -> None:
    model, prompts = llama
    heads, mask = [(1, 0), (2, 3)], prompts.own_positions()
    checks = {
        "noising": lambda p: noising_check(model, p, heads, n_random=2, seed=1),
        "ablation": lambda p: ablation_check(
            model, p, heads, prompts.clean, n_random=2, seed=1, reference_mask=mask
        ),
    }
    for name, check in checks.items():
        together, singles = check(prompts), [check(one) for one in alone(prompts)]
        assert together.agreement == pytest.approx(
            sum(s.agreement for s in singles) / len(singles)
        ), name
        assert together.accuracy == pytest.approx(
            sum(s.accuracy for s in singles) / len(singles)
        ), name
        mean = torch.stack([s.random_agreement for s in singles]).mean(0)
        torch.testing.assert_close(together.random_agreement, mean, atol=1e-9, rtol=0)


@pytest.mark.parametrize("case", ["llama", "polynomial"])
def test_writers_and_the_lens_equal_each_prompt_alone(case, request) -> None:
    model, prompts = request.getfixturevalue(case)
    together = answer_writers(model, prompts)
    lens, _ = lens_logits(model, prompts.clean, prompts.position)
    for i, one in enumerate(alone(prompts)):
        single = answer_writers(model, one)
        for name in ("per_prompt", "per_prompt_segments", "per_prompt_components", "logit"):
            torch.testing.assert_close(
                getattr(together, name)[i], getattr(single, name)[0], atol=TOLERANCE, rtol=0
            )
        single_lens, _ = lens_logits(model, one.clean, one.position)
        torch.testing.assert_close(lens[:, i], single_lens[:, 0], atol=TOLERANCE, rtol=0)
