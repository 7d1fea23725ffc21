"""Bad-input cases: runs (see base.py)."""

from __future__ import annotations

from bad_cases.base import Case

CASES: list[Case] = []
