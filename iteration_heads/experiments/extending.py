"""Adding seeds to an experiment's written results without retraining the seeds it already has:
``iteration-heads reproduce NAME --seeds 3 4 --extend`` trains seeds 3 and 4 and writes results
over those and every other seed of ``<out>/NAME.json`` (runs trained by an earlier invocation,
perhaps on another machine whose run cache is gone).

An earlier run is kept only when its recorded spec is the one the experiment gives its seed now,
so results never mix runs of different settings; the check runs before anything trains.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iteration_heads._io import read_json
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.claims import Experiment, Results
from iteration_heads.experiments.results_page import record_stem
from iteration_heads.runs.results import RunResult


def earlier_runs(
    experiment: Experiment,
    out: str | os.PathLike[str],
    seeds: Sequence[int] | None,
    epochs: int | None,
    arm: str = "recipe",
) -> Results:
    """The runs of the experiment's record in the setting ``arm`` (``<out>/<experiment>.json``
    for the recipe, ``<experiment>-paper.json`` for the paper arm) whose seeds are not among
    ``seeds`` (default: the experiment's), per group of runs; a one-line error when there is no
    such file, when its groups differ from the experiment's, when a run's spec is not the one
    the experiment gives its seed now, or for a grid experiment (its figure reads the run
    directories).

    Example:
        >>> import tempfile
        >>> from iteration_heads.experiments import EXPERIMENTS
        >>> earlier_runs(EXPERIMENTS["no-cot"], tempfile.mkdtemp(), [3], None)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: --extend: no earlier results '...no-cot.json'; run without --extend first
    """
    if experiment.figure == "grid":
        raise IterationHeadsError(
            f"--extend: {experiment.name} draws its figure from the run directories of every "
            "seed; rerun it without --extend"
        )
    path = Path(out) / f"{record_stem(experiment.name, arm)}.json"
    if not path.is_file():
        raise IterationHeadsError(
            f"--extend: no earlier results {str(path)!r}; run without --extend first"
        )
    arms: dict[str, list[dict[str, Any]]] = read_json(path).get("arms", {})
    plan = experiment.specs(seeds, epochs, arm)
    if sorted(arms) != sorted(plan):
        raise IterationHeadsError(
            f"--extend: {str(path)!r} has arms {sorted(arms)}; the experiment has {sorted(plan)}"
        )
    wanted = {spec.train.seed for specs in plan.values() for spec in specs}
    kept: Results = {}
    for label, runs in arms.items():
        kept[label] = []
        for run in runs:
            if run["seed"] in wanted:
                continue
            now = experiment.specs([run["seed"]], epochs, arm)[label][0].to_dict()
            if run.get("spec") != json.loads(json.dumps(now)):
                raise IterationHeadsError(
                    f"--extend: {label}, seed {run['seed']} of {str(path)!r} was trained with "
                    "other settings than the experiment gives it now; rerun that seed"
                )
            kept[label].append(RunResult(**run))
    return kept


def merge_runs(results: Results, earlier: Results) -> Results:
    """Each arm's runs of ``results`` and ``earlier`` together, in seed order.

    Example:
        >>> merge_runs({"a": [RunResult(3, {})]}, {"a": [RunResult(0, {})]})["a"][0].seed
        0
    """
    return {
        arm: sorted([*runs, *earlier.get(arm, [])], key=lambda r: r.seed)
        for arm, runs in results.items()
    }
