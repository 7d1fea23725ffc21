"""One bad input of tests/test_bad_inputs.py: a line of Python or a command line.

The cases live in ``tests/test_bad_inputs.py`` (the core ones) and in one module per area in this
folder; each area module defines ``CASES`` and may define ``prepare(work, namespace)``, which adds
files to the cases' working folder and objects to the namespace the Python cases run in."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One bad input: a line of Python (``code``) or a command line (``argv``)."""

    area: str
    description: str
    code: str = ""
    argv: tuple[str, ...] | None = None  # None: a Python case

    @property
    def shown(self) -> str:
        if self.argv is None:
            return self.code
        return " ".join(["iteration-heads", *map(shlex.quote, self.argv)])

    @property
    def id(self) -> str:
        return f"{self.area}: {self.description}"


def api(area: str, description: str, code: str) -> Case:
    return Case(area, description, code=code)


def cli(area: str, description: str, command: str) -> Case:
    return Case(f"CLI {area}".strip(), description, argv=tuple(shlex.split(command)))
