"""Where a :class:`~iteration_heads.detection.report.DetectionReport` is consumed: every function
that takes a report checks it against its model first (:func:`check_report`)."""

from __future__ import annotations

from typing import Any

from iteration_heads.detection.report import DetectionReport
from iteration_heads.errors import IterationHeadsError


def check_fields(report: Any) -> DetectionReport:
    """``report`` if it is a consistent :class:`DetectionReport` (field types, table columns,
    circuit and iteration heads within its tables), else a clear error; needs no model (see
    :func:`check_report`).

    Example:
        >>> check_fields("L0H0")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: report must be a DetectionReport (from iteration_heads.detect), got str
    """
    if not isinstance(report, DetectionReport):
        raise IterationHeadsError(
            f"report must be a DetectionReport (from iteration_heads.detect), got "
            f"{type(report).__name__}"
        )
    report.check()
    return report


def check_report(model: Any, report: Any) -> DetectionReport:
    """``report`` if it is a consistent :class:`DetectionReport` of a model shaped like ``model``
    (its tables cover exactly the model's layers and heads), else a one-line error: what every
    function taking a report checks first.

    Example:
        >>> from iteration_heads import ModelConfig, build_model, detect
        >>> model = build_model(ModelConfig(d_model=32, max_len=6))
        >>> report = detect(model, task="copy", n_probes=60)
        >>> check_report(model, report) is report
        True
        >>> check_report(build_model(ModelConfig(d_model=32, max_len=6, n_layers=3)), report)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: report covers 2 layers x 1 heads, the model has 3 layers x 1 heads: a report of another model
    """
    shape = check_fields(report).check()
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if shape != (n_layers, n_heads):
        raise IterationHeadsError(
            f"report covers {shape[0]} layers x {shape[1]} heads, the model has {n_layers} "
            f"layers x {n_heads} heads: a report of another model"
        )
    return report
