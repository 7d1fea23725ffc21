"""The checks prompt records share: one-line errors naming a record and a field
(:class:`RecordFault`), and what a record needs of its tokenizer (:class:`RecordVocabulary`):
encoding with character offsets, the BOS, the padding token, token ids inside the vocabulary, and
pieces of text that are exactly one token where they stand."""

from __future__ import annotations

from typing import Any

from iteration_heads.errors import IterationHeadsError

Offsets = list[tuple[int, int]]
"""Character spans of tokens, as a fast tokenizer gives them."""


class RecordFault:
    """Makes the one-line errors of one record: ``fault(field, what, expected)`` is
    ``"<name>, field '<field>': <what>, expected <expected>"``.

    Example:
        >>> print(RecordFault("records record 2")("step", "character 9", "a token boundary"))
        records record 2, field 'step': character 9, expected a token boundary
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, field: str, what: str, expected: str) -> IterationHeadsError:
        return IterationHeadsError(f"{self.name}, field '{field}': {what}, expected {expected}")

    def integer(self, field: str, value: Any, what: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self(field, f"{what} {value!r}", f"an integer >= {minimum}")
        if value < minimum:
            raise self(field, f"{what} {value}", f"an integer >= {minimum}")
        return value

    def span(self, field: str, value: Any, end: int, what: str) -> tuple[int, int]:
        if not isinstance(value, list) or len(value) != 2:
            raise self(field, f"{what} {value!r}", "[start, end]")
        lo, hi = (self.integer(field, v, what) for v in value)
        if not lo <= hi <= end:
            raise self(field, f"{what} [{lo}, {hi}]", f"0 <= start <= end <= {end}")
        return lo, hi


class RecordVocabulary:
    """The tokenizer of records (None: token records only) and what they need of it: encoding
    with offsets, BOS, padding, and checks of token ids and one-token pieces.

    Example:
        >>> RecordVocabulary(None, None).bos
        []
    """

    def __init__(self, tokenizer: Any, prepend_bos: bool | None) -> None:
        if tokenizer is not None and (
            not callable(tokenizer) or not hasattr(tokenizer, "convert_ids_to_tokens")
        ):
            raise IterationHeadsError(
                f"tokenizer of type {type(tokenizer).__name__}, expected a HuggingFace tokenizer"
            )
        if prepend_bos is not None and not isinstance(prepend_bos, bool):
            raise IterationHeadsError(f"prepend_bos={prepend_bos!r}, expected True, False or None")
        self.tokenizer = tokenizer
        bos = getattr(tokenizer, "bos_token_id", None)
        if prepend_bos and not isinstance(bos, int):
            raise IterationHeadsError(
                "prepend_bos=True, but the tokenizer has no BOS token; expected prepend_bos=False"
            )
        self.bos = [bos] if (prepend_bos is None or prepend_bos) and isinstance(bos, int) else []
        self.auto_bos = prepend_bos is None  # then not before a text that starts with it
        self.size = len(tokenizer) if tokenizer is not None else None
        self.pad = 0
        for name in ("pad_token_id", "eos_token_id"):
            token = getattr(tokenizer, name, None)
            if isinstance(token, int):
                self.pad = token
                break

    def encode(self, text: str) -> tuple[list[int], Offsets]:
        try:
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = encoded["offset_mapping"]
        except (NotImplementedError, TypeError, ValueError, KeyError) as err:
            reason = " ".join(str(err).split())[:200]
            raise IterationHeadsError(
                f"the tokenizer gives no character offsets ({reason}); expected a fast tokenizer"
            ) from None
        return list(encoded["input_ids"]), [(int(a), int(b)) for a, b in offsets]

    def names(self, ids: list[int]) -> str:
        return ", ".join(repr(t) for t in self.tokenizer.convert_ids_to_tokens(ids))

    def token_id(self, fault: RecordFault, field: str, value: Any, what: str) -> int:
        token = fault.integer(field, value, what)
        if self.size is not None and token >= self.size:
            raise fault(field, f"{what} {token} is outside the vocabulary", f"< {self.size}")
        return token

    def one_token(self, fault: RecordFault, field: str, before: str, piece: Any) -> int:
        """The token ``piece`` is when it follows ``before``, or an error."""
        if not isinstance(piece, str):
            raise fault(field, f"{piece!r}", "a string or a token id")
        ids, offsets = self.encode(before + piece)
        start = len(before)
        merged = [i for i, (a, b) in enumerate(offsets) if a < start < b]
        if merged:
            a, b = offsets[merged[0]]
            raise fault(
                field,
                f"{piece!r} merges with the text before it into the token {(before + piece)[a:b]!r}",
                "a piece that starts a token",
            )
        new = [t for t, (a, _) in zip(ids, offsets, strict=True) if a >= start]
        if len(new) != 1:
            raise fault(field, f"{piece!r} is {len(new)} tokens ({self.names(new)})", "one")
        return new[0]
