"""Every result object has the same face: ``to_dict()`` (strict JSON), a readable ``repr`` (its
``format()``), and an HTML view for notebooks that loads nothing."""

from __future__ import annotations

import json
import re

import pytest
from helpers import tiny_spec

import iteration_heads as ih
from iteration_heads.cli import main
from iteration_heads.detection import spread_over_lengths
from iteration_heads.model import data_config
from iteration_heads.runs import run


@pytest.fixture(scope="module")
def model():
    return ih.load("polynomial_paper")


@pytest.fixture(scope="module")
def split(model):
    test = ih.make_dataset(data_config(model)).test
    return test.select(spread_over_lengths(test.lengths, 96))


def results(model, split, tmp_path_factory) -> dict[str, object]:
    longest = split.for_length(8)
    bad = ih.corrupt(longest, "length", task="polynomial", shift=-1)
    return {
        "Evaluation": ih.evaluate(model, split),
        "DetectionReport": ih.detect(model, n_probes=96),
        "Effect": ih.ablation_effect(model, [(1, 0)], split),
        "Verification": ih.verify(model, data=split),
        "ActivationPatching": ih.activation_patching(
            model, longest, ih.corrupt(longest, "input", task="polynomial")
        ),
        "PathPatching": ih.path_patch(model, longest, bad, sender=(0, 0), receiver=(1, 0)),
        "PositionShift": ih.position_shift(model, split, task="polynomial"),
        "RunResult": run(tiny_spec(), tmp_path_factory.mktemp("runs")),
    }


def test_every_result_has_the_same_face(model, split, tmp_path_factory) -> None:
    found = results(model, split, tmp_path_factory)
    expected = ["Evaluation", "DetectionReport", "Effect", "Verification", "ActivationPatching"]
    expected += ["PathPatching", "PositionShift", "RunResult"]
    assert sorted(found) == sorted(expected)
    for name, result in found.items():
        assert type(result).__name__ == name
        record = json.loads(result.to_json())  # strict JSON: no NaN, no tensors
        assert isinstance(record, dict) and record, name
        text = repr(result)
        assert text == result.format() and "\n" not in text.split("\n")[0], name
        assert not re.match(rf"{name}\(\w+=", text), f"{name}: the dataclass repr, {text[:80]}"
        page = result._repr_html_()
        assert page.startswith("<div>") and "<script" not in page and "http" not in page, name
        first = text.split("\n")[0]
        assert re.sub(r"\s+", " ", first[:40]) in re.sub(r"\s+", " ", page.replace("&gt;", ">")), (
            name
        )


def test_evaluation_text_and_json_are_its_own(model, split, capsys) -> None:
    """The CLI prints the evaluation's own text and JSON."""
    result = ih.evaluate(model, split)
    per_head = result.to_dict(per_head=True)
    assert [h["layer"] for h in per_head["heads"]] == [0, 1]
    assert "eoi" not in per_head and "eoi" in result.to_dict()
    assert main(["eval", "polynomial_paper", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["task"] == "polynomial" and len(record["heads"]) == 2
    assert main(["eval", "polynomial_paper"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == ih.evaluate(model, ih.make_dataset(data_config(model)).test).format().splitlines()[-1]
    )
