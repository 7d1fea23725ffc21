"""``iteration-heads pathways``: the analyses on the zoo ontology model (generated problems, token
and text JSON Lines records) and on a HuggingFace folder with text records; JSON output, the
one-file report with every figure, and ``report`` refusing HuggingFace folders in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from iteration_heads import zoo
from iteration_heads.cli import main
from iteration_heads.experiments.ontology_study import model_ontology
from iteration_heads.pathways import ontology_prompts
from iteration_heads.pathways.jsonl import write_prompts
from iteration_heads.pathways.text_ontology import ontology_records
from iteration_heads.tasks import make_ontology_problems
from iteration_heads.viz.pathway_report import FIGURE_CLASS

FIXTURES = Path(__file__).parent / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["pathways", *argv, "--threads", "1"])
    out, err = capsys.readouterr()
    return status, out, err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def problems():
    return make_ontology_problems(
        model_ontology(zoo.load("ontology")), 2, seed=10_000, kind="fictional"
    )


def test_generated_problems_and_json(capsys):
    record = as_json(capsys, "ontology", "--ontology", "--n", "2", "--analyses", "writers,lens")
    assert record["source"] == "library"
    assert set(record["results"]) == {"writers"}
    assert "no prior" in record["skipped"]["lens"]  # skipped, with its reason
    assert record["prompts"]["labels"] == ["copy", "decision", "induction"]
    assert record["prompts"]["n"] == len(
        ontology_prompts(make_ontology_problems(
            model_ontology(zoo.load("ontology")), 2, seed=10_000, kind="fictional"))
    )  # fmt: skip


def test_token_and_text_records_match_generated_problems(capsys, problems, tmp_path):
    tokens = write_prompts(ontology_prompts(problems), tmp_path / "tokens.jsonl")
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps(r) + "\n" for r in ontology_records(problems)))
    options = ("--analyses", "writers", "--solved", "step")
    by_tokens = as_json(capsys, "ontology", "--prompts", str(tokens), *options)
    by_text = as_json(capsys, "ontology", "--prompts", str(text), *options)  # ontology_tokenizer
    generated = as_json(capsys, "ontology", "--ontology", "--n", "2", *options)
    assert by_tokens["prompts"]["n"] == by_text["prompts"]["n"] == generated["prompts"]["n"]
    assert by_tokens["solved"] == by_text["solved"] == generated["solved"]
    dla = [r["results"]["writers"]["labels"]["all"]["dla"] for r in (by_tokens, generated)]
    assert torch.allclose(torch.tensor(dla[0]), torch.tensor(dla[1]), atol=1e-5)  # same prompts


def test_huggingface_folder_with_text_records(capsys, tmp_path):
    records = [
        {"text": f"{a} {b} = {a} {(a * b + 1) % 11}", "step": {"char": 8},
         "corrupted": {"span": [2, 3], "with": str((b % 9) + 1)}, "label": "s2",
         "segments": [{"name": "input", "span": [0, 3]}, {"name": "cot", "span": [6, 9]}]}
        for a, b in [(3, 5), (2, 7), (4, 4), (6, 2)]
    ]  # fmt: skip
    path = tmp_path / "poly.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    record = as_json(
        capsys, str(FIXTURES / "gpt2_text_polynomial"), "--prompts", str(path),
        "--analyses", "patching,writers,segments",
    )  # fmt: skip
    assert record["source"] == "huggingface"
    assert set(record["results"]) == {"patching", "writers", "segments"}
    assert record["prompts"]["n"] == 4


def test_every_analysis_and_the_report(capsys, tmp_path):
    out = tmp_path / "pathways.html"
    status, text, err = run(
        capsys, "ontology", "--ontology", "--n", "2", "--solved", "sequence",
        "--prior", "context-free", "--n-random", "2", "--n-traced", "2", "--report", str(out),
    )  # fmt: skip
    assert status == 0, err
    assert "kept the prompts solved by sequence" in text and "skipped" not in text
    for key in ("== patching", "== writers", "== lens", "== segments", "== pruning",
                "== checks: noising", "== checks: ablation", "== flow"):  # fmt: skip
        assert key in text
    page = out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["pathways.html"]  # one file
    for key in ("patching", "writers", "lens", "segments", "pruning", "flow-example"):
        assert f'class="{FIGURE_CLASS}" id="figure-{key}"' in page
    assert page.count(f'class="{FIGURE_CLASS}"') == 6
    assert page.count("plotly.js v") == 1 and "<script src=" not in page


def test_report_refuses_a_huggingface_folder_in_one_line(capsys, tmp_path):
    folder = FIXTURES / "gpt2_polynomial"
    status = main(["report", str(folder), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "HuggingFace checkpoint folder" in err and "iteration-heads pathways" in err
    assert "iteration-heads audit" in err and "ModelConfig" not in err
    assert list(tmp_path.iterdir()) == []


def test_generated_natural_language_problems_on_the_llama_fixture(capsys):
    folder = str(FIXTURES / "llama_prontoqa")  # trained on the "qa" format, 1-2 hops
    record = as_json(capsys, folder, "--ontology", "--format", "qa", "--n", "2",
                     "--solved", "step", "--analyses", "writers")  # fmt: skip
    assert record["source"] == "huggingface" and record["prompts"]["n"] > 0
    assert record["prompts"]["from"] == "2 generated PrOntoQA problems (qa format)"
    assert record["results"]["writers"]["centre"] == "foils"
    status, _, err = run(capsys, "ontology", "--ontology", "--format", "qa")
    assert status == 2 and "--format applies to HuggingFace models" in err


def test_exact_patching_in_shards_equals_one_process(capsys):
    options = ("ontology", "--ontology", "--n", "2", "--analyses", "patching", "--method", "exact")
    one = as_json(capsys, *options)["results"]["patching"]
    shards = as_json(capsys, *options, "--shards", "3", "--jobs", "2")["results"]["patching"]
    assert one.pop("n_forward") <= shards.pop("n_forward")  # a shard packs its own heads' rows
    assert shards == one
