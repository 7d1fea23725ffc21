"""What every analysis shares about running a TransformerLens model: eval mode restored after,
the device of its weights, and the names of the hooks read and written (one place builds them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import Tensor

from iteration_heads.errors import IterationHeadsError

Head = tuple[int, int]
"""``(layer, head)``."""


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside (:func:`without_gradients`); every submodule's own
    mode, and whether gradients are on, restored after, even when a ``KeyboardInterrupt``
    lands in the restoring (or in a ``torch.no_grad`` inside, whose exit can be cut short).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4)).train()
        >>> with evaluating(model):
        ...     inside = model.training, torch.is_grad_enabled()
        >>> inside, model.training, torch.is_grad_enabled()
        ((False, False), True, True)
    """
    modes = [(module, module.training) for module in model.modules()]

    def restore() -> None:
        for module, mode in modes:
            module.training = mode

    try:
        model.eval()  # inside the try: an interrupt half-way through still restores every mode
        with without_gradients():
            yield
    finally:
        run_to_the_end(restore)


@contextmanager
def without_gradients() -> Iterator[None]:
    """No gradients inside; whether they were on restored after, even when a
    ``KeyboardInterrupt`` lands in the restoring (``torch.no_grad``'s own exit can be cut
    short there, and leave them off for the rest of the session).

    Example:
        >>> with without_gradients():
        ...     inside = torch.is_grad_enabled()
        >>> inside, torch.is_grad_enabled()
        (False, True)
    """
    gradients = torch.is_grad_enabled()

    def restore() -> None:
        torch.set_grad_enabled(gradients)

    try:
        torch.set_grad_enabled(False)
        yield
    finally:
        run_to_the_end(restore)


def run_to_the_end(cleanup: Callable[[], None], tries: int = 8) -> None:
    """Run an idempotent ``cleanup`` to its end even when an exception (a ``KeyboardInterrupt``)
    lands in it: it is run again, and the first such exception re-raised once it has finished.

    Example:
        >>> calls = []
        >>> def cleanup():
        ...     calls.append(1)
        ...     if len(calls) == 1:
        ...         raise KeyboardInterrupt
        >>> try:
        ...     run_to_the_end(cleanup)
        ... except KeyboardInterrupt:
        ...     print(len(calls))
        2
    """
    pending: BaseException | None = None
    for _ in range(tries):
        try:
            cleanup()
        except BaseException as err:
            pending = pending or err
            continue
        break
    if pending is not None:
        raise pending


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


class attached_hooks(AbstractContextManager[Any]):
    """Forward hooks ``[(name, fn)]`` attached through the model's ``hooks`` context, and every
    hook point left as found after the block, whatever happens: on an exception, a
    ``KeyboardInterrupt`` included, landing anywhere (half-way through attaching a list of
    hooks, in a hook, in the removal), each hook point's hooks are put back to what they were
    on entry. With no hooks it only guards (e.g. around ``run_with_cache``).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> def stop(x, hook):
        ...     raise KeyboardInterrupt
        >>> try:
        ...     with attached_hooks(model, [("blocks.0.hook_resid_pre", stop)]):
        ...         model(torch.zeros(1, 3, dtype=torch.long))
        ... except KeyboardInterrupt:
        ...     pass
        >>> sum(len(p.fwd_hooks) + len(p._forward_hooks) for p in model.hook_dict.values())
        0
    """

    def __init__(self, model: Any, hooks: Sequence[tuple[Any, Callable[..., Any]]] = ()) -> None:
        self.model = model
        self.hooks = list(hooks)
        self.saved: list[tuple[Any, dict[str, Any]]] = []
        self.inner: AbstractContextManager[Any] | None = None

    def __enter__(self) -> Any:
        points = {id(p): p for p in getattr(self.model, "hook_dict", {}).values()}.values()
        level = getattr(self.model, "context_level", None)
        self.saved = [(p, _hook_state(p)) for p in points]
        self.level = level
        try:
            if self.hooks:
                inner = self.model.hooks(fwd_hooks=self.hooks)
                self.inner = inner
                inner.__enter__()
        except BaseException:
            inner, self.inner = self.inner, None
            try:
                if inner is not None:
                    inner.__exit__(None, None, None)
            except BaseException:
                pass
            run_to_the_end(self._restore)
            raise
        return self.model

    def __exit__(self, *exc: Any) -> None:
        inner, self.inner = self.inner, None
        try:
            if inner is not None:
                inner.__exit__(*exc)
        finally:
            run_to_the_end(self._restore)

    def _restore(self) -> None:
        for point, state in self.saved:
            for name in _HOOK_DICTS:
                hooks = getattr(point, name, None)
                if isinstance(hooks, dict):
                    for key in [k for k in hooks if k not in state[name]]:
                        del hooks[key]
            for name in ("fwd_hooks", "bwd_hooks"):
                if isinstance(state.get(name), list):
                    setattr(point, name, list(state[name]))
        if self.level is not None:
            self.model.context_level = self.level


