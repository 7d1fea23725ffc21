"""Answer-writing heads: the direct logit attribution of the components sums to the model's own
centred answer logit, every head's DLA equals TransformerLens's stacked head results read
through the final norm, the per-source split matches an explicit loop over keys, the zoo's
iteration head writes from the input, and bad input raises."""

from __future__ import annotations

import pytest
import torch
from helpers import gpt2, llama

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.scores import standard_error
from iteration_heads.pathways import Prompts, iteration_prompts
from iteration_heads.pathways.writers import AnswerWriters, answer_writers


def random_prompts(n: int = 10, width: int = 12, vocab: int = 16, seed: int = 0) -> Prompts:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (n, width), generator=g)
    segments = torch.randint(-1, 3, (n, width), generator=g)
    labels = tuple("ab"[i % 2] for i in range(n))
    position = torch.randint(2, width, (n,), generator=g)
    answer = torch.randint(0, vocab, (n,), generator=g)
    return Prompts(clean, None, position, answer, segments, ("x", "y", "z"), labels)


@pytest.fixture(scope="module")
def polynomial():
    return zoo.load("polynomial_paper")


@pytest.fixture(scope="module")
def zoo_prompts():
    data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=4))
    return iteration_prompts(data.test, data.layout)


@pytest.fixture(scope="module")
def zoo_writers(polynomial, zoo_prompts):
    return answer_writers(polynomial, zoo_prompts)


def centred_logit(model, prompts: Prompts) -> torch.Tensor:
    with torch.no_grad():
        logits = model.eval()(prompts.clean)[torch.arange(len(prompts)), prompts.position]
    answer = logits[torch.arange(len(prompts)), prompts.answer]
    if prompts.foils is None:
        return answer - logits.mean(-1)
    foils = [f[f >= 0] for f in prompts.foils]  # by hand: each prompt's valid foils
    return answer - torch.stack([logits[i, f].mean() for i, f in enumerate(foils)])


@pytest.mark.parametrize("build", ["zoo", "gpt2", "llama"])
def test_components_sum_to_the_models_centred_answer_logit(build, polynomial, zoo_prompts):
    model = {"zoo": lambda: polynomial, "gpt2": gpt2, "llama": llama}[build]()
    prompts = zoo_prompts.select(range(0, len(zoo_prompts), 3)) if build == "zoo" else None
    prompts = prompts or random_prompts()
    result = answer_writers(model, prompts, batch_size=7)
    own = centred_logit(model, prompts)
    assert torch.allclose(result.logit, own, atol=1e-5)
    assert torch.allclose(result.per_prompt_components.sum(1), own, atol=1e-4)
    # each layer's heads plus its b_O are its attention component
    attn = [i for i, name in enumerate(result.components) if name.startswith("attn")]
    heads = result.per_prompt.sum(-1) + result.attn_bias
    assert torch.allclose(heads, result.per_prompt_components[:, attn], atol=1e-5)
    # the per-segment parts (with "other") sum to each head's DLA
    assert torch.allclose(result.per_prompt_segments.sum(-1), result.per_prompt, atol=1e-5)
    expected = ["embed"] + (["pos_embed"] if build != "llama" else [])
    assert list(result.components[: len(expected)]) == expected
    assert result.components[-1] == "final bias"


@pytest.mark.parametrize("build", ["zoo", "gpt2"])
def test_head_dla_equals_transformer_lens_stacked_head_results(build, polynomial):
    model = polynomial if build == "zoo" else gpt2()
    prompts = random_prompts(6, 19 if build == "zoo" else 12)
    result = answer_writers(model, prompts)
    with torch.no_grad():
        _, cache = model.eval().run_with_cache(
            prompts.clean,
            names_filter=lambda n: n.endswith(("hook_z", "ln_final.hook_scale", "hook_embed")),
        )
        stack = cache.stack_head_results(apply_ln=True)  # [heads, n, pos, d]: centred, / scale
        rows = torch.arange(len(prompts))
        at = stack[:, rows, prompts.position]  # [heads, n, d]
        u = model.W_U[:, prompts.answer] - model.W_U.mean(1, keepdim=True)  # [d, n]
        expected = (at * (u.T * model.ln_final.w)).sum(-1).T  # [n, heads]
    n_layers, n_heads = result.per_prompt.shape[1:]
    assert torch.allclose(result.per_prompt.reshape(len(prompts), -1), expected, atol=1e-5)
    assert n_layers * n_heads == stack.shape[0]


def test_source_split_matches_an_explicit_loop_over_keys():
    model = gpt2(seed=3)
    prompts = random_prompts(4, 10, seed=5)
    result = answer_writers(model, prompts)
    names = lambda n: n.endswith(("hook_pattern", "hook_v", "ln_final.hook_scale"))  # noqa: E731
    with torch.no_grad():
        _, cache = model.eval().run_with_cache(prompts.clean, names_filter=names)
        for i in range(len(prompts)):
            q, a = int(prompts.position[i]), int(prompts.answer[i])
            u = model.W_U[:, a] - model.W_U.mean(1)
            scale = cache["ln_final.hook_scale"][i, q]
            for layer in range(2):
                for head in range(2):
                    totals = torch.zeros(4)
                    for k in range(q + 1):
                        p = cache[f"blocks.{layer}.attn.hook_pattern"][i, head, q, k]
                        out = (
                            p
                            * cache[f"blocks.{layer}.attn.hook_v"][i, k, head]
                            @ model.W_O[layer, head]
                        )
                        out = (out - out.mean()) / scale
                        totals[int(prompts.segments[i, k])] += float(out @ (model.ln_final.w * u))
                    got = result.per_prompt_segments[i, layer, head]
                    assert torch.allclose(got, totals[[0, 1, 2, -1]], atol=1e-5)


