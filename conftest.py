"""Pytest setup for the repository and for an unpacked sdist.

The sdist ships the package without ``tests/`` (its fixtures, docs and notebooks live in the
repository), so ``pytest`` there runs the package's doctests. The few examples that read the
repository's test fixtures, or an optional extra that is not installed, are skipped there with
the reason; in a clone (``make test``) every one of them runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parent
FIXTURES = "tests/fixtures"
EXTRAS = {"SlurmExecutor(": ("submitit", "slurm"), "RayExecutor(": ("ray", "ray")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the doctests that need what an unpacked sdist does not have."""
    has_fixtures = (ROOT / FIXTURES).is_dir()
    for item in items:
        test = getattr(item, "dtest", None)  # a doctest item
        text = (test.docstring or "") if test is not None else ""
        if not text:
            continue
        if FIXTURES in text and not has_fixtures:
            item.add_marker(pytest.mark.skip(reason=f"reads {FIXTURES}/ of a clone"))
        for call, (module, extra) in EXTRAS.items():
            if call in text and importlib.util.find_spec(module) is None:
                item.add_marker(pytest.mark.skip(reason=f"needs the {extra} extra"))
