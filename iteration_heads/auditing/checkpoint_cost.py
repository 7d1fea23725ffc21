"""What an audit across training will cost before it runs: ``audit --dry-run`` on a run folder.

:func:`plan_checkpoints` plans what :func:`~iteration_heads.auditing.audit_checkpoints` runs on
every checkpoint it would audit (the same selection, in training order, and the same probes,
built from the first checkpoint): loading it, the accuracy passes, detection's passes, and the
state check, which runs only on checkpoints where iteration heads are found. Loading and the
forward pass are timed once per shape (a run's checkpoints share one: one timing for all).

Example:
    >>> from iteration_heads.auditing import TaskWriting
    >>> from iteration_heads.auditing.cost import ForwardTiming
    >>> plan = plan_checkpoints("tests/fixtures/gpt2_text_polynomial/checkpoints",
    ...     TaskWriting(template="<s> {inputs} {eoi} {states} </s>"), n_probes=64,
    ...     timing=ForwardTiming(0.0, 0.0))
    >>> plan.checkpoints[0], [s.name for s in plan.stages]
    ('checkpoint-320', ['loading x5', 'accuracy x5', 'detection x5', 'state check x5'])
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iteration_heads._io import CONFIG_FILE, WEIGHTS_FILE, read_json
from iteration_heads.auditing.checkpoints import checkpoint_folders
from iteration_heads.auditing.cost import (
    CostPlan,
    ForwardTiming,
    Stage,
    forward_bytes,
    free_memory,
    passes_of,
    time_forward,
    weight_bytes,
)
from iteration_heads.auditing.sources import TaskWriting, open_subject
from iteration_heads.detection.detector import DETECT_BATCH, detection_passes
from iteration_heads.detection.probes import Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import BATCH_SIZE
from iteration_heads.model.hf import INDEX_FILE
from iteration_heads.tasks.task import check_int


@dataclass(frozen=True, repr=False)
class CheckpointPlan(CostPlan):
    """A :class:`~iteration_heads.auditing.cost.CostPlan` of an audit across checkpoints: each
    stage runs once per checkpoint (its name says how many), ``checkpoints`` names them in
    training order."""

    checkpoints: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: :meth:`CostPlan.to_dict` and the checkpoints."""
        return {**super().to_dict(), "checkpoints": list(self.checkpoints)}


def _checked(path: Path) -> str:
    """The checkpoint's config as canonical JSON (its shape), or a one-line error when its
    config or weights are missing or unreadable."""
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict):
        raise IterationHeadsError(
            f"{str(path / CONFIG_FILE)!r} holds no JSON object: expected a model config"
        )
    if not (path / WEIGHTS_FILE).is_file() and not (path / INDEX_FILE).is_file():
        raise IterationHeadsError(
            f"checkpoint {str(path)!r} holds no {WEIGHTS_FILE}: expected safetensors weights "
            f"(or {INDEX_FILE} and its shards)"
        )
    return json.dumps(config, sort_keys=True, default=str)


def _stage(name: str, passes: list[tuple[int, int]], timing: ForwardTiming, working: int,
           bound: bool = False) -> Stage:  # fmt: skip
    tokens = sum(rows * width for rows, width in passes)
    seconds = timing.seconds(forwards=len(passes), tokens=tokens)
    return Stage(name, len(passes), 0, tokens, working, seconds, bound)


def plan_checkpoints(
    folder: str | os.PathLike[str],
    writing: TaskWriting | None = None,
    *,
    n_probes: int = 256,
    max_len: int | None = None,
    timing: ForwardTiming | None = None,
) -> CheckpointPlan:
    """The cost of :func:`~iteration_heads.auditing.audit_checkpoints` with the same arguments:
    the checkpoints it audits (each checked for a config and weights; the first opened and its
    probes built), and per checkpoint the accuracy passes, detection's passes and the state
    check (an upper bound: it runs only where iteration heads are found). Loading and the
    forward pass are timed once per shape (``timing`` given: neither is timed, loading counts
    0 s); the memory is that of the largest pass.

    Example:
        >>> from iteration_heads.auditing import TaskWriting
        >>> plan = plan_checkpoints("tests/fixtures/gpt2_text_polynomial/checkpoints",
        ...     TaskWriting(template="<s> {inputs} {eoi} {states} </s>"), n_probes=64,
        ...     timing=ForwardTiming(0.0, 0.0))
        >>> [(s.name, s.forwards, s.bound) for s in plan.stages][1:3]
        [('accuracy x5', 5, False), ('detection x5', 5, False)]
    """
    check_int("n_probes", n_probes, minimum=1)
    if max_len is not None:
        check_int("max_len", max_len, minimum=1)
    if timing is not None and not isinstance(timing, ForwardTiming):
        raise IterationHeadsError(f"timing must be a ForwardTiming, got {type(timing).__name__}")
    found = checkpoint_folders(folder)
    shapes = {path: _checked(path) for path, _, _ in found}  # every one, before any is opened
    groups: dict[str, list[Path]] = {}
    for path, _, _ in found:
        groups.setdefault(shapes[path], []).append(path)
    probes: Probes | None = None
    stages: list[Stage] = []
    notes: list[str] = []
    weights, free, where = 0, None, "this machine"
    for members in groups.values():
        tick = time.perf_counter()
        subject = open_subject(members[0], writing, max_len=max_len, n_probes=n_probes,
                               probes=probes)  # fmt: skip
        loading = time.perf_counter() - tick
        model, probes = subject.model, subject.probes
        n, width, k = len(probes), int(probes.tokens.shape[1]), len(members)
        timed = timing or time_forward(model, width)
        label = f" x{k}" if len(groups) == 1 else f" x{k} like {members[0].name}"
        accuracy = [(rows, width) for rows in passes_of(n, BATCH_SIZE)]
        detection = detection_passes(model, probes)
        widest = max(w for _, w in detection)
        n_layers = int(model.cfg.n_layers)
        stages += [
            Stage(f"loading{label}", 0, 0, 0, 0, loading * k if timing is None else 0.0),
            _stage(f"accuracy{label}", accuracy * k, timed,
                   forward_bytes(model, min(n, BATCH_SIZE), width)),
            _stage(f"detection{label}", detection * k, timed,
                   forward_bytes(model, min(n, DETECT_BATCH), widest, patterns=n_layers)),
            _stage(f"state check{label}", detection * k, timed,
                   forward_bytes(model, min(n, DETECT_BATCH), widest), bound=True),
        ]  # fmt: skip
        notes.append(
            f"timed once, on {members[0].name}, for the {k} checkpoint(s) of its shape"
            if timing is None
            else f"timing given, not measured, for the {k} checkpoint(s) of {members[0].name}'s "
            "shape"
        )
        weights = max(weights, weight_bytes(model))
        free, where = free_memory(model)
        del subject, model
    names = tuple(path.name for path, _, _ in found)
    notes.insert(0, f"checkpoints ({len(names)}, in training order): {', '.join(names)}")
    assert probes is not None
    return CheckpointPlan(
        f"audit of {len(names)} checkpoints of {str(folder)!r}, each on {len(probes)} probes "
        f"of width {int(probes.tokens.shape[1])}",
        tuple(stages), weights, free, where,
        advice="give fewer probes (--n-probes) or shorter ones (--max-len)",
        notes=tuple(notes), checkpoints=names,
    )  # fmt: skip
