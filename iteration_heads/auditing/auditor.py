"""A verdict in three layers, for any model:

1. **iteration heads**: does a layer's attention fetch ``x_t`` for the query that predicts
   ``s_t`` (:func:`~iteration_heads.detect`, per head and summed per layer)?
2. **used**: does ablating them break the chain-of-thought predictions, far more than ablating
   as many other heads (:func:`~iteration_heads.interventions.verification.ablation_check`;
   EoI heads and the heads of the position route are not used as controls), and do the
   predictions depend on the current state (state sensitivity)?
3. **position route**: what tells their queries the position — the paper's EoI head, or another
   route, named by measurement (:func:`~iteration_heads.auditing.route.position_route`)?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from iteration_heads._results import Result
from iteration_heads.auditing.route import PositionRoute, position_route
from iteration_heads.auditing.solving import (
    MIN_PROBE_LEN,
    MIN_PROBES,
    MIN_SEQUENCE_ACCURACY,
    chance_accuracy,
    check_token_layout,
    check_vocabulary,
    needed_accuracy,
    probe_accuracy,
)
from iteration_heads.detection.detector import detect
from iteration_heads.detection.probes import Probes, spread_over_lengths
from iteration_heads.detection.report import DetectionReport
from iteration_heads.detection.scoring import MIN_STATE_SENSITIVITY
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.ablation import ABLATION_KINDS, AblationKind
from iteration_heads.interventions.verification import (
    MAX_CONTROLS,
    Verification,
    ablation_check,
)
from iteration_heads.model.transformer import additive_residual, model_config
from iteration_heads.tasks.task import Task, check_int

EXIT_UNSOLVED = 3
"""``iteration-heads audit`` exits with this status when the model does not solve its probes."""


@dataclass(frozen=True, repr=False)
class Audit(Result):
    """The three-layer verdict on a model, with the measurements behind each layer.

    Attributes:
        report: Detection (layer 1, and the state sensitivity of layer 2).
        ablation: Ablating the iteration heads against as many other heads (layer 2); None
            without iteration heads.
        route: The position route (layer 3); None without iteration heads, for one-layer
            iteration heads, for a ``residual="renormalised"`` model (path patching needs an
            additive residual stream), or when not asked for.
        probe_accuracy: Token accuracy of the model on the chain of thought of its probes.
        sequence_accuracy: Fraction of probes whose whole chain of thought is right.
        chance: Token accuracy by chance
            (:func:`~iteration_heads.auditing.solving.chance_accuracy`).
            Below :func:`~iteration_heads.auditing.solving.needed_accuracy` of it, the model
            does not solve its probes: the verdict says so and concludes nothing about heads
            (no ablation, no route).
        n_probes: How many probes it judged on; below
            :data:`~iteration_heads.auditing.solving.MIN_PROBES` the verdict cannot judge.
        probe_len: The longest probes; below
            :data:`~iteration_heads.auditing.solving.MIN_PROBE_LEN` the verdict cannot judge.

    Example:
        >>> from iteration_heads import load
        >>> result = audit(load("polynomial_paper"), n_probes=256)
        >>> result.has_iteration_heads, result.used, result.route.is_eoi_head
        (True, True, True)
        >>> print(result.verdict)  # doctest: +ELLIPSIS
        iteration heads: iteration head L1H0 (peakiness 1.00) | used: ... | position route: an EoI head — L0H0 ...
    """

    report: DetectionReport
    ablation: Verification | None
    route: PositionRoute | None
    probe_accuracy: float | None = None
    sequence_accuracy: float | None = None
    chance: float | None = None
    n_probes: int | None = None
    probe_len: int | None = None

    @property
    def cannot_judge(self) -> str | None:
        """Why the probes are too few or too short for any verdict about heads; None when they
        suffice (or were not recorded)."""
        if self.n_probes is not None and self.n_probes < MIN_PROBES:
            return f"{self.n_probes} probe(s), at least {MIN_PROBES} needed"
        if self.probe_len is not None and self.probe_len < MIN_PROBE_LEN:
            return (
                f"probes of length {self.probe_len} at most, at least {MIN_PROBE_LEN} needed to "
                "tell an iteration head from other heads"
            )
        return None

    @property
    def solves_probes(self) -> bool:
        """Whether the model solves its probes (token accuracy at least halfway from chance to
        1, and at least :data:`~iteration_heads.auditing.solving.MIN_SEQUENCE_ACCURACY` of the
        chains right as a whole); True when not measured."""
        if self.probe_accuracy is None or self.chance is None:
            return True
        whole = self.sequence_accuracy
        if whole is not None and whole < MIN_SEQUENCE_ACCURACY:
            return False
        return self.probe_accuracy >= needed_accuracy(self.chance)

    @property
    def has_iteration_heads(self) -> bool:
        """Layer 1: iteration heads found."""
        return self.report.iteration is not None

    @property
    def used(self) -> bool:
        """Layer 2: ablating them breaks the task more than other heads, and the predictions
        read the current state."""
        sensitivity = self.report.state_sensitivity
        return bool(
            self.cannot_judge is None
            and self.solves_probes
            and self.ablation is not None
            and self.ablation.confirmed
            and self.ablation.clean_accuracy > 0
            and sensitivity is not None
            and sensitivity >= MIN_STATE_SENSITIVITY
        )

    @property
    def verdict(self) -> str:
        """One line, three layers; or, first of all, that the probes are too few or too short
        to judge, or that the model does not solve them."""
        if self.cannot_judge is not None:
            return f"cannot judge: {self.cannot_judge}; no conclusion about iteration heads"
        if not self.solves_probes:
            return (
                f"the model does not solve these probes: accuracy {self.probe_accuracy:.2f} "
                f"(whole chains {self.sequence_accuracy:.2f}) against {self.chance:.2f} by chance, "
                f"{needed_accuracy(self.chance or 0.0):.2f} needed, and at least "
                f"{MIN_SEQUENCE_ACCURACY:.2f} of whole chains — check the layout (token ids, "
                "BOS/EoS/task tokens, template) and the task; no conclusion about iteration heads"
            )
        if self.report.iteration is None:
            return f"no iteration heads ({self.report.verdict})"
        parts = [f"iteration heads: {self.report.iteration.describe()}"]
        s = self.report.state_sensitivity
        state = "not measured" if s is None else f"{s:.2f}"
        if self.ablation is not None:
            figures = self.ablation.verdict.split(": ", 1)[1]
            parts.append(
                f"used: {'yes' if self.used else 'no'} — {figures}; state sensitivity {state}"
            )
        if self.route is not None:
            parts.append(self.route.verdict.split(" (share")[0])
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: the verdict, each layer, and the detection report."""
        return {
            "verdict": self.verdict,
            "cannot_judge": self.cannot_judge,
            "solves_probes": self.solves_probes,
            "probe_accuracy": {
                "token_accuracy": self.probe_accuracy,
                "sequence_accuracy": self.sequence_accuracy,
                "chance": self.chance,
                "needed": None if self.chance is None else needed_accuracy(self.chance),
            },
            "iteration_heads": {
                "found": self.has_iteration_heads,
                "heads": None if self.report.iteration is None else self.report.iteration.to_dict(),
            },
            "used": {
                "used": self.used,
                "state_sensitivity": self.report.state_sensitivity,
                "ablation": None if self.ablation is None else self.ablation.to_dict(),
            },
            "position_route": None if self.route is None else self.route.to_dict(),
            "has_iteration_circuit": self.report.has_iteration_circuit,
            "detection": self.report.to_dict(),
        }

    def format(self) -> str:
        """The verdict, then each layer's measurements."""
        lines = [self.verdict]
        if self.probe_accuracy is not None:
            lines.append(
                f"probe accuracy {self.probe_accuracy:.2f} (whole chains "
                f"{self.sequence_accuracy:.2f}; chance {self.chance:.2f})"
            )
        lines += ["", "1. iteration heads (attention):", self.report.format()]
        if self.ablation is not None:
            lines += ["", "2. used (ablation against other heads):", self.ablation.format()]
        if self.route is not None:
            lines += ["", "3. position route (patched into the iteration heads' queries):"]
            lines.append(self.route.format())
        return "\n".join(lines)


