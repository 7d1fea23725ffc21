"""Weights in lower precision: cast an opened model (a TransformerLens bridge, library or
HuggingFace) to ``float32``, ``bfloat16`` or ``float16`` where the device computes in that
dtype at a useful speed, with one-line refusals elsewhere.

Measured on this project's CPUs (1 thread): an AMD EPYC with AVX512 and avx512_bf16 (a
256 x 256 matmul: float32 0.36 ms, bfloat16 0.17 ms, float16 10.5 ms), and an AMD EPYC with
AVX2 only, which emulates both (a 128 x 128 matmul: bfloat16 26 times slower than float32,
float16 23 times). A CPU without native half kernels emulates them; so a dtype is refused on
CPU when PyTorch has no vectorised kernels there (capability ``DEFAULT`` or ``NO AVX``) or when
a small matmul in it runs more than :data:`MAX_SLOWDOWN` times slower than in float32. The
agreement of bfloat16 with float32 on the analyses is measured by
``benchmarks/dtype_agreement.py``.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import torch

from iteration_heads.errors import IterationHeadsError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""The dtypes a model can be cast to, by name (the choices of ``--dtype``)."""

MAX_SLOWDOWN = 4.0
"""A dtype whose small CPU matmul runs more than this many times slower than float32's is
refused on CPU (with AVX512-BF16: float16 about 30 times slower, bfloat16 about 2 times faster;
with AVX2 only: both more than 20 times slower)."""

SLOW_CPU_CAPABILITIES = ("DEFAULT", "NO AVX")
"""``torch.backends.cpu.get_cpu_capability()`` values without vectorised kernels: half
precision is emulated there, so only float32 is allowed."""

KEPT_FLOAT32 = ("inv_freq",)
"""Buffers (by the end of their name) kept in float32: rotary frequencies, which HuggingFace
models compute in float32 whatever the weights' dtype (casting them moves the rotation of
late positions by whole degrees in bfloat16)."""


def dtype_named(name: str | torch.dtype) -> torch.dtype:
    """The torch dtype of ``"float32"``, ``"bfloat16"`` or ``"float16"`` (a torch dtype among
    them passes through).

    Example:
        >>> dtype_named("bfloat16")
        torch.bfloat16
        >>> dtype_named("int8")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: dtype 'int8': expected one of float32, bfloat16, float16
    """
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
    elif isinstance(name, str) and name in DTYPES:
        return DTYPES[name]
    raise IterationHeadsError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")


@functools.cache
def cpu_slowdown(dtype: torch.dtype, size: int = 128) -> float:
    """How many times slower a ``size`` x ``size`` matmul runs in ``dtype`` than in float32 on
    this CPU, with the current number of threads (best of 5 runs each; cached); ``inf`` when
    the matmul fails or gives a wrong result.

    Example:
        >>> cpu_slowdown(torch.float32)
        1.0
    """
    if dtype == torch.float32:
        return 1.0
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    times = {}
    for kind in (torch.float32, dtype):
        x, y = a.to(kind), b.to(kind)
        try:
            product = x @ y
        except RuntimeError:
            return float("inf")
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            x @ y
            best = min(best, time.perf_counter() - start)
        times[kind] = max(best, 1e-9)
        if kind == dtype and not torch.allclose(product.float(), a @ b, rtol=0.05, atol=0.5):
            return float("inf")
    return times[dtype] / times[torch.float32]


def unsupported(dtype: torch.dtype, device: torch.device | str) -> str | None:
    """Why ``device`` cannot run a model in ``dtype`` at a useful speed, or None when it can.

    Example:
        >>> unsupported(torch.float32, "cpu") is None
        True
    """
    device = torch.device(device)
    name = str(dtype).removeprefix("torch.")
    if dtype == torch.float32:
        return None
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return f"GPU {torch.cuda.get_device_name(device)} has no bfloat16 support"
        return None
    if device.type != "cpu":
        return f"{name} is checked on CPU and CUDA only, not on {device.type}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability in SLOW_CPU_CAPABILITIES:
        return f"this CPU (capability {capability}) has no vectorised {name} kernels"
    slowdown = cpu_slowdown(dtype)
    if slowdown > MAX_SLOWDOWN:
        measured = "fails" if slowdown == float("inf") else f"runs {slowdown:.0f}x slower"
        return f"a {name} matmul on this CPU {measured} than in float32 (emulated)"
    return None


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's weights (of its first parameter).

    Example:
        >>> from iteration_heads import load
        >>> model_dtype(load("polynomial"))
        torch.float32
    """
    if not isinstance(model, torch.nn.Module):
        raise IterationHeadsError(f"expected a model (torch.nn.Module), got {type(model).__name__}")
    for parameter in model.parameters():
        return parameter.dtype
    raise IterationHeadsError(f"{type(model).__name__} has no parameters")


def cast_model(model: Any, dtype: str | torch.dtype) -> Any:
    """Cast ``model``'s weights, in place, to ``dtype`` (a name of :data:`DTYPES`), keeping
    rotary frequencies (:data:`KEPT_FLOAT32`) in float32; returns the model.

    Refused (one line, the model unchanged): an unknown dtype; a model whose weights are not
    all floating point; a dtype its device does not run at a useful speed (:func:`unsupported`:
    float16 on most CPUs).

    Example (bfloat16 where this CPU runs it natively, else the one-line refusal):
        >>> from iteration_heads import load
        >>> model = load("ontology")
        >>> if unsupported(torch.bfloat16, "cpu") is None:
        ...     model = cast_model(model, "bfloat16")
        ... else:  # e.g. AVX2 without AVX512-BF16: refused, the model left as it was
        ...     try:
        ...         cast_model(model, "bfloat16")
        ...     except IterationHeadsError as refused:
        ...         assert str(refused).endswith("; use float32 here")
        >>> expected = torch.float32 if unsupported(torch.bfloat16, "cpu") else torch.bfloat16
        >>> model_dtype(model) == model.cfg.dtype == expected
        True
        >>> model_dtype(cast_model(model, "float32"))
        torch.float32
    """
    target = dtype_named(dtype)
    current = model_dtype(model)
    odd = sorted({str(p.dtype) for p in model.parameters() if not p.is_floating_point()})
    if odd:
        raise IterationHeadsError(
            f"{type(model).__name__} holds weights of dtype {', '.join(odd)}: only a model with "
            f"floating-point weights can be cast to {str(target).removeprefix('torch.')}"
        )
    if current == target:
        return model
    device = next(model.parameters()).device
    reason = unsupported(target, device)
    if reason is not None:
        name = str(target).removeprefix("torch.")
        raise IterationHeadsError(f"dtype {name!r}: {reason}; use float32 here")
    kept = {
        name: buffer.detach().to(torch.float32).clone()
        for name, buffer in model.named_buffers()
        if name.endswith(KEPT_FLOAT32) and buffer.is_floating_point()
    }
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(model, TransformerBridge):
        model.to(target, print_details=False)  # also sets model.cfg.dtype
    else:
        model.to(target)
    for name, buffer in kept.items():
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner) if owner else model, leaf, buffer)
    return model
