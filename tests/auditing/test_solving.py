"""An audit on probes the model cannot do says so, before any conclusion about heads: colliding
token layouts are refused, and a model that does not solve its probes (a wrong EoI id, a missing
task token or BOS, another template) gets that verdict, exit status 3 on the command line, and
the fact in the JSON and the HTML report. Models that solve their task are never flagged."""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES

import iteration_heads as ih
from iteration_heads import zoo
from iteration_heads.auditing import (
    EXIT_UNSOLVED,
    TaskWriting,
    audit,
    chance_accuracy,
    needed_accuracy,
    open_subject,
    probe_accuracy,
)
from iteration_heads.cli import main
from iteration_heads.viz import audit_report_html

TOKEN_MODEL = FIXTURES / "gpt2_polynomial"  # symbols 0..10, EoI 11, EoS 12, task token 15
TEXT_MODEL = FIXTURES / "gpt2_text_polynomial"
TEMPLATE = "<s> {inputs} {eoi} {states} </s>"
SYMBOLS = ",".join(map(str, range(11)))
IDS = {v: v for v in range(11)}
RIGHT = {"symbol_tokens": tuple(range(11)), "eoi_token": 11, "eos_token": 12, "task_token": 15}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bos_token": 11}, "11 is both the EoI token and the BOS token"),
        ({"eoi_token": 5}, "5 is both the EoI token and the token of symbol 5"),
        ({"eoi_token": 12}, "12 is both the EoI token and the EoS token"),
        ({"task_token": 12}, "12 is both the EoS token and the task token"),
        (
            {"symbol_tokens": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9)},
            "token of symbol 9 and the token of",
        ),
    ],
)
def test_colliding_token_layouts_are_refused(changes, message) -> None:
    with pytest.raises(ih.IterationHeadsError, match=message):
        TaskWriting(**{**RIGHT, **changes}).encoding(None)


def test_colliding_layouts_are_refused_by_audit_and_on_the_command_line(capsys) -> None:
    model = zoo.load("polynomial_paper")
    colliding = ih.Probes.from_task(
        "polynomial", symbol_to_token=IDS, eoi_token=11, bos_token=11, max_len=4, n=32
    )
    with pytest.raises(ih.IterationHeadsError, match="both the EoI token and the BOS token"):
        audit(model, colliding)
    argv = ["audit", str(TOKEN_MODEL), "--symbol-tokens", SYMBOLS, "--eoi-token", "11"]
    assert main([*argv, "--bos-token", "11"]) == 2
    assert "both the EoI token and the BOS token" in capsys.readouterr().err
    assert main(["audit", str(TEXT_MODEL), "--template", TEMPLATE, "--eoi-text", "7"]) == 2
    assert "'7' is both the EoI text and the text of symbol 7" in capsys.readouterr().err


@pytest.mark.parametrize(
    "wrong",
    [
        {"task_token": None},  # the model was trained with its task token
        {"eoi_token": 13, "task_token": 15},  # an unused id as EoI
        {"eoi_token": 12, "eos_token": 11},  # EoI and EoS swapped
    ],
)
def test_a_model_that_does_not_solve_its_probes_gets_no_verdict_about_heads(wrong) -> None:
    subject = open_subject(TOKEN_MODEL, TaskWriting(**{**RIGHT, **wrong}), n_probes=128)
    result = audit(subject.model, subject.probes)
    assert not result.solves_probes and result.sequence_accuracy == 0.0
    assert result.probe_accuracy < needed_accuracy(1 / 11) and result.chance == pytest.approx(
        1 / 11
    )
    assert result.verdict.startswith(
        f"the model does not solve these probes: accuracy {result.probe_accuracy:.2f} "
        "(whole chains 0.00) against 0.09 by chance, 0.55 needed"
    )
    assert "— check the layout" in result.verdict
    assert result.ablation is None and result.route is None
    found = result.to_dict()
    assert found["solves_probes"] is False and found["probe_accuracy"]["chance"] == 1 / 11


