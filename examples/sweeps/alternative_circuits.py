"""Write the pages that show alternative circuits: where every head looks, step by step, with
each run's attention maps.

    python examples/sweeps/alternative_circuits.py             # the recipe search's runs
    python examples/sweeps/alternative_circuits.py low-width   # the narrow models' runs
    python examples/sweeps/alternative_circuits.py scaling     # the scaling grid's runs

The first writes docs/results/alternative-circuits.{md,html} from runs of the recipe search that
did not form a clean iteration head (run recipe-search-2/3/4.toml with --runs runs/sweeps
first). The second writes docs/results/alternative-circuits-low-width.{md,html} from every run of
examples/sweeps/low-width.toml that solved the task without the head, next to the first run of
each width that formed it (run that sweep with --runs runs/sweeps first). The third writes
docs/results/alternative-circuits-scaling.{md,html} from every run of the scaling grid that solved
the task without the head (run `iteration-heads reproduce scaling` first).
"""

import sys
from pathlib import Path

from iteration_heads.experiments.alternative_circuits import write_alternative_circuits
from iteration_heads.experiments.scaling import SCALING
from iteration_heads.runs.sweep import SweepSpec, cell_spec
from iteration_heads.runs.sweep_results import collect

SWEEPS = Path(__file__).parent
RUNS_ROOT = "runs/sweeps"
AUTHORS_BLOCK = "authors' block (renormalised, no biases)"
RECIPE_SEARCH_RUNS = [  # (sweep, variant, seed)
    ("recipe-search-2", "batch 64", 1),
    ("recipe-search-2", "small embeddings (TL init)", 2),
    ("recipe-search-2", "no embedding dropout", 2),
    ("recipe-search-3", AUTHORS_BLOCK, 1),
    ("recipe-search-3", AUTHORS_BLOCK, 3),
    ("recipe-search-3", "d 128", 2),
    ("recipe-search-4", "2 heads per layer (d_head 32)", 1),
]


def run_directory(sweep: str, variant: str, seed: int) -> Path:
    """The run directory of one cell of a sweep spec in this folder."""
    spec = SweepSpec.from_toml(SWEEPS / f"{sweep}.toml")
    settings = next(s for s in spec.settings() if s["variant"] == variant and s["seed"] == seed)
    return cell_spec(settings, spec.recipe).directory(RUNS_ROOT)


def recipe_search() -> None:
    """The runs of the recipe search without a clean iteration head."""
    write_alternative_circuits(
        [run_directory(*run) for run in RECIPE_SEARCH_RUNS],
        "docs/results",
        command="python examples/sweeps/alternative_circuits.py",
        labels=[f"{variant}, seed {seed} ({sweep})" for sweep, variant, seed in RECIPE_SEARCH_RUNS],
    )


def low_width() -> None:
    """Every low-width run that solved the task without the head, and for each width the first
    run that formed it, for contrast."""
    spec = SweepSpec.from_toml(SWEEPS / "low-width.toml")
    table = collect(spec, RUNS_ROOT)
    table = table[table.status == "done"]
    chosen = table[table.outcome == "alternative circuit"]
    contrast = table[table.outcome == "head"].groupby("model.d_model").head(1)
    rows = [*chosen.itertuples(index=False), *contrast.itertuples(index=False)]
    by_name = {cell.name(): cell for cell in spec.cells()}
    write_alternative_circuits(
        [by_name[row.name].directory(RUNS_ROOT) for row in rows],
        "docs/results",
        name="alternative-circuits-low-width",
        command="python examples/sweeps/alternative_circuits.py low-width",
        labels=[
            f"d {by_name[row.name].model.d_model}, Lmax {by_name[row.name].data.max_len}, "
            f"seed {by_name[row.name].train.seed} ({row.outcome})"
            for row in rows
        ],
    )


def scaling() -> None:
    """Every run of the scaling grid that solved the task without the head."""
    runs = "runs/reproduce"
    every = [spec for specs in SCALING.specs().values() for spec in specs]
    chosen = [
        spec for spec, result in zip(every, [s.result(runs) for s in every], strict=True)
        if result.solved and not result.has_head
    ]  # fmt: skip
    write_alternative_circuits(
        [spec.directory(runs) for spec in chosen],
        "docs/results",
        name="alternative-circuits-scaling",
        command="python examples/sweeps/alternative_circuits.py scaling",
        labels=[
            f"d {spec.model.d_model}, Lmax {spec.data.max_len}, seed {spec.train.seed}"
            for spec in chosen
        ],
    )


if __name__ == "__main__":
    pages = {"recipe-search": recipe_search, "low-width": low_width, "scaling": scaling}
    which = sys.argv[1] if len(sys.argv) > 1 else "recipe-search"
    if which not in pages:
        sys.exit(f"page {which!r}: expected one of {sorted(pages)}")
    pages[which]()
