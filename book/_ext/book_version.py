"""Sphinx extension: the footer of every page names the version of ``ped`` and the commit the
book was built from (``git describe --always --dirty``; "not a git checkout" elsewhere)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=REPO,
                             capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return out.stdout.strip() or "not a git checkout"


def _footer(app: Any, config: Any) -> None:
    import ped

    options = dict(config.html_theme_options or {})
    options["extra_footer"] = (f"<p>Built with ped {ped.__version__} from commit "
                               f"<code>{_commit()}</code>.</p>")  # fmt: skip
    config.html_theme_options = options


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
