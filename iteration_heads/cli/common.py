"""What every ``iteration-heads`` command shares: the ``--threads`` option and the torch threads
it sets for the command's duration, and the help layout (plain text, paragraphs kept)."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from iteration_heads.errors import IterationHeadsError

DTYPE_CHOICES = ("float32", "bfloat16", "float16")
"""``--dtype`` of ``pathways`` and ``audit``: the names of ``model.precision.DTYPES``, written
out so that building the parser imports no torch (checked by the tests of precision)."""

DEFAULT_THREADS = 1
"""Torch threads of a command unless ``--threads`` says otherwise. One: the models of this
library are small, so extra threads mostly wait on each other; on 2 shared cores,
``iteration-heads detect polynomial --verify`` took 15-25 s with one thread and 72-80 s with
two (docs/guide/cli.md)."""

THREADS_HELP = (
    f"torch threads of this command (default {DEFAULT_THREADS}: the models are small, so more "
    "threads mostly wait on each other; on 2 busy cores `detect polynomial --verify` took 15-25 s "
    "with 1 thread, 72-80 s with 2). Raise it for a large model on an idle machine"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    r"""Plain-text help: a description's paragraphs (blank-line separated) are wrapped to the
    terminal, except those written with line breaks (lists, examples), printed as written.

    Example:
        >>> parser = argparse.ArgumentParser(prog="demo", formatter_class=HelpFormatter,
        ...     description="A long paragraph " * 4 + "\n\nkept:\n  a  one\n  b  two")
        >>> print(parser.format_help().replace("\n\n", "\n|\n"))  # doctest: +ELLIPSIS
        usage: demo [-h]
        |
        A long paragraph A long paragraph A long paragraph A long paragraph
        |
        kept:
          a  one
          b  two
        |
        options:
        ...
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.strip("\n").split("\n\n")
        return "\n\n".join(
            textwrap.indent(paragraph, indent)
            if "\n" in paragraph
            else textwrap.fill(
                " ".join(paragraph.split()),
                width,
                initial_indent=indent,
                subsequent_indent=indent,
            )
            for paragraph in paragraphs
        )


def add_threads(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` (default :data:`DEFAULT_THREADS`) to a command's parser.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_threads(parser)
        >>> parser.parse_args([]).threads, parser.parse_args(["--threads", "4"]).threads
        (1, 4)
    """
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, metavar="N", help=THREADS_HELP
    )


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch uses ``threads`` threads inside (None: unchanged); the previous number is restored
    after. Torch is imported only when a number is given.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     inside = torch.get_num_threads()
        >>> inside, torch.get_num_threads() == before
        (1, True)
        >>> with torch_threads(0):
        ...     pass
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: --threads 0, expected an integer >= 1
    """
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        limit = "<= 1024" if isinstance(threads, int) and threads > 1024 else ">= 1"
        raise IterationHeadsError(f"--threads {threads}, expected an integer {limit}")
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
