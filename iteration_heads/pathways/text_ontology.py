"""Natural-language PrOntoQA prompts through any fast HuggingFace tokenizer, and the zoo's
ontology problems written as text, both as records (:func:`prompts_from_records`).

:func:`prontoqa_records` makes one record per studied chain-of-thought word of
:func:`~iteration_heads.tasks.prontoqa.make_prontoqa` problems. A name the tokenizer splits is
studied at its first token (``info["tokens_in_word"]`` says into how many). The corruption
replaces the word's source (its most recent earlier occurrence) by an unused name of the same
kind that the tokenizer writes in as many tokens in that context, so clean and corrupted prompts
align token for token (checked). Foils are the other names present that could stand in the same
place (their first tokens), or the other label.

:func:`ontology_tokenizer` and :func:`ontology_text` put the zoo's token-id problems
(:class:`~iteration_heads.tasks.ontology.OntologyProblems`) on the same text path:
:func:`ontology_records` gives the same prompts as
:func:`~iteration_heads.pathways.prompts.ontology_prompts`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.prompts import Prompts, ontology_steps
from iteration_heads.pathways.records import prompts_from_records
from iteration_heads.tasks.ontology import SUBTASKS, OntologyProblems, OntologyVocab
from iteration_heads.tasks.prontoqa import ProntoQAProblem, Step, Word, render

PRONTOQA_SUBTASKS = ("decision", "copy", "induction", "answer")
"""The subtasks a PrOntoQA step can have (the record labels)."""

Encoded = tuple[list[int], list[tuple[int, int]]]


class _Encoder:
    """The tokenizer, with the checks and the lookups the records need."""

    def __init__(self, tokenizer: Any) -> None:
        if not callable(tokenizer) or not getattr(tokenizer, "is_fast", False):
            raise IterationHeadsError(
                f"tokenizer of type {type(tokenizer).__name__}, expected a fast HuggingFace "
                "tokenizer (character offsets are needed)"
            )
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> Encoded:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [(int(a), int(b)) for a, b in encoded["offset_mapping"]]

    @staticmethod
    def covering(offsets: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
        """The tokens that share a character with ``span``."""
        return [k for k, (a, b) in enumerate(offsets) if a < span[1] and b > span[0]]


def _check_problems(problems: Any) -> list[ProntoQAProblem]:
    if isinstance(problems, ProntoQAProblem):
        problems = [problems]
    if isinstance(problems, Sequence) and not isinstance(problems, str) and not problems:
        raise IterationHeadsError("no problems, expected at least one ProntoQAProblem")
    if not isinstance(problems, Sequence) or isinstance(problems, str):
        raise IterationHeadsError(
            f"problems of type {type(problems).__name__}, expected a non-empty list of "
            "ProntoQAProblem (make_prontoqa)"
        )
    for problem in problems:
        if not isinstance(problem, ProntoQAProblem):
            raise IterationHeadsError(
                f"a problem of type {type(problem).__name__}, expected ProntoQAProblem"
            )
    return list(problems)


def _check_subtasks(subtasks: Any, known: Sequence[str]) -> tuple[str, ...]:
    if (
        isinstance(subtasks, str)
        or not isinstance(subtasks, Sequence)
        or not subtasks
        or not all(s in known for s in subtasks)
    ):
        raise IterationHeadsError(f"subtasks={subtasks!r}, expected names from {tuple(known)}")
    return tuple(subtasks)


def _replacement(
    problem: ProntoQAProblem, step: Step, encode: _Encoder, clean: Encoded
) -> tuple[str, int]:
    """An unused name of the source's kind and form that keeps every other token; and the
    source's number of tokens."""
    source = step.source
    assert source is not None  # every studied step has one
    ids, offsets = clean
    covered = encode.covering(offsets, source.span)
    lo, hi = covered[0], covered[-1] + 1
    candidates = [n for n in problem.names(source.kind) if n not in problem.used(source.kind)]
    random.Random(problem.seed * 7919 + step.index).shuffle(candidates)
    candidates.sort(key=lambda n: n in problem.text)  # names of no shot first
    s, e = source.span
    for name in candidates:
        surface = render(name, source.kind, plural_form=source.plural, capital=source.capital)
        new, _ = encode(problem.text[:s] + surface + problem.text[e:])
        if len(new) == len(ids) and new[:lo] == ids[:lo] and new[hi:] == ids[hi:] and new != ids:
            return surface, hi - lo
    raise IterationHeadsError(
        f"no other {source.kind} name of {hi - lo} token(s) like {source.surface!r} in this "
        f"tokenizer's vocabulary of names; expected unused names the tokenizer writes in "
        f"{hi - lo} token(s) here (ProntoQAConfig's name lists)"
    )