def test_zoo_iteration_head_writes_the_answer_from_the_input(zoo_writers):
    result = zoo_writers
    chosen = result.writers()
    assert (1, 0) in chosen
    segments = result.segment_dla["all"][1, 0]
    assert result.segment_names[int(segments.argmax())] == "input"
    assert float(segments[0]) > 0.9 * float(result.dla["all"][1, 0]) > 0.5
    # at the first step (s_1 = x_1) it writes several logits of the answer, from x_1
    assert float(result.segment_dla["step 1"][1, 0, 0]) > 3.0
    # the MLP after it computes most of the answer (f(s, x) is not linear in x)
    mlp = result.components.index("mlp L1")
    assert float(result.component_dla["all"][mlp]) > 2 * float(result.dla["all"].sum())
    hist = result.layer_histogram("all")
    assert hist["writers"].tolist() == [sum(lay == 0 for lay, _ in chosen), 1]
    assert "L1H0" in result.format() and "from input" in result.format()


def test_per_label_means_and_stderr(zoo_writers, zoo_prompts):
    result = zoo_writers
    assert list(result.dla)[:3] == ["all", "step 1", "step 2"]
    rows = [i for i, x in enumerate(zoo_prompts.labels) if x == "step 3"]
    assert torch.allclose(result.dla["step 3"], result.per_prompt[rows].mean(0))
    assert torch.allclose(result.stderr["step 3"], standard_error(result.per_prompt[rows], 0))
    seg = result.per_prompt_segments[rows].mean(0)
    assert torch.allclose(result.segment_dla["step 3"], seg)
    frame = result.to_frame()
    assert len(frame) == len(result.dla) * 2
    assert {"from_input", "from_chain of thought", "from_other"} <= set(frame.columns)
    assert result.to_json().startswith("{")


def synthetic(values: list[list[float]]) -> AnswerWriters:
    t = torch.tensor(values)[None].repeat(2, 1, 1)
    n, layers, _ = t.shape
    return AnswerWriters(
        {"all": t[0]}, {"all": torch.zeros_like(t[0])}, {"all": t[0][..., None]},
        {"all": torch.zeros(1)}, t, t[..., None], torch.zeros(n, 1), torch.zeros(n, layers),
        torch.zeros(n), ("final bias",), ("other",), ("a", "a"),
    )  # fmt: skip


def test_writers_are_the_fewest_heads_reaching_the_share_and_the_histogram_counts_them():
    result = synthetic([[0.5, -1.0], [3.0, 1.5]])  # positive total 5
    assert result.writers(share=0.5) == [(1, 0)]  # 3 >= 2.5
    assert result.writers(share=0.8) == [(1, 0), (1, 1)]  # 4.5 >= 4
    assert result.writers(share=1.0) == [(1, 0), (1, 1), (0, 0)]
    hist = result.layer_histogram("all", 0.8)
    assert hist["writers"].tolist() == [0, 2]
    assert hist["writer_dla"].tolist() == [0.0, 4.5]
    assert hist["positive_dla"].tolist() == [0.5, 4.5]
    assert hist["mass"].tolist() == pytest.approx([0.1, 0.9])
    assert synthetic([[-1.0, -2.0]]).writers() == []


def test_batching_and_model_mode(polynomial, zoo_prompts):
    prompts = zoo_prompts.select(range(20))
    polynomial.train()
    one = answer_writers(polynomial, prompts, batch_size=3)
    assert polynomial.training
    polynomial.eval()
    assert torch.allclose(one.per_prompt, answer_writers(polynomial, prompts).per_prompt)


def test_bad_input_raises(polynomial, zoo_prompts, zoo_writers):
    with pytest.raises(IterationHeadsError, match="prompts must be Prompts"):
        answer_writers(polynomial, zoo_prompts.clean)
    bad = random_prompts(3, 8)
    with pytest.raises(IterationHeadsError, match="answer id 99 outside"):
        answer_writers(polynomial, Prompts(bad.clean, None, bad.position,
                       torch.tensor([1, 99, 2]), bad.segments, bad.segment_names, bad.labels))  # fmt: skip
    with pytest.raises(IterationHeadsError, match="labelled 'all'"):
        answer_writers(polynomial, Prompts(bad.clean, None, bad.position, bad.answer,
                       bad.segments, bad.segment_names, ("all", "b", "c")))  # fmt: skip
    wide = random_prompts(2, 25)
    with pytest.raises(IterationHeadsError, match="exceed the model's n_ctx=19"):
        answer_writers(polynomial, wide)
    with pytest.raises(IterationHeadsError, match="batch_size=0"):
        answer_writers(polynomial, bad, batch_size=0)
    with pytest.raises(IterationHeadsError, match=r"share=1.5, expected a number in \(0, 1\]"):
        zoo_writers.writers(share=1.5)
    with pytest.raises(IterationHeadsError, match="label 'step 99'"):
        zoo_writers.layer_histogram("step 99")
