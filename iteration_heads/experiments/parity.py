"""Parity: slow from scratch without a clean head, fast once the iteration head exists — the
transfer from polynomial iteration, of all weights or of the second MLP only (docs/paper.md §7).

Example:
    >>> TRANSFER.specs(seeds=(0,))["all weights"][0].source.name()
    'polynomial-cot-d64-L8-2x2-s0-e200'
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
    setting_name,
)
from iteration_heads.runs.results import RunResult
from iteration_heads.runs.specs import (
    RunSpec,
    paper_size_spec,
    polynomial_spec,
    transfer_spec,
)
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
        f"with {setting_name(rs)} a clean head forms from scratch on {clean}/{len(rs)} seeds",
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

# ---------------------------------------------------------------- the fair test: Lmax 16

FAIR_SCRATCH_EPOCHS = 30
"""Budget of parity from scratch at d 128, Lmax 16 (the paper: about 1000 epochs to learn)."""
SCRATCH_LEARNED = 0.9
"""Accuracy from scratch that counts as learned, so not slow, in the fair parity test."""
FAIR_TRANSFER_EPOCHS = 4
"""Fine-tuning epochs of the fair transfer (the paper: 1.00 after 4)."""


def fair_parity_arms(seeds: tuple[int, ...], epochs: int | None) -> dict[str, list[RunSpec]]:
    """Parity where the test is fair, at the paper's size (d 128, Lmax 16: 2^L inputs per length,
    most of them unseen in training for L > 10): from scratch, against the paper-size polynomial
    runs fine-tuned on it (all weights). ``epochs`` caps both budgets.

    Example:
        >>> arms = fair_parity_arms((0,), None)
        >>> list(arms)
        ['source (polynomial)', 'parity from scratch', 'transfer (all weights)']
        >>> arms["parity from scratch"][0].name()
        'parity-cot-d128-L16-2x2-s0-e30'
    """
    sources = [paper_size_spec(s) for s in seeds]
    return {
        "source (polynomial)": sources,
        "parity from scratch": [
            polynomial_spec(
                s, task="parity", d_model=128, max_len=16, epochs=epochs or FAIR_SCRATCH_EPOCHS
            )
            for s in seeds
        ],
        "transfer (all weights)": [
            transfer_spec(s, epochs=epochs or FAIR_TRANSFER_EPOCHS, trainable=None) for s in sources
        ],
    }


def assess_fair_parity(results: Results) -> Assessment:
    """Fine-tuning the polynomial model learns parity sooner than training from scratch, which
    the paper finds slow.

    Holds on a seed when its transfer reaches the accuracy target sooner (in fine-tuning epochs)
    than parity from scratch (never, within its budget, counts as later); only partly when, on
    every seed, transfer is sooner but some scratch run still reaches :data:`SCRATCH_LEARNED`
    within its budget (so scratch is not slow). The polynomial sources' first epoch at target is
    reported beside them.

    Example:
        >>> def run(seed, first, epochs=30, acc=1.0):
        ...     test = {"accuracy": acc, "iteration_peakiness": [0.1, 0.95]}
        ...     return RunResult(seed, {"epochs": epochs, "test": test, "first_epoch_accuracy": first},
        ...                      curve=[{"epoch": 0, "accuracy": 0.0}, {"epoch": 2, "accuracy": 1.0}])
        >>> results = {"source (polynomial)": [run(0, 20)], "parity from scratch": [run(0, None, acc=0.3)],
        ...            "transfer (all weights)": [run(0, 2, epochs=4)]}
        >>> assess_fair_parity(results)[1]
        'yes'
    """
    sources = results["source (polynomial)"]
    scratch = results["parity from scratch"]
    tuned = results["transfer (all weights)"]

    def first(r: RunResult) -> float:
        epoch = r.first_epoch("first_epoch_accuracy")
        return float("inf") if epoch is None else epoch

    faster = sum(1 for t, s in zip(tuned, scratch, strict=True) if first(t) < first(s))
    ours = (
        f"parity from scratch: accuracy {mean_spread([r.accuracy for r in scratch])} after "
        f"{', '.join(str(r.epochs) for r in scratch)} epochs (≥ {ACCURACY_TARGET} first at epoch "
        f"{first_epochs(scratch)}), layer-2 iteration peakiness "
        f"{mean_spread([r.iteration_peakiness for r in scratch])}; polynomial from scratch on "
        f"the same model: ≥ {ACCURACY_TARGET} first at epoch {first_epochs(sources)}; "
        f"transfer (all weights): before {mean_spread([r.accuracy_at(0) for r in tuned])}, "
        f"after 1 epoch {mean_spread([r.accuracy_at(1) for r in tuned])}, after 2 "
        f"{mean_spread([r.accuracy_at(2) for r in tuned])}, after {tuned[0].epochs} "
        f"{mean_spread([r.accuracy for r in tuned])}, layer-2 iteration peakiness "
        f"{mean_spread([r.iteration_peakiness for r in tuned])}"
    )
    learned = [r for r in scratch if r.accuracy >= SCRATCH_LEARNED]
    longest = [r.per_length["sequence_accuracy"][-1] for r in learned if r.per_length]
    verdict = holds(faster, len(tuned))
    why = (
        "at Lmax 16 most test inputs are new (2^L inputs per length, 1024 trained on), so "
        "parity cannot be fitted by memory as at Lmax 8"
    )
    if faster == len(tuned) and learned:
        verdict = "partly: transfer is faster, but parity from scratch is not slow"
        if len(learned) < len(scratch):
            verdict += f" on {len(learned)}/{len(scratch)} seeds"
        why = (
            f"{len(learned)}/{len(scratch)} seeds reach accuracy ≥ {SCRATCH_LEARNED} from scratch "
            f"within {scratch[0].epochs} epochs, with a best single-head layer-2 iteration "
            f"peakiness of {mean_spread([r.iteration_peakiness for r in learned])} (detect "
            f"finds an iteration circuit in {count(learned, lambda r: r.has_circuit)}) "
            f"and accuracy {mean_spread(longest)} at L = 16, where 1024 of 65,536 inputs are "
            "trained on: the model generalises without a clean iteration head (the paper: "
            "about 1000 epochs from scratch)"
        )
    return ours, verdict, why


FAIR_PARITY = Experiment(
    "parity-16",
    "The fair parity test at the paper's size (d 128, Lmax 16, the library's recipe): parity "
    f"from scratch (up to {FAIR_SCRATCH_EPOCHS} epochs) against the paper-size polynomial runs "
    f"fine-tuned on parity (all weights, fresh Adam 3e-4, {FAIR_TRANSFER_EPOCHS} epochs, "
    "evaluation every epoch). --epochs caps both budgets.",
    fair_parity_arms,
    (
        Claim(
            "parity at Lmax 16 (a fair test): slow from scratch, fast by transfer from polynomial",
            "from scratch about 1000 epochs; transfer 0.99 after 2 epochs, 1.00 after 4",
            assess_fair_parity,
        ),
    ),
)
