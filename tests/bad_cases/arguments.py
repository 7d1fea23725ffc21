"""Bad-input cases: numeric arguments of the public functions (detection, interventions,
pathways, viz, tasks, model, training, auditing, experiments): a float or bool where an integer is expected, a count below one,
a fraction out of range, NaN. See base.py; tests/test_numeric_arguments.py walks every
signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bad_cases.base import Case, api, cli

AREA = "arguments"

CASES: list[Case] = [
    api(AREA, "detect: zero probes", "detect(model, n_probes=0)"),
    api(AREA, "detect: negative batch size", "detect(model, probes, batch_size=-1)"),
    api(AREA, "detect: min_len zero", "detect(model, probes, min_len=0)"),
    api(AREA, "detect: float n_probes", "detect(model, n_probes=2.5)"),
    api(AREA, "verify: float batch size", "verify(model, data=split, batch_size=2.5)"),
    api(AREA, "verify: negative max_controls", "verify(model, data=split, max_controls=-1)"),
    api(AREA, "verify: zero control_probes", "verify(model, data=split, control_probes=0)"),
    api(AREA, "verify: string seed", "verify(model, data=split, seed='0')"),
    api(AREA, "verify: bool n", "verify(model, data=split, n=True)"),
    api(
        AREA,
        "ablation_effect: zero batch size",
        "ablation_effect(model, (0, 0), split, batch_size=0)",
    ),
    api(AREA, "ablation_effect: float seed", "ablation_effect(model, (0, 0), split, seed=1.0)"),
    api(AREA, "ablate: negative position", "ablate(model, (0, 0), positions=-1).__enter__()"),
    api(
        AREA,
        "activation_patching: zero batch size",
        "activation_patching(model, split, corrupt(split, 'input', task='polynomial'), batch_size=0)",
    ),
    api(
        AREA,
        "path_patch: float position",
        "path_patch(model, split, split, sender=(0, 0), receiver=(1, 0), positions=[1.5])",
    ),
    api(
        AREA,
        "pattern_effect: bool batch size",
        "pattern_effect(model, (1, 0), 'uniform', split, batch_size=True)",
    ),
    api(
        AREA,
        "position_shift: float shift",
        "position_shift(model, split, shift=0.5, eoi_heads=[(0, 0)], iteration_heads=[(1, 0)], task='polynomial')",
    ),
    api(
        AREA, "corrupt: float position", "corrupt(split, 'input', task='polynomial', position=1.5)"
    ),
    api(
        AREA,
        "corrupt: negative position",
        "corrupt(split, 'input', task='polynomial', position=-2)",
    ),
    api(
        AREA,
        "spread_over_lengths: zero",
        "iteration_heads.detection.spread_over_lengths(split.lengths, 0)",
    ),
    api(
        AREA,
        "steps_by_head: zero batch size",
        "iteration_heads.detection.steps_by_head(model, probes, batch_size=0)",
    ),
    api(
        AREA,
        "ideal_pattern: float seed",
        "iteration_heads.interventions.ideal_pattern('random', split.lengths, 15, seed=0.5)",
    ),
    api(
        AREA,
        "head_outputs: missing layer",
        "iteration_heads.interventions.head_outputs(model, tokens, [5])",
    ),
    api(
        AREA,
        "logit_lens: zero bootstrap",
        "iteration_heads.pathways.logit_lens(model, steps, n_boot=0)",
    ),
    api(
        AREA,
        "head_patching: negative min_kl",
        "iteration_heads.pathways.head_patching(model, steps, min_kl=-1.0)",
    ),
    api(
        AREA,
        "trace_flow: share above one",
        "iteration_heads.pathways.trace_flow(model, steps, min_share=1.5)",
    ),
    api(
        AREA,
        "trace_flow: nan min_weight",
        "iteration_heads.pathways.trace_flow(model, steps, min_weight=float('nan'))",
    ),
    api(
        AREA,
        "trace_flow: zero writers",
        "iteration_heads.pathways.trace_flow(model, steps, writers=0)",
    ),
    api(
        AREA,
        "trace_flow: float index",
        "iteration_heads.pathways.trace_flow(model, steps, index=0.0)",
    ),
    api(
        AREA,
        "pruning_curve: zero random draws",
        "iteration_heads.pathways.pruning_curve(model, steps, [(0, 0), (1, 0)], tokens[:8], n_random=0)",
    ),
    api(
        AREA,
        "pruning_curve: float k",
        "iteration_heads.pathways.pruning_curve(model, steps, [(0, 0), (1, 0)], tokens[:8], ks=[1.5])",
    ),
    api(
        AREA,
        "random_head_sets: bool draws",
        "iteration_heads.pathways.random_head_sets(model, [(0, 0)], n_random=True, seed=0)",
    ),
    api(
        AREA,
        "rift_layer: nan threshold",
        "iteration_heads.pathways.rift_layer(torch.ones(2), threshold=float('nan'))",
    ),
    api(
        AREA,
        "knockout_mask: float segment",
        "iteration_heads.pathways.knockout_mask(steps, frozenset({0.5}), 'answer')",
    ),
    api(
        AREA,
        "context_free_prior: zero keep",
        "iteration_heads.pathways.context_free_prior(model, steps, keep=0)",
    ),
    api(
        AREA,
        "segment_pathways: zero batch size",
        "iteration_heads.pathways.segment_pathways(model, steps, batch_size=0)",
    ),
    api(
        AREA,
        "attention_heatmap: zero columns",
        "iteration_heads.viz.attention_heatmap(model, probes, columns=0)",
    ),
    api(
        AREA,
        "attention_view: float length",
        "iteration_heads.viz.attention_view(model, probes, length=2.0)",
    ),
    api(
        AREA,
        "save_png: zero scale",
        "iteration_heads.viz.save_png(empty_figure, 'x.png', scale=0)",
    ),
    api(
        AREA,
        "paper_parameter_count: zero width",
        "iteration_heads.model.paper_parameter_count(0, 4)",
    ),
    api(
        AREA,
        "paper_parameter_count: float length",
        "iteration_heads.model.paper_parameter_count(64, 4.0)",
    ),
    api(
        AREA,
        "forward: dropout one",
        "iteration_heads.model.forward(iteration_heads.model.Weights.of(model, iteration_heads.model.model_config(model)), tokens, embedding_dropout=1.0)",
    ),
    api(
        AREA,
        "make_ontology_problems: float seed",
        "iteration_heads.tasks.make_ontology_problems(iteration_heads.tasks.OntologyConfig(), 4, seed=0.5)",
    ),
    api(
        AREA,
        "make_ontology_problems: zero problems",
        "iteration_heads.tasks.make_ontology_problems(iteration_heads.tasks.OntologyConfig(), 0)",
    ),
    api(AREA, "Probes: float eoi", "Probes(tokens, split.lengths, eoi=2.5)"),
    api(
        AREA,
        "iteration_prompts: bool seed",
        "iteration_heads.pathways.iteration_prompts(split, TokenLayout.default(), seed=False)",
    ),
    api(AREA, "as_batch: zero n", "iteration_heads.interventions.as_batch(model, split, n=0)"),
    api(
        AREA,
        "writers_chart: share zero",
        "iteration_heads.viz.writers_chart(writers_result, share=0)",
    ),
    api(
        AREA,
        "pruning_chart: threshold above one",
        "iteration_heads.viz.pruning_chart(curve_result, threshold=2.0)",
    ),
    api(
        AREA,
        "evaluate: zero batch size",
        "iteration_heads.training.evaluate(model, split, batch_size=0)",
    ),
    api(
        AREA,
        "evaluate_ontology: float batch size",
        "iteration_heads.training.evaluate_ontology(model, "
        "make_ontology_problems(OntologyConfig(hops=(1,)), 4), batch_size=2.5)",
    ),
    api(
        AREA,
        "score_heads: float length",
        "iteration_heads.training.score_heads(torch.ones(1, 2, 1, 1), "
        "torch.ones(1, 2, dtype=torch.bool), torch.tensor([2]), [2, 2.5])",
    ),
    api(
        AREA,
        "train_seeds: float seed",
        "train_seeds(ModelConfig(d_model=16, max_len=3), DataConfig(task='copy', max_len=3), "
        "TrainConfig(epochs=1), [0, 1.5])",
    ),
    api(
        AREA,
        "TaskWriting: float EoI token",
        "iteration_heads.auditing.TaskWriting(symbol_tokens=tuple(range(11)), eoi_token=11.0)",
    ),
    api(
        AREA,
        "TaskWriting: negative BOS token",
        "iteration_heads.auditing.TaskWriting(symbol_tokens=tuple(range(11)), eoi_token=11, "
        "bos_token=-1)",
    ),
    api(
        AREA,
        "TaskWriting: bool symbol token",
        "iteration_heads.auditing.TaskWriting('parity', symbol_tokens=(True, 2), eoi_token=3)",
    ),
    api(
        AREA,
        "TaskWriting: symbol tokens a number",
        "iteration_heads.auditing.TaskWriting('parity', symbol_tokens=5, eoi_token=3)",
    ),
    api(
        AREA,
        "check_token_layout: zero symbols",
        "iteration_heads.auditing.check_token_layout(None, 0)",
    ),
    api(AREA, "mean_spread: negative digits", "iteration_heads.experiments.mean_spread([0.5], -1)"),
    api(
        AREA,
        "Experiment: float seed",
        "iteration_heads.experiments.Experiment('e', 'd', lambda seeds, epochs: {}, (), "
        "seeds=(0, 1.5))",
    ),
    api(
        AREA,
        "Experiment: no seeds",
        "iteration_heads.experiments.Experiment('e', 'd', lambda seeds, epochs: {}, (), seeds=())",
    ),
    api(
        AREA,
        "reproduce: float jobs",
        "iteration_heads.experiments.reproduce(['emergence'], jobs=2.5)",
    ),
    api(
        AREA,
        "reproduce: zero epochs",
        "iteration_heads.experiments.reproduce(['emergence'], epochs=0)",
    ),
    api(
        AREA,
        "reproduce: seeds a number",
        "iteration_heads.experiments.reproduce(['emergence'], seeds=3)",
    ),
    api(
        AREA,
        "reproduce: float runs per job",
        "iteration_heads.experiments.reproduce(['emergence'], runs_per_job=1.5)",
    ),
    api(
        AREA,
        "reproduce: an arm that does not exist",
        "iteration_heads.experiments.reproduce(['emergence'], arms=['author'])",
    ),
    api(
        AREA,
        "reproduce: arms a string",
        "iteration_heads.experiments.reproduce(['emergence'], arms='paper')",
    ),
    cli(AREA, "reproduce ontology with an arm", "reproduce ontology --arm paper"),
    api(
        AREA,
        "rejudge: arms a string",
        "iteration_heads.experiments.rejudge(['no-cot'], arms='paper')",
    ),
    api(AREA, "rejudge: names a string", "iteration_heads.experiments.rejudge('no-cot')"),
    api(AREA, "rejudge: no results", "iteration_heads.experiments.rejudge(['no-cot'], 'empty')"),
    cli(AREA, "reproduce --rejudge with --jobs", "reproduce no-cot --rejudge --jobs 2"),
    cli(AREA, "reproduce --rejudge of ontology", "reproduce ontology --rejudge"),
    api(AREA, "run_all: zero jobs", "iteration_heads.runs.run_all([], 'runs', jobs=0)"),
    api(AREA, "verify: report of a 3-layer model", "verify(model, detected3, split)"),
    api(AREA, "verify: report of a model with 2 heads", "verify(model, detected_2h, split)"),
    api(AREA, "verify: report dictionary", "verify(model, detected.to_dict(), split)"),
    api(
        AREA,
        "verify: circuit given as a string",
        "verify(model, dataclasses.replace(detected, circuit='L0H0'), split)",
    ),
    api(
        AREA,
        "verify: iteration heads as a tuple",
        "verify(model, dataclasses.replace(detected, circuit=None, iteration=(1, (0,))), split)",
    ),
    api(
        AREA,
        "verify: heads table None",
        "verify(model, dataclasses.replace(detected, heads=None), split)",
    ),
    api(
        AREA,
        "verify: layers table None",
        "verify(model, dataclasses.replace(detected, layers=None), split)",
    ),
    api(
        AREA,
        "verify: thresholds None",
        "verify(model, dataclasses.replace(detected, thresholds=None), split)",
    ),
    api(
        AREA,
        "verify: verdict None",
        "verify(model, dataclasses.replace(detected, verdict=None), split)",
    ),
    api(
        AREA,
        "verify: state sensitivity text",
        "verify(model, dataclasses.replace(detected, state_sensitivity='high'), split)",
    ),
    api(
        AREA,
        "verify: empty heads table",
        "verify(model, dataclasses.replace(detected, heads=detected.heads.iloc[0:0]), split)",
    ),
    api(
        AREA,
        "verify: heads table without roles",
        "verify(model, dataclasses.replace(detected, heads=detected.heads.drop(columns='role')), split)",
    ),
    api(
        AREA,
        "verify: circuit heads beyond the model",
        "verify(model, dataclasses.replace(detected, circuit=Circuit(True, True, 0, 1, (9,), (0,), False, False, 0.9, 0.9)), split)",
    ),
    api(
        AREA,
        "verify: circuit layers beyond the model",
        "verify(model, dataclasses.replace(detected, circuit=Circuit(True, True, 5, 6, (0,), (0,), False, False, 0.9, 0.9)), split)",
    ),
    api(
        AREA,
        "verify: iteration layer beyond the model",
        "verify(model, dataclasses.replace(detected, circuit=None, iteration=Heads(7, (0,), False, 0.9)), split)",
    ),
    api(
        AREA,
        "verify: iteration head beyond the model",
        "verify(model, dataclasses.replace(detected, circuit=None, iteration=Heads(1, (5,), False, 0.9)), split)",
    ),
    api(
        AREA,
        "Circuit: EoI layer after the iteration layer",
        "Circuit(True, True, 1, 0, (0,), (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: EoI and iteration in one layer",
        "Circuit(True, True, 1, 1, (0,), (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: duplicate EoI head",
        "Circuit(True, True, 0, 1, (0, 0), (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: unsorted iteration heads",
        "Circuit(True, True, 0, 1, (0,), (1, 0), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: negative head",
        "Circuit(True, True, 0, 1, (-1,), (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: float layer",
        "Circuit(True, True, 0.0, 1.0, (0,), (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: bool layer",
        "Circuit(True, True, True, 1, (0,), (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: heads as a string",
        "Circuit(True, True, 0, 1, '01', (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: summed layer listing heads",
        "Circuit(True, True, 0, 1, (0,), (0,), True, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: found without attention",
        "Circuit(True, False, 0, 1, (0,), (0,), False, False, 0.9, 0.9)",
    ),
    api(
        AREA,
        "Circuit: peakiness text",
        "Circuit(True, True, 0, 1, (0,), (0,), False, False, 'high', 0.9)",
    ),
    api(AREA, "IterationHeads: negative layer", "Heads(-1, (0,), False, 0.9)"),
    api(AREA, "IterationHeads: duplicate head", "Heads(1, (0, 0), False, 0.9)"),
    api(AREA, "IterationHeads: summed given as 1", "Heads(1, (), 1, 0.9)"),
    api(
        AREA,
        "position_shift: report of another model",
        "position_shift(model, split, task='polynomial', report=dataclasses.replace(detected3, circuit=Circuit(True, True, 1, 2, (0,), (0,), False, False, 0.9, 0.9)))",
    ),
    api(
        AREA,
        "detection_heatmap: circuit given as a string",
        "iteration_heads.viz.detection_heatmap(dataclasses.replace(detected, circuit='L0H0'))",
    ),
    api(AREA, "verify: negative seed", "verify(model, data=split, seed=-1)"),
    api(AREA, "ablation_effect: negative seed", "ablation_effect(model, (0, 0), split, seed=-1)"),
    api(
        AREA,
        "pattern_effect: negative seed",
        "pattern_effect(model, (1, 0), 'uniform', split, seed=-1)",
    ),
    api(AREA, "corrupt: negative seed", "corrupt(split, 'input', task='polynomial', seed=-1)"),
    api(
        AREA,
        "position_shift: negative seed",
        "position_shift(model, split, seed=-1, eoi_heads=[(0, 0)], iteration_heads=[(1, 0)], task='polynomial')",
    ),
    # integers beyond what torch takes (64 bits), and lengths the probes do not reach
    api(AREA, "TrainConfig: 10**20 epochs", "TrainConfig(epochs=10**20)"),
    api(AREA, "TrainConfig: 10**20 batch size", "TrainConfig(batch_size=10**20)"),
    api(AREA, "TrainConfig: seed 10**20", "TrainConfig(seed=10**20)"),
    api(AREA, "TrainConfig: 10**20 threads", "TrainConfig(threads=10**20)"),
    api(AREA, "TrainConfig: 2000 threads", "TrainConfig(threads=2000)"),
    api(AREA, "TrainConfig: learning rate 10**400", "TrainConfig(lr=10**400)"),
    api(AREA, "TrainConfig: 10**20 warm-up steps", "TrainConfig(warmup_steps=10**20)"),
    api(AREA, "DataConfig: max_len 10**400", "DataConfig(task='copy', max_len=10**400)"),
    api(AREA, "DataConfig: seed -10**20", "DataConfig(task='copy', max_len=3, seed=-10**20)"),
    api(AREA, "ModelConfig: max_len 10**20", "ModelConfig(max_len=10**20)"),
    api(AREA, "ModelConfig: seed 10**20", "ModelConfig(max_len=4, seed=10**20)"),
    api(AREA, "detect: min_len 10**30", "detect(model, probes, min_len=10**30)"),
    api(AREA, "detect: min_len beyond every probe", "detect(model, probes, min_len=50)"),
    api(AREA, "measure: min_len beyond every probe", "measure(model, probes, min_len=50)"),
    api(AREA, "measure: text min_len", "measure(model, probes, min_len='4')"),
    api(AREA, "detect: 10**20 probes", "detect(model, n_probes=10**20, task='polynomial')"),
]


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """The package and its subpackages by name, and results to chart: computed with a model of
    their own (a forward pass through the cases' model would leave the bridge's own capture
    hooks on it, which the cases' model check counts)."""
    import plotly.graph_objects as go
    from helpers import tiny_model

    import iteration_heads
    import iteration_heads.auditing
    import iteration_heads.detection
    import iteration_heads.experiments
    import iteration_heads.interventions
    import iteration_heads.model
    import iteration_heads.pathways
    import iteration_heads.tasks
    import iteration_heads.training
    import iteration_heads.viz

    other, steps = tiny_model(), namespace["steps"]
    heads = [(0, 0), (1, 0)]
    reference = namespace["tokens"][:8]
    namespace.setdefault("iteration_heads", iteration_heads)
    namespace["empty_figure"] = go.Figure()
    # reports of models shaped like the cases' model (2 layers, 1 head) and of other shapes
    probes = namespace["probes"]
    namespace["detected"] = iteration_heads.detect(other, probes)
    namespace["detected3"] = iteration_heads.detect(tiny_model(n_layers=3), probes)
    namespace["detected_2h"] = iteration_heads.detect(tiny_model(n_heads=2), probes)
    namespace["Circuit"] = iteration_heads.detection.Circuit
    namespace["Heads"] = iteration_heads.detection.IterationHeads
    namespace["writers_result"] = iteration_heads.pathways.answer_writers(other, steps)
    namespace["curve_result"] = iteration_heads.pathways.pruning_curve(
        other, steps, heads, reference, ks=[1], n_random=1
    )
