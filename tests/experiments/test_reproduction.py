import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import tiny_spec

from iteration_heads import DataConfig, ModelConfig
from iteration_heads.cli import main
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments import EXPERIMENTS, Claim, Experiment, mean_spread, reproduce
from iteration_heads.experiments.controls import fails
from iteration_heads.experiments.emergence import (
    assess_head_forms,
    assess_learns,
    assess_positional,
)
from iteration_heads.experiments.reproduction import write_results
from iteration_heads.experiments.results_page import write_summary
from iteration_heads.experiments.scaling import assess_alternative, assess_scaling, assess_spread
from iteration_heads.runs import RunResult, RunSpec, run_all
from iteration_heads.runs.specs import paper_setting
from iteration_heads.training import TrainConfig


def fake(seed, accuracy, iteration, eoi=0.6, circuit=True, heads=((0, 0), (1, 0)), **more):
    return RunResult(
        seed=seed,
        summary={
            "epochs": 100,
            "test": {
                "accuracy": accuracy,
                "eoi_peakiness": [eoi, 0.0],
                "iteration_peakiness": [0.1, iteration],
            },
            "first_epoch_accuracy": 60 if accuracy >= 0.99 else None,
            "first_epoch_both": 60 if accuracy >= 0.99 and iteration >= 0.9 else None,
        },
        detect={
            "has_iteration_circuit": circuit,
            "eoi_heads": [list(heads[0])],
            "iteration_heads": [list(h) for h in heads[1:]],
            "layers": [],
        },
        **more,
    )


def test_every_paper_claim_has_an_experiment():
    assert list(EXPERIMENTS) == [
        "emergence",
        "paper-size",
        "no-cot",
        "one-layer",
        "small-width",
        "parity-scratch",
        "transfer",
        "parity-16",
        "scaling",
        "three-by-two",
        "positional",
    ]
    claims = [c.text for e in EXPERIMENTS.values() for c in e.claims]
    assert len(claims) == 14
    # every claim runs over at least 5 seeds, but the 3 x 2 model over 3
    fewer = {"three-by-two": [0, 1, 2]}
    for name, experiment in EXPERIMENTS.items():
        for specs in experiment.specs().values():
            assert sorted(s.train.seed for s in specs) == fewer.get(name, [0, 1, 2, 3, 4]), name


def test_specs_share_runs_across_experiments():
    emergence = EXPERIMENTS["emergence"].specs()["CoT, 2 layers"]
    learned = EXPERIMENTS["positional"].specs()["learned"]
    sources = [s.source for s in EXPERIMENTS["transfer"].specs()["all weights"]]
    assert [s.key() for s in emergence] == [s.key() for s in learned]
    assert [s.key() for s in emergence] == [s.key() for s in sources if s is not None]
    frozen = EXPERIMENTS["positional"].specs()["frozen"][0]
    assert frozen.key() != emergence[0].key() and "frozen" in frozen.name()


def test_the_fair_parity_test_fine_tunes_the_paper_size_runs():
    paper_size = EXPERIMENTS["paper-size"].specs()["d 128, Lmax 16"]
    fair = EXPERIMENTS["parity-16"].specs()
    assert [s.key() for s in fair["source (polynomial)"]] == [s.key() for s in paper_size]
    for tuned, scratch in zip(
        fair["transfer (all weights)"], fair["parity from scratch"], strict=True
    ):
        assert tuned.source is not None and tuned.source.model == scratch.model
        assert (tuned.data.task, scratch.data.task, scratch.data.max_len) == ("parity",) * 2 + (16,)


