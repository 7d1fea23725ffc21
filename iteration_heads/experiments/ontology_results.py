"""Dutta et al.'s findings on Llama-2 7B, claim by claim, measured on a model of the ontology
task; ``iteration-heads reproduce ontology`` writes them (``docs/results/ontology.*``).

Each claim says what Dutta et al. report, what this model shows and whether the finding carries
over (``yes``, ``partly`` or ``no``, with why). The page ``ontology.html`` holds every figure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import plotly.graph_objects as go
import torch

from iteration_heads._io import WEIGHTS_FILE, read_json, versions, write_json, write_text
from iteration_heads._results import plain
from iteration_heads._torch import head_names
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.ontology import train_ontology
from iteration_heads.experiments.ontology_probing_claims import horizon_claim, probing_claim
from iteration_heads.experiments.ontology_study import (
    STUDIED_SUBTASKS,
    OntologyStudy,
    StudyOptions,
    study_ontology,
)
from iteration_heads.model.checkpoint import load
from iteration_heads.viz.page import HtmlPage, write_shared_plotly
from iteration_heads.viz.pathway_circuits import head_patching_heatmap, pruning_chart
from iteration_heads.viz.pathway_flow import flow_graph_chart, segment_chart
from iteration_heads.viz.pathway_layers import (
    horizon_chart,
    logit_lens_chart,
    relation_probes_chart,
    writers_chart,
)

Claim = dict[str, str]


def _claim(text: str, paper: str, ours: str, holds: str, why: str = "") -> Claim:
    return {"claim": text, "paper": paper, "ours": ours, "holds": holds, "why": why}


def _second_half(layers: list[int], n_layers: int) -> float:
    return sum(layer >= n_layers / 2 for layer in layers) / max(len(layers), 1)


def ontology_claims(study: OntologyStudy) -> list[Claim]:
    """The claims of Dutta et al. and what ``study`` measured for each.

    Example:
        >>> from iteration_heads import zoo
        >>> from iteration_heads.experiments.ontology_study import StudyOptions, study_ontology
        >>> study = study_ontology(zoo.load("ontology"), StudyOptions(
        ...     n_problems=2, n_reference=4, n_random=1, n_traced=1, n_probing=0, n_horizon=0))
        >>> [c["holds"] in ("yes", "partly", "no") for c in ontology_claims(study)][:2]
        [True, True]
    """
    n_layers, n_heads = study.n_layers, study.n_heads
    total = n_layers * n_heads
    claims = []
    fictional = study.evaluations["fictional"]
    per_hop = fictional.per_hop()
    hops = ", ".join(f"{h} hops {v:.3f}" for h, v in per_hop.items())
    multi = [v for h, v in per_hop.items() if h >= 2]
    claims.append(_claim(
        "the model answers multi-hop questions over new ontologies (exact match of the chain of "
        "thought, held-out fictional ontologies)",
        "Llama-2 7B, 6-shot CoT: about 36 % on fictional ontologies; the analyses keep the "
        "questions it answers",
        hops + " (" + ", ".join(f"{k} {v.summary()['accuracy']:.3f}"
                               for k, v in study.evaluations.items()) + ")",
        "yes" if multi and min(multi) >= 0.95 else "no",
        "trained from scratch on the task, where Llama-2 is prompted",
    ))  # fmt: skip

    writers = study.writers.writers()
    late = _second_half([layer for layer, _ in writers], n_layers)
    dla = study.writers.dla["all"].clamp(min=0).sum(1)
    mass = float(dla[n_layers // 2 :].sum() / dla.sum())
    claims.append(_claim(
        "answer-writing heads sit in the second half of the network",
        "≥ 97 % of the traced writer heads at layer ≥ 16 of 32; none below layer 11",
        f"{late:.0%} of the {len(writers)} heads that write 80 % of the answer's direct logit "
        f"attribution are in layers ≥ {n_layers // 2} of {n_layers}; "
        f"{mass:.0%} of the positive attribution",
        "yes" if late >= 0.75 else "partly" if late >= 0.5 else "no",
    ))  # fmt: skip

    by_patching = study.pruning["patching"].smallest_circuit()
    by_ablation = study.pruning["ablation"].smallest_circuit()

    def size(found: tuple[int, list] | None, curve: Any) -> str:
        if found is None:
            return "no k reaches 0.9"
        k = found[0]
        index = list(curve.ks).index(k)
        return f"{k}/{total} heads (random {k}: {float(curve.random_mean[index]):.2f})"

    beats = by_ablation is not None and by_ablation[0] < total and float(
        study.pruning["ablation"].random_mean[list(study.pruning["ablation"].ks).index(
            by_ablation[0])]) < 0.9  # fmt: skip
    claims.append(_claim(
        "a circuit of part of the heads keeps 90 % agreement with the full model (the rest "
        "mean-ablated over false-ontology prompts)",
        "about 360-550 of 1,024 heads (35-54 %), heads ranked by patching score",
        f"ranked by patching score: {size(by_patching, study.pruning['patching'])}; ranked by "
        f"single-head ablation: {size(by_ablation, study.pruning['ablation'])}",
        "partly" if beats else "no",
        "the patching score ranks the heads that carry the corrupted name, not those every step "
        "needs (layer-0/1 heads whose mean ablation breaks the prompt's structure), so its "
        "circuit is almost the whole model; ranked by ablation damage, a circuit beats random "
        "heads of the same size",
    ))  # fmt: skip

    rift = study.lens.rift("copy") if "copy" in study.lens.labels else study.lens.rift()
    curve = study.lens.curves("copy" if "copy" in study.lens.labels else "all")
    peak = curve.loc[curve["prior_prob"].idxmax()] if "prior_prob" in curve else None
    peak_text = (
        f"; the world's token peaks at {peak['boundary']} (p {peak['prior_prob']:.2f} against "
        f"{peak['answer_prob']:.2f} for the in-context one)"
        if peak is not None
        else ""
    )
    middle = rift.layer is not None and 0 < rift.layer < len(study.lens.boundaries) - 1
    claims.append(_claim(
        "functional rift: the residual stream first follows the prior in the weights, the "
        "in-context answer takes over in the middle of the network (contradicting questions)",
        "around block 16 of 32, for every subtask (logit lens)",
        f"copy steps contradicting the world: {rift.format()}{peak_text}"
        + (
            f"; induction steps: {study.lens.rift('induction').format()}"
            if "induction" in study.lens.labels
            else ""
        ),
        "yes" if middle else "no",
        "a 4-layer model has 5 boundaries: 'the middle' is boundary 2-3",
    ))  # fmt: skip

    prior = study.prior_check
    claims.append(_claim(
        "(ours) the heads that write the in-context answer are what overrides the prior: "
        "ablating them makes the model answer with the world's token",
        "no causal test of the rift",
        prior.format(),
        "yes" if prior.ablated > max(prior.random) else "no",
    ))  # fmt: skip

    table = study.pathways["answer"].to_frame()
    shares = []
    for label in STUDIED_SUBTASKS:
        rows = table[(table["label"] == label) & ~table["cut"].str.contains("+", regex=False)]
        if len(rows):
            parts = ", ".join(
                f"{c} {s:.2f}" for c, s in zip(rows["cut"], rows["share"], strict=True)
            )
            shares.append(f"{label}: {parts}")
    claims.append(_claim(
        "parallel pathways: the answer comes both from the question context and from the "
        "generated chain of thought",
        "subtasks whose answer also occurs in the CoT have pathways from the CoT alongside "
        "pathways from the question",
        "share of the answer logit lost when the answer position cannot attend to a segment: "
        + "; ".join(shares),
        "partly",
        "copies read the facts and the chain of thought (the subject just written); induction "
        "reads only the chain of thought, decisions mostly it",
    ))  # fmt: skip

    tops = {label: set(study.patching.top(3, label)) for label in STUDIED_SUBTASKS
            if label in study.patching.groups}  # fmt: skip
    common = set.intersection(*tops.values()) if tops else set()
    claims.append(_claim(
        "different subtasks share the same heads",
        "the same writer heads recur across subtasks (1&3, 2&4&8, 5&9)",
        "top-3 patching heads: " + "; ".join(
            f"{k} {sorted(v)}" for k, v in tops.items()) + f"; shared by all: {sorted(common)}",
        "yes" if common else "partly",
    ))  # fmt: skip

    upstream = [e.source.layer for g in study.flow.graphs for e in g.edges
                if e.depth >= 1 and e.source.role == "head"]  # fmt: skip
    early = 1 - _second_half(upstream, n_layers)
    claims.append(_claim(
        "the heads that move information between related tokens, upstream of the writers, sit "
        "in the first half",
        "depth-1 traced heads: 52 % in layers 0-15; depth ≥ 3: 99 %",
        f"{early:.0%} of the {len(upstream)} upstream head occurrences in "
        f"{len(study.flow.graphs)} traced predictions are in layers < {n_layers // 2}",
        "yes" if early >= 0.5 else "no",
    ))  # fmt: skip

    noising = {name.split(", ")[-1]: check for name, check in study.checks.items()
               if name.startswith("noising: ")}  # fmt: skip
    if noising:
        broken = [label for label, check in noising.items() if check.breaks_more_than_every]
        claims.append(_claim(
            "(ours) the heads that head patching names for a subtask carry it: fed the corrupted "
            "prompt (noising), they break that subtask more than as many random heads",
            "no random control",
            "; ".join(
                f"{label}: {head_names(c.heads)} noised, accuracy {c.accuracy:.3f} against "
                f"{float(c.random_accuracy.mean()):.3f} (min {float(c.random_accuracy.min()):.3f})"
                f" for {len(c.random_accuracy)} random sets"
                for label, c in noising.items()
            ),
            "yes" if len(broken) == len(noising) else "partly" if broken else "no",
            "" if len(broken) == len(noising) else
            f"more than every random set for {', '.join(broken) or 'no subtask'}",
        ))  # fmt: skip

    ablated, noised = study.checks.get("answer writers"), study.checks.get("noised answer writers")
    if ablated is not None and noised is not None:
        claims.append(_claim(
            "(ours) the top answer writers are needed: knocking them out breaks the answers more "
            "than knocking out as many random heads",
            "no random control",
            f"{ablated.format().splitlines()[0]}; {noised.format().splitlines()[0]}",
            "yes" if ablated.breaks_more_than_every and noised.breaks_more_than_every
            else "partly" if noised.breaks_more_than_every else "no",
            "" if ablated.breaks_more_than_every else
            "fed the corrupted prompt they break the answer; mean-ablated they do not: the other "
            "writers still write it (parallel pathways), while random sets hit the layer-0/1 heads "
            "every step needs",
        ))  # fmt: skip
    if study.probes:
        claims.append(probing_claim(study))
    if study.horizon is not None:
        claims.append(horizon_claim(study))
    return claims


def _markdown(record: dict[str, Any]) -> str:
    lines = [
        "# ontology: Dutta et al.'s analyses on a 4-layer model",
        "",
        f"Command: `{record['command']}`. Model: {record['model']}. "
        f"Training: {record['train_seconds']:.0f} s; analyses: {record['study_seconds']:.0f} s.",
        "",
        "| claim | Dutta et al. (Llama-2 7B) | ours | holds? |",
        "|---|---|---|---|",
    ]
    for c in record["claims"]:
        why = f": {c['why']}" if c["why"] else ""
        lines.append(f"| {c['claim']} | {c['paper']} | {c['ours']} | **{c['holds']}**{why} |")
    lines += [
        "",
        "Figures: [ontology.html](ontology.html); every number: [ontology.json](ontology.json).",
    ]
    return "\n".join(lines) + "\n"


def write_ontology_results(
    study: OntologyStudy, out: str | os.PathLike[str], *, command: str, train_seconds: float,
    study_seconds: float, model_name: str = "ontology",
) -> dict[str, Any]:  # fmt: skip
    """Write ``ontology.json``, ``ontology.md`` and ``ontology.html`` into ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    claims = ontology_claims(study)
    record = {
        "experiment": "ontology",
        "command": command,
        "model": model_name,
        "seeds": [0],
        "train_seconds": train_seconds,
        "study_seconds": round(study_seconds, 1),
        "arms": {"ontology": [{"wall_seconds": train_seconds + study_seconds}]},
        "run_seconds_one_thread": train_seconds + study_seconds,
        "versions": versions(),
        "claims": claims,
        "study": plain(study.to_dict()),
    }
    write_json(folder / "ontology.json", record)
    write_text(folder / "ontology.md", _markdown(record))
    write_text(folder / "ontology.html", ontology_page(study, claims, plotly="directory"))
    write_shared_plotly(folder)  # the page's script, shared with the others
    return record


