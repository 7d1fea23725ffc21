"""Iterative problems: ``s_t = F(s_{t-1}, x_t)``, the answer being ``s_L`` (docs/paper.md §1-§2).

A :class:`Task` holds everything needed to generate data: the input alphabet and how inputs are
drawn, the update ``F`` (vectorised over a batch in torch) and the rule for the first state.
The three tasks of the paper are built in; :func:`register_task` adds your own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError

UpdateFn = Callable[[Int[Tensor, " batch"], Int[Tensor, " batch"]], Int[Tensor, " batch"]]


@dataclass(frozen=True)
class Task:
    """An iterative problem ``s_t = F(s_{t-1}, x_t)``.

    Attributes:
        name: Unique name; also the name of the task token that opens every sequence.
        n_symbols: Inputs and states are integers in ``[0, n_symbols)``.
        input_values: The inputs ``x_t`` are drawn uniformly from these values.
        update: ``F(state, x) -> new state``, vectorised over a 1-D batch of int64 tensors.
        init: ``None`` means ``s_1 = x_1`` (EoI plays ``s_0`` with ``F(EoI, x) = x``, as for
            polynomial iteration); an integer ``s_0`` means ``s_1 = F(s_0, x_1)``.
        description: One line for listings.

    Example:
        >>> import torch
        >>> task = get_task("parity")
        >>> task.states(torch.tensor([[1, 0, 1, 1]]))
        tensor([[1, 1, 0, 1]])
    """

    name: str
    n_symbols: int
    input_values: tuple[int, ...]
    update: UpdateFn
    init: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise IterationHeadsError(
                f"task name {self.name!r} must be a non-empty identifier (letters, digits, _)"
            )
        if self.n_symbols < 2:
            raise IterationHeadsError(
                f"task {self.name!r}: n_symbols={self.n_symbols}, expected >= 2"
            )
        if not self.input_values:
            raise IterationHeadsError(f"task {self.name!r}: input_values is empty")
        bad = [v for v in self.input_values if not 0 <= v < self.n_symbols]
        if bad:
            raise IterationHeadsError(
                f"task {self.name!r}: input values {bad} outside [0, {self.n_symbols})"
            )
        if self.init is not None and not 0 <= self.init < self.n_symbols:
            raise IterationHeadsError(
                f"task {self.name!r}: init={self.init} outside [0, {self.n_symbols})"
            )

    def sample_inputs(
        self, n: int, length: int, *, generator: torch.Generator
    ) -> Int[Tensor, "n length"]:
        """Draw ``n`` input sequences of ``length`` i.i.d. uniform symbols.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> x = get_task("polynomial").sample_inputs(3, 5, generator=g)
            >>> x.shape, bool(((x >= 1) & (x <= 10)).all())
            (torch.Size([3, 5]), True)
        """
        values = torch.tensor(self.input_values, dtype=torch.long)
        index = torch.randint(len(values), (n, length), generator=generator)
        return values[index]

    def states(self, inputs: Int[Tensor, "batch length"]) -> Int[Tensor, "batch length"]:
        """The states ``s_1..s_L`` of every input row, computed with ``F`` (vectorised).

        Raises:
            IterationHeadsError: if ``update`` returns values outside ``[0, n_symbols)`` or of
                the wrong shape.

        Example:
            >>> get_task("polynomial").states(torch.tensor([[3, 2, 10]]))
            tensor([[3, 7, 5]])
        """
        if inputs.ndim != 2 or inputs.shape[1] < 1:
            raise IterationHeadsError(
                f"inputs must have shape [batch, length>=1], got {tuple(inputs.shape)}"
            )
        inputs = inputs.long()
        states = torch.empty_like(inputs)
        if self.init is None:
            state = inputs[:, 0]
        else:
            state = self._apply(torch.full_like(inputs[:, 0], self.init), inputs[:, 0])
        states[:, 0] = state
        for t in range(1, inputs.shape[1]):
            state = self._apply(state, inputs[:, t])
            states[:, t] = state
        return states

    def _apply(self, state: Tensor, x: Tensor) -> Tensor:
        new = torch.as_tensor(self.update(state, x)).long()
        if new.shape != state.shape:
            raise IterationHeadsError(
                f"task {self.name!r}: update returned shape {tuple(new.shape)}, "
                f"expected {tuple(state.shape)}"
            )
        if new.numel() and (int(new.min()) < 0 or int(new.max()) >= self.n_symbols):
            raise IterationHeadsError(
                f"task {self.name!r}: update returned values in [{int(new.min())}, "
                f"{int(new.max())}], expected [0, {self.n_symbols})"
            )
        return new


_REGISTRY: dict[str, Task] = {}


def register_task(task: Task, *, overwrite: bool = False) -> Task:
    """Add ``task`` to the registry so that it can be named everywhere (CLI, datasets, layouts).

    Example:
        >>> import torch
        >>> add3 = Task("add_mod5", n_symbols=5, input_values=(0, 1, 2, 3, 4),
        ...             update=lambda s, x: (s + x) % 5, init=0)
        >>> _ = register_task(add3, overwrite=True)
        >>> get_task("add_mod5").states(torch.tensor([[4, 4, 4]]))
        tensor([[4, 3, 2]])
    """
    if not isinstance(task, Task):
        raise IterationHeadsError(f"expected a Task, got {type(task).__name__}")
    if task.name in _REGISTRY and not overwrite:
        raise IterationHeadsError(
            f"task {task.name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[task.name] = task
    return task


def get_task(name: str | Task) -> Task:
    """Return the registered task called ``name`` (a :class:`Task` is returned as is).

    Example:
        >>> get_task("polynomial").input_values
        (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    """
    if isinstance(name, Task):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise IterationHeadsError(
            f"unknown task {name!r}; registered tasks: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_tasks() -> list[str]:
    """Names of the registered tasks, built-ins first.

    Example:
        >>> list_tasks()[:3]
        ['copy', 'parity', 'polynomial']
    """
    return list(_REGISTRY)


def _copy(state: Tensor, x: Tensor) -> Tensor:
    return x


def _parity(state: Tensor, x: Tensor) -> Tensor:
    return state ^ x


def _polynomial(state: Tensor, x: Tensor) -> Tensor:
    return (state * x + 1) % 11


BUILTIN_TASKS = ("copy", "parity", "polynomial")

register_task(Task("copy", 2, (0, 1), _copy, init=0, description="s_t = x_t (binary)"))
register_task(Task("parity", 2, (0, 1), _parity, init=0, description="s_t = s_{t-1} XOR x_t"))
register_task(
    Task(
        "polynomial",
        11,
        tuple(range(1, 11)),
        _polynomial,
        init=None,
        description="s_t = s_{t-1} * x_t + 1 mod 11, x_t in 1..10, s_1 = x_1",
    )
)
