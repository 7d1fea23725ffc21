"""Foil-centred answer writers: on a planted model whose heads write one label, the other label,
or a shift shared by both, centring the answer on the vocabulary ranks the writers wrongly and
centring on the foils ranks them right; the parts still sum to the model's own foil-centred
logit; the tracer ranks the same way; the prompt builders fill foils and examples."""

from __future__ import annotations

import pytest
import torch
from helpers import gpt2
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads import DataConfig, make_dataset
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import Prompts, iteration_prompts, ontology_prompts, trace_flow
from iteration_heads.pathways.centring import centred_logit, competitor_weights
from iteration_heads.pathways.writers import answer_writers
from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems

TRUE, FALSE, VOCAB = 1, 2, 16
A, B, C = (0, 0), (0, 1), (0, 2)  # writes TRUE, writes FALSE (and pushes others down), shared


def planted() -> TransformerBridge:
    """One layer, three heads, no norms: every token embeds a constant 1 in dimension 0, each
    head's value reads it (``z_h[0] = 1`` whatever it attends to) and ``W_O`` writes a planted
    vector. ``W_U``: TRUE reads dimension 1, FALSE dimension 2, the other 14 tokens dimension 3.
    Head A writes ``2 e1`` (TRUE), head B ``3 e2 - 4 e3`` (FALSE, the rest down), head C
    ``5 (e1 + e2)`` (both labels alike). Centred on the vocabulary, TRUE's direction is
    ``e1 - (e1 + e2 + 14 e3) / 16``: C scores 4.375, B 3.31, A 1.875 (A last); centred on the
    foil FALSE it is ``e1 - e2``: A 2, C 0, B -3."""
    cfg = TransformerBridgeConfig(
        d_model=8, d_head=4, n_heads=3, n_layers=1, n_ctx=6, d_vocab=VOCAB, attn_only=True,
        act_fn="gelu", normalization_type=None, positional_embedding_type="standard", seed=1,
        device="cpu",
    )  # fmt: skip
    model = TransformerBridge.boot_native(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        params = dict(model.named_parameters())
        get = lambda key: next(v for k, v in params.items() if key in k)  # noqa: E731
        get("tok_embed")[:, 0] = 1.0
        value, out = get("v._original_component.weight"), get("o._original_component.weight")
        writes = {0: {1: 2.0}, 1: {2: 3.0, 3: -4.0}, 2: {1: 5.0, 2: 5.0}}
        for h, vector in writes.items():
            value[h * 4, 0] = 1.0
            for dim, x in vector.items():
                out[dim, h * 4] = x
        unembed = get("head._original_component.weight")  # [vocab, d_model]
        unembed[:, 3] = 1.0
        unembed[TRUE] = torch.eye(8)[1]
        unembed[FALSE] = torch.eye(8)[2]
    return model


def label_prompts(n: int = 6, foils: bool = True) -> Prompts:
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(3, VOCAB, (n, 5), generator=g)
    answer = torch.tensor([TRUE, FALSE] * (n // 2))
    rival = (TRUE + FALSE - answer)[:, None]  # the other label
    return Prompts(
        clean, None, torch.full((n,), 4), answer, torch.zeros_like(clean), ("s",),
        tuple("TRUE" if a == TRUE else "FALSE" for a in answer.tolist()),
        foils=rival if foils else None,
    )  # fmt: skip


def ranking(values: torch.Tensor) -> list[tuple[int, int]]:
    order = values.flatten().argsort(descending=True).tolist()
    return [(i // values.shape[1], i % values.shape[1]) for i in order]


def test_vocabulary_centring_misranks_the_planted_writers_and_foil_centring_does_not():
    model, prompts = planted(), label_prompts()
    vocab = answer_writers(model, prompts, centre="vocab")
    default = answer_writers(model, prompts)  # prompts with foils: centred on them
    assert vocab.centre == "vocab" and default.centre == "foils"
    # the old ranking on TRUE prompts: the shared shift first, the TRUE writer last
    assert ranking(vocab.dla["TRUE"]) == [C, B, A]
    assert torch.allclose(vocab.dla["TRUE"][0], torch.tensor([1.875, 53 / 16, 4.375]), atol=1e-5)
    # centred on FALSE: A writes TRUE, C nothing, B against it
    assert ranking(default.dla["TRUE"]) == [A, C, B]
    assert torch.allclose(default.dla["TRUE"][0], torch.tensor([2.0, -3.0, 0.0]), atol=1e-5)
    assert default.writers("TRUE") == [A] and default.writers("FALSE") == [B]
    assert default.to_dict()["centre"] == "foils" and "foils" in default.format()
    # with no foils given, auto falls back to the vocabulary
    assert answer_writers(model, label_prompts(foils=False)).centre == "vocab"


@pytest.mark.parametrize("build", ["planted", "gpt2"])
def test_foil_centred_parts_sum_to_the_models_own_logit(build):
    model = planted() if build == "planted" else gpt2()
    prompts = label_prompts()
    if build == "gpt2":  # several foils per prompt, some padded
        foils = torch.tensor(
            [[3, 5, -1], [4, -1, -1], [6, 7, 8], [9, 3, -1], [0, 5, 6], [3, -1, 4]]
        )
        prompts = Prompts(prompts.clean, None, prompts.position, prompts.answer,
                          prompts.segments, ("s",), prompts.labels, foils=foils)  # fmt: skip
    result = answer_writers(model, prompts, batch_size=4)
    with torch.no_grad():
        logits = model.eval()(prompts.clean)[torch.arange(len(prompts)), prompts.position]
    own = torch.stack(
        [
            logits[i, prompts.answer[i]] - logits[i, f[f >= 0]].mean()
            for i, f in enumerate(prompts.foils)
        ]
    )
    assert torch.allclose(result.logit, own, atol=1e-5)
    assert torch.allclose(result.per_prompt_components.sum(1), own, atol=1e-5)
    assert torch.allclose(centred_logit(logits, prompts.answer, prompts.foils), own, atol=1e-5)


def test_the_tracer_ranks_writers_against_the_foils():
    model, prompts = planted(), label_prompts()
    kw = {"through_mlps": False, "query_side": False, "writers": 3, "target": TRUE}
    foiled = trace_flow(model, prompts, index=0, min_weight=-100.0, **kw)
    vocab = trace_flow(model, prompts, index=0, min_weight=-100.0, centre="vocab", **kw)
    order = lambda g: [(e.source.layer, e.source.head) for e in g.edges if e.kind == "writes"]  # noqa: E731
    assert foiled.centre == "foils" and order(foiled) == [A, C, B]
    assert vocab.centre == "vocab" and order(vocab) == [C, B, A]
    with pytest.raises(IterationHeadsError, match="centre='foils' needs prompts with foils"):
        trace_flow(model, label_prompts(foils=False), index=0, centre="foils")


def test_centre_errors_are_one_line():
    model = planted()
    with pytest.raises(IterationHeadsError, match="centre='foils' needs prompts with foils"):
        answer_writers(model, label_prompts(foils=False), centre="foils")
    with pytest.raises(IterationHeadsError, match="centre='mean', expected one of"):
        answer_writers(model, label_prompts(), centre="mean")  # type: ignore[arg-type]
    far = label_prompts()
    far = Prompts(far.clean, None, far.position, far.answer, far.segments, ("s",), far.labels,
                  foils=torch.full((6, 1), VOCAB))  # fmt: skip
    with pytest.raises(IterationHeadsError, match="foil token"):
        answer_writers(model, far)
    assert competitor_weights(torch.tensor([1]), torch.tensor([[2, -1, 5]]), 6).sum() == 1


def test_ontology_prompts_carry_foils_of_the_answers_kind_and_their_problem():
    problems = make_ontology_problems(OntologyConfig(hops=(2,), distractors=0), 3)
    prompts = ontology_prompts(problems)
    vocab = problems.vocab
    rows = prompts.example.tolist()
    assert sorted(set(rows)) == [0, 1, 2]
    for i, (answer, foils) in enumerate(zip(prompts.answer.tolist(), prompts.foils, strict=True)):
        kind = vocab.kind(vocab.names[answer])
        expected = {vocab.id(n) for n in vocab.of_kind(kind)} - {answer}
        assert set(foils[foils >= 0].tolist()) == expected
        assert bool((prompts.clean[i] == problems.tokens[rows[i]]).all())


def test_iteration_prompts_carry_the_other_symbols_and_their_sequence():
    data = make_dataset(DataConfig(max_len=4, n_train=2, n_test=3))
    prompts = iteration_prompts(data.test, data.layout)
    n = data.layout.n_symbols
    for i, answer in enumerate(prompts.answer.tolist()):
        assert sorted(prompts.foils[i].tolist()) == [s for s in range(n) if s != answer]
        assert bool((prompts.clean[i] == data.test.tokens[int(prompts.example[i])]).all())
    assert prompts.select([0, 2]).example.tolist() == prompts.example[[0, 2]].tolist()
