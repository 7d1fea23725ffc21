"""Builders shared by the tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import torch

from iteration_heads import (
    DataConfig,
    ModelConfig,
    Probes,
    TokenLayout,
    TrainConfig,
    build_model,
    make_dataset,
    wrap_hf_model,
)
from iteration_heads.runs import RunSpec
from iteration_heads.tasks import Dataset


def temporaries(folder: Path) -> list[str]:
    """What interrupted writes left anywhere under ``folder``: our temporary files and folders
    (``.NAME.XXXXXXXX.tmp``) and any other writer's (safetensors' ``.tmpXXXXXX``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


def tiny_config(**changes) -> ModelConfig:
    """A small model config (fast to build and run)."""
    base = {"d_model": 32, "max_len": 6}
    base.update(changes)
    return ModelConfig(**base)


def tiny_model(**changes) -> torch.nn.Module:
    return build_model(tiny_config(**changes))


def tiny_data(task: str = "polynomial", **changes) -> Dataset:
    base = {"task": task, "max_len": 6, "n_train": 64, "n_test": 64}
    base.update(changes)
    return make_dataset(DataConfig(**base), TokenLayout.default())


def python_states(task_name: str, inputs: list[int]) -> list[int]:
    """The states of one input sequence, by a plain Python loop written from docs/paper.md §2."""
    states = []
    for t, x in enumerate(inputs):
        if task_name == "copy":
            s = x
        elif task_name == "parity":
            s = x if t == 0 else states[-1] ^ x
        elif task_name == "polynomial":
            s = x if t == 0 else (states[-1] * x + 1) % 11
        else:
            raise ValueError(task_name)
        states.append(s)
    return states


FIXTURES = Path(__file__).parent / "fixtures"
"""Files the tests load: a GPT-2 trained outside the library (make_fixtures.py)."""
IDENTITY = {v: v for v in range(11)}  # the library layout: symbol v is token v


def library_probes(n: int = 256, max_len: int = 8, **changes) -> Probes:
    """Polynomial probes in the library's vocabulary (task 15, EoI 11, EoS 12)."""
    options = {"task_token": 15, "eoi_token": 11, "eos_token": 12, "max_len": max_len, "n": n}
    options.update(changes)
    return Probes.from_task("polynomial", symbol_to_token=IDENTITY, **options)


def gpt2(
    n_layer: int = 2, n_head: int = 2, n_embd: int = 64, vocab: int = 16, n_ctx: int = 19, seed=0
):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab, n_positions=n_ctx
    )
    return wrap_hf_model(GPT2LMHeadModel(config))


def llama(n_layers: int = 2, n_heads: int = 2, d: int = 64, vocab: int = 16, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=d,
        intermediate_size=2 * d,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        vocab_size=vocab,
        max_position_embeddings=32,
    )
    return wrap_hf_model(LlamaForCausalLM(config))


def trained_gpt2():
    from transformers import GPT2LMHeadModel

    return wrap_hf_model(GPT2LMHeadModel.from_pretrained(FIXTURES / "gpt2_polynomial"))


def tiny_spec(seed: int = 0, epochs: int = 1) -> RunSpec:
    return RunSpec(
        DataConfig(task="polynomial", max_len=4, n_train=32, n_test=32, seed=seed),
        ModelConfig(d_model=16, max_len=4, seed=seed),
        TrainConfig(epochs=epochs, eval_every=1, threads=1, seed=seed),
    )


# ---------------------------------------------------------------- runs killed at any instant

CRASH_EPOCHS = 8


def crash_run_parts(epochs: int = CRASH_EPOCHS):
    """The model, data and config of the runs the crash tests kill: a checkpoint and an
    evaluation after every epoch, so that most instants fall in or near a write."""
    data = make_dataset(DataConfig(task="polynomial", max_len=4, n_train=48, n_test=16))
    model = build_model(ModelConfig(d_model=16, max_len=4))
    config = TrainConfig(
        epochs=epochs, eval_every=1, checkpoint_every=1, batch_size=32, threads=1, lr=1e-3
    )
    return model, data, config


