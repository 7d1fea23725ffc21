"""Reproduce the paper's experiments (docs/paper.md §7) with one command each.

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

Each family of experiments lives in its own module with its specs and claims
(:mod:`~iteration_heads.experiments.emergence`, :mod:`~iteration_heads.experiments.controls`,
:mod:`~iteration_heads.experiments.parity`, :mod:`~iteration_heads.experiments.scaling`); this
module lists them and writes their results.

Example:
    >>> [e.name for e in EXPERIMENTS.values()][:3]
    ['emergence', 'paper-size', 'no-cot']
    >>> spec = EXPERIMENTS["no-cot"].specs(seeds=(0,))["no CoT"][0]
    >>> spec.data.cot, spec.train.epochs, spec.name()
    (False, 150, 'polynomial-nocot-d64-L8-2x2-s0-e150')
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iteration_heads._io import read_json, versions, write_json, write_text
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.claims import Experiment, Results, first_epochs, mean_spread
from iteration_heads.experiments.controls import NO_COT, ONE_LAYER, SMALL_WIDTH
from iteration_heads.experiments.emergence import EMERGENCE, PAPER_SIZE, POSITIONAL
from iteration_heads.experiments.extending import earlier_runs, merge_runs
from iteration_heads.experiments.ontology import ONTOLOGY_EXPERIMENT
from iteration_heads.experiments.parity import FAIR_PARITY, PARITY_SCRATCH, TRANSFER
from iteration_heads.experiments.scaling import SCALING, THREE_BY_TWO
from iteration_heads.runs.executors import Executor
from iteration_heads.runs.results import RunResult, format_list
from iteration_heads.runs.scheduling import run_all
from iteration_heads.runs.specs import RunSpec
from iteration_heads.tasks.task import check_int
from iteration_heads.training.loop import TrainConfig
from iteration_heads.training.metrics import ACCURACY_TARGET
from iteration_heads.training.recipe import (
    RECIPE_HEADS_PER_LAYER,
    RECIPE_LR,
    RECIPE_WARMUP_STEPS,
)
from iteration_heads.viz.curves import scaling_grid
from iteration_heads.viz.page import write_shared_plotly

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        EMERGENCE,
        PAPER_SIZE,
        NO_COT,
        ONE_LAYER,
        SMALL_WIDTH,
        PARITY_SCRATCH,
        TRANSFER,
        FAIR_PARITY,
        SCALING,
        THREE_BY_TWO,
        POSITIONAL,
    )
}
"""Every experiment, in the order of docs/results.md."""


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
    executor: Executor | None = None,
    runs_per_job: int = 1,
    runs: str | os.PathLike[str] = "runs/reproduce",
    out: str | os.PathLike[str] = "docs/results",
    command_options: str = "",
    extend: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run experiments (all their runs through one executor: ``jobs`` local processes by
    default, or a SLURM or Ray executor) and write their results under ``out``. With ``extend``
    the results also hold the other seeds of ``<out>/<name>.json``
    (:func:`~iteration_heads.experiments.extending.earlier_runs`, checked before training).

    Returns each experiment's results (as written to ``<out>/<name>.json``).

    Example:
        >>> reproduce(["nope"])
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: unknown experiment 'nope'; choose from [...]
    """
    jobs = check_int("jobs", jobs, minimum=1)
    check_int("runs_per_job", runs_per_job, minimum=1)
    check_int("epochs", epochs, minimum=1, none=True)
    if seeds is not None and (isinstance(seeds, str) or not isinstance(seeds, Sequence)):
        raise IterationHeadsError(f"seeds={seeds!r}, expected a list of integers >= 0 or None")
    for i, seed in enumerate(seeds or ()):
        check_int(f"seeds[{i}]", seed, minimum=0)
    experiments = [get_experiment(n) for n in names]
    plans = {e.name: e.specs(seeds, epochs) for e in experiments}
    earlier = {e.name: earlier_runs(e, out, seeds, epochs) if extend else {} for e in experiments}
    tick = time.perf_counter()
    every = [s for plan in plans.values() for specs in plan.values() for s in specs]
    run_all(every, runs, jobs=jobs, executor=executor, runs_per_job=runs_per_job, log=log)
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
            earlier=earlier[experiment.name],
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
    earlier: Results | None = None,
) -> dict[str, Any]:
    """Write ``<out>/<experiment>.json``, ``.md`` and ``.html`` from the cached runs, and the
    ``earlier`` runs of other seeds (read from an earlier record)."""
    results: Results = {arm: [s.result(runs) for s in specs] for arm, specs in plan.items()}
    results = merge_runs(results, earlier or {})
    claims = []
    for claim in experiment.claims:
        ours, holds, why = claim.assess(results)
        claims.append(
            {"claim": claim.text, "paper": claim.paper, "ours": ours, "holds": holds, "why": why}
        )
    core_seconds = sum(r.wall_seconds for rs in results.values() for r in rs)
    seeds = sorted({r.seed for rs in results.values() for r in rs})
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
            arm: [{k: v for k, v in r.to_dict().items() if k != "directory"} for r in rs]
            for arm, rs in results.items()
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{experiment.name}.json", record)
    write_text(out / f"{experiment.name}.md", _markdown(record))
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
        f"peakiness (per layer) | ≥ {ACCURACY_TARGET} at epoch | head at epoch | detect | "
        "time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, entries in record["arms"].items():
        rs = [RunResult(**entry) for entry in entries]
        for r in rs:
            lines.append(
                f"| {arm} | {r.seed} | {r.epochs} | {r.accuracy:.3f} | "
                f"{format_list(r.test['eoi_peakiness'])} | "
                f"{format_list(r.test['iteration_peakiness'])} | "
                f"{first_epochs([r])} | {first_epochs([r], 'first_epoch_iteration_head')} | "
                f"{'circuit' if r.has_circuit else 'no circuit'} | {r.wall_seconds:.0f} |"
            )
        if len(rs) > 1:
            lines.append(
                f"| {arm} | mean ± sd (min–max) | | {mean_spread([r.accuracy for r in rs], 3)} | "
                f"layer 1: {mean_spread([r.eoi_peakiness for r in rs])} | "
                f"last layer: {mean_spread([r.iteration_peakiness for r in rs])} | | | | |"
            )
    lines += ["", "| claim | paper | ours | holds? |", "|---|---|---|---|"]
    for c in record["claims"]:
        why = f" ({c['why']})" if c["why"] else ""
        lines.append(f"| {c['claim']} | {c['paper']} | {c['ours']} | {c['holds']}{why} |")
    return "\n".join(lines) + "\n"


