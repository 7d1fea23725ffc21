"""The ontology task's data: the gold chain of thought follows from the facts, every target is
tagged with its subtask and its source, and a corruption removes exactly that source."""

from __future__ import annotations

import pytest
import torch

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import IGNORE
from iteration_heads.tasks.ontology import (
    PROBLEM_KINDS,
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


WORLD = OntologyConfig(
    hops=(1, 2, 3),
    n_concepts=14,
    world_concepts=6,
    world_fraction=0.5,
    p_contradict=0.2,
    p_stated=0.5,
    distractors=2,
)


def test_the_world_is_disjoint_chains_over_its_concepts() -> None:
    world = WORLD.world()
    inner = [c for chain in world.chains for c in chain[:-1]]
    assert sorted(inner) == sorted(f"c{i}" for i in range(6))  # each world concept once
    assert all(chain[-1].startswith("p") for chain in world.chains)
    assert OntologyConfig().world() is None


def test_world_problems_state_links_only_sometimes_and_recall_the_rest() -> None:
    problems = make_ontology_problems(WORLD, 200, seed=1, kind="world")
    code = {name: SUBTASKS.index(name) for name in SUBTASKS}
    copies = problems.subtasks == code["copy"]
    world_copy = copies & (problems.priors >= 0)
    # the world agrees with itself: what memory says is the target
    assert torch.equal(problems.priors[world_copy], problems.targets[world_copy])
    recalled = world_copy & (problems.sources < 0)
    stated = world_copy & (problems.sources >= 0)
    share = recalled.sum() / world_copy.sum()
    assert 0.35 < float(share) < 0.65  # p_stated = 0.5
    assert bool(stated.any())
    assert bool((problems.kinds == PROBLEM_KINDS.index("world")).all())


def test_contradicting_problems_state_every_link_against_the_world() -> None:
    problems = make_ontology_problems(WORLD, 200, seed=2, kind="contradicting")
    code = {name: SUBTASKS.index(name) for name in SUBTASKS}
    for name in ("copy", "induction"):
        mask = (problems.subtasks == code[name]) & (problems.priors >= 0)
        assert bool(mask.any())
        assert not bool((problems.priors[mask] == problems.targets[mask]).any())
    copies = problems.subtasks == code["copy"]
    assert bool((problems.sources[copies] >= 0).all())  # everything is in context


def test_mixed_problems_follow_the_config_fractions() -> None:
    problems = make_ontology_problems(WORLD, 2000, seed=3)
    counts = torch.bincount(problems.kinds, minlength=3).tolist()
    assert abs(counts[0] - 1000) < 100  # world_fraction 0.5
    assert abs(counts[2] - 200) < 60  # a fifth of the world problems contradict it
    fictional = make_ontology_problems(WORLD, 100, seed=3, kind="fictional")
    world_ids = {fictional.vocab.id(f"c{i}") for i in range(6)}
    assert not any(t in world_ids for t in fictional.tokens.flatten().tolist())


@pytest.mark.parametrize(
    "options, kind, message",
    [
        ({"world_concepts": 2, "hops": (3,)}, "mixed", "world_concepts=2 of n_concepts=12"),
        ({"world_concepts": 10, "hops": (3,)}, "mixed", "each need at least max_hops=3"),
        ({"world_fraction": 0.5}, "mixed", "needs a world: set world_concepts"),
        ({}, "world", "kind='world' needs a world"),
        ({}, "fantasy", "kind='fantasy', expected 'mixed' or one of"),
    ],
)
def test_bad_worlds_get_a_clear_error(options, kind, message) -> None:
    with pytest.raises(IterationHeadsError, match=message):
        make_ontology_problems(OntologyConfig(**options), 4, kind=kind)
