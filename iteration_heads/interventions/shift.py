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
from iteration_heads._torch import Head, device_of, evaluating, pattern_hook, z_hook
from iteration_heads.detection.detector import detect
from iteration_heads.detection.probes import Probes
from iteration_heads.detection.report import DetectionReport
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.ablation import head_outputs
from iteration_heads.interventions.batch import as_batch, check_heads
from iteration_heads.interventions.corruptions import corrupt
from iteration_heads.model.checkpoint import model_metadata
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.data import Split
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import Task


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
    data: Split | None = None,
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

    The patch covers the queries that sit at a CoT state after EoI in both runs and have an
    ``x_t`` to attend to in the clean one, indices ``max(L, L') + 2 .. min(2L, 2L' + 1)``; the attention read there is the argmax over keys
    of the iteration heads' summed pattern. Heads default to the circuit of ``report`` (or of
    :func:`~iteration_heads.detection.detector.detect` on the data). Sequences too short to leave a query
    are dropped.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> result = position_shift(model, split, task="polynomial", eoi_heads=(0, 0),
        ...                         iteration_heads=(1, 0))
        >>> sorted(set(result.table["length"])), result.shift
        ([3], 1)
    """
    if not isinstance(shift, int) or shift == 0:
        raise IterationHeadsError(f"shift={shift!r}, expected a non-zero int")
    task = task or model_metadata(model).get("task")
    if task is None:
        raise IterationHeadsError("pass task= (the model's metadata names none)")
    batch = as_batch(model, data, n=n)
    lengths = batch.need_lengths("the position-shift experiment")
    split = Split(batch.tokens, batch.targets, lengths, True)
    width = batch.tokens.shape[1]
    other = lengths + shift
    # after EoI in both runs, with an x_t to attend to in the clean one
    lo, hi = torch.maximum(lengths, other) + 2, torch.minimum(2 * lengths, 2 * other + 1)
    keep = (other >= 1) & (2 * other + 3 <= width) & (hi >= lo)
    if not bool(keep.any()):
        raise IterationHeadsError(
            f"no sequence leaves a query to measure with shift {shift} (lengths "
            f"{sorted(set(lengths.tolist()))}, width {width})"
        )
    split = Split(batch.tokens[keep], batch.targets[keep], lengths[keep], True)
    lengths, lo, hi = lengths[keep], lo[keep], hi[keep]
    try:
        layout: TokenLayout | None = model_config(model).layout
    except IterationHeadsError:
        layout = None  # a foreign model: the task's own layout
    source = corrupt(split, "length", task=task, layout=layout, shift=shift, seed=seed)
    if eoi_heads is None or iteration_heads is None:
        if report is None:
            report = detect(model, Probes(split.tokens, split.lengths))
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
    q = torch.arange(width)
    window = (q[None] >= lo[:, None]) & (q[None] <= hi[:, None])  # batch pos
    source_z = head_outputs(model, source.tokens, eoi_layers, batch_size)
    clean_p, patched_p = [], []
    name = pattern_hook(layer)
    heads = [h for _, h in it]
    device = device_of(model)
    with evaluating(model):
        for start in range(0, len(split), batch_size):
            rows = slice(start, start + batch_size)
            tokens = split.tokens[rows].to(device)
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
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
            with model.hooks(fwd_hooks=hooks):
                _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
            patched_p.append(cache[name][:, heads].sum(1).cpu())
    clean_pattern, patched_pattern = torch.cat(clean_p), torch.cat(patched_p)
    b, qq = window.nonzero(as_tuple=True)
    target = qq - lengths[b]
    predicted = target - shift
    table = pd.DataFrame(
        {
            "sequence": b.numpy(),
            "length": lengths[b].numpy(),
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
