"""Griffe extension for the docs build: render the package's Sphinx-style roles as links.

The docstrings are Google style but cross-reference with Sphinx roles (``:func:`detect```,
``:class:`~iteration_heads.data.Split```). Markdown would show the role verbatim, so every role
becomes an optional autorefs cross-reference: a link where the target is documented on the
site, plain code otherwise (no warning, so ``mkdocs build --strict`` stays clean). Targets are
resolved as Sphinx does: a full path, else a name in the scope of the documented object (its
class, its module). A reST literal-block marker ``text::`` becomes ``text:``,
a reST simple table becomes a Markdown table, and an ``Example:`` heading becomes ``Examples:``, the Google section griffe knows (it reads
``Example:`` as an admonition, whose ``>>>`` lines Markdown would turn into quotes).

Loaded by mkdocstrings (``extensions:`` in ``mkdocs.yml``); not part of the package.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|obj|exc|const):`(~?)([\w.]+)(?:\(\))?`")
LITERAL_BLOCK = re.compile(r"(?m)^(\s*\S+\s.*\S)::$")
LITERAL_BLOCK_WORD = re.compile(r"(?m)^(\s*\w+)::$")
TABLE_BORDER = re.compile(r"^=+(?: +=+)+ *$")


def _simple_tables(text: str) -> str:
    """reST simple tables (``===  ===`` borders, one header row) as Markdown pipe tables."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        border = lines[i]
        if TABLE_BORDER.match(border) and i + 2 < len(lines) and lines[i + 2] == border:
            end = next((j for j in range(i + 3, len(lines)) if lines[j] == border), None)
            if end is not None:
                starts = [m.start() for m in re.finditer(r"=+", border)]
                bounds = list(zip(starts, [*starts[1:], None], strict=True))
                rows = [[line[a:b].strip() for a, b in bounds] for line in lines[i + 1 : end]]
                rows = [rows[0], *rows[2:]]  # drop the border under the header
                out += ["| " + " | ".join(row) + " |" for row in rows[:1]]
                out += ["|" + "---|" * len(bounds)]
                out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
                i = end + 1
                continue
        out.append(border)
        i += 1
    return "\n".join(out)


EXAMPLE = re.compile(r"(?m)^(\s*)Example:[ \t]*$")


def _canonical(collection: Any, path: str) -> str | None:
    """The path where ``path`` is documented (aliases followed), or None if unknown."""
    try:
        obj = collection.get_member(path)
        return obj.final_target.path if obj.is_alias else obj.path
    except Exception:  # unknown name, or an alias to a module outside the package (json, torch)
        return None


def _resolve(obj: griffe.Object, target: str) -> str:
    """Full path of ``target`` as seen from ``obj``'s docstring (``target`` if unknown)."""
    collection = obj.modules_collection
    found = _canonical(collection, target)
    if found:
        return found
    first, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        if first in scope.members:
            found = _canonical(collection, ".".join(filter(None, [scope.path, first, rest])))
            if found:
                return found
        scope = scope.parent
    return target


def _convert(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        shown = target.rsplit(".", 1)[-1] if short else target
        identifier = html.escape(_resolve(obj, target), quote=True)
        return f'<autoref identifier="{identifier}" optional><code>{html.escape(shown)}</code></autoref>'

    text = _simple_tables(EXAMPLE.sub(r"\1Examples:", text))
    text = LITERAL_BLOCK.sub(r"\1:", ROLE.sub(link, text))
    # ``Examples::`` alone on its line: ``Examples:`` would open a Google section, so the colon
    # is written as an HTML entity (it renders the same).
    return LITERAL_BLOCK_WORD.sub(r"\1&#58;", text)


def _walk(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = _convert(obj, obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias and member.parent is obj:
            _walk(member)  # type: ignore[arg-type]


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg)
