"""Reproduce the paper's experiments (docs/paper.md §7) with one command each.

``iteration-heads reproduce EXPERIMENT [EXPERIMENT ...]`` trains every run an experiment needs
(several seeds, in parallel with ``--jobs``, one thread per run), then writes under ``--out``
(``docs/results`` by default):

* ``<experiment>.json``: the command, seeds, configs, wall-clock time, and per run the final
  per-length figures, the first epochs where targets were reached, the detection verdict and the
  evaluation curve (``<experiment>-paper.*`` for the paper arm, see below);
* ``<experiment>.md``: a markdown table (mean ± standard deviation over seeds, with min..max);
* ``<experiment>.html``: the curves (or the grid) as a plotly page; plotly.js is stored once, as
  ``plotly.min.js`` next to it, so the pages work offline;
* ``../results.md``: one table over every experiment written so far, claim | paper | ours | holds?

Every experiment runs in two settings by default (``--arm``,
:data:`~iteration_heads.experiments.claims.ARMS`): the paper's model and optimiser as the authors
ran them (``paper``: one head per layer, Adam 3e-4, no warm-up, the whole budget) and the
library's recipe (``recipe``); ``docs/results.md`` judges each claim on the paper arm and says
beside it what the recipe changes. ``--arm authors`` adds every ingredient of the authors' code
(their block, initialisation, data and batch order).

Runs are cached in ``--runs`` (``runs/reproduce``) under a name derived from their full
configuration, so experiments share runs (the transfer experiment fine-tunes the emergence runs)
and an interrupted command resumes from the last checkpoint of each run.

Each family of experiments lives in its own module with its specs and claims
(:mod:`~iteration_heads.experiments.emergence`, :mod:`~iteration_heads.experiments.controls`,
:mod:`~iteration_heads.experiments.parity`, :mod:`~iteration_heads.experiments.scaling`); this
module lists them and writes their results.

Example:
    >>> spec = get_experiment("no-cot").specs(seeds=(0,))["no CoT"][0]
    >>> spec.data.cot, spec.train.epochs, spec.name()
    (False, 150, 'polynomial-nocot-d64-L8-2x2-s0-e150')
    >>> get_experiment("no-cot").specs(seeds=(0,), arm="paper")["no CoT"][0].name()
    'polynomial-nocot-d64-L8-2x1-s0-e150'
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
from iteration_heads.experiments.claims import (
    ARMS,
    DEFAULT_ARMS,
    Experiment,
    Results,
    check_arm,
    first_epochs,
    mean_spread,
)
from iteration_heads.experiments.extending import earlier_runs, merge_runs
from iteration_heads.experiments.registry import get_experiment
from iteration_heads.experiments.results_page import (
    record_stem,
    setting,
    two_core_minutes,
    write_summary,
)
from iteration_heads.runs.executors import Executor
from iteration_heads.runs.results import RunResult, format_list
from iteration_heads.runs.scheduling import run_all
from iteration_heads.runs.specs import RunSpec
from iteration_heads.tasks.task import check_int
from iteration_heads.training.metrics import ACCURACY_TARGET
from iteration_heads.viz.curves import scaling_grid
from iteration_heads.viz.page import write_shared_plotly

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
    arms: Sequence[str] = DEFAULT_ARMS,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run experiments in the settings ``arms`` (:data:`~iteration_heads.experiments.claims.ARMS`;
    all their runs through one executor: ``jobs`` local processes by default, or a SLURM or Ray
    executor) and write their results under ``out``. With ``extend`` the results also hold the
    other seeds of the written record
    (:func:`~iteration_heads.experiments.extending.earlier_runs`, checked before training).

    Returns each experiment's results per setting, keyed by the record's file stem
    (:func:`~iteration_heads.experiments.results_page.record_stem`: ``no-cot`` for the recipe,
    ``no-cot-paper`` for the paper arm), as written to ``<out>/<stem>.json``.

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
    if isinstance(arms, str) or not isinstance(arms, Sequence) or not arms:
        raise IterationHeadsError(f"arms={arms!r}, expected a non-empty list of {list(ARMS)}")
    arms = [check_arm(arm) for arm in dict.fromkeys(arms)]
    experiments = [get_experiment(n) for n in names]
    jobs_of = [(e, arm) for e in experiments for arm in arms]
    plans = {(e.name, arm): e.specs(seeds, epochs, arm) for e, arm in jobs_of}
    earlier = {(e.name, arm): earlier_runs(e, out, seeds, epochs, arm) if extend else {}
               for e, arm in jobs_of}  # fmt: skip
    tick = time.perf_counter()
    every = [s for plan in plans.values() for specs in plan.values() for s in specs]
    run_all(every, runs, jobs=jobs, executor=executor, runs_per_job=runs_per_job, log=log)
    elapsed = time.perf_counter() - tick
    outputs = {}
    for experiment, arm in jobs_of:
        stem = record_stem(experiment.name, arm)
        outputs[stem] = write_results(
            experiment,
            plans[experiment.name, arm],
            runs=Path(runs),
            out=Path(out),
            command=f"iteration-heads reproduce {experiment.name} --arm {arm} "
            f"{command_options}".strip(),
            jobs=jobs,
            elapsed=elapsed,
            earlier=earlier[experiment.name, arm],
            arm=arm,
        )
        log(f"wrote {Path(out) / stem}.{{json,md,html}}")
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
    arm: str = "recipe",
) -> dict[str, Any]:
    """Write ``<out>/<stem>.json``, ``.md`` and ``.html`` (:func:`record_stem` of the experiment
    and the setting ``arm``) from the cached runs, and the ``earlier`` runs of other seeds (read
    from an earlier record)."""
    stem = record_stem(experiment.name, check_arm(arm))
    results: Results = {label: [s.result(runs) for s in specs] for label, specs in plan.items()}
    results = merge_runs(results, earlier or {})
    claims = judge(experiment, results)
    core_seconds = sum(r.wall_seconds for rs in results.values() for r in rs)
    seeds = sorted({r.seed for rs in results.values() for r in rs})
    record = {
        "experiment": experiment.name,
        "arm": arm,
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
    write_json(out / f"{stem}.json", record)
    write_text(out / f"{stem}.md", _markdown(record, out))
    _figure(experiment, results, out, arm)
    return record


def judge(experiment: Experiment, results: Results) -> list[dict[str, str]]:
    """Each of the experiment's claims judged on ``results``: its text, the paper's figure, ours,
    whether it holds and why.

    Example:
        >>> test = {"accuracy": 0.09, "eoi_peakiness": [], "iteration_peakiness": []}
        >>> runs = [RunResult(seed, {"epochs": 150, "test": test}) for seed in (0, 1)]
        >>> [c["holds"] for c in judge(get_experiment("no-cot"), {"no CoT": runs})]
        ['yes']
    """
    claims = []
    for claim in experiment.claims:
        ours, holds, why = claim.assess(results)
        claims.append(
            {"claim": claim.text, "paper": claim.paper, "ours": ours, "holds": holds, "why": why}
        )
    return claims


def rejudge(
    names: Sequence[str],
    out: str | os.PathLike[str] = "docs/results",
    arms: Sequence[str] = DEFAULT_ARMS,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Judge the written results of experiments again with today's claims, without training
    or a run cache: for every arm in ``arms`` that has a record ``<out>/<stem>.json``, its
    claims, description and Markdown table are rewritten from the runs it holds; its runs,
    command, times, versions and curves stay those of the training. For when the wording or
    the judgement of a claim changes after the runs. Returns the stems rewritten.

    Example:
        >>> import tempfile
        >>> rejudge(["no-cot"], tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: no results of no-cot in '...' for the arms ['paper', 'recipe']: run `iteration-heads reproduce no-cot` first
    """
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise IterationHeadsError(f"names={names!r}, expected a non-empty list of experiments")
    if isinstance(arms, str) or not isinstance(arms, Sequence) or not arms:
        raise IterationHeadsError(f"arms={arms!r}, expected a non-empty list of {list(ARMS)}")
    arms = [check_arm(arm) for arm in dict.fromkeys(arms)]
    experiments = [get_experiment(name) for name in names]
    out = Path(out)
    found = {(e.name, arm): out / f"{record_stem(e.name, arm)}.json" for e in experiments
             for arm in arms}  # fmt: skip
    for experiment in experiments:
        if not any(found[experiment.name, arm].is_file() for arm in arms):
            raise IterationHeadsError(
                f"no results of {experiment.name} in {str(out)!r} for the arms {arms}: run "
                f"`iteration-heads reproduce {experiment.name}` first"
            )
    judged = {}
    for (name, arm), path in found.items():  # every record read before one is rewritten
        if path.is_file():
            record = read_json(path)
            experiment = get_experiment(name)
            groups = sorted(experiment.specs(experiment.seeds[:1], None, arm))
            try:
                if sorted(record["arms"]) != groups:
                    raise ValueError(f"run groups {sorted(record['arms'])}, expected {groups}")
                results = {label: [RunResult(**run) for run in runs]
                           for label, runs in record["arms"].items()}  # fmt: skip
                claims = judge(experiment, results)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
                raise IterationHeadsError(
                    f"{str(path)!r} is not a record of {name} that can be judged again: "
                    f"{type(error).__name__}: {error}"
                ) from None
            judged[name, arm] = {**record, "description": experiment.description, "claims": claims}
    for (name, arm), record in judged.items():
        write_json(found[name, arm], record)
        write_text(out / f"{record_stem(name, arm)}.md", _markdown(record, out))
        log(f"rejudged {out / record_stem(name, arm)}.{{json,md}}")
    write_summary(out)
    return [record_stem(name, arm) for name, arm in judged]


