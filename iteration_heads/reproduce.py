"""Reproduce the paper's experiments (PAPER.md §7) with one command each.

``iteration-heads reproduce EXPERIMENT [EXPERIMENT ...]`` trains every run an experiment needs
(several seeds, in parallel with ``--jobs``, one thread per run), then writes under ``--out``
(``docs/results`` by default):

* ``<experiment>.json``: the command, seeds, configs, wall-clock time, and per run the final
  per-length figures, the first epochs where targets were reached, the detection verdict and the
  evaluation curve;
* ``<experiment>.md``: a markdown table (mean ± standard deviation over seeds, with min..max);
* ``<experiment>.html``: the curves (or the grid) as a plotly page; plotly.js is stored once, as
  ``plotly.min.js`` next to it, so the pages work offline;
* ``../results.md``: one table over every experiment written so far, claim | paper | ours | holds?

Runs are cached in ``--runs`` (``runs/reproduce``) under a name derived from their full
configuration, so experiments share runs (the transfer experiment fine-tunes the emergence runs)
and an interrupted command resumes from the last checkpoint of each run.

Example:
    >>> [e.name for e in EXPERIMENTS.values()][:3]
    ['emergence', 'paper-size', 'no-cot']
    >>> spec = EXPERIMENTS["no-cot"].specs(seeds=(0,))["no CoT"][0]
    >>> spec.data.cot, spec.train.epochs, spec.name()
    (False, 150, 'polynomial-nocot-d64-L8-2x1-s0-e150')
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iteration_heads.checkpoint import read_json, versions, write_json
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs import (
    RunSpec,
    format_list,
    polynomial_spec,
    result_of,
    run_all,
    transfer_spec,
)

# ----------------------------------------------------------------------------------------------
# Experiments


@dataclass(frozen=True)
class Claim:
    """One row of docs/results.md: the claim, what the paper (or the authors' code) reports,
    and a function of the experiment's results giving (ours, holds?, why)."""

    text: str
    paper: str
    assess: Callable[[dict[str, list[dict[str, Any]]]], tuple[str, str, str]]


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its arms (label -> one spec per seed) and the claims it tests.

    ``epochs`` overrides the experiment's training budget (see each experiment's description).
    """

    name: str
    description: str
    build: Callable[[tuple[int, ...], int | None], dict[str, list[RunSpec]]]
    claims: tuple[Claim, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    figure: str = "curves"  # "curves" or "grid"

    def specs(
        self, seeds: Sequence[int] | None = None, epochs: int | None = None
    ) -> dict[str, list[RunSpec]]:
        """The runs of every arm, for the given seeds (default: the experiment's)."""
        return self.build(tuple(seeds) if seeds else self.seeds, epochs)


def _last(values: list[float]) -> float:
    return float(values[-1]) if values else math.nan


def _acc(r: dict[str, Any]) -> float:
    return float(r["summary"]["test"]["accuracy"])


def _iteration(r: dict[str, Any]) -> float:
    """Iteration peakiness of the last layer (the paper's layer 2)."""
    return _last(r["summary"]["test"]["iteration_peakiness"])


def _eoi(r: dict[str, Any]) -> float:
    """EoI peakiness of the first layer."""
    values = r["summary"]["test"]["eoi_peakiness"]
    return float(values[0]) if values else math.nan


def _at_epoch(r: dict[str, Any], epoch: int) -> float:
    for point in r["curve"]:
        if point["epoch"] == epoch:
            return float(point["accuracy"])
    return math.nan


def mean_spread(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± standard deviation (min–max)`` over seeds; just the value for one seed.

    Example:
        >>> mean_spread([1.0, 0.83, 0.56])
        '0.80 ± 0.22 (0.56–1.00)'
        >>> mean_spread([0.5])
        '0.50'
    """
    values = [float(v) for v in values]
    if any(math.isnan(v) for v in values):
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    return (
        f"{mean:.{digits}f} ± {sd:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def _first(r: dict[str, Any], key: str = "first_epoch_accuracy") -> str:
    value = r["summary"][key]
    return "—" if value is None else str(value)


def _count(rs: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> int:
    return sum(1 for r in rs if pred(r))


def _holds(n: int, total: int) -> str:
    return "yes" if n == total else "no" if n == 0 else f"partly ({n}/{total} seeds)"


def _single(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return next(iter(results.values()))


# -- emergence


def _emergence(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {"CoT, 2 layers": [polynomial_spec(s, epochs=epochs or 200) for s in seeds]}


def _learns(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rs = _single(results)
    n = _count(rs, lambda r: _acc(r) >= 0.99)
    ours = (
        f"accuracy {mean_spread([_acc(r) for r in rs])}; ≥ 0.99 first at epoch "
        + ", ".join(_first(r) for r in rs)
        + f" (seeds {', '.join(str(r['seed']) for r in rs)})"
    )
    why = "; ".join(_late(r) for r in rs if _acc(r) < 0.99)
    return ours, _holds(n, len(rs)), why


def _late(r: dict[str, Any]) -> str:
    """A seed that has not learned: where it stands and whether its train loss still falls."""
    curve = r["curve"]
    last = curve[-1]
    before = next((p for p in curve if p["epoch"] >= last["epoch"] - 50), curve[0])
    trend = (
        "still falling"
        if before["train_loss"] and last["train_loss"] < 0.95 * before["train_loss"]
        else "flat"
    )
    return (
        f"seed {r['seed']}: accuracy {_acc(r):.2f} at epoch {last['epoch']}, train loss "
        f"{before['train_loss']:.3f} → {last['train_loss']:.3f} over the last "
        f"{last['epoch'] - before['epoch']} epochs ({trend}): a late start"
    )


def _head_forms(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rs = _single(results)
    n = _count(rs, lambda r: _iteration(r) >= 0.9 and _eoi(r) >= 0.5)
    ours = (
        f"layer-2 iteration peakiness {mean_spread([_iteration(r) for r in rs])}; "
        f"layer-1 EoI peakiness {mean_spread([_eoi(r) for r in rs])}; detect finds the circuit "
        f"in {_count(rs, lambda r: r['detect']['has_iteration_circuit'])}/{len(rs)}"
    )
    parts = []
    for r in rs:
        if _acc(r) >= 0.99 and _iteration(r) < 0.9:
            parts.append(
                f"seed {r['seed']} solves the task with layer-2 peakiness {_iteration(r):.2f}: an "
                "alternative circuit at the last steps of the longest lengths, where layer 2 "
                "attends EoI or an attention sink instead of x_t (docs/guide/training.md)"
            )
        elif _acc(r) < 0.99:
            parts.append(f"seed {r['seed']} has not learned the task yet ({_acc(r):.2f})")
    return ours, _holds(n, len(rs)), "; ".join(parts)


# -- paper size


def _paper_size(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        "d 128, Lmax 16": [
            polynomial_spec(s, d_model=128, max_len=16, epochs=epochs or 1000) for s in seeds
        ]
    }


def _paper_size_claim(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rs = _single(results)
    budget = rs[0]["spec"]["train"]["epochs"]
    ok = _count(rs, lambda r: _acc(r) >= 0.99 and _iteration(r) >= 0.9)
    ours = (
        f"after {', '.join(str(r['summary']['epochs']) for r in rs)} epochs: accuracy "
        f"{mean_spread([_acc(r) for r in rs])}, layer-2 iteration peakiness "
        f"{mean_spread([_iteration(r) for r in rs])}, layer-1 EoI peakiness "
        f"{mean_spread([_eoi(r) for r in rs])}"
    )
    if ok == len(rs):
        return ours, "yes", ""
    if budget < 1000:
        return (
            ours,
            f"not tested to the end ({budget} of 1000 epochs)",
            f"an epoch takes about 25 s on one core; the full budget is out of reach on 2 CPU "
            f"cores, so the run was stopped at {budget} epochs",
        )
    return ours, "no", "not learned within 1000 epochs"


# -- negative controls


def _no_cot(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        "no CoT": [
            polynomial_spec(s, cot=False, epochs=epochs or 150, stop_at_target=False) for s in seeds
        ]
    }


def _one_layer(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        "CoT, 1 layer": [
            polynomial_spec(s, n_layers=1, epochs=epochs or 150, stop_at_target=False)
            for s in seeds
        ]
    }


def _small_width(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        "CoT, d 16": [
            polynomial_spec(s, d_model=16, epochs=epochs or 150, stop_at_target=False)
            for s in seeds
        ]
    }


def _fails(threshold: float, reason_ok: str) -> Callable[..., tuple[str, str, str]]:
    def assess(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
        rs = _single(results)
        n = _count(rs, lambda r: _acc(r) < threshold)
        epochs = ", ".join(sorted({str(r["summary"]["epochs"]) for r in rs}))
        ours = f"accuracy {mean_spread([_acc(r) for r in rs])} after {epochs} epochs"
        return ours, _holds(n, len(rs)), reason_ok if n == len(rs) else "learned on some seeds"

    return assess


# -- parity


def _parity(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        "parity from scratch": [
            polynomial_spec(s, task="parity", epochs=epochs or 200) for s in seeds
        ]
    }


def _parity_claim(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rs = _single(results)
    learned = _count(rs, lambda r: _acc(r) >= 0.99)
    clean = _count(rs, lambda r: _iteration(r) >= 0.9)
    ours = (
        f"accuracy {mean_spread([_acc(r) for r in rs])} (≥ 0.99 first at epoch "
        + ", ".join(_first(r) for r in rs)
        + f"), layer-2 iteration peakiness {mean_spread([_iteration(r) for r in rs])}, after "
        f"{', '.join(str(r['summary']['epochs']) for r in rs)} epochs"
    )
    if learned == 0 and clean == 0:
        return ours, "yes", ""
    if clean == 0:
        return (
            ours,
            "partly: no clean head, but not slow",
            f"{learned}/{len(rs)} seeds reach 0.99 within the budget, without an iteration head: "
            "at Lmax 8 parity has only 510 distinct inputs and 1024 training sequences per "
            "length cover nearly all of them (test inputs are seen in training), so the model "
            "can fit them without the circuit; polynomial iteration has 10^L inputs per length",
        )
    return (
        ours,
        "no" if clean == len(rs) else f"partly ({len(rs) - clean}/{len(rs)} seeds without a head)",
        f"with the library's recipe a clean head forms from scratch on {clean}/{len(rs)} seeds",
    )


# -- transfer


TRANSFER_ALL_EPOCHS = 10
TRANSFER_MLP_EPOCHS = 20


def _transfer(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    sources = [polynomial_spec(s) for s in seeds]
    return {
        "source (polynomial)": sources,
        "all weights": [
            transfer_spec(s, epochs=epochs or TRANSFER_ALL_EPOCHS, trainable=None) for s in sources
        ],
        "second MLP only": [
            transfer_spec(s, epochs=epochs or TRANSFER_MLP_EPOCHS, trainable=("blocks.1.mlp",))
            for s in sources
        ],
    }


def _transfer_all(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rs = results["all weights"]
    last = rs[0]["summary"]["epochs"]
    n = _count(rs, lambda r: _acc(r) >= 0.99)
    ours = (
        f"before {mean_spread([_at_epoch(r, 0) for r in rs])}; after 2 epochs "
        f"{mean_spread([_at_epoch(r, 2) for r in rs])}, after 4 "
        f"{mean_spread([_at_epoch(r, 4) for r in rs])}, after {last} "
        f"{mean_spread([_acc(r) for r in rs])}; layer-2 iteration peakiness "
        f"{mean_spread([_iteration(r) for r in rs])}"
    )
    return ours, _holds(n, len(rs)), _source_reason(results, rs, lambda r: _acc(r) < 0.99)


def _transfer_mlp(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rs = results["second MLP only"]
    last = rs[0]["summary"]["epochs"]
    n = _count(rs, lambda r: _acc(r) >= 0.7)
    ours = (
        f"after 2 epochs {mean_spread([_at_epoch(r, 2) for r in rs])}, after {last} "
        f"{mean_spread([_acc(r) for r in rs])}"
    )
    return ours, _holds(n, len(rs)), _source_reason(results, rs, lambda r: _acc(r) < 0.7)


def _source_reason(
    results: dict[str, list[dict[str, Any]]],
    rs: list[dict[str, Any]],
    failed: Callable[[dict[str, Any]], bool],
) -> str:
    """Why some seeds did not transfer: what their polynomial source had reached."""
    sources = {r["seed"]: r for r in results["source (polynomial)"]}
    parts = []
    for r in rs:
        if failed(r):
            src = sources[r["seed"]]
            parts.append(
                f"seed {r['seed']}: its source reached polynomial accuracy {_acc(src):.2f} and "
                f"layer-2 iteration peakiness {_iteration(src):.2f}"
            )
    return "; ".join(parts)


# -- scaling grid

GRID_WIDTHS = (16, 32, 64)
GRID_LENGTHS = (4, 6, 8)


def _scaling(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        f"d {d}, Lmax {L}": [
            polynomial_spec(s, d_model=d, max_len=L, epochs=epochs or 100) for s in seeds
        ]
        for d in GRID_WIDTHS
        for L in GRID_LENGTHS
    }


def _cells(results: dict[str, list[dict[str, Any]]]) -> dict[tuple[int, int], float]:
    cells = {}
    for rs in results.values():
        d, L = rs[0]["spec"]["model"]["d_model"], rs[0]["spec"]["data"]["max_len"]
        cells[(d, L)] = statistics.fmean(_acc(r) for r in rs)
    return cells


def _scaling_claim(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    cells = _cells(results)
    failed = sorted(c for c, a in cells.items() if a < 0.99)
    widest = max(d for d, _ in cells)
    monotone = all(
        any(d2 > d and cells.get((d2, L), 0) >= 0.99 for d2, _ in cells) for d, L in failed
    )
    ours = f"{len(cells) - len(failed)}/{len(cells)} cells reach 0.99; failures: " + (
        ", ".join(f"d {d} / Lmax {L} ({cells[(d, L)]:.2f})" for d, L in failed) or "none"
    )
    holds = "yes" if monotone and all(cells[(widest, L)] >= 0.99 for _, L in cells) else "partly"
    notes = [] if holds == "yes" else ["failures are not confined to small widths"]
    inverted = [
        (d, L)
        for d, L in failed
        if any(d2 == d and L2 > L and a >= 0.99 for (d2, L2), a in cells.items())
    ]
    if inverted:
        notes.append(
            "d "
            + ", ".join(f"{d} / Lmax {L}" for d, L in inverted)
            + " fails where a longer Lmax succeeds: the budget is in epochs and an epoch holds "
            "1024 sequences per length, so a smaller Lmax gets fewer updates"
        )
    return ours, holds, "; ".join(notes)


def _alternative(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rows, widths = [], []
    widest = max(rs[0]["spec"]["model"]["d_model"] for rs in results.values())
    for rs in results.values():
        for r in rs:
            if _acc(r) >= 0.99 and _iteration(r) < 0.9:
                m, d = r["spec"]["model"], r["spec"]["data"]
                rows.append(f"d {m['d_model']} / Lmax {d['max_len']} ({_iteration(r):.2f})")
                widths.append(m["d_model"])
    solved = sum(1 for rs in results.values() for r in rs if _acc(r) >= 0.99)
    ours = f"{len(rows)} of {solved} solved cells with iteration peakiness < 0.9" + (
        ": " + ", ".join(rows) if rows else ""
    )
    if not rows:
        return ours, "no", "every solved cell has a clean head"
    if any(w < widest for w in widths):
        return ours, "yes", ""
    return (
        ours,
        "partly: alternative circuits, but not at small width",
        f"below d {widest} every cell either solves the task with a clean head or does not "
        f"solve it within the budget; solved runs without a clean head appear at d {widest} "
        "(here, and seed 1 of emergence)",
    )


# -- 3 layers x 2 heads


def _three_by_two(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        "3 layers x 2 heads": [
            polynomial_spec(s, n_layers=3, n_heads=2, epochs=epochs or 200) for s in seeds
        ]
    }


def _spread(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    rs = _single(results)
    parts, n = [], 0
    for r in rs:
        det = r["detect"]
        heads = len(det["eoi_heads"]) + len(det["iteration_heads"])
        spread = heads > 2 or any(
            row.get("iteration_peakiness", 0) >= 0.5 for row in det["layers"][2:]
        )
        n += bool(spread and _acc(r) >= 0.99)
        parts.append(
            f"seed {r['seed']}: accuracy {_acc(r):.2f}, EoI heads "
            + (", ".join(f"L{a}H{b}" for a, b in det["eoi_heads"]) or "none")
            + ", iteration heads "
            + (", ".join(f"L{a}H{b}" for a, b in det["iteration_heads"]) or "none")
            + f"; per-layer iteration peakiness {format_list(r['summary']['test']['iteration_peakiness'])}"
        )
    return "; ".join(parts), _holds(n, len(rs)), ""


# -- positional embeddings


def _positional(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    return {
        "learned": [polynomial_spec(s, epochs=epochs or 200) for s in seeds],
        "frozen": [polynomial_spec(s, positional="frozen", epochs=epochs or 200) for s in seeds],
    }


def _positional_claim(results: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    parts = []
    for arm in ("learned", "frozen"):
        rs = results[arm]
        parts.append(
            f"{arm}: accuracy {mean_spread([_acc(r) for r in rs])}, iteration peakiness "
            f"{mean_spread([_iteration(r) for r in rs])}, first epoch with both "
            + ", ".join(_first(r, "first_epoch_both") for r in rs)
        )
    frozen = results["frozen"]
    n = _count(frozen, lambda r: _acc(r) >= 0.99 and _iteration(r) >= 0.9)
    learned = {r["seed"]: _outcome(r) for r in results["learned"]}
    same = all(_outcome(r) == learned.get(r["seed"]) for r in frozen)
    why = (
        "every seed has the same outcome with frozen and learned positions ("
        + ", ".join(f"seed {r['seed']}: {_outcome(r)}" for r in frozen)
        + "): the seed, not the positional embedding, decides"
        if same
        else ""
    )
    holds = _holds(n, len(frozen))
    if same and n < len(frozen):
        holds = f"yes, as often as with learned positions ({n}/{len(frozen)} seeds each)"
    return "; ".join(parts), holds, why


def _outcome(r: dict[str, Any]) -> str:
    if _acc(r) < 0.99:
        return "not learned"
    return "iteration head" if _iteration(r) >= 0.9 else "solved without a clean head"


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "emergence",
            "Polynomial iteration with CoT, d 64, Lmax 8, 2 layers x 1 head, up to 200 epochs "
            "(stopping once test accuracy >= 0.99 and layer-2 iteration peakiness >= 0.9). "
            "--epochs sets the budget.",
            _emergence,
            (
                Claim(
                    "CoT + 2 layers learns polynomial iteration (d 64, Lmax 8)",
                    "authors' code: ≥ 0.99 at ~epoch 140, 1.00 at 150",
                    _learns,
                ),
                Claim(
                    "an iteration head forms (EoI head in layer 1, iteration head in layer 2)",
                    "layer-2 peakiness 0.98–0.99 at every length; layer-1 EoI peakiness ≈ 0.65",
                    _head_forms,
                ),
            ),
        ),
        Experiment(
            "paper-size",
            "The paper's main setting: d 128, Lmax 16, up to 1000 epochs (stopping at target). "
            "About 25 s per epoch on one core; pass --epochs to cap the budget (the results "
            "page says which).",
            _paper_size,
            (
                Claim(
                    "paper size (d 128, Lmax 16) learns with an iteration head",
                    "the paper's main setting (1000 epochs)",
                    _paper_size_claim,
                ),
            ),
        ),
        Experiment(
            "no-cot",
            "Polynomial iteration without CoT (d 64, Lmax 8), 150 epochs.",
            _no_cot,
            (
                Claim(
                    "without CoT the task is not learned",
                    "0.09 after 150 epochs (chance 1/11)",
                    _fails(0.2, "the answer needs L sequential steps; no CoT gives one"),
                ),
            ),
        ),
        Experiment(
            "one-layer",
            "Polynomial iteration with CoT and one layer (d 64, Lmax 8), 150 epochs.",
            _one_layer,
            (
                Claim(
                    "one layer with CoT fails",
                    "0.02 after 150 epochs",
                    _fails(0.2, "one layer cannot both find EoI and then attend to x_t"),
                ),
            ),
        ),
        Experiment(
            "small-width",
            "Polynomial iteration with CoT at d 16 (Lmax 8), 150 epochs.",
            _small_width,
            (
                Claim(
                    "too small a width fails (d 16)",
                    "0.00 after 150 epochs",
                    _fails(0.99, "d 16 is too narrow at Lmax 8"),
                ),
            ),
        ),
        Experiment(
            "parity-scratch",
            "Parity with CoT from scratch (d 64, Lmax 8), up to 200 epochs.",
            _parity,
            (
                Claim(
                    "parity from scratch is slow, with no clean head",
                    "0.58 after 200 epochs, layer-2 peakiness < 0.1 (paper: ~1000 epochs)",
                    _parity_claim,
                ),
            ),
        ),
        Experiment(
            "transfer",
            "Fine-tune the emergence runs' final models on parity with a fresh Adam: all "
            f"weights for {TRANSFER_ALL_EPOCHS} epochs, or only the second MLP "
            f"(blocks.1.mlp) for {TRANSFER_MLP_EPOCHS}; evaluation every epoch. --epochs sets "
            "both budgets. Trains the emergence runs first if they are not cached.",
            _transfer,
            (
                Claim(
                    "transfer polynomial → parity (all weights)",
                    "0.99 after 2 epochs, 1.00 after 4, head kept (paper: ≤ ~30 epochs vs ~1000)",
                    _transfer_all,
                ),
                Claim(
                    "fine-tuning only the second-layer MLP suffices",
                    "~0.55 after 2 epochs, ~0.80 after 20",
                    _transfer_mlp,
                ),
            ),
        ),
        Experiment(
            "scaling",
            f"Grid d_model {GRID_WIDTHS} x Lmax {GRID_LENGTHS}, 2 layers with CoT, one seed, up "
            "to 100 epochs each (shrunk from the paper's grid to fit 2 CPU cores).",
            _scaling,
            (
                Claim(
                    "scaling: 2-layer CoT solves the grid except small d at large Lmax",
                    "solved except small d at large Lmax",
                    _scaling_claim,
                ),
                Claim(
                    "low width: alternative circuits (peakiness < 1 at high accuracy)",
                    "partial / subsampled attention at small d",
                    _alternative,
                ),
            ),
            seeds=(0,),
            figure="grid",
        ),
        Experiment(
            "three-by-two",
            "3 layers x 2 heads (d 64, Lmax 8), up to 200 epochs, one seed.",
            _three_by_two,
            (
                Claim(
                    "with 3 layers x 2 heads the pattern spreads over several heads",
                    "the pattern spreads over several heads",
                    _spread,
                ),
            ),
            seeds=(0,),
        ),
        Experiment(
            "positional",
            "Frozen random Gaussian positional embeddings against learned ones (d 64, Lmax 8), "
            "up to 200 epochs; the learned arm is the emergence runs.",
            _positional,
            (
                Claim(
                    "frozen random positional embeddings: the circuit still forms",
                    "variant used in the paper (frozen random Gaussian positions)",
                    _positional_claim,
                ),
            ),
        ),
    ]
}


def get_experiment(name: str) -> Experiment:
    """An experiment by name.

    Example:
        >>> get_experiment("transfer").name
        'transfer'
    """
    if name not in EXPERIMENTS:
        raise IterationHeadsError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    return EXPERIMENTS[name]


# ----------------------------------------------------------------------------------------------
# Results


def reproduce(
    names: Sequence[str],
    *,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    jobs: int = 1,
    runs: str | os.PathLike[str] = "runs/reproduce",
    out: str | os.PathLike[str] = "docs/results",
    command_options: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run experiments (all their runs in one pool) and write their results under ``out``.

    Returns each experiment's results (as written to ``<out>/<name>.json``).

    Example:
        >>> reproduce(["nope"])
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: unknown experiment 'nope'; choose from [...]
    """
    experiments = [get_experiment(n) for n in names]
    if jobs < 1:
        raise IterationHeadsError(f"jobs={jobs}: expected >= 1")
    plans = {e.name: e.specs(seeds, epochs) for e in experiments}
    tick = time.perf_counter()
    every = [s for plan in plans.values() for specs in plan.values() for s in specs]
    run_all(every, runs, jobs=jobs, log=log)
    elapsed = time.perf_counter() - tick
    outputs = {}
    for experiment in experiments:
        outputs[experiment.name] = write_results(
            experiment,
            plans[experiment.name],
            runs=Path(runs),
            out=Path(out),
            command=f"iteration-heads reproduce {experiment.name} {command_options}".strip(),
            jobs=jobs,
            elapsed=elapsed,
        )
        log(f"wrote {Path(out) / experiment.name}.{{json,md,html}}")
    write_summary(Path(out))
    return outputs


def write_results(
    experiment: Experiment,
    plan: dict[str, list[RunSpec]],
    *,
    runs: Path,
    out: Path,
    command: str,
    jobs: int,
    elapsed: float,
) -> dict[str, Any]:
    """Write ``<out>/<experiment>.json``, ``.md`` and ``.html`` from the cached runs."""
    results = {arm: [result_of(s, runs) for s in specs] for arm, specs in plan.items()}
    claims = []
    for claim in experiment.claims:
        ours, holds, why = claim.assess(results)
        claims.append(
            {"claim": claim.text, "paper": claim.paper, "ours": ours, "holds": holds, "why": why}
        )
    core_seconds = sum(r["wall_seconds"] for rs in results.values() for r in rs)
    seeds = sorted({r["seed"] for rs in results.values() for r in rs})
    record = {
        "experiment": experiment.name,
        "description": experiment.description,
        "command": command,
        "seeds": seeds,
        "jobs": jobs,
        "run_seconds_one_thread": round(core_seconds, 1),
        "elapsed_seconds_this_invocation": round(elapsed, 1),
        "versions": versions(),
        "claims": claims,
        "arms": {
            arm: [{k: v for k, v in r.items() if k != "directory"} for r in rs]
            for arm, rs in results.items()
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{experiment.name}.json", record)
    (out / f"{experiment.name}.md").write_text(_markdown(record))
    _figure(experiment, results, out)
    return record


def two_core_minutes(record: dict[str, Any]) -> float:
    """Estimated minutes on 2 cores with ``--jobs 2``: half the one-thread total, or the longest
    run if that is longer.

    Example:
        >>> two_core_minutes({"arms": {"a": [{"wall_seconds": 600}, {"wall_seconds": 60}]}})
        10.0
    """
    seconds = [r["wall_seconds"] for rs in record["arms"].values() for r in rs]
    return round(max(sum(seconds) / 2, max(seconds)) / 60, 1)


def _markdown(record: dict[str, Any]) -> str:
    lines = [
        f"# {record['experiment']}",
        "",
        record["description"],
        "",
        f"Command: `{record['command']}` (seeds {', '.join(map(str, record['seeds']))}). "
        f"Training time: {record['run_seconds_one_thread'] / 60:.1f} min of one-thread runs "
        f"(about {two_core_minutes(record)} min on 2 cores with --jobs 2). "
        f"Curves: [{record['experiment']}.html]({record['experiment']}.html).",
        "",
        "| arm | seed | epochs | test accuracy (L ≥ 4) | EoI peakiness (per layer) | iteration "
        "peakiness (per layer) | ≥ 0.99 at epoch | head at epoch | detect | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, rs in record["arms"].items():
        for r in rs:
            test = r["summary"]["test"]
            lines.append(
                f"| {arm} | {r['seed']} | {r['summary']['epochs']} | {test['accuracy']:.3f} | "
                f"{format_list(test['eoi_peakiness'])} | {format_list(test['iteration_peakiness'])} | "
                f"{_first(r)} | {_first(r, 'first_epoch_iteration_head')} | "
                f"{'circuit' if r['detect']['has_iteration_circuit'] else 'no circuit'} | "
                f"{r['wall_seconds']:.0f} |"
            )
        if len(rs) > 1:
            lines.append(
                f"| {arm} | mean ± sd (min–max) | | {mean_spread([_acc(r) for r in rs], 3)} | "
                f"layer 1: {mean_spread([_eoi(r) for r in rs])} | "
                f"last layer: {mean_spread([_iteration(r) for r in rs])} | | | | |"
            )
    lines += ["", "| claim | paper | ours | holds? |", "|---|---|---|---|"]
    for c in record["claims"]:
        why = f" ({c['why']})" if c["why"] else ""
        lines.append(f"| {c['claim']} | {c['paper']} | {c['ours']} | {c['holds']}{why} |")
    return "\n".join(lines) + "\n"


def _figure(experiment: Experiment, results: dict[str, list[dict[str, Any]]], out: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if experiment.figure == "grid":
        from iteration_heads.plots import scaling_grid

        fig = scaling_grid([r["directory"] for rs in results.values() for r in rs])
    else:
        fig = make_subplots(
            rows=1,
            cols=3,
            subplot_titles=[
                "test accuracy",
                "EoI peakiness (layer 1)",
                "iteration peakiness (last layer)",
            ],
        )
        palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
        for index, (arm, rs) in enumerate(results.items()):
            for seed_index, r in enumerate(rs):
                epochs = [p["epoch"] for p in r["curve"]]
                series = [
                    [p["accuracy"] for p in r["curve"]],
                    [(p["eoi_peakiness"] or [math.nan])[0] for p in r["curve"]],
                    [_last(p["iteration_peakiness"]) for p in r["curve"]],
                ]
                for col, ys in enumerate(series, start=1):
                    fig.add_trace(
                        go.Scatter(
                            x=epochs,
                            y=ys,
                            mode="lines",
                            name=f"{arm}, seed {r['seed']}",
                            legendgroup=f"{arm}{r['seed']}",
                            showlegend=col == 1,
                            line={
                                "color": palette[index % len(palette)],
                                "dash": ("solid", "dash", "dot", "dashdot")[seed_index % 4],
                            },
                        ),
                        row=1,
                        col=col,
                    )
        fig.update_xaxes(title_text="epoch")
        fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(
        title=f"{experiment.name} (docs/results/{experiment.name}.md)", height=420, width=1200
    )
    fig.write_html(out / f"{experiment.name}.html", include_plotlyjs="directory", full_html=True)


def write_summary(out: Path) -> Path:
    """Rewrite ``docs/results.md`` (next to ``out``) from every ``<out>/<experiment>.json``."""
    records = [
        read_json(out / f"{name}.json") for name in EXPERIMENTS if (out / f"{name}.json").is_file()
    ]
    lines = [
        "# Reproduction results",
        "",
        "Every row comes from `iteration-heads reproduce EXPERIMENT` (PAPER.md §7); the "
        "per-run tables, JSON and curves are in `docs/results/`. Paper column: what the paper "
        "states or what the authors' code measured on this kind of machine (PAPER.md §7). "
        "Values are mean ± standard deviation (min–max) over seeds.",
        "",
        "| claim | paper | ours | holds? |",
        "|---|---|---|---|",
    ]
    for record in records:
        for c in record["claims"]:
            why = f": {c['why']}" if c["why"] else ""
            lines.append(f"| {c['claim']} | {c['paper']} | {c['ours']} | **{c['holds']}**{why} |")
    lines += [
        "",
        "## Commands and time on 2 CPU cores",
        "",
        "| experiment | command | seeds | one-thread training time | on 2 cores (--jobs 2) | details |",
        "|---|---|---|---|---|---|",
    ]
    for record in records:
        name = record["experiment"]
        lines.append(
            f"| {name} | `{record['command']}` | {', '.join(map(str, record['seeds']))} | "
            f"{record['run_seconds_one_thread'] / 60:.1f} min | ≈ {two_core_minutes(record)} min | "
            f"[table](results/{name}.md), [curves](results/{name}.html), "
            f"[json](results/{name}.json) |"
        )
    lines += [
        "",
        "With `--jobs 2` two runs train at once (one thread each): the time on 2 cores is about "
        "half the one-thread total, or the longest run. Times were measured while other jobs "
        "shared the machine, so they are upper bounds. The time of `transfer` includes the "
        "`emergence` runs it fine-tunes (shared with `emergence` and `positional`). Runs are cached in `runs/reproduce/`: re-running a "
        "command reuses finished runs and resumes interrupted ones.",
    ]
    path = out.parent / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path