def test_fair_parity_claim_compares_transfer_and_scratch_seed_by_seed():
    from iteration_heads.experiments.parity import assess_fair_parity

    def run(seed, first, epochs=30, accuracy=1.0):
        curve = [{"epoch": e, "accuracy": a} for e, a in ((0, 0.0), (1, 0.5), (2, 1.0))]
        summary = {"epochs": epochs, "first_epoch_accuracy": first,
                   "test": {"accuracy": accuracy, "iteration_peakiness": [0.1, 0.95]}}  # fmt: skip
        return RunResult(seed, summary, curve=curve)

    sources = [run(0, 20), run(1, 20)]
    tuned = [run(0, 2, epochs=4), run(1, 2, epochs=4)]
    never = [run(0, None, accuracy=0.3), run(1, None, accuracy=0.4)]
    results = {"source (polynomial)": sources, "transfer (all weights)": tuned}
    ours, holds, why = assess_fair_parity({**results, "parity from scratch": never})
    assert holds == "yes" and "Lmax 16" in why
    assert "accuracy 0.35 ± 0.07 (0.30–0.40) after 30, 30 epochs" in ours
    assert "first at epoch —, —" in ours and "after 1 epoch 0.50" in ours
    # a seed whose scratch run learned parity sooner than its transfer breaks the claim there
    quick = [run(0, 1), run(1, None, accuracy=0.4)]
    assert assess_fair_parity({**results, "parity from scratch": quick})[1] == "partly (1/2 seeds)"
    # transfer is faster everywhere, but a scratch run that (nearly) learns it is not slow
    learned = replace(run(0, None, accuracy=0.985), per_length={"sequence_accuracy": [1.0, 0.99]})
    nearly = [learned, run(1, None, accuracy=0.4)]
    _, holds, why = assess_fair_parity({**results, "parity from scratch": nearly})
    assert holds == "partly: transfer is faster, but parity from scratch is not slow on 1/2 seeds"
    assert why.startswith("1/2 seeds reach accuracy ≥ 0.9 from scratch within 30 epochs")
    assert "peakiness of 0.95 (detect finds an iteration circuit in 0)" in why
    assert "and accuracy 0.99 at L = 16" in why
    every = [learned, replace(learned, seed=1)]
    _, holds, _ = assess_fair_parity({**results, "parity from scratch": every})
    assert holds == "partly: transfer is faster, but parity from scratch is not slow"


def test_mean_spread():
    assert mean_spread([1.0, 0.83, 0.56]) == "0.80 ± 0.22 (0.56–1.00)"
    assert mean_spread([0.123], 3) == "0.123"
    assert mean_spread([1.0, math.nan]) == "—"


def test_claims_report_partial_results_honestly():
    results = {"arm": [fake(0, 1.0, 1.0), fake(1, 1.0, 0.83), fake(2, 0.76, 0.56)]}
    ours, holds, why = assess_head_forms(results)
    assert holds == "partly (1/3 seeds)"
    assert (
        "0.80 ± 0.22" in ours and "seed 1 solves the task" in why and "alternative circuit" in why
    )
    assert "seed 2 has not learned the task yet (0.76)" in why
    ours, holds, _ = assess_head_forms({"arm": [fake(s, 1.0, 0.99) for s in range(3)]})
    assert holds == "yes"
    _, holds, _ = fails(0.2, "")({"arm": [fake(s, 0.09, 0.1) for s in range(3)]})
    assert holds == "yes"
    _, holds, why = fails(0.2, "")({"arm": [fake(0, 0.09, 0.1), fake(1, 1.0, 1.0, eoi=0.0)]})
    assert holds == "partly (1/2 seeds)"
    assert why == (
        "learned on some seeds: seed 1 reaches 1.00 (layer-1 EoI peakiness 0.00, layer-2 "
        "iteration peakiness 1.00)"
    )


def test_one_layer_claim_tells_chance_from_partly_learned():
    from iteration_heads.experiments.controls import assess_one_layer

    lengths = {"lengths": [1, 2, 3], "sequence_accuracy": [1.0, 0.75, 0.26]}
    chance = [fake(s, 0.07, 0.1, per_length=lengths) for s in range(2)]
    assert assess_one_layer({"arm": chance})[1] == "yes"
    partly = [fake(0, 0.45, 0.5, per_length=lengths), fake(1, 0.07, 0.1, per_length=lengths)]
    ours, holds, why = assess_one_layer({"arm": partly})
    assert holds == "partly: not learned, but far above chance"
    assert "seed 0: per length [1.00, 0.75, 0.26]" in why and "0.26 ± 0.27" in ours
    _, holds, _ = assess_one_layer({"arm": [fake(0, 1.0, 1.0), fake(1, 0.07, 0.1)]})
    assert holds == "partly (1/2 seeds)"
    assert "with two heads a single layer" in why  # runs without a spec: the recipe's
    # the paper arm's one-head layer is not explained by a second head
    one_head = paper_setting(EXPERIMENTS["one-layer"].specs([0])["CoT, 1 layer"][0]).to_dict()
    paper = [replace(r, spec=one_head) for r in partly]
    _, holds, why = assess_one_layer({"arm": paper})
    assert holds == "partly: not learned, but far above chance"
    assert "a single head reads x_t" in why and "two heads" not in why


