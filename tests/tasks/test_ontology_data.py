"""Ontology data for training: test splits held out from training, configs that round-trip,
clear errors."""

from __future__ import annotations

import pytest

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.ontology import PROBLEM_KINDS, OntologyConfig
from iteration_heads.tasks.ontology_data import (
    OntologyDataConfig,
    make_ontology_dataset,
    prompts_of,
    training_prompts,
)

SMALL = OntologyDataConfig(
    OntologyConfig(hops=(1, 2), n_concepts=8, world_concepts=3, world_fraction=0.5),
    n_train=400,
    n_test=100,
)


def test_test_splits_are_held_out_and_of_their_kind() -> None:
    data = make_ontology_dataset(SMALL)
    seen = prompts_of(data.train_problems.tokens)
    for kind, problems in data.tests.items():
        assert not prompts_of(problems.tokens) & seen
        assert set(problems.kinds.tolist()) == {PROBLEM_KINDS.index(kind)}
        assert 0 < len(problems) <= 100
    assert data.train.tokens.shape == data.train_problems.tokens.shape
    assert data.width >= data.train.tokens.shape[1]


def test_the_training_prompts_are_the_datasets_drawn_once_per_config() -> None:
    data = make_ontology_dataset(SMALL)
    seen = training_prompts(SMALL)
    assert seen == prompts_of(data.train_problems.tokens) and len(seen) > 300
    assert training_prompts(SMALL) is seen  # cached: the same frozen set, not drawn again
    other = training_prompts(OntologyDataConfig(SMALL.ontology, n_train=400, n_test=100, seed=1))
    assert other != seen  # another seed draws other problems
    with pytest.raises(IterationHeadsError, match="config must be an OntologyDataConfig, got dict"):
        training_prompts({"n_train": 400})  # type: ignore[arg-type]


def test_one_hop_repeats_are_dropped_from_the_test_split() -> None:
    tiny = OntologyConfig(hops=(1,), n_concepts=2, n_entities=2, n_properties=2, distractors=0)
    # 2 entities x 2 concepts x 2 properties x 2 queries x 2 fact orders = 32 prompts
    data = make_ontology_dataset(OntologyDataConfig(tiny, n_train=12, n_test=50))
    assert 0 < len(data.tests["fictional"]) < 50
    assert not prompts_of(data.tests["fictional"].tokens) & prompts_of(data.train_problems.tokens)
    with pytest.raises(IterationHeadsError, match="every test problem repeats"):
        make_ontology_dataset(OntologyDataConfig(tiny, n_train=2000, n_test=20))


def test_configs_round_trip_and_bad_ones_raise() -> None:
    assert OntologyDataConfig.from_dict(SMALL.to_dict()) == SMALL
    assert SMALL.to_dict()["task"] == "ontology"
    with pytest.raises(IterationHeadsError, match="n_train"):
        OntologyDataConfig(n_train=0)
    with pytest.raises(IterationHeadsError, match="expected an OntologyConfig"):
        OntologyDataConfig(ontology={"hops": (1,)})
    with pytest.raises(IterationHeadsError, match="unknown OntologyConfig fields"):
        OntologyDataConfig.from_dict({"ontology": {"hopz": [1]}})
    with pytest.raises(IterationHeadsError, match="must be an OntologyDataConfig"):
        make_ontology_dataset(SMALL.ontology)
