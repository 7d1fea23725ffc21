"""Write docs/results/alternative-circuits.{md,html}: where every head looks, step by step, in the
runs of the recipe search that did not form a clean iteration head. Run the sweeps it reads first
(recipe-search-2/3/4.toml, with --runs runs/sweeps), then:

    python examples/sweeps/alternative_circuits.py
"""

from pathlib import Path

from iteration_heads.experiments.alternative_circuits import write_alternative_circuits
from iteration_heads.experiments.sweep import SweepSpec, cell_spec

SWEEPS = Path(__file__).parent
AUTHORS_BLOCK = "authors' block (renormalised, no biases)"
RUNS = [  # (sweep, variant, seed)
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
    return cell_spec(settings).directory("runs/sweeps")


if __name__ == "__main__":
    write_alternative_circuits(
        [run_directory(*run) for run in RUNS],
        "docs/results",
        command="python examples/sweeps/alternative_circuits.py",
        labels=[f"{variant}, seed {seed} ({sweep})" for sweep, variant, seed in RUNS],
    )