def test_the_parity_claim_names_the_setting_its_runs_trained_with():
    from iteration_heads.experiments.parity import assess_parity

    spec = paper_setting(EXPERIMENTS["parity-scratch"].specs([0])["parity from scratch"][0])
    slow = [fake(0, 1.0, 1.0), fake(1, 0.5, 0.3, circuit=False)]  # one seed forms the head
    assert "with the library's recipe" in assess_parity({"a": slow})[2]
    paper = [replace(r, spec=spec.to_dict()) for r in slow]
    assert "with the paper's setting" in assess_parity({"a": paper})[2]


def test_spread_claim_needs_more_than_two_heads():
    spread = {"arm": [fake(0, 1.0, 0.9, heads=((0, 0), (0, 1), (1, 0), (1, 1)))]}
    assert assess_spread(spread)[1] == "yes"
    single = {"arm": [fake(0, 1.0, 0.9)]}
    assert assess_spread(single)[1] == "no"


def test_write_results_and_summary(tmp_path):
    experiment = Experiment(
        "tiny",
        "a tiny experiment",
        lambda seeds, epochs: {"tiny arm": [tiny_spec(s, epochs or 1) for s in seeds]},
        (Claim("tiny models do not learn in one epoch", "0.0", fails(0.99, "too short")),),
        seeds=(0, 1),
    )
    plan = experiment.specs()
    run_all([s for specs in plan.values() for s in specs], tmp_path / "runs", jobs=2)
    out = tmp_path / "docs" / "results"
    record = write_results(
        experiment,
        plan,
        runs=tmp_path / "runs",
        out=out,
        command="iteration-heads reproduce tiny",
        jobs=2,
        elapsed=1.0,
    )
    assert record["seeds"] == [0, 1] and record["claims"][0]["holds"] == "yes"
    assert (
        json.loads((out / "tiny.json").read_text())["command"] == "iteration-heads reproduce tiny"
    )
    table = (out / "tiny.md").read_text()
    assert "| tiny arm | 0 | 1 |" in table and "mean ± sd" in table
    page = (out / "tiny.html").read_text()
    assert 'src="plotly.min.js"' in page and (out / "plotly.min.js").stat().st_size > 1e6
    assert not re.search(r"src=\"https?://", page)
    # the summary only lists experiments of the registry; the tiny one is not
    summary = write_summary(out).read_text()
    assert summary.startswith("# Reproduction results") and "tiny" not in summary


