"""Check that the built book loads nothing from the network.

Usage: python book/check_html.py _build/html

Every <script src>, <link href> (stylesheets, preloads, icons), <img src>, <iframe src>,
<source src> and CSS url(...) must point inside the build folder, and the MathJax that renders
the formulas must be the bundled copy.  Exits non-zero and lists the offenders otherwise.
Outbound hyperlinks (<a href>) are fine: they are not loaded by the page.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""", re.IGNORECASE)
LOADED = {"script": "src", "img": "src", "iframe": "src", "source": "src", "embed": "src"}


class _Loads(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in LOADED and a.get(LOADED[tag]):
            self.urls.append(a[LOADED[tag]] or "")
        if tag == "link" and a.get("href") and a.get("rel") not in ("canonical", "alternate"):
            self.urls.append(a["href"] or "")
        if a.get("style"):
            self.urls.extend(CSS_URL.findall(a["style"] or ""))


def external_loads(root: Path) -> list[str]:
    """``"file: url"`` for every resource in ``root`` that would be fetched from the network."""
    problems = []
    for page in sorted(root.rglob("*.html")):
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        problems += [f"{page.relative_to(root)}: {u}" for u in parser.urls if EXTERNAL.match(u)]
    for css in sorted(root.rglob("*.css")):
        for u in CSS_URL.findall(css.read_text(encoding="utf-8", errors="replace")):
            if EXTERNAL.match(u):
                problems.append(f"{css.relative_to(root)}: {u}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    pages = list(root.rglob("*.html"))
    if not pages:
        print(f"no HTML pages under {root}", file=sys.stderr)
        return 1
    problems = external_loads(root)
    if not (root / "_static" / "mathjax" / "tex-chtml.js").is_file():
        problems.append("_static/mathjax/tex-chtml.js is missing: MathJax is not bundled")
    if problems:
        print("The book loads resources from the network:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"{len(pages)} pages checked: every resource is local, MathJax is bundled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
