"""``docs/results.md``: every claim of the paper judged on its paper arm, with what the library's
recipe changes beside it; Dutta et al.'s multi-hop claims; the commands and their time; the sweeps.

Each experiment writes one record per setting (:data:`~iteration_heads.experiments.claims.ARMS`)
into ``docs/results/``: ``<experiment>.json`` for the recipe arm, ``<experiment>-paper.json``
for the paper arm and ``<experiment>-authors.json`` for the authors' arm (:func:`record_stem`).
A claim whose paper or recipe arm has not been run yet says so, with the command that runs it;
the authors' arm is listed with the commands.

Example:
    >>> record_stem("no-cot", "paper"), record_stem("no-cot", "recipe")
    ('no-cot-paper', 'no-cot')
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from iteration_heads._io import read_json, write_text
from iteration_heads.experiments.claims import check_arm
from iteration_heads.experiments.ontology import ONTOLOGY_EXPERIMENT
from iteration_heads.experiments.registry import EXPERIMENTS
from iteration_heads.training.loop import TrainConfig
from iteration_heads.training.recipe import (
    RECIPE_HEADS_PER_LAYER,
    RECIPE_LR,
    RECIPE_WARMUP_STEPS,
)


def record_stem(experiment: str, arm: str) -> str:
    """The file stem of an experiment's record in the setting ``arm``: the experiment's name for
    the recipe arm (the records written before there were several arms keep their names), with
    ``-paper`` or ``-authors`` for the others."""
    return experiment if check_arm(arm) == "recipe" else f"{experiment}-{arm}"


def two_core_minutes(record: dict[str, Any]) -> float:
    """Estimated minutes on 2 cores with ``--jobs 2``: half the one-thread total, or the longest
    run if that is longer.

    Example:
        >>> two_core_minutes({"arms": {"a": [{"wall_seconds": 600}, {"wall_seconds": 60}]}})
        10.0
    """
    seconds = [r["wall_seconds"] for rs in record["arms"].values() for r in rs]
    return round(max(sum(seconds) / 2, max(seconds)) / 60, 1)


def setting(record: dict[str, Any]) -> str:
    """The model and optimiser an experiment's from-scratch runs used, read from their specs:
    the library's recipe or the paper's settings (``—`` when the record has no run specs).

    Example:
        >>> from iteration_heads.runs.specs import paper_spec, polynomial_spec
        >>> def record(spec):
        ...     return {"arms": {"a": [{"spec": spec.to_dict()}]}}
        >>> setting(record(polynomial_spec(0))), setting(record(paper_spec(0)))
        ('2 × 2, Adam 1e-3, warm-up 200 (the recipe)', "2 × 1, Adam 3e-4 (the paper's)")
        >>> from iteration_heads.runs.specs import authors_setting
        >>> setting(record(authors_setting(polynomial_spec(0))))
        "2 × 1, Adam 3e-4 (the authors' code)"
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
    paper = (train["lr"], warmup) == (TrainConfig.lr, 0)
    authors = paper and model.get("residual") == "authors" and model.get("weight_init") == "authors"
    label = (" (the recipe)" if recipe else " (the authors' code)" if authors
             else " (the paper's)" if paper else "")  # fmt: skip
    return f"{heads}, {optimiser}{label}"