def audit(
    model: Any,
    probes: Probes | None = None,
    *,
    task: str | Task | None = None,
    n_probes: int | None = None,
    kind: AblationKind = "mean",
    max_controls: int = MAX_CONTROLS,
    control_probes: int | Literal["auto"] | None = "auto",
    route: bool = True,
    route_probes: int = 256,
    batch_size: int = 512,
) -> Audit:
    """Audit ``model`` for iteration heads: found, used, and by which position route.

    Args:
        model: Any TransformerLens model (native, HuggingFace-wrapped).
        probes: Probes with targets (``Probes.from_task``, ``Probes.from_text``); None: a
            library model's own test split (``task`` and ``n_probes`` as in
            :func:`~iteration_heads.detect`).
        kind: Ablation for layer 2 (``"mean"``, ``"zero"``, ``"resample"``).
        max_controls: Sets of other heads compared in layer 2.
        control_probes: Probes each of those sets runs on (None: all; ``"auto"``: about 640
            sequences over all sets, at least 32 each).
        route: Measure the position route (one forward pass per earlier component).
        route_probes: At most this many probes for the route.
        batch_size: Probes per forward pass.

    First the probes: a token layout in which two roles share an id is refused, and the
    model's accuracy on them is measured; where it does not solve them (:attr:`Audit.solves_probes`),
    or where the probes are fewer than :data:`~iteration_heads.auditing.solving.MIN_PROBES` or
    shorter than :data:`~iteration_heads.auditing.solving.MIN_PROBE_LEN`
    (:attr:`Audit.cannot_judge`), the audit stops after detection, and its verdict says so.

    Raises:
        IterationHeadsError: for a bad argument (counts are ints >= 1, ``max_controls`` >= 0),
            probes without targets, colliding token layouts or token ids outside the vocabulary.

    Cost: one pass for the accuracy, detection (two passes), the ablation (about four passes:
    the clean run, the iteration heads, and 20 control sets on 32 probes each; see
    :func:`~iteration_heads.interventions.verification.ablation_check`), and for the route two
    passes plus one per component before the iteration heads.
    """
    if n_probes is not None:
        check_int("n_probes", n_probes, minimum=1)
    check_int("max_controls", max_controls, minimum=0)
    if control_probes is not None and control_probes != "auto":
        check_int("control_probes", control_probes, minimum=1)
    check_int("route_probes", route_probes, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    if kind not in ABLATION_KINDS:
        raise IterationHeadsError(f"kind={kind!r}, expected one of {', '.join(ABLATION_KINDS)}")
    if not isinstance(route, bool):
        raise IterationHeadsError(f"route={route!r}, expected True or False")
    if probes is not None and not isinstance(probes, Probes):
        raise IterationHeadsError(f"probes must be Probes, got {type(probes).__name__}")
    if probes is None:
        try:
            model_config(model)
        except IterationHeadsError:
            raise IterationHeadsError(
                f"{type(model).__name__} was not built by iteration_heads: pass probes="
                "Probes.from_task(...) or Probes.from_text(...) in the model's own writing"
            ) from None
        probes = Probes.from_model(model, task=task, n=n_probes)
    check_token_layout(probes.encoding, None if probes.task is None else probes.task.n_symbols)
    check_vocabulary(model, probes)
    accuracy, whole = probe_accuracy(model, probes, batch_size=batch_size)
    measured: dict[str, Any] = {"probe_accuracy": accuracy, "sequence_accuracy": whole}
    measured.update(chance=chance_accuracy(probes), n_probes=len(probes), probe_len=probes.max_len)
    report = detect(model, probes, batch_size=batch_size)
    bare = Audit(report, None, None, **measured)
    if report.iteration is None or not bare.solves_probes or bare.cannot_judge is not None:
        return bare
    n_heads = int(model.cfg.n_heads)
    heads = report.iteration.names(n_heads)
    eoi = report.found("eoi")
    circuit = report.circuit
    if circuit is not None and circuit.attention_found:  # EoI heads found as a layer sum too
        eoi = sorted(
            set(eoi) | {(circuit.eoi_layer, h) for h in circuit.eoi_heads or range(n_heads)}
        )
    found_route = None
    # path patching reads an additive residual stream: no route layer for a renormalised model
    if (
        route
        and report.iteration.layer >= 1
        and probes.inputs is not None
        and additive_residual(model)
    ):
        sample = probes.select(spread_over_lengths(probes.lengths, route_probes))
        found_route = position_route(model, sample, heads, eoi_heads=eoi, batch_size=batch_size)
    carriers = [] if found_route is None else found_route.heads()
    ablation = ablation_check(
        model,
        heads,
        probes,
        flagged=report.found("iteration"),
        exclude=sorted(set(eoi) | set(carriers)),
        label="iteration",
        kind=kind,
        max_controls=max_controls,
        control_probes=control_probes,
        batch_size=batch_size,
    )
    return Audit(report, ablation, found_route, **measured)
