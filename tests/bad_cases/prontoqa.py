"""Bad-input cases: natural-language PrOntoQA problems, their prompts through a tokenizer, and the
zoo's ontology problems as text (see base.py)."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from bad_cases.base import Case, api

A = "prontoqa"
CASES: list[Case] = [
    api(A, "seven shots", "ProntoQAConfig(shots=7)"),
    api(A, "negative shots", "ProntoQAConfig(shots=-1)"),
    api(A, "shots as text", "ProntoQAConfig(shots='2')"),
    api(A, "zero hops", "ProntoQAConfig(hops=(0,))"),
    api(A, "six hops", "ProntoQAConfig(hops=(2, 6))"),
    api(A, "hops as an int", "ProntoQAConfig(hops=2)"),
    api(A, "no hops", "ProntoQAConfig(hops=())"),
    api(A, "hops as a bool", "ProntoQAConfig(hops=(True,))"),
    api(A, "negative distractors", "ProntoQAConfig(distractors=-1)"),
    api(
        A,
        "more distractors than concepts",
        "ProntoQAConfig(distractors=5, concepts=tuple('abcdefg'))",
    ),
    api(A, "p_true above one", "ProntoQAConfig(p_true=1.5)"),
    api(A, "p_true not a number", "ProntoQAConfig(p_true=float('nan'))"),
    api(A, "unknown surface form", "ProntoQAConfig(surface='fancy')"),
    api(A, "unknown prompt format", "ProntoQAConfig(format='chat')"),
    api(A, "shuffle_facts as text", "ProntoQAConfig(shuffle_facts='yes')"),
    api(A, "too few concepts", "ProntoQAConfig(concepts=('wumpus', 'yumpus'))"),
    api(A, "a name with a space", "ProntoQAConfig(entities=('Fae', 'Rex Max'))"),
    api(A, "names as a list", "ProntoQAConfig(properties=['red', 'blue', 'hot'])"),
    api(A, "an entity that is a concept", "ProntoQAConfig(entities=('Fae', 'wumpus'))"),
    api(A, "a property called True", "ProntoQAConfig(properties=('red', 'blue', 'True'))"),
    api(A, "no problems asked for", "pq_make(ProntoQAConfig(), 0)"),
    api(A, "negative seed", "pq_make(ProntoQAConfig(), 2, seed=-1)"),
    api(A, "fractional problem seed", "pq_problem(ProntoQAConfig(), seed=1.5)"),
    api(A, "unknown subtask", "prontoqa_records(pq_problems, pq_words, subtasks=('format',))"),
    api(A, "subtasks as one string", "prontoqa_records(pq_problems, pq_words, subtasks='copy')"),
    api(A, "no subtasks", "prontoqa_prompts(pq_problems, pq_words, subtasks=())"),
    api(A, "no problems", "prontoqa_records([], pq_words)"),
    api(A, "a text instead of problems", "prontoqa_records(['Wren is impus.'], pq_words)"),
    api(A, "no tokenizer", "prontoqa_prompts(pq_problems, None)"),
    api(
        A,
        "a tokenizer that cannot write a name at the same length",
        "prontoqa_records(pq_unequal, pq_pieces, subtasks=('copy',))",
    ),
    api(
        A,
        "a digits-only tokenizer (the GPT-2 text fixture's)",
        "prontoqa_records(pq_problems, pq_digits)",
    ),
    api(A, "prepend_bos as text", "prontoqa_prompts(pq_problems, pq_words, prepend_bos='yes')"),
    api(A, "ontology tokenizer of no vocabulary", "ontology_tokenizer(['c0', 'c1'])"),
    api(A, "ontology text of PrOntoQA problems", "ontology_text(pq_problems)"),
    api(A, "ontology records of an answer step", "ontology_records(pq_ontology, ('answer',))"),
    api(A, "ontology records of an unknown subtask", "ontology_records(pq_ontology, ('hop',))"),
]


def _pieces() -> Any:
    """A WordPiece tokenizer: ``wumpus`` one token, ``sterpus`` two (``ster`` ``##pus``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from iteration_heads.tasks.prontoqa import ENTITIES, PROPERTIES

    words = ["[UNK]", *string.punctuation, *string.ascii_letters]
    words += ["##" + c for c in string.ascii_letters] + ["##pus", "##puses", "ster", "Ster"]
    words += [
        "Input",
        "Response",
        "True",
        "False",
        "or",
        "false",
        "Let",
        "us",
        "think",
        "step",
        "by",
        "is",
        "are",
    ]
    words += ["wumpus", "wumpuses", "Wumpuses", *ENTITIES, *PROPERTIES]
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(dict.fromkeys(words))}))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """Problems, tokenizers and the functions the cases call."""
    from helpers import FIXTURES
    from transformers import PreTrainedTokenizerFast

    import iteration_heads.pathways as pathways
    from iteration_heads.pathways.text_ontology import word_tokenizer
    from iteration_heads.tasks import OntologyConfig, make_ontology_problems
    from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_problem, make_prontoqa

    problems = make_prontoqa(ProntoQAConfig(), 2)
    tokenizer_file = FIXTURES / "gpt2_text_polynomial" / "tokenizer.json"
    namespace.update(
        {
            "ProntoQAConfig": ProntoQAConfig,
            "pq_make": make_prontoqa,
            "pq_problem": make_problem,
            "pq_problems": problems,
            "pq_words": word_tokenizer(problems),
            "pq_pieces": _pieces(),
            "pq_unequal": make_prontoqa(
                ProntoQAConfig(hops=(1,), concepts=("wumpus", "sterpus")), 1
            ),
            "pq_digits": PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file)),
            "pq_ontology": make_ontology_problems(OntologyConfig(hops=(1,)), 2),
        }
    )
    for name in ("prontoqa_records", "prontoqa_prompts", "ontology_tokenizer", "ontology_text",
                 "ontology_records"):  # fmt: skip
        namespace[name] = getattr(pathways, name)