def write_summary(out: Path) -> Path:
    """Rewrite ``docs/results.md`` (next to ``out``) from every record in ``out``: the paper's
    claims judged on the paper arm, with the recipe arm beside them; Dutta et al.'s multi-hop
    claims; the commands; the sweeps."""

    def record(name: str, arm: str) -> dict[str, Any] | None:
        path = out / f"{record_stem(name, arm)}.json"
        return read_json(path) if path.is_file() else None

    lines = [
        "# Reproduction results",
        "",
        "Every row comes from `iteration-heads reproduce EXPERIMENT` ([the paper](paper.md) §7), "
        "which trains each experiment in two arms over the same seeds: the **paper arm**, the "
        "paper's model and optimiser as the authors ran them (one head per layer, Adam 3e-4, no "
        "warm-up, the whole epoch budget), and the **recipe arm**, the library's recipe (two heads "
        "per layer, Adam 1e-3 with a 200-step warm-up, stopping at target; [training guide]"
        "(guide/training.md)). Whether a claim holds is judged on the paper arm; the last columns "
        "say what the recipe changes. The per-run tables, JSON and curves are in "
        "`docs/results/` (`<experiment>-paper.*` for the paper arm). Paper column: what the "
        "paper states or what the authors' code measured on this kind of machine. Values are mean "
        "± standard deviation (min–max) over seeds. Where runs solve the task without a clean "
        "iteration head, [where alternative circuits occur]"
        "(guide/training.md#where-alternative-circuits-occur) shows where each head looks.",
        "",
        "| claim | paper | paper arm | holds? | recipe arm | with the recipe |",
        "|---|---|---|---|---|---|",
    ]
    records = []
    for name in EXPERIMENTS:
        paper, recipe = record(name, "paper"), record(name, "recipe")
        records += [r for r in (paper, recipe, record(name, "authors")) if r is not None]
        if paper is None and recipe is None:
            continue
        by_text = {arm: {c["claim"]: c for c in r["claims"]} for arm, r in
                   (("paper", paper), ("recipe", recipe)) if r is not None}  # fmt: skip
        for claim in (paper or recipe or {})["claims"]:
            ours = by_text.get("recipe", {}).get(claim["claim"])
            theirs = by_text.get("paper", {}).get(claim["claim"])
            lines.append(
                f"| {claim['claim']} | {claim['paper']} | "
                + (f"{theirs['ours']} | {verdict(theirs)} | " if theirs else
                   f"not run yet: `iteration-heads reproduce {name} --arm paper` | — | ")
                + (f"{ours['ours']} | {recipe_change(theirs, ours)} |" if ours else
                   f"not run yet: `iteration-heads reproduce {name} --arm recipe` | — |")
            )  # fmt: skip
    study = out / f"{ONTOLOGY_EXPERIMENT}.json"
    if study.is_file():  # Dutta et al. (Llama-2 7B) and the model trained here, one arm
        records.append(read_json(study))
        lines += [
            "",
            "## Multi-hop reasoning (Dutta et al.)",
            "",
            "`iteration-heads reproduce ontology` trains a 4-layer model on the multi-hop "
            "ontology task and runs Dutta et al.'s analyses on it; their column reports Llama-2 7B.",
            "",
            "| claim | Dutta et al. | ours | holds? |",
            "|---|---|---|---|",
        ]
        lines += [f"| {c['claim']} | {c['paper']} | {c['ours']} | {verdict(c)} |"
                  for c in records[-1]["claims"]]  # fmt: skip
    lines += [
        "",
        "## Commands and time on 2 CPU cores",
        "",
        "| experiment | arm | setting | command | seeds | one-thread training time | on 2 cores "
        "(--jobs 2) | details |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        arm = r.get("arm", "—" if r["experiment"] == ONTOLOGY_EXPERIMENT else "recipe")
        stem = r["experiment"] if arm == "—" else record_stem(r["experiment"], arm)
        lines.append(
            f"| {r['experiment']} | {arm} | {setting(r)} | `{r['command']}` | "
            f"{', '.join(map(str, r['seeds']))} | {r['run_seconds_one_thread'] / 60:.1f} min | "
            f"≈ {two_core_minutes(r)} min | [table](results/{stem}.md), "
            f"[curves](results/{stem}.html), [json](results/{stem}.json) |"
        )
    lines += [
        "",
        "With `--jobs 2` two runs train at once (one thread each): the time on 2 cores is about "
        "half the one-thread total, or the longest run. Times were measured while other jobs "
        "shared the machine, so they are upper bounds. The time of `transfer` includes the "
        "`emergence` runs it fine-tunes (shared with `emergence` and `positional`), that of "
        "`parity-16` the `paper-size` runs it fine-tunes. Runs are "
        "cached in `runs/reproduce/`: re-running a command reuses finished runs and resumes "
        "interrupted ones.",
    ]
    lines += out_of_sample_section(out)
    lines += sweep_section(out)
    path = out.parent / "results.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def verdict(claim: dict[str, Any]) -> str:
    """A claim's verdict in bold, and why where it has a reason.

    Example:
        >>> verdict({"holds": "partly", "why": "seed 1 did not learn"})
        '**partly**: seed 1 did not learn'
    """
    return f"**{claim['holds']}**" + (f": {claim['why']}" if claim["why"] else "")


def recipe_change(paper: dict[str, Any] | None, recipe: dict[str, Any]) -> str:
    """What the recipe arm says of a claim beside the paper arm: the same verdict, or the
    recipe's verdict where it differs (with its reason).

    Example:
        >>> recipe_change({"holds": "yes", "why": ""}, {"holds": "yes", "why": ""})
        'same verdict (**yes**)'
        >>> recipe_change({"holds": "no", "why": ""}, {"holds": "partly", "why": "3/5 seeds"})
        'changes the verdict: **partly**: 3/5 seeds'
    """
    if paper is None:
        return verdict(recipe)
    if paper["holds"] == recipe["holds"]:
        return f"same verdict (**{recipe['holds']}**)" + (
            f": {recipe['why']}" if recipe["why"] and recipe["why"] != paper["why"] else ""
        )
    return "changes the verdict: " + verdict(recipe)


OUT_OF_SAMPLE = "out-of-sample"
"""The sweep of the recipe on seeds its search never used (examples/sweeps/out-of-sample.toml)."""


def out_of_sample_section(out: Path) -> list[str]:
    r"""The lines saying how often and when the recipe forms the head on seeds its search never
    used, read from ``<out>/out-of-sample.csv`` (the sweep's table); none without it.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "out-of-sample.csv").write_text(
        ...     "seed,outcome,first_epoch_target\n101,head,40\n202,head,20\n303,not learned,\n")
        >>> print("\n".join(out_of_sample_section(folder)[2:]))
        The recipe on 3 seeds its search never used (101, 202, 303; d 64, Lmax 8, at most 100 epochs, `iteration-heads sweep examples/sweeps/out-of-sample.toml --jobs 2 --out docs/results`, [table](results/out-of-sample.md)): accuracy ≥ 0.99 with layer-2 iteration peakiness ≥ 0.9 on 2 of 3, first at epochs 20, 40 (median 30).
    """
    path = out / f"{OUT_OF_SAMPLE}.csv"
    if not path.is_file():
        return []
    with path.open() as table:
        rows = list(csv.DictReader(table))
    if not rows:
        return []
    epochs = sorted(int(float(r["first_epoch_target"])) for r in rows if r["first_epoch_target"])
    when = (f", first at epochs {', '.join(map(str, epochs))} "
            f"(median {statistics.median(epochs):g})" if epochs else "")  # fmt: skip
    return [
        "",
        "## Out of sample",
        "",
        f"The recipe on {len(rows)} seeds its search never used "
        f"({', '.join(r['seed'] for r in rows)}; d 64, Lmax 8, at most 100 epochs, "
        f"`iteration-heads sweep examples/sweeps/{OUT_OF_SAMPLE}.toml --jobs 2 --out docs/results`"
        f", [table](results/{OUT_OF_SAMPLE}.md)): accuracy ≥ 0.99 with layer-2 iteration "
        f"peakiness ≥ 0.9 on {len(epochs)} of {len(rows)}{when}.",
    ]


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
