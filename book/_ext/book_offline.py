"""Sphinx extension: keep the book free of live-code machinery that needs the network.

Jupyter Book always loads sphinx-thebe, which adds a script pointing at a CDN copy of Thebe
(declared twice per page by this theme stack, a console error) although the book runs no live
kernels.  This removes thebe's scripts and stylesheet from every page.
"""

from __future__ import annotations

from typing import Any


def _is_thebe(asset: Any) -> bool:
    name = getattr(asset, "filename", None) or ""
    body = getattr(asset, "attributes", {}).get("body", "") or ""
    return "thebe" in name or "THEBE" in body


def _strip_thebe(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _is_thebe(asset)]


def setup(app):  # noqa: ANN001, ANN201
    app.connect("html-page-context", _strip_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
