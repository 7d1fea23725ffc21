"""Bad-input cases: sweep specs (duplicates, huge grids, bytes that are not text, values of the
wrong kind) and the arguments of the sweep's functions and command (see base.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bad_cases.base import Case, api, cli
from iteration_heads.runs.executors import LocalExecutor
from iteration_heads.runs.sweep import SweepSpec, dry_run, run_sweep
from iteration_heads.runs.sweep_results import collect, write_table

AREA = "sweeps"
HUGE = (
    f"[axes]\nseed = {list(range(100))}\n'train.lr' = {[i / 1e4 for i in range(1, 101)]}\n"
    f"'model.d_model' = {list(range(8, 108))}\n"
)


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    (work / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    (work / "binary.toml").write_bytes(bytes(range(256)))
    (work / "huge.toml").write_text(HUGE)
    (work / "dup.toml").write_text("[axes]\nseed = [0, 1, 2, 0]\n")
    (work / "tiny.toml").write_text("[fixed]\n'data.task' = 'copy'\n[axes]\nseed = [0]\n")
    (work / "badrecipe.toml").write_text("recipe = 'authors'\n[axes]\nseed = [0]\n")
    (work / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    (work / "deeptables.toml").write_text("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n")
    (work / "deepaxis.toml").write_text("[axes]\nseed = [" + "[" * 4000 + "]" * 4000 + "]\n")
    (work / "longlen.toml").write_text("[fixed]\n'data.max_len' = 100000\n[axes]\nseed = [0]\n")
    (work / "bigseed.toml").write_text("[axes]\nseed = [18446744073709551616]\n")
    (work / "wide.toml").write_text("[axes]\n'model.d_model' = [16, 1000000]\n")
    namespace.update(
        SweepSpec=SweepSpec,
        dry_run=dry_run,
        run_sweep=run_sweep,
        collect=collect,
        write_table=write_table,
        LocalExecutor=LocalExecutor,
        good_spec=SweepSpec.from_dict({"axes": {"seed": [0]}}),
    )


def _spec(text: str) -> str:
    return f"SweepSpec.from_dict({text}).cells()"


CASES: list[Case] = [
    # specs
    api(AREA, "seed listed twice", _spec("{'axes': {'seed': [0, 1, 2, 0]}}")),
    api(AREA, "value listed twice as int and float", _spec("{'axes': {'train.lr': [0.5, 0.50]}}")),
    api(
        AREA,
        "list value listed twice",
        _spec("{'axes': {'train.trainable': [['embed'], ['embed']]}}"),
    ),
    api(
        AREA,
        "include repeats a grid cell",
        _spec("{'axes': {'seed': [0, 1]}, 'include': [{'seed': 1}]}"),
    ),
    api(AREA, "two identical includes", _spec("{'include': [{'seed': 4}, {'seed': 4}]}")),
    api(
        AREA,
        "two variants that set nothing apart",
        _spec("{'axes': {'seed': [0]}, 'variants': {'a': {}, 'b': {}}}"),
    ),
    api(
        AREA,
        "a million cells",
        _spec(
            "{'axes': {'seed': list(range(1000)), 'train.lr': [i / 1e5 for i in range(1, 1001)]}}"
        ),
    ),
    api(
        AREA,
        "too many cells through variants",
        _spec(
            "{'axes': {'seed': list(range(200))}, 'variants': {str(i): {'train.lr': i / 1e3} "
            "for i in range(1, 101)}}"
        ),
    ),
    api(AREA, "field name that is not a string", _spec("{'axes': {3: [1]}}")),
    api(
        AREA,
        "rule naming a variant by a list",
        _spec("{'variants': {'a': {}}, 'exclude': [{'variant': ['a']}]}"),
    ),
    api(
        AREA,
        "include naming a variant by a number",
        _spec("{'variants': {'a': {}}, 'include': [{'variant': 1}]}"),
    ),
    api(AREA, "name with non-ASCII letters", _spec("{'name': 'café'}")),
    api(AREA, "name that is a number", _spec("{'name': 7}")),
    api(AREA, "axis that is a table", _spec("{'axes': {'seed': {'a': 1}}}")),
    api(AREA, "spec that is a list", "SweepSpec.from_dict([('axes', {})])"),
    api(AREA, "spec file with Latin-1 bytes", "SweepSpec.from_toml('latin1.toml')"),
    api(AREA, "spec file of random bytes", "SweepSpec.from_toml('binary.toml')"),
    api(AREA, "spec file of a million cells", "SweepSpec.from_toml('huge.toml')"),
    api(AREA, "spec file with a duplicate seed", "SweepSpec.from_toml('dup.toml')"),
    # arguments of the functions
    api(AREA, "jobs as a float", "run_sweep(good_spec, 'sweepruns', jobs=1.5)"),
    api(AREA, "jobs as a bool", "run_sweep(good_spec, 'sweepruns', jobs=True)"),
    api(AREA, "no job", "run_sweep(good_spec, 'sweepruns', jobs=0)"),
    api(AREA, "runs per job as a float", "run_sweep(good_spec, 'sweepruns', runs_per_job=2.0)"),
    api(AREA, "no run per job", "run_sweep(good_spec, 'sweepruns', runs_per_job=0)"),
    api(AREA, "batch_seeds as a string", "run_sweep(good_spec, 'sweepruns', batch_seeds='yes')"),
    api(AREA, "retry_failed as a number", "run_sweep(good_spec, 'sweepruns', retry_failed=1)"),
    api(AREA, "spec as a dict", "run_sweep({'axes': {'seed': [0]}}, 'sweepruns')"),
    api(AREA, "runs folder as a number", "run_sweep(good_spec, 3)"),
    api(AREA, "executor of the wrong type", "run_sweep(good_spec, 'sweepruns', executor='local')"),
    api(AREA, "dry run with no slot", "dry_run(good_spec, 'sweepruns', slots=0)"),
    api(AREA, "dry run with a float of slots", "dry_run(good_spec, 'sweepruns', slots=2.0)"),
    api(AREA, "dry run estimate as a string", "dry_run(good_spec, 'sweepruns', estimate='no')"),
    api(AREA, "collect with a runs folder of None", "collect(good_spec, None)"),
    api(AREA, "table into an output of None", "write_table(good_spec, 'sweepruns', None)"),
    api(AREA, "local executor with a float of jobs", "LocalExecutor(jobs=2.0)"),
    api(AREA, "local executor with a bool of threads", "LocalExecutor(threads_per_run=True)"),
    # the command
    cli(AREA, "spec with Latin-1 bytes", "sweep latin1.toml --dry-run"),
    cli(AREA, "spec of random bytes", "sweep binary.toml --dry-run"),
    cli(AREA, "dry run of a million cells", "sweep huge.toml --dry-run --runs sweepruns"),
    cli(AREA, "duplicate seed", "sweep dup.toml --runs sweepruns --out sweepout"),
    cli(AREA, "jobs as a float", "sweep tiny.toml --jobs 1.5 --runs sweepruns"),
    cli(AREA, "no job", "sweep tiny.toml --jobs 0 --runs sweepruns"),
    cli(AREA, "runs per job of zero", "sweep tiny.toml --runs-per-job 0 --runs sweepruns"),
    cli(AREA, "threads per run as a float", "sweep tiny.toml --threads-per-run 1.5"),
    cli(AREA, "memory of NaN", "sweep tiny.toml --executor slurm --mem-gb nan --runs sweepruns"),
    cli(AREA, "negative memory", "sweep tiny.toml --executor slurm --mem-gb -4 --runs sweepruns"),
    cli(AREA, "infinite GPUs per run", "sweep tiny.toml --executor ray --gpus-per-run inf"),
    cli(AREA, "time limit of zero", "sweep tiny.toml --executor slurm --time-min 0"),
    # the recipe a spec starts from
    api(AREA, "recipe in capitals", "SweepSpec.from_dict({'recipe': 'Paper'})"),
    api(AREA, "recipe with a trailing space", "SweepSpec.from_dict({'recipe': 'library '})"),
    api(AREA, "empty recipe", "SweepSpec.from_dict({'recipe': ''})"),
    api(AREA, "recipe as a number", "SweepSpec.from_dict({'recipe': 1})"),
    api(AREA, "recipe as a bool", "SweepSpec.from_dict({'recipe': True})"),
    api(AREA, "recipe as a list", "SweepSpec.from_dict({'recipe': ['paper']})"),
    api(AREA, "recipe as a table", "SweepSpec.from_dict({'recipe': {'model.n_heads': 2}})"),
    api(AREA, "unknown recipe on a built spec", "SweepSpec(recipe='authors').cells()"),
    api(AREA, "library recipe with an odd width", _spec("{'axes': {'model.d_model': [15]}}")),
    cli(
        AREA, "spec file with an unknown recipe", "sweep badrecipe.toml --dry-run --runs sweepruns"
    ),
    # a dry run checks what the real run checks before training
    cli(AREA, "spec nested 5000 arrays deep", "sweep deep.toml --dry-run --runs sweepruns"),
    cli(AREA, "spec nested 3000 tables deep", "sweep deeptables.toml --dry-run --runs sweepruns"),
    cli(AREA, "axis value nested 4000 deep", "sweep deepaxis.toml --dry-run --runs sweepruns"),
    cli(AREA, "dry run of a cell too long to fit", "sweep longlen.toml --dry-run --runs sweepruns"),
    cli(AREA, "dry run of a seed past 2**64", "sweep bigseed.toml --dry-run --runs sweepruns"),
    cli(AREA, "dry run of one cell too wide", "sweep wide.toml --dry-run --runs sweepruns"),
    cli(AREA, "dry run with zero threads per run", "sweep tiny.toml --dry-run --threads-per-run 0"),
    cli(AREA, "dry run with negative threads", "sweep tiny.toml --dry-run --threads-per-run -2"),
    cli(
        AREA,
        "dry run with more threads than cores",
        "sweep tiny.toml --dry-run --jobs 2 --threads-per-run 4096",
    ),
    cli(AREA, "dry run with more jobs than cores", "sweep tiny.toml --dry-run --jobs 100000"),
    cli(AREA, "dry run with memory of NaN", "sweep tiny.toml --dry-run --mem-gb nan"),
    cli(
        AREA,
        "dry run on SLURM with memory of NaN",
        "sweep tiny.toml --dry-run --executor slurm --mem-gb nan",
    ),
    cli(AREA, "dry run with zero memory", "sweep tiny.toml --dry-run --executor slurm --mem-gb 0"),
    cli(AREA, "dry run with negative GPUs", "sweep tiny.toml --dry-run --gpus-per-run -1"),
    cli(
        AREA, "dry run with NaN GPUs", "sweep tiny.toml --dry-run --executor ray --gpus-per-run nan"
    ),
    cli(
        AREA,
        "dry run with half a GPU on SLURM",
        "sweep tiny.toml --dry-run --executor slurm --gpus-per-run 0.5",
    ),
    cli(
        AREA,
        "dry run with a GPU on the local executor",
        "sweep tiny.toml --dry-run --gpus-per-run 1",
    ),
    cli(AREA, "dry run with a time limit of zero", "sweep tiny.toml --dry-run --time-min 0"),
    cli(
        AREA,
        "dry run with a negative time limit",
        "sweep tiny.toml --dry-run --executor slurm --time-min -5",
    ),
    cli(AREA, "dry run with zero runs per job", "sweep tiny.toml --dry-run --runs-per-job 0"),
    cli(
        AREA,
        "dry run with a partition on the local executor",
        "sweep tiny.toml --dry-run --partition gpu",
    ),
    cli(
        AREA,
        "dry run with a Ray address on the local executor",
        "sweep tiny.toml --dry-run --ray-address localhost:6379",
    ),
    api(
        AREA,
        "dry run of a cell too long to fit",
        "dry_run(SweepSpec.from_dict({'fixed': {'data.max_len': 100000}}), 'sweepruns')",
    ),
    api(
        AREA,
        "dry run of a dataset too large to fit",
        "dry_run(SweepSpec.from_dict({'fixed': {'data.n_train': 10**12}}), 'sweepruns')",
    ),
    api(AREA, "dry run with local as a string", "dry_run(good_spec, 'sweepruns', local='yes')"),
    api(
        AREA,
        "sweep of a cell too long to fit, before any trains",
        "run_sweep(SweepSpec.from_dict({'fixed': {'data.max_len': 100000}}), 'sweepruns')",
    ),
    api(
        AREA,
        "sweep of one cell too wide among small ones, before any trains",
        "run_sweep(SweepSpec.from_dict({'axes': {'model.d_model': [16, 10**6]}}), 'sweepruns')",
    ),
]