def test_the_command_exits_3_and_says_why(tmp_path, capsys) -> None:
    argv = ["audit", str(TOKEN_MODEL), "--symbol-tokens", SYMBOLS, "--eoi-token", "11"]
    argv += ["--eos-token", "12", "--n-probes", "128"]
    assert main([*argv, "--task-token", "15", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["solves_probes"] is True
    report = tmp_path / "audit.html"
    assert main([*argv, "--json", "--report", str(report)]) == EXIT_UNSOLVED == 3
    out = capsys.readouterr().out
    found = json.loads(out.splitlines()[0])
    assert found["solves_probes"] is False and found["verdict"].startswith("the model does not")
    assert found["used"]["ablation"] is None
    page = report.read_text()
    assert "does NOT solve its probes" in page and "the model does not solve these probes" in page
    assert main(["audit", str(TEXT_MODEL), "--template", "{inputs} {eoi} {states} </s>"]) == 3


def test_models_that_solve_their_task_are_never_flagged() -> None:
    """Every shipped model trained with a chain of thought, and both fixtures."""
    measured = {}
    for name in zoo.names():
        if name == "ontology" or not zoo.info(name).get("cot", True):
            continue  # ontology: no iteration probes; polynomial_nocot: 0.12 test accuracy
        model = zoo.load(name)
        probes = ih.Probes.from_model(model, n=128)
        measured[name] = probe_accuracy(model, probes)[0], chance_accuracy(probes)
    for folder, writing in (
        (TOKEN_MODEL, TaskWriting(**RIGHT)),
        (TEXT_MODEL, TaskWriting(template=TEMPLATE)),
    ):
        subject = open_subject(folder, writing, n_probes=128)
        measured[folder.name] = probe_accuracy(subject.model, subject.probes)[0], 1 / 11
    assert len(measured) >= 6
    for name, (accuracy, chance) in measured.items():
        assert accuracy >= 0.95 and accuracy >= needed_accuracy(chance), name


def test_the_nocot_model_does_not_solve_polynomial_and_says_so() -> None:
    result = audit(zoo.load("polynomial_nocot"), n_probes=128)
    assert not result.solves_probes and "does not solve these probes" in result.verdict


def test_a_report_for_a_model_that_does_not_solve_its_probes() -> None:
    subject = open_subject(TOKEN_MODEL, TaskWriting(**{**RIGHT, "task_token": None}), n_probes=64)
    page = audit_report_html(subject, audit(subject.model, subject.probes))
    assert "does NOT solve its probes" in page and "nothing to ablate" in page


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_probes": 7.5}, "n_probes=7.5, expected an integer >= 1"),
        ({"n_probes": True}, "n_probes=True, expected an integer >= 1"),
        ({"n_probes": 0}, "n_probes=0, expected an integer >= 1"),
        ({"max_controls": -1}, "max_controls=-1, expected an integer >= 0"),
        ({"max_controls": 2.0}, "max_controls=2.0, expected an integer >= 0"),
        ({"route_probes": 0}, "route_probes=0, expected an integer >= 1"),
        ({"batch_size": 0}, "batch_size=0, expected an integer >= 1"),
        ({"control_probes": 0}, "control_probes=0, expected an integer >= 1"),
        ({"control_probes": "all"}, "control_probes='all', expected an integer >= 1"),
        ({"kind": "median"}, "kind='median', expected one of zero, mean, resample"),
        ({"route": "yes"}, "route='yes', expected True or False"),
        ({"probes": "abc"}, "probes must be Probes, got str"),
    ],
)
def test_audit_arguments_are_checked_before_any_work(options, message) -> None:
    with pytest.raises(ih.IterationHeadsError, match=message.replace("(", r"\(")):
        audit(zoo.load("polynomial_paper"), **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_probes": 2.5}, "n_probes=2.5"),
        ({"max_len": True}, "max_len=True"),
        ({"seed": -1}, "seed=-1"),
        ({"writing": "polynomial"}, "writing must be a TaskWriting"),
    ],
)
def test_open_subject_arguments_are_checked(options, message) -> None:
    with pytest.raises(ih.IterationHeadsError, match=message):
        open_subject("polynomial_paper", **options)