def _first_token(encode: _Encoder, clean: Encoded, text: str, word: Word, surface: str) -> int:
    """The token ``surface`` starts with in place of ``word``; -1 if the text before changes."""
    ids, offsets = clean
    at = encode.covering(offsets, word.span)[0]
    new, _ = encode(text[: word.span[0]] + surface)
    return new[at] if len(new) > at and new[:at] == ids[:at] else -1


def _foils(problem: ProntoQAProblem, step: Step, encode: _Encoder, clean: Encoded, answer: int):
    """First tokens of the names that could stand where the step's word stands: other names
    of its kind in the problem, else of the other kinds in the problem, else of its kind in
    the config; the other label for True/False."""
    word = step.word
    if word.kind == "label":
        stages = [[("False" if word.name == "True" else "True", "label")]]
    else:
        others = [k for k in ("concept", "property", "entity") if k != word.kind]
        if word.kind == "entity":
            others = ["concept"]
        stages = [
            [(n, word.kind) for n in problem.used(word.kind)],
            [(n, k) for k in others for n in problem.used(k)],
            [(n, word.kind) for n in problem.names(word.kind)],
        ]
    for stage in stages:
        found = []
        for name, kind in stage:
            if name == word.name:
                continue
            surface = render(name, kind, plural_form=word.plural, capital=word.capital)
            token = _first_token(encode, clean, problem.text, word, surface)
            if token >= 0 and token != answer and token not in found:
                found.append(token)
        if found:
            return found
    first = encode.tokenizer.convert_ids_to_tokens([answer])[0]
    raise IterationHeadsError(
        f"every word that could stand for {word.surface!r} starts with its first token "
        f"{first!r} in this tokenizer; expected words whose first tokens differ"
    )


