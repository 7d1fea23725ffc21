"""Exact head patching sharded over the executors gives the numbers of one process."""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future
from typing import Any

import pytest
import torch

from iteration_heads import zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.ontology_study import model_ontology
from iteration_heads.pathways import head_patching, ontology_prompts
from iteration_heads.pathways.patching_shards import assemble_head_patching, split_heads
from iteration_heads.runs import Executor, LocalExecutor, sharded_head_patching
from iteration_heads.tasks import make_ontology_problems


@pytest.fixture(scope="module")
def setup() -> tuple[Any, Any, Any]:
    model = zoo.load("ontology")  # 4 layers x 4 heads
    problems = make_ontology_problems(model_ontology(model), 2, seed=10_000, kind="fictional")
    prompts = ontology_prompts(problems)
    return model, prompts, head_patching(model, prompts, method="exact")


def assert_same(got: Any, want: Any) -> None:
    """Every field equal (NaN where NaN), bit for bit, but ``n_forward``."""
    for field in dataclasses.fields(want):
        a, b = getattr(got, field.name), getattr(want, field.name)
        if field.name == "n_forward":
            continue
        if isinstance(b, dict) and b and isinstance(next(iter(b.values())), torch.Tensor):
            assert a.keys() == b.keys(), field.name
            for label in b:
                assert torch.equal(a[label].isnan(), b[label].isnan()), (field.name, label)
                assert torch.allclose(a[label], b[label], atol=1e-6, rtol=0, equal_nan=True)
                assert torch.equal(a[label].nan_to_num(), b[label].nan_to_num()), field.name
        elif isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a.nan_to_num(), b.nan_to_num()), field.name
            assert torch.equal(a.isnan(), b.isnan()), field.name
        else:
            assert a == b, field.name
    for label in want.groups:
        for metric in ("kl", "logit_diff"):
            assert got.ranking(label, metric) == want.ranking(label, metric)


class InlineExecutor(Executor):
    """Runs each call at once in this process; records how many were submitted at once."""

    name = "inline"

    def __init__(self, slots: int) -> None:
        self.slots, self.batches = slots, []

    def submit_all(self, calls: Any) -> list[Future[Any]]:
        self.batches.append(len(calls))
        futures = []
        for fn, args in calls:
            future: Future[Any] = Future()
            try:
                future.set_result(fn(*args))
            except Exception as err:
                future.set_exception(err)
            futures.append(future)
        return futures


def test_a_subset_of_heads_gives_those_heads_values_and_nan_elsewhere(setup) -> None:
    model, prompts, whole = setup
    part = head_patching(model, prompts, method="exact", heads=[(1, 2), (3, 0)])
    kept = torch.zeros(4, 4, dtype=torch.bool)
    kept[1, 2] = kept[3, 0] = True
    assert torch.equal(part.values[kept], whole.values[kept])
    assert part.values[~kept].isnan().all() and part.per_prompt_kl[~kept].isnan().all()
    assert part.ranking()[:2] == sorted([(1, 2), (3, 0)], key=lambda h: -float(whole.values[h]))
    assert part.n_prompts == whole.n_prompts and part.n_excluded == whole.n_excluded
    assert part.n_forward <= whole.n_forward


def test_shards_assembled_in_process_equal_one_process(setup) -> None:
    model, prompts, whole = setup
    parts = [
        (h, head_patching(model, prompts, method="exact", heads=h)) for h in split_heads(4, 4, 3)
    ]
    assert_same(assemble_head_patching(parts), whole)
    assert assemble_head_patching(parts[::-1]).values.equal(whole.values)  # any order


def test_the_executor_never_gets_more_calls_than_its_slots(setup) -> None:
    _, prompts, whole = setup
    executor = InlineExecutor(slots=1)
    result = sharded_head_patching("ontology", prompts, executor, shards=2)
    assert_same(result, whole)
    assert executor.batches == [1, 1]
    executor = InlineExecutor(slots=2)  # shards=None: one per slot
    sharded_head_patching("ontology", prompts, executor)
    assert executor.batches == [2]


def test_a_failing_shard_is_one_line(setup) -> None:
    _, prompts, _ = setup
    with pytest.raises(IterationHeadsError, match=r"^shard 1 of 2 failed: no prompt's") as err:
        sharded_head_patching("ontology", prompts, InlineExecutor(1), shards=2, min_kl=1e9)
    assert "\n" not in str(err.value)


def test_local_executor_with_two_workers_equals_one_process(setup) -> None:
    _, prompts, whole = setup
    with LocalExecutor(jobs=2) as executor:
        result = sharded_head_patching("ontology", prompts, executor, shards=3)
    assert_same(result, whole)


def test_ray_executor_equals_one_process(setup) -> None:
    pytest.importorskip("ray")
    from iteration_heads.runs import RayExecutor

    _, prompts, whole = setup
    try:
        executor = RayExecutor(local_cpus=1)  # one worker: the shards run one after another
    except Exception as err:  # no runtime here (sandbox, no shared memory)
        pytest.skip(f"ray cannot start here: {err}")
    try:
        result = sharded_head_patching("ontology", prompts, executor, shards=2)
    finally:
        executor.shutdown()
    assert_same(result, whole)
