"""A detection report agrees with its verdict: every head (or layer of summed heads) the verdict
names as passing the rule is in the report's lists, and every one of those is named. Random
models of four architectures and several seeds, with peaky random attention (a large
initialisation: layer sums pass the EoI rule now and then), and trained models."""

from __future__ import annotations

import re

import pytest
import torch
import transformers as hf

import iteration_heads as ih
from iteration_heads import zoo

NAMED = re.compile(r"(EoI|iteration) (?:heads? ((?:L\d+H\d+\+?)+)|layer (\d+), heads summed)")


def claims(verdict: str) -> set[tuple[str, int, int | None]]:
    """What the verdict names as passing: ``(kind, layer, head)``, head None for a layer sum."""
    named: set[tuple[str, int, int | None]] = set()
    for label, heads, layer in NAMED.findall(verdict.split("largest peakiness")[0]):
        kind = "eoi" if label == "EoI" else "iteration"
        if heads:
            named |= {(kind, int(a), int(b)) for a, b in re.findall(r"L(\d+)H(\d+)", heads)}
        else:
            named.add((kind, int(layer), None))
    return named


def listed(report: ih.DetectionReport) -> set[tuple[str, int, int | None]]:
    found = report.to_dict()
    return {
        *((kind, a, b) for kind in ("eoi", "iteration") for a, b in found[f"{kind}_heads"]),
        *((kind, a, None) for kind in ("eoi", "iteration") for a in found[f"{kind}_summed_layers"]),
    }


def random_model(architecture: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers, heads, width = (3, 4, 64) if seed % 2 else (2, 2, 32)
    common = {"vocab_size": 32, "initializer_range": 1.0}
    if architecture == "gpt2":
        config = hf.GPT2Config(n_layer=layers, n_head=heads, n_embd=width, n_positions=40, **common)
        return hf.GPT2LMHeadModel(config)
    options = {
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "intermediate_size": 2 * width,
        "max_position_embeddings": 40,
        **common,
    }
    if architecture == "llama":
        return hf.LlamaForCausalLM(hf.LlamaConfig(**options))
    if architecture == "neox":
        options.pop("num_key_value_heads")
        return hf.GPTNeoXForCausalLM(hf.GPTNeoXConfig(**options))
    return hf.Qwen2ForCausalLM(hf.Qwen2Config(**options))


@pytest.fixture(scope="module")
def probes() -> ih.Probes:
    ids = {v: t for v, t in enumerate(range(4, 15))}
    return ih.Probes.from_task(
        "polynomial", symbol_to_token=ids, eoi_token=3, bos_token=0, eos_token=1, max_len=8, n=128
    )


def test_the_verdict_parser_reads_every_form() -> None:
    verdict = (
        "no iteration circuit: EoI heads L0H0+L0H2, EoI layer 2, heads summed but no iteration "
        "head in a later layer; also passing the rule: iteration head L1H1"
    )
    assert claims(verdict) == {("eoi", 0, 0), ("eoi", 0, 2), ("eoi", 2, None), ("iteration", 1, 1)}
    assert claims("no iteration circuit: largest peakiness EoI 0.22 (L0H0), iteration 0.1") == set()


def test_a_summed_eoi_layer_is_in_the_report_and_in_the_verdict(probes) -> None:
    """The case that disagreed: a random Qwen2 whose layer 0 passes the EoI rule only as a sum
    ("EoI heads in layer(s) [0]" while the report listed no EoI head)."""
    model = ih.wrap_hf_model(random_model("qwen2", 9))
    report = ih.detect(model, probes)
    assert report.to_dict()["eoi_summed_layers"] == [0] and report.found("eoi") == []
    assert "EoI layer 0, heads summed" in report.verdict
    assert claims(report.verdict) == listed(report) == {("eoi", 0, None)}


@pytest.mark.parametrize("architecture", ["gpt2", "neox", "llama", "qwen2"])
def test_random_models_name_exactly_what_the_report_lists(architecture, probes) -> None:
    for seed in (0, 5, 7, 9):  # neox 5 and 7, qwen2 9: a layer passes the EoI rule as a sum
        report = ih.detect(ih.wrap_hf_model(random_model(architecture, seed)), probes)
        assert claims(report.verdict) == listed(report), (architecture, seed, report.verdict)


@pytest.mark.parametrize("name", ["polynomial_paper", "polynomial_3x2", "copy", "parity_transfer"])
def test_trained_models_name_exactly_what_the_report_lists(name) -> None:
    model = zoo.load(name)
    report = ih.detect(model, ih.Probes.from_model(model, n=128))
    assert claims(report.verdict), report.verdict
    assert claims(report.verdict) == listed(report), report.verdict
