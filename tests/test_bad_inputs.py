"""Bad inputs, through the API and the command line: every one is refused with the library's
one-line error, and changes nothing, neither on disk nor in memory.

Each case is a line of Python (run as written, in a namespace of small objects: see ``NAMESPACE``)
or an ``iteration-heads`` command (run in-process through :func:`iteration_heads.cli.main`, in a
temporary working folder). For every case the test checks:

* API: it raises :class:`~iteration_heads.IterationHeadsError` with a one-line message;
* CLI: exit status 2, exactly one line on stderr, ``iteration-heads: error: ...``, no traceback;
* nothing changed on disk: the working folder (file hashes and modification times, folders,
  links) and the shipped models' folder are as before;
* nothing changed in memory: the model's weights, train/eval mode and hooks (none attached), and
  the task registry.

The same cases generate the table of docs/guide/reliability.md: the test fails when the page
differs from what they produce; ``UPDATE_RELIABILITY_TABLE=1`` rewrites it. Machine-dependent
figures are pinned while the cases run: 16 GB of memory available, no CUDA and no MPS device.
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from bad_cases import (
    arguments,
    audit_cost,
    audits,
    export,
    pathways,
    pathways_cli,
    precision,
    prontoqa,
    pruning_attribution,
    runs,
    sharding,
    sweeps,
    text_prompts,
)
from bad_cases.base import Case, api, cli
from helpers import IDENTITY, library_probes, tiny_data, tiny_model

import iteration_heads
import iteration_heads.experiments.reproduction as reproduction
import iteration_heads.memory as memory_module
import iteration_heads.model.transformer as transformer
import iteration_heads.tasks.data as data_module
import iteration_heads.tasks.task as task_module
import iteration_heads.training.budget as budget
from iteration_heads import IterationHeadsError, Probes, get_task, list_tasks, save, zoo
from iteration_heads.cli import main
from iteration_heads.detection.detector import measure
from iteration_heads.experiments.ontology_study import study_ontology
from iteration_heads.interventions import as_batch
from iteration_heads.model import data_config, model_config
from iteration_heads.pathways import iteration_prompts
from iteration_heads.runs import LocalExecutor, SweepSpec, estimate_cost, make_executor
from iteration_heads.tasks import (
    OntologyConfig,
    OntologyDataConfig,
    TokenLayout,
    make_ontology_dataset,
    make_ontology_problems,
)
from iteration_heads.tasks.ontology import walk_chain
from iteration_heads.training import evaluate_ontology, train_seeds, trainable_parameters
from iteration_heads.training.budget import check_memory
from iteration_heads.viz import report_html, write_report

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guide" / "reliability.md"
AREAS: list[ModuleType] = [
    runs,
    sweeps,
    audits,
    arguments,
    export,
    pathways,
    text_prompts,
    pathways_cli,
    prontoqa,
    audit_cost,
    sharding,
    precision,
    pruning_attribution,
]
"""The area modules of tests/bad_cases/, each with ``CASES`` and maybe ``prepare``."""
TICK = 0.05
"""Seconds between a write and the next one the snapshot must tell apart (file systems stamp
times with a coarse clock of a few milliseconds)."""
MEMORY = 16 * 10**9
"""Bytes of memory the cases see as available (the real figure varies by machine)."""


NONE_F = "Task('none_f', 3, (0, 1, 2), lambda s, x: None)"
FLOAT_F = "Task('float_f', 3, (0, 1, 2), lambda s, x: (s + x) / 2)"

CORE_CASES: list[Case] = [
    # ---------------------------------------------------------------- ModelConfig
    api("ModelConfig", "no head per layer", "ModelConfig(n_heads=0)"),
    api("ModelConfig", "negative head count", "ModelConfig(n_heads=-2)"),
    api("ModelConfig", "zero width", "ModelConfig(d_model=0)"),
    api("ModelConfig", "negative depth", "ModelConfig(n_layers=-1)"),
    api("ModelConfig", "zero max length", "ModelConfig(max_len=0)"),
    api("ModelConfig", "negative MLP width", "ModelConfig(d_mlp_=-4)"),
    api("ModelConfig", "zero MLP width", "ModelConfig(d_mlp_=0)"),
    api("ModelConfig", "negative head width", "ModelConfig(d_head_=-8)"),
    api("ModelConfig", "width not divisible by heads", "ModelConfig(d_model=30, n_heads=4)"),
    api("ModelConfig", "float width", "ModelConfig(d_model=64.0)"),
    api("ModelConfig", "bool depth", "ModelConfig(n_layers=True)"),
    api("ModelConfig", "string max length", "ModelConfig(max_len='8')"),
    api("ModelConfig", "unknown activation", "ModelConfig(activation='tanh')"),
    api("ModelConfig", "unknown normalization", "ModelConfig(normalization='batch')"),
    api("ModelConfig", "unknown positional embedding", "ModelConfig(positional='rotary')"),
    api("ModelConfig", "unknown embedding init", "ModelConfig(embedding_init='xavier')"),
    api("ModelConfig", "string for a flag", "ModelConfig(biases='no')"),
    api("ModelConfig", "unknown residual block", "ModelConfig(residual='post-LN')"),
    api(
        "ModelConfig",
        "renormalised block without a norm",
        "ModelConfig(residual='renormalised', normalization=None)",
    ),
    api("ModelConfig", "negative seed", "ModelConfig(seed=-1)"),
    api("ModelConfig", "layout by name", "ModelConfig(layout='default')"),
    api("ModelConfig", "misspelt field", "ModelConfig.from_dict({'d_modle': 64})"),
    api("ModelConfig", "not a dictionary", "ModelConfig.from_dict([64, 2])"),
    api("ModelConfig", "dictionary for a config", "build_model({'d_model': 32})"),
    api("ModelConfig", "unknown device", "build_model(ModelConfig(d_model=32), device='foo')"),
    api("ModelConfig", "CUDA on a CPU-only build", "build_model(device='cuda')"),
    api("ModelConfig", "model larger than memory", "build_model(ModelConfig(d_model=50_000))"),
    # ---------------------------------------------------------------- DataConfig
    api("DataConfig", "string max length", "DataConfig(max_len='8')"),
    api("DataConfig", "zero max length", "DataConfig(max_len=0)"),
    api("DataConfig", "min length above max length", "DataConfig(min_len=5, max_len=3)"),
    api("DataConfig", "no training sequence", "DataConfig(n_train=0)"),
    api("DataConfig", "float test size", "DataConfig(n_test=2.5)"),
    api("DataConfig", "string for a flag", "DataConfig(cot='no')"),
    api("DataConfig", "int for a flag", "DataConfig(overlap=1)"),
    api("DataConfig", "task that is not a name", "DataConfig(task=3)"),
    api("DataConfig", "negative seed", "DataConfig(seed=-2)"),
    api("DataConfig", "misspelt field", "DataConfig.from_dict({'max_length': 8})"),
    api("DataConfig", "unknown task", "make_dataset(DataConfig(task='addition'))"),
    api("DataConfig", "dataset larger than memory", "make_dataset(DataConfig(max_len=1000))"),
    api(
        "DataConfig",
        "layout without the task",
        "make_dataset(DataConfig(max_len=4), TokenLayout.for_tasks(['parity']))",
    ),
    api("DataConfig", "dictionary for a config", "make_dataset({'max_len': 8})"),
    # ---------------------------------------------------------------- TrainConfig
    api("TrainConfig", "fractional epochs", "TrainConfig(epochs=2.5)"),
    api("TrainConfig", "negative epochs", "TrainConfig(epochs=-1)"),
    api("TrainConfig", "zero learning rate", "TrainConfig(lr=0)"),
    api("TrainConfig", "NaN learning rate", "TrainConfig(lr=float('nan'))"),
    api("TrainConfig", "string learning rate", "TrainConfig(lr='3e-4')"),
    api("TrainConfig", "negative weight decay", "TrainConfig(weight_decay=-1)"),
    api("TrainConfig", "negative momentum", "TrainConfig(optimizer='sgd', momentum=-0.5)"),
    api("TrainConfig", "empty batches", "TrainConfig(batch_size=0)"),
    api("TrainConfig", "dropout of 1.5", "TrainConfig(embedding_dropout=1.5)"),
    api("TrainConfig", "zero step budget", "TrainConfig(max_steps=0)"),
    api("TrainConfig", "evaluation never", "TrainConfig(eval_every=0)"),
    api("TrainConfig", "negative checkpoint interval", "TrainConfig(checkpoint_every=-5)"),
    api("TrainConfig", "unknown optimizer", "TrainConfig(optimizer='lion')"),
    api("TrainConfig", "unknown batch order", "TrainConfig(batch_order='random')"),
    api("TrainConfig", "zero threads", "TrainConfig(threads=0)"),
    api("TrainConfig", "negative threads", "TrainConfig(threads=-1)"),
    api("TrainConfig", "unknown device", "TrainConfig(device='foo')"),
    api("TrainConfig", "CUDA on a CPU-only build", "TrainConfig(device='cuda')"),
    api("TrainConfig", "MPS where there is none", "TrainConfig(device='mps')"),
    api("TrainConfig", "one submodule as a string", "TrainConfig(trainable='blocks.1.mlp')"),
    api("TrainConfig", "no submodule", "TrainConfig(trainable=())"),
    api("TrainConfig", "string for a flag", "TrainConfig(stop_at_target='yes')"),
    api("TrainConfig", "misspelt field", "TrainConfig.from_dict({'epoch': 3})"),
    api("TrainConfig", "unknown submodule", "trainable_parameters(model, ('blocks.9.mlp',))"),
    api(
        "TrainConfig",
        "run larger than memory",
        "check_memory(DataConfig(max_len=1000, n_train=64, n_test=64), ModelConfig(max_len=1000))",
    ),
    # ---------------------------------------------------------------- TokenLayout
    api("TokenLayout", "no task", "TokenLayout((), 11)"),
    api("TokenLayout", "duplicate task", "TokenLayout(('parity', 'parity'), 2)"),
    api("TokenLayout", "one symbol", "TokenLayout(('parity',), 1)"),
    api("TokenLayout", "float symbol count", "TokenLayout(('parity',), 2.0)"),
    api("TokenLayout", "tasks as one string", "TokenLayout('parity', 2)"),
    api(
        "TokenLayout",
        "string symbol count in a file",
        "TokenLayout.from_dict({'tasks': ['parity'], 'n_symbols': '2'})",
    ),
    api("TokenLayout", "dictionary without tasks", "TokenLayout.from_dict({'n_symbols': 3})"),
    api(
        "TokenLayout",
        "token outside the vocabulary",
        "TokenLayout.default().check_tokens(torch.tensor([[0, 16]]))",
    ),
    api("TokenLayout", "task without a token", "TokenLayout.default().task_token('addition')"),
    # ---------------------------------------------------------------- tasks
    api("tasks", "F returns None", NONE_F),
    api("tasks", "F returns floats", FLOAT_F),
    api("tasks", "F returns one number", "Task('scalar_f', 3, (0, 1, 2), lambda s, x: 1)"),
    api("tasks", "F fails", "Task('failing_f', 3, (0, 1, 2), lambda s, x: s + 'a')"),
    api("tasks", "F is not a function", "Task('not_f', 3, (0, 1, 2), update=3)"),
    api("tasks", "name with a space", "Task('has space', 3, (0, 1), lambda s, x: x)"),
    api("tasks", "one symbol", "Task('tiny', 1, (0,), lambda s, x: x)"),
    api("tasks", "no input value", "Task('empty', 3, (), lambda s, x: x)"),
    api("tasks", "input value out of range", "Task('wide', 3, (0, 5), lambda s, x: x)"),
    api("tasks", "float input value", "Task('halves', 3, (0.5, 1), lambda s, x: x)"),
    api("tasks", "first state out of range", "Task('late', 3, (0, 1), lambda s, x: x, init=7)"),
    api(
        "tasks",
        "F leaves the symbols",
        "Task('escaping', 3, (0, 1, 2), lambda s, x: s + x + 5, init=0)"
        ".states(torch.tensor([[1, 2]]))",
    ),
    api("tasks", "unknown task", "get_task('addition')"),
    api("tasks", "registering a name", "register_task('parity')"),
    api("tasks", "registering twice", "register_task(get_task('parity'))"),
    api("tasks", "float inputs", "get_task('polynomial').states(torch.tensor([[1.5, 2.0]]))"),
    api("tasks", "input symbol out of range", "get_task('parity').states(torch.tensor([[0, 7]]))"),
    # ---------------------------------------------------------------- probes
    api("probes", "float tokens", "Probes(torch.tensor([[15.0, 3.0, 11.0, 3.0]]), 1)"),
    api("probes", "one-dimensional tokens", "Probes(torch.tensor([15, 3, 11, 3]), 1)"),
    api("probes", "neither lengths nor EoI", "Probes(tokens)"),
    api("probes", "EoI past the chain of thought", "Probes(tokens, eoi=12)"),
    api(
        "probes",
        "zero max length",
        "Probes.from_task('polynomial', symbol_to_token=IDENTITY, eoi_token=11, max_len=0)",
    ),
    api(
        "probes",
        "no probe",
        "Probes.from_task('polynomial', symbol_to_token=IDENTITY, eoi_token=11, max_len=4, n=0)",
    ),
    api(
        "probes",
        "symbol the task lacks",
        "Probes.from_task('parity', symbol_to_token={0: 1, 5: 2}, eoi_token=11, max_len=4)",
    ),
    api("probes", "split without chain of thought", "Probes.from_split(nocot)"),
    api("probes", "built model, no task", "Probes.from_model(model)"),
    api("probes", "zero probes", "Probes.from_model(model, task='polynomial', n=0)"),
    # ---------------------------------------------------------------- detection
    api("detection", "not a TransformerLens model", "detect(torch.nn.Linear(2, 2))"),
    api("detection", "built model, no task", "detect(model)"),
    api("detection", "probes and a task", "detect(model, probes, task='parity')"),
    api("detection", "probes of the wrong type", "detect(model, probes='x')"),
    api("detection", "probes wider than the context", "detect(model, wide)"),
    api("detection", "token outside the vocabulary", "detect(model, Probes(tokens + 16, 6))"),
    api("detection", "zero probes", "detect(model, task='polynomial', n_probes=0)"),
    api("detection", "zero batch size", "measure(model, probes, batch_size=0)"),
    # ---------------------------------------------------------------- interventions
    api("interventions", "head that does not exist", "ablation_effect(model, [(5, 0)], split)"),
    api("interventions", "head by name", "ablation_effect(model, 'L0H0', split)"),
    api("interventions", "unknown kind", "ablation_effect(model, [(0, 0)], split, kind='max')"),
    api(
        "interventions", "float tokens", "ablation_effect(model, [(0, 0)], (tokens * 1.0, targets))"
    ),
    api(
        "interventions",
        "token outside the vocabulary",
        "ablation_effect(model, [(0, 0)], (tokens + 16, targets))",
    ),
    api(
        "interventions",
        "target outside the vocabulary",
        "ablation_effect(model, [(0, 0)], (tokens, targets.clamp(min=99)))",
    ),
    api(
        "interventions",
        "float lengths",
        "ablation_effect(model, [(0, 0)], (tokens, targets, split.lengths * 1.0))",
    ),
    api(
        "interventions",
        "position past the context",
        "ablation_effect(model, [(0, 0)], split, positions=[99])",
    ),
    api(
        "interventions",
        "bool position",
        "ablation_effect(model, [(0, 0)], split, positions=[True])",
    ),
    api("interventions", "zero sequences", "ablation_effect(model, [(0, 0)], split, n=0)"),
    api(
        "interventions", "zero batch size", "ablation_effect(model, [(0, 0)], split, batch_size=0)"
    ),
    api("interventions", "data of the wrong type", "as_batch(model, 'tokens')"),
    api(
        "interventions",
        "mean ablation without reference",
        "with ablate(model, (0, 0), kind='mean'): pass",
    ),
    api(
        "interventions",
        "reference outside the vocabulary",
        "with ablate(model, (0, 0), kind='mean', reference=tokens + 16): pass",
    ),
    api(
        "interventions",
        "float reference",
        "with ablate(model, (0, 0), kind='resample', reference=tokens * 1.0): pass",
    ),
    api(
        "interventions",
        "all-NaN pattern",
        "with patch_pattern(model, (1, 0), torch.full((4, 15, 15), float('nan'))): pass",
    ),
    api(
        "interventions",
        "negative pattern",
        "with patch_pattern(model, (1, 0), -torch.ones(4, 15, 15)): pass",
    ),
    api(
        "interventions",
        "ideal pattern without lengths",
        "with patch_pattern(model, (1, 0), 'iteration'): pass",
    ),
    api(
        "interventions",
        "float lengths for a pattern",
        "with patch_pattern(model, (1, 0), 'iteration', lengths=split.lengths * 1.0): pass",
    ),
    api("interventions", "unknown pattern", "pattern_effect(model, (1, 0), 'diagonal', split)"),
    api(
        "interventions",
        "pattern of the wrong shape",
        "pattern_effect(model, (1, 0), torch.zeros(2, 5, 5), split)",
    ),
    api(
        "interventions",
        "clean and corrupted of different shapes",
        "activation_patching(model, split, split.select(torch.arange(8)))",
    ),
    api(
        "interventions",
        "sender that does not exist",
        "path_patch(model, split, split, sender=(7, 0), receiver=(1, 0))",
    ),
    api(
        "interventions",
        "path patching a renormalised residual stream",
        "path_patch(renormalised, split, split, sender=(0, 0), receiver=(1, 0))",
    ),
    api("interventions", "unknown corruption", "corrupt(split, 'scramble', task='polynomial')"),
    # ---------------------------------------------------------------- loading
    api("loading", "missing folder", "load('nowhere')"),
    api("loading", "a file", "load('afile')"),
    api("loading", "a path through a file", "load('afile/model')"),
    api("loading", "a symlink loop", "load('loop1')"),
    api("loading", "a broken symlink", "load('broken')"),
    api("loading", "an empty folder", "load('adir')"),
    api("loading", "not a path", "load(3)"),
    api("loading", "unknown shipped model", "zoo.load('gpt5')"),
    api("loading", "model not built here", "model_config(torch.nn.Linear(2, 2))"),
    api("loading", "built model has no data config", "data_config(model)"),
    # ---------------------------------------------------------------- reports
    api("reports", "output is a folder", "write_report('polynomial', 'adir')"),
    api("reports", "output inside a file", "write_report('polynomial', 'afile/report.html')"),
    api("reports", "unwritable folder", "write_report('polynomial', '/proc/self/report.html')"),
    api("reports", "length past the model's", "write_report('polynomial', 'r.html', length=100)"),
    api("reports", "zero probes", "write_report('polynomial', 'r.html', n_probes=0)"),
    api("reports", "unknown task", "write_report('polynomial', 'r.html', task='addition')"),
    api("reports", "model without a task", "report_html('untrained')"),
    api("reports", "missing model", "write_report('nowhere', 'r.html')"),
    # ---------------------------------------------------------------- zoo
    api("zoo", "unknown model", "zoo.build(['gpt5'])"),
    api("zoo", "zero jobs", "zoo.build(['copy'], jobs=0)"),
    api("zoo", "one name as a string", "zoo.build('copy')"),
    api("zoo", "run cache is a file", "zoo.build(['copy'], runs='afile')"),
    api("zoo", "install from a file", "zoo.install('copy', 'afile')"),
    api("zoo", "install an unknown model", "zoo.install('gpt5', 'adir')"),
    api("zoo", "information on an unknown model", "zoo.info('gpt5')"),
    # ---------------------------------------------------------------- ontology
    api(
        "ontology",
        "facts that loop",
        "walk_chain([('e0', 'c1'), ('c1', 'c2'), ('c2', 'c1')], 'e0')",
    ),
    api(
        "ontology",
        "a subject with two objects",
        "walk_chain([('e0', 'c1'), ('c1', 'p0'), ('c1', 'p1')], 'e0')",
    ),
    api(
        "ontology",
        "question about an entity in no fact",
        "walk_chain([('e0', 'c1'), ('c1', 'p0')], 'e3')",
    ),
    api("ontology", "more hops than concepts", "OntologyConfig(hops=(5,), n_concepts=4)"),
    api("ontology", "hops as a number", "OntologyConfig(hops=3)"),
    api("ontology", "world too small for the hops", "OntologyConfig(hops=(3,), world_concepts=2)"),
    api(
        "ontology",
        "world problems without a world",
        "make_ontology_problems(OntologyConfig(), 4, kind='world')",
    ),
    api(
        "ontology",
        "unknown kind of problem",
        "make_ontology_problems(OntologyConfig(), 4, kind='fantasy')",
    ),
    api(
        "ontology",
        "model context too short",
        "evaluate_ontology(model, make_ontology_problems(OntologyConfig(hops=(3,)), 4))",
    ),
    api(
        "ontology",
        "training a model of the wrong size",
        "train(model, make_ontology_dataset(OntologyDataConfig(n_train=8, n_test=4)))",
    ),
    # ---------------------------------------------------------------- pathways
    api(
        "pathways",
        "unknown subtask",
        "pathways.ontology_prompts(make_ontology_problems(OntologyConfig(), 2), ('jump',))",
    ),
    api(
        "pathways",
        "prompts without chain of thought",
        "pathways.iteration_prompts(nocot, TokenLayout.default())",
    ),
    api(
        "pathways",
        "patching without corruption",
        "pathways.head_patching(model, dataclasses.replace(steps, corrupted=None))",
    ),
    api(
        "pathways",
        "a prior per prompt missing",
        "pathways.logit_lens(model, steps, prior=torch.tensor([1]))",
    ),
    api(
        "pathways",
        "unknown knockout scope",
        "pathways.segment_pathways(model, steps, scope='everything')",
    ),
    api(
        "pathways", "traced position past the sequence", "pathways.trace_flow(model, tokens[0], 99)"
    ),
    api(
        "pathways",
        "ranking without every head",
        "pathways.pruning_curve(model, steps, [(0, 0)], tokens)",
    ),
    api("pathways", "study of a model of another task", "study_ontology(model)"),
    # ---------------------------------------------------------------- CLI
    cli("", "no command", ""),
    cli("", "unknown command", "fit"),
    cli("train", "negative threads", "train --out run --threads -1"),
    cli("train", "zero threads", "train --out run --threads 0"),
    cli("train", "threads not a number", "train --out run --threads x"),
    cli("train", "CUDA on a CPU-only build", "train --out run --device cuda"),
    cli("train", "unknown device", "train --out run --device foo"),
    cli("train", "negative weight decay", "train --out run --weight-decay -1"),
    cli("train", "negative MLP width", "train --out run --d-mlp -4"),
    cli("train", "zero MLP width", "train --out run --d-mlp 0"),
    cli("train", "no head", "train --out run --n-heads 0"),
    cli("train", "width not divisible by heads", "train --out run --d-model 30 --n-heads 4"),
    cli("train", "run larger than memory", "train --out run --max-len 1000"),
    cli("train", "model larger than memory", "train --out run --d-model 100000"),
    cli("train", "zero max length", "train --out run --max-len 0"),
    cli("train", "min length above max length", "train --out run --min-len 9 --max-len 8"),
    cli("train", "no training sequence", "train --out run --n-train 0"),
    cli("train", "negative epochs", "train --out run --epochs -1"),
    cli("train", "fractional epochs", "train --out run --epochs 2.5"),
    cli("train", "zero learning rate", "train --out run --lr 0"),
    cli("train", "NaN learning rate", "train --out run --lr nan"),
    cli("train", "empty batches", "train --out run --batch-size 0"),
    cli("train", "dropout of 1", "train --out run --embedding-dropout 1"),
    cli("train", "evaluation never", "train --out run --eval-every 0"),
    cli("train", "negative checkpoint interval", "train --out run --checkpoint-every -1"),
    cli("train", "negative seed", "train --out run --seed -1"),
    cli("train", "unknown task", "train --out run --task addition"),
    cli("train", "unknown activation", "train --out run --activation tanh"),
    cli("train", "unknown optimizer", "train --out run --optimizer lion"),
    cli("train", "unknown submodule", "train --out run --trainable blocks.9.mlp"),
    cli("train", "missing model to fine-tune", "train --out run --init-from nowhere"),
    cli(
        "train",
        "longer than the model to fine-tune",
        "train --out run --init-from polynomial --max-len 12",
    ),
    cli("train", "no --out", "train --epochs 1"),
    cli("eval", "missing model", "eval nowhere"),
    cli("eval", "a file", "eval afile"),
    cli("eval", "a symlink loop", "eval loop1"),
    cli("eval", "an empty folder", "eval adir"),
    cli("eval", "unknown split", "eval polynomial --split validation"),
    cli("detect", "zero probes", "detect polynomial --n-probes 0"),
    cli("detect", "negative probes", "detect polynomial --n-probes -3"),
    cli("detect", "probes not a number", "detect polynomial --n-probes x"),
    cli("detect", "a file", "detect afile"),
    cli("audit", "zero probes", "audit polynomial --n-probes 0"),
    cli("audit", "unknown task", "audit polynomial --task addition"),
    cli("audit", "missing model", "audit nowhere"),
    cli("audit", "symbol token not a number", "audit polynomial --symbol-tokens 1,x"),
    cli("audit", "zero max length", "audit polynomial --max-len 0"),
    cli("audit", "report is a folder", "audit polynomial --report adir"),
    cli("audit", "report inside a file", "audit polynomial --report afile/audit.html"),
    cli("audit", "missing model, report in a new folder", "audit nowhere --report new/audit.html"),
    cli(
        "audit",
        "bad length, figure in a new folder",
        "audit polynomial --max-len 0 --figure n/c.html",
    ),
    cli("report", "output is a folder", "report polynomial -o adir"),
    cli("report", "output inside a file", "report polynomial -o afile/report.html"),
    cli("report", "unwritable folder", "report polynomial -o /proc/self/report.html"),
    cli("report", "length past the model's", "report polynomial --length 100"),
    cli("report", "zero length", "report polynomial --length 0"),
    cli("report", "zero probes", "report polynomial --n-probes 0"),
    cli("report", "unknown task", "report polynomial --task addition"),
    cli("report", "a file", "report afile"),
    cli("report", "a symlink loop", "report loop1"),
    cli("tasks", "unexpected argument", "tasks extra"),
    cli("zoo", "zero jobs", "zoo --build --jobs 0"),
    cli("zoo", "unknown model", "zoo --build gpt5"),
    cli("zoo", "run cache is a file", "zoo --build copy --runs afile"),
    cli("zoo", "--jobs without --build", "zoo --jobs 2"),
    cli("reproduce", "unknown experiment", "reproduce nope"),
    cli("reproduce", "zero jobs", "reproduce emergence --jobs 0"),
    cli("reproduce", "zero epochs", "reproduce emergence --epochs 0"),
    cli("reproduce", "negative seed", "reproduce emergence --seeds -1"),
    cli("reproduce", "results folder is a file", "reproduce emergence --out afile"),
    cli("reproduce", "run cache is a file", "reproduce emergence --runs afile"),
    cli("reproduce", "seeds for the ontology study", "reproduce ontology --seeds 1"),
    cli("reproduce", "extend without earlier results", "reproduce no-cot --seeds 5 --extend"),
    cli("reproduce", "extend the scaling grid", "reproduce scaling --seeds 5 --extend"),
    cli("reproduce", "a SLURM option for local runs", "reproduce emergence --partition gpu"),
    cli(
        "reproduce",
        "half a GPU on SLURM",
        "reproduce emergence --executor slurm --gpus-per-run 0.5",
    ),
    cli("reproduce", "unknown executor", "reproduce emergence --executor dask"),
    # ---------------------------------------------------------------- sweeps
    cli("sweep", "missing spec", "sweep missing.toml"),
    cli("sweep", "spec that is not TOML", "sweep afile"),
    api("sweep", "unknown field", "SweepSpec.from_dict({'axes': {'model.width': [8]}})"),
    api("sweep", "empty axis", "SweepSpec.from_dict({'axes': {'seed': []}})"),
    api(
        "sweep",
        "variant that sets an axis",
        "SweepSpec.from_dict({'axes': {'seed': [0]}, 'variants': {'a': {'seed': 1}}})",
    ),
    api(
        "sweep",
        "rule naming an unknown variant",
        "SweepSpec.from_dict({'variants': {'a': {}}, 'exclude': [{'variant': 'b'}]})",
    ),
    api(
        "sweep",
        "figure over seeds",
        "SweepSpec.from_dict({'axes': {'seed': [0, 1]}, 'figure': {'x': 'seed', 'y': 'seed'}})",
    ),
    api("sweep", "invalid cell", "SweepSpec.from_dict({'axes': {'model.d_model': [0]}}).cells()"),
    api("sweep", "unknown executor", "make_executor('dask')"),
    api("sweep", "zero threads per run", "LocalExecutor(threads_per_run=0)"),
    api("sweep", "estimate with no slot", "estimate_cost([], slots=0)"),
    api(
        "sweep",
        "repeated seeds stacked",
        "train_seeds(ModelConfig(d_model=16, max_len=3), DataConfig(task='copy', max_len=3), "
        "TrainConfig(), [0, 0])",
    ),
    # run directories (the crash, lock, disk-full and divergence cases: tests/training/test_crash_safety.py)
    cli("train", "run directory is a file", "train --out afile"),
    cli("train", "run directory holds a saved model", "train --out untrained"),
    cli("train", "run directory holds other files", "train --out ."),
    cli("train", "resume a folder that does not exist", "train --out missing --resume"),
    cli("train", "resume a run that never started", "train --out adir --resume"),
    api("training", "no dataset", "train(model, None)"),
    api("training", "a split, not a dataset", "train(model, split)"),
    api("training", "config of the wrong type", "train(model, None, config={'epochs': 1})"),
    api("loading", "unknown device", "load('untrained', device='nosuch')"),
    api("loading", "CUDA without CUDA", "load('untrained', device='cuda')"),
    api("loading", "device of the wrong type", "load('untrained', device=3)"),
]


CASES: list[Case] = [*CORE_CASES, *(c for area in AREAS for c in area.CASES)]
"""Every case: the core ones above, then each area module's (tests/bad_cases/)."""

