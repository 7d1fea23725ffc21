"""How a model writes a task's chain of thought: in token ids of its own vocabulary
(:class:`TokenEncoding`) or as text through its tokenizer (:class:`TextEncoding`).

An encoding turns input sequences of one length into tokens, next-token targets and the
positions probes need (each input ``x_t``, EoI, the query that predicts ``s_t``, each state), so
probes, their corruptions and the interventions on them work in any model's vocabulary.

Positions, per sequence of input length ``L`` (``t = 1 .. L``):

* ``inputs[t]``: where ``x_t`` sits — the key the iteration head should attend to;
* ``eoi``: where the end-of-input marker sits — the key of the EoI head;
* ``queries[t]``: the token whose next token is the first token of ``s_t`` (EoI for ``t = 1``
  in a token layout, ``s_{t-1}`` after) — where the iteration head attends from;
* ``states[t]``: where ``s_t`` sits — where the EoI head attends from.

A symbol written with several tokens sits at its **last** token (the first position where the
whole symbol has been read); the query of step ``t`` is the token just before the first token of
``s_t``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import IGNORE
from iteration_heads.tasks.task import Task


@dataclass(frozen=True)
class Encoded:
    """Sequences of one input length ``L``, as tokens with targets and positions.

    Attributes:
        tokens: ``[n, width]`` token ids (``width`` may differ between calls).
        targets: ``[n, width]`` next-token targets on the chain of thought, ``-100`` elsewhere.
        inputs, queries, states: ``[n, L]`` positions (see the module docstring).
        eoi: ``[n]`` position of the end-of-input marker.
    """

    tokens: Int[Tensor, "n width"]
    targets: Int[Tensor, "n width"]
    inputs: Int[Tensor, "n L"]
    queries: Int[Tensor, "n L"]
    states: Int[Tensor, "n L"]
    eoi: Int[Tensor, " n"]


@dataclass(frozen=True)
class TokenEncoding:
    """A task written directly in a model's token ids: ``[BOS] [task] x_1..x_L EoI s_1..s_L
    [EoS]`` (bracketed tokens are left out when their id is None).

    Attributes:
        symbol_to_token: Token id of every task symbol, by symbol (``0 .. n_symbols - 1``;
            None for a symbol the model has no token for: an error if a probe needs it).
        eoi_token: Token id of the end-of-input marker.
        eos_token, bos_token, task_token: Optional token ids.

    Example:
        >>> from iteration_heads import get_task
        >>> encoding = TokenEncoding((40, 41), eoi_token=7, bos_token=0)
        >>> encoded = encoding.encode(get_task("parity"), torch.tensor([[1, 0]]))
        >>> encoded.tokens.tolist(), encoded.queries.tolist(), encoded.targets.tolist()
        ([[0, 41, 40, 7, 41, 41]], [[3, 4]], [[-100, -100, -100, 41, 41, -100]])
    """

    symbol_to_token: tuple[int | None, ...]
    eoi_token: int
    eos_token: int | None = None
    bos_token: int | None = None
    task_token: int | None = None

    def __post_init__(self) -> None:
        ids = [t for t in self.symbol_to_token if t is not None] + [self.eoi_token]
        ids += [t for t in (self.eos_token, self.bos_token, self.task_token) if t is not None]
        bad = [t for t in ids if not isinstance(t, int) or isinstance(t, bool) or t < 0]
        if bad:
            raise IterationHeadsError(f"token ids must be ints >= 0, got {bad}")

    @property
    def prefix(self) -> list[int]:
        """The tokens before ``x_1``."""
        return [t for t in (self.bos_token, self.task_token) if t is not None]

    @property
    def pad_token(self) -> int:
        """Padding after the sequence: EoS, or EoI when there is none (never attended to from
        the chain of thought)."""
        return self.eos_token if self.eos_token is not None else self.eoi_token

    def encode(self, task: Task, inputs: Int[Tensor, "n L"]) -> Encoded:
        """Write ``inputs`` (and the states ``task`` computes) in this vocabulary."""
        if task.n_symbols > len(self.symbol_to_token):
            raise IterationHeadsError(
                f"symbol_to_token has tokens for symbols 0..{len(self.symbol_to_token) - 1}; "
                f"task {task.name!r} has symbols 0..{task.n_symbols - 1}"
            )
        n, length = inputs.shape
        lut = torch.tensor([-1 if t is None else t for t in self.symbol_to_token])
        states = task.states(inputs)
        missing = sorted({int(v) for v in torch.cat([inputs, states], 1).flatten() if lut[v] < 0})
        if missing:
            raise IterationHeadsError(
                f"symbol_to_token has no token for symbols {missing}, which appear in probes of "
                f"task {task.name!r}"
            )
        body = [lut[inputs], torch.full((n, 1), self.eoi_token), lut[states]]
        if self.eos_token is not None:
            body.append(torch.full((n, 1), self.eos_token))
        head = torch.tensor(self.prefix, dtype=torch.long).expand(n, -1)
        tokens = torch.cat([head, *body], 1)
        start = len(self.prefix)
        t = torch.arange(length).expand(n, -1)
        eoi = start + length
        last = eoi + length - (1 if self.eos_token is None else 0)  # predicts s_L or EoS
        position = torch.arange(tokens.shape[1])[None, :]
        scored = (position >= eoi) & (position <= last)
        following = torch.cat([tokens[:, 1:], torch.full((n, 1), IGNORE)], 1)
        return Encoded(
            tokens=tokens,
            targets=torch.where(scored, following, IGNORE),
            inputs=start + t,
            queries=eoi + t,
            states=eoi + 1 + t,
            eoi=torch.full((n,), eoi),
        )


PLACEHOLDERS = ("{inputs}", "{eoi}", "{states}")
"""What a text template must hold, in this order."""


@dataclass(frozen=True)
class TextEncoding:
    """A task written as text, read through the model's own tokenizer.

    ``template`` holds ``{inputs}``, ``{eoi}`` and ``{states}`` in this order (anything around
    them is literal text, e.g. ``"<s> {inputs} {eoi} {states} </s>"``); the inputs and the
    states are written with ``symbols`` (symbol ``v`` as ``symbols[v]``, default ``str(v)``)
    joined by ``separator``; ``{eoi}`` becomes ``eoi_text``. Positions come from the tokenizer's
    character offsets: a symbol (or the EoI marker) sits at its last token, and a token that
    straddles a symbol's boundary is an error. Targets: every token of the chain of thought
    after the EoI marker, to the end of the text.

    Example:
        >>> from tokenizers import Tokenizer
        >>> from tokenizers.models import WordLevel
        >>> from tokenizers.pre_tokenizers import WhitespaceSplit
        >>> from transformers import PreTrainedTokenizerFast
        >>> words = ["<s>", "=", *map(str, range(11))]
        >>> core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<s>"))
        >>> core.pre_tokenizer = WhitespaceSplit()
        >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
        >>> from iteration_heads import get_task
        >>> encoding = TextEncoding(tokenizer, "<s> {inputs} {eoi} {states}", eoi_text="=")
        >>> encoded = encoding.encode(get_task("polynomial"), torch.tensor([[3, 2, 10]]))
        >>> encoded.tokens.tolist(), encoded.inputs.tolist(), encoded.queries.tolist()
        ([[0, 5, 4, 12, 1, 5, 9, 7]], [[1, 2, 3]], [[4, 5, 6]])
    """

    tokenizer: Any
    template: str
    eoi_text: str = "="
    separator: str = " "
    symbols: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.template, str):
            raise IterationHeadsError(
                f"template={self.template!r}, expected text holding {{inputs}}, {{eoi}} and "
                "{states}"
            )
        unknown = sorted(set(re.findall(r"\{[^{}]*\}", self.template)) - set(PLACEHOLDERS))
        if unknown:
            raise IterationHeadsError(
                f"template {self.template!r} holds the unknown placeholder(s) "
                f"{', '.join(unknown)}: a template holds {{inputs}}, {{eoi}} and {{states}} only"
            )
        places = [self.template.find(p) for p in PLACEHOLDERS]
        missing = [p for p, at in zip(PLACEHOLDERS, places, strict=True) if at < 0]
        if missing:
            raise IterationHeadsError(
                f"template {self.template!r} lacks the placeholder(s) {missing}; it must hold "
                "{inputs}, {eoi} and {states}, in this order"
            )
        if places != sorted(places) or any(self.template.count(p) != 1 for p in PLACEHOLDERS):
            raise IterationHeadsError(
                f"template {self.template!r} must hold {{inputs}}, {{eoi}} and {{states}} once "
                "each, in this order"
            )
        if not callable(self.tokenizer) or not hasattr(self.tokenizer, "convert_ids_to_tokens"):
            raise IterationHeadsError(
                f"tokenizer must be a HuggingFace tokenizer, got {type(self.tokenizer).__name__}"
            )
        if not self.eoi_text:
            raise IterationHeadsError("eoi_text is empty: the EoI marker needs some text")

    @property
    def pad_token(self) -> int:
        """Padding after the text: the tokenizer's pad token, else its EoS token, else id 0
        (causal attention never sees it from the chain of thought)."""
        for name in ("pad_token_id", "eos_token_id"):
            token = getattr(self.tokenizer, name, None)
            if isinstance(token, int):
                return token
        return 0

    def symbol_text(self, value: int) -> str:
        """How a symbol is written."""
        if self.symbols is None:
            return str(value)
        if not 0 <= value < len(self.symbols):
            raise IterationHeadsError(
                f"symbols has text for symbols 0..{len(self.symbols) - 1}, not for {value}"
            )
        return self.symbols[value]

    def render(self, inputs: list[int], states: list[int]) -> tuple[str, list[tuple[int, int]]]:
        """The text of one sequence and the character span of every input, the EoI marker and
        every state, in that order."""
        before, rest = self.template.split("{inputs}")
        between, rest = rest.split("{eoi}")
        middle, after = rest.split("{states}")
        text, spans = before, []
        for group, gap in ((inputs, between), ([None], middle), (states, after)):
            for i, value in enumerate(group):
                piece = self.eoi_text if value is None else self.symbol_text(value)
                if i:
                    text += self.separator
                spans.append((len(text), len(text) + len(piece)))
                text += piece
            text += gap
        return text, spans

    def encode(self, task: Task, inputs: Int[Tensor, "n L"]) -> Encoded:
        """Write ``inputs`` and their states as text and tokenize them."""
        n, length = inputs.shape
        states = task.states(inputs)
        rows: list[list[int]] = []
        lasts: list[list[int]] = []
        firsts: list[list[int]] = []
        for x, s in zip(inputs.tolist(), states.tolist(), strict=True):
            text, spans = self.render(x, s)
            ids, last, first = self._tokenize(text, spans, length)
            rows.append(ids)
            lasts.append(last)
            firsts.append(first)
        width = max(len(r) for r in rows)
        pad = self.pad_token if any(len(r) != width for r in rows) else 0
        tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        positions = torch.tensor(lasts, dtype=torch.long)  # n, 2L+1: last token of every span
        first_states = torch.tensor(firsts, dtype=torch.long)  # n, L: first token of every state
        ends = torch.tensor([len(r) for r in rows])
        index = torch.arange(width)[None, :]
        eoi = positions[:, length]
        scored = (index >= eoi[:, None]) & (index < ends[:, None] - 1)
        following = torch.cat([tokens[:, 1:], torch.full((n, 1), IGNORE)], 1)
        return Encoded(
            tokens=tokens,
            targets=torch.where(scored, following, IGNORE),
            inputs=positions[:, :length],
            queries=first_states - 1,
            states=positions[:, length + 1 :],
            eoi=eoi,
        )

    def _tokenize(
        self, text: str, spans: list[tuple[int, int]], length: int
    ) -> tuple[list[int], list[int], list[int]]:
        """Token ids, the last token of every span, and the first token of every state."""
        try:
            encoded = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        except (NotImplementedError, TypeError, ValueError) as err:
            raise IterationHeadsError(
                f"the tokenizer cannot give character offsets ({err}); use a fast tokenizer"
            ) from err
        ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
        last, first = [], []
        for which, (lo, hi) in enumerate(spans):
            covering = [i for i, (a, b) in enumerate(offsets) if a < hi and b > lo and b > a]
            name = self._span_name(which, length)
            if not covering:
                raise IterationHeadsError(f"{name} ({text[lo:hi]!r}) has no token in {text!r}")
            for i in covering:
                a, b = offsets[i]
                if (text[a:lo] + text[hi:b]).strip():
                    raise IterationHeadsError(
                        f"inconsistent split: the token {text[a:b]!r} straddles {name} "
                        f"({text[lo:hi]!r}) and its neighbours in {text!r}; choose a separator "
                        "or symbols that the tokenizer keeps apart"
                    )
            last.append(covering[-1])
            first.append(covering[0])
        if first[length + 1] == 0:
            raise IterationHeadsError(f"the first state is the first token of {text!r}")
        return ids, last, first[length + 1 :]

    @staticmethod
    def _span_name(which: int, length: int) -> str:
        if which < length:
            return f"input x_{which + 1}"
        if which == length:
            return "the EoI marker"
        return f"state s_{which - length}"


@dataclass(frozen=True)
class EncodedRows:
    """Sequences of several lengths, encoded and padded to one width.

    Attributes:
        encoded: Tokens, targets and positions (``[n, max L]``; values past a row's length
            repeat its last position).
        lengths: Input length of every row.
        symbols: The input symbols ``[n, max L]`` (``-1`` past a row's length).
    """

    encoded: Encoded
    lengths: Int[Tensor, " n"]
    symbols: Int[Tensor, "n L"]


def _groups(
    encoding: TokenEncoding | TextEncoding, task: Task, rows: list[Tensor]
) -> list[tuple[Encoded, Tensor, Tensor]]:
    """Encode rows of any lengths, one call per length: ``(encoded, row indices, inputs)``."""
    by_length: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if row.ndim != 1 or len(row) < 1:
            raise IterationHeadsError(f"input row {i} must be a non-empty 1-D tensor")
        by_length.setdefault(len(row), []).append(i)
    groups = []
    for _, index in sorted(by_length.items()):
        inputs = torch.stack([rows[i] for i in index])
        groups.append((encoding.encode(task, inputs), torch.tensor(index), inputs))
    return groups


def encode_rows(
    encoding: TokenEncoding | TextEncoding,
    task: Task,
    rows: list[Int[Tensor, " L"]],
    width: int | None = None,
) -> EncodedRows:
    """Encode input sequences of any lengths, in order, padded to one width (``width``: at
    least the longest; an error if it is shorter).

    Example:
        >>> from iteration_heads import get_task
        >>> encoding = TokenEncoding(tuple(range(11)), eoi_token=11)
        >>> rows = encode_rows(encoding, get_task("polynomial"), [torch.tensor([3]),
        ...                                                       torch.tensor([3, 2])])
        >>> rows.encoded.tokens.tolist(), rows.lengths.tolist()
        ([[3, 11, 3, 11, 11], [3, 2, 11, 3, 7]], [1, 2])
    """
    parts = _groups(encoding, task, rows)
    n = sum(len(index) for _, index, _ in parts)
    longest = max(int(e.tokens.shape[1]) for e, _, _ in parts)
    width = width if width is not None else longest
    if longest > width:
        raise IterationHeadsError(
            f"re-encoded probes need {longest} positions, the probes have {width}"
        )
    max_len = max(int(e.inputs.shape[1]) for e, _, _ in parts)
    tokens = torch.full((n, width), encoding.pad_token, dtype=torch.long)
    targets = torch.full((n, width), IGNORE, dtype=torch.long)
    fields = {k: torch.zeros(n, max_len, dtype=torch.long) for k in ("x", "q", "s")}
    inputs = torch.full((n, max_len), -1, dtype=torch.long)
    lengths, eoi = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    for e, index, x in parts:
        w, L = e.tokens.shape[1], e.inputs.shape[1]
        tokens[index, :w], targets[index, :w] = e.tokens, e.targets
        lengths[index], eoi[index], inputs[index, :L] = L, e.eoi, x
        for key, value in (("x", e.inputs), ("q", e.queries), ("s", e.states)):
            fields[key][index] = F.pad(value, (0, max_len - L), value=int(value.max()))
    encoded = Encoded(tokens, targets, fields["x"], fields["q"], fields["s"], eoi)
    return EncodedRows(encoded, lengths, inputs)
