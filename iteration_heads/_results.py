"""The one face of every result object: ``to_dict()`` for JSON, ``format()`` for text (also its
``repr``), ``_repr_html_`` for notebooks (no scripts, no network).
"""

from __future__ import annotations

import html
import json
import math
from typing import Any


class Result:
    """Base of the library's result types.

    A subclass defines :meth:`to_dict` and :meth:`format`; it gets ``repr`` (the text),
    :meth:`to_json` (strict JSON, NaN as null) and an HTML view for notebooks, which
    :meth:`html_body` may extend with tables. Dataclass subclasses pass ``repr=False``.

    Example:
        >>> class Answer(Result):
        ...     def to_dict(self): return {"value": 42.0, "missing": float("nan")}
        ...     def format(self): return "the answer is 42"
        >>> Answer(), Answer().to_json()
        (the answer is 42, '{"value": 42.0, "missing": null}')
    """

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the result."""
        raise NotImplementedError

    def format(self) -> str:
        """The result as readable text."""
        raise NotImplementedError

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as strict JSON (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(plain(self.to_dict()), allow_nan=False, **kwargs)

    def html_body(self) -> str:
        """HTML after the text in notebooks (tables); empty by default."""
        return ""

    def __repr__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        lines = html.escape(self.format()).split("\n")
        head = f"<p><b>{lines[0]}</b></p>"
        rest = f"<pre>{chr(10).join(lines[1:])}</pre>" if len(lines) > 1 else ""
        return f"<div>{head}{rest}{self.html_body()}</div>"


def plain(value: Any) -> Any:
    """Python scalars, lists and dicts only (tensors and numpy values converted; NaN as None).

    Example:
        >>> import torch
        >>> plain({"a": torch.tensor(0.5), "b": (1, float("nan"))})
        {'a': 0.5, 'b': [1, None]}
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
