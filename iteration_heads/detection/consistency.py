"""Value checks behind the self-checks of :class:`~iteration_heads.detection.report.Circuit`,
:class:`~iteration_heads.detection.report.IterationHeads` and
:class:`~iteration_heads.detection.report.DetectionReport`: a hand-built or edited one is refused
with one line (see :func:`~iteration_heads.detection.checks.check_report` for the model side)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from iteration_heads.errors import IterationHeadsError


def check_flag(name: str, value: Any) -> None:
    """``value`` is a bool, or a clear error.

    Example:
        >>> check_flag("summed", 1)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: summed=1, expected True or False
    """
    if not isinstance(value, bool):
        raise IterationHeadsError(f"{name}={value!r}, expected True or False")


def check_half(name: str, layer: Any, heads: Any, summed: Any, peakiness: Any) -> None:
    """One layer's heads (a circuit half or iteration heads): a layer index, a sorted tuple of
    distinct head indices (empty when only the summed heads pass), a bool, a number.

    Example:
        >>> check_half("iteration", 1, (0, 0), False, 0.9)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: iteration heads=(0, 0): expected sorted distinct head indices
    """
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise IterationHeadsError(f"{name} layer={layer!r}, expected an integer >= 0")
    if not isinstance(heads, tuple) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in heads
    ):
        raise IterationHeadsError(f"{name} heads={heads!r}, expected a tuple of integers >= 0")
    if list(heads) != sorted(set(heads)):
        raise IterationHeadsError(f"{name} heads={heads!r}: expected sorted distinct head indices")
    check_flag(f"{name} summed", summed)
    if summed and heads:
        raise IterationHeadsError(
            f"{name} heads={heads!r} with summed=True: a summed layer lists no heads"
        )
    if isinstance(peakiness, bool) or not isinstance(peakiness, int | float):
        raise IterationHeadsError(f"{name} peakiness={peakiness!r}, expected a number")


def check_within(name: str, layer: int, heads: tuple[int, ...], shape: tuple[int, int]) -> None:
    """``layer`` and ``heads`` exist in a model of ``shape`` (layers, heads), or a clear error.

    Example:
        >>> check_within("iteration", 2, (0,), (2, 1))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: iteration layer 2 heads (0,) do not exist: the report covers layers 0..1 and heads 0..0
    """
    n_layers, n_heads = shape
    if layer >= n_layers or any(h >= n_heads for h in heads):
        raise IterationHeadsError(
            f"{name} layer {layer} heads {heads} do not exist: the report covers layers "
            f"0..{n_layers - 1} and heads 0..{n_heads - 1}"
        )


def table_shape(heads: Any, layers: Any, per_length: Any) -> tuple[int, int]:
    """``(n_layers, n_heads)`` that a report's tables describe, or a clear error when they are not
    tables with the columns its methods read, covering every head of every layer once.

    Example:
        >>> table_shape(pd.DataFrame({"layer": [0, 1], "head": [0, 0], "role": ["", ""]}),
        ...             pd.DataFrame({"layer": [0, 1], "role": ["", ""]}), pd.DataFrame())
        (2, 1)
    """
    columns = {"heads": ["layer", "head", "role"], "layers": ["layer", "role"], "per_length": []}
    frames = {"heads": heads, "layers": layers, "per_length": per_length}
    for name, frame in frames.items():
        if not isinstance(frame, pd.DataFrame):
            raise IterationHeadsError(
                f"report {name} must be a pandas DataFrame, got {type(frame).__name__}"
            )
        missing = [c for c in columns[name] if c not in frame.columns]
        if missing:
            raise IterationHeadsError(f"report {name} table lacks the columns {missing}")
        for column in columns[name]:
            kind = str if column == "role" else int
            if not all(
                isinstance(v, kind) and not isinstance(v, bool) for v in frame[column].tolist()
            ):
                raise IterationHeadsError(
                    f"report {name} column {column!r} must hold {kind.__name__} values"
                )
    pairs = sorted(zip(heads["layer"].tolist(), heads["head"].tolist(), strict=True))
    n_layers = 1 + max((layer for layer, _ in pairs), default=-1)
    n_heads = 1 + max((head for _, head in pairs), default=-1)
    grid = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    listed = sorted(layers["layer"].tolist())
    if not pairs or pairs != grid or listed != list(range(n_layers)):
        raise IterationHeadsError(
            f"report tables cover {len(pairs)} (layer, head) rows and layers {listed}: expected "
            "every head of every layer once (a report edited by hand?)"
        )
    return n_layers, n_heads


def check_plain_fields(
    verdict: Any, partial: Any, probes: Any, thresholds: Any, state_sensitivity: Any
) -> None:
    """The plain fields of a report have their types, or a clear error.

    Example:
        >>> check_plain_fields("no circuit", (), {}, None, None)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: report thresholds must be a dict, got NoneType
    """
    fields = {"verdict": (verdict, str), "partial": (partial, tuple)}
    fields |= {"probes": (probes, dict), "thresholds": (thresholds, dict)}
    for name, (value, kind) in fields.items():
        if not isinstance(value, kind):
            raise IterationHeadsError(
                f"report {name} must be a {kind.__name__}, got {type(value).__name__}"
            )
    s = state_sensitivity
    if s is not None and (isinstance(s, bool) or not isinstance(s, int | float)):
        raise IterationHeadsError(f"report state_sensitivity={s!r}, expected a number or None")
