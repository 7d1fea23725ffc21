"""MkDocs hook of the docs build: keep ``docs/results/NAME.html`` next to ``NAME.md``.

``iteration-heads reproduce`` writes a result table ``NAME.md`` and its curves ``NAME.html``
side by side. With ``use_directory_urls: false`` (the site opens from disk) the table's page
would also be ``NAME.html``, and MkDocs drops the curves. This hook puts the table's page at
``NAME.table.html`` and keeps the curves at ``NAME.html`` (``exclude_docs`` in ``mkdocs.yml``
hides them from MkDocs's own clash check); Markdown links to either file are rewritten by MkDocs
as usual.

Loaded by ``hooks:`` in ``mkdocs.yml``; not part of the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel


def on_files(files: Files, config: Any) -> Files:
    """Move each result page that clashes with a figure to ``NAME.table.html``; restore the figure."""
    docs = Path(config["docs_dir"])
    for page in list(files.documentation_pages()):
        figure = Path(page.src_uri).with_suffix(".html").as_posix()
        if not (docs / figure).is_file():
            continue
        excluded = files.get_file_from_path(figure)
        if excluded is not None:  # no clash after all: exclude_docs only hid it
            files.remove(excluded)
        files.remove(page)
        table = Path(page.src_uri).with_suffix(".table.html").as_posix()
        moved = File(page.src_uri, page.src_dir, page.dest_dir, False, dest_uri=table)
        moved.inclusion = page.inclusion
        files.append(moved)
        curves = File(figure, page.src_dir, page.dest_dir, False)
        curves.inclusion = InclusionLevel.INCLUDED
        files.append(curves)
    return files