# ---------------------------------------------------------------- running the cases


def work_folder(root: Path) -> Path:
    """The working folder of the cases: a file, an empty folder, links, an untrained model."""
    root.mkdir()
    (root / "afile").write_text("not a model\n")
    (root / "adir").mkdir()
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "broken").symlink_to("missing-target")
    save(tiny_model(), root / "untrained")
    return root


def snapshot(*roots: Path) -> dict[str, Any]:
    """Every entry under ``roots``: folders, links (their target) and files (size, inode, mode,
    modification and change times: any write, replacement, rename or chmod moves one of them;
    stat alone, as hashing ~800 files twice per case cost a minute of the suite)."""
    entries: dict[str, Any] = {}
    folders = [os.fspath(root) for root in roots if os.path.isdir(root)]
    entries |= {os.fspath(root): ("missing",) for root in roots if not os.path.isdir(root)}
    while folders:
        with os.scandir(folders.pop()) as listing:
            for entry in listing:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    entries[entry.path] = ("link", os.readlink(entry.path))
                elif stat.S_ISDIR(info.st_mode):
                    entries[entry.path] = ("dir", info.st_mode)
                    folders.append(entry.path)
                else:
                    entries[entry.path] = ("file", info.st_size, info.st_ino, info.st_mode,
                                           info.st_mtime_ns, info.st_ctime_ns)  # fmt: skip
    return entries


