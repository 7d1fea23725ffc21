"""Parity: slow from scratch without a clean head, fast once the iteration head exists — the
transfer from polynomial iteration, of all weights or of the second MLP only (docs/paper.md §7).

Example:
    >>> TRANSFER.specs(seeds=(0,))["all weights"][0].source.name()
    'polynomial-cot-d64-L8-2x1-s0-e200'
"""

from __future__ import annotations

from collections.abc import Callable

from iteration_heads.experiments.claims import (
    Assessment,
    Claim,
    Experiment,
    Results,
    count,
    first_epochs,
    holds,
    mean_spread,
    only_arm,
)
from iteration_heads.experiments.results import RunResult
from iteration_heads.experiments.runs import RunSpec, polynomial_spec, transfer_spec
from iteration_heads.training.metrics import ACCURACY_TARGET

# ---------------------------------------------------------------- from scratch


def parity_arms(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    """Parity with CoT from scratch, d 64, Lmax 8, up to 200 epochs.

    Example:
        >>> parity_arms((0,), None)["parity from scratch"][0].data.task
        'parity'
    """
    return {
        "parity from scratch": [
            polynomial_spec(s, task="parity", epochs=epochs or 200) for s in seeds
        ]
    }


def assess_parity(results: Results) -> Assessment:
    """Parity from scratch is slow and forms no clean head.

    Example:
        >>> test = {"accuracy": 0.58, "iteration_peakiness": [0.1, 0.05]}
        >>> assess_parity({"parity from scratch": [RunResult(0, {"epochs": 200, "test": test})]})[1]
        'yes'
    """
    rs = only_arm(results)
    learned = count(rs, lambda r: r.solved)
    clean = count(rs, lambda r: r.has_head)
    ours = (
        f"accuracy {mean_spread([r.accuracy for r in rs])} (≥ {ACCURACY_TARGET} first at epoch "
        f"{first_epochs(rs)}), layer-2 iteration peakiness "
        f"{mean_spread([r.iteration_peakiness for r in rs])}, after "
        f"{', '.join(str(r.epochs) for r in rs)} epochs"
    )
    if learned == 0 and clean == 0:
        return ours, "yes", ""
    if clean == 0:
        return (
            ours,
            "partly: no clean head, but not slow",
            f"{learned}/{len(rs)} seeds reach {ACCURACY_TARGET} within the budget, without an "
            "iteration head: at Lmax 8 parity has only 510 distinct inputs and 1024 training "
            "sequences per length cover nearly all of them (test inputs are seen in training), so "
            "the model can fit them without the circuit; polynomial iteration has 10^L inputs per "
            "length",
        )
    return (
        ours,
        "no" if clean == len(rs) else f"partly ({len(rs) - clean}/{len(rs)} seeds without a head)",
        f"with the library's recipe a clean head forms from scratch on {clean}/{len(rs)} seeds",
    )


PARITY_SCRATCH = Experiment(
    "parity-scratch",
    "Parity with CoT from scratch (d 64, Lmax 8), up to 200 epochs.",
    parity_arms,
    (
        Claim(
            "parity from scratch is slow, with no clean head",
            "0.58 after 200 epochs, layer-2 peakiness < 0.1 (paper: ~1000 epochs)",
            assess_parity,
        ),
    ),
)

# ---------------------------------------------------------------- transfer

TRANSFER_ALL_EPOCHS = 10
"""Fine-tuning budget of every weight."""
TRANSFER_MLP_EPOCHS = 20
"""Fine-tuning budget of the second MLP alone."""
MLP_ONLY_TARGET = 0.7
"""Accuracy that counts as the second MLP alone sufficing (the paper: ~0.80 after 20 epochs)."""


def transfer_arms(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    """The emergence runs (sources), fine-tuned on parity: all weights, or the second MLP only.

    Example:
        >>> list(transfer_arms((0,), None))
        ['source (polynomial)', 'all weights', 'second MLP only']
    """
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


def source_reason(
    results: Results, rs: list[RunResult], failed: Callable[[RunResult], bool]
) -> str:
    """Why some seeds did not transfer: what their polynomial source had reached.

    Example:
        >>> src = RunResult(2, {"test": {"accuracy": 0.32, "iteration_peakiness": [0.1, 0.2]}})
        >>> ft = RunResult(2, {"test": {"accuracy": 0.5}})
        >>> source_reason({"source (polynomial)": [src]}, [ft], lambda r: not r.solved)
        'seed 2: its source reached polynomial accuracy 0.32 and layer-2 iteration peakiness 0.20'
    """
    sources = {r.seed: r for r in results["source (polynomial)"]}
    return "; ".join(
        f"seed {r.seed}: its source reached polynomial accuracy {sources[r.seed].accuracy:.2f} "
        f"and layer-2 iteration peakiness {sources[r.seed].iteration_peakiness:.2f}"
        for r in rs
        if failed(r)
    )


def assess_transfer_all(results: Results) -> Assessment:
    """Fine-tuning every weight learns parity within a few epochs, the head kept.

    Example:
        >>> curve = [{"epoch": e, "accuracy": a} for e, a in ((0, 0.1), (2, 0.99), (4, 1.0))]
        >>> test = {"accuracy": 1.0, "iteration_peakiness": [0.1, 1.0]}
        >>> tuned = RunResult(0, {"epochs": 10, "test": test}, curve=curve)
        >>> assess_transfer_all({"all weights": [tuned], "source (polynomial)": []})[1]
        'yes'
    """
    rs = results["all weights"]
    last = rs[0].epochs
    ours = (
        f"before {mean_spread([r.accuracy_at(0) for r in rs])}; after 2 epochs "
        f"{mean_spread([r.accuracy_at(2) for r in rs])}, after 4 "
        f"{mean_spread([r.accuracy_at(4) for r in rs])}, after {last} "
        f"{mean_spread([r.accuracy for r in rs])}; layer-2 iteration peakiness "
        f"{mean_spread([r.iteration_peakiness for r in rs])}"
    )
    why = source_reason(results, rs, lambda r: not r.solved)
    return ours, holds(count(rs, lambda r: r.solved), len(rs)), why


def assess_transfer_mlp(results: Results) -> Assessment:
    """Fine-tuning the second MLP alone suffices (:data:`MLP_ONLY_TARGET`).

    Example:
        >>> tuned = RunResult(0, {"epochs": 20, "test": {"accuracy": 0.8}}, curve=[])
        >>> assess_transfer_mlp({"second MLP only": [tuned], "source (polynomial)": []})
        ('after 2 epochs —, after 20 0.80', 'yes', '')
    """
    rs = results["second MLP only"]
    ours = (
        f"after 2 epochs {mean_spread([r.accuracy_at(2) for r in rs])}, after {rs[0].epochs} "
        f"{mean_spread([r.accuracy for r in rs])}"
    )
    n = count(rs, lambda r: r.accuracy >= MLP_ONLY_TARGET)
    why = source_reason(results, rs, lambda r: r.accuracy < MLP_ONLY_TARGET)
    return ours, holds(n, len(rs)), why


TRANSFER = Experiment(
    "transfer",
    "Fine-tune the emergence runs' final models on parity with a fresh Adam: all weights for "
    f"{TRANSFER_ALL_EPOCHS} epochs, or only the second MLP (blocks.1.mlp) for "
    f"{TRANSFER_MLP_EPOCHS}; evaluation every epoch. --epochs sets both budgets. Trains the "
    "emergence runs first if they are not cached.",
    transfer_arms,
    (
        Claim(
            "transfer polynomial → parity (all weights)",
            "0.99 after 2 epochs, 1.00 after 4, head kept (paper: ≤ ~30 epochs vs ~1000)",
            assess_transfer_all,
        ),
        Claim(
            "fine-tuning only the second-layer MLP suffices",
            "~0.55 after 2 epochs, ~0.80 after 20",
            assess_transfer_mlp,
        ),
    ),
)
