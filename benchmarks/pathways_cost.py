"""The cost model of ``iteration-heads pathways --dry-run`` against a real run: for each analysis
on the zoo ontology model, the planned passes and estimated seconds next to the forward passes
counted (a hook on the last block) and the seconds measured, and the estimated peak memory next
to the process's peak resident memory.

    python benchmarks/pathways_cost.py [--n 8] [--method exact]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from iteration_heads import zoo
from iteration_heads.auditing.cost import time_forward
from iteration_heads.cli.pathway_runs import run_analyses
from iteration_heads.cli.pathways import ANALYSES
from iteration_heads.experiments.ontology_study import model_ontology
from iteration_heads.pathways import ontology_prompts
from iteration_heads.pathways.cost import plan_pathways
from iteration_heads.tasks import make_ontology_problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=8, help="ontology problems (as --n)")
    parser.add_argument("--method", default="auto", help="head patching method")
    options = parser.parse_args()
    model = zoo.load("ontology")
    problems = make_ontology_problems(model_ontology(model), options.n, seed=10_000,
                                      kind="fictional")  # fmt: skip
    prompts = ontology_prompts(problems)
    tick = time.perf_counter()
    plan = plan_pathways(model, prompts, list(ANALYSES), prior="context-free",
                         method=options.method)  # fmt: skip
    planning = time.perf_counter() - tick
    timing = time_forward(model, prompts.clean.shape[1])
    print(plan.format())
    print(f"planning (timing included): {planning:.2f} s; threads {torch.get_num_threads()}")
    calls: list[int] = []
    model.blocks[-1].register_forward_pre_hook(lambda module, args: calls.append(1))
    print(f"\n{'analysis':10} {'passes plan/run':>16} {'seconds est./measured':>22} {'ratio':>6}")
    total_est = total_run = 0.0  # each analysis alone: it computes what it needs itself
    for name in [s.name.split()[0] for s in plan.stages]:
        (stage,) = plan_pathways(model, prompts, [name], prior="context-free",
                                 method=options.method, timing=timing).stages  # fmt: skip
        args = argparse.Namespace(chosen=[stage.name.split()[0]], seed=0, n_random=5, n_traced=8,
                                  centre="auto", mean="position", prior="context-free",
                                  method=options.method)  # fmt: skip
        calls.clear()
        tick = time.perf_counter()
        run_analyses(model, prompts, args)
        seconds = time.perf_counter() - tick
        total_est, total_run = total_est + stage.seconds, total_run + seconds
        print(f"{stage.name:10} {f'{stage.forwards}/{len(calls)}':>16} "
              f"{f'{stage.seconds:.2f}/{seconds:.2f}':>22} {seconds / stage.seconds:>6.2f}")  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{'total':10} {'':>16} {f'{total_est:.2f}/{total_run:.2f}':>22} "
          f"{total_run / total_est:>6.2f}")  # fmt: skip
    print(
        f"peak memory: estimated {plan.peak / 1e6:.0f} MB (analyses), process peak RSS "
        f"{peak / 1e6:.0f} MB (Python, torch and the library included)"
    )


if __name__ == "__main__":
    main()
