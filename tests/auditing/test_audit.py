"""Auditing models this library did not make: a GPT-2 trained outside it on polynomial iteration
written as text (tests/fixtures/make_fixtures.py, ``<s> x_1..x_L = s_1..s_L </s>``, a tokenizer
built locally), random models of four architectures, and bad input."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
import transformers as hf
from helpers import FIXTURES

import iteration_heads as ih
from iteration_heads.auditing import (
    TaskWriting,
    audit_checkpoints,
    longest_fitting,
    open_subject,
    position_route,
)
from iteration_heads.cli import main
from iteration_heads.detection.encoding import TextEncoding
from iteration_heads.model import load_hf_folder

TEXT_MODEL = FIXTURES / "gpt2_text_polynomial"
TEMPLATE = "<s> {inputs} {eoi} {states} </s>"
TOKENS = {"symbol_tokens": tuple(range(4, 15)), "eoi_token": 3, "bos_token": 0, "eos_token": 1}


@pytest.fixture(scope="module")
def text_model():
    model, tokenizer = load_hf_folder(TEXT_MODEL)
    return model, tokenizer


@pytest.fixture(scope="module")
def text_probes(text_model):
    _, tokenizer = text_model
    return ih.Probes.from_text(tokenizer, "polynomial", template=TEMPLATE, max_len=8, n=512)


@pytest.fixture(scope="module")
def token_probes():
    return ih.Probes.from_task(
        "polynomial",
        symbol_to_token={v: t for v, t in enumerate(TOKENS["symbol_tokens"])},
        eoi_token=TOKENS["eoi_token"],
        bos_token=TOKENS["bos_token"],
        eos_token=TOKENS["eos_token"],
        max_len=8,
        n=512,
    )


def test_text_and_token_probes_agree(text_probes, token_probes) -> None:
    assert torch.equal(text_probes.tokens, token_probes.tokens)
    assert torch.equal(text_probes.targets, token_probes.targets)
    for name in ("input_positions", "query_positions", "state_positions", "eoi"):
        assert torch.equal(getattr(text_probes, name), getattr(token_probes, name)), name


def test_spread_iteration_heads_without_an_eoi_head_are_found_used_and_routed(
    text_model, text_probes
) -> None:
    model, _ = text_model
    result = ih.audit(model, text_probes)
    report = result.report
    # layer 1: iteration heads in two heads of layer 1, no EoI head
    assert report.iteration is not None and report.iteration.layer == 1
    assert report.iteration.heads == (0, 1)
    assert report.found("eoi") == [] and not report.has_iteration_circuit
    assert report.verdict.startswith("iteration heads without an EoI head")
    # layer 2: ablating them breaks the task, as many other heads do not; the state is read
    assert result.used and report.has_iteration_heads
    assert report.state_sensitivity >= 0.9
    table = result.ablation.table
    assert table.loc[0, "accuracy"] < 0.05
    assert table.loc[table["role"] == "control", "accuracy"].mean() > 0.8
    # layer 3: not an EoI head; the route's components are named with figures
    route = result.route
    assert route.measured and not route.is_eoi_head
    assert route.components[0] == "L0H1" and set(route.components) >= {"L0H1", "L0 MLP"}
    assert route.table.loc[0, "share"] > 0.4 and route.total_effect > 0.5
    record = json.loads(result.to_json())
    assert record["iteration_heads"]["found"] and record["used"]["used"]
    assert record["position_route"]["is_eoi_head"] is False
    assert "not an EoI head — L0H1" in result.verdict


def test_the_paper_circuit_is_routed_through_its_eoi_head() -> None:
    model = ih.load("polynomial_paper")
    result = ih.audit(model, n_probes=256)
    assert result.used and result.route.is_eoi_head and result.route.components[0] == "L0H0"
    assert result.report.has_iteration_circuit


def test_copying_is_not_used_as_iteration() -> None:
    result = ih.audit(ih.load("copy"), n_probes=256)
    assert result.has_iteration_heads and not result.used  # a positional read-out
    assert result.report.state_sensitivity < 0.5


def test_interventions_run_on_a_huggingface_model_from_probes_alone(
    text_model, token_probes
) -> None:
    model, _ = text_model
    probes = token_probes.select(torch.arange(0, 512, 4))
    check = ih.verify(model, data=probes)
    # no EoI head: the iteration heads are verified alone (interventions/verification.py)
    assert check.verdict.startswith("confirmed (no EoI head found, iteration heads alone)")
    effect = ih.ablation_effect(model, [(1, 0), (1, 1)], probes)
    assert effect.clean.mean("accuracy") > 0.99 and effect.accuracy < 0.05
    longest = probes.select(probes.lengths == 8)
    patched = ih.activation_patching(model, longest, ih.corrupt(longest, "input"))
    assert patched.values.shape == (3, longest.width, 2)
    assert patched.top(1)["layer"].item() >= 1
    shifted = ih.position_shift(
        model, probes, eoi_heads=[(0, 1)], iteration_heads=[(1, 0), (1, 1)], shift=1
    )
    assert len(shifted.table) > 50 and shifted.fraction_clean_on_target > 0.9


def test_the_position_route_rejects_a_first_layer_receiver(text_model, token_probes) -> None:
    model, _ = text_model
    with pytest.raises(ih.IterationHeadsError, match="one layer after the first"):
        position_route(model, token_probes, [(0, 0)])


def test_audit_command_gives_the_same_verdict_from_text_and_from_tokens(capsys) -> None:
    assert main(["audit", str(TEXT_MODEL), "--template", TEMPLATE, "--json"]) == 0
    from_text = json.loads(capsys.readouterr().out)
    ids = ",".join(map(str, TOKENS["symbol_tokens"]))
    argv = ["audit", str(TEXT_MODEL), "--symbol-tokens", ids, "--eoi-token", "3"]
    assert main([*argv, "--bos-token", "0", "--eos-token", "1", "--json"]) == 0
    from_tokens = json.loads(capsys.readouterr().out)
    assert from_text["verdict"] == from_tokens["verdict"]
    assert from_text["detection"]["heads"] == from_tokens["detection"]["heads"]
    assert from_text["position_route"]["components"][0] == "L0H1"


def test_audit_command_writes_a_report_for_a_foreign_model(tmp_path, capsys) -> None:
    out = tmp_path / "audit.html"
    argv = ["audit", str(TEXT_MODEL), "--template", TEMPLATE, "--n-probes", "128"]
    assert main([*argv, "--report", str(out)]) == 0
    page = out.read_text()
    assert "not an EoI head" in page and page.count("plotly.js v") == 1
    assert "<h2>3. Position route</h2>" in page and 'class="note">skipped' not in page
    remote = re.compile(r"<(?:script|img|iframe)[^>]*\ssrc=\"https?:|<link[^>]*\shref=\"https?:")
    assert not remote.search(page)  # nothing loads from the network


def test_audit_across_checkpoints(tmp_path, capsys) -> None:
    writing = TaskWriting(template=TEMPLATE)
    result = audit_checkpoints(TEXT_MODEL / "checkpoints", writing, n_probes=128)
    assert list(result.table["checkpoint"]) == [f"checkpoint-{s}" for s in range(320, 1601, 320)]
    assert list(result.table["epoch"]) == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert result.formed_at == {"checkpoint": "checkpoint-1280", "step": 1280, "epoch": 40.0}
    peak = [v[1] for v in result.table["iteration_peakiness"]]
    assert peak[0] < 0.3 and peak[-1] > 0.95 and peak == sorted(peak)
    figure = tmp_path / "curves.html"
    argv = ["audit", str(TEXT_MODEL / "checkpoints"), "--template", TEMPLATE]
    assert main([*argv, "--n-probes", "64", "--figure", str(figure)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("iteration heads formed at checkpoint-1280")
    assert figure.is_file() and "heads formed" in figure.read_text()


def random_model(architecture: str, shape: tuple[int, int, int], init: float):
    layers, heads, width = shape
    torch.manual_seed(layers * 100 + heads * 10 + width)
    common = {"vocab_size": 32, "initializer_range": init}
    if architecture == "gpt2":
        config = hf.GPT2Config(n_layer=layers, n_head=heads, n_embd=width, n_positions=40, **common)
        return hf.GPT2LMHeadModel(config)
    options = {
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 2 * width,
        "max_position_embeddings": 40,
        **common,
    }
    if architecture == "neox":
        return hf.GPTNeoXForCausalLM(hf.GPTNeoXConfig(**options))
    if architecture == "llama":
        return hf.LlamaForCausalLM(hf.LlamaConfig(num_key_value_heads=heads, **options))
    return hf.Qwen2ForCausalLM(hf.Qwen2Config(num_key_value_heads=heads, **options))


def test_random_models_of_four_architectures_never_iterate(token_probes) -> None:
    """GPT-2, GPT-NeoX (Pythia), Llama and Qwen2, three shapes each, with their own small
    initialisation and with a large one (peaky, random attention)."""
    probes = token_probes.select(torch.arange(0, 512, 2))
    largest = {"head": 0.0, "layer sum": 0.0}
    for architecture in ("gpt2", "neox", "llama", "qwen2"):
        for shape in ((2, 2, 32), (3, 4, 64), (4, 2, 64)):
            for init in (0.02, 0.5):
                model = ih.wrap_hf_model(random_model(architecture, shape, init))
                report = ih.detect(model, probes)
                assert report.iteration is None, (architecture, shape, init, report.verdict)
                assert not report.has_iteration_heads and not report.has_iteration_circuit
                largest["head"] = max(largest["head"], report.heads["iteration_peakiness"].max())
                largest["layer sum"] = max(
                    largest["layer sum"], report.layers["iteration_peakiness"].max()
                )
    print(f"largest iteration peakiness of a random model: {largest}")
    assert largest["head"] < 0.3 and largest["layer sum"] < 0.5


def tokenizer_of(words: list[str]):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    core.pre_tokenizer = WhitespaceSplit()
    return hf.PreTrainedTokenizerFast(tokenizer_object=core)


def test_symbols_written_with_several_tokens_sit_at_their_last_token() -> None:
    """A character-level tokenizer writes 10 as two tokens: x_t sits at its second."""
    from tokenizers import Regex, Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split

    chars = ["<", *"0123456789", "=", " ", "s", ">"]
    core = Tokenizer(WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<"))
    core.pre_tokenizer = Split(Regex("."), behavior="isolated")
    tokenizer = hf.PreTrainedTokenizerFast(tokenizer_object=core)
    encoding = TextEncoding(tokenizer, "{inputs}{eoi}{states}", eoi_text="=", separator=" ")
    encoded = encoding.encode(ih.get_task("polynomial"), torch.tensor([[10, 2]]))  # states 10, 10
    text = "10 2=10 10"
    assert tokenizer.convert_ids_to_tokens(encoded.tokens[0].tolist()) == list(text)
    assert encoded.inputs.tolist() == [[1, 3]]  # the "0" of 10, then 2
    assert encoded.eoi.tolist() == [4] and encoded.states.tolist() == [[6, 9]]
    assert encoded.queries.tolist() == [[4, 7]]  # "=", then the space before the second 10
    assert (
        encoded.targets[0].tolist()[4:9]
        == tokenizer(text[5:], add_special_tokens=False)["input_ids"]
    )


def test_bad_input_is_a_clear_error_and_changes_nothing(tmp_path, capsys) -> None:
    _, tokenizer = load_hf_folder(TEXT_MODEL)
    with pytest.raises(
        ih.IterationHeadsError, match=r"lacks the placeholder\(s\) \['\{states\}'\]"
    ):
        TextEncoding(tokenizer, "<s> {inputs} {eoi}")
    with pytest.raises(ih.IterationHeadsError, match="in this order"):
        TextEncoding(tokenizer, "{states} {eoi} {inputs}")
    merging = tokenizer_of(["<s>", "=", "1", "2", "12", *map(str, range(3, 11))])
    encoding = TextEncoding(merging, "<s> {inputs} {eoi} {states}", separator="")
    with pytest.raises(ih.IterationHeadsError, match="inconsistent split: the token '12'"):
        encoding.encode(ih.get_task("polynomial"), torch.tensor([[1, 2]]))
    folder = tmp_path / "weights_only"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    report = tmp_path / "report.html"
    assert main(["audit", str(folder), "--template", TEMPLATE, "--report", str(report)]) == 2
    assert "holds no config.json" in capsys.readouterr().err and not report.exists()
    short = tmp_path / "short"
    config = hf.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=len(tokenizer), n_positions=6)
    hf.GPT2LMHeadModel(config).save_pretrained(short)
    tokenizer.save_pretrained(short)
    before = sorted(p.name for p in short.iterdir())
    with pytest.raises(ih.IterationHeadsError, match="context is too short"):
        open_subject(short, TaskWriting(template=TEMPLATE))
    assert main(["audit", str(short), "--template", TEMPLATE, "--report", str(report)]) == 2
    assert "context is too short" in capsys.readouterr().err and not report.exists()
    assert sorted(p.name for p in short.iterdir()) == before
    with pytest.raises(ih.IterationHeadsError, match="needs the model's tokenizer"):
        TaskWriting(template=TEMPLATE).encoding(None)
    with pytest.raises(ih.IterationHeadsError, match="11 symbols"):
        TaskWriting(symbol_tokens=(1, 2), eoi_token=3).encoding(None)
    argv = ["audit", str(TEXT_MODEL), "--template", TEMPLATE]
    assert main([*argv, "--report", str(tmp_path)]) == 2  # a directory: refused before any work
    assert "is a directory; expected a file name" in capsys.readouterr().err
    assert main([*argv, "--max-len", "0"]) == 2
    assert "--max-len 0: an audit needs >= 3" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short", "weights_only"]
    assert main(["audit", str(TEXT_MODEL), "--symbol-tokens", "a,b", "--eoi-token", "3"]) == 2
    assert "--symbol-tokens 'a,b': expected comma-separated integers" in capsys.readouterr().err


def test_probes_pick_the_longest_length_that_fits_the_context(text_model) -> None:
    _, tokenizer = text_model
    encoding = TextEncoding(tokenizer, TEMPLATE)
    assert longest_fitting(encoding, ih.get_task("polynomial"), 19) == 8
    assert longest_fitting(encoding, ih.get_task("polynomial"), 40) == 16  # capped


def test_a_folder_whose_weights_do_not_match_its_config_is_a_clear_error(tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(TEXT_MODEL, broken, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "n_positions": 6}))
    with pytest.raises(ih.IterationHeadsError, match="'transformer.wpe.weight' has shape"):
        load_hf_folder(broken)