def _hook_state(point: Any) -> dict[str, Any]:
    """The hooks of a hook point: the keys of torch's hook dictionaries and TransformerLens's
    handle lists."""
    state: dict[str, Any] = {}
    for name in _HOOK_DICTS:
        hooks = getattr(point, name, None)
        state[name] = set(hooks) if isinstance(hooks, dict) else set()
    for name in ("fwd_hooks", "bwd_hooks"):
        handles = getattr(point, name, None)
        state[name] = list(handles) if isinstance(handles, list) else None
    return state


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters).

    Example:
        >>> device_of(torch.nn.Linear(2, 2))
        device(type='cpu')
    """
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def pattern_hook(layer: int) -> str:
    """Attention pattern ``[batch, head, query, key]`` of a layer (writable).

    Example:
        >>> pattern_hook(1)
        'blocks.1.attn.hook_pattern'
    """
    return f"blocks.{layer}.attn.hook_pattern"


def z_hook(layer: int) -> str:
    """Every head's output before ``W_O``, ``[batch, pos, head, d_head]``.

    Example:
        >>> z_hook(0)
        'blocks.0.attn.hook_z'
    """
    return f"blocks.{layer}.attn.hook_z"


def input_hook(layer: int, name: str) -> str:
    """A head input, ``name`` one of ``"q"``, ``"k"``, ``"v"``: ``[batch, pos, head, d_head]``.

    Example:
        >>> input_hook(1, "q")
        'blocks.1.attn.hook_q'
    """
    return f"blocks.{layer}.attn.hook_{name}"


def resid_pre_hook(layer: int) -> str:
    """The residual stream entering a block.

    Example:
        >>> resid_pre_hook(1)
        'blocks.1.hook_resid_pre'
    """
    return f"blocks.{layer}.hook_resid_pre"


FINAL_NORM_HOOK = "ln_final.hook_out"
"""The residual stream after the final normalisation, ``[batch, pos, d_model]``: what the
unembedding reads."""


def mlp_out_hook(layer: int) -> str:
    """What a block's MLP writes to the residual stream.

    Example:
        >>> mlp_out_hook(0)
        'blocks.0.hook_mlp_out'
    """
    return f"blocks.{layer}.hook_mlp_out"


def head_names(heads: Sequence[Head]) -> str:
    """``"L0H0+L1H0"``: readable names of heads.

    Example:
        >>> head_names([(0, 1), (2, 0)]), head_names([])
        ('L0H1+L2H0', 'no head')
    """
    return "+".join(f"L{layer}H{head}" for layer, head in heads) or "no head"


def normalise_at(
    x: Tensor, scale: Tensor | None, position: int, norm: Any, kind: str | None
) -> Tensor:
    """``x`` through a model's normalisation as it acted at ``position``: centred (LayerNorm),
    divided by the scale cached there (``hook_scale``), times the norm's weight, bias left out;
    linear in ``x``, so the parts of a residual stream go through it one by one.

    Example:
        >>> norm = torch.nn.Module()
        >>> normalise_at(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0]]), 0, norm, "LN")
        tensor([[-0.5000,  0.5000]])
    """
    x = x - x.mean(-1, keepdim=True) if kind in ("LN", "LNPre") else x
    x = x if scale is None else x / scale[position]
    weight = getattr(norm, "w", None)
    return x * weight if isinstance(weight, Tensor) else x


def rotate_half(q: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding (``rotate_half`` form) of vectors with one position's ``cos``, ``sin``
    over the first ``cos.shape[-1]`` dimensions.

    Example:
        >>> rotate_half(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]))
        tensor([0., 1.])
    """
    r = cos.shape[-1]
    half = torch.cat([-q[..., r // 2 : r], q[..., : r // 2]], -1)
    return torch.cat([q[..., :r] * cos + half * sin, q[..., r:]], -1)


def check_heads(model: Any, heads: Sequence[Head] | Head) -> list[Head]:
    """``heads`` as a sorted list of ``(layer, head)``, or a clear error naming the bad one.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> check_heads(build_model(ModelConfig(d_model=32, max_len=4)), [(1, 0), (0, 0)])
        [(0, 0), (1, 0)]
    """
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if isinstance(heads, str) or not isinstance(heads, Iterable):
        raise IterationHeadsError(
            f"heads {heads!r}: expected a (layer, head) pair of ints or a list of them"
        )
    if isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(v, int) for v in heads):
        heads = [heads]  # type: ignore[list-item]
    result = []
    for spec in heads:
        if not (
            isinstance(spec, Sequence)
            and len(spec) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in spec)
        ):
            raise IterationHeadsError(f"head {spec!r}: expected a (layer, head) pair of ints")
        layer, head = spec
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise IterationHeadsError(
                f"head (layer={layer}, head={head}) does not exist: the model has layers "
                f"0..{n_layers - 1} and heads 0..{n_heads - 1}"
            )
        result.append((layer, head))
    if not result:
        raise IterationHeadsError("no head given: expected at least one (layer, head)")
    return sorted(set(result))


def cached_run(model: Any, inputs: Any, **options: Any) -> tuple[Any, Any]:
    """``model.run_with_cache(inputs, **options)`` with every hook point left as found, also
    when interrupted (:class:`attached_hooks`).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> tokens = torch.zeros(1, 3, dtype=torch.long)
        >>> _, cache = cached_run(model, tokens, names_filter=lambda n: n == "hook_embed")
        >>> list(cache.keys())
        ['hook_embed']
    """
    with attached_hooks(model):
        return model.run_with_cache(inputs, **options)
