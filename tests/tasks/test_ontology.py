"""The ontology task's data: the gold chain of thought follows from the facts, every target is
tagged with its subtask and its source, and a corruption removes exactly that source."""

from __future__ import annotations

import pytest
import torch

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import IGNORE
from iteration_heads.tasks.ontology import (
    SUBTASKS,
    OntologyConfig,
    chain_of_thought,
    make_ontology_problems,
    walk_chain,
)


@pytest.fixture(scope="module")
def problems():
    return make_ontology_problems(OntologyConfig(hops=(1, 2, 3, 4), distractors=3), 300, seed=0)


def parse(problems, row):
    names = problems.decode(row).split()
    prompt, cot = names[: names.index("=>")], names[names.index("=>") + 1 :]
    facts = [(prompt[i], prompt[i + 2]) for i in range(1, prompt.index("Q"), 4)]
    entity, query = prompt[prompt.index("Q") + 1], prompt[prompt.index("Q") + 3]
    return facts, entity, query, cot


def test_the_chain_of_thought_follows_from_the_facts(problems) -> None:
    for row in range(len(problems)):
        facts, entity, query, cot = parse(problems, row)
        chain = walk_chain(facts, entity)
        assert len(chain) == int(problems.hops[row]) + 1  # concepts, then the property
        assert cot == [t for t, _ in chain_of_thought(facts, entity, query)]
        assert (cot[-2] == "True") == bool(problems.answers[row]) == (chain[-1] == query)
    assert set(problems.hops.tolist()) == {1, 2, 3, 4}
    assert 0.35 < problems.answers.float().mean() < 0.65


def test_every_target_is_tagged_and_the_cot_alone_is_scored(problems) -> None:
    code = {name: SUBTASKS.index(name) for name in SUBTASKS}
    for row in range(len(problems)):
        hops = int(problems.hops[row])
        tags = problems.subtasks[row][problems.subtasks[row] >= 0].tolist()
        assert tags.count(code["copy"]) == hops + 1
        assert tags.count(code["induction"]) == hops
        assert tags.count(code["decision"]) == 2 * hops + 1
        assert tags.count(code["answer"]) == 1
        scored = problems.targets[row] != IGNORE
        assert torch.equal(scored, problems.subtasks[row] >= 0)
        arrow = int((problems.tokens[row] == problems.vocab.id("=>")).nonzero())
        assert int(scored.nonzero()[0]) == arrow  # the first target is predicted at "=>"


def test_sources_are_the_latest_earlier_occurrence_of_the_target(problems) -> None:
    code = {name: SUBTASKS.index(name) for name in SUBTASKS}
    for row in range(len(problems)):
        arrow = int((problems.tokens[row] == problems.vocab.id("=>")).nonzero())
        for position in (problems.sources[row] >= 0).nonzero().flatten().tolist():
            source = int(problems.sources[row, position])
            target = int(problems.targets[row, position])
            assert source <= position and int(problems.tokens[row, source]) == target
            later = problems.tokens[row, source + 1 : position + 1]
            kind = int(problems.subtasks[row, position])
            if kind == code["copy"]:  # from a fact of the prompt: "... is target ."
                assert source < arrow
                assert int(problems.tokens[row, source + 1]) == problems.vocab.id(".")
            else:
                assert not bool((later == target).any())  # the most recent occurrence
            if kind == code["induction"]:
                assert source > arrow  # from the chain of thought itself


def test_a_corruption_replaces_the_source_by_an_unused_name_of_its_kind(problems) -> None:
    vocab = problems.vocab
    for row in range(0, len(problems), 7):
        for position in (problems.sources[row] >= 0).nonzero().flatten().tolist():
            source = int(problems.sources[row, position])
            corrupted = problems.corrupt(row, position)
            changed = (corrupted != problems.tokens[row]).nonzero().flatten().tolist()
            assert changed == [source]
            old, new = (
                vocab.names[int(problems.tokens[row, source])],
                vocab.names[int(corrupted[source])],
            )
            assert (
                vocab.kind(old) == vocab.kind(new)
                and int(corrupted[source]) not in problems.tokens[row]
            )
    with pytest.raises(IterationHeadsError, match="predicts no name"):
        problems.corrupt(0, int((problems.subtasks[0] == SUBTASKS.index("answer")).nonzero()))


def test_the_same_seed_draws_the_same_problems() -> None:
    a = make_ontology_problems(OntologyConfig(), 20, seed=3)
    b = make_ontology_problems(OntologyConfig(), 20, seed=3)
    c = make_ontology_problems(OntologyConfig(), 20, seed=4)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize(
    "facts, entity, message",
    [
        ([("e0", "c1"), ("c1", "c2"), ("c2", "c1")], "e0", "the facts loop: e0 -> c1 -> c2 -> c1"),
        ([("e0", "c1"), ("c1", "p0"), ("c1", "p1")], "e0", "c1 is both p0 and p1"),
        ([("e0", "c1"), ("c1", "p0")], "e3", "the entity 'e3' is in no fact"),
    ],
)
def test_bad_ontologies_get_a_clear_error(facts, entity, message) -> None:
    with pytest.raises(IterationHeadsError, match=message):
        walk_chain(facts, entity)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"hops": (5,), "n_concepts": 4}, "hops up to 5 need 5 concepts on a chain; n_concepts=4"),
        ({"hops": 2}, "expected a non-empty tuple"),
        ({"hops": ()}, "expected a non-empty tuple"),
        ({"hops": (0,)}, "hops"),
        ({"distractors": -1}, "distractors"),
        ({"p_true": 1.5}, "p_true"),
        ({"n_entities": 1}, "n_entities"),
    ],
)
def test_bad_configs_get_a_clear_error(options, message) -> None:
    with pytest.raises(IterationHeadsError, match=message):
        OntologyConfig(**options)
    with pytest.raises(IterationHeadsError, match="n="):
        make_ontology_problems(OntologyConfig(), 0)
