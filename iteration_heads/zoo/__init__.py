"""Small trained models shipped with the package, to try everything offline in seconds.

Each model lives in its own folder here (``config.json``, ``model.safetensors``,
``metadata.json``, ``history.jsonl``), saved by :func:`iteration_heads.save` at the
end of a run of :mod:`iteration_heads.experiments.reproduction`. ``metadata.json`` records the data, model and
training configs, the seed, the library versions and the figures the model reached on its test
split. ``history.jsonl`` is its training history (see :func:`~iteration_heads.training_curves`).

=====================  ====================================================================
name                   model
=====================  ====================================================================
``polynomial``         polynomial iteration with CoT, d 64, Lmax 8, the library's recipe
                       (2 layers x 2 heads): the paper's circuit
``polynomial_paper``   the same with the paper's model and optimiser (2 layers x 1 head)
``parity_transfer``    ``polynomial`` fine-tuned on parity (all weights, 10 epochs)
``copy``               copy task (control: a positional head, no EoI head, state unused)
``polynomial_nocot``   polynomial iteration without CoT (does not learn; no circuit)
``polynomial_3x2``     3 layers x 2 heads: the circuit spread over several heads
``ontology``           multi-hop reasoning over fictional ontologies, 4 layers x 4 heads
=====================  ====================================================================

Rebuild them with ``iteration-heads zoo --build`` (:func:`build`), which trains them through the
reproduction cache (``runs/reproduce``), so a model that an experiment already trained is copied.

Example:
    >>> from iteration_heads import zoo
    >>> zoo.names()
    ['polynomial', 'polynomial_paper', 'parity_transfer', 'copy', 'polynomial_nocot', 'polynomial_3x2', 'ontology']
    >>> model = zoo.load("polynomial")
    >>> zoo.info("polynomial")["test_accuracy"] >= 0.99
    True
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iteration_heads._io import (
    CONFIG_FILE,
    HISTORY_FILE,
    METADATA_FILE,
    SHIPPED_MODELS_DIR,
    WEIGHTS_FILE,
    read_json,
    write_json,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments import EXPERIMENTS, train_ontology
from iteration_heads.model import checkpoint
from iteration_heads.runs import copy_spec, paper_spec, run_all


@dataclass(frozen=True)
class ZooEntry:
    """What a shipped model is and what :func:`~iteration_heads.detect` must say about it."""

    description: str
    has_iteration_circuit: bool  # the detection verdict its test checks


ENTRIES: dict[str, ZooEntry] = {
    "polynomial": ZooEntry(
        "polynomial iteration with CoT (d 64, Lmax 8), the library's recipe (2 layers x 2 heads, "
        "Adam 1e-3 with warm-up): EoI head L0H1 -> iteration heads L1H0 and L1H1",
        True,
    ),
    "polynomial_paper": ZooEntry(
        "polynomial iteration with CoT (d 64, Lmax 8), the paper's model and optimiser (2 layers "
        "x 1 head, Adam 3e-4): EoI head L0H0 -> iteration head L1H0",
        True,
    ),
    "parity_transfer": ZooEntry(
        "'polynomial' fine-tuned on parity for 10 epochs (all weights, fresh Adam): the iteration "
        "head is kept",
        True,
    ),
    "copy": ZooEntry(
        "copy task (d 32, Lmax 6): a positional head reads x_t; no EoI head is needed and the "
        "state is unused, so it is not an iteration circuit",
        False,
    ),
    "polynomial_nocot": ZooEntry(
        "polynomial iteration without CoT (d 64, Lmax 8, 150 epochs): not learned, no circuit",
        False,
    ),
    "polynomial_3x2": ZooEntry(
        "polynomial iteration with CoT, 3 layers x 2 heads (d 64, Lmax 8): the circuit is spread "
        "over several heads",
        True,
    ),
    "ontology": ZooEntry(
        "multi-hop reasoning over fictional ontologies (4 layers x 4 heads, d 64, 1-3 hops, a "
        "memorised world and contradicting questions): the model the pathway analyses study",
        False,
    ),
}
ONTOLOGY_MODELS = ("ontology",)
"""Shipped models of the ontology task (trained by :func:`~iteration_heads.experiments.train_ontology`,
not by a run spec); the others are iterative-task models."""


def names() -> list[str]:
    """The shipped models, in the order of the table above.

    Example:
        >>> "polynomial" in names()
        True
    """
    return list(ENTRIES)


def path(name: str) -> Path:
    """The folder holding a shipped model (to pass to :func:`iteration_heads.load`,
    ``iteration-heads detect``, ``iteration-heads report`` ...).

    Example:
        >>> path("copy").name
        'copy'
    """
    if not isinstance(name, str) or name not in ENTRIES:
        raise IterationHeadsError(f"unknown zoo model {name!r}; shipped models: {names()}")
    folder = SHIPPED_MODELS_DIR / name
    if not (folder / WEIGHTS_FILE).is_file():
        raise IterationHeadsError(
            f"zoo model {name!r} is not installed at {str(folder)!r}; rebuild it with "
            f"`iteration-heads zoo --build {name}`"
        )
    return folder


def load(name: str, *, device: str = "cpu") -> Any:
    """Load a shipped model by name (a TransformerBridge in eval mode, offline).

    Example:
        >>> model = load("polynomial")
        >>> model.cfg.n_layers, model.cfg.d_model
        (2, 64)
    """
    return checkpoint.load(path(name), device=device)


def info(name: str) -> dict[str, Any]:
    """What a shipped model is and the figures it reached, from its ``metadata.json``.

    Keys: ``name``, ``description``, ``task``, ``cot``, ``shape`` (layers x heads, d_model, Lmax),
    ``seed``, ``epochs``, ``test_accuracy`` (test split, L 4..Lmax), ``eoi_peakiness`` and
    ``iteration_peakiness`` (per layer), ``has_iteration_circuit`` (the verdict its test checks),
    ``source`` (the model it was fine-tuned from, if any), ``command`` (how it was made).

    Example:
        >>> entry = info("polynomial_nocot")
        >>> entry["cot"], entry["has_iteration_circuit"], entry["test_accuracy"] < 0.2
        (False, False, True)
    """
    folder = path(name)
    meta = read_json(folder / METADATA_FILE)
    config = read_json(folder / CONFIG_FILE)
    summary = meta.get("summary", {})
    test = summary.get("test", {})
    return {
        "name": name,
        "description": ENTRIES[name].description,
        "task": meta.get("task"),
        "cot": meta.get("cot"),
        "shape": f"{config['n_layers']}x{config['n_heads']}, d {config['d_model']}, "
        + (f"n_ctx {config['n_ctx_']}" if config.get("n_ctx_") else f"Lmax {config['max_len']}"),
        "seed": meta.get("seed"),
        "epochs": summary.get("epochs"),
        "test_accuracy": test.get("accuracy"),
        "eoi_peakiness": test.get("eoi_peakiness"),
        "iteration_peakiness": test.get("iteration_peakiness"),
        "has_iteration_circuit": ENTRIES[name].has_iteration_circuit,
        "source": meta.get("source"),
        "command": meta.get("command"),
    }


def table() -> str:
    """A plain-text table of every shipped model and its figures (``iteration-heads zoo``).

    Example:
        >>> print(table().splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
        name  task  CoT  shape  epochs  test acc  EoI peak (per layer)  iteration peak (per layer)  circuit
    """
    rows = [
        (
            "name",
            "task",
            "CoT",
            "shape",
            "epochs",
            "test acc",
            "EoI peak (per layer)",
            "iteration peak (per layer)",
            "circuit",
        )
    ]
    for name in names():
        entry = info(name)
        rows.append(
            (
                name,
                str(entry["task"]),
                "yes" if entry["cot"] else "no",
                entry["shape"],
                str(entry["epochs"]),
                f"{entry['test_accuracy']:.3f}",
                " ".join(f"{p:.2f}" for p in entry["eoi_peakiness"] or []) or "-",
                " ".join(f"{p:.2f}" for p in entry["iteration_peakiness"] or []) or "-",
                "yes" if entry["has_iteration_circuit"] else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def recipes() -> dict[str, Any]:
    """The run (a :class:`~iteration_heads.runs.specs.RunSpec`) each shipped iterative-task
    model comes from (the ontology models come from
    :func:`~iteration_heads.experiments.train_ontology`).

    Example:
        >>> recipes()["parity_transfer"].source.name()
        'polynomial-cot-d64-L8-2x2-s0-e200'
    """

    def arm(experiment: str, label: str) -> Any:
        return EXPERIMENTS[experiment].specs(seeds=(0,))[label][0]

    return {
        "polynomial": arm("emergence", "CoT, 2 layers"),
        "polynomial_paper": paper_spec(0),
        "parity_transfer": arm("transfer", "all weights"),
        "copy": copy_spec(0),
        "polynomial_nocot": arm("no-cot", "no CoT"),
        "polynomial_3x2": arm("three-by-two", "3 layers x 2 heads"),
    }


def build(
    which: list[str] | None = None,
    *,
    runs: str | os.PathLike[str] = "runs/reproduce",
    jobs: int = 1,
) -> list[Path]:
    """Retrain shipped models (all when ``which`` is None) and install them into the zoo.

    Runs go through the reproduction cache, so a model an experiment already trained is copied.

    Example:
        >>> build(["unknown"])
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: unknown zoo model 'unknown'; shipped models: [...]
    """
    if which is not None and (isinstance(which, str) or not isinstance(which, (list, tuple))):
        raise IterationHeadsError(f"which={which!r}, expected a list of zoo model names")
    chosen = which or names()
    for name in chosen:
        if name not in ENTRIES:
            raise IterationHeadsError(f"unknown zoo model {name!r}; shipped models: {names()}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise IterationHeadsError(f"jobs={jobs!r}, expected an integer >= 1")
    if Path(runs).exists() and not Path(runs).is_dir():
        raise IterationHeadsError(f"runs={str(runs)!r} is a file; expected a folder")
    specs = recipes()
    run_all([specs[n] for n in chosen if n in specs], runs, jobs=jobs)
    installed = []
    for name in chosen:
        if name in ONTOLOGY_MODELS:
            directory = Path(runs) / name
            if not (directory / WEIGHTS_FILE).is_file():  # not finished: start or resume
                train_ontology(directory, resume=directory.is_dir(), progress=False)
        else:
            directory = specs[name].directory(Path(runs))
        meta = read_json(directory / METADATA_FILE)
        meta["command"] = f"iteration-heads zoo --build {name}"
        write_json(directory / METADATA_FILE, meta)
        installed.append(install(name, directory))
    return installed


def install(name: str, run_dir: str | os.PathLike[str]) -> Path:
    """Copy a finished run's final model (and its history) into the zoo as ``name``.

    Example:
        >>> install("nonexistent", ".")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: unknown zoo model 'nonexistent'; shipped models: [...]
    """
    if name not in ENTRIES:
        raise IterationHeadsError(f"unknown zoo model {name!r}; shipped models: {names()}")
    run = Path(run_dir)
    if not run.is_dir():
        raise IterationHeadsError(
            f"run {str(run)!r} {'is a file' if run.exists() else 'does not exist'}; "
            "expected a finished run folder"
        )
    files = [CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, HISTORY_FILE]
    missing = [f for f in files if not (run / f).is_file()]
    if missing:
        raise IterationHeadsError(f"run {str(run)!r} lacks {missing}: is the run finished?")
    checkpoint.load(run)  # refuse a corrupt or mismatched model before touching the zoo
    target = SHIPPED_MODELS_DIR / name
    staging = SHIPPED_MODELS_DIR / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for f in files:
        shutil.copy(run / f, staging / f)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target
