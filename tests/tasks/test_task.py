import pytest
import torch
from helpers import python_states
from hypothesis import given, settings
from hypothesis import strategies as st

from iteration_heads import IterationHeadsError, Task, get_task, list_tasks, register_task


@pytest.mark.parametrize("name", ["copy", "parity", "polynomial"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_states_follow_F(name, data):
    task = get_task(name)
    rows = data.draw(
        st.lists(
            st.lists(st.sampled_from(task.input_values), min_size=5, max_size=5),
            min_size=1,
            max_size=6,
        )
    )
    states = task.states(torch.tensor(rows))
    assert states.tolist() == [python_states(name, row) for row in rows]


def test_builtin_definitions_match_paper():
    assert get_task("copy").input_values == (0, 1)
    assert get_task("parity").input_values == (0, 1)
    assert get_task("polynomial").input_values == tuple(range(1, 11))
    assert get_task("polynomial").init is None  # s_1 = x_1
    assert list_tasks()[:3] == ["copy", "parity", "polynomial"]


def test_sampling_is_uniform_and_seeded():
    task = get_task("polynomial")
    a = task.sample_inputs(20000, 3, generator=torch.Generator().manual_seed(1))
    b = task.sample_inputs(20000, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    counts = torch.bincount(a.flatten(), minlength=11).float()
    assert counts[0] == 0
    assert torch.allclose(counts[1:] / counts[1:].sum(), torch.full((10,), 0.1), atol=0.01)


def test_register_user_task():
    task = register_task(
        Task("max_so_far", 4, (0, 1, 2, 3), lambda s, x: torch.maximum(s, x), init=0),
        overwrite=True,
    )
    assert task.states(torch.tensor([[1, 3, 2, 0]])).tolist() == [[1, 3, 3, 3]]
    assert "max_so_far" in list_tasks()
    with pytest.raises(IterationHeadsError, match="already registered"):
        register_task(task)


def test_bad_tasks_are_rejected():
    with pytest.raises(IterationHeadsError, match="unknown task 'addition'"):
        get_task("addition")
    with pytest.raises(IterationHeadsError, match=r"input values \[5\] outside \[0, 3\)"):
        Task("bad", 3, (0, 5), lambda s, x: x)
    with pytest.raises(IterationHeadsError, match="identifier"):
        Task("has space", 3, (0, 1), lambda s, x: x)
    escaping = Task("escaping", 3, (0, 1, 2), lambda s, x: s + x + 5, init=0)
    with pytest.raises(
        IterationHeadsError, match=r"update returned values in \[.*\], expected \[0, 3\)"
    ):
        escaping.states(torch.tensor([[1, 2]]))
    with pytest.raises(IterationHeadsError, match="shape"):
        get_task("copy").states(torch.tensor([1, 0]))
