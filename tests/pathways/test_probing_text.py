"""Relation probes on natural-language PrOntoQA (``prontoqa_pairs``): the pairs of a hand-written
problem are exactly the stated relations, names that end in the same sub-word token stay two
words, a planted relation on text pairs is found on held-out names, shuffled labels stay at
chance, ``relation_probes`` takes text pairs, bad inputs are refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from iteration_heads import ModelConfig, build_model
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import (
    fit_relation_probes,
    prontoqa_pairs,
    relation_pairs,
    relation_probes,
)
from iteration_heads.tasks.prontoqa import (
    ProntoQAConfig,
    ProntoQAProblem,
    Word,
    make_prontoqa,
    plural,
)

LLAMA = Path(__file__).parents[1] / "fixtures" / "llama_prontoqa"
CONFIG = ProntoQAConfig(hops=(1, 2), distractors=1, format="qa")  # the fixture's problems
FAST = {"epochs": 300, "patience": 30}
TOLERANCE = 0.1
"""Shuffled labels: within this of chance (as in tests/pathways/test_probing.py)."""
FACTS = (
    "Wren is brimpus. Brimpuses are yumpuses. Yumpuses are not lempuses. Lempuses are red. "
    "Grimpuses are sweet."
)


@pytest.fixture(scope="module")
def tokenizer():
    """The Llama fixture's byte-level BPE (400 tokens): many names share their last token."""
    if not (LLAMA / "tokenizer.json").exists():
        pytest.skip("llama_prontoqa fixture not built")
    return AutoTokenizer.from_pretrained(LLAMA)


def hand_written(facts: str = FACTS, question: str = "Wren is red") -> ProntoQAProblem:
    """A problem with these facts (names tagged by hand from the config's lists)."""
    text = f"Q: {facts} True or false: {question}.\nA: Wren is brimpus. True"
    kinds = {n: "concept" for n in CONFIG.concepts} | {n: "entity" for n in CONFIG.entities}
    kinds |= {n: "property" for n in CONFIG.properties}
    forms = {plural(n): n for n in CONFIG.concepts}
    words = []
    for match in re.finditer(r"[A-Za-z]+", text[: text.index("\nA:")]):
        surface = match.group()
        name = forms.get(surface.lower(), surface if surface in kinds else surface.lower())
        if name in kinds:
            words.append(Word(name, kinds[name], match.span(), surface.lower() in forms))
    facts_span = (3, 3 + len(facts))
    question_span = (facts_span[1] + 1, text.index("\nA:"))
    segments = (("facts", facts_span), ("question", question_span),
                ("chain of thought", (text.index("A: ") + 3, len(text))))  # fmt: skip
    return ProntoQAProblem(text, (), segments, tuple(words), 2, True, "Wren",
                           ("brimpus", "yumpus", "red"), "red", 0, 0, CONFIG)  # fmt: skip


def triples(pairs) -> set[tuple[str, str, str]]:
    return {
        (pairs.names[a], pairs.names[b], pairs.classes[c])
        for (a, b), c in zip(pairs.words.tolist(), pairs.labels.tolist(), strict=True)
    }


def test_the_pairs_of_a_hand_written_problem_are_its_stated_relations(tokenizer) -> None:
    pairs = prontoqa_pairs([hand_written()], tokenizer)
    assert pairs.classes == ("related", "negated", "unrelated")
    chain = ("Wren", "brimpus", "yumpus", "lempus", "red")
    apart = [(x, y) for x in ("grimpus", "sweet") for y in chain]
    expected = {("Wren", "brimpus", "related"), ("brimpus", "yumpus", "related"),
                ("yumpus", "lempus", "negated"), ("lempus", "red", "related"),
                ("grimpus", "sweet", "related")}  # fmt: skip
    expected |= {(x, y, "unrelated") for a, b in apart for x, y in ((a, b), (b, a))}
    assert triples(pairs) == expected and len(pairs) == len(expected)
    with_reversed = triples(prontoqa_pairs([hand_written()], tokenizer, reversed=True))
    assert ("yumpus", "brimpus", "reversed") in with_reversed
    assert ("lempus", "yumpus", "reversed") not in with_reversed  # a negation has no reverse


def test_each_word_is_read_at_the_last_token_of_its_last_mention(tokenizer) -> None:
    problem = hand_written()
    pairs = prontoqa_pairs([problem], tokenizer)
    bos = [tokenizer.bos_token_id]
    encoded = tokenizer(problem.prompt, add_special_tokens=False, return_offsets_mapping=True)
    assert (
        pairs.tokens[0, : len(bos) + len(encoded["input_ids"])].tolist()
        == bos + encoded["input_ids"]
    )
    where = {pairs.names[w]: p for row, pos in zip(pairs.words.tolist(), pairs.positions.tolist(),
             strict=True) for w, p in zip(row, pos, strict=True)}  # fmt: skip
    for name, surface in (("brimpus", "Brimpuses are"), ("grimpus", "Grimpuses"),
                          ("red", "red."), ("Wren", "Wren is brimpus")):  # fmt: skip
        start = problem.text.index(surface)
        end = start + len(re.match(r"[A-Za-z]+", surface).group())
        last = max(k for k, (a, b) in enumerate(encoded["offset_mapping"]) if a < end and b > start)
        assert where[name] == len(bos) + last, name


