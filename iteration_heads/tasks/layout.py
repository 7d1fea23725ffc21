"""Token layout: the vocabulary and the positions of a chain-of-thought sequence (docs/paper.md §1).

One example of input length ``L``::

    index:  0        1 .. L         L+1    L+2 .. 2L+1    2L+2 ..
    token:  <task>   x_1 .. x_L     EoI    s_1 .. s_L     EoS (EoS padding to the batch width)

Without chain of thought: ``<task> x_1 .. x_L EoI s_L EoS``.

Token ids: data symbol ``v`` is id ``v`` (``0 .. n_symbols-1``), then ``EoI``, ``EoS``, then one
token per task. All built-in tasks share one layout, so a model trained on one task can be
fine-tuned on another (the paper's transfer experiment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import BUILTIN_TASKS, Task, check_int, get_task


@dataclass(frozen=True)
class TokenLayout:
    """Vocabulary shared by a set of tasks, and where each token sits in a sequence.

    Attributes:
        tasks: Names of the tasks that have a task token, in id order.
        n_symbols: Number of data symbols (inputs and states); symbol ``v`` has token id ``v``.

    Example:
        >>> layout = TokenLayout.default()
        >>> layout.d_vocab, layout.eoi, layout.eos, layout.task_token("polynomial")
        (16, 11, 12, 15)
        >>> layout.decode([15, 3, 2, 11, 3, 7, 12])
        ['<polynomial>', '3', '2', '<EoI>', '3', '7', '<EoS>']
    """

    tasks: tuple[str, ...]
    n_symbols: int

    def __post_init__(self) -> None:
        if not isinstance(self.tasks, (tuple, list)) or not all(
            isinstance(t, str) and t.isidentifier() for t in self.tasks
        ):
            raise IterationHeadsError(
                f"layout tasks={self.tasks!r}, expected a tuple of task names (identifiers)"
            )
        if not self.tasks:
            raise IterationHeadsError("a layout needs at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise IterationHeadsError(f"duplicate task names in layout: {list(self.tasks)}")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "n_symbols", check_int("n_symbols", self.n_symbols, minimum=2))

    @classmethod
    def for_tasks(cls, tasks: Sequence[str | Task]) -> TokenLayout:
        """The smallest layout that holds every task of ``tasks``.

        Example:
            >>> TokenLayout.for_tasks(["parity"]).d_vocab
            5
        """
        if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
            raise IterationHeadsError(
                f"tasks={tasks!r}, expected a non-empty list of task names or Tasks"
            )
        resolved = [get_task(t) for t in tasks]
        return cls(tuple(t.name for t in resolved), max(t.n_symbols for t in resolved))

    @classmethod
    def default(cls) -> TokenLayout:
        """The layout of the built-in tasks (copy, parity, polynomial): 16 tokens.

        Example:
            >>> TokenLayout.default().tasks
            ('copy', 'parity', 'polynomial')
        """
        return cls.for_tasks(BUILTIN_TASKS)

    @classmethod
    def for_task(cls, task: str | Task) -> TokenLayout:
        """The default layout if it holds ``task`` (built-ins), else the smallest layout for it.

        Example:
            >>> TokenLayout.for_task("parity") == TokenLayout.default()
            True
        """
        name = get_task(task).name
        default = cls.default()
        return default if name in default.tasks else cls.for_tasks([name])

    @property
    def eoi(self) -> int:
        """Token id of end-of-input."""
        return self.n_symbols

    @property
    def eos(self) -> int:
        """Token id of end-of-sequence (also the padding token)."""
        return self.n_symbols + 1

    @property
    def d_vocab(self) -> int:
        """Vocabulary size."""
        return self.n_symbols + 2 + len(self.tasks)

    def task_token(self, task: str | Task) -> int:
        """Token id that opens every sequence of ``task``."""
        name = get_task(task).name if isinstance(task, Task) else task
        if name not in self.tasks:
            raise IterationHeadsError(
                f"task {name!r} has no token in this layout; layout tasks: {list(self.tasks)}"
            )
        return self.n_symbols + 2 + self.tasks.index(name)

    def check_task(self, task: str | Task) -> Task:
        """Return the task, checking that the layout can encode it."""
        resolved = get_task(task)
        self.task_token(resolved.name)
        if resolved.n_symbols > self.n_symbols:
            raise IterationHeadsError(
                f"task {resolved.name!r} uses {resolved.n_symbols} symbols, "
                f"the layout has only {self.n_symbols}"
            )
        return resolved

    def token_names(self) -> list[str]:
        """Readable name of every token id, in id order."""
        names = [str(v) for v in range(self.n_symbols)] + ["<EoI>", "<EoS>"]
        return names + [f"<{t}>" for t in self.tasks]

    def decode(self, tokens: Sequence[int] | Int[Tensor, " pos"]) -> list[str]:
        """Readable strings for a 1-D sequence of token ids.

        Raises:
            IterationHeadsError: if a token id is outside the vocabulary.
        """
        values = tokens.tolist() if isinstance(tokens, Tensor) else tokens
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise IterationHeadsError(f"tokens {tokens!r}: expected a 1-D sequence of token ids")
        ids = [check_int("token id", t) for t in values]
        names = self.token_names()
        bad = [t for t in ids if not 0 <= t < len(names)]
        if bad:
            raise IterationHeadsError(f"token ids {bad} outside the vocabulary [0, {len(names)})")
        return [names[t] for t in ids]

    def check_tokens(self, tokens: Tensor) -> None:
        """Raise a clear error if any token id is outside ``[0, d_vocab)``.

        Example:
            >>> import torch
            >>> TokenLayout.default().check_tokens(torch.tensor([[0, 16]]))
            Traceback (most recent call last):
            ...
            iteration_heads.errors.IterationHeadsError: token id 16 outside the vocabulary [0, 16)
        """
        if (
            not isinstance(tokens, Tensor)
            or tokens.dtype.is_floating_point
            or tokens.dtype.is_complex
        ):
            what = f"dtype {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
            raise IterationHeadsError(f"tokens must be a tensor of integer ids, got {what}")
        if tokens.numel() == 0:
            return
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.d_vocab:
            bad = low if low < 0 else high
            raise IterationHeadsError(f"token id {bad} outside the vocabulary [0, {self.d_vocab})")

    @staticmethod
    def seq_len(length: int, *, cot: bool = True) -> int:
        """Tokens in one sequence of input length ``length``, final EoS included (2L+3 with CoT).

        Example:
            >>> TokenLayout.seq_len(8), TokenLayout.seq_len(8, cot=False)
            (19, 12)
        """
        return 2 * length + 3 if cot else length + 4

    @staticmethod
    def eoi_position(length: int) -> int:
        """Index of EoI in a sequence of input length ``length`` (``L + 1``)."""
        return length + 1

    @staticmethod
    def input_position(t: int) -> int:
        """Index of input ``x_t`` (1-based ``t``): ``t``."""
        return t

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; inverse of :meth:`from_dict`."""
        return {"tasks": list(self.tasks), "n_symbols": self.n_symbols}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenLayout:
        """Rebuild a layout saved with :meth:`to_dict`.

        Example:
            >>> layout = TokenLayout.default()
            >>> TokenLayout.from_dict(layout.to_dict()) == layout
            True
        """
        if not isinstance(data, dict) or set(data) != {"tasks", "n_symbols"}:
            raise IterationHeadsError(
                f"layout dictionary {data!r} needs 'tasks' (list) and 'n_symbols' (int), nothing else"
            )
        return cls(data["tasks"], data["n_symbols"])
