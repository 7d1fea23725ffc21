"""Command line: ``iteration-heads COMMAND``, one module per command group
(:mod:`~iteration_heads.cli.train`, :mod:`~iteration_heads.cli.inspect` for ``eval``,
``detect``, ``report`` and ``tasks``, :mod:`~iteration_heads.cli.audit`,
:mod:`~iteration_heads.cli.zoo`, :mod:`~iteration_heads.cli.reproduce`,
:mod:`~iteration_heads.cli.sweep`, :mod:`~iteration_heads.cli.export`), each with
``add_parser(sub)`` and ``run(args)``.

A command's module is imported only when that command is chosen, and imports the heavy parts of
the library (torch, TransformerLens) only when it needs them: ``iteration-heads --help`` and a
misspelt command answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, cast

from iteration_heads.cli.common import HelpFormatter, add_threads, torch_threads
from iteration_heads.errors import IterationHeadsError

COMMANDS = {
    "train": ("train", "train a model on an iterative task"),
    "eval": ("inspect", "per-length accuracy and attention metrics of a saved model"),
    "detect": ("inspect", "find EoI and iteration heads in a saved model"),
    "audit": ("audit", "audit any model folder for iteration heads: found, used, position route"),
    "pathways": (
        "pathways",
        "Dutta et al.'s pathway analyses of any model folder, as text or HTML",
    ),
    "report": ("inspect", "one self-contained HTML report of a saved model or run"),
    "tasks": ("inspect", "list the registered tasks"),
    "zoo": ("zoo", "list the shipped trained models (or rebuild them)"),
    "reproduce": ("reproduce", "reproduce the paper's experiments; results go to docs/results/"),
    "sweep": ("sweep", "train a grid of runs from a TOML spec (local, SLURM or Ray)"),
    "export": ("export", "export a library model as a HuggingFace checkpoint folder"),
}
"""Every command: the module of :mod:`iteration_heads.cli` that defines it, and its one-line
help (the list of ``iteration-heads --help``)."""

_DESCRIPTION = """\
Mechanistic interpretability of chain-of-thought: train small transformers on iterative tasks,
find their iteration heads, check them causally, and audit any model for the same circuit.
`iteration-heads COMMAND --help` lists a command's options."""

_EXAMPLES = """\
examples:
  iteration-heads zoo                      the shipped trained models and their figures
  iteration-heads detect polynomial        a shipped model by name, or a directory
  iteration-heads train --task polynomial --max-len 8 --d-model 64 --epochs 200 --out runs/poly
  iteration-heads eval runs/poly           a readable table (--json: one JSON object)
  iteration-heads detect runs/poly         EoI / iteration heads and a verdict
  iteration-heads audit hf_model --template "<s> {inputs} {eoi} {states} </s>"
  iteration-heads report runs/poly -o report.html
  iteration-heads train --task parity --init-from polynomial --epochs 20 --out runs/ft
  iteration-heads reproduce emergence transfer --jobs 2"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iteration-heads`` command; returns the exit status.

    Example:
        >>> main(["tasks"])  # doctest: +ELLIPSIS
        copy        s_t = x_t (binary)
        parity      s_t = s_{t-1} XOR x_t
        polynomial  s_t = s_{t-1} * x_t + 1 mod 11, x_t in 1..10, s_1 = x_1
        ...0
    """
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        with torch_threads(getattr(args, "threads", None)):
            return int(args.func(args) or 0)
    except KeyboardInterrupt as err:  # Ctrl-C: one line (what was kept), no traceback
        detail = " ".join(str(err).split())
        print(f"iteration-heads: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return 130
    except IterationHeadsError as err:
        print(f"iteration-heads: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine, not the input: still one line, no traceback
        print(f"iteration-heads: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1


def entry() -> NoReturn:
    """The ``iteration-heads`` console script: :func:`main`, then exit with its status.

    A Ctrl-C that lands once the command has finished (while the interpreter shuts down, a
    second or two with torch loaded) is ignored: the command's output and exit status stand,
    and no interrupt is reported for work that was done.

    Example:
        >>> import subprocess, sys
        >>> code = "import sys; sys.argv = ['iteration-heads', 'tasks']; "
        >>> code += "from iteration_heads.cli import entry; entry()"
        >>> subprocess.run([sys.executable, "-c", code], capture_output=True).returncode
        0
    """
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors (an unknown option, a value that is not a number) are the library's
    one-line error, which :func:`main` prints, instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise IterationHeadsError(f"{message}; see `{self.prog} --help`")


class _Commands(argparse._SubParsersAction):
    """The commands, each an empty parser until it is chosen: then its module is imported and
    adds the command's options."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name = values[0]
        chosen = self.choices[name]
        if not chosen.get_default("func"):
            module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
            module.add_parser(cast(argparse._SubParsersAction, _OneCommand(name, chosen)))
            add_threads(chosen)
        super().__call__(parser, namespace, values, option_string)


class _OneCommand:
    """What a command module's ``add_parser(sub)`` is given: ``sub.add_parser(name, ...)`` of
    the chosen command configures its parser; the module's other commands go to a parser that
    is dropped."""

    def __init__(self, name: str, parser: argparse.ArgumentParser) -> None:
        self.name, self.parser = name, parser

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name != self.name:
            return _Parser(prog=f"iteration-heads {name}")
        kwargs.pop("help", None)  # the list of commands shows COMMANDS's
        for key, value in kwargs.items():
            if key not in {"description", "epilog", "formatter_class", "usage"}:
                raise TypeError(f"add_parser({name!r}): unexpected option {key}")
            setattr(self.parser, key, value)
        return self.parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``iteration-heads``: every command listed, none of their modules imported.

    Example:
        >>> build_parser().parse_args(["detect", "polynomial", "--threads", "2"]).threads
        2
    """
    parser = _Parser(
        prog="iteration-heads",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND", action=_Commands)
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
    return parser


if __name__ == "__main__":
    entry()
