"""The Llama PrOntoQA fixture (tests/fixtures/llama_prontoqa: rotary positions, RMSNorm,
grouped-query attention, a byte-level BPE tokenizer; built by tests/fixtures/make_fixtures.py)
against its own ground truth, computed there with forward hooks on the transformers model:
it loads as a bridge with transformers' logits, its step accuracy is what its metadata says,
and the library's answer writers (text PrOntoQA prompts, both centrings) and the bridge's
attention patterns give the ground truth's top heads, per-head DLA, segment DLA and attention
shares by segment.

Tolerances: the ground truth and the library compute the same float32 sums in different orders
(transformers' eager attention and hooks vs the bridge's cache), and the ground truth stores
per-head DLA rounded to 1e-6. Per-head DLA reaches ~10 at the label, so float32 rounding is
~1e-6 (measured: at most 1.4e-6 per prompt, 5e-7 on the means); 1e-4 leaves a margin for other
BLAS builds and nothing else: a convention error moves values by 1e-1 (leaving the final
norm's weight out changes the mean DLA by up to 0.127), reading the wrong key/value head or
the foils of another step by more. Attention shares by segment: 0.05 (the brief's bound; they
agree to float32 rounding when the segments are the same tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from iteration_heads.cli import main
from iteration_heads.model import load_hf_folder
from iteration_heads.pathways.text_ontology import prontoqa_prompts, prontoqa_records
from iteration_heads.pathways.writers import answer_writers
from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa

FOLDER = Path(__file__).parents[1] / "fixtures" / "llama_prontoqa"
SUBTASKS = ("decision", "copy", "induction", "answer")
LABELS = ("all", *SUBTASKS)
TOP = 3
DLA_TOLERANCE = 1e-4
SHARE_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((FOLDER / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads((FOLDER / "metadata.json").read_text())


@pytest.fixture(scope="module")
def loaded():
    return load_hf_folder(FOLDER)  # checks the bridge's logits against transformers'


@pytest.fixture(scope="module")
def held_out(truth) -> list:
    spec = truth["problems"]
    config = ProntoQAConfig(
        **{k: tuple(v) if k == "hops" else v for k, v in spec["config"].items()}
    )
    drawn = make_prontoqa(config, spec["drawn"], seed=spec["seed"])
    return [drawn[i] for i in spec["indices"]]


@pytest.fixture(scope="module")
def prompts(loaded, held_out):
    return prontoqa_prompts(held_out, loaded[1], subtasks=SUBTASKS)


@pytest.fixture(scope="module")
def writers(loaded, prompts) -> dict:
    return {c: answer_writers(loaded[0], prompts, centre=c) for c in ("vocab", "foils")}


def top_heads(values: torch.Tensor, k: int = TOP) -> set[tuple[int, int]]:
    n_heads = values.shape[1]
    order = values.flatten().argsort(descending=True)[:k].tolist()
    return {(i // n_heads, i % n_heads) for i in order}


def test_fixture_is_a_small_llama_with_its_tokenizer(loaded, prompts, truth, metadata):
    from transformers import AutoModelForCausalLM

    bridge, tokenizer = loaded
    assert (bridge.cfg.n_layers, bridge.cfg.n_heads, bridge.cfg.d_model) == (4, 8, 128)
    assert metadata["architecture"] == "LlamaForCausalLM" and tokenizer.bos_token == "<s>"
    assert sum(f.stat().st_size for f in FOLDER.iterdir()) < 10e6
    names = [tokenizer.convert_ids_to_tokens(tokenizer(" kind")["input_ids"])]
    assert names == [["<s>", "Ġk", "in", "d"]]  # a name of several tokens, the space glued on
    model = AutoModelForCausalLM.from_pretrained(FOLDER, local_files_only=True).eval()
    tokens = prompts.clean[:16]
    with torch.no_grad():
        assert torch.allclose(bridge(tokens), model(tokens).logits, atol=1e-4)
    # the studied positions and answers are the ground truth's (found there from the offsets)
    assert prompts.position.tolist() == [s["position"] for s in truth["steps"]]
    assert prompts.answer.tolist() == [s["answer"] for s in truth["steps"]]
    assert list(prompts.labels) == [s["subtask"] for s in truth["steps"]]


def test_step_accuracy_is_the_metadata_figure(loaded, prompts, metadata):
    with torch.no_grad():
        logits = loaded[0](prompts.clean)
    rows = torch.arange(len(prompts))
    right = logits[rows, prompts.position].argmax(-1) == prompts.answer
    expected = metadata["held_out_accuracy"]["first_token"]
    for subtask in SUBTASKS:
        mine = right[[i for i, label in enumerate(prompts.labels) if label == subtask]]
        assert float(mine.float().mean()) == pytest.approx(expected[subtask], abs=1e-4)
    assert min(expected.values()) >= 0.85


@pytest.mark.parametrize("centre", ["vocab", "foils"])
def test_answer_writers_match_the_ground_truth(writers, truth, centre):
    result = writers[centre]
    assert result.centre == centre
    for label in LABELS:
        mine, theirs = truth["labels"][label], result.dla[label]
        expected = torch.tensor(mine[centre]["dla"])
        assert top_heads(theirs) == top_heads(expected), label
        assert torch.allclose(theirs, expected, atol=DLA_TOLERANCE), label
        split = torch.tensor(mine[centre]["segment_dla"])
        assert torch.allclose(result.segment_dla[label], split, atol=DLA_TOLERANCE), label
        assert {tuple(h[:2]) for h in mine[centre]["top_heads"][:TOP]} == top_heads(expected)
    per_step = torch.tensor([s[f"dla_{centre}"] for s in truth["steps"]])
    assert (result.per_prompt - per_step).abs().max() < DLA_TOLERANCE


def test_the_two_centrings_differ(writers, truth):
    """The foils change the answer writers (else the comparison above would not tell the two
    centrings apart)."""
    for label in ("copy", "induction"):
        vocab, foils = writers["vocab"].dla[label], writers["foils"].dla[label]
        assert (vocab - foils).abs().max() > 0.1
        assert truth["labels"][label]["vocab"]["dla"] != truth["labels"][label]["foils"]["dla"]


def test_attention_shares_by_segment(loaded, prompts, truth):
    bridge = loaded[0]
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(bridge.cfg.n_layers)]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(prompts.clean, names_filter=lambda n: n in names)
    rows = torch.arange(len(prompts))
    segments = torch.where(prompts.segments < 0, len(prompts.segment_names), prompts.segments)
    one_hot = torch.nn.functional.one_hot(segments, len(prompts.segment_names) + 1).float()
    shares = torch.stack(
        [torch.einsum("bhk,bks->bhs", cache[n][rows, :, prompts.position], one_hot) for n in names],
        1,
    )  # [prompt, layer, head, segment]
    assert truth["segments"] == [*prompts.segment_names, "other"]
    for label in LABELS:
        keep = [i for i, lab in enumerate(prompts.labels) if label in ("all", lab)]
        expected = torch.tensor(truth["labels"][label]["attention_share"])
        assert (shares[keep].mean(0) - expected).abs().max() < SHARE_TOLERANCE, label


def test_the_pathways_command_finds_the_ground_truth_writers(
    capsys, tmp_path, loaded, held_out, truth
):
    records = prontoqa_records(held_out, loaded[1], subtasks=SUBTASKS)
    path = tmp_path / "held_out.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["pathways", str(FOLDER), "--prompts", str(path), "--analyses", "writers"]
    status = main([*argv, "--centre", "foils", "--json", "--threads", "1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    result = json.loads(out)["results"]["writers"]
    assert result["centre"] == "foils" and result["n_prompts"] == len(truth["steps"])
    for label in LABELS:
        dla, expected = result["labels"][label]["dla"], truth["labels"][label]["foils"]["dla"]
        assert top_heads(torch.tensor(dla)) == top_heads(torch.tensor(expected)), label
        assert torch.allclose(torch.tensor(dla), torch.tensor(expected), atol=DLA_TOLERANCE)
