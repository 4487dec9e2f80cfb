"""Stage the book's sources for Jupyter Book: pages, executed notebooks, rerun instructions.

    python book/stage.py --executed _build/executed --out _build/src

Copies the pages of ``book/`` and the papermill-executed notebooks into one source folder, and
adds to every chapter a "Rerun this chapter" box: download links for its MyST source and for the
executed notebook, its parameters with their defaults, and the commands that rerun it with other
values.  Captioned figures get their caption as alt text.  The executed landing page (``intro.ipynb``) replaces ``intro.md``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ped.tools.notebooks import notebook_parameters  # noqa: E402

RERUN = """\
:::{{admonition}} Rerun this chapter
:class: tip dropdown

This page was executed by papermill when the book was built. Download its
{{download}}`MyST source <sources/{stem}.md>` or the {{download}}`executed notebook <{stem}.ipynb>`.
Its parameters and their defaults:

```python
{defaults}
```

To rerun it with other values, from a clone of the repository after `make book`:

```bash
.venv/bin/ped execute notebooks/{stem}.md --out runs/ {example}
# or with papermill itself
.venv/bin/jupytext --to ipynb notebooks/{stem}.md -o {stem}.ipynb
.venv/bin/papermill {stem}.ipynb runs/{stem}.ipynb {pm_example}
```
:::
"""


def rerun_cell(source: Path) -> nbformat.NotebookNode:
    """The markdown cell with the rerun box of the chapter whose MyST source is ``source``."""
    params = notebook_parameters(source)
    defaults = "\n".join(f"{name} = {value}" for name, value in params.items()) or "# none"
    first = next(iter(params.items()), None)
    example = f"-p {first[0]}={first[1]}" if first else ""
    pm_example = f"-p {first[0]} {first[1]}" if first else ""
    text = RERUN.format(stem=source.stem, defaults=defaults, example=example,
                        pm_example=pm_example)
    return nbformat.v4.new_markdown_cell(text)


def caption_alt_text(nb: nbformat.NotebookNode) -> None:
    """Give every captioned figure an alt text: its caption without markup (in place).

    myst-nb otherwise uses the image's file name as alt text, which says nothing to a screen
    reader.
    """
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("mystnb", {})
        caption = meta.get("figure", {}).get("caption")
        if caption and "alt" not in meta.get("image", {}):
            text = re.sub(r"\{[a-z:]+\}`([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", caption)
            text = re.sub(r"[$*`\\]", "", " ".join(text.split()))
            meta.setdefault("image", {})["alt"] = text


def hide_injected_parameters(nb: nbformat.NotebookNode) -> None:
    """Hide the cell papermill injects with the run's parameters (it may hold local paths)."""
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


def stage(executed: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(ROOT / "book", out, ignore=shutil.ignore_patterns("stage.py", "check_html.py", "__pycache__"))
    (out / "notebooks" / "sources").mkdir(parents=True)
    intro = executed / "intro.ipynb"
    if intro.exists():
        (out / "intro.md").unlink()
        nb = nbformat.read(intro, as_version=4)
        hide_injected_parameters(nb)
        nbformat.write(nb, out / "intro.ipynb")
    for source in sorted((ROOT / "notebooks").glob("*.md")):
        nb_path = executed / f"{source.stem}.ipynb"
        if not nb_path.exists():
            raise FileNotFoundError(f"{nb_path} is missing: execute the notebooks first")
        nb = nbformat.read(nb_path, as_version=4)
        nb.cells.insert(1, rerun_cell(source))
        caption_alt_text(nb)
        hide_injected_parameters(nb)
        nbformat.write(nb, out / "notebooks" / nb_path.name)
        shutil.copy(source, out / "notebooks" / "sources" / source.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executed", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    stage(args.executed, args.out)


if __name__ == "__main__":
    main()
