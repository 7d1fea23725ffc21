"""Probe sequences for :func:`~iteration_heads.detection.detect`, with the positions of their
parts and, when they come from a task, their targets.

A probe is a token sequence ``... x_1..x_L ... EoI ... s_1..s_L ...`` of any vocabulary. Probes
are built from a library model's test split (:meth:`Probes.from_model`), from a
:class:`~iteration_heads.tasks.Split`, from a task written in a model's token ids
(:meth:`Probes.from_task`) or as text through its tokenizer (:meth:`Probes.from_text`), or by
hand from tokens and positions. Positions follow :mod:`~iteration_heads.detection.encoding`:
each input, the EoI marker, the query that predicts each state, and each state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads.detection.encoding import (
    EncodedRows,
    TextEncoding,
    TokenEncoding,
    encode_rows,
)
from iteration_heads.detection.positions import (
    check_layout,
    checked_targets,
    per_sequence,
    spread_over_lengths,
    step_positions,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import data_config
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.data import DataConfig, Split, make_dataset
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import Task, get_task

Encoding = TokenEncoding | TextEncoding
"""How probes of a task are written in a model's vocabulary."""


class Probes:
    """Probe sequences and where their parts sit, per sequence.

    For sequence ``b`` of input length ``L = lengths[b]``, by default (contiguous spans): inputs
    ``x_1..x_L`` at ``input_start .. input_start + L - 1``, EoI at ``eoi`` (``>= input_start +
    L``), states ``s_1..s_L`` at ``cot_start .. cot_start + L - 1`` (``> eoi``), and the query
    that predicts ``s_t`` just before it (EoI for ``t = 1``). The library's layout is
    ``input_start = 1`` (index 0 holds the task token), ``eoi = L + 1``, ``cot_start = L + 2``.
    Positions may be ints or 1-D tensors; ``eoi`` defaults to ``input_start + L`` and
    ``cot_start`` to ``eoi + 1``; ``lengths`` may be left out when ``eoi`` is given. Layouts with
    gaps (separators, several tokens per symbol) pass ``input_positions``, ``query_positions``
    and ``state_positions`` (``[batch, max L]``, any value past a sequence's length).

    ``targets`` (optional, ``[batch, pos]``): the next-token target of every position, ``-100``
    where nothing is scored. Probes built from a task carry them and its ``encoding``, so every
    intervention (ablation, patching, corruption, :func:`~iteration_heads.interventions.verify`)
    runs on probes alone.

    Raises:
        IterationHeadsError: when a span or position does not fit in the sequences.

    Example:
        >>> tokens = torch.tensor([[15, 3, 2, 11, 3, 7, 12]])  # <polynomial> 3 2 EoI 3 7 EoS
        >>> Probes(tokens, torch.tensor([2]))
        Probes(n=1, width=7, lengths 2..2, input_start=1, source='custom')
        >>> Probes(tokens, eoi=5)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: sequence 0: state s_2 at position 7 does not fit in the probe (positions 0..6)
    """

    def __init__(
        self,
        tokens: Int[Tensor, "batch pos"],
        lengths: Int[Tensor, " batch"] | int | None = None,
        *,
        input_start: Int[Tensor, " batch"] | int = 1,
        eoi: Int[Tensor, " batch"] | int | None = None,
        cot_start: Int[Tensor, " batch"] | int | None = None,
        input_positions: Int[Tensor, "batch L"] | None = None,
        query_positions: Int[Tensor, "batch L"] | None = None,
        state_positions: Int[Tensor, "batch L"] | None = None,
        targets: Int[Tensor, "batch pos"] | None = None,
        task: Task | None = None,
        inputs: Int[Tensor, "batch L"] | None = None,
        encoding: Encoding | None = None,
        source: str = "custom",
    ) -> None:
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 2 or 0 in tokens.shape:
            raise IterationHeadsError(
                f"probe tokens must have shape [batch, pos] with batch, pos >= 1, "
                f"got {tuple(tokens.shape)}"
            )
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise IterationHeadsError(f"probe tokens must be integer ids, got dtype {tokens.dtype}")
        n, width = tokens.shape
        start = per_sequence(input_start, n, "input_start")
        if lengths is None:
            if eoi is None:
                raise IterationHeadsError("give the probes' lengths, or their EoI positions")
            eoi_pos = per_sequence(eoi, n, "eoi")
            length = eoi_pos - start
        else:
            length = per_sequence(lengths, n, "lengths")
            eoi_pos = start + length if eoi is None else per_sequence(eoi, n, "eoi")
        if not bool((length >= 1).all()):
            b = int((length < 1).nonzero()[0])
            raise IterationHeadsError(f"sequence {b}: length {int(length[b])}, expected >= 1")
        cot = eoi_pos + 1 if cot_start is None else per_sequence(cot_start, n, "cot_start")
        steps = torch.arange(int(length.max()))[None, :]
        x = start[:, None] + steps if input_positions is None else input_positions
        s = cot[:, None] + steps if state_positions is None else state_positions
        if query_positions is None:
            q = torch.cat([eoi_pos[:, None], s[:, :-1]], 1)
        else:
            q = query_positions
        self.tokens, self.lengths, self.eoi = tokens.long(), length, eoi_pos
        self.input_positions = step_positions(x, length, "input_positions")
        self.query_positions = step_positions(q, length, "query_positions")
        self.state_positions = step_positions(s, length, "state_positions")
        check_layout(
            self.lengths, self.eoi, self.input_positions, self.query_positions,
            self.state_positions, width,
        )  # fmt: skip
        self.targets = checked_targets(targets, tokens.shape)
        self.task, self.encoding, self.source = task, encoding, source
        self.inputs = None if inputs is None else torch.as_tensor(inputs).long()

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __repr__(self) -> str:
        starts = sorted(set(self.input_start.tolist()))
        start = starts[0] if len(starts) == 1 else f"{starts[0]}..{starts[-1]}"
        return (
            f"Probes(n={len(self)}, width={self.width}, lengths "
            f"{int(self.lengths.min())}..{self.max_len}, input_start={start}, "
            f"source={self.source!r})"
        )

    @property
    def width(self) -> int:
        """Number of positions of the probe tensor."""
        return self.tokens.shape[1]

    @property
    def max_len(self) -> int:
        """Longest input length ``L`` among the probes."""
        return int(self.lengths.max())

    @property
    def input_start(self) -> Int[Tensor, " batch"]:
        """Position of ``x_1`` in every probe."""
        return self.input_positions[:, 0]

    @property
    def cot_start(self) -> Int[Tensor, " batch"]:
        """Position of ``s_1`` in every probe."""
        return self.state_positions[:, 0]

    def select(self, index: slice | Tensor) -> Probes:
        """The probes at ``index`` (a slice, or an index or boolean tensor).

        Example:
            >>> tokens = torch.tensor([[15, 3, 11, 3, 12], [15, 4, 11, 4, 12]])
            >>> Probes(tokens, 1).select(slice(1, 2)).tokens.tolist()
            [[15, 4, 11, 4, 12]]
        """
        return Probes(
            self.tokens[index],
            self.lengths[index],
            eoi=self.eoi[index],
            input_positions=self.input_positions[index],
            query_positions=self.query_positions[index],
            state_positions=self.state_positions[index],
            targets=None if self.targets is None else self.targets[index],
            task=self.task,
            inputs=None if self.inputs is None else self.inputs[index],
            encoding=self.encoding,
            source=self.source,
        )

    def with_inputs(
        self, inputs: Sequence[Int[Tensor, " L"]], *, task: Task | None = None, source: str = ""
    ) -> Probes:
        """New probes of the same encoding and width: row ``b`` writes ``inputs[b]`` (any
        length) and its states under ``task`` (default: the probes' own task).

        Raises:
            IterationHeadsError: for probes without an encoding, or a row that does not fit.

        Example:
            >>> probes = Probes.from_task("parity", symbol_to_token={0: 40, 1: 41}, eoi_token=7,
            ...                           max_len=3, n=3)
            >>> probes.with_inputs([torch.tensor([1, 1])] * 3).tokens[0].tolist()
            [41, 41, 7, 41, 40, 7, 7]
        """
        task = task or self.task
        if self.encoding is None or task is None:
            raise IterationHeadsError(
                "these probes were built from tokens, not from a task: build them with "
                "Probes.from_task, Probes.from_text or Probes.from_split(..., task=...) to "
                "corrupt them"
            )
        if len(inputs) != len(self):
            raise IterationHeadsError(f"{len(inputs)} input rows for {len(self)} probes")
        rows = [torch.as_tensor(x).long() for x in inputs]
        encoded = encode_rows(self.encoding, task, rows, width=self.width)
        return _from_rows(encoded, task, self.encoding, source or self.source)

    @classmethod
    def from_split(
        cls, split: Split, *, task: str | Task | None = None, source: str = "split"
    ) -> Probes:
        """Probes from a chain-of-thought :class:`~iteration_heads.tasks.Split` (library layout);
        with ``task``, they can be corrupted and re-encoded (:meth:`with_inputs`).

        Example:
            >>> from iteration_heads import DataConfig, make_dataset
            >>> data = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8))
            >>> Probes.from_split(data.test)
            Probes(n=32, width=11, lengths 1..4, input_start=1, source='split')
        """
        if not split.cot:
            raise IterationHeadsError(
                "probes need chain-of-thought sequences; this split has cot=False"
            )
        resolved = None if task is None else get_task(task)
        encoding, inputs = None, None
        if resolved is not None:
            layout = TokenLayout.for_task(resolved)
            encoding = TokenEncoding(
                tuple(range(layout.n_symbols)),
                eoi_token=layout.eoi,
                eos_token=layout.eos,
                task_token=layout.task_token(resolved),
            )
            steps = torch.arange(int(split.lengths.max())).expand(len(split), -1)
            inputs = split.tokens.gather(1, (1 + steps).clamp(max=split.tokens.shape[1] - 1))
            inputs = torch.where(steps < split.lengths[:, None], inputs, -1)
        return cls(
            split.tokens,
            split.lengths,
            input_start=1,
            targets=split.targets,
            task=resolved,
            inputs=inputs,
            encoding=encoding,
            source=source,
        )

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        *,
        task: str | Task | None = None,
        n: int | None = None,
        seed: int = 0,
    ) -> Probes:
        """Test-distribution probes for a model built or trained by this library.

        The task and data come from the model's metadata (``task`` overrides them, and is
        required for a model that was built but never trained). Probes always carry the chain
        of thought, also for a model trained without it: the question is whether the model would
        iterate over one. ``n``: at most this many probes, spread evenly over the lengths
        (``None``: the whole test split, the numbers training logged).

        Example:
            >>> from iteration_heads import ModelConfig, build_model
            >>> model = build_model(ModelConfig(d_model=32, max_len=6))
            >>> Probes.from_model(model, task="parity", n=60)
            Probes(n=60, width=15, lengths 1..6, input_start=1, source='test split of parity')
        """
        config = model_config(model)
        data = data_config(model, task=task)
        data = DataConfig.from_dict({**data.to_dict(), "cot": True})  # same draws as training
        split = make_dataset(data, config.layout).test
        if n is not None:
            split = split.select(spread_over_lengths(split.lengths, n, seed))
        return cls.from_split(split, task=data.task, source=f"test split of {data.task}")

    @classmethod
    def from_task(
        cls,
        task: str | Task,
        *,
        symbol_to_token: Mapping[int, int],
        eoi_token: int,
        max_len: int,
        n: int = 1024,
        min_len: int = 1,
        task_token: int | None = None,
        eos_token: int | None = None,
        bos_token: int | None = None,
        seed: int = 0,
    ) -> Probes:
        """Probes of ``task`` in a foreign vocabulary: ``[BOS] [task] x_1..x_L EoI s_1..s_L [EoS]``.

        ``symbol_to_token`` maps each task symbol (``0 .. n_symbols - 1``) to the model's token
        id; bracketed tokens are left out when their id is ``None``. ``n`` probes, lengths
        ``min_len .. max_len`` in turn; sequences are padded at the end with ``eos_token`` (or
        ``eoi_token`` when there is none), which causal attention never sees from the CoT.
        Targets: ``s_1..s_L`` predicted from EoI and ``s_1..s_{L-1}``, then ``eos_token`` (when
        given) predicted from ``s_L``; every other position is ``-100``.

        Example:
            >>> probes = Probes.from_task("parity", symbol_to_token={0: 40, 1: 41}, eoi_token=7,
            ...                           bos_token=0, max_len=3, n=3)
            >>> probes.tokens[2].tolist(), probes.input_start.tolist()
            ([0, 40, 41, 41, 7, 40, 41, 40], [1, 1, 1])
            >>> probes.targets[2].tolist()
            [-100, -100, -100, -100, 40, 41, 40, -100]
        """
        resolved = get_task(task)
        lut: list[int | None] = [None] * resolved.n_symbols
        for symbol, token in symbol_to_token.items():
            if not 0 <= int(symbol) < resolved.n_symbols:
                raise IterationHeadsError(
                    f"symbol_to_token has symbol {symbol!r}; task {resolved.name!r} has symbols "
                    f"0..{resolved.n_symbols - 1}"
                )
            lut[int(symbol)] = int(token)
        encoding = TokenEncoding(tuple(lut), eoi_token, eos_token, bos_token, task_token)
        return cls.from_encoding(
            encoding, resolved, max_len=max_len, n=n, min_len=min_len, seed=seed,
            source=f"{resolved.name} in a foreign vocabulary",
        )  # fmt: skip

    @classmethod
    def from_text(
        cls,
        tokenizer: Any,
        task: str | Task,
        *,
        template: str,
        max_len: int,
        eoi_text: str = "=",
        separator: str = " ",
        symbols: Sequence[str] | None = None,
        n: int = 1024,
        min_len: int = 1,
        seed: int = 0,
    ) -> Probes:
        """Probes of ``task`` written as text and read through a HuggingFace ``tokenizer``.

        ``template`` holds ``{inputs}``, ``{eoi}`` and ``{states}`` in this order, e.g.
        ``"<s> {inputs} {eoi} {states} </s>"``; positions come from the tokenizer's character
        offsets (:class:`~iteration_heads.detection.encoding.TextEncoding`: a symbol written with
        several tokens sits at its last token; a token straddling two symbols is an error).

        Example:
            >>> from tokenizers import Tokenizer
            >>> from tokenizers.models import WordLevel
            >>> from tokenizers.pre_tokenizers import WhitespaceSplit
            >>> from transformers import PreTrainedTokenizerFast
            >>> words = ["<s>", "=", *map(str, range(11))]
            >>> core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<s>"))
            >>> core.pre_tokenizer = WhitespaceSplit()
            >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
            >>> probes = Probes.from_text(tokenizer, "polynomial", template="<s> {inputs} = {states}",
            ...                           max_len=3, n=3)
            Traceback (most recent call last):
            ...
            iteration_heads.errors.IterationHeadsError: template '<s> {inputs} = {states}' lacks the placeholder(s) ['{eoi}']; it must hold {inputs}, {eoi} and {states}, in this order
            >>> probes = Probes.from_text(tokenizer, "polynomial", max_len=3, n=3,
            ...                           template="<s> {inputs} {eoi} {states}")
            >>> probes.tokens[2].tolist(), probes.eoi.tolist()
            ([0, 3, 6, 12, 1, 3, 7, 9], [2, 3, 4])
        """
        encoding = TextEncoding(
            tokenizer, template, eoi_text, separator, None if symbols is None else tuple(symbols)
        )
        resolved = get_task(task)
        return cls.from_encoding(
            encoding, resolved, max_len=max_len, n=n, min_len=min_len, seed=seed,
            source=f"{resolved.name} as text",
        )  # fmt: skip

    @classmethod
    def from_encoding(
        cls,
        encoding: Encoding,
        task: Task,
        *,
        max_len: int,
        n: int = 1024,
        min_len: int = 1,
        seed: int = 0,
        source: str = "",
    ) -> Probes:
        """``n`` probes of ``task`` in ``encoding``, lengths ``min_len .. max_len`` in turn.

        Example:
            >>> from iteration_heads import get_task
            >>> encoding = TokenEncoding(tuple(range(11)), eoi_token=11)
            >>> Probes.from_encoding(encoding, get_task("polynomial"), max_len=4, n=8).lengths
            tensor([1, 1, 2, 2, 3, 3, 4, 4])
        """
        if not 1 <= min_len <= max_len:
            raise IterationHeadsError(
                f"min_len={min_len}, max_len={max_len}: expected 1 <= min_len <= max_len"
            )
        if n < 1:
            raise IterationHeadsError(f"n={n}, expected >= 1")
        generator = torch.Generator().manual_seed(seed)
        n_lengths = max_len - min_len + 1
        rows: list[Tensor] = []
        for i, length in enumerate(range(min_len, max_len + 1)):
            count = n // n_lengths + (1 if i < n % n_lengths else 0)
            rows += list(task.sample_inputs(count, length, generator=generator))
        return _from_rows(encode_rows(encoding, task, rows), task, encoding, source or task.name)


def _from_rows(rows: EncodedRows, task: Task, encoding: Encoding, source: str) -> Probes:
    e = rows.encoded
    return Probes(
        e.tokens,
        rows.lengths,
        eoi=e.eoi,
        input_positions=e.inputs,
        query_positions=e.queries,
        state_positions=e.states,
        targets=e.targets,
        task=task,
        inputs=rows.symbols,
        encoding=encoding,
        source=source,
    )