def _segments(problem: ProntoQAProblem, offsets: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The problem's segments, widened to whole tokens (a token belongs to the segment its
    first non-space character is in)."""
    text, out = problem.text, []
    for name, (lo, hi) in problem.segments:
        members = []
        for k, (a, b) in enumerate(offsets):
            core = a + len(text[a:b]) - len(text[a:b].lstrip())
            if b > a and lo <= core < hi:
                members.append(k)
        if members:
            out.append({"name": name, "span": [offsets[members[0]][0], offsets[members[-1]][1]]})
    return out


def prontoqa_records(
    problems: Sequence[ProntoQAProblem],
    tokenizer: Any,
    *,
    subtasks: Sequence[str] = ("decision", "copy", "induction"),
    skip_uncorruptible: bool = False,
) -> list[dict[str, Any]]:
    """Records (the JSON Lines schema of :func:`prompts_from_records`), one per studied step of
    ``problems`` whose subtask is in ``subtasks`` (names from :data:`PRONTOQA_SUBTASKS`).

    Each record is the problem's whole text, studied where the step's word starts (its first
    token), corrupted at the word's source, with the problem's segments, the subtask as label,
    foils, ``example`` = the problem's index and ``info`` = hop, Dutta's subtask index, kind,
    shots, step index and ``tokens_in_word``. Records hold no BOS: the reader adds it. A step
    whose source has no same-length replacement in this tokenizer is an error, or, with
    ``skip_uncorruptible``, left out (the other steps of its problem are kept).

    Example:
        >>> from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa
        >>> from iteration_heads.pathways.text_ontology import word_tokenizer
        >>> problems = make_prontoqa(ProntoQAConfig(format="qa"), 2)
        >>> records = prontoqa_records(problems, word_tokenizer(problems), subtasks=("copy",))
        >>> len(records), records[0]["label"], records[0]["info"]["dutta_subtask"]
        (6, 'copy', 1)
    """
    problems = _check_problems(problems)
    chosen = _check_subtasks(subtasks, PRONTOQA_SUBTASKS)
    if not isinstance(skip_uncorruptible, bool):
        raise IterationHeadsError(
            f"skip_uncorruptible={skip_uncorruptible!r}, expected True or False"
        )
    encode = _Encoder(tokenizer)
    records = []
    for k, problem in enumerate(problems):
        clean = encode(problem.text)
        ids, offsets = clean
        segments = _segments(problem, offsets)
        for step in problem.steps:
            if step.subtask not in chosen or step.source is None:
                continue
            word = step.word
            covered = encode.covering(offsets, word.span)
            start = offsets[covered[0]][0]
            if problem.text[start : word.span[0]].strip():
                raise IterationHeadsError(
                    f"the tokenizer writes {word.surface!r} together with the text before it "
                    f"({problem.text[start : word.span[1]]!r}); expected a token to start at "
                    "the word"
                )
            try:
                surface, _ = _replacement(problem, step, encode, clean)
            except IterationHeadsError:
                if skip_uncorruptible:
                    continue
                raise
            answer = ids[covered[0]]
            record = {
                "text": problem.text,
                "step": {"char": start},
                "answer": answer,
                "corrupted": {"span": list(step.source.span), "with": surface},
                "segments": segments,
                "label": step.subtask,
                "foils": _foils(problem, step, encode, clean, answer),
                "example": k,
                "info": {
                    "hop": step.hop,
                    "dutta_subtask": step.dutta,
                    "kind": word.kind,
                    "shots": problem.shots,
                    "step": step.index,
                    "tokens_in_word": len(covered),
                },
            }
            records.append(record)
    if not records:
        raise IterationHeadsError(f"no chain-of-thought step of subtasks {list(chosen)}")
    return records


def prontoqa_prompts(
    problems: Sequence[ProntoQAProblem],
    tokenizer: Any,
    *,
    subtasks: Sequence[str] = ("decision", "copy", "induction"),
    prepend_bos: bool | None = None,
    skip_uncorruptible: bool = False,
) -> Prompts:
    """:func:`prompts_from_records` of :func:`prontoqa_records`: the prompts every pathway
    analysis takes.

    Example:
        >>> from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa
        >>> from iteration_heads.pathways.text_ontology import word_tokenizer
        >>> problems = make_prontoqa(ProntoQAConfig(shots=1), 3)
        >>> prompts = prontoqa_prompts(problems, word_tokenizer(problems))
        >>> len(prompts), prompts.segment_names
        (30, ('examples', 'facts', 'question', 'chain of thought'))
    """
    records = prontoqa_records(
        problems, tokenizer, subtasks=subtasks, skip_uncorruptible=skip_uncorruptible
    )
    return prompts_from_records(records, tokenizer, prepend_bos=prepend_bos, source="prontoqa")


def _fast_tokenizer(vocab: dict[str, int], *, punctuation: bool) -> Any:
    """A word-level fast tokenizer (``<s>``, ``</s>``, ``<pad>`` special); words split at
    spaces, and at punctuation too with ``punctuation``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    split = [pre_tokenizers.WhitespaceSplit()]
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [*split, pre_tokenizers.Punctuation()] if punctuation else split
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def word_tokenizer(problems: Sequence[ProntoQAProblem]) -> Any:
    """A word-level fast tokenizer of every word of ``problems``'s config (one token per
    name, ``.`` and ``:`` apart from words): for examples and tests, not for training.

    Example:
        >>> from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa
        >>> tokenizer = word_tokenizer(make_prontoqa(ProntoQAConfig(), 1))
        >>> tokenizer.convert_ids_to_tokens(tokenizer("Wren is impus.")["input_ids"])
        ['Wren', 'is', 'impus', '.']
    """
    words = ["<pad>", "<s>", "</s>", "[UNK]", ".", ":", "#", "True", "False"]
    for problem in _check_problems(problems):
        for kind in ("concept", "entity", "property"):
            for name in problem.names(kind):
                words += [
                    render(name, kind, plural_form=p, capital=c)
                    for p in (False, True)
                    for c in (False, True)
                ]
        words += "".join(c if c.isalnum() else " " for c in problem.text).split()
    return _fast_tokenizer({w: i for i, w in enumerate(dict.fromkeys(words))}, punctuation=True)