def _figure(experiment: Experiment, results: Results, out: Path) -> None:
    if experiment.figure == "grid":
        fig = scaling_grid([r.directory for rs in results.values() for r in rs])
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
                epochs = [p["epoch"] for p in r.curve]
                series = [
                    [p["accuracy"] for p in r.curve],
                    [(p["eoi_peakiness"] or [math.nan])[0] for p in r.curve],
                    [(p["iteration_peakiness"] or [math.nan])[-1] for p in r.curve],
                ]
                for col, ys in enumerate(series, start=1):
                    fig.add_trace(
                        go.Scatter(
                            x=epochs,
                            y=ys,
                            mode="lines",
                            name=f"{arm}, seed {r.seed}",
                            legendgroup=f"{arm}{r.seed}",
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
    write_text(
        out / f"{experiment.name}.html", fig.to_html(include_plotlyjs="directory", full_html=True)
    )
    write_shared_plotly(out)


def setting(record: dict[str, Any]) -> str:
    """The model and optimiser an experiment's from-scratch runs used, read from their specs:
    the library's recipe or the paper's settings (``—`` when the record has no run specs).

    Example:
        >>> from iteration_heads.runs.specs import paper_spec, polynomial_spec
        >>> def record(spec):
        ...     return {"arms": {"a": [{"spec": spec.to_dict()}]}}
        >>> setting(record(polynomial_spec(0))), setting(record(paper_spec(0)))
        ('2 × 2, Adam 1e-3, warm-up 200 (the recipe)', "2 × 1, Adam 3e-4 (the paper's)")
    """
    specs = [r["spec"] for rs in record["arms"].values() for r in rs if r.get("spec")]
    scratch = [s for s in specs if s.get("source") is None]
    if not scratch:
        return "—"
    model, train = scratch[0]["model"], scratch[0]["train"]
    heads = f"{model['n_layers']} × {model['n_heads']}"
    warmup = train.get("warmup_steps", 0)
    mantissa, exponent = f"{train['lr']:e}".split("e")
    lr = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"  # 0.0003 -> 3e-4
    optimiser = f"Adam {lr}" + (f", warm-up {warmup}" if warmup else "")
    recipe = (train["lr"], warmup, model["n_heads"]) == (
        RECIPE_LR,
        RECIPE_WARMUP_STEPS,
        RECIPE_HEADS_PER_LAYER,
    )
    paper = (train["lr"], warmup, model["n_heads"]) == (TrainConfig.lr, 0, 1)
    label = " (the recipe)" if recipe else " (the paper's)" if paper else ""
    return f"{heads}, {optimiser}{label}"


def write_summary(out: Path) -> Path:
    """Rewrite ``docs/results.md`` (next to ``out``) from every ``<out>/<experiment>.json``."""
    names = [*EXPERIMENTS, ONTOLOGY_EXPERIMENT]  # the multi-hop study writes the same record
    records = [
        read_json(out / f"{name}.json") for name in names if (out / f"{name}.json").is_file()
    ]
    lines = [
        "# Reproduction results",
        "",
        "Every row comes from `iteration-heads reproduce EXPERIMENT` ([the paper](paper.md) §7); the "
        "per-run tables, JSON and curves are in `docs/results/`. Paper column: what the paper "
        "states or what the authors' code measured on this kind of machine. "
        "Values are mean ± standard deviation (min–max) over seeds. The setting column of the "
        "commands table says which model and optimiser each experiment trained with: the "
        "library's recipe ([training guide](guide/training.md)) or the paper's settings. Where "
        "runs solve the task without a clean iteration head, [where alternative circuits occur]"
        "(guide/training.md#where-alternative-circuits-occur) shows where each head looks.",
        "",
        "| claim | paper | ours | holds? |",
        "|---|---|---|---|",
    ]
    for record in records:
        # the multi-hop study compares with Dutta et al. (Llama-2 7B), not with the paper
        source = "multi-hop, Dutta et al.: " if record["experiment"] == ONTOLOGY_EXPERIMENT else ""
        for c in record["claims"]:
            why = f": {c['why']}" if c["why"] else ""
            lines.append(
                f"| {source}{c['claim']} | {c['paper']} | {c['ours']} | **{c['holds']}**{why} |"
            )
    lines += [
        "",
        "## Commands and time on 2 CPU cores",
        "",
        "| experiment | setting | command | seeds | one-thread training time | on 2 cores "
        "(--jobs 2) | details |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        name = record["experiment"]
        lines.append(
            f"| {name} | {setting(record)} | `{record['command']}` | "
            f"{', '.join(map(str, record['seeds']))} | "
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
    lines += sweep_section(out)
    path = out.parent / "results.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def sweep_section(out: Path) -> list[str]:
    """The lines listing the sweeps whose tables are in ``out`` (``iteration-heads sweep ...
    --out out``), with their commands; none when there is none.

    Example:
        >>> import tempfile
        >>> sweep_section(Path(tempfile.mkdtemp()))
        []
    """
    pages = {p: p.read_text() for p in sorted(out.glob("*.md"))}
    sweeps = {p: text for p, text in pages.items() if text.startswith("# Sweep `")}
    if not sweeps:
        return []
    lines = ["", "## Sweeps", "", "| sweep | command | details |", "|---|---|---|"]
    for page, text in sweeps.items():
        command = next((line.removeprefix("Command: ") for line in text.splitlines()
                        if line.startswith("Command: ")), "")  # fmt: skip
        links = [f"[table](results/{page.name})"]
        links += [f"[{kind}](results/{page.stem}.{kind})" for kind in ("html", "csv")
                  if page.with_suffix(f".{kind}").is_file()]  # fmt: skip
        if page.with_suffix(".curves.csv").is_file():
            links.append(f"[curves](results/{page.stem}.curves.csv)")
        lines.append(f"| {page.stem} | {command} | {', '.join(links)} |")
    return lines
