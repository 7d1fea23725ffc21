"""A Ctrl-C leaves the model as it was: no hook attached anywhere, every submodule's mode
restored, and a plain forward pass working, wherever the ``KeyboardInterrupt`` lands: at each
hook registration (before or after it takes effect), in each hook call, and at random instants
inside :func:`~iteration_heads.verify`."""

from __future__ import annotations

import _thread
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from iteration_heads import (
    DataConfig,
    ModelConfig,
    Probes,
    ablate,
    activation_patching,
    audit,
    build_model,
    corrupt,
    detect,
    load,
    make_dataset,
    patch_pattern,
    path_patch,
    verify,
)
from iteration_heads.detection import IterationHeads
from iteration_heads.interventions import as_batch
from iteration_heads.pathways import (
    answer_writers,
    head_patching,
    iteration_prompts,
    logit_lens,
    pruning_curve,
    segment_pathways,
    trace_many,
)


def hooks_attached(model: torch.nn.Module) -> int:
    """Hooks anywhere (as tests/test_bad_inputs.py's ``model_state`` counts them). The bridge
    wires a few permanent pre-hooks of its own on first use (``_capture_pre_ln1``): the tests
    compare with the count after an uninterrupted run."""
    count = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
    return count + sum(len(h.fwd_hooks) + len(h.bwd_hooks) for h in model.hook_dict.values())


class Interrupt:
    """Counts hook registrations and hook calls; raises KeyboardInterrupt at the k-th one."""

    def __init__(self, where: str = "count", k: int = 0) -> None:
        self.where, self.k = where, k
        self.registrations = self.calls = 0

    def _tick(self, where: str) -> None:
        if where == "call":
            self.calls += 1
            hit = self.calls == self.k
        else:
            self.registrations += 1 if where == "before" else 0
            hit = self.registrations == self.k
        if hit and self.where == where:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        register = torch.nn.Module.register_forward_hook
        add_hook = HookPoint.add_hook

        def counting_register(module: Any, hook: Callable, *args: Any, **kwargs: Any) -> Any:
            def counted(*hook_args: Any, **hook_kwargs: Any) -> Any:
                self._tick("call")
                return hook(*hook_args, **hook_kwargs)

            return register(module, counted, *args, **kwargs)

        def counting_add_hook(point: Any, *args: Any, **kwargs: Any) -> Any:
            self._tick("before")
            handle = add_hook(point, *args, **kwargs)
            self._tick("after")  # registered, the handle not yet returned to the caller
            return handle

        with monkeypatch.context() as patch:
            patch.setattr(torch.nn.Module, "register_forward_hook", counting_register)
            patch.setattr(HookPoint, "add_hook", counting_add_hook)
            yield


@pytest.fixture(scope="module")
def setting() -> dict[str, Any]:
    return make_setting()


def make_setting() -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, max_len=4, n_layers=2, n_heads=2))
    data = make_dataset(DataConfig(max_len=4, n_train=8, n_test=24))
    split = data.test
    probes = as_batch(model, split).as_probes("detection")
    found = detect(model, probes)
    # iteration heads in layer 1 and no EoI head: verify ablates them against other heads
    report = dataclasses.replace(found, iteration=IterationHeads(1, (0,), False, 1.0))
    prompts = iteration_prompts(split, data.layout).select(torch.arange(4))
    return {
        "model": model,
        "split": split,
        "bad": corrupt(split, "input", task="polynomial"),
        "probes": probes,
        "report": report,
        "prompts": prompts,
        "tokens": split.tokens[:4],
        "paper": load("polynomial_paper"),
        "paper_probes": Probes.from_model(load("polynomial_paper"), n=8),
    }


def _ablated(s: dict[str, Any]) -> None:
    with ablate(s["model"], [(0, 0), (1, 1)], kind="mean", reference=s["split"].tokens):
        s["model"](s["tokens"])


def _planted(s: dict[str, Any]) -> None:
    with patch_pattern(s["model"], [(1, 0)], "uniform", lengths=s["split"].lengths[:4]):
        s["model"](s["tokens"])


OPERATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "verify": lambda s: verify(s["model"], s["report"], s["split"], max_controls=2),
    "detect": lambda s: detect(s["model"], s["probes"]),
    "audit": lambda s: audit(s["model"], s["probes"], max_controls=2),
    # a model with iteration heads: detection, the ablation and the position route
    "audit_found": lambda s: audit(s["paper"], s["paper_probes"], max_controls=2, route_probes=8),
    "ablate": _ablated,
    "patch_pattern": _planted,
    "activation_patching": lambda s: activation_patching(s["model"], s["split"], s["bad"]),
    "path_patch": lambda s: path_patch(
        s["model"], s["split"], s["bad"], sender=(0, 0), receiver=(1, 0)
    ),
    "answer_writers": lambda s: answer_writers(s["model"], s["prompts"]),
    "head_patching": lambda s: head_patching(s["model"], s["prompts"]),
    "segment_pathways": lambda s: segment_pathways(s["model"], s["prompts"]),
    "logit_lens": lambda s: logit_lens(s["model"], s["prompts"], n_boot=2),
    "trace_many": lambda s: trace_many(s["model"], s["prompts"]),
    "pruning_curve": lambda s: pruning_curve(
        s["model"],
        s["prompts"],
        [(1, 0), (0, 1), (0, 0), (1, 1)],
        s["split"].tokens[4:12],
        n_random=1,
    ),
}


