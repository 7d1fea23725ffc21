"""The work behind ``iteration-heads pathways``: open a model folder (library or HuggingFace),
build its prompts (a JSON Lines file or generated problems), and run the chosen analyses with a
progress bar, each skipped analysis with its reason."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from iteration_heads._io import CONFIG_FILE, METADATA_FILE, read_json
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import element_bytes
from iteration_heads.pathways.prompts import Prompts


@dataclass(frozen=True)
class Opened:
    """A model and what reads its prompts.

    Attributes:
        model: The TransformerLens bridge.
        tokenizer: Its HuggingFace tokenizer (None where the folder holds none).
        source: ``"library"`` or ``"huggingface"``.
        ontology: The ontology data config of a library ontology model, else None.
        names: The vocabulary's token strings (to label figures), or None.
    """

    model: Any
    tokenizer: Any
    source: str
    ontology: Any
    names: tuple[str, ...] | None


def open_model(path: Path, dtype: str = "float32") -> Opened:
    """A library model folder, a shipped name, or a HuggingFace folder with its tokenizer, its
    weights cast to ``dtype`` (:func:`~iteration_heads.model.precision.cast_model`).

    Example:
        >>> open_model(Path("ontology")).source
        'library'
        >>> open_model(Path("ontology"), "float32").model.W_U.dtype
        torch.float32
        >>> open_model(Path("ontology"), "bf16")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: dtype 'bf16': expected one of float32, bfloat16, float16
    """
    from iteration_heads.model.checkpoint import load, model_directory, model_metadata
    from iteration_heads.model.hf import load_hf_folder
    from iteration_heads.model.precision import cast_model, dtype_named

    dtype_named(dtype)  # an unknown name is refused before any loading

    folder = model_directory(path)
    if not (folder / CONFIG_FILE).is_file():
        raise IterationHeadsError(
            f"{str(folder)!r} holds no {CONFIG_FILE}: expected a model folder (a library model or "
            "a HuggingFace checkpoint) or a shipped name"
        )
    if (folder / METADATA_FILE).is_file() and "layout" in read_json(folder / CONFIG_FILE):
        model = cast_model(load(folder), dtype)
        if (model_metadata(model) or {}).get("task") != "ontology":
            return Opened(model, None, "library", None, None)
        from iteration_heads.experiments.ontology_study import data_config_of
        from iteration_heads.pathways.text_ontology import ontology_tokenizer
        from iteration_heads.tasks.ontology import OntologyVocab

        config = data_config_of(model)
        vocab = OntologyVocab.of(config.ontology)
        return Opened(model, ontology_tokenizer(vocab), "library", config, vocab.names)
    model, tokenizer = load_hf_folder(folder)
    cast_model(model, dtype)
    names = None
    if tokenizer is not None:
        names = tuple(tokenizer.convert_ids_to_tokens(list(range(int(model.cfg.d_vocab)))))
        names = tuple(str(n) for n in names)
    return Opened(model, tokenizer, "huggingface", None, names)


def studied_prompts(args: argparse.Namespace, opened: Opened) -> tuple[Prompts, str]:
    """The prompts of ``--prompts`` or ``--ontology``, and a few words on where they come from."""
    if args.prompts is not None:
        from iteration_heads.pathways.jsonl import read_prompts

        prompts = read_prompts(args.prompts, opened.tokenizer)
        vocab = int(opened.model.cfg.d_vocab)
        if int(prompts.clean.max()) >= vocab:
            raise IterationHeadsError(
                f"--prompts {str(args.prompts)!r}: token {int(prompts.clean.max())} is outside "
                f"the model's vocabulary of {vocab} tokens"
            )
        return prompts, f"read from {args.prompts}"
    if opened.ontology is not None:
        return _library_ontology(args, opened), f"{args.n} generated ontology problems"
    if opened.tokenizer is None:
        raise IterationHeadsError(
            f"--ontology writes problems as text: {str(args.path)!r} has no tokenizer and is not "
            "an ontology model; give --prompts FILE.jsonl with token records"
        )
    from iteration_heads.pathways.text_ontology import prontoqa_prompts
    from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa

    options: dict[str, Any] = {"hops": (args.hops,)} if args.hops is not None else {}
    for option in ("shots", "format", "distractors"):
        if getattr(args, option) is not None:
            options[option] = getattr(args, option)
    config = ProntoQAConfig(**options)
    problems = make_prontoqa(config, args.n, seed=args.seed)
    prompts = prontoqa_prompts(problems, opened.tokenizer, skip_uncorruptible=True)
    return prompts, f"{args.n} generated PrOntoQA problems ({config.format} format)"


def _library_ontology(args: argparse.Namespace, opened: Opened) -> Prompts:
    from iteration_heads.pathways.prompts import ontology_prompts
    from iteration_heads.tasks.ontology import make_ontology_problems

    for option in ("shots", "format", "distractors"):
        if getattr(args, option) is not None:
            raise IterationHeadsError(
                f"--{option} applies to HuggingFace models: the ontology model writes its "
                "problems in its own vocabulary"
            )
    config = opened.ontology.ontology
    if args.hops is not None:
        if args.hops not in config.hops:
            raise IterationHeadsError(
                f"--hops {args.hops}: the model was trained on hops {list(config.hops)}"
            )
        config = dataclasses.replace(config, hops=(args.hops,))
    problems = make_ontology_problems(config, args.n, seed=10_000 + args.seed, kind="fictional")
    return ontology_prompts(problems)


def _prior(model: Any, prompts: Prompts, args: argparse.Namespace) -> Any:
    """The prior token per prompt for the logit lens, or a string: why there is none."""
    from iteration_heads.pathways.rift import context_free_prior

    if args.prior == "context-free":
        return context_free_prior(model, prompts)
    infos = prompts.info or ()
    if infos and all(isinstance(i.get("prior"), int) for i in infos):
        return torch.tensor([int(i["prior"]) for i in infos])
    return "no prior token: give --prior context-free, or records whose info holds a 'prior'"


FLOW_FLOAT32 = "flow tracing runs on float32 weights only (drop --dtype)"
"""Why flow is skipped on a model opened in another dtype."""


def run_analyses(
    model: Any,
    prompts: Prompts,
    args: argparse.Namespace,
    earlier: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``args.chosen`` in order with a progress bar on stderr (shown on a terminal);
    results by name, and the reason of each analysis that was skipped. ``earlier``: results
    of analyses already run on the same prompts, read as a full run reads its own (head
    patching ranks the pruning, the answer writers name the ablation check) and not returned.

    Example:
        >>> args = argparse.Namespace(chosen=["writers"], seed=0, n_random=2, n_traced=1,
        ...                           centre="auto", mean="position", prior=None, method="auto")
        >>> from iteration_heads.experiments.ontology_study import model_ontology
        >>> from iteration_heads.pathways import ontology_prompts
        >>> from iteration_heads.tasks import make_ontology_problems
        >>> model = open_model(Path("ontology")).model
        >>> problems = make_ontology_problems(model_ontology(model), 1, seed=0, kind="fictional")
        >>> results, skipped = run_analyses(model, ontology_prompts(problems), args)
        >>> list(results), skipped
        (['writers'], {})
    """
    from tqdm import tqdm

    from iteration_heads import pathways as pw

    results: dict[str, Any] = dict(earlier or {})
    skipped: dict[str, str] = {}
    n_heads = int(model.cfg.n_layers) * int(model.cfg.n_heads)
    most = max(1, n_heads // 4)  # named heads in a check: random sets of that size must exist
    corrupted = prompts.corrupted is not None
    no_corruption = "the prompts have no corrupted version (records without 'corrupted')"
    seed = args.seed
    bar = tqdm(args.chosen, desc="pathways", unit="analysis", disable=None, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        if name == "patching":
            if not corrupted:
                skipped[name] = no_corruption
                continue
            if getattr(args, "shards", None):
                results[name] = _sharded_patching(model, prompts, args)
                continue
            results[name] = pw.head_patching(model, prompts, method=getattr(args, "method", "auto"))
        elif name == "writers":
            results[name] = pw.answer_writers(model, prompts, centre=args.centre)
        elif name == "lens":
            prior = _prior(model, prompts, args)
            if isinstance(prior, str):
                skipped[name] = prior
                continue
            results[name] = pw.logit_lens(model, prompts, prior=prior, seed=seed)
        elif name == "segments":
            if not prompts.segment_names or bool((prompts.segments < 0).all()):
                skipped[name] = "the prompts have no segments"
                continue
            results[name] = pw.segment_pathways(model, prompts, scope="answer")
        elif name == "pruning":
            from iteration_heads.pathways.cost import pruning_method

            ranking, draws = _ranking(model, prompts, results), max(1, args.n_random // 2)
            method = pruning_method(model, prompts, getattr(args, "method", "auto"),
                                    n_random=draws, seed=seed)  # fmt: skip
            curve: Callable[..., Any] = pw.linear_pruning_curve  # method "attribution"
            if method == "exact":
                curve = pw.pruning_curve
            elif method == "bisection":
                curve = pw.bisected_pruning_curve
            results[name] = curve(
                model, prompts, ranking, prompts.clean, n_random=draws, seed=seed,
                mean=args.mean, reference_mask=prompts.own_positions(),
            )  # fmt: skip
        elif name == "checks":
            for key, check in _checks(model, prompts, results, args, most).items():
                results[key] = check
            if not corrupted:
                skipped["checks: noising"] = no_corruption
        elif name == "flow":
            if element_bytes(model) != 4:
                skipped[name] = FLOW_FLOAT32
                continue
            picked = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed))
            traced = prompts.select(picked[: args.n_traced])
            results["flow"] = pw.trace_many(model, traced)
            results["flow: example"] = pw.trace_flow(model, traced, index=0)
    bar.close()
    earlier = earlier or {}
    return {k: v for k, v in results.items() if earlier.get(k) is not v}, skipped


def _sharded_patching(model: Any, prompts: Prompts, args: argparse.Namespace) -> Any:
    """Exact head patching cut into ``args.shards`` runs of heads on the executor the options
    name (:func:`~iteration_heads.runs.sharding.sharded_head_patching`)."""
    from iteration_heads.cli.executor_options import executor_from_args
    from iteration_heads.pathways.attribution import choose_method
    from iteration_heads.runs.sharding import sharded_head_patching

    if choose_method(model, prompts, args.method) != "exact":
        raise IterationHeadsError(
            "--shards: --method auto chose attribution here (the exact sweep exceeds its "
            "budget); give --method exact to shard the exact sweep"
        )
    with executor_from_args(args, args.jobs, Path.cwd()) as executor:
        return sharded_head_patching(args.path, prompts, executor, shards=args.shards)


def _ranking(model: Any, prompts: Prompts, results: dict[str, Any]) -> list[tuple[int, int]]:
    """Every head, ranked by head patching where it ran, else by answer-writer attribution."""
    from iteration_heads import pathways as pw

    if "patching" in results:
        return list(results["patching"].ranking())
    writers = results.get("writers") or pw.answer_writers(model, prompts)
    values = writers.dla["all"]
    heads = pw.all_heads(model)
    return sorted(heads, key=lambda h: -float(values[h[0], h[1]]))


def _checks(
    model: Any, prompts: Prompts, results: dict[str, Any], args: argparse.Namespace, most: int
) -> dict[str, Any]:
    """Noising of the top patching heads (needs corruptions) and mean ablation of the top
    answer writers, each against ``args.n_random`` random head sets of the same size."""
    from iteration_heads import pathways as pw

    checks: dict[str, Any] = {}
    if prompts.corrupted is not None:
        top = _ranking(model, prompts, results)[: min(3, most)]
        checks["checks: noising"] = pw.noising_check(
            model, prompts, top, n_random=args.n_random, seed=args.seed
        )
    writers = results.get("writers") or pw.answer_writers(model, prompts)
    named = writers.writers(share=0.5)[:most] or _ranking(model, prompts, results)[:1]
    checks["checks: ablation"] = pw.ablation_check(
        model, prompts, named, prompts.clean, n_random=args.n_random, seed=args.seed,
        mean=args.mean, reference_mask=prompts.own_positions(),
    )  # fmt: skip
    return checks
