"""Iterative problems: ``s_t = F(s_{t-1}, x_t)``, the answer being ``s_L`` (docs/paper.md §1-§2).

A :class:`Task` holds everything needed to generate data: the input alphabet and how inputs are
drawn, the update ``F`` (vectorised over a batch in torch) and the rule for the first state.
The three tasks of the paper are built in; :func:`register_task` adds your own.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

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
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise IterationHeadsError(
                f"task name {self.name!r} must be a non-empty identifier (letters, digits, _)"
            )
        check_int(f"task {self.name!r}: n_symbols", self.n_symbols, minimum=2)
        if isinstance(self.input_values, (str, bytes)) or not isinstance(
            self.input_values, Sequence
        ):
            raise IterationHeadsError(
                f"task {self.name!r}: input_values={self.input_values!r}, expected a tuple of ints"
            )
        if not self.input_values:
            raise IterationHeadsError(f"task {self.name!r}: input_values is empty")
        values = tuple(
            check_int(f"task {self.name!r}: input_values", v, minimum=0) for v in self.input_values
        )
        bad = [v for v in values if not 0 <= v < self.n_symbols]
        if bad:
            raise IterationHeadsError(
                f"task {self.name!r}: input values {bad} outside [0, {self.n_symbols})"
            )
        object.__setattr__(self, "input_values", values)
        if not callable(self.update):
            raise IterationHeadsError(
                f"task {self.name!r}: update={self.update!r}, expected a function F(state, x)"
            )
        if self.init is not None:
            check_int(f"task {self.name!r}: init", self.init)
            if not 0 <= self.init < self.n_symbols:
                raise IterationHeadsError(
                    f"task {self.name!r}: init={self.init} outside [0, {self.n_symbols})"
                )
        if not isinstance(self.description, str):
            raise IterationHeadsError(
                f"task {self.name!r}: description={self.description!r}, expected a string"
            )
        # F on every first step: an update that fails or returns no integer states fails here,
        # not in the middle of a run (values out of range are checked as states are computed)
        first = torch.tensor(values, dtype=torch.long)
        if self.init is None:
            state, x = first.repeat_interleave(len(first)), first.repeat(len(first))
        else:
            state, x = torch.full_like(first, self.init), first
        self._apply(state, x, check_range=False)

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
        n = check_int("n", n, minimum=0)
        length = check_int("length", length, minimum=0)
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
        if not isinstance(inputs, Tensor) or inputs.ndim != 2 or inputs.shape[1] < 1:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise IterationHeadsError(
                f"inputs must be a tensor of shape [batch, length>=1], got {shape}"
            )
        if inputs.dtype.is_floating_point or inputs.dtype.is_complex:
            raise IterationHeadsError(f"inputs must be integer symbols, got dtype {inputs.dtype}")
        inputs = inputs.long()
        if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= self.n_symbols):
            bad = int(inputs.min()) if int(inputs.min()) < 0 else int(inputs.max())
            raise IterationHeadsError(
                f"task {self.name!r}: input symbol {bad} outside [0, {self.n_symbols})"
            )
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

    def _apply(self, state: Tensor, x: Tensor, *, check_range: bool = True) -> Tensor:
        try:
            returned = self.update(state, x)
        except Exception as err:  # the user's function: report it as bad input, in one line
            first = str(err).splitlines()[0] if str(err) else ""
            raise IterationHeadsError(
                f"task {self.name!r}: update raised {type(err).__name__}: {first}"
            ) from err
        try:
            new = torch.as_tensor(returned)
        except (TypeError, ValueError, RuntimeError):
            new = None
        if new is None or new.dtype.is_floating_point or new.dtype.is_complex:
            what = type(returned).__name__ if new is None else f"dtype {new.dtype}"
            raise IterationHeadsError(
                f"task {self.name!r}: update returned {what}, expected an integer tensor of states"
            )
        new = new.long()
        if new.shape != state.shape:
            raise IterationHeadsError(
                f"task {self.name!r}: update returned shape {tuple(new.shape)}, "
                f"expected {tuple(state.shape)}"
            )
        if check_range and new.numel() and (int(new.min()) < 0 or int(new.max()) >= self.n_symbols):
            raise IterationHeadsError(
                f"task {self.name!r}: update returned values in [{int(new.min())}, "
                f"{int(new.max())}], expected [0, {self.n_symbols})"
            )
        return new


@overload
def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    none: Literal[False] = False,
) -> int: ...


@overload
def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    none: bool,
) -> int | None: ...


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    none: bool = False,
) -> int | None:
    """``value`` as a Python int, or an error naming it: bools, floats and strings are refused
    (every config and every public function of the library checks its integers here). With
    ``none=True``, None is accepted too (and returned).

    Example:
        >>> check_int("epochs", 3, minimum=0)
        3
        >>> check_int("epochs", 2.5, minimum=0)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: epochs=2.5, expected an integer >= 0
        >>> check_int("n", True, minimum=1, none=True)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: n=True, expected an integer >= 1 or None
    """
    if none and value is None:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    huge = ok and not -INT_LIMIT <= value < INT_LIMIT  # torch and numpy take 64-bit integers
    if not ok or huge:
        limits = _limits(minimum, maximum, False, False) + (" or None" if none else "")
        limits += " (and within ±2**63)" if huge else ""
        raise IterationHeadsError(f"{name}={short_repr(value)}, expected an integer{limits}")
    return int(value)


INT_LIMIT = 2**63
"""Every integer :func:`check_int` accepts lies in ``[-INT_LIMIT, INT_LIMIT)`` (a 64-bit
integer, what torch and numpy take), whatever its own bounds."""


def short_repr(value: Any) -> str:
    """``repr(value)`` on one line of at most 60 characters (huge numbers shortened).

    Example:
        >>> short_repr(10**400)
        '100000000000000000000000000000000000000000000000000000000...'
    """
    try:
        shown = " ".join(repr(value).split())
    except ValueError:  # an int beyond Python's digit limit for str()
        shown = f"<an integer of {value.bit_length()} bits>"
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _limits(minimum: float | None, maximum: float | None, open_min: bool, open_max: bool) -> str:
    """`` in [a, b)``, `` >= a``, `` < b`` or nothing: the range an error message names."""
    low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (minimum, maximum))
    if minimum is not None and maximum is not None:
        return f" in {'(' if open_min else '['}{low}, {high}{')' if open_max else ']'}"
    if minimum is not None:
        return f" {'>' if open_min else '>='} {low}"
    if maximum is not None:
        return f" {'<' if open_max else '<='} {high}"
    return ""


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """``value`` as a finite float within ``[minimum, maximum]`` (``open_min`` / ``open_max``
    exclude that end), or an error naming it; bools and strings are refused.

    Example:
        >>> check_number("lr", 3e-4, minimum=0, open_min=True)
        0.0003
        >>> check_number("embedding_dropout", 1.0, minimum=0, maximum=1, open_max=True)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: embedding_dropout=1.0, expected a finite number in [0, 1)
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(value)
    except OverflowError:  # an int beyond float range
        ok = False
    if ok and minimum is not None:
        ok = value > minimum if open_min else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if open_max else value <= maximum
    if not ok:
        limits = _limits(minimum, maximum, open_min, open_max)
        raise IterationHeadsError(f"{name}={short_repr(value)}, expected a finite number{limits}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False, else an error naming it (1, 0 and "yes" are refused).

    Example:
        >>> check_bool("cot", "no")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: cot='no', expected True or False
    """
    if not isinstance(value, bool):
        raise IterationHeadsError(f"{name}={value!r}, expected True or False")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else an error naming it and them.

    Example:
        >>> check_choice("optimizer", "adamw", ("adam", "sgd"))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: optimizer 'adamw', expected one of ('adam', 'sgd')
    """
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        raise IterationHeadsError(f"{name} {value!r}, expected one of {tuple(choices)}")
    return value


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
    check_bool("overwrite", overwrite)
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
    if not isinstance(name, str):
        raise IterationHeadsError(f"task {name!r}, expected a task name or a Task")
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