def assert_as_found(model: torch.nn.Module, tokens: torch.Tensor, what: str, hooks: int) -> None:
    assert hooks_attached(model) == hooks, f"{what}: hooks left attached"
    assert not any(p.fwd_hooks or p._forward_hooks for p in model.hook_dict.values()), what
    assert all(m.training for m in model.modules()), f"{what}: mode not restored"
    assert torch.is_grad_enabled(), f"{what}: gradients left off"
    assert model(tokens).shape[:2] == tokens.shape, what


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_an_interrupt_at_any_hook_registration_or_call_leaves_the_model_as_found(
    setting: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = setting["paper" if name == "audit_found" else "model"]
    operation = OPERATIONS[name]
    model.train()
    operation(setting)  # once-per-model work (blocks_skipped's check) done: the count is stable
    counter = Interrupt()
    with counter.installed(monkeypatch):
        operation(setting)
    assert counter.registrations > 0 and counter.calls > 0, name
    hooks = hooks_attached(model)
    # every instant; for the audit of a found circuit (33 registrations, each a full audit),
    # every fifth, staggered: its hooks go through the helpers the other operations cover fully
    stride = 5 if name == "audit_found" else 1
    cases = [
        (where, k)
        for offset, (where, n) in enumerate(
            [
                ("before", counter.registrations),
                ("after", counter.registrations),
                ("call", counter.calls),
            ]
        )
        for k in range(1 + offset % stride, n + 1, stride)
    ]
    for where, k in cases:
        interrupt = Interrupt(where, k)
        with interrupt.installed(monkeypatch), pytest.raises(KeyboardInterrupt):
            operation(setting)
        assert_as_found(model, setting["tokens"], f"{name}: interrupt {where} #{k}", hooks)
    model.eval()


class GradientsBackOn:
    """Counts the calls that turn gradients back on (``torch.no_grad``'s exit and ours); raises
    KeyboardInterrupt in the k-th, before it takes effect: a Ctrl-C that lands there."""

    def __init__(self, k: int = 0) -> None:
        self.k, self.calls = k, 0

    @contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        real = torch.set_grad_enabled

        def counting(mode: bool) -> Any:
            if mode:
                self.calls += 1
                if self.calls == self.k:
                    raise KeyboardInterrupt
            return real(mode)

        with monkeypatch.context() as patch:
            patch.setattr(torch, "set_grad_enabled", counting)
            yield


TURN_GRADIENTS_OFF = [n for n in OPERATIONS if n not in ("audit_found", "ablate", "patch_pattern")]
"""The operations that turn gradients off (a context manager's, run under the caller's mode)."""


@pytest.mark.parametrize("name", TURN_GRADIENTS_OFF)
def test_an_interrupt_while_gradients_are_turned_back_on_leaves_them_on(
    setting: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, operation = setting["model"], OPERATIONS[name]
    model.train()
    counter = GradientsBackOn()
    with counter.installed(monkeypatch):
        operation(setting)
    assert counter.calls > 0, name
    hooks = hooks_attached(model)
    for k in range(1, counter.calls + 1):
        with GradientsBackOn(k).installed(monkeypatch), pytest.raises(KeyboardInterrupt):
            operation(setting)
        assert_as_found(model, setting["tokens"], f"{name}: interrupt in restore #{k}", hooks)
    model.eval()


def test_ctrl_c_at_random_instants_inside_verify_leaves_the_model_as_found(
    setting: dict[str, Any],
) -> None:
    model = setting["model"]
    model.train()
    run = OPERATIONS["verify"]
    start = time.perf_counter()
    run(setting)
    duration = time.perf_counter() - start
    hooks = hooks_attached(model)
    rng = random.Random(0)
    interrupted = 0
    for attempt in range(48):
        timer = threading.Timer(rng.uniform(0, duration), _thread.interrupt_main)
        try:
            timer.start()
            run(setting)
            timer.join()  # a late interrupt lands here, outside verify
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            timer.cancel()
        assert_as_found(model, setting["tokens"], f"random interrupt #{attempt}", hooks)
    assert interrupted >= 24  # most instants fell inside verify
