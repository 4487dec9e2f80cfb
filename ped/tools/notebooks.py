"""Execute the book's notebooks: jupytext sources in, executed ``.ipynb`` out, via papermill.

The notebooks live in ``notebooks/`` as MyST markdown (jupytext) files; git never holds a
``.ipynb``.  :func:`execute_notebook` reads one source, lets papermill inject parameters after
the cell tagged ``parameters`` and executes it in a fresh kernel.  The book build, the notebook
tests and parameter sweeps all go through this one function.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ped._io import atomic_path

__all__ = [
    "REPO_ROOT",
    "NOTEBOOK_DIR",
    "notebook_sources",
    "notebook_parameters",
    "execute_notebook",
    "failed_path",
    "glued_values",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebook_sources(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """The jupytext notebook sources (``*.md``) of ``directory`` (default: the checkout's
    ``notebooks/``), sorted by name."""
    directory = NOTEBOOK_DIR if directory is None else directory
    paths = sorted(Path(directory).glob("*.md"))
    if not paths:
        raise FileNotFoundError(f"no notebook sources (*.md) in {directory}")
    return paths


def notebook_parameters(notebook: Any) -> dict[str, str]:
    """Names and default expressions assigned in the cell tagged ``parameters``.

    ``notebook`` is an nbformat notebook (or a path to a jupytext source).  Returns ``{}`` when
    there is no such cell.
    """
    if isinstance(notebook, (str, os.PathLike)):
        import jupytext

        path = Path(notebook)
        notebook = jupytext.read(path, fmt="md:myst" if path.suffix == ".md" else None)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            return {
                target.id: ast.unparse(node.value)
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
    return {}


def _quiet_kernel_manager(log: Any) -> type:
    """An ``AsyncKernelManager`` whose kernel writes its own stderr (ipykernel's start-up
    warnings, the tracebacks of a kernel shut down mid-cell) to the file object ``log`` instead of
    the terminal; what the notebook's cells print still reaches the executed notebook."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):  # type: ignore[misc]
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kw.setdefault("stderr", log)
            await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager


def execute_notebook(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    kernel_name: str = "python3",
    timeout: int | None = 1800,
    progress_bar: bool = False,
) -> Path:
    """Execute the jupytext notebook ``source`` with papermill and write it to ``output``.

    ``parameters`` override the values of the cell tagged ``parameters``; a name that cell does
    not define raises ``ValueError`` (papermill would only warn, and a typo would go unnoticed).
    ``progress_bar`` shows papermill's per-cell progress bar on stderr.

    The output is written to a temporary file first and renamed into place (mode ``0o666`` less
    the umask, like any new file), so a killed run never leaves a half-written notebook behind.
    A failing cell raises ``papermill.PapermillExecutionError``, and any failure once the
    execution has started (an interruption included) leaves the partially executed notebook as
    ``<name>.failed.ipynb`` for inspection and **removes** an earlier ``<name>.ipynb``: the folder
    never shows a success older than the latest attempt.  A success removes an earlier
    ``<name>.failed.ipynb``.
    """
    import jupytext
    import papermill

    source = Path(source)
    output = Path(output)
    if not source.is_file():
        raise FileNotFoundError(f"notebook source {source} not found")
    notebook = jupytext.read(source, fmt="md:myst" if source.suffix == ".md" else None)
    unknown = set(parameters or {}) - set(notebook_parameters(notebook))
    if unknown:
        raise ValueError(
            f"{source.name} has no parameter(s) {sorted(unknown)}; its parameters cell defines "
            f"{sorted(notebook_parameters(notebook))}"
        )
    notebook.metadata["kernelspec"] = {
        "name": kernel_name,
        "display_name": "Python 3",
        "language": "python",
    }
    logger.info("executing %s -> %s with %s", source, output, dict(parameters or {}))
    failed = failed_path(output)
    with tempfile.TemporaryFile(mode="w+b") as kernel_log:
        try:
            with atomic_path(output, keep_failed_as=failed, suffix=".ipynb") as tmp:
                papermill.execute_notebook(
                    notebook,
                    str(tmp),
                    parameters=dict(parameters or {}),
                    cwd=str(cwd if cwd is not None else source.parent),
                    kernel_name=kernel_name,
                    execution_timeout=timeout,
                    progress_bar=progress_bar,
                    log_output=False,
                    kernel_manager_class=_quiet_kernel_manager(kernel_log),
                )
        except BaseException:
            with contextlib.suppress(OSError):
                output.unlink(missing_ok=True)  # a stale success must not survive a failure
                kernel_log.seek(0)
                text = kernel_log.read().decode(errors="replace").strip()
                if text:
                    logger.info("the kernel of %s wrote on its stderr:\n%s", source.name, text)
            raise
    failed.unlink(missing_ok=True)
    return output


def failed_path(output: str | os.PathLike[str]) -> Path:
    """Where :func:`execute_notebook` keeps the partial notebook of a failed run of ``output``:
    ``<name>.failed.ipynb`` beside it."""
    output = Path(output)
    return output.with_name(output.stem + ".failed.ipynb")


def glued_values(notebook: str | os.PathLike[str]) -> dict[str, Any]:
    """The scalars an executed notebook recorded with ``myst_nb.glue``, keyed by glue name.

    Values are parsed from their ``text/plain`` form with ``ast.literal_eval`` (numbers,
    strings, lists, ...); values that do not parse are returned as their text.
    """
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            record = out.get("metadata", {}).get("scrapbook")
            if not record:
                continue
            text = out.get("data", {}).get(record.get("mime_prefix", "") + "text/plain")
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[record["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[record["name"]] = text
    return values
