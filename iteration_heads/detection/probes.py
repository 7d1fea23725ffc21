"""Probe sequences for :func:`~iteration_heads.detection.detector.detect`, with the positions of their parts.

A probe is a token sequence ``... x_1..x_L ... EoI ... s_1..s_L ...`` of any vocabulary: the
caller says where the inputs start, where EoI sits and where the chain of thought starts, so no
tokenizer is ever needed. Probes are built from a library model's test split
(:meth:`Probes.from_model`), from a :class:`~iteration_heads.tasks.data.Split`, or from a task and a map
from its symbols to a foreign model's token ids (:meth:`Probes.from_task`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import data_config
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.data import IGNORE, DataConfig, Split, encode, make_dataset
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import Task, get_task


class Probes:
    """Probe sequences and where their parts sit, per sequence (a tokenizer is never needed).

    For sequence ``b`` of input length ``L = lengths[b]``: inputs ``x_1..x_L`` at positions
    ``input_start .. input_start + L - 1``, EoI at ``eoi`` (``>= input_start + L``), states
    ``s_1..s_L`` at ``cot_start .. cot_start + L - 1`` (``> eoi``). The library's layout is
    ``input_start = 1`` (index 0 holds the task token), ``eoi = L + 1``, ``cot_start = L + 2``;
    a layout that opens with a BOS token has ``input_start = 2``. Positions may be ints (same for
    every sequence) or 1-D tensors; ``eoi`` defaults to ``input_start + L`` and ``cot_start`` to
    ``eoi + 1``; ``lengths`` may be left out when ``eoi`` is given.

    ``targets`` (optional, ``[batch, pos]``): the next-token target of every position, ``-100``
    where nothing is scored, as in a :class:`~iteration_heads.tasks.Split`. Probes built from a
    task (:meth:`from_model`, :meth:`from_split`, :meth:`from_task`) carry them, so every
    intervention (ablation, patching, :func:`~iteration_heads.interventions.verify`) runs on
    probes alone.

    Raises:
        IterationHeadsError: when a span or position does not fit in the sequences.

    Example:
        >>> tokens = torch.tensor([[15, 3, 2, 11, 3, 7, 12]])  # <polynomial> 3 2 EoI 3 7 EoS
        >>> Probes(tokens, torch.tensor([2]))
        Probes(n=1, width=7, lengths 2..2, input_start=1, source='custom')
        >>> Probes(tokens, eoi=5)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: sequence 0: the CoT span [6, 10) does not fit in the probe width 7
    """

    tokens: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    input_start: Int[Tensor, " batch"]
    eoi: Int[Tensor, " batch"]
    cot_start: Int[Tensor, " batch"]
    targets: Int[Tensor, "batch pos"] | None
    source: str

    def __init__(
        self,
        tokens: Int[Tensor, "batch pos"],
        lengths: Int[Tensor, " batch"] | int | None = None,
        *,
        input_start: Int[Tensor, " batch"] | int = 1,
        eoi: Int[Tensor, " batch"] | int | None = None,
        cot_start: Int[Tensor, " batch"] | int | None = None,
        targets: Int[Tensor, "batch pos"] | None = None,
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
        start = _per_sequence(input_start, n, "input_start")
        if lengths is None:
            if eoi is None:
                raise IterationHeadsError("give the probes' lengths, or their EoI positions")
            eoi_pos = _per_sequence(eoi, n, "eoi")
            length = eoi_pos - start
        else:
            length = _per_sequence(lengths, n, "lengths")
            eoi_pos = start + length if eoi is None else _per_sequence(eoi, n, "eoi")
        cot = eoi_pos + 1 if cot_start is None else _per_sequence(cot_start, n, "cot_start")
        checks = [
            (length >= 1, lambda b: f"sequence {b}: length {int(length[b])}, expected >= 1"),
            (start >= 0, lambda b: f"sequence {b}: input_start {int(start[b])}, expected >= 0"),
            (
                (eoi_pos >= 0) & (eoi_pos < width),
                lambda b: (
                    f"sequence {b}: EoI position {int(eoi_pos[b])} is outside the "
                    f"sequence (positions 0..{width - 1})"
                ),
            ),
            (
                start + length <= eoi_pos,
                lambda b: (
                    f"sequence {b}: the input span [{int(start[b])}, "
                    f"{int(start[b] + length[b])}) runs past EoI at {int(eoi_pos[b])}"
                ),
            ),
            (
                cot > eoi_pos,
                lambda b: (
                    f"sequence {b}: cot_start {int(cot[b])} must come after EoI at "
                    f"{int(eoi_pos[b])}"
                ),
            ),
            (
                cot + length <= width,
                lambda b: (
                    f"sequence {b}: the CoT span [{int(cot[b])}, "
                    f"{int(cot[b] + length[b])}) does not fit in the probe width {width}"
                ),
            ),
        ]
        for ok, message in checks:
            if not bool(ok.all()):
                raise IterationHeadsError(message(int((~ok).nonzero()[0])))
        if targets is not None:
            targets = torch.as_tensor(targets)
            if targets.shape != tokens.shape or targets.dtype.is_floating_point:
                raise IterationHeadsError(
                    f"probe targets must be integer ids of the tokens' shape {tuple(tokens.shape)}, "
                    f"got shape {tuple(targets.shape)} and dtype {targets.dtype}"
                )
            targets = targets.long()
        self.tokens, self.lengths, self.input_start = tokens.long(), length, start
        self.eoi, self.cot_start, self.source = eoi_pos, cot, source
        self.targets = targets

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
            input_start=self.input_start[index],
            eoi=self.eoi[index],
            cot_start=self.cot_start[index],
            targets=None if self.targets is None else self.targets[index],
            source=self.source,
        )

    @classmethod
    def from_split(cls, split: Split, *, source: str = "split") -> Probes:
        """Probes from a chain-of-thought :class:`~iteration_heads.tasks.data.Split` (library layout).

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
        return cls(split.tokens, split.lengths, input_start=1, targets=split.targets, source=source)

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
        return cls.from_split(split, source=f"test split of {data.task}")

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
        if not 1 <= min_len <= max_len:
            raise IterationHeadsError(
                f"min_len={min_len}, max_len={max_len}: expected 1 <= min_len <= max_len"
            )
        if n < 1:
            raise IterationHeadsError(f"n={n}, expected >= 1")
        layout = TokenLayout.for_tasks([resolved])
        lut = torch.full((layout.d_vocab,), -1, dtype=torch.long)
        for symbol, token in symbol_to_token.items():
            if not 0 <= int(symbol) < resolved.n_symbols:
                raise IterationHeadsError(
                    f"symbol_to_token has symbol {symbol!r}; task {resolved.name!r} has symbols "
                    f"0..{resolved.n_symbols - 1}"
                )
            lut[int(symbol)] = int(token)
        lut[layout.eoi] = eoi_token
        lut[layout.eos] = eos_token if eos_token is not None else eoi_token
        prefix = [t for t in (bos_token, task_token) if t is not None]
        width = len(prefix) + 2 * max_len + (1 if eos_token is None else 2)
        generator = torch.Generator().manual_seed(seed)
        n_lengths = max_len - min_len + 1
        bodies, lengths = [], []
        for i, length in enumerate(range(min_len, max_len + 1)):
            count = n // n_lengths + (1 if i < n % n_lengths else 0)
            if count == 0:
                continue
            inputs = resolved.sample_inputs(count, length, generator=generator)
            ours = encode(resolved, inputs, layout=layout).tokens[:, 1:]  # drop our task token
            bodies.append(F.pad(ours, (0, width - len(prefix) - ours.shape[1]), value=layout.eos))
            lengths.append(torch.full((count,), length, dtype=torch.long))
        body = torch.cat(bodies)
        missing = sorted(set(body[lut[body] < 0].tolist()))
        if missing:
            raise IterationHeadsError(
                f"symbol_to_token has no token for symbols {missing}, which appear in probes of "
                f"task {resolved.name!r}"
            )
        head = torch.tensor(prefix, dtype=torch.long).expand(len(body), -1)
        tokens = torch.cat([head, lut[body]], 1)
        if int(tokens.min()) < 0:
            raise IterationHeadsError(f"token ids must be >= 0, got {int(tokens.min())}")
        input_lengths = torch.cat(lengths)
        eoi = len(prefix) + input_lengths  # predictions from EoI .. s_{L-1} (and s_L for EoS)
        last = eoi + input_lengths - (1 if eos_token is None else 0)
        position = torch.arange(tokens.shape[1])[None, :]
        scored = (position >= eoi[:, None]) & (position <= last[:, None])
        following = F.pad(tokens[:, 1:], (0, 1), value=IGNORE)
        return cls(
            tokens,
            input_lengths,
            input_start=len(prefix),
            targets=torch.where(scored, following, IGNORE),
            source=f"{resolved.name} in a foreign vocabulary",
        )