def test_reproduce_end_to_end_writes_results_md(tmp_path):
    outputs = reproduce(
        ["no-cot"],
        seeds=[0],
        epochs=1,
        runs=tmp_path / "runs",
        out=tmp_path / "docs" / "results",
        command_options="--seeds 0 --epochs 1",
        log=lambda line: None,
    )
    assert sorted(outputs) == ["no-cot", "no-cot-paper"]  # both arms by default
    for stem, arm in (("no-cot", "recipe"), ("no-cot-paper", "paper")):
        record = outputs[stem]
        claim = record["claims"][0]
        assert (
            record["arm"] == arm and claim["holds"] == "yes" and "after 1 epochs" in claim["ours"]
        )
        assert json.loads((tmp_path / "docs" / "results" / f"{stem}.json").read_text()) == record
    # the paper arm trained the paper's model and optimiser, over the whole budget
    spec = outputs["no-cot-paper"]["arms"]["no CoT"][0]["spec"]
    heads, train = spec["model"]["n_heads"], spec["train"]
    assert (heads, train["lr"], train.get("warmup_steps", 0)) == (1, 3e-4, 0)
    assert spec["train"]["stop_at_target"] is False
    text = (tmp_path / "docs" / "results.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| without CoT"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # claim, the paper, the paper arm and its verdict, the recipe arm and what it changes
    assert cells[1] == "0.09 after 150 epochs (chance 1/11)" and len(cells) == 6
    why = "the answer needs L sequential steps; no CoT gives one"
    assert cells[2].startswith("accuracy") and cells[3] == f"**yes**: {why}"
    assert cells[4].startswith("accuracy") and cells[5] == "same verdict (**yes**)"
    assert "`iteration-heads reproduce no-cot --arm paper --seeds 0 --epochs 1`" in text
    # the commands table names the setting each arm trained with
    assert "| no-cot | recipe | 2 × 2, Adam 1e-3, warm-up 200 (the recipe) | `iteration-" in text
    assert "| no-cot | paper | 2 × 1, Adam 3e-4 (the paper's) | `iteration-" in text
    # one arm alone: the table says the other has not been run, with its command
    other = tmp_path / "other"
    reproduce(["no-cot"], seeds=[0], epochs=1, runs=tmp_path / "runs", out=other / "results",
              arms=["recipe"], log=lambda line: None)  # fmt: skip
    row = next(line for line in (other / "results.md").read_text().splitlines()
               if line.startswith("| without CoT"))  # fmt: skip
    assert "| not run yet: `iteration-heads reproduce no-cot --arm paper` | — |" in row
    assert not (other / "results" / "no-cot-paper.json").exists()
    with pytest.raises(IterationHeadsError, match="arm='author', expected 'paper', 'recipe' or"):
        reproduce(["no-cot"], seeds=[0], epochs=1, runs=tmp_path / "runs", out=other,
                  arms=["author"])  # fmt: skip


def test_extend_adds_seeds_to_written_results_without_retraining(tmp_path):
    out, runs = tmp_path / "results", tmp_path / "runs"
    first = reproduce(
        ["no-cot"], seeds=[0], epochs=1, runs=runs, out=out, arms=["recipe"], log=lambda line: None
    )
    # the run cache is gone (another machine): seed 1 is added to the written results
    second = reproduce(
        ["no-cot"], seeds=[1], epochs=1, runs=tmp_path / "elsewhere", out=out, extend=True,
        command_options="--seeds 1 --epochs 1 --extend", log=lambda line: None, arms=["recipe"],
    )["no-cot"]  # fmt: skip
    assert second["seeds"] == [0, 1]
    assert second["arms"]["no CoT"][0] == first["no-cot"]["arms"]["no CoT"][0]
    assert second["arms"]["no CoT"][1]["seed"] == 1
    assert "after 1 epochs" in second["claims"][0]["ours"]
    assert "--extend" in json.loads((out / "no-cot.json").read_text())["command"]
    # a run kept from the record must match the spec the experiment gives its seed now
    written = (out / "no-cot.json").read_bytes()
    with pytest.raises(IterationHeadsError, match="no CoT, seed 0 of .* other settings"):
        reproduce(["no-cot"], seeds=[2], epochs=2, runs=runs, out=out, extend=True, arms=["recipe"])
    # the paper arm has no record to extend yet
    with pytest.raises(IterationHeadsError, match="no earlier results .*no-cot-paper.json"):
        reproduce(["no-cot"], seeds=[2], epochs=1, runs=runs, out=out, extend=True)
    assert (out / "no-cot.json").read_bytes() == written
    assert not any("-s2-" in p.name for p in runs.iterdir())  # nothing trained
    with pytest.raises(IterationHeadsError, match="no earlier results"):
        reproduce(["one-layer"], seeds=[2], epochs=1, runs=runs, out=out, extend=True)
    with pytest.raises(IterationHeadsError, match="scaling draws its figure"):
        reproduce(["scaling"], seeds=[2], epochs=1, runs=runs, out=out, extend=True)


def test_reproduce_rejects_bad_input(tmp_path):
    with pytest.raises(IterationHeadsError, match="unknown experiment 'nope'"):
        reproduce(["nope"], runs=tmp_path)
    with pytest.raises(IterationHeadsError, match="jobs=0"):
        reproduce(["no-cot"], jobs=0, runs=tmp_path)
    assert not any(Path(tmp_path).iterdir())


def test_cli_lists_experiments(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)
    assert main(["reproduce", "nope"]) == 2


def test_learns_claim_explains_a_late_seed_from_its_curve():
    curve = [{"epoch": e, "train_loss": loss} for e, loss in [(140, 0.9), (150, 0.8), (200, 0.5)]]
    late = fake(2, 0.32, 0.37, curve=curve)
    ours, holds, why = assess_learns({"arm": [fake(0, 1.0, 1.0), fake(1, 1.0, 0.83), late]})
    assert holds == "partly (2/3 seeds)"
    assert "first at epoch 60, 60, —" in ours
    assert why == (
        "seed 2: accuracy 0.32 at epoch 200, train loss 0.800 → 0.500 over the last 50 epochs "
        "(still falling): a late start"
    )


def test_scaling_claim_reads_the_grid():
    def cell(d, L, accuracy, iteration=1.0):
        return [
            fake(0, accuracy, iteration, spec={"model": {"d_model": d}, "data": {"max_len": L}})
        ]

    grid = {
        "a": cell(16, 4, 0.0),
        "b": cell(16, 8, 0.0),
        "c": cell(32, 4, 0.6),
        "d": cell(32, 8, 1.0, iteration=0.8),
        "e": cell(64, 4, 1.0),
        "f": cell(64, 8, 1.0),
    }
    ours, holds, why = assess_scaling(grid)
    assert holds == "yes" and ours.startswith("3/6 cells reach 0.99 on every seed")
    assert "d 16 / Lmax 4: 0/1 (0.00)" in ours
    assert "a longer Lmax at the same width is solved on more seeds than d 32 / Lmax 4" in why
    ours, holds, _ = assess_alternative(grid)
    assert holds == "yes" and "d 32 / Lmax 8, seed 0 (0.80)" in ours
    grid["f"] = cell(64, 8, 0.2)
    _, holds, why = assess_scaling(grid)
    assert holds == "partly" and "the widest cells fail on some seeds: d 64 / Lmax 8" in why
    grid["f"] = cell(64, 8, 1.0)
    grid["b"] = [*cell(16, 8, 1.0), *cell(16, 8, 1.0)]  # d 16 solves Lmax 8 on more seeds than d 32
    grid["d"] = [*cell(32, 8, 1.0), *cell(32, 8, 0.0)]
    _, holds, why = assess_scaling(grid)
    assert (
        holds == "partly" and "a narrower model is solved on more seeds than d 32 / Lmax 8" in why
    )


def test_positional_claim_compares_seed_by_seed():
    def arm():
        return [fake(0, 1.0, 1.0), fake(1, 1.0, 0.83), fake(2, 0.3, 0.4)]

    ours, holds, why = assess_positional({"learned": arm(), "frozen": arm()})
    assert ours.startswith("learned: accuracy 0.77")
    assert holds == "yes, as often as with learned positions (1/3 seeds each)"
    assert "seed 1: solved without a clean head" in why and "seed 2: not learned" in why
    frozen = arm()
    frozen[2] = fake(2, 1.0, 0.95)
    _, holds, why = assess_positional({"learned": arm(), "frozen": frozen})
    assert holds == "partly (2/3 seeds)" and why == ""


def test_grid_experiment_draws_the_library_scaling_grid(tmp_path):
    experiment = Experiment(
        "tiny-grid",
        "a tiny grid",
        lambda seeds, epochs: {
            f"d {d}": [
                RunSpec(
                    DataConfig(task="polynomial", max_len=4, n_train=32, n_test=32),
                    ModelConfig(d_model=d, max_len=4),
                    TrainConfig(epochs=1, eval_every=1, threads=1),
                )
            ]
            for d in (16, 32)
        },
        (Claim("tiny", "0.0", fails(0.99, "too short")),),
        seeds=(0,),
        figure="grid",
    )
    plan = experiment.specs()
    run_all([s for specs in plan.values() for s in specs], tmp_path / "runs")
    out = tmp_path / "results"
    write_results(
        experiment, plan, runs=tmp_path / "runs", out=out, command="c", jobs=1, elapsed=0.0
    )
    page = (out / "tiny-grid.html").read_text()
    # plots.scaling_grid: accuracy, EoI and iteration panels over d_model (x) and Lmax (y)
    assert page.count('"x":["16","32"],"y":["4"]') == 3, page[:2000]


def test_every_experiment_has_a_paper_and_an_authors_arm_of_the_same_runs():
    from iteration_heads.runs.specs import authors_setting, polynomial_spec

    for experiment in EXPERIMENTS.values():
        recipe = experiment.specs([0])
        for arm, setting in (("paper", paper_setting), ("authors", authors_setting)):
            plan = experiment.specs([0], arm=arm)
            assert list(plan) == list(recipe)  # the same groups of runs, seed for seed
            for label, specs in plan.items():
                heads = experiment.paper_heads
                assert specs == [setting(s, n_heads=heads) for s in recipe[label]]
                assert all(s.model.n_heads == heads and s.train.lr == 3e-4 for s in specs)
                assert all(s.data.task == r.data.task and s.model.d_model == r.model.d_model
                           for s, r in zip(specs, recipe[label], strict=True))  # fmt: skip
    # the authors' arm of emergence is the authors' code's model, seed for seed
    spec = EXPERIMENTS["emergence"].specs([2], arm="authors")["CoT, 2 layers"][0]
    assert spec == authors_setting(polynomial_spec(2))
    assert (spec.model.residual, spec.model.seed, spec.data.seed) == ("authors", 2, 0)
    assert (
        EXPERIMENTS["three-by-two"].specs([0], arm="authors")["3 layers x 2 heads"][0].model.n_heads
        == 2
    )


def test_the_summary_states_the_out_of_sample_timing_from_the_sweep_table(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    assert "## Out of sample" not in write_summary(out).read_text()
    table = "seed,outcome,first_epoch_target\n" + "".join(
        f"{seed},head,{epoch}\n" for seed, epoch in ((101, 40), (202, 20), (303, 100), (404, 30))
    )
    (out / "out-of-sample.csv").write_text(table + "505,not learned,\n")
    text = write_summary(out).read_text()
    assert "on 4 of 5, first at epochs 20, 30, 40, 100 (median 35)" in text
    assert "(101, 202, 303, 404, 505;" in text


def test_rejudge_rewrites_the_claims_of_written_results_from_the_runs_they_hold(tmp_path, capsys):
    from iteration_heads.experiments import rejudge

    docs = Path(__file__).parents[2] / "docs" / "results"
    out = tmp_path / "results"
    out.mkdir()
    for stem in ("parity-16-paper", "no-cot-paper"):
        (out / f"{stem}.json").write_text((docs / f"{stem}.json").read_text())
    fresh = json.loads((out / "parity-16-paper.json").read_text())
    stale = {**fresh, "claims": [{**fresh["claims"][0], "holds": "stale", "why": "old words"}]}
    (out / "parity-16-paper.json").write_text(json.dumps(stale))
    assert rejudge(["parity-16", "no-cot"], out, ["paper"], log=lambda line: None) == [
        "parity-16-paper",
        "no-cot-paper",
    ]
    again = json.loads((out / "parity-16-paper.json").read_text())
    assert again == fresh  # the claims as judged when they were written; runs, times kept
    assert again["claims"][0]["holds"] in (out / "parity-16-paper.md").read_text()
    assert (tmp_path / "results.md").is_file()
    # a record that cannot be judged: a one-line error, and no record rewritten
    (out / "parity-16-paper.json").write_text(json.dumps(stale))
    broken = {**fresh, "arms": {"parity from scratch": fresh["arms"]["parity from scratch"]}}
    (out / "no-cot-paper.json").write_text(json.dumps(broken))
    with pytest.raises(IterationHeadsError, match=r"no-cot-paper.json' is not a record of no-cot"):
        rejudge(["parity-16", "no-cot"], out, ["paper"])
    assert json.loads((out / "parity-16-paper.json").read_text()) == stale
    with pytest.raises(IterationHeadsError, match="no results of emergence in"):
        rejudge(["emergence"], out, ["paper"])
    # the command line: nothing trained, training options refused
    (out / "no-cot-paper.json").write_text((docs / "no-cot-paper.json").read_text())
    assert main(["reproduce", "parity-16", "--arm", "paper", "--rejudge", "--out", str(out)]) == 0
    assert json.loads((out / "parity-16-paper.json").read_text()) == fresh
    capsys.readouterr()
    for extra in (["--jobs", "2"], ["--seeds", "3"], ["--extend"], ["--threads-per-run", "2"]):
        assert main(["reproduce", "parity-16", "--rejudge", "--out", str(out), *extra]) == 2
        assert f"drop {extra[0]}" in capsys.readouterr().err
