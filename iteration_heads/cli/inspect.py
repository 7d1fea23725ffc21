"""``iteration-heads eval|detect|report|tasks``: look into a saved model (a directory or a
shipped name): its accuracy and attention metrics, its iteration heads, one HTML report; and the
registered tasks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``eval``, ``detect``, ``report`` and ``tasks`` subcommands and their options."""
    p = sub.add_parser(
        "eval",
        help="per-length accuracy and attention metrics of a saved model",
        description="Per-length accuracy and every head's EoI / iteration metrics of a saved "
        "model (a directory or a shipped name) on its own data.",
    )
    p.add_argument("directory", type=Path, help="model or run directory")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval)

    p = sub.add_parser(
        "detect",
        help="find EoI and iteration heads in a saved model",
        description="Find the EoI and iteration heads of a saved model (a directory or a "
        "shipped name), with the uniform baseline and a verdict.",
    )
    p.add_argument("directory", type=Path, help="model or run directory")
    p.add_argument(
        "--n-probes", type=int, default=None, help="at most this many test probes (default: all)"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also check the circuit causally: ablate it, and as many other heads (verify())",
    )
    p.add_argument(
        "--steps",
        action="store_true",
        help="also show where every head looks at each step: its weight on x_t, and the key it "
        "reads instead (alternative circuits; step_attention())",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_detect)

    p = sub.add_parser(
        "report",
        help="one self-contained HTML report of a saved model or run",
        description="One self-contained HTML page: config, curves, attention, detection and "
        "interventions of a saved model or run (an ontology model: its pathway analyses).",
    )
    p.add_argument("directory", type=Path, help="model or run directory")
    p.add_argument("-o", "--out", type=Path, default=Path("report.html"), help="HTML file")
    p.add_argument(
        "--n-probes", type=int, default=256, help="test sequences for detection and interventions"
    )
    p.add_argument("--task", default=None, help="task to probe (default: the model's own)")
    p.add_argument("--length", type=int, default=None, help="probe length shown (default: Lmax)")
    p.set_defaults(func=run_report)

    p = sub.add_parser("tasks", help="list the registered tasks")
    p.set_defaults(func=run_tasks)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``iteration-heads eval`` with parsed arguments."""
    from iteration_heads.model import data_config, load, model_config
    from iteration_heads.tasks import make_dataset
    from iteration_heads.training import evaluate

    model = load(args.directory)
    dconfig = data_config(model)
    data = make_dataset(dconfig, model_config(model).layout)
    result = evaluate(model, data.test if args.split == "test" else data.train)
    if args.json:
        record = {"task": dconfig.task, "split": args.split, **result.to_dict(per_head=True)}
        print(json.dumps(record))
    else:
        print(result.format(title=f"{args.directory} — task {dconfig.task}, {args.split} split"))
    return 0


def run_detect(args: argparse.Namespace) -> int:
    """Run ``iteration-heads detect`` with parsed arguments."""
    from iteration_heads.detection import Probes, detect, steps_by_head
    from iteration_heads.interventions import verify
    from iteration_heads.model import load

    model = load(args.directory)
    report = detect(model, n_probes=args.n_probes)
    checked = verify(model, report, n=args.n_probes) if args.verify else None
    steps = []
    if args.steps:
        steps = list(steps_by_head(model, Probes.from_model(model, n=args.n_probes)).values())
    if args.json:
        record = json.loads(report.to_json())
        if checked is not None:
            record["verification"] = checked.to_dict()
        if steps:
            record["steps"] = [found.to_dict() for found in steps]
        print(json.dumps(record, indent=2, default=str))
    else:
        print(report.format())
        if checked is not None:
            print()
            print(checked.format())
        for found in steps:
            print()
            print(found.format())
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Run ``iteration-heads report`` with parsed arguments."""
    from iteration_heads._io import write_text
    from iteration_heads.errors import IterationHeadsError
    from iteration_heads.experiments.ontology import ONTOLOGY_EXPERIMENT
    from iteration_heads.experiments.ontology_results import ontology_page
    from iteration_heads.experiments.ontology_study import StudyOptions, study_ontology
    from iteration_heads.model import load, model_metadata
    from iteration_heads.viz import write_report

    _refuse_huggingface(args.directory)
    model = load(args.directory)
    if (model_metadata(model) or {}).get("task") == ONTOLOGY_EXPERIMENT:  # the pathways page
        if args.task is not None or args.length is not None:
            raise IterationHeadsError("--task and --length do not apply to an ontology model")
        if args.n_probes < 8:
            raise IterationHeadsError(f"--n-probes {args.n_probes}, expected an integer >= 8")
        options = StudyOptions(
            n_problems=args.n_probes // 8, n_reference=40, n_random=8, n_traced=10,
            n_probing=max(300, 4 * args.n_probes), n_horizon=max(2, args.n_probes // 16),
        )  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, ontology_page(study_ontology(model, options)))
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, self-contained)")
        return 0
    out = write_report(
        args.directory,
        args.out,
        n_probes=args.n_probes,
        task=args.task,
        length=args.length,
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained)")
    return 0


def _refuse_huggingface(directory: Path) -> None:
    """One line for a HuggingFace checkpoint folder: ``report`` reads library models and runs."""
    from iteration_heads._io import CONFIG_FILE, read_json
    from iteration_heads.errors import IterationHeadsError
    from iteration_heads.model.checkpoint import model_directory

    config = model_directory(directory) / CONFIG_FILE
    if not config.is_file():
        return
    fields = read_json(config)
    if isinstance(fields, dict) and "model_type" in fields and "layout" not in fields:
        raise IterationHeadsError(
            f"{str(directory)!r} is a HuggingFace checkpoint folder; `report` takes library model "
            "folders and runs: use `iteration-heads audit PATH --report FILE` (iteration heads) "
            "or `iteration-heads pathways PATH --report FILE` (pathway analyses) for it"
        )


def run_tasks(args: argparse.Namespace) -> int:
    """Run ``iteration-heads tasks``: one line per registered task."""
    from iteration_heads.tasks import get_task, list_tasks

    for name in list_tasks():
        print(f"{name:<11} {get_task(name).description}")
    return 0