def test_names_sharing_their_last_token_stay_two_words(tokenizer) -> None:
    problem = hand_written("Brimpuses are yumpuses. Grimpuses are dumpuses.")
    pairs = prontoqa_pairs([problem], tokenizer)
    assert triples(pairs) >= {("yumpus", "dumpus", "unrelated"), ("dumpus", "yumpus", "unrelated")}
    where = {pairs.names[w]: p for row, pos in zip(pairs.words.tolist(), pairs.positions.tolist(),
             strict=True) for w, p in zip(row, pos, strict=True)}  # fmt: skip
    last = {n: int(pairs.tokens[0, where[n]]) for n in ("yumpus", "dumpus")}
    assert last["yumpus"] == last["dumpus"]  # " yumpuses", " dumpuses": both end in "umpuses"
    assert tokenizer.convert_ids_to_tokens([last["yumpus"]]) == ["umpuses"]
    facts = [[(where["brimpus"], where["yumpus"]), (where["grimpus"], where["dumpus"])]]
    by_token = relation_pairs(pairs.tokens, facts)  # by token id, they would be one word
    assert pairs.words.unique().numel() == 4 and by_token.words.unique().numel() == 3


def text_pairs(tokenizer, n: int = 160):
    return prontoqa_pairs(make_prontoqa(CONFIG, n, seed=5), tokenizer)


def planted_features(pairs, seed: int = 0, signal: float = 3.0) -> torch.Tensor:
    """``[1, pair, 16]``: each name's own embedding, noise, and the label planted linearly."""
    g = torch.Generator().manual_seed(seed)
    embedding = torch.randn(len(pairs.names), 8, generator=g)
    features = torch.cat([embedding[pairs.words[:, 0]], embedding[pairs.words[:, 1]]], -1)
    features = features + 0.3 * torch.randn(features.shape, generator=g)
    features[:, 0] += signal * (2 * (pairs.labels == 0).float() - 1)
    return features[None]


def test_a_planted_relation_on_text_pairs_is_found_on_held_out_names(tokenizer) -> None:
    pairs = text_pairs(tokenizer)
    result = fit_relation_probes(planted_features(pairs), pairs.labels, pairs.words,
                                 classes=pairs.classes, **FAST)  # fmt: skip
    assert float(result.linear_accuracy[0]) >= 0.95 and float(result.mlp_accuracy[0]) >= 0.95
    assert abs(float(result.control_linear[0]) - result.chance) < TOLERANCE
    test, fit = result.words_of("test"), result.words_of("fit") | result.words_of("validation")
    assert test and not test & fit  # names held out, whatever tokens they end in


def test_shuffled_labels_on_text_pairs_stay_at_chance(tokenizer) -> None:
    pairs = text_pairs(tokenizer)
    shuffled = pairs.labels[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(1))]
    result = fit_relation_probes(planted_features(pairs, signal=0.0), shuffled, pairs.words, **FAST)
    for name in ("linear_accuracy", "mlp_accuracy", "control_linear", "control_mlp"):
        assert abs(float(getattr(result, name)[0]) - result.chance) < TOLERANCE, name


def test_relation_probes_take_text_pairs(tokenizer) -> None:
    pairs = text_pairs(tokenizer, 60)
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_vocab_=len(tokenizer),
                                    n_ctx_=pairs.tokens.shape[1], seed=0))  # fmt: skip
    result = relation_probes(model, pairs, layers=[1], match_positions=False, epochs=5,
                             min_per_class=1)  # fmt: skip
    assert result.boundaries == ("final_post",) and result.classes == ("related", "unrelated")
    assert int(result.words.max()) < len(pairs.names)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda t: prontoqa_pairs("problems", t), "problems of type str, expected a non-empty"),
        (lambda t: prontoqa_pairs([], t), "problems of type list, expected a non-empty"),
        (lambda t: prontoqa_pairs([hand_written()], None), "tokenizer=None, expected a fast"),
        (lambda t: prontoqa_pairs([hand_written()], object()), "expected a HuggingFace tokeni"),
        (lambda t: prontoqa_pairs([hand_written()], t, reversed=1), "reversed=1, expected True"),
        (lambda t: prontoqa_pairs([hand_written("Wren is red sweet.")], t), "a fact naming"),
        (
            lambda t: relation_pairs(torch.zeros(1, 6).long(), [[(1, 3)]], names=[[(0, -1)]]),
            "names[0][0]=(0, -1), expected two non-negative integer name ids",
        ),
        (
            lambda t: relation_pairs(
                torch.zeros(1, 6).long(), [[(1, 3), (3, 5)]], names=[[(0, 1)]]
            ),
            "names[0]=[(0, 1)], expected 2 (subject, object) name-id pairs",
        ),
        (
            lambda t: relation_pairs(torch.zeros(1, 6).long(), [[(1, 3)]], names=[]),
            "0 lists of names for 1 prompts",
        ),
    ],
)
def test_bad_inputs_are_refused_in_one_line(tokenizer, call, expected) -> None:
    with pytest.raises(IterationHeadsError) as caught:
        call(tokenizer)
    assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
