"""Pruning curves by attribution: the estimate against the exact curve on the zoo models (bounds
set from the measurement in docs/guide/pathways.md), the exact check is ``pruned_predictions``
of the circuit, the estimate's passes do not grow with the ks and draws, results say which
numbers are estimates."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import ontology_pruning_case

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.memory import rows_per_pass
from iteration_heads.pathways import (
    all_heads,
    iteration_prompts,
    pruned_predictions,
    pruning_curve,
)
from iteration_heads.pathways.pruning import pruning_sweep
from iteration_heads.pathways.pruning_attribution import linear_pruning_curve


@pytest.fixture(scope="module")
def ontology():
    return ontology_pruning_case()


@pytest.fixture(scope="module")
def polynomial():
    data = make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=8))
    prompts = iteration_prompts(data.test, data.layout)
    return zoo.load("polynomial_paper"), prompts, data.train.tokens, [(1, 0), (0, 0)]


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks with ties averaged."""
    out = torch.empty(len(values), dtype=torch.float64)
    out[values.argsort()] = torch.arange(len(values), dtype=torch.float64)
    for v in values.unique():
        out[values == v] = out[values == v].mean()
    return out


@pytest.mark.parametrize(
    ("fixture", "most", "mean_at_most", "rho_at_least"),
    # measured (defaults candidates=5, steps=4): polynomial_paper 0.076 / 0.051 / 1.0,
    # ontology 0.214 / 0.065 / 0.924
    [("polynomial", 0.1, 0.07, 0.99), ("ontology", 0.25, 0.09, 0.9)],
)
def test_estimate_agrees_with_the_exact_curve(request, fixture, most, mean_at_most, rho_at_least):
    model, prompts, reference, ranking = request.getfixturevalue(fixture)
    lin = linear_pruning_curve(model, prompts, ranking, reference, n_random=3)
    exact = pruning_curve(model, prompts, ranking, reference, n_random=3)
    assert lin.ks == exact.ks
    gap = (lin.estimated_agreement - exact.agreement).abs()
    assert float(gap.max()) <= most and float(gap.mean()) <= mean_at_most
    rho = torch.corrcoef(torch.stack([ranks(lin.estimated_agreement), ranks(exact.agreement)]))
    assert float(rho[0, 1]) >= rho_at_least
    # the exact check is the exact curve's point at the circuit's k
    at = exact.ks.index(lin.circuit_k)
    assert lin.exact_agreement == pytest.approx(float(exact.agreement[at]))
    assert torch.equal(lin.exact_random_agreement, exact.random_agreement[at])


def test_plain_attribution_misses_what_the_path_finds(ontology):
    model, prompts, reference, ranking = ontology
    plain = linear_pruning_curve(model, prompts, ranking, reference, candidates=2, steps=1)
    path = linear_pruning_curve(model, prompts, ranking, reference)
    assert float(plain.estimated_agreement[0]) == 1.0  # measured: 1.0 at every k
    assert float(path.estimated_agreement[0]) <= 0.3  # measured 0.25; exact: 0.036


def test_exact_check_is_pruned_predictions_of_the_circuit(ontology):
    model, prompts, reference, ranking = ontology
    lin = linear_pruning_curve(model, prompts, ranking, reference, n_random=2, seed=3)
    assert 0 < lin.circuit_k < len(ranking) and lin.circuit == list(ranking[: lin.circuit_k])
    heads, ks, draws = pruning_sweep(model, ranking, None, n_random=2, seed=3)
    at = ks.index(lin.circuit_k)
    randoms = [[heads[i] for i in d.tolist()] for d in draws[at * 2 : at * 2 + 2]]
    top = pruned_predictions(model, prompts, [lin.circuit, *randoms, heads], reference)
    assert torch.equal(lin.exact_predictions, top[0])
    assert lin.exact_agreement == float((top[0] == top[-1]).float().mean())
    assert lin.exact_random_agreement.tolist() == (top[1:3] == top[-1]).float().mean(-1).tolist()
    assert lin.exact_random_heads == tuple(tuple(sorted(r)) for r in randoms)
    assert lin.estimated_circuit_agreement >= lin.threshold or not lin.estimate_reached


def grad_passes(model, run) -> list[int]:
    """Rows of each forward pass run with gradients (the estimate's; the exact ones run without)."""
    rows: list[int] = []
    handle = model.blocks[-1].register_forward_pre_hook(
        lambda module, args: rows.append(len(args[0])) if torch.is_grad_enabled() else None
    )
    try:
        run()
    finally:
        handle.remove()
    return rows


def test_estimate_passes_do_not_grow_with_ks_and_draws(ontology):
    model, prompts, reference, ranking = ontology
    few = grad_passes(
        model, lambda: linear_pruning_curve(model, prompts, ranking, reference, ks=[16], n_random=1)
    )
    many = grad_passes(model, lambda: linear_pruning_curve(model, prompts, ranking, reference))
    assert few == many
    width = int(prompts.position.max()) + 1
    batches = math.ceil(len(prompts) / rows_per_pass(model, width, cached=8, grad=True))
    assert len(few) == 4 * batches  # steps per batch
    small = grad_passes(
        model,
        lambda: linear_pruning_curve(model, prompts, ranking, reference, batch_size=10, steps=2),
    )
    assert small == [10, 10, 10, 10, 8, 8]  # 2 steps per batch of 10 of the 28 prompts


def test_results_say_what_is_estimated_and_what_exact(polynomial):
    model, prompts, reference, ranking = polynomial
    lin = linear_pruning_curve(model, prompts, ranking, reference, n_random=2)
    text = lin.format()
    assert "ESTIMATED" in text and "EXACT" in text and "estimated_agreement" in text
    as_dict = json.loads(json.dumps(lin.to_dict()))
    assert set(as_dict["estimated"]) >= {"ks", "agreement", "random_agreement", "method"}
    assert as_dict["exact"]["agreement"] == lin.exact_agreement == 1.0
    assert as_dict["exact"]["heads"] == [[1, 0], [0, 0]] and as_dict["exact_reached"] is True
    assert "agreement" not in as_dict  # no unqualified agreement to mistake for a measured one
    assert lin.exact_n_forward == 0  # the circuit keeps every head; every random draw too
    assert all_heads(model) == sorted(lin.circuit)
