"""The library's one exception type."""

from __future__ import annotations


class IterationHeadsError(ValueError):
    """Raised for bad input to the library: the message names the value and what was expected.

    It subclasses :class:`ValueError`, so ``except ValueError`` also catches it.

    Example:
        >>> from iteration_heads import get_task
        >>> try:
        ...     get_task("addition")
        ... except IterationHeadsError as err:
        ...     print(str(err).split(";")[0])
        unknown task 'addition'
    """
