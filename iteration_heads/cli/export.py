"""``iteration-heads export MODEL OUT``: a library model (a saved folder or a shipped name) as a
HuggingFace checkpoint folder (GPT-2 weights, a word-level tokenizer over its token names)."""

from __future__ import annotations

import argparse
from pathlib import Path

from iteration_heads._io import read_json
from iteration_heads.model.export import EXPORT_INFO_FILE, export_hf


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``export`` subcommand and its arguments."""
    p = sub.add_parser(
        "export",
        help="export a library model as a HuggingFace checkpoint folder (GPT-2 + tokenizer)",
        description="Write MODEL (a saved model folder or a shipped name) as a HuggingFace "
        "checkpoint folder OUT: config.json and model.safetensors of a GPT2LMHeadModel, a "
        "word-level tokenizer over the model's token names, and a README.md with the audit "
        "command. transformers loads it and gives the same logits (to 1e-5); what GPT-2 cannot "
        "express (the renormalised block, RMS norm, ...) is refused. OUT must be new or empty.",
    )
    p.add_argument("model", help="saved model folder or shipped model name")
    p.add_argument("out", type=Path, help="the HuggingFace folder to write (new or empty)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``iteration-heads export`` with parsed arguments; 0 on success.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "hf"
        >>> run(argparse.Namespace(model="polynomial", out=out))  # doctest: +ELLIPSIS
        exported 'polynomial' to '.../hf' (GPT2LMHeadModel)
        audit it: iteration-heads audit .../hf --task polynomial --symbol-tokens 0,1,2,3,4,5,6,7,8,9,10 --eoi-token 11 --eos-token 12 --task-token 15
        0
    """
    folder = export_hf(args.model, args.out)
    options = read_json(folder / EXPORT_INFO_FILE).get("audit_options")
    print(f"exported {args.model!r} to {str(folder)!r} (GPT2LMHeadModel)")
    if options:
        print(f"audit it: iteration-heads audit {folder} {options}")
    return 0
