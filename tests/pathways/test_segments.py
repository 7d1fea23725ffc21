"""Parallel pathways: a knocked-out forward pass matches a hand computation, the polynomial
model's answer needs its input segment but not the chain of thought in its own row, the edited
patterns stay distributions, and the traced per-head pathway labels."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import gpt2, llama

from iteration_heads import DataConfig, IterationHeadsError, make_dataset, zoo
from iteration_heads.pathways.prompts import Prompts, iteration_prompts
from iteration_heads.pathways.segments import (
    knockout_hooks,
    knockout_mask,
    knockout_pattern,
    segment_pathways,
    trace_many,
)


@pytest.fixture(scope="module")
def model():
    return zoo.load("polynomial_paper")


@pytest.fixture(scope="module")
def prompts() -> Prompts:
    data = make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=2))
    return iteration_prompts(data.test, data.layout)


def test_one_knocked_out_pass_matches_a_hand_renormalised_pattern(model, prompts) -> None:
    row = next(i for i, label in enumerate(prompts.labels) if label == "step 5")
    one = prompts.select([row])
    q, keys = int(one.position[0]), (one.segments[0] == 0).nonzero().flatten().tolist()

    def by_hand(pattern, hook):  # the studied row, each head: input keys zeroed, renormalised
        pattern = pattern.clone()
        for head in range(pattern.shape[1]):
            weights = pattern[0, head, q].clone()
            weights[keys] = 0.0
            pattern[0, head, q] = weights / weights.sum()
        return pattern

    hooks = [(f"blocks.{layer}.attn.hook_pattern", by_hand) for layer in range(2)]
    with torch.no_grad():
        logits = model.run_with_hooks(one.clean, fwd_hooks=hooks)[0, q]
    result = segment_pathways(model, one, scope="answer")
    got = result.per_prompt.set_index("cut").loc["input"]
    answer = int(one.answer[0])
    assert got["logit"] == pytest.approx(float(logits[answer]), abs=1e-6)
    assert got["prob"] == pytest.approx(float(logits.softmax(-1)[answer]), abs=1e-6)


def test_the_answer_comes_from_the_input_segment(model, prompts) -> None:
    result = segment_pathways(model, prompts, scope="answer")
    table = result.to_frame().set_index(["label", "cut"])
    everything = table.loc["all"]
    # measured on these 72 prompts: clean accuracy 1.0; input cut 0.14; chain of thought cut 1.0
    assert everything.loc["input", "clean_accuracy"] == 1.0
    assert everything.loc["input", "accuracy"] < 0.3
    assert everything.loc["chain of thought", "accuracy"] > 0.95
    assert everything.loc["input", "share"] > 0.95  # of the summed answer-logit drops
    assert everything.loc["input", "drop"] > 5 > 0.5 > everything.loc["chain of thought", "drop"]
    assert set(result.per_prompt["cut"]) == {"none", "input", "chain of thought"}
    # per label (8 steps): cutting the input hurts more than cutting the chain of thought
    for step in [label for label in dict.fromkeys(result.to_frame()["label"]) if label != "all"]:
        assert (
            table.loc[(step, "input"), "accuracy"]
            < table.loc[(step, "chain of thought"), "accuracy"]
        )
        assert (
            table.loc[(step, "input"), "drop"]
            > 3
            > 0.5
            > table.loc[(step, "chain of thought"), "drop"]
        )


def test_scope_all_leaves_the_chain_of_thought_queries_free(model, prompts) -> None:
    table = segment_pathways(model, prompts, scope="all").to_frame().set_index(["label", "cut"])
    # the studied row is itself in the chain of thought (from step 2), so cutting the chain of
    # thought from every other query changes nothing; cutting the input still does
    assert table.loc[("all", "chain of thought"), "accuracy"] == 1.0
    assert table.loc[("all", "input"), "accuracy"] < 0.3


def test_edited_patterns_sum_to_one_per_row(model, prompts) -> None:
    seen = []

    def grab(pattern, hook):
        seen.append(pattern)
        return pattern

    for scope in ("answer", "all"):
        mask = knockout_mask(prompts, frozenset([0]), scope)
        hooks = knockout_hooks(model, mask) + [
            (f"blocks.{i}.attn.hook_pattern", grab) for i in range(2)
        ]
        with torch.no_grad():
            model.run_with_hooks(prompts.clean, fwd_hooks=hooks)
        left = (~mask & torch.ones(19, 19).tril().bool()).any(-1)  # rows with a key to keep
        cut = (mask & left[..., None])[:, None]
        assert cut.any()
        for pattern in seen[-2:]:
            assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-5)
            assert pattern.masked_select(cut.expand_as(pattern)).abs().max() == 0
    # a row with nothing left outside the cut keeps its weights
    pattern = torch.tensor([[[[1.0, 0.0], [0.25, 0.75]]]])
    mask = torch.tensor([[[True, False], [True, True]]])
    assert torch.equal(knockout_pattern(pattern, mask), pattern)


def test_three_segments_add_all_but_one_cuts(model, prompts) -> None:
    segments = prompts.segments[:6].clone()
    segments[segments == 1] = 2  # chain of thought
    segments[:, 0] = 1  # the task token, a segment of its own
    names = ("input", "task", "chain of thought")
    first = prompts.select(list(range(6)))
    three = Prompts(first.clean, None, first.position, first.answer, segments, names, first.labels)
    result = segment_pathways(model, three)
    assert result.cuts == ("input", "task", "chain of thought", "task+chain of thought",
                           "input+chain of thought", "input+task")  # fmt: skip
    frame = result.to_frame()
    assert frame.loc[frame["cut"].str.contains("+", regex=False), "share"].isna().all()
    shares = frame.loc[frame["label"] == "all", "share"]
    assert math.isclose(shares.abs().sum(), 1.0, rel_tol=1e-6)  # float32 shares


@pytest.mark.parametrize("build", [gpt2, llama])
def test_wrapped_huggingface_models(build, prompts) -> None:
    hf = build(vocab=16, n_ctx=19) if build is gpt2 else build(vocab=16)
    hf.train()
    result = segment_pathways(hf, prompts.select(list(range(8))), scope="all")
    assert hf.training
    frame = result.to_frame()
    assert len(frame) == 2 * (1 + len(set(prompts.labels[:8])))
    assert frame[["prob", "logit_diff", "accuracy", "agreement"]].notna().all().all()


def test_trace_many_labels_each_head_by_its_source_segment(model, prompts) -> None:
    summary = trace_many(model, prompts)
    heads = summary.heads.set_index("name")
    assert heads.loc["L1H0", "majority"] == "input"
    assert heads.loc["L1H0", "from input"] > 0 == heads.loc["L1H0", "from chain of thought"]
    edges = summary.edges.set_index(["source", "target", "kind"])["fraction"]
    assert edges[("L1H0", "answer", "writes")] >= 0.85
    assert edges[("L0H0", "L1H0", "query")] >= 0.5
    assert bool(summary.correct.all()) and isinstance(summary.to_dict()["edges"], list)
    assert summary.format().startswith("information flow over 72 prompts")
    assert summary.to_dict()["centre"] == "foils" and "against the foils" in summary.format()
    vocab = trace_many(model, prompts.select(range(4)), centre="vocab")
    assert vocab.to_dict()["centre"] == "vocab"


def test_bad_input_raises(model, prompts) -> None:
    with pytest.raises(IterationHeadsError, match="scope='question'"):
        segment_pathways(model, prompts, scope="question")
    with pytest.raises(IterationHeadsError, match="scope='question'"):
        knockout_mask(prompts, frozenset([0]), "question")
    with pytest.raises(IterationHeadsError, match="batch_size=0"):
        segment_pathways(model, prompts, batch_size=0)
    with pytest.raises(IterationHeadsError, match="must be Prompts"):
        segment_pathways(model, prompts.clean)
    with pytest.raises(IterationHeadsError, match="without segment names"):
        one = prompts.select([0])
        segment_pathways(
            model, Prompts(one.clean, None, one.position, one.answer, one.segments, (), ("x",))
        )


@pytest.mark.parametrize("scope", ["answer", "all"])
@pytest.mark.parametrize("build", [None, gpt2, llama])
def test_every_row_equals_a_full_width_pass_whatever_the_batching(build, scope, prompts) -> None:
    """Passes cut at their widest studied position and unembedded there only, with prompts
    reordered by position, give each prompt's numbers of a whole pass over all its tokens."""
    if build is None:
        model = zoo.load("polynomial_paper")
    else:
        model = build(vocab=16, n_ctx=19) if build is gpt2 else build(vocab=16)
    model.eval()
    shuffled = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0))
    mixed = prompts.select(shuffled[:12])
    results = [segment_pathways(model, mixed, scope=scope, batch_size=b) for b in (1, 5, 64)]
    for cut_index, (cut, segments) in enumerate([("input", {0}), ("chain of thought", {1})]):
        masks = knockout_mask(mixed, frozenset(segments), scope)
        with torch.no_grad():
            full = model.run_with_hooks(mixed.clean, fwd_hooks=knockout_hooks(model, masks))
        at = full[torch.arange(len(mixed)), mixed.position]
        for result in results:
            rows = result.per_prompt[result.per_prompt["cut"] == cut].sort_values("prompt")
            assert rows["prompt"].tolist() == list(range(len(mixed)))
            expected = at[torch.arange(len(mixed)), mixed.answer]
            assert torch.allclose(torch.tensor(rows["logit"].values), expected, atol=1e-5), (
                cut_index
            )
