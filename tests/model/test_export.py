"""Exporting a library model as a HuggingFace folder: every zoo model round-trips through
transformers and through load_hf_folder with the same logits (1e-5), the tokenizer writes the
layout's token names as their ids, what GPT-2 cannot express is a one-line refusal that writes
nothing, and the audit of the exported folder gives the library folder's verdict."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from iteration_heads import IterationHeadsError, zoo
from iteration_heads.auditing import TaskWriting, audit, open_subject
from iteration_heads.cli import export as export_command
from iteration_heads.model import ModelConfig, build_model, load_hf_folder, save
from iteration_heads.model.export import EXPORT_INFO_FILE, export_hf


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def tokens_for(model: torch.nn.Module, n: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, model.cfg.d_vocab, (n, model.cfg.n_ctx), generator=generator)


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_round_trips(name: str, tmp_path: Path) -> None:
    model = zoo.load(name)
    folder = export_hf(name, tmp_path / "hf")
    tokens = tokens_for(model)
    with torch.no_grad():
        expected = model(tokens)
        hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
        close(hf(tokens).logits, expected)
        bridge, tokenizer = load_hf_folder(folder)
        close(bridge(tokens), expected)
    names = json.loads((folder / EXPORT_INFO_FILE).read_text())["token_names"]
    assert len(names) == model.cfg.d_vocab == len(tokenizer)
    row = tokens[0].tolist()
    assert tokenizer.encode(" ".join(names[t] for t in row)) == row
    assert AutoTokenizer.from_pretrained(folder).convert_ids_to_tokens(row) == [
        names[t] for t in row
    ]


def test_layout_token_names_and_audit_options(tmp_path: Path) -> None:
    folder = export_hf(zoo.load("polynomial"), tmp_path / "hf")
    info = json.loads((folder / EXPORT_INFO_FILE).read_text())
    assert info["token_names"][11:] == ["<EoI>", "<EoS>", "<copy>", "<parity>", "<polynomial>"]
    assert info["audit_options"].endswith("--eoi-token 11 --eos-token 12 --task-token 15")
    assert info["audit_options"] in (folder / "README.md").read_text()
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["tie_word_embeddings"]) == ("gpt2", False)
    assert "layout" not in config  # an exported folder is audited as a HuggingFace folder


@pytest.mark.parametrize(
    "changes",
    [
        {"normalization": "LNPre"},
        {"biases": False},
        {"positional": "frozen"},
        {"activation": "gelu_new"},
        {"activation": "relu"},
        {"activation": "silu"},
        {"d_mlp_": 24, "n_heads": 4, "n_layers": 3},
    ],
    ids=str,
)
def test_every_mapping_option_round_trips(changes: dict, tmp_path: Path) -> None:
    model = build_model(ModelConfig(d_model=16, max_len=3, **changes))
    with torch.no_grad():  # something for the biases and norms to carry
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn_like(param))
    folder = export_hf(model, tmp_path / "hf")
    tokens = tokens_for(model)
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        close(hf(tokens).logits, model(tokens))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"residual": "renormalised"}, "residual='renormalised'"),
        ({"normalization": "RMS"}, "normalization='RMS'"),
        ({"normalization": None}, "normalization=None"),
        ({"d_head_": 8, "n_heads": 1}, "d_head_=8"),
    ],
)
def test_what_does_not_map_is_one_line_and_writes_nothing(
    changes: dict, field: str, tmp_path: Path
) -> None:
    model = build_model(ModelConfig(d_model=16, max_len=2, **changes))
    with pytest.raises(IterationHeadsError, match="export needs") as err:
        export_hf(model, tmp_path / "out" / "hf")
    assert field in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_nonzero_unembedding_bias_and_nan_are_refused(tmp_path: Path) -> None:
    model = build_model(ModelConfig(d_model=16, max_len=2))
    with torch.no_grad():
        model.unembed.bias[3] = 0.5
    with pytest.raises(IterationHeadsError, match=r"unembed.bias is not zero \(max \|b_U\| 0.5\)"):
        export_hf(model, tmp_path / "hf")
    with torch.no_grad():
        model.unembed.bias.zero_()
        model.blocks[0].attn.q.weight[0, 0] = float("nan")
    with pytest.raises(IterationHeadsError, match="'blocks.0.attn.q.weight' holds NaN"):
        export_hf(model, tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


def test_output_folder_is_new_or_empty_and_written_atomically(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(IterationHeadsError, match="exists and is not empty"):
        export_hf("copy", tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert export_hf("copy", tmp_path / "empty") == tmp_path / "empty"
    assert (tmp_path / "empty" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]  # no temporary left


def test_saved_folder_exports_like_the_model_in_memory(tmp_path: Path) -> None:
    model = build_model(ModelConfig(d_model=16, max_len=2, seed=3))
    a = export_hf(save(model, tmp_path / "lib"), tmp_path / "a")
    b = export_hf(model, tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_audit_of_the_export_gives_the_library_verdict(tmp_path: Path) -> None:
    folder = export_hf("polynomial", tmp_path / "hf")
    library = open_subject("polynomial", n_probes=128)
    mine = audit(library.model, library.probes, route_probes=64)
    # the same probes: the same verdict, figure for figure
    same = open_subject(folder, probes=library.probes)
    assert audit(same.model, same.probes, route_probes=64).verdict == mine.verdict
    # the task written in the exported token ids, as the folder's README says
    writing = TaskWriting(symbol_tokens=tuple(range(11)), eoi_token=11, eos_token=12, task_token=15)
    hf = open_subject(folder, writing, n_probes=128)
    theirs = audit(hf.model, hf.probes, route_probes=64)
    assert hf.source == "huggingface" and theirs.has_iteration_heads and mine.has_iteration_heads
    assert theirs.used and mine.used
    heads = [(a.report.iteration.layer, a.report.iteration.heads) for a in (mine, theirs)]
    assert heads[0] == heads[1] == (1, (0, 1))
    route = [a.verdict.split(" | ")[-1].split(" — ")[0] for a in (mine, theirs)]
    assert route[0] == route[1] == "position route: an EoI head"


def test_cli_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="iteration-heads")
    export_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", "polynomial_paper", str(tmp_path / "hf")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "exported 'polynomial_paper'" in out and "--task-token 15" in out
    with pytest.raises(IterationHeadsError, match="exists and is not empty"):
        args.func(args)
