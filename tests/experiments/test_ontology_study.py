"""The multi-hop study end to end on the shipped ontology model, small: every analysis runs, the
claims are assessed, the results are written (strict JSON, markdown, an offline page), and
models of another task or bad options are refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from iteration_heads import zoo
from iteration_heads.cli import main
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.ontology_results import ontology_claims, write_ontology_results
from iteration_heads.experiments.ontology_study import (
    StudyOptions,
    contradiction_prompts,
    model_ontology,
    prior_check,
    solved,
    study_ontology,
)
from iteration_heads.pathways import ontology_prompts, pruned_logits
from iteration_heads.tasks import make_ontology_problems

SMALL = StudyOptions(
    n_problems=8, n_reference=10, n_random=3, n_traced=3, n_probing=400, n_horizon=4, seed=1
)


@pytest.fixture(scope="module")
def model():
    return zoo.load("ontology")


@pytest.fixture(scope="module")
def study(model):
    return study_ontology(model, SMALL)


def test_every_analysis_runs_on_solved_held_out_steps(study) -> None:
    assert set(study.evaluations) == {"fictional", "world", "contradicting"}
    assert all(e.summary()["accuracy"] >= 0.9 for e in study.evaluations.values())
    assert set(study.patching.groups) >= {"decision", "copy", "induction"}
    assert study.pruning["ablation"].agreement[-1] == 1.0  # every head kept: the full model
    assert len(study.flow.graphs) == SMALL.n_traced
    assert {"answer", "all"} == set(study.pathways)
    assert study.writers.writers()  # someone writes the answer
    assert study.prior_check.full == 0.0  # solved contradicting steps follow the context
    assert set(study.probes) == {"model", "random weights"}
    assert study.horizon is not None and study.horizon.prefixes == (0, 1, 2, 3, 4)
    assert study.horizon.followed[:, study.horizon.rows.index("all")].eq(1).all()


def test_claims_are_assessed_and_the_results_written(study, tmp_path) -> None:
    claims = ontology_claims(study)
    assert len(claims) >= 8 and all(c["holds"] in ("yes", "partly", "no") for c in claims)
    assert claims[0]["holds"] == "yes"  # the model solves held-out multi-hop questions
    record = write_ontology_results(study, tmp_path, command="test", train_seconds=1.0,
                                    study_seconds=2.0)  # fmt: skip
    loaded = json.loads((tmp_path / "ontology.json").read_text())
    assert loaded["claims"] == record["claims"]
    assert (
        "| claim | Dutta et al. (Llama-2 7B) | ours | holds? |"
        in (tmp_path / "ontology.md").read_text()
    )
    page = (tmp_path / "ontology.html").read_text()
    assert 'src="plotly.min.js"' in page and "https://" not in page.split("<body>")[1][:200]
    assert (tmp_path / "plotly.min.js").is_file()
    assert page.count("<h2>") == 10 and 'class="note"' not in page  # ten figures, none failed
    assert [c["claim"].split(":")[0] for c in claims[-2:]] == [
        "the relation between two words of the context (related / unrelated) is readable from "
        "the residual stream only non-linearly",
        "horizon",
    ]


def test_contradicting_prompts_and_the_prior_check(model) -> None:
    problems = make_ontology_problems(model_ontology(model), 12, seed=3, kind="contradicting")
    prompts, prior = contradiction_prompts(model, problems)
    assert bool((prior != prompts.answer).all()) and bool(solved(model, prompts).all())
    writers = [(3, 1), (3, 3)]
    check = prior_check(model, prompts, prior, writers, problems.tokens, n_random=2, seed=0)
    assert check.full == 0.0 and len(check.random) == 2 and check.n_prompts == len(prompts)
    # by hand: the named heads ablated, the share of prompts answered with the world's token
    everything = [(la, h) for la in range(4) for h in range(4)]
    keep = [h for h in everything if h not in writers]
    hand = pruned_logits(model, prompts, keep, problems.tokens).argmax(-1) == prior
    assert check.ablated == pytest.approx(float(hand.float().mean()))


def test_other_models_and_bad_options_are_refused(model) -> None:
    with pytest.raises(IterationHeadsError, match="expected an ontology model"):
        study_ontology(zoo.load("polynomial_paper"), SMALL)
    with pytest.raises(IterationHeadsError, match="n_problems"):
        StudyOptions(n_problems=0)
    with pytest.raises(IterationHeadsError, match="options must be StudyOptions"):
        study_ontology(model, {"n_problems": 3})
    fictional = make_ontology_problems(model_ontology(model), 2, seed=0, kind="fictional")
    prompts = ontology_prompts(fictional)
    assert bool(solved(model, prompts).all())
    wrong = dataclasses.replace(
        prompts, answer=(prompts.answer + 1) % model.cfg.d_vocab, foils=None
    )  # the new answer may be one of the foils
    assert not bool(solved(model, wrong).any())


def test_the_command_line_lists_the_study(capsys) -> None:
    assert main(["reproduce", "--list"]) == 0
    assert "ontology " in capsys.readouterr().out
    assert main(["reproduce", "ontology", "--seeds", "1"]) == 2  # a usage error
    assert (
        "--seeds, --epochs, --extend and --arm do not apply to ontology" in capsys.readouterr().err
    )


def test_the_report_of_an_ontology_model_is_its_pathways_page(tmp_path, capsys) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "ontology", "-o", str(out), "--n-probes", "16"]) == 0
    page = out.read_text()
    assert page.count("<h2>") == 10 and 'class="note"' not in page and "plotly.js v" in page
    assert main(["report", "ontology", "-o", str(out), "--task", "parity"]) == 2
    assert "--task and --length do not apply" in capsys.readouterr().err
