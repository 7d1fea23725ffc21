"""Check a detected circuit causally: ablating its heads must break the task, ablating as many
other heads must not (or much less)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch

from iteration_heads._results import Result
from iteration_heads._torch import Head, check_heads, head_names
from iteration_heads.detection.checks import check_report
from iteration_heads.detection.detector import detect
from iteration_heads.detection.positions import spread_over_lengths
from iteration_heads.detection.report import DetectionReport
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.ablation import AblationKind
from iteration_heads.interventions.batch import BATCH_SIZE, Data, as_batch
from iteration_heads.interventions.many_ablations import ablation_sets
from iteration_heads.interventions.scores import Scores, run_scored
from iteration_heads.tasks.task import check_int

BROKEN_FRACTION = 0.5
""":func:`verify`: ablating the detected heads *breaks* the task when accuracy falls below this
fraction of the clean accuracy..."""

INTACT_FRACTION = 0.9
"""...ablating other heads leaves it *intact* when accuracy stays above this fraction..."""

SPECIFICITY_MARGIN = 0.25
"""...and sets of circuit heads hurt far more than as many other heads when their mean
accuracy is lower by this fraction of the clean accuracy."""

MAX_CONTROLS = 20
""":func:`verify` tries at most this many sets of other heads (sampled when there are more)."""

CONTROL_SEQUENCES = 640
""":func:`verify` runs the size-matched sets (of circuit heads and of other heads) on samples of
the probes: by default each on ``max(MIN_CONTROL_PROBES, CONTROL_SEQUENCES / sets)`` probes,
spread over the lengths and drawn afresh for each set; the circuit and its roles run on every
probe. The verdict compares mean accuracies over sets, which then rest on about 640 sequences
whatever the number of sets: twenty control sets cost two and a half passes over 256 probes
instead of twenty. Single rows of the table are noisier (32 probes, four per length, for twenty
sets); pass ``control_probes=None`` to run every set on every probe."""

MIN_CONTROL_PROBES = 32
"""The fewest probes a size-matched set runs on by default (see :data:`CONTROL_SEQUENCES`)."""


@dataclass(frozen=True, repr=False)
class Verification(Result):
    """Whether ablating the detected circuit breaks the task, and ablating as many other heads
    does not.

    Attributes:
        confirmed: Ablating the circuit breaks the task (:data:`BROKEN_FRACTION`) and, where
            the model has other heads, size-matched sets of circuit heads hurt more than as
            many other heads by :data:`SPECIFICITY_MARGIN` of the clean accuracy on average.
        detected: The circuit's heads (EoI and iteration; all heads of a summed layer).
        clean_accuracy: Sequence accuracy without ablation.
        set_size: ``k``, the size of the compared sets: the circuit's size, or the number of
            other heads when there are fewer.
        table: One row per ablated set: ``role`` ("circuit", "eoi", "iteration", then
            "circuit_subset" and "control": sets of ``k`` circuit / other heads), ``heads``,
            ``n_heads``, ``n_probes`` (the probes the set ran on), ``flagged`` (how many of them :func:`~iteration_heads.detection.detector.detect`
            gave a role), ``accuracy``, ``token_accuracy``, ``loss``, ``logit_diff``.
        verdict: One line.
        kind: The ablation used.
    """

    confirmed: bool
    detected: tuple[Head, ...]
    clean_accuracy: float
    set_size: int
    table: pd.DataFrame
    verdict: str
    kind: str

    def accuracy(self, role: str) -> list[float]:
        """Accuracies of the sets of ``role``."""
        return self.table.loc[self.table["role"] == role, "accuracy"].tolist()

    @property
    def controls_intact(self) -> bool | None:
        """Whether every control set keeps :data:`INTACT_FRACTION` of the clean accuracy (None
        without controls)."""
        controls = self.accuracy("control")
        if not controls:
            return None
        return min(controls) >= INTACT_FRACTION * self.clean_accuracy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "confirmed": self.confirmed,
            "verdict": self.verdict,
            "kind": self.kind,
            "detected": [list(h) for h in self.detected],
            "clean_accuracy": self.clean_accuracy,
            "set_size": self.set_size,
            "controls_intact": self.controls_intact,
            "table": self.table.to_dict("records"),
        }

    def format(self) -> str:
        """The verdict and the table of ablated sets."""
        return self.verdict + "\n" + self.table.to_string(index=False, float_format="{:.3f}".format)

    def html_body(self) -> str:
        return ""


def _sample_sets(heads: list[Head], k: int, limit: int, seed: int) -> list[list[Head]]:
    combos = list(itertools.combinations(heads, k))
    if len(combos) > limit:
        generator = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(combos), generator=generator)[:limit].sort().values
        combos = [combos[i] for i in pick.tolist()]
    return [list(c) for c in combos]


def _samples_per_set(control_probes: int | Literal["auto"] | None, n_sets: int) -> int | None:
    """Probes per size-matched set (None: all), or a clear error."""
    if control_probes == "auto":
        return max(MIN_CONTROL_PROBES, math.ceil(CONTROL_SEQUENCES / max(n_sets, 1)))
    if control_probes is not None and (
        isinstance(control_probes, bool)
        or not isinstance(control_probes, int)
        or control_probes < 1
    ):
        raise IterationHeadsError(
            f"control_probes={control_probes!r}, expected an integer >= 1, 'auto' or None "
            "(every probe)"
        )
    return control_probes


def _check_options(max_controls: Any, control_probes: Any, seed: Any, batch_size: Any) -> None:
    """The numbers of :func:`ablation_check` and :func:`verify`, or an error naming the bad one."""
    check_int("max_controls", max_controls, minimum=0)
    _samples_per_set(control_probes, 1)
    check_int("seed", seed, minimum=0)
    check_int("batch_size", batch_size, minimum=1)


def _sample_probes(batch: Any, n: int | None, seed: int) -> torch.Tensor | None:
    """``n`` probes spread over the lengths (None: every probe)."""
    if n is None or n >= len(batch):
        return None
    if batch.lengths is None:
        return torch.randperm(len(batch), generator=torch.Generator().manual_seed(seed))[:n]
    return spread_over_lengths(batch.lengths, n, seed)


def ablation_check(
    model: Any,
    heads: Sequence[Head],
    data: Data = None,
    *,
    roles: Mapping[str, Sequence[Head]] | None = None,
    flagged: Sequence[Head] = (),
    exclude: Sequence[Head] = (),
    label: str = "circuit",
    kind: AblationKind = "mean",
    n: int | None = None,
    max_controls: int = MAX_CONTROLS,
    control_probes: int | Literal["auto"] | None = "auto",
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Verification:
    """Ablate ``heads`` together (and each of ``roles`` alone), then ``k``-subsets of them
    against ``k``-subsets of the other heads: do these heads matter more than as many others?

    ``k`` is the number of heads, or of other heads if smaller; at most ``max_controls`` sets
    of each (sampled with ``seed``). ``flagged`` heads are counted in the table (the heads
    detection gave a role); ``exclude`` heads are neither ablated nor controls (heads known to
    play another part). The ``k``-sets run on ``control_probes`` probes each (None: all;
    ``"auto"``: see :data:`CONTROL_SEQUENCES`). Sets share passes
    (:func:`~iteration_heads.interventions.many_ablations.ablation_sets`): the cost is about one
    forward pass over the probes for the circuit and each role, and one per
    ``n_probes / control_probes`` size-matched sets (two and a half passes for the default),
    less the layers before each set's first.

    Example:
        >>> from iteration_heads import load
        >>> model = load("polynomial_3x2")
        >>> check = ablation_check(model, [(2, 0), (2, 1)], n=256, label="iteration")
        >>> check.table[["role", "heads"]].values.tolist()[:3]
        [['iteration', 'L2H0+L2H1'], ['control', 'L0H0+L0H1'], ['control', 'L0H0+L1H0']]
        >>> check.verdict  # doctest: +ELLIPSIS
        'not confirmed: mean ablation of L2H0+L2H1: accuracy 1.000 -> ...'
    """
    _check_options(max_controls, control_probes, seed, batch_size)
    batch = as_batch(model, data, n=n)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    chosen = check_heads(model, list(heads))
    skipped = set(chosen) | set(exclude)
    others = [
        (lay, h) for lay in range(n_layers) for h in range(n_heads) if (lay, h) not in skipped
    ]
    k = min(len(chosen), len(others))
    sets = [(label, chosen)] + [
        (role, check_heads(model, list(hs))) for role, hs in (roles or {}).items()
    ]
    if 0 < k < len(chosen):
        sets += [(f"{label}_subset", c) for c in _sample_sets(chosen, k, max_controls, seed)]
    if k:
        sets += [("control", c) for c in _sample_sets(others, k, max_controls, seed)]
    full = 1 + len(roles or {})
    per_set = _samples_per_set(control_probes, len(sets) - full)
    samples = [None] * full + [
        _sample_probes(batch, per_set, seed + i) for i in range(len(sets) - full)
    ]
    clean, ablated = ablation_sets(
        model,
        batch,
        [hs for _, hs in sets],
        kind=kind,
        rows=samples,
        seed=seed,
        batch_size=batch_size,
    )
    marked = set(flagged)
    rows = [
        {
            "role": role,
            "heads": head_names(hs),
            "n_heads": len(hs),
            "n_probes": len(scores.accuracy),
            "flagged": sum(h in marked for h in hs),
        }
        | scores.summary()
        for (role, hs), scores in zip(sets, ablated, strict=True)
    ]
    table = pd.DataFrame(rows)
    clean_acc = clean.mean("accuracy")
    ablated_acc = float(table.loc[0, "accuracy"])
    broken = ablated_acc < BROKEN_FRACTION * clean_acc
    text = f"{kind} ablation of {head_names(chosen)}: accuracy {clean_acc:.3f} -> {ablated_acc:.3f}"
    confirmed = broken
    if k:
        matched = table.loc[table["role"] == (f"{label}_subset" if k < len(chosen) else label)]
        controls = table.loc[table["role"] == "control", "accuracy"]
        mine, theirs = float(matched["accuracy"].mean()), float(controls.mean())
        confirmed = broken and theirs - mine >= SPECIFICITY_MARGIN * clean_acc
        text += (
            f"; {k}-head sets: {label} {mine:.3f} ({len(matched)} sets) vs other heads "
            f"{theirs:.3f} ({len(controls)} sets, min {controls.min():.3f})"
        )
    else:
        text += "; no other heads to compare with"
    verdict = f"{'confirmed' if confirmed else 'not confirmed'}: {text}"
    return Verification(confirmed, tuple(chosen), clean_acc, k, table, verdict, kind)


def verify(
    model: Any,
    report: DetectionReport | None = None,
    data: Data = None,
    *,
    kind: AblationKind = "mean",
    n: int | None = None,
    max_controls: int = MAX_CONTROLS,
    control_probes: int | Literal["auto"] | None = "auto",
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Verification:
    """Check a detected circuit causally: ablating its heads must break the task, and ablating
    as many other heads must not (or much less).

    The circuit's heads come from ``report`` (:func:`~iteration_heads.detect` is run on the data
    when None). They are ablated together, then each role alone; then sets of ``k`` heads are
    compared (:func:`ablation_check`). Cost: one forward pass per set. When the report names
    iteration heads but no EoI head (another position route), the iteration heads are tested
    alone (as :func:`~iteration_heads.auditing.audit` does) and the verdict says so; with no
    iteration heads there is nothing to verify.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=16)).test
        >>> verify(model, data=split).verdict
        'nothing to verify: no iteration circuit was detected (no iteration circuit: ...)'
    """
    _check_options(max_controls, control_probes, seed, batch_size)
    if report is not None:
        check_report(model, report)
    batch = as_batch(model, data, n=n)
    if report is None:
        report = detect(model, batch.as_probes("detection"))
    n_heads = int(model.cfg.n_heads)
    circuit = report.circuit
    if (circuit is None or not circuit.attention_found) and report.iteration is not None:
        # iteration heads whatever tells them the position: test them alone, as audit does
        check = ablation_check(
            model,
            report.iteration.names(n_heads),
            batch,
            flagged=report.found("iteration"),
            label="iteration",
            kind=kind,
            max_controls=max_controls,
            control_probes=control_probes,
            seed=seed,
            batch_size=batch_size,
        )
        note = "no EoI head found, iteration heads alone"
        status, figures = check.verdict.split(": ", 1)
        return dataclasses.replace(check, verdict=f"{status} ({note}): {figures}")
    if circuit is None or not circuit.attention_found:
        clean_acc = run_scored(model, batch, batch_size=batch_size).mean("accuracy")
        columns = ["role", "heads", "n_heads", "n_probes", "flagged", *Scores.METRICS]
        return Verification(
            False,
            (),
            clean_acc,
            0,
            pd.DataFrame(columns=columns),
            f"nothing to verify: no iteration circuit was detected ({report.verdict})",
            kind,
        )
    eoi = [(circuit.eoi_layer, h) for h in (circuit.eoi_heads or range(n_heads))]
    iteration = [(circuit.iteration_layer, h) for h in (circuit.iteration_heads or range(n_heads))]
    return ablation_check(
        model,
        sorted(set(eoi + iteration)),
        batch,
        roles={"eoi": eoi, "iteration": iteration},
        flagged=[*report.found("eoi"), *report.found("iteration")],
        kind=kind,
        max_controls=max_controls,
        control_probes=control_probes,
        seed=seed,
        batch_size=batch_size,
    )