def ontology_tokenizer(vocab: OntologyVocab) -> Any:
    """A word-level fast tokenizer whose ids are ``vocab``'s (``<s>`` BOS, ``</s>`` EoS,
    ``<pad>`` padding): text from :func:`ontology_text` runs on a zoo ontology model. Words
    outside the vocabulary are refused by the tokenizer.

    Example:
        >>> from iteration_heads.tasks.ontology import OntologyConfig
        >>> vocab = OntologyVocab.of(OntologyConfig(n_concepts=3, n_entities=2, n_properties=2))
        >>> tokenizer = ontology_tokenizer(vocab)
        >>> tokenizer("e0 is c1 .", add_special_tokens=False)["input_ids"] == [
        ...     vocab.id("e0"), vocab.id("is"), vocab.id("c1"), vocab.id(".")]
        True
    """
    if not isinstance(vocab, OntologyVocab):
        raise IterationHeadsError(
            f"vocab of type {type(vocab).__name__}, expected an OntologyVocab"
        )
    tokenizer = _fast_tokenizer({n: i for i, n in enumerate(vocab.names)}, punctuation=False)
    for name in ("bos", "eos", "pad"):
        assert getattr(tokenizer, f"{name}_token_id") == vocab.id(
            getattr(tokenizer, f"{name}_token")
        )
    return tokenizer


def ontology_text(problems: OntologyProblems) -> list[str]:
    """Each problem as text: its token names joined by spaces, without ``<s>`` (the reader
    prepends the tokenizer's BOS) and padding.

    Example:
        >>> from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems
        >>> problems = make_ontology_problems(OntologyConfig(hops=(1,), distractors=0), 1)
        >>> ontology_text(problems)[0]
        'c1 is p4 . e1 is c1 . Q e1 is p5 ? => e1 is c1 . c1 is p4 . e1 is p4 . False </s>'
    """
    if not isinstance(problems, OntologyProblems):
        raise IterationHeadsError(
            f"problems of type {type(problems).__name__}, expected OntologyProblems"
        )
    names = problems.vocab.names
    texts = []
    for row in problems.tokens.tolist():
        words = [names[t] for t in row if names[t] != "<pad>"]
        texts.append(" ".join(words[1:] if words[:1] == ["<s>"] else words))
    return texts


def ontology_records(
    problems: OntologyProblems, subtasks: Sequence[str] = ("decision", "copy", "induction")
) -> list[dict[str, Any]]:
    """The steps of :func:`~iteration_heads.pathways.prompts.ontology_prompts` as text records
    (:func:`ontology_text`, characters), to read with :func:`ontology_tokenizer`: the same
    tokens, positions, answers, corruptions, segments and labels; ``example`` = the problem.

    Example:
        >>> from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems
        >>> problems = make_ontology_problems(OntologyConfig(hops=(2,), distractors=0), 2)
        >>> prompts = prompts_from_records(
        ...     ontology_records(problems, ("induction",)), ontology_tokenizer(problems.vocab))
        >>> len(prompts), prompts.labels[0], prompts.segment_names
        (4, 'induction', ('facts', 'question', 'chain of thought'))
    """
    texts = ontology_text(problems)
    _check_subtasks(subtasks, SUBTASKS)
    rows, positions = ontology_steps(problems, subtasks)
    records = []
    for row, position in zip(rows, positions, strict=True):
        words = texts[row].split(" ")
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words) + 1)]
        q, arrow = words.index("Q"), words.index("=>")
        changed = (problems.corrupt(row, position) != problems.tokens[row]).nonzero()
        at = int(changed[0]) - 1  # the word the corruption replaces (no <s> in the text)
        new = problems.vocab.names[int(problems.corrupt(row, position)[at + 1])]
        records.append(
            {
                "text": texts[row],
                "step": {"char": starts[position]},  # the word at token position + 1
                "answer": int(problems.targets[row, position]),
                "corrupted": {"span": [starts[at], starts[at + 1] - 1], "with": new},
                "segments": [
                    {"name": "facts", "span": [0, starts[q] - 1]},
                    {"name": "question", "span": [starts[q], starts[arrow] - 1]},
                    {"name": "chain of thought", "span": [starts[arrow + 1], len(texts[row])]},
                ],
                "label": SUBTASKS[int(problems.subtasks[row, position])],
                "example": row,
                "info": {"hops": int(problems.hops[row])},
            }
        )
    return records