def ontology_page(
    study: OntologyStudy,
    claims: list[Claim] | None = None,
    *,
    plotly: Literal["inline", "directory"] = "inline",
) -> str:
    """One offline HTML page: the claims, then every figure of the study (plotly.js inlined,
    or read from ``plotly.min.js`` next to the page with ``plotly="directory"``)."""
    page = HtmlPage("ontology: pathways of multi-hop reasoning", plotly=plotly)
    page.add("<h1>Pathways of multi-hop reasoning (Dutta et al.'s analyses)</h1>")
    rows = "".join(
        f"<tr><td>{c['claim']}</td><td>{c['paper']}</td><td>{c['ours']}</td>"
        f"<td><b>{c['holds']}</b> {c['why']}</td></tr>"
        for c in claims or ontology_claims(study)
    )
    page.add("<table><tr><th>claim</th><th>Dutta et al.</th><th>ours</th><th>holds?</th></tr>"
             f"{rows}</table>")  # fmt: skip
    names = list(study.token_names)
    label = "copy" if "copy" in study.lens.labels else "all"
    figures: list[tuple[str, Callable[[], go.Figure]]] = [
        ("Head patching per subtask", lambda: head_patching_heatmap(study.patching)),
        *(
            (f"Pruning curve (heads ranked by {name})", partial(pruning_chart, curve))
            for name, curve in study.pruning.items()
        ),
        ("Answer writers", lambda: writers_chart(study.writers)),
        (
            "Logit lens on contradicting questions",
            lambda: logit_lens_chart(study.lens, label=label),
        ),
        ("Segment knockouts", lambda: segment_chart(study.pathways["answer"])),
        *(
            (f"Relation probes ({name})", partial(relation_probes_chart, probes))
            for name, probes in study.probes.items()
        ),
    ]
    if study.horizon is not None:
        figures.append(("Horizon", partial(horizon_chart, study.horizon)))
    figures.append(
        ("A traced information flow", lambda: flow_graph_chart(study.example, names=names))
    )
    for title, make in figures:
        page.section(title, partial(_add_figure, page, make))
    return page.html()


