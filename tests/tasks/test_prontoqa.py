"""Natural-language PrOntoQA problems: text, chain of thought, tags and sources."""

from __future__ import annotations

import re

import pytest

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks import ProntoQAConfig, make_problem, make_prontoqa
from iteration_heads.tasks.prontoqa import CONCEPTS, plural

# Dutta et al.'s 10 subtasks of a 2-hop chain (their table), then the label
DUTTA_TAGS = ["decision", "copy"] + ["decision", "copy", "decision", "induction"] * 2 + ["answer"]
IN_CHAIN = {4, 5, 8, 9}  # the targets whose source is the generated chain of thought


def test_the_same_seed_gives_the_same_problems_and_another_seed_others() -> None:
    config = ProntoQAConfig(hops=(1, 2, 3), shots=2, distractors=2)
    first = [p.text for p in make_prontoqa(config, 6, seed=4)]
    assert first == [p.text for p in make_prontoqa(config, 6, seed=4)]
    assert first != [p.text for p in make_prontoqa(config, 6, seed=5)]
    assert len(set(first)) == 6


def test_a_two_hop_chain_alternates_facts_and_derived_statements_with_dutta_tags() -> None:
    for problem in make_prontoqa(ProntoQAConfig(), 20, seed=1):
        x, (c1, c2, p) = problem.entity, problem.chain
        label = "True" if problem.answer else "False"
        cap = plural(c1).capitalize(), plural(c2).capitalize()
        expected = (
            f"{x} is {c1}. {cap[0]} are {plural(c2)}. {x} is {c2}. {cap[1]} are {p}. "
            f"{x} is {p}. {label}"
        )
        assert problem.completion == expected
        assert problem.answer == (problem.query == p)
        assert [s.subtask for s in problem.steps] == DUTTA_TAGS
        assert [s.dutta for s in problem.steps] == list(range(11))
        assert [s.hop for s in problem.steps] == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
        cot = problem.segments[-1][1][0]
        for step in problem.steps:
            start, end = step.word.span
            assert problem.text[start:end] == step.word.surface
            source = step.source
            assert source is not None and source.span[0] < start
            assert problem.text[source.span[0] : source.span[1]] == source.surface
            if step.subtask == "answer":  # the queried property, in the question
                assert source.name == problem.query
                continue
            assert source.name == step.word.name and source.capital == step.word.capital
            assert (source.span[0] >= cot) == (step.index in IN_CHAIN)
            later = [
                w
                for w in problem.words
                if w.name == source.name
                and w.capital == source.capital
                and source.span[0] < w.span[0] < start
                and (w.span[0] >= cot or source.span[0] < cot)
            ]
            assert not later  # the most recent occurrence, the chain first


def test_the_question_and_segments_and_the_false_questions() -> None:
    problems = make_prontoqa(ProntoQAConfig(p_true=0.0, hops=(3,)), 8, seed=2)
    for problem in problems:
        spans = dict(problem.segments)
        question = problem.text[slice(*spans["question"])]
        assert question == f"True or false: {problem.entity} is {problem.query}."
        assert problem.query != problem.chain[-1] and not problem.answer
        assert problem.text.endswith(". False")
        assert problem.text[slice(*spans["chain of thought"])] == problem.completion
        assert [s.dutta for s in problem.steps] == [None] * 15
    assert all(p.answer for p in make_prontoqa(ProntoQAConfig(p_true=1.0), 8, seed=2))


@pytest.mark.parametrize("shots", range(7))
def test_shots_come_first_with_other_names(shots: int) -> None:
    problem = make_problem(ProntoQAConfig(shots=shots, distractors=1), seed=shots)
    assert problem.text.count("### Response:") == shots + 1
    names = [n for n, _ in problem.segments]
    assert names == (["examples"] if shots else []) + ["facts", "question", "chain of thought"]
    if shots:
        examples = problem.text[slice(*problem.segments[0][1])]
        assert examples.count("### Input:") == shots and not examples.endswith("\n")
        words = set(re.findall(r"[A-Za-z]+", examples))
        for kind in ("concept", "entity"):
            assert not set(problem.used(kind)) & words  # shots avoid the question's names
    assert all(s.source is None or s.source.span[0] >= problem.segments[-3][1][0]
               for s in problem.steps)  # fmt: skip


def test_distractors_are_facts_off_the_chain() -> None:
    config = ProntoQAConfig(hops=(2,), distractors=3, shuffle_facts=False)
    for problem in make_prontoqa(config, 10, seed=7):
        facts = problem.text[slice(*dict(problem.segments)["facts"])]
        sentences = facts.split(". ")
        assert len(sentences) == 2 + 1 + 3
        for sentence in sentences[3:]:
            subject = sentence.split(" ")[0].lower()
            assert subject not in {plural(c) for c in problem.chain}
    counts = {len(p.used("concept")) for p in make_prontoqa(ProntoQAConfig(), 10)}
    assert counts == {2}


def test_the_every_surface_and_the_qa_format_keep_the_tags() -> None:
    problem = make_problem(ProntoQAConfig(surface="every", format="qa", hops=(2,)), seed=0)
    assert problem.text.startswith("Q: ") and "\nA: " in problem.text
    assert "Every " in problem.completion and " are " not in problem.text
    assert [s.subtask for s in problem.steps] == DUTTA_TAGS
    x, (c1, c2, _) = problem.entity, problem.chain

    def article(c: str) -> str:
        return ("an " if c[0] in "aeiou" else "a ") + c

    start = f"{x} is {article(c1)}. Every {c1} is {article(c2)}. {x} is {article(c2)}. Every {c2}"
    assert problem.completion.startswith(start)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shots": 7}, "shots=7, expected an integer in [0, 6]"),
        ({"hops": (0,)}, "hops=0"),
        ({"hops": (6,)}, "hops=6"),
        ({"hops": 2}, "hops=2, expected a non-empty tuple"),
        ({"surface": "fancy"}, "surface='fancy'"),
        ({"concepts": CONCEPTS[:2]}, "concepts: 2 distinct names, expected at least 3"),
        ({"entities": ("Fae", "Rex x")}, "expected a tuple of single words"),
        ({"properties": ("red", "blue", "Fae")}, "already used elsewhere"),
    ],
)
def test_bad_configs_are_refused_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(IterationHeadsError, match=re.escape(message)) as error:
        ProntoQAConfig(**changes)
    assert "\n" not in str(error.value)
