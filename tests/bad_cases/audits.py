"""Bad-input cases: audits (see base.py) — the arguments of ``audit`` and its helpers, token
layouts whose roles collide, and HuggingFace folders whose config and weights disagree (tiny
random GPT-2s written by ``prepare``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bad_cases.base import Case, api, cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOKEN_MODEL = FIXTURES / "gpt2_polynomial"  # symbols 0..10, EoI 11, EoS 12, task token 15
TEXT_MODEL = FIXTURES / "gpt2_text_polynomial"
IDS = ",".join(map(str, range(11)))
TOKENS = f"audit {TOKEN_MODEL} --symbol-tokens {IDS} --task-token 15"
LAYOUT = "symbol_tokens=tuple(range(11)), eoi_token=11"
HF_IDS = "--symbol-tokens 0,1 --eoi-token 2 --task parity"
WRITING = "TaskWriting('parity', symbol_tokens=(0, 1), eoi_token=2)"
TEMPLATE = "<s> {inputs} {eoi} {states} </s>"
FOO = "<s> {inputs} {eoi} {states} {foo} </s>"
MISSPELT = "<s> {input} {inputs} {eoi} {states} </s>"

CASES: list[Case] = [
    api("auditing", "fractional probe count", "audit(model, n_probes=7.5)"),
    api("auditing", "boolean probe count", "audit(model, n_probes=True)"),
    api("auditing", "zero probes", "audit(model, n_probes=0)"),
    api("auditing", "negative control sets", "audit(model, max_controls=-1)"),
    api("auditing", "fractional control sets", "audit(model, max_controls=2.0)"),
    api("auditing", "zero route probes", "audit(model, route_probes=0)"),
    api("auditing", "zero batch size", "audit(model, batch_size=0)"),
    api("auditing", "zero control probes", "audit(model, control_probes=0)"),
    api("auditing", "control probes as text", "audit(model, control_probes='all')"),
    api("auditing", "unknown ablation", "audit(model, kind='median')"),
    api("auditing", "route not a boolean", "audit(model, route='yes')"),
    api("auditing", "probes not Probes", "audit(model, 'probes')"),
    api(
        "auditing",
        "EoI token is the BOS token",
        "audit(model, Probes.from_task('polynomial', symbol_to_token=dict(enumerate(range(11))), "
        "eoi_token=11, bos_token=11, max_len=4, n=8))",
    ),
    api(
        "auditing",
        "token outside the model's vocabulary",
        "audit(model, Probes.from_task('polynomial', symbol_to_token=dict(enumerate(range(11))), "
        "eoi_token=99, max_len=4, n=8))",
    ),
    api(
        "auditing",
        "writing: EoI token is the BOS token",
        f"TaskWriting({LAYOUT}, bos_token=11).encoding(None)",
    ),
    api(
        "auditing",
        "writing: EoI token is a symbol's token",
        "TaskWriting(symbol_tokens=tuple(range(11)), eoi_token=5).encoding(None)",
    ),
    api(
        "auditing",
        "writing: EoS token is the task token",
        f"TaskWriting({LAYOUT}, eos_token=12, task_token=12).encoding(None)",
    ),
    api(
        "auditing",
        "two symbols share a token",
        "TaskWriting(symbol_tokens=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9), eoi_token=11).encoding(None)",
    ),
    api(
        "auditing",
        "EoI text is a symbol's text",
        "TaskWriting(template='<s> {inputs} {eoi} {states} </s>', eoi_text='3')"
        ".encoding(hf_tokenizer)",
    ),
    api(
        "auditing",
        "fractional probe count for a folder",
        "open_subject('polynomial', n_probes=2.5)",
    ),
    api("auditing", "boolean length for a folder", "open_subject('polynomial', max_len=True)"),
    api("auditing", "negative seed for a folder", "open_subject('polynomial', seed=-1)"),
    api("auditing", "writing not a TaskWriting", "open_subject('polynomial', 'polynomial')"),
    api(
        "auditing",
        "token layout for a library model",
        "open_subject('polynomial', TaskWriting(eoi_token=11))",
    ),
    api("auditing", "probe length for a library model", "open_subject('polynomial', max_len=4)"),
    cli("audit layout", "EoI token for a library model", "audit polynomial --eoi-token 99999"),
    cli(
        "audit layout",
        "template for a library model",
        "audit copy --template '<s> {inputs} {eoi} {states} </s>'",
    ),
    cli("audit layout", "probe length for a library model", "audit polynomial --max-len 4"),
    api("auditing", "zero probes across checkpoints", "audit_checkpoints('hf_run', n_probes=0)"),
    api("auditing", "zero accuracy batch", "probe_accuracy(model, probes, batch_size=0)"),
    api("auditing", "zero route batch", "position_route(model, probes, [(1, 0)], batch_size=0)"),
    api("auditing", "fractional route layer", "components_before(model, 1.5)"),
    api("auditing", "trainer state with a step as text", "checkpoint_folders('hf_bad_state')"),
    api("auditing", "chance above 1", "needed_accuracy(1.5)"),
    api(
        "auditing",
        "fractional context",
        f"longest_fitting(TaskWriting({LAYOUT}).encoding(None), get_task('polynomial'), 19.5)",
    ),
    api("HF folders", "config with more layers than the weights", "load_hf_folder('hf_5_layers')"),
    api("HF folders", "config with fewer layers than the weights", "load_hf_folder('hf_1_layer')"),
    api("HF folders", "a tensor missing", "load_hf_folder('hf_missing_tensor')"),
    api("HF folders", "a tensor of another shape", "load_hf_folder('hf_other_shape')"),
    api("HF folders", "NaN weights", "load_hf_folder('hf_nan')"),
    api("HF folders", "truncated weights", "load_hf_folder('hf_truncated')"),
    api("HF folders", "empty weights", "load_hf_folder('hf_empty_weights')"),
    api("HF folders", "no weights", "load_hf_folder('hf_no_weights')"),
    api("HF folders", "broken shard index", "load_hf_folder('hf_bad_index')"),
    api("HF folders", "an encoder (bert)", "load_hf_folder('hf_bert')"),
    api("HF folders", "no model_type", "load_hf_folder('hf_no_model_type')"),
    api("HF folders", "config is a list", "load_hf_folder('hf_config_list')"),
    api("HF folders", "config is not JSON", "load_hf_folder('hf_config_text')"),
    api("HF folders", "heads do not divide the width", "load_hf_folder('hf_3_heads')"),
    api("HF folders", "layer count as text", "load_hf_folder('hf_layers_text')"),
    cli("audit layout", "EoI token is the BOS token", f"{TOKENS} --eoi-token 11 --bos-token 11"),
    cli("audit layout", "EoI token is a symbol's token", f"{TOKENS} --eoi-token 5"),
    cli("audit layout", "EoI token is the EoS token", f"{TOKENS} --eoi-token 12 --eos-token 12"),
    cli("audit layout", "EoI token is the task token", f"{TOKENS} --eoi-token 15"),
    cli("audit layout", "token outside the vocabulary", f"{TOKENS} --eoi-token 99"),
    cli(
        "audit layout",
        "two symbols share a token",
        f"audit {TOKEN_MODEL} --symbol-tokens 0,1,2,3,4,5,6,7,8,9,9 --eoi-token 11",
    ),
    cli(
        "audit layout",
        "EoI text is a symbol's text",
        f"audit {TEXT_MODEL} --template '<s> {{inputs}} {{eoi}} {{states}} </s>' --eoi-text 4",
    ),
    cli("audit layout", "negative probes", f"{TOKENS} --eoi-token 11 --n-probes -5"),
    cli(
        "HF folders", "config with more layers than the weights", "audit hf_5_layers --eoi-token 11"
    ),
    cli("HF folders", "NaN weights", f"audit hf_nan --symbol-tokens {IDS} --eoi-token 11"),
    cli(
        "HF folders",
        "truncated weights",
        f"audit hf_truncated --symbol-tokens {IDS} --eoi-token 11",
    ),
    cli("HF folders", "an encoder (bert)", f"audit hf_bert --symbol-tokens {IDS} --eoi-token 11"),
    cli(
        "HF folders",
        "a tensor missing",
        f"audit hf_missing_tensor --symbol-tokens {IDS} --eoi-token 11",
    ),
    # options that do not apply, probes too few or too short, unknown template placeholders
    cli("audit options", "--figure for a single model", f"{TOKENS} --eoi-token 11 --figure f.html"),
    cli("audit options", "--report for a run folder", f"audit hf_run {HF_IDS} --report r.html"),
    cli("audit options", "probes of length 1", f"{TOKENS} --eoi-token 11 --max-len 1"),
    cli("audit options", "probes of length 2", f"{TOKENS} --eoi-token 11 --max-len 2"),
    cli("audit options", "one probe", f"{TOKENS} --eoi-token 11 --n-probes 1"),
    cli("audit options", "15 probes", f"{TOKENS} --eoi-token 11 --n-probes 15"),
    cli("audit options", "unknown placeholder", f"audit {TEXT_MODEL} --template '{FOO}'"),
    cli("audit options", "empty placeholder", f"audit {TEXT_MODEL} --template '{TEMPLATE} {{}}'"),
    cli("audit options", "misspelt placeholder", f"audit {TEXT_MODEL} --template '{MISSPELT}'"),
    api(
        "auditing",
        "probes of length 2 for a folder",
        f"open_subject('hf_good', {WRITING}, max_len=2)",
    ),
    api("auditing", "8 probes for a folder", f"open_subject('hf_good', {WRITING}, n_probes=8)"),
    api("auditing", "unknown placeholder", f"TaskWriting(template='{FOO}').encoding(hf_tokenizer)"),
    api("auditing", "template not text", "TaskWriting(template=5).encoding(hf_tokenizer)"),
    api(
        "auditing",
        "context fits only probes of length 2",
        f"longest_fitting(TaskWriting({LAYOUT}).encoding(None), get_task('polynomial'), 6)",
    ),
    # config sizes, weight dtypes, shard indexes, a model TransformerLens does not reproduce
    api("HF folders", "vocabulary of 0 tokens", "load_hf_folder('hf_vocab_0')"),
    api("HF folders", "0 heads", "load_hf_folder('hf_heads_0')"),
    api("HF folders", "negative layer count", "load_hf_folder('hf_layers_negative')"),
    api("HF folders", "width as a float", "load_hf_folder('hf_width_float')"),
    api("HF folders", "positions as a boolean", "load_hf_folder('hf_positions_bool')"),
    api("HF folders", "MLP width 0", "load_hf_folder('hf_inner_0')"),
    api("HF folders", "integer weights", "load_hf_folder('hf_int_weights')"),
    api("HF folders", "boolean weights", "load_hf_folder('hf_bool_weights')"),
    api("HF folders", "index with the shards swapped", "load_hf_folder('hf_index_swapped')"),
    api("HF folders", "index lacks a tensor", "load_hf_folder('hf_index_lacks')"),
    api("HF folders", "index lists a tensor no shard holds", "load_hf_folder('hf_index_extra')"),
    api("HF folders", "index names a shard outside", "load_hf_folder('hf_index_outside')"),
    api("HF folders", "index names an absolute shard", "load_hf_folder('hf_index_absolute')"),
    api("HF folders", "index maps to numbers", "load_hf_folder('hf_index_numbers')"),
    api("HF folders", "attention not scaled (unsupported)", "load_hf_folder('hf_unscaled')"),
    cli("HF folders", "vocabulary of 0 tokens", f"audit hf_vocab_0 {HF_IDS}"),
    cli("HF folders", "integer weights", f"audit hf_int_weights {HF_IDS}"),
    cli("HF folders", "index with the shards swapped", f"audit hf_index_swapped {HF_IDS}"),
    cli("HF folders", "attention not scaled (unsupported)", f"audit hf_unscaled {HF_IDS}"),
]


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """Tiny random GPT-2 folders whose config and weights disagree, and the objects the cases
    use."""
    import transformers as hf
    from safetensors.torch import load_file, save_file

    import iteration_heads.auditing as auditing
    from iteration_heads.model import load_hf_folder

    config = hf.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=40, vocab_size=16)
    good = work / "hf_good"
    hf.GPT2LMHeadModel(config).save_pretrained(good)

    def variant(name: str, config_text: str | None = None, **changes: Any) -> Path:
        folder = work / name
        shutil.copytree(good, folder)
        if config_text is not None:
            (folder / "config.json").write_text(config_text)
        elif changes:
            data = json.loads((good / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps({**data, **changes}))
        return folder

    def weights(name: str, edit: Any) -> None:
        file = variant(name) / "model.safetensors"
        tensors = load_file(file)
        edit(tensors)
        save_file(tensors, file, metadata={"format": "pt"})

    variant("hf_5_layers", n_layer=5)
    variant("hf_1_layer", n_layer=1)
    variant("hf_other_shape", n_positions=20)
    variant("hf_bert", model_type="bert")
    variant("hf_config_list", "[1, 2, 3]")
    variant("hf_config_text", "n_layer = 2")
    variant("hf_3_heads", n_head=3)
    variant("hf_layers_text", n_layer="two")
    data = json.loads((good / "config.json").read_text())
    data.pop("model_type")
    variant("hf_no_model_type", json.dumps(data))
    weights("hf_missing_tensor", lambda t: t.pop("transformer.h.1.mlp.c_proj.bias"))
    weights("hf_nan", lambda t: t["transformer.ln_f.bias"].__setitem__(0, float("nan")))
    blob = (good / "model.safetensors").read_bytes()
    (variant("hf_truncated") / "model.safetensors").write_bytes(blob[: len(blob) // 3])
    (variant("hf_empty_weights") / "model.safetensors").write_bytes(b"")
    (variant("hf_no_weights") / "model.safetensors").unlink()
    variant("hf_vocab_0", vocab_size=0)
    variant("hf_heads_0", n_head=0)
    variant("hf_layers_negative", n_layer=-1)
    variant("hf_width_float", n_embd=32.0)
    variant("hf_positions_bool", n_positions=True)
    variant("hf_inner_0", n_inner=0)
    import torch

    torch.manual_seed(0)  # weights large enough that unscaled attention changes the logits a lot
    unscaled = hf.GPT2Config(
        n_layer=2, n_head=2, n_embd=32, n_positions=40, vocab_size=16, initializer_range=0.5,
        scale_attn_weights=False,
    )  # fmt: skip
    hf.GPT2LMHeadModel(unscaled).save_pretrained(work / "hf_unscaled")
    bias = "transformer.ln_f.bias"
    weights("hf_int_weights", lambda t: t.__setitem__(bias, t[bias].long()))
    weights("hf_bool_weights", lambda t: t.__setitem__(bias, t[bias] > 0))

    def sharded(name: str, edit: Any = None) -> None:
        folder = variant(name)
        tensors = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        keys = sorted(tensors)
        index = {}
        for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
            shard = f"model-0000{i + 1}-of-00002.safetensors"
            save_file({k: tensors[k] for k in part}, folder / shard, metadata={"format": "pt"})
            index.update(dict.fromkeys(part, shard))
        if edit is not None:
            edit(index)
        text = json.dumps({"metadata": {}, "weight_map": index})
        (folder / "model.safetensors.index.json").write_text(text)

    one, two = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    sharded(
        "hf_index_swapped", lambda i: i.update({k: two if v == one else one for k, v in i.items()})
    )
    sharded("hf_index_lacks", lambda i: i.pop(sorted(i)[0]))
    sharded("hf_index_extra", lambda i: i.update({"transformer.h.9.mlp.c_fc.weight": one}))
    sharded("hf_index_outside", lambda i: i.update({sorted(i)[0]: "../hf_good/model.safetensors"}))
    sharded(
        "hf_index_absolute", lambda i: i.update({sorted(i)[0]: str(good / "model.safetensors")})
    )
    sharded("hf_index_numbers", lambda i: i.update({sorted(i)[0]: 1}))
    bad_index = variant("hf_bad_index")
    (bad_index / "model.safetensors").unlink()
    (bad_index / "model.safetensors.index.json").write_text('{"weight_map": [1]}')
    run = work / "hf_run"
    run.mkdir()
    shutil.copytree(good, run / "checkpoint-10")
    bad_state = work / "hf_bad_state"
    bad_state.mkdir()
    shutil.copytree(good, bad_state / "checkpoint-10")
    (bad_state / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": "ten"}')
    namespace.update(
        checkpoint_folders=auditing.checkpoint_folders,
        needed_accuracy=auditing.needed_accuracy,
        longest_fitting=auditing.longest_fitting,
        audit=auditing.audit,
        TaskWriting=auditing.TaskWriting,
        open_subject=auditing.open_subject,
        audit_checkpoints=auditing.audit_checkpoints,
        probe_accuracy=auditing.probe_accuracy,
        position_route=auditing.position_route,
        components_before=auditing.components_before,
        load_hf_folder=load_hf_folder,
        hf_tokenizer=hf.AutoTokenizer.from_pretrained(TEXT_MODEL, local_files_only=True),
    )