def model_state(model: torch.nn.Module) -> tuple[Any, ...]:
    """Weights, the mode of every submodule, and the number of hooks attached anywhere."""
    tensors = [*model.named_parameters(), *model.named_buffers()]  # a bridge's state_dict
    weights = {k: v.detach().clone() for k, v in tensors}  # renames every key: 4 times slower
    modes = tuple(m.training for m in model.modules())
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
    hooks += sum(len(h.fwd_hooks) + len(h.bwd_hooks) for h in model.hook_dict.values())
    return weights, modes, hooks


def same_state(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    weights_a, modes_a, hooks_a = a
    weights_b, modes_b, hooks_b = b
    equal = weights_a.keys() == weights_b.keys() and all(
        torch.equal(weights_a[k], weights_b[k]) for k in weights_a
    )
    return equal and modes_a == modes_b and hooks_a == hooks_b == 0


@dataclass(frozen=True)
class Outcome:
    message: str  # the error message, paths of the temporary folder shown as <tmp>
    problems: tuple[str, ...]  # what went wrong; empty when the case passed


def run_api(case: Case, namespace: dict[str, Any]) -> tuple[str, list[str]]:
    try:
        exec(case.code, dict(namespace))
    except IterationHeadsError as err:
        message = str(err)
        return message, [] if "\n" not in message else ["the message spans several lines"]
    except Exception as err:
        return "", [f"raised {type(err).__name__} instead: {err}"]
    return "", ["accepted: no error raised"]


def run_cli(case: Case) -> tuple[str, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    assert case.argv is not None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(list(case.argv))
        except BaseException as exc:  # SystemExit included: main must return
            return "", [f"main raised {type(exc).__name__}: {exc}"]
    lines = err.getvalue().splitlines()
    prefix = "iteration-heads: error: "
    problems = []
    if status != 2:
        problems.append(f"exit status {status}, expected 2")
    if len(lines) != 1 or not lines[0].startswith(prefix):
        problems.append(f"stderr is not one error line: {err.getvalue()!r}")
    if "Traceback" in err.getvalue():
        problems.append("stderr holds a traceback")
    message = lines[0].removeprefix(prefix) if lines else ""
    return message, problems


def observe(work: Path, model: torch.nn.Module) -> tuple[Any, ...]:
    """What no case may change: the disk under ``work`` and the shipped models, ``model``
    (:func:`model_state`) and the task registry."""
    return snapshot(work, Path(zoo.__file__).parent), model_state(model), list_tasks()


def run_case(
    case: Case, work: Path, namespace: dict[str, Any], before: tuple[Any, ...]
) -> tuple[Outcome, tuple[Any, ...]]:
    """``case``'s outcome, and what :func:`observe` sees after it (``before`` of the next
    case: observing once between two cases halves the cost of the checks)."""
    message, problems = run_api(case, namespace) if case.argv is None else run_cli(case)
    after = observe(work, namespace["model"])
    if after[0] != before[0]:
        problems.append("the disk changed")
    if not same_state(after[1], before[1]):
        problems.append("the model changed (weights, mode or hooks)")
    if after[2] != before[2]:
        problems.append("the task registry changed")
    message = message.replace(str(work), "<tmp>").replace(str(ROOT), "<repo>")
    return Outcome(message, tuple(problems)), after


def refuse_work(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a bad input started training")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Every case's outcome, run once in a temporary working folder."""
    work = work_folder(tmp_path_factory.mktemp("bad_inputs") / "work")
    split = tiny_data().test
    namespace = {
        "torch": torch,
        **{name: getattr(iteration_heads, name) for name in iteration_heads.__all__},
        "as_batch": as_batch,
        "check_memory": check_memory,
        "data_config": data_config,
        "measure": measure,
        "model_config": model_config,
        "report_html": report_html,
        "trainable_parameters": trainable_parameters,
        "write_report": write_report,
        "IDENTITY": IDENTITY,
        "model": tiny_model(),
        "renormalised": tiny_model(residual="renormalised"),
        "split": split,
        "tokens": split.tokens,
        "targets": split.targets,
        "probes": Probes.from_split(split),
        "nocot": tiny_data(cot=False).test,
        "steps": iteration_prompts(split, TokenLayout.default()),
        "dataclasses": dataclasses,
        "walk_chain": walk_chain,
        "OntologyConfig": OntologyConfig,
        "OntologyDataConfig": OntologyDataConfig,
        "make_ontology_problems": make_ontology_problems,
        "make_ontology_dataset": make_ontology_dataset,
        "evaluate_ontology": evaluate_ontology,
        "study_ontology": study_ontology,
        "wide": library_probes(n=8, max_len=8),
        "SweepSpec": SweepSpec,
        "make_executor": make_executor,
        "LocalExecutor": LocalExecutor,
        "estimate_cost": estimate_cost,
        "train_seeds": train_seeds,
    }
    for area in AREAS:
        if hasattr(area, "prepare"):
            area.prepare(work, namespace)
    time.sleep(TICK)  # a case's write gets a later timestamp than anything prepare wrote
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        # messages list the registered tasks: the built-in ones only, whatever ran before
        builtins = {name: get_task(name) for name in task_module.BUILTIN_TASKS}
        patch.setattr(task_module, "_REGISTRY", builtins)
        for module in (data_module, transformer, budget, memory_module):
            patch.setattr(module, "available_memory", lambda: MEMORY)
        patch.setattr(torch.cuda, "is_available", lambda: False)
        patch.setattr(torch.backends.mps, "is_available", lambda: False)
        patch.setattr("iteration_heads.training.train", refuse_work)  # what `train` runs
        patch.setattr(zoo, "run_all", refuse_work)
        patch.setattr(reproduction, "run_all", refuse_work)
        found, state = {}, observe(work, namespace["model"])
        for case in CASES:
            found[case.id], state = run_case(case, work, namespace, state)
        yield found


def test_the_snapshot_sees_every_kind_of_change(tmp_path: Path) -> None:
    """Same-size rewrites (even of the same bytes), replacements, chmods, new and removed
    entries: each changes the snapshot, which the cases compare."""
    root = work_folder(tmp_path / "work")
    target = root / "afile"
    changes = [
        lambda: target.write_text(target.read_text()),
        lambda: (root / "copy").write_text("x") or os.replace(root / "copy", target),
        lambda: target.chmod(0o600),
        lambda: (root / "adir" / "new").mkdir(),
        lambda: (root / "untrained" / "config.json").unlink(),
    ]
    for change in changes:
        before = snapshot(root)
        time.sleep(TICK)
        change()
        assert snapshot(root) != before


def test_there_are_enough_cases() -> None:
    api_cases = [c for c in CASES if c.argv is None]
    assert len(CASES) >= 100 and len(api_cases) >= 50 and len(CASES) - len(api_cases) >= 50
    assert len({c.id for c in CASES}) == len(CASES), "two cases share area and description"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    assert outcome.problems == (), f"{case.shown}: {'; '.join(outcome.problems)}"
    assert outcome.message.strip(), f"{case.shown}: empty message"


# ---------------------------------------------------------------- the page


BEGIN, END = "<!-- cases: generated by tests/test_bad_inputs.py -->", "<!-- /cases -->"
TABLE_HEAD = "| Area | Input | Error message |\n| --- | --- | --- |\n"


def code_span(text: str) -> str:
    """``text`` as inline code in a table cell (double backticks when it holds one)."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def page(outcomes: dict[str, Outcome]) -> str:
    """The reliability page with its generated table (between the markers) rewritten."""
    rows = [
        f"| {case.area} | {case.description}: {code_span(case.shown.replace(str(ROOT), '<repo>'))} | "
        f"{code_span(outcomes[case.id].message)} |"
        for case in CASES
    ]
    text = PAGE.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + "\n" + TABLE_HEAD + "\n".join(rows) + "\n" + END + tail


def test_reliability_page_is_up_to_date(outcomes: dict[str, Outcome]) -> None:
    text = page(outcomes)
    if os.environ.get("UPDATE_RELIABILITY_TABLE") == "1":
        PAGE.write_text(text)
    assert PAGE.read_text() == text, (
        f"{PAGE.relative_to(ROOT)} is out of date: rerun with UPDATE_RELIABILITY_TABLE=1"
    )
