"""Audit the book across a refactor: its glued values, and how much code a reader is shown.

Usage::

    python book/audit.py glued _build/executed > before.json     # every glued value
    python book/audit.py compare before.json after.json            # equal, timings aside
    python book/audit.py cells notebooks                           # shown code cell lengths

``glued`` reads the executed notebooks (``make book`` leaves them in ``_build/executed``) and
writes ``{notebook: {name: value}}`` with the text form of every value glued with myst-nb's
``glue`` (figures by their kind only: their pixels change with the fonts).  ``compare`` reports
every name whose value differs or that exists on one side only, leaving out timings (names
in :data:`TIMING`); it exits 1 when anything differs.  ``cells`` counts the
lines of every code cell a reader sees (cells tagged ``remove-cell``, ``remove-input``,
``hide-input`` or ``hide-cell`` are not shown by default) and prints the longest and the
median per chapter and overall.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

#: Glued names that chapter 10 measures while the book builds (milliseconds, their ratio, the
#: machine): they differ between two runs.  Every other glued value is computed from committed
#: data and must not change.
TIMING = frozenset({"bench_ped_ms", "flowers_gbc", "flowers_logme", "flowers_ped", "flowers_sfda",
                    "flowers_ped_pct_sfda", "machine"})  # fmt: skip
HIDDEN_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell"}
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.M | re.S)


def glued_values(executed: Path) -> dict[str, dict[str, str]]:
    """``{notebook stem: {glued name: text value}}`` of every executed notebook in a folder."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(executed.glob("*.ipynb")):
        values: dict[str, str] = {}
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for output in cell.get("outputs", []):
                record = output.get("metadata", {}).get("scrapbook")
                if not record:
                    continue
                prefix = record["mime_prefix"]
                data = {k.removeprefix(prefix): v for k, v in output["data"].items()}
                if "image/png" in data or "image/svg+xml" in data:
                    values[record["name"]] = "<figure>"
                else:
                    text = data.get("text/html") or data.get("text/markdown") or data.get(
                        "text/plain", "")
                    values[record["name"]] = "".join(text) if isinstance(text, list) else text
        out[path.stem] = values
    return out


def compare(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """One line per glued value that differs (timings left out), missing or new."""
    problems = []
    for nb in sorted(set(before) | set(after)):
        b, a = before.get(nb, {}), after.get(nb, {})
        for name in sorted(set(b) | set(a)):
            if name in TIMING:
                continue
            if name not in a:
                problems.append(f"{nb}: {name} is gone")
            elif name not in b:
                problems.append(f"{nb}: {name} is new")
            elif a[name] != b[name]:
                problems.append(f"{nb}: {name}: {b[name][:60]!r} -> {a[name][:60]!r}")
    return problems


def shown_cells(source: str) -> list[int]:
    """Line counts of the code cells of a MyST notebook that a reader sees."""
    lengths = []
    for body in CELL.findall(source):
        lines = body.splitlines()
        tags: set[str] = set()
        code = []
        for line in lines:
            m = re.match(r"^:tags:\s*\[(.*)\]", line)
            if m:
                tags |= {t.strip() for t in m.group(1).split(",")}
            elif not line.startswith(":") and line.strip() != "---":
                code.append(line)
        if tags & HIDDEN_TAGS or "parameters" in tags:
            continue
        lengths.append(sum(1 for line in code if line.strip()))
    return lengths


def cell_report(folder: Path) -> str:
    rows, every = [], []
    for path in sorted(folder.glob("*.md")):
        lengths = shown_cells(path.read_text(encoding="utf-8"))
        every += lengths
        if lengths:
            rows.append(f"{path.stem:<32} {len(lengths):>5} {max(lengths):>8} "
                        f"{statistics.median(lengths):>7.1f}")  # fmt: skip
    head = f"{'chapter':<32} {'cells':>5} {'longest':>8} {'median':>7}"
    total = f"{'all':<32} {len(every):>5} {max(every):>8} {statistics.median(every):>7.1f}"
    return "\n".join([head, *rows, total])


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "glued":
        print(json.dumps(glued_values(Path(argv[1])), indent=1, sort_keys=True))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        before, after = (json.loads(Path(p).read_text()) for p in argv[1:])
        problems = compare(before, after)
        n = sum(len(v) for v in before.values())
        print("\n".join(problems) or f"all {n} glued values equal (timings aside)")
        return 1 if problems else 0
    if len(argv) == 2 and argv[0] == "cells":
        print(cell_report(Path(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