def _per_sequence(value: Tensor | int, n: int, name: str) -> Tensor:
    """An int or a tensor of shape [n] as a long tensor of shape [n]."""
    tensor = torch.as_tensor(value)
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise IterationHeadsError(f"{name} must hold integer positions, got dtype {tensor.dtype}")
    if tensor.ndim == 0:
        return tensor.long().expand(n).clone()
    if tensor.shape != (n,):
        raise IterationHeadsError(
            f"{name} must be an int or a tensor of shape [{n}] (one per probe), "
            f"got shape {tuple(tensor.shape)}"
        )
    return tensor.long().cpu()


def spread_over_lengths(lengths: Int[Tensor, " batch"], n: int, seed: int = 0) -> Int[Tensor, " k"]:
    """Indices of at most ``n`` sequences, as evenly spread over the lengths as possible.

    Example:
        >>> lengths = torch.tensor([1, 1, 1, 2, 2, 3])
        >>> lengths[spread_over_lengths(lengths, 3)].tolist()  # one sequence of each length
        [1, 2, 3]
    """
    if n < 1:
        raise IterationHeadsError(f"n={n} probes, expected >= 1")
    values = sorted(set(lengths.tolist()))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for i, length in enumerate(values):
        index = (lengths == length).nonzero().flatten()
        count = n // len(values) + (1 if i < n % len(values) else 0)
        chosen.append(index[torch.randperm(len(index), generator=generator)[:count]])
    return torch.cat(chosen).sort().values
