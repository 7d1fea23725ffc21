"""Training runs as values: a :class:`RunSpec` (data, model and training configs, and the run it
fine-tunes, if any) trained into a cache directory named after its full configuration.

The reproduction experiments (:mod:`iteration_heads.experiments.reproduction`) and the shipped models
(:mod:`iteration_heads.zoo`) are built from specs, so a run is trained once and shared: the
transfer experiment fine-tunes the emergence runs, the zoo's ``polynomial`` model is the emergence
run of seed 0. A cache directory holds the run directory of
:func:`~iteration_heads.training.loop.train` plus ``detect.json`` (the detection report of the final
model) and ``wall.json`` (wall-clock seconds, written last: it marks the run finished). An
interrupted run resumes from its last checkpoint.

Example:
    >>> import tempfile
    >>> result = run(copy_spec(), tempfile.mkdtemp())
    >>> result.name, result.accuracy, result.has_circuit
    ('copy-cot-d32-L6-2x1-s0-e12', 1.0, False)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iteration_heads._io import HISTORY_FILE, METADATA_FILE, RUN_FILE, read_json, write_json
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.authors import AUTHORS_VOCAB
from iteration_heads.model.transformer import ModelConfig
from iteration_heads.runs.results import DETECT_FILE, WALL_FILE, RunResult
from iteration_heads.runs.run_lock import (
    RunningElsewhere,
    claimed,
    remove_temporaries,
    run_holder,
)
from iteration_heads.tasks.data import DataConfig
from iteration_heads.tasks.task import check_int
from iteration_heads.training.loop import TrainConfig
from iteration_heads.training.recipe import (
    RECIPE_HEADS_PER_LAYER,
    recipe_model_config,
    recipe_train_config,
)

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class RunSpec:
    """One training run: data, model and training configs, and optionally the run whose final
    model it fine-tunes (``source``; the model config must then equal the source's).

    Example:
        >>> spec = polynomial_spec(0)
        >>> spec.name(), len(spec.key())
        ('polynomial-cot-d64-L8-2x2-s0-e200', 10)
    """

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    source: RunSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the cache key hashes it)."""
        return {
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "source": self.source.to_dict() if self.source else None,
        }

    def key(self) -> str:
        """A short hash of the full configuration."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def name(self) -> str:
        """A readable name: task, CoT, width, Lmax, layers x heads, seed, and the budget
        (epochs, or optimiser steps when ``max_steps`` is set)."""
        m, d = self.model, self.data
        parts = [
            d.task,
            "cot" if d.cot else "nocot",
            f"d{m.d_model}",
            f"L{d.max_len}",
            f"{m.n_layers}x{m.n_heads}",
        ]
        if m.positional != "learned":
            parts.append(m.positional)
        if self.train.trainable:
            parts.append("only-" + "+".join(self.train.trainable))
        budget = self.train.max_steps
        parts += [f"s{self.train.seed}", f"e{self.train.epochs}" if budget is None else
                  f"steps{budget}"]  # fmt: skip
        name = "-".join(parts)
        return f"{name}-from-{self.source.name()}" if self.source else name

    def directory(self, runs: str | os.PathLike[str]) -> Path:
        """Where the run is cached under ``runs``."""
        return Path(runs) / f"{self.name()}-{self.key()}"

    def result(self, runs: str | os.PathLike[str]) -> RunResult:
        """The figures of the finished run, read from its cache directory under ``runs``."""
        return RunResult.read(
            self.directory(runs), name=self.name(), seed=self.train.seed, spec=self.to_dict()
        )


def polynomial_spec(
    seed: int,
    *,
    task: str = "polynomial",
    cot: bool = True,
    d_model: int = 64,
    max_len: int = 8,
    n_layers: int = 2,
    n_heads: int = RECIPE_HEADS_PER_LAYER,
    positional: str = "learned",
    epochs: int = 200,
    stop_at_target: bool = True,
    max_steps: int | None = None,
) -> RunSpec:
    """The library's recipe (:mod:`~iteration_heads.training.recipe`: two heads per layer, Adam
    1e-3 with a 200-step warm-up) for one seed; one thread per run. ``max_steps`` bounds the
    budget in optimiser steps as well as in epochs.

    Example:
        >>> spec = polynomial_spec(1, d_model=16)
        >>> spec.model.d_model, spec.model.n_heads, spec.train.lr, spec.train.warmup_steps
        (16, 2, 0.001, 200)
    """
    return RunSpec(
        DataConfig(task=task, max_len=max_len, cot=cot, seed=seed),
        recipe_model_config(
            d_model=d_model,
            max_len=max_len,
            n_layers=n_layers,
            n_heads=n_heads,
            positional=positional,
            seed=seed,
        ),
        recipe_train_config(
            epochs=epochs,
            stop_at_target=stop_at_target,
            max_steps=max_steps,
            seed=seed,
            threads=1,
        ),
    )


PAPER_SIZE_EPOCHS = 60
"""Budget of the paper-size runs (d 128, Lmax 16); they stop at target (the head formed by epoch
20 on every seed tried), so the budget only bounds a run that does not learn."""


def paper_size_spec(seed: int, *, epochs: int | None = None) -> RunSpec:
    """The library's recipe at the paper's size (d 128, Lmax 16) for one seed: the paper-size
    runs, and the sources of the fair parity test.

    Example:
        >>> spec = paper_size_spec(0)
        >>> spec.name(), spec.model.d_head
        ('polynomial-cot-d128-L16-2x2-s0-e60', 64)
    """
    return polynomial_spec(seed, d_model=128, max_len=16, epochs=epochs or PAPER_SIZE_EPOCHS)


def paper_spec(seed: int, *, epochs: int = 200) -> RunSpec:
    """The paper's model and optimiser at d 64 / Lmax 8 for one seed: 2 layers x 1 head, Adam
    3e-4 with no warm-up (with the library's data, shuffled batches and embedding dropout), up to
    ``epochs`` and stopping at target; one thread per run. The shipped ``polynomial_paper``
    model is its seed 0.

    Example:
        >>> spec = paper_spec(0)
        >>> spec.name(), spec.train.lr, spec.train.warmup_steps
        ('polynomial-cot-d64-L8-2x1-s0-e200', 0.0003, 0)
    """
    return RunSpec(
        DataConfig(task="polynomial", max_len=8, seed=seed),
        ModelConfig(d_model=64, max_len=8, n_layers=2, n_heads=1, seed=seed),
        TrainConfig(epochs=epochs, stop_at_target=True, seed=seed, threads=1),
    )


PAPER_HEADS_PER_LAYER = 1
"""Attention heads per layer in the paper's main model (its 3-layer variant has 2)."""


def paper_setting(spec: RunSpec, *, n_heads: int = PAPER_HEADS_PER_LAYER) -> RunSpec:
    """The same run with the paper's model and optimiser, as the authors ran them: ``n_heads``
    heads per layer, Adam at 3e-4 with no warm-up, and the whole epoch budget (no stop at
    target). A fine-tuning run keeps its own optimiser (already the paper's) and fine-tunes the
    paper version of its source. Width, depth, task, data and seeds stay the spec's.

    Example:
        >>> spec = paper_setting(polynomial_spec(0))
        >>> spec.name(), spec.train.lr, spec.train.warmup_steps, spec.train.stop_at_target
        ('polynomial-cot-d64-L8-2x1-s0-e200', 0.0003, 0, False)
        >>> tuned = paper_setting(transfer_spec(polynomial_spec(0), epochs=4, trainable=None))
        >>> tuned.source == spec, tuned.model.n_heads, tuned.train.lr
        (True, 1, 0.0003)
    """
    check_int("n_heads", n_heads, minimum=1)
    if spec.source is not None:
        source = paper_setting(spec.source, n_heads=n_heads)
        return replace(spec, model=source.model, source=source)
    model = replace(spec.model, n_heads=n_heads)
    train = replace(spec.train, lr=TrainConfig.lr, warmup_steps=0, stop_at_target=False)
    return replace(spec, model=model, train=train)


def authors_setting(spec: RunSpec, *, n_heads: int = PAPER_HEADS_PER_LAYER) -> RunSpec:
    """The same run as the authors' code trains it: :func:`paper_setting` and every ingredient
    of their ``src/cot`` that the paper setting lacks (docs/guide/training.md, "The authors'
    setting"). Model: their block (``residual="authors"``), no biases, their 64-token
    vocabulary and their initialisation, drawn as their model draws it after
    ``torch.manual_seed(seed)``. Data: their generator and split (1024 + 1024 inputs per
    length), with data seed 0 for every run seed as in their code, and the EoS padding scored.
    Training: their length-sorted, unshuffled batches of 256, Adam with no weight decay,
    embedding dropout 0.1. ``n_heads`` heads per layer, as in :func:`paper_setting`. A fine-tuning run fine-tunes the authors' version of its source on
    their data and batch order. Width, depth, task, lengths, epochs and seeds stay the spec's.

    Example:
        >>> spec = authors_setting(polynomial_spec(3))
        >>> spec.name(), spec.data.seed, spec.model.seed, spec.model.residual, spec.train.batch_order
        ('polynomial-cot-d64-L8-2x1-s3-e200', 0, 3, 'authors', 'sorted')
        >>> spec.key() != paper_setting(polynomial_spec(3)).key()
        True
    """
    data = replace(spec.data, sampler="authors", seed=0, n_train=1024, n_test=1024,
                   overlap=True, score_padding=True)  # fmt: skip
    if spec.source is not None:
        source = authors_setting(spec.source, n_heads=n_heads)
        train = replace(spec.train, batch_order="sorted")
        return replace(spec, data=data, model=source.model, train=train, source=source)
    paper = paper_setting(spec, n_heads=n_heads)
    model = replace(paper.model, residual="authors", biases=False, weight_init="authors",
                    embedding_init="normal", d_vocab_=AUTHORS_VOCAB)  # fmt: skip
    train = replace(paper.train, batch_order="sorted", batch_size=256, optimizer="adam",
                    weight_decay=0.0, embedding_dropout=0.1)  # fmt: skip
    return replace(paper, data=data, model=model, train=train)


def transfer_spec(source: RunSpec, *, epochs: int, trainable: tuple[str, ...] | None) -> RunSpec:
    """Fine-tune ``source``'s final model on parity with the paper's optimiser: a fresh Adam at
    3e-4 with no warm-up (a warm-up would hold back the first epochs the claims read), evaluated
    every epoch.

    Example:
        >>> spec = transfer_spec(polynomial_spec(0), epochs=4, trainable=None)
        >>> spec.data.task, spec.train.lr, spec.train.warmup_steps
        ('parity', 0.0003, 0)
    """
    seed = source.train.seed
    return RunSpec(
        replace(source.data, task="parity"),
        source.model,
        TrainConfig(
            epochs=epochs,
            seed=seed,
            threads=1,
            eval_every=1,
            checkpoint_every=0,
            trainable=trainable,
        ),
        source=source,
    )


def copy_spec(seed: int = 0) -> RunSpec:
    """The shipped copy model: d 32, Lmax 6, 512 sequences per length, 12 epochs.

    Example:
        >>> copy_spec().model.d_model
        32
    """
    return RunSpec(
        DataConfig(task="copy", max_len=6, n_train=512, n_test=256, seed=seed),
        ModelConfig(d_model=32, max_len=6, seed=seed),
        TrainConfig(epochs=12, eval_every=4, batch_size=64, lr=1e-3, threads=1, seed=seed),
    )


def run(spec: RunSpec, runs: str | os.PathLike[str]) -> RunResult:
    """Train ``spec`` into its cache directory under ``runs`` (or reuse it) and return its result.

    A finished run is read back; an interrupted one resumes from its last checkpoint. The source
    run of a fine-tuning spec must be finished.

    Example:
        >>> import dataclasses, tempfile
        >>> spec = copy_spec()
        >>> spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
        >>> run(spec, tempfile.mkdtemp()).name  # a finished run is read back, not retrained
        'copy-cot-d32-L6-2x1-s0-e1'
    """
    if not finished(spec, runs):
        train_run(spec, runs)
    return spec.result(runs)


def finished(spec: RunSpec, runs: str | os.PathLike[str]) -> bool:
    """Whether ``spec``'s run is complete in the cache (its wall-clock file is written last).

    Example:
        >>> finished(copy_spec(), "/nonexistent")
        False
    """
    return (spec.directory(Path(runs)) / WALL_FILE).is_file()


def train_run(spec: RunSpec, runs: str | os.PathLike[str]) -> None:
    """Train ``spec`` into its cache directory under ``runs`` at its thread count: from the
    start, or from its last checkpoint when a run was interrupted; then :func:`finish_run`.
    Nothing in the directory is touched unless this process holds its lock: a run that another
    process holds is :class:`RunningElsewhere`.

    Example:
        >>> import dataclasses, tempfile
        >>> spec, runs = copy_spec(), tempfile.mkdtemp()
        >>> spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
        >>> train_run(spec, runs); finished(spec, runs)
        True
    """
    import torch

    from iteration_heads.model.checkpoint import load
    from iteration_heads.model.transformer import build_model
    from iteration_heads.tasks.data import make_dataset
    from iteration_heads.training.loop import train

    directory = spec.directory(runs)
    with claimed(directory):  # decided under the lock: finished, resumed or started afresh
        if finished(spec, runs):
            return
        remove_temporaries(directory)
        resume = (directory / RUN_FILE).is_file()  # a started run always has a checkpoint
        carried = recorded_seconds(directory) if resume else 0.0  # earlier processes' time
    torch.set_num_threads(spec.train.threads or 1)
    if spec.source is not None:
        source_dir = spec.source.directory(runs)
        if not finished(spec.source, runs):
            raise IterationHeadsError(f"source run {str(source_dir)!r} is not finished")
        model = load(source_dir)
    else:
        model = build_model(spec.model)
    tick = time.perf_counter()
    data = make_dataset(spec.data, spec.model.layout)
    for attempt in range(3):  # a start that never finished starts over, under the run's lock
        try:
            train(model, data, spec.train, out_dir=directory, resume=resume, progress=False)
            break
        except IterationHeadsError as err:
            holder = run_holder(directory)
            if holder is not None:
                error = RunningElsewhere(f"run {str(directory)!r} is running elsewhere ({holder})")
                error.holder = holder
                raise error from err
            if "is in use by" not in str(err) or attempt == 2:
                raise
            time.sleep(0.1)  # the lock was held for an instant (a table read its state)
    with claimed(directory):
        if not finished(spec, runs):
            finish_run(spec, runs, model, time.perf_counter() - tick, carried=carried)


def recorded_seconds(directory: str | os.PathLike[str]) -> float:
    """The training and evaluation seconds that the last record of a run folder's history
    holds (cumulative over the processes that trained it; 0 without a history): what a run
    killed part-way had spent before the process that resumes it.

    Example:
        >>> recorded_seconds("/nonexistent")
        0.0
    """
    from iteration_heads.training.history import read_history

    folder = Path(directory)
    if not (folder / HISTORY_FILE).is_file():
        return 0.0
    history = read_history(folder)
    if not history:
        return 0.0
    return float(history[-1]["train_seconds"]) + float(history[-1]["eval_seconds"])


def finish_run(
    spec: RunSpec,
    runs: str | os.PathLike[str],
    model: torch.nn.Module,
    seconds: float,
    *,
    carried: float = 0.0,
) -> None:
    """Complete a trained run's cache directory: its spec in the metadata, ``detect.json``
    (the detection of ``model``, its final model) and last ``wall.json``, which marks the run
    finished: ``seconds`` (this process) added to the time already spent on the run, the larger
    of an earlier ``wall.json`` (a finished run trained further) and ``carried`` (what a run
    killed part-way had recorded before this process resumed it: :func:`recorded_seconds`).

    Example:
        >>> import dataclasses, tempfile
        >>> from iteration_heads import build_model, make_dataset
        >>> from iteration_heads.training import train
        >>> spec, runs = copy_spec(), tempfile.mkdtemp()
        >>> spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
        >>> model = build_model(spec.model)
        >>> data = make_dataset(spec.data, spec.model.layout)
        >>> _ = train(model, data, spec.train, out_dir=spec.directory(runs), progress=False)
        >>> finish_run(spec, runs, model, seconds=1.0); spec.result(runs).wall_seconds
        1.0
    """
    from iteration_heads.detection.detector import detect

    directory = spec.directory(runs)
    wall = read_json(directory / WALL_FILE)["seconds"] if (directory / WALL_FILE).is_file() else 0
    meta = read_json(directory / METADATA_FILE)
    meta["spec"] = spec.to_dict()
    if spec.source is not None:
        meta["source"] = spec.source.name()
    write_json(directory / METADATA_FILE, meta)
    report = detect(model, n_probes=512)
    write_json(
        directory / DETECT_FILE,
        {
            "verdict": report.verdict,
            "has_iteration_circuit": report.has_iteration_circuit,
            "eoi_heads": report.found("eoi"),
            "iteration_heads": report.found("iteration"),
            "state_sensitivity": report.state_sensitivity,
            "layers": report.layers.to_dict(orient="records"),
        },
    )
    write_json(directory / WALL_FILE, {"seconds": round(max(wall, carried) + seconds, 1)})
