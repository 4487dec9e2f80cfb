"""Sphinx extension: where the book comes from.

* The footer of every page names the version of ``ped`` and the commit the book was built from
  (``git describe --always --dirty``; "not a git checkout" elsewhere).
* The repository button and the Binder launch buttons point at the one repository URL the book
  is built from: ``$PED_REPOSITORY_URL`` if set (the workflow sets it from GitHub's
  ``github.repository``), else GitHub Actions' ``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY``, else
  the checkout's ``origin`` remote.  Without one (a local clone with no remote) the book has no
  repository or launch buttons rather than a guessed address.  Binder opens a chapter as
  ``notebooks/<chapter>.ipynb``, which ``.binder/postBuild`` makes from the MyST sources; pages
  that are not chapters (the landing page) get no launch button.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BINDERHUB = "https://mybinder.org"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30,
                             check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _commit() -> str:
    return _git("describe", "--always", "--dirty", "--abbrev=12") or "not a git checkout"


def https_url(remote: str) -> str | None:
    """``remote`` (``git@github.com:o/r.git``, ``ssh://git@host/o/r``, ``https://host/o/r.git``)
    as the ``https://host/o/r`` address a browser opens, or ``None`` for a local path."""
    remote = remote.strip()
    scp = re.fullmatch(r"[\w.-]+@([\w.-]+):(.+)", remote)
    if scp:
        host, path = scp.groups()
    else:
        url = re.fullmatch(r"(?:https?|ssh|git)://(?:[^@/]+@)?([\w.-]+)(?::\d+)?/(.+)", remote)
        if not url:
            return None
        host, path = url.groups()
    path = path.strip("/").removesuffix(".git")
    return f"https://{host}/{path}" if path.count("/") >= 1 else None


def repository_url(environ: dict[str, str] | None = None) -> str | None:
    """The repository the book is built from (see the module docstring), or ``None``."""
    environ = dict(os.environ if environ is None else environ)
    if environ.get("PED_REPOSITORY_URL"):
        return https_url(environ["PED_REPOSITORY_URL"])
    if environ.get("GITHUB_SERVER_URL") and environ.get("GITHUB_REPOSITORY"):
        return https_url(f"{environ['GITHUB_SERVER_URL']}/{environ['GITHUB_REPOSITORY']}")
    remote = _git("remote", "get-url", "origin")
    return https_url(remote) if remote else None


def theme_options(options: dict[str, Any], version: str, commit: str,
                  repository: str | None) -> dict[str, Any]:  # fmt: skip
    """``options`` with the footer, and the repository and launch buttons when ``repository``."""
    options = dict(options)
    options["extra_footer"] = (f"<p>Built with ped {version} from commit "
                               f"<code>{commit}</code>.</p>")  # fmt: skip
    if repository:
        options.update(repository_url=repository, repository_branch="main", path_to_docs="",
                       use_repository_button=True)  # fmt: skip
        options["launch_buttons"] = {**options.get("launch_buttons", {}),
                                     "binderhub_url": BINDERHUB,
                                     "notebook_interface": "jupyterlab"}  # fmt: skip
    return options


def _configure(app: Any, config: Any) -> None:
    import ped

    config.html_theme_options = theme_options(config.html_theme_options or {}, ped.__version__,
                                              _commit(), repository_url())  # fmt: skip


def _chapters_only(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                   doctree: Any) -> None:  # fmt: skip
    """Drop the launch buttons of pages that are not chapters (no notebook in the repository)."""
    if pagename.startswith("notebooks/"):
        return
    buttons = context.get("header_buttons") or []
    context["header_buttons"] = [b for b in buttons if b.get("label") != "launch-buttons"]


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _configure)
    app.connect("html-page-context", _chapters_only, priority=510)  # after the theme's (501)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
