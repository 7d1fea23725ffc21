"""The position-shift experiment (docs/paper.md §5): move EoI, and the iteration head follows.

The EoI head brings EoI's position (so the length ``L``) to the CoT queries; the first MLP
turns it into a query for position ``q - L``. Patching the EoI head's output from sequences whose
EoI sits ``shift`` positions away should move the iteration head's attention by ``-shift``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import (
    Head,
    attached_hooks,
    cached_run,
    check_heads,
    device_of,
    evaluating,
    pattern_hook,
    z_hook,
)
from iteration_heads.detection.checks import check_report
from iteration_heads.detection.detector import detect
from iteration_heads.detection.probes import Probes
from iteration_heads.detection.report import DetectionReport
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.ablation import head_outputs
from iteration_heads.interventions.batch import Data, as_batch
from iteration_heads.interventions.corruptions import corrupt
from iteration_heads.model.checkpoint import model_metadata
from iteration_heads.tasks.data import Split
from iteration_heads.tasks.task import Task, check_int


@dataclass(frozen=True, repr=False)
class PositionShift(Result):
    """Where the iteration head attends once the EoI head's output comes from sequences whose
    EoI sits ``shift`` positions away (query at index ``q``: clean target key ``q - L``,
    predicted key after the patch ``q - L - shift``).

    Attributes:
        shift: ``L' - L``.
        eoi_heads, iteration_heads: The patched heads and the heads whose attention is read.
        table: One row per (sequence, query): ``length``, ``query``, ``clean_key`` and
            ``patched_key`` (argmax of the iteration heads' summed attention), ``target_key``
            (``q - L``), ``predicted_key`` (``q - L - shift``), and the weights on them.
        fraction_shifted: Fraction of queries whose argmax key is the predicted one after the
            patch.
        fraction_clean_on_target: Fraction attending to ``x_t`` without the patch.
        mean_shift: Mean of ``patched_key - clean_key`` (the circuit predicts ``-shift``).
    """

    shift: int
    eoi_heads: tuple[Head, ...]
    iteration_heads: tuple[Head, ...]
    table: pd.DataFrame

    @property
    def fraction_shifted(self) -> float:
        return float((self.table["patched_key"] == self.table["predicted_key"]).mean())

    @property
    def fraction_clean_on_target(self) -> float:
        return float((self.table["clean_key"] == self.table["target_key"]).mean())

    @property
    def mean_shift(self) -> float:
        return float((self.table["patched_key"] - self.table["clean_key"]).mean())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the table is left out: use :attr:`table`)."""
        return {
            "shift": self.shift,
            "eoi_heads": [list(h) for h in self.eoi_heads],
            "iteration_heads": [list(h) for h in self.iteration_heads],
            "n_queries": len(self.table),
            "fraction_shifted": self.fraction_shifted,
            "fraction_clean_on_target": self.fraction_clean_on_target,
            "mean_shift": self.mean_shift,
        }

    def format(self) -> str:
        """One line: how many queries follow the moved EoI."""
        d = self.to_dict()
        return (
            f"PositionShift(shift {self.shift}: {d['n_queries']} queries, "
            f"{d['fraction_shifted']:.3f} attend to the predicted key after the patch, "
            f"{d['fraction_clean_on_target']:.3f} to x_t before; mean key shift "
            f"{d['mean_shift']:+.2f})"
        )


def _circuit_heads(model: Any, report: DetectionReport) -> tuple[list[Head], list[Head]]:
    circuit = report.circuit
    if circuit is None or not circuit.attention_found:
        raise IterationHeadsError(
            f"no EoI and iteration heads were detected ({report.verdict}); pass eoi_heads= "
            "and iteration_heads="
        )
    n_heads = int(model.cfg.n_heads)
    eoi = [(circuit.eoi_layer, h) for h in (circuit.eoi_heads or range(n_heads))]
    it = [(circuit.iteration_layer, h) for h in (circuit.iteration_heads or range(n_heads))]
    return eoi, it


def position_shift(
    model: Any,
    data: Data = None,
    *,
    shift: int = 1,
    eoi_heads: Sequence[Head] | Head | None = None,
    iteration_heads: Sequence[Head] | Head | None = None,
    report: DetectionReport | None = None,
    task: str | Task | None = None,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> PositionShift:
    """Patch the EoI heads' output from sequences of length ``L + shift`` (EoI moved by
    ``shift``, same first inputs) into clean runs of length ``L`` and read where the iteration
    heads attend.

    ``data``: probes built from a task (any vocabulary: :meth:`~iteration_heads.detection.Probes.from_task`,
    ``from_text``), a split in the library layout (with ``task``), or None (a library model's
    test split). The patch covers the clean queries of ``s_t`` (``t >= 2``) that are also
    queries of a state after EoI in the shifted run and whose ``x_{t - shift}`` exists; the
    attention read there is the argmax over keys of the iteration heads' summed pattern. Heads
    default to the circuit of ``report`` (or of :func:`~iteration_heads.detect` on the data).
    Sequences whose shifted copy does not fit the width, or leaves no query, are dropped.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> result = position_shift(model, split, task="polynomial", eoi_heads=(0, 0),
        ...                         iteration_heads=(1, 0))
        >>> sorted(set(result.table["length"])), result.shift
        ([3], 1)
    """
    check_int("shift", shift)
    check_int("n", n, minimum=1, none=True)
    check_int("seed", seed, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    if report is not None:
        check_report(model, report)
    if not isinstance(shift, int) or shift == 0:
        raise IterationHeadsError(f"shift={shift!r}, expected a non-zero int")
    clean, source = _shifted_pair(model, data, task, shift, n, seed)
    width = clean.width
    b, step = _window(clean, source, shift)
    if len(b) == 0:
        raise IterationHeadsError(
            f"no sequence leaves a query to measure with shift {shift} (lengths "
            f"{sorted(set(clean.lengths.tolist()))}, width {width})"
        )
    target = clean.input_positions[b, step - 1]
    predicted = clean.input_positions[b, step - shift - 1]
    queries = clean.query_positions[b, step - 1]
    window = torch.zeros(clean.tokens.shape, dtype=torch.bool)
    window[b, queries] = True
    if eoi_heads is None or iteration_heads is None:
        if report is None:
            report = detect(model, clean)
        found_eoi, found_it = _circuit_heads(model, report)
    eoi = check_heads(model, eoi_heads) if eoi_heads is not None else found_eoi
    it = check_heads(model, iteration_heads) if iteration_heads is not None else found_it
    eoi_layers = sorted({lay for lay, _ in eoi})
    it_layer = {lay for lay, _ in it}
    if len(it_layer) != 1 or min(it_layer) <= max(eoi_layers):
        raise IterationHeadsError(
            f"iteration heads {it} must sit in one layer after the EoI heads {eoi}"
        )
    layer = it_layer.pop()
    source_z = head_outputs(model, source.tokens, eoi_layers, batch_size)
    clean_p, patched_p = [], []
    name = pattern_hook(layer)
    heads = [h for _, h in it]
    device = device_of(model)
    with evaluating(model):
        for start in range(0, len(clean), batch_size):
            rows = slice(start, start + batch_size)
            tokens = clean.tokens[rows].to(device)
            _, cache = cached_run(model, tokens, names_filter=lambda n: n == name)
            clean_p.append(cache[name][:, heads].sum(1).cpu())
            hooks = []
            for lay in eoi_layers:
                idx = [h for ll, h in eoi if ll == lay]
                src = source_z[lay][rows]
                mask = window[rows]

                def hook(
                    z: Tensor,
                    hook: Any,
                    src: Tensor = src,
                    mask: Tensor = mask,
                    idx: list[int] = idx,
                ) -> Tensor:
                    z = z.clone()
                    m = mask.to(z.device)[:, :, None, None]
                    z[:, :, idx] = torch.where(m, src[:, :, idx].to(z.device), z[:, :, idx])
                    return z

                hooks.append((z_hook(lay), hook))
            with attached_hooks(model, hooks):
                _, cache = cached_run(model, tokens, names_filter=lambda n: n == name)
            patched_p.append(cache[name][:, heads].sum(1).cpu())
    clean_pattern, patched_pattern = torch.cat(clean_p), torch.cat(patched_p)
    qq = queries
    table = pd.DataFrame(
        {
            "sequence": b.numpy(),
            "length": clean.lengths[b].numpy(),
            "step": step.numpy(),
            "query": qq.numpy(),
            "target_key": target.numpy(),
            "predicted_key": predicted.numpy(),
            "clean_key": clean_pattern[b, qq].argmax(-1).numpy(),
            "patched_key": patched_pattern[b, qq].argmax(-1).numpy(),
            "clean_weight_target": clean_pattern[b, qq, target].numpy(),
            "patched_weight_predicted": patched_pattern[b, qq, predicted].numpy(),
        }
    )
    return PositionShift(shift, tuple(eoi), tuple(it), table)


def _shifted_pair(
    model: Any, data: Data, task: str | Task | None, shift: int, n: int | None, seed: int
) -> tuple[Probes, Probes]:
    """Clean probes whose length can shift within their width, and their shifted copies."""
    batch = as_batch(model, data, n=n)
    probes = batch.probes
    if probes is None or probes.inputs is None:
        name = task or model_metadata(model).get("task")
        if name is None:
            raise IterationHeadsError("pass task= (the model's metadata names none)")
        lengths = batch.need_lengths("the position-shift experiment")
        probes = Probes.from_split(Split(batch.tokens, batch.targets, lengths, True), task=name)
    if probes.inputs is None or probes.task is None or probes.encoding is None:
        raise IterationHeadsError("the position shift needs probes built from a task")
    fits = []
    for length in sorted(set(probes.lengths.tolist())):
        new = length + shift
        if new < 1:
            continue
        sample = probes.task.sample_inputs(1, new, generator=torch.Generator().manual_seed(0))
        if probes.encoding.encode(probes.task, sample).tokens.shape[1] <= probes.width:
            fits.append(length)
    keep = torch.isin(probes.lengths, torch.tensor(fits, dtype=torch.long))
    if not bool(keep.any()):
        raise IterationHeadsError(
            f"no sequence can shift its length by {shift} within the width {probes.width} "
            f"(lengths {sorted(set(probes.lengths.tolist()))})"
        )
    clean = probes.select(keep)
    return clean, corrupt(clean, "length", shift=shift, seed=seed)  # type: ignore[return-value]


def _window(clean: Probes, source: Probes, shift: int) -> tuple[Tensor, Tensor]:
    """``(sequence, step t)`` of the clean queries to patch and read: the query of ``s_t``
    (``t >= 2``) is also the query of a state after EoI in the shifted run, and ``x_{t-shift}``
    exists in the clean run."""
    steps = torch.arange(1, clean.query_positions.shape[1] + 1)[None, :]
    valid = (steps >= 2) & (steps <= clean.lengths[:, None])
    valid &= (steps - shift >= 1) & (steps - shift <= clean.lengths[:, None])
    later = torch.arange(source.query_positions.shape[1])[None, :]
    theirs = torch.where(
        (later >= 1) & (later < source.lengths[:, None]), source.query_positions, -1
    )  # the shifted run's queries of s_2 ..
    shared = (clean.query_positions[:, :, None] == theirs[:, None, :]).any(-1)
    sequence, step = (valid & shared).nonzero(as_tuple=True)
    return sequence, step + 1