ARM_NOTES = {
    "recipe": "",
    "paper": " Paper arm: the same runs with the paper's model and optimiser as the authors ran "
    "them (one head per layer unless the experiment says otherwise, Adam 3e-4, no warm-up), each "
    "trained for its whole budget without stopping at target.",
    "authors": " Authors' arm: the paper arm with every ingredient of the authors' code (their "
    "block, no biases, their initialisation and 64-token vocabulary, their data with one data "
    "seed for every run, the padding scored, length-sorted batches; docs/guide/training.md, "
    '"The authors\' setting").',
}


def _markdown(record: dict[str, Any], out: Path) -> str:
    arm = record.get("arm", "recipe")
    stem = record_stem(record["experiment"], arm)
    others = [record_stem(record["experiment"], a) for a in ARMS if a != arm]
    others = [other for other in others if (out / f"{other}.json").is_file()]  # written ones
    links = " The other arms: " + ", ".join(f"[{o}.md]({o}.md)" for o in others) + "."
    links = links if others else ""
    lines = [
        f"# {record['experiment']}, {arm} arm",
        "",
        record["description"] + ARM_NOTES[arm],
        "",
        f"Setting: {setting(record)}." + links,
        "",
        f"Command: `{record['command']}` (seeds {', '.join(map(str, record['seeds']))}). "
        f"Training time: {record['run_seconds_one_thread'] / 60:.1f} min of one-thread runs "
        f"(about {two_core_minutes(record)} min on 2 cores with --jobs 2). "
        f"Curves: [{stem}.html]({stem}.html).",
        "",
        "| runs | seed | epochs | test accuracy (L ≥ 4) | EoI peakiness (per layer) | iteration "
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


def _figure(experiment: Experiment, results: Results, out: Path, arm: str) -> None:
    stem = record_stem(experiment.name, arm)
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
        title=f"{experiment.name}, {arm} arm (docs/results/{stem}.md)",
        height=420,
        width=1200,
    )
    write_text(out / f"{stem}.html", fig.to_html(include_plotlyjs="directory", full_html=True))
    write_shared_plotly(out)
