"""Pruning by bisection: every point it reports is the exact curve's, it finds the exact curve's
smallest circuit where that curve grows with k, its random sets are the sweep's at that k, and
it runs about log2(heads) variants."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ontology_pruning_case

from iteration_heads import IterationHeadsError
from iteration_heads.passes import shared_sequences
from iteration_heads.pathways import pruning_curve
from iteration_heads.pathways.pruning_bisection import bisected_pruning_curve, bisection_rounds


@pytest.fixture(scope="module")
def ontology():
    model, prompts, reference, ranking = ontology_pruning_case()
    exact = pruning_curve(model, prompts, ranking, reference, n_random=2, seed=3)
    return model, prompts, reference, ranking, exact


def exact_smallest(exact, threshold: float) -> int:
    return next(
        k for k, a in zip(exact.ks, exact.agreement.tolist(), strict=True) if a >= threshold
    )


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9, 1.0])
def test_every_point_is_exact_and_the_circuit_is_the_exact_curves(ontology, threshold) -> None:
    model, prompts, reference, ranking, exact = ontology
    assert exact.ks == tuple(range(len(ranking) + 1))  # every k: the whole exact curve
    bisected = bisected_pruning_curve(
        model, prompts, ranking, reference, threshold=threshold, n_random=2, seed=3
    )
    for k, agreement, accuracy in zip(
        bisected.ks, bisected.agreement.tolist(), bisected.accuracy.tolist(), strict=True
    ):
        assert agreement == pytest.approx(float(exact.agreement[k]), abs=1e-6), k
        assert accuracy == pytest.approx(float(exact.accuracy[k]), abs=1e-6), k
    found = bisected.smallest_circuit()
    # the exact curve of this model grows with k up to the crossing: bisection finds its point
    assert found is not None and found[0] == exact_smallest(exact, threshold)
    assert found[1] == list(ranking[: found[0]])
    assert len(bisected.ks) <= bisection_rounds(len(ranking)) + 1  # and the full model
    assert found[0] - 1 in bisected.ks or found[0] == 0  # the crossing was seen from below


def test_random_sets_are_the_sweeps_at_the_circuits_size(ontology) -> None:
    model, prompts, reference, ranking, _ = ontology
    bisected = bisected_pruning_curve(model, prompts, ranking, reference, n_random=2, seed=3)
    k = bisected.smallest_circuit()[0]
    at_k = pruning_curve(model, prompts, ranking, reference, ks=[k], n_random=2, seed=3)
    row = bisected.ks.index(k)
    assert torch.equal(bisected.random_agreement[row], at_k.random_agreement[0])
    assert torch.equal(bisected.random_accuracy[row], at_k.random_accuracy[0])
    others = [i for i in range(len(bisected.ks)) if i != row]
    assert bool(bisected.random_agreement[others].isnan().all())


def test_it_runs_log2_heads_variants_not_the_sweep(ontology) -> None:
    model, prompts, reference, ranking, exact = ontology
    rows: list[int] = []
    handle = model.blocks[-1].register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        bisected = bisected_pruning_curve(model, prompts, ranking, reference, n_random=2, seed=3)
    finally:
        handle.remove()
    distinct = len(shared_sequences(prompts.clean, prompts.position).tokens)
    # each distinct sequence runs once a variant; the reference means' pass left out
    variants = (sum(rows) - len(reference.unique(dim=0))) / distinct
    # the full model, the visited ks and the two random sets
    assert variants == 1 + len(bisected.ks) - 1 + 2 <= 1 + bisection_rounds(len(ranking)) + 2
    assert 4 * variants < len(exact.ks) * (1 + 2)  # the sweep: every k and its two draws


def test_results_say_bisection_and_read_as_json(ontology) -> None:
    model, prompts, reference, ranking, _ = ontology
    bisected = bisected_pruning_curve(model, prompts, ranking, reference, threshold=0.8, n_random=2)
    assert "by bisection" in bisected.format() and "at 0.8 agreement" in bisected.format()
    as_dict = json.loads(json.dumps(bisected.to_dict(), allow_nan=False))
    assert as_dict["method"] == "bisection" and as_dict["threshold"] == 0.8
    assert as_dict["smallest_circuit_0.8"] == [list(h) for h in bisected.smallest_circuit()[1]]


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "0.9", True, float("nan")])
def test_a_bad_threshold_is_refused_before_any_pass(ontology, threshold) -> None:
    model, prompts, reference, ranking, _ = ontology
    rows: list[int] = []
    handle = model.blocks[-1].register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        with pytest.raises(IterationHeadsError, match="threshold"):
            bisected_pruning_curve(model, prompts, ranking, reference, threshold=threshold)
    finally:
        handle.remove()
    assert rows == []


@pytest.mark.parametrize("n_heads", [0, -1, 2.0, True])
def test_bisection_rounds_refuses_a_bad_count(n_heads) -> None:
    with pytest.raises(IterationHeadsError, match="n_heads"):
        bisection_rounds(n_heads)
