"""Probes of ontological relations: word pairs labelled from the facts (related, reversed,
negated, unrelated, multi-hop left out), planted relations found (linear when linear, the MLP
alone when XOR-like), random labels at chance, test words held out of training, a random-weight
model of the ontology shape near chance, bad inputs refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

from iteration_heads import ModelConfig, build_model
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import (
    RelationProbes,
    fit_relation_probes,
    ontology_pairs,
    relation_pairs,
    relation_probes,
)
from iteration_heads.tasks import OntologyConfig, make_ontology_problems
from iteration_heads.viz import relation_probes_chart

N, WORDS, DIM = 2000, 60, 8
FAST = {"epochs": 300, "patience": 30}
TOLERANCE = 0.1
"""Random labels: within this of chance (about 3.5 standard deviations at ~300 test pairs)."""
RANDOM_MODEL_MARGIN = 0.1
"""A random-weight model of the ontology shape: every probe below chance + this. Measured
(5000 fictional problems, seed 1): at most 0.542 against chance 0.5 at any boundary; here
(1500 problems, 200 epochs) at most 0.565 over probe seeds 0-2; the trained zoo model reaches
0.65 (docs/guide/pathways.md)."""


def planted(kind: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features ``[1, N, 2 * DIM]`` of word pairs: each word's own embedding plus a context
    part where the relation is planted (linearly, as an XOR of the two halves, or not at all)."""
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(0, WORDS, (N, 2), generator=g)
    embedding = torch.randn(WORDS, DIM, generator=g)
    features = torch.cat([embedding[words[:, 0]], embedding[words[:, 1]]], -1)
    features = features + 0.3 * torch.randn(N, 2 * DIM, generator=g)
    if kind == "linear":
        labels = torch.randint(0, 2, (N,), generator=g)
        features[:, 0] += 3.0 * (2 * labels - 1)
    elif kind == "xor":
        u, v = (torch.randint(0, 2, (N,), generator=g) * 2 - 1 for _ in range(2))
        features[:, 0], features[:, DIM] = 3.0 * u, 3.0 * v  # a's half, b's half
        labels = (u == v).long()
    else:
        labels = torch.randint(0, 3, (N,), generator=g)
    return features[None], labels, words


def test_pairs_are_labelled_from_the_facts() -> None:
    # 5 is 6 . 6 is 7 . 8 is not 9: 5->6 related, 6->5 reversed, 5->7 two hops (left out)
    tokens = torch.tensor([[0, 5, 1, 6, 2, 6, 1, 7, 2, 8, 1, 9, 2]])
    pairs = relation_pairs(tokens, [[(1, 3), (5, 7), (9, 11, True)]], reversed=True)
    assert pairs.classes == ("related", "reversed", "negated", "unrelated")
    label = {
        tuple(w): pairs.classes[c]
        for w, c in zip(pairs.words.tolist(), pairs.labels.tolist(), strict=True)
    }
    assert label[5, 6] == label[6, 7] == "related" and label[6, 5] == label[7, 6] == "reversed"
    assert label[8, 9] == "negated" and label[5, 8] == label[9, 7] == "unrelated"
    assert (5, 7) not in label and (7, 5) not in label and (9, 8) not in label
    where = {
        tuple(w): p for w, p in zip(pairs.words.tolist(), pairs.positions.tolist(), strict=True)
    }
    assert where[5, 6] == [1, 5]  # each word at its last mention among the facts
    plain = relation_pairs(tokens, [[(1, 3), (5, 7), (9, 11)]])
    assert plain.classes == ("related", "unrelated") and plain.counts()["related"] == 3


def test_ontology_pairs_follow_the_stated_facts() -> None:
    problems = make_ontology_problems(OntologyConfig(hops=(2,), distractors=1), 20, seed=3)
    pairs = ontology_pairs(problems)
    names = problems.vocab.names
    for i, (a, b), c in zip(
        pairs.example.tolist(), pairs.words.tolist(), pairs.labels.tolist(), strict=True
    ):
        text = problems.decode(i).split(" Q ")[0]
        stated = f"{names[a]} is {names[b]} ." in text
        assert stated == (pairs.classes[c] == "related")
    assert pairs.tokens.shape[1] < problems.tokens.shape[1]  # the prompt up to "=>"


def test_a_linearly_planted_relation_is_found_on_held_out_words() -> None:
    result = fit_relation_probes(*planted("linear"), **FAST)
    assert float(result.linear_accuracy[0]) >= 0.95 and float(result.mlp_accuracy[0]) >= 0.95
    assert float(result.linear_f1[0]) >= 0.95
    assert abs(float(result.control_linear[0]) - result.chance) < TOLERANCE
    assert float(result.selectivity("linear")[0]) > 0.3