def crash_child(
    run: str, resume: bool, kill_at: tuple[str, str, int] | None = None, epochs: int = CRASH_EPOCHS
) -> None:
    """Train the crash run in ``run`` (in a forked process). ``kill_at=("write", target, n)``
    kills the process with SIGKILL inside its ``n``-th atomic write of ``target`` (after the
    temporary file is written, before it replaces the old one); ``("append", target, n)`` in
    the middle of its ``n``-th line (half of it written). Targets: a file of the run directory
    (``"run.json"``, ``"model.safetensors"``: the final model) or of a checkpoint
    (``"checkpoint/state.json"``)."""
    import os
    import signal

    from iteration_heads.training import loop

    if kill_at is not None:
        where, target, n = kill_at
        calls = {"n": 0}
        rename = os.replace

        def hit(kind: str, path: str) -> bool:
            path = Path(path)
            if path.name.endswith(".tmp"):  # a temporary file: name it by its destination
                path = path.with_name(path.name[1:].rsplit(".", 2)[0])
            name = path.name if path.parent == Path(run) else f"checkpoint/{path.name}"
            if kind == where and name == target:
                calls["n"] += 1
                return calls["n"] == n
            return False

        def killing_replace(source, destination, *args, **kwargs):
            if hit("write", str(destination)):  # written and flushed, not yet renamed
                os.kill(os.getpid(), signal.SIGKILL)
            return rename(source, destination, *args, **kwargs)

        os.replace = killing_replace
        if where == "append":
            opened = open

            def killing_open(file, mode="r", *args, **kwargs):
                handle = opened(file, mode, *args, **kwargs)
                if "a" in mode and hit("append", str(file)):
                    real = handle.write

                    def half_then_die(text):
                        real(text[: len(text) // 2])
                        handle.flush()
                        os.kill(os.getpid(), signal.SIGKILL)

                    handle.write = half_then_die
                return handle

            import builtins

            builtins.open = killing_open
    model, data, config = crash_run_parts(epochs)
    loop.train(model, data, config, out_dir=run, resume=resume, progress=False)


BPE_STORY = "Every wumpus is a cat. Rex is a wumpus. Rex is a cat. Alex is a dog. "
"""The corpus of :func:`tiny_bpe`: ' Rex', ' cat', ' dog' are one token each, ' Max' and
' impus' several."""


def tiny_bpe():
    """A byte-level BPE tokenizer trained here on :data:`BPE_STORY` (no download), with
    ``<s>`` as BOS and ``</s>`` as EoS, and no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([BPE_STORY] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")


def fixture_tokenizer():
    """The word-level tokenizer of the GPT-2 fixture ('<s>' BOS, '</s>' pad, '=' and 0..10)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(FIXTURES / "gpt2_text_polynomial" / "tokenizer.json"),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
    )


def ontology_pruning_case():
    """The zoo ontology model, 28 fictional prompts (seed 10,000), 40 contradicting reference
    prompts cut to their width (seed 7) and the head-patching ranking: the pruning tests' case."""
    from iteration_heads import zoo
    from iteration_heads.experiments.ontology_study import model_ontology
    from iteration_heads.pathways import ontology_prompts
    from iteration_heads.pathways.restoration import head_patching
    from iteration_heads.tasks import make_ontology_problems

    model = zoo.load("ontology")
    onto = model_ontology(model)
    prompts = ontology_prompts(make_ontology_problems(onto, 2, seed=10_000, kind="fictional"))
    reference = make_ontology_problems(onto, 40, seed=7, kind="contradicting").tokens
    ranking = head_patching(model, prompts).ranking()
    return model, prompts, reference[:, : prompts.clean.shape[1]], ranking


def renormalising_by_hand(model, tokens, *, before_mlp: bool) -> torch.Tensor:
    """The logits of a model whose blocks renormalise the residual stream, written out from its
    state dict: ``x = LN1(x); x = x + attn(x)``, then ``x = LN2(x); x = x + mlp(x)`` when
    ``before_mlp`` (``residual="renormalised"``) or ``x = x + mlp(LN2(x))`` (the authors' block,
    ``residual="authors"``); ``logits = unembed(LN_final(x))``."""
    import torch.nn.functional as F

    from iteration_heads.model import model_config

    cfg, w = model_config(model), model.state_dict()

    def norm(prefix, x):
        if cfg.normalization == "LN":
            return F.layer_norm(x, (x.shape[-1],), w[f"{prefix}.weight"], w[f"{prefix}.bias"], 1e-5)
        if cfg.normalization == "RMS":
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w[f"{prefix}.weight"]
        return F.layer_norm(x, (x.shape[-1],), eps=1e-5)

    seq = tokens.shape[1]
    x = w["embed.weight"][tokens] + w["pos_embed.weight"][:seq]
    causal = torch.ones(seq, seq, dtype=torch.bool).triu(1)
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}"
        x = norm(f"{p}.ln1", x)
        q, k, v = (x @ w[f"{p}.attn.{n}.weight"].T + w[f"{p}.attn.{n}.bias"] for n in "qkv")
        scores = (q @ k.transpose(-1, -2) / cfg.d_head**0.5).masked_fill(causal, float("-inf"))
        x = x + (scores.softmax(-1) @ v) @ w[f"{p}.attn.o.weight"].T + w[f"{p}.attn.o.bias"]
        if before_mlp:
            x = norm(f"{p}.ln2", x)
        mlp_in = x if before_mlp else norm(f"{p}.ln2", x)
        hidden = F.gelu(mlp_in @ w[f"{p}.mlp.in.weight"].T + w[f"{p}.mlp.in.bias"])
        x = x + hidden @ w[f"{p}.mlp.out.weight"].T + w[f"{p}.mlp.out.bias"]
    return norm("ln_final", x) @ w["unembed.weight"].T + w["unembed.bias"]


def shell_commands(path: Path) -> list[list[str]]:
    """The arguments of every ``iteration-heads`` command in the fenced shell blocks of a
    Markdown page (``$ `` prompts and backslash continuations allowed)."""
    blocks = re.findall(r"```(?:bash|console|sh|shell)\n(.*?)```", path.read_text(), re.S)
    lines = [
        line.removeprefix("$ ") for b in blocks for line in b.replace("\\\n", " ").splitlines()
    ]
    commands = [shlex.split(line, comments=True) for line in lines]
    return [c[1:] for c in commands if c and c[0] == "iteration-heads"]