def _add_figure(page: HtmlPage, make: Callable[[], go.Figure]) -> None:
    page.figure(make())


def reproduce_ontology(
    runs: str | os.PathLike[str] = "runs/reproduce",
    out: str | os.PathLike[str] = "docs/results",
    *,
    options: StudyOptions | None = None,
    command: str = "iteration-heads reproduce ontology",
    log: Any = print,
) -> dict[str, Any]:
    """Train the ontology model (or reuse / resume ``runs/ontology``), run the study and write
    its results into ``out``.

    Example:
        >>> reproduce_ontology(runs="README.md")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: runs='README.md' is a file; expected a folder
    """
    if Path(runs).exists() and not Path(runs).is_dir():
        raise IterationHeadsError(f"runs={str(runs)!r} is a file; expected a folder")
    run = Path(runs) / "ontology"
    if not (run / WEIGHTS_FILE).is_file():
        log(f"training the ontology model into {run}")
        train_ontology(run, resume=run.is_dir(), progress=False)
    history = read_json(run / "metadata.json")["summary"]
    model = load(run)
    tick = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        study = study_ontology(model, options)
    elapsed = time.perf_counter() - tick
    record = write_ontology_results(
        study, out, command=command, train_seconds=float(history.get("train_seconds", 0.0)),
        study_seconds=elapsed,
    )  # fmt: skip
    log(f"wrote {Path(out) / 'ontology'}.{{json,md,html}}")
    return record