def test_an_xor_relation_needs_the_mlp() -> None:
    result = fit_relation_probes(*planted("xor"), lr=1e-2, **FAST)
    assert float(result.mlp_accuracy[0]) >= 0.9
    assert abs(float(result.linear_accuracy[0]) - result.chance) < TOLERANCE


def test_random_labels_stay_at_chance() -> None:
    result = fit_relation_probes(*planted("none"), **FAST)
    assert result.chance == pytest.approx(1 / 3, abs=0.02)  # balanced by truncation
    for name in ("linear_accuracy", "mlp_accuracy", "control_linear", "control_mlp"):
        assert abs(float(getattr(result, name)[0]) - result.chance) < TOLERANCE, name


def test_test_words_are_held_out_of_training() -> None:
    features, labels, words = planted("linear")
    result = fit_relation_probes(features, labels, words, **FAST)
    test, fit, validation = (result.words_of(s) for s in ("test", "fit", "validation"))
    assert test and fit and validation
    assert not test & (fit | validation)
    assert not validation <= fit  # validation pairs hold a word out of fitting
    counts = result.counts
    assert len(set(counts["test"].values())) == 1  # balanced classes
    again = fit_relation_probes(features, labels, words, **FAST)  # seeded and deterministic
    assert torch.equal(again.mlp_accuracy, result.mlp_accuracy)
    assert torch.equal(again.split, result.split)
    assert isinstance(result, RelationProbes) and "chance" in result.format()
    assert list(result.to_frame().columns)[:3] == ["boundary", "linear_accuracy", "linear_f1"]
    assert result.to_dict()["counts"] == counts
    assert json.loads(result.to_json())["selectivity"][0] > 0.3 and repr(result) == result.format()
    names = [trace.name for trace in relation_probes_chart(result).data]
    assert names == ["linear", "MLP", "linear control", "MLP control", "chance"]


def ontology_shaped() -> torch.nn.Module:
    """A random-weight model with the zoo ontology model's shape."""
    vocab = make_ontology_problems(ontology_config(), 1).vocab.size
    return build_model(
        ModelConfig(d_model=64, n_layers=4, n_heads=4, d_vocab_=vocab, n_ctx_=61, seed=0)
    )


def ontology_config() -> OntologyConfig:
    """The zoo ontology model's problems (``model_ontology(zoo.load("ontology"))``)."""
    return OntologyConfig(n_concepts=16, n_properties=8, world_concepts=6, world_fraction=0.4,
                          p_contradict=0.15)  # fmt: skip


def test_a_random_model_is_near_chance_at_every_boundary() -> None:
    problems = make_ontology_problems(ontology_config(), 1500, seed=1, kind="fictional")
    result = relation_probes(ontology_shaped(), problems, epochs=200, patience=20)
    assert result.boundaries == ("0_pre", "1_pre", "2_pre", "3_pre", "final_post")
    assert result.chance == 0.5
    for name in ("linear_accuracy", "mlp_accuracy", "control_linear", "control_mlp"):
        values = getattr(result, name)
        assert float(values.max()) < result.chance + RANDOM_MODEL_MARGIN, (name, values)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda m, p: relation_probes(m, p, layers=[5]), "layers=5, expected an integer"),
        (lambda m, p: relation_probes(m, p, layers=[]), "layers=[], expected boundary"),
        (lambda m, p: relation_probes(m, p, min_per_class=10**6), "expected at least min_per_c"),
        (lambda m, p: relation_probes(m, "prompts"), "pairs must be RelationPairs"),
        (lambda m, p: ontology_pairs("problems"), "problems must be OntologyProblems"),
        (lambda m, p: relation_pairs(p.tokens, [[(1, 99)]] * 8), "fact (1, 99) of prompt 0"),
        (lambda m, p: relation_pairs(p.tokens, [[]]), "1 lists of facts for 8 prompts"),
        (
            lambda m, p: fit_relation_probes(
                torch.zeros(1, 4, 2), torch.zeros(3).long(), torch.zeros(3, 2).long()
            ),
            "labels of shape (3,) and words (3, 2), expected (4,) and (4, 2)",
        ),
        (
            lambda m, p: fit_relation_probes(
                torch.zeros(1, 3, 2),
                torch.tensor([0, 1, 2]),
                torch.zeros(3, 2).long(),
                classes=("related", "unrelated"),
            ),
            "labels in 0..2, expected class indices in 0..1",
        ),
        (
            lambda m, p: fit_relation_probes(*planted("linear"), test_fraction=1.0),
            "test_fraction=1.0, expected a finite number in (0, 1)",
        ),
    ],
)
def test_bad_inputs_are_refused_in_one_line(call, expected) -> None:
    problems = make_ontology_problems(ontology_config(), 8, seed=0, kind="fictional")
    with pytest.raises(IterationHeadsError) as caught:
        call(ontology_shaped(), problems)
    assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
