"""The built book in a real browser: headless Chromium driven by Playwright, fully offline.

Run with ``make test-book`` after ``make book``.  Serves ``_build/html`` on localhost, opens every
page at 1280 px and 390 px width, and checks: no request leaves localhost, MathJax typeset every
formula (no raw TeX delimiters left), every image loaded and has a meaningful alt text, no console
errors, no broken internal link or anchor, legible body text on a phone, every Markdown table
rendered as an HTML table (no raw ``| a | b |`` rows), no warning or traceback in an output cell
and no path of the build machine anywhere on the page.  Screenshots go to
``_build/screenshots`` and a per-page summary to ``_build/screenshots/summary.json``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
# Debian's chromium by default; PED_CHROMIUM names another Chromium-based browser (e.g. on CI).
CHROMIUM = os.environ.get("PED_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Flags that keep Chromium from phoning home on a machine with no network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]  # fmt: skip
PAGES = sorted(
    p.relative_to(HTML).as_posix()
    for p in (HTML.rglob("*.html") if HTML.is_dir() else [])
    if not p.relative_to(HTML).as_posix().startswith("_static/")  # theme templates, not pages
)

# Text of the article without code, outputs and typeset math: what must hold no raw TeX.
PROSE_TEXT_JS = """() => {
  const main = document.querySelector('article') || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, .cell_output, mjx-container, script, style')
       .forEach(e => e.remove());
  return clone.textContent;
}"""

MATH_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const math = [...document.querySelectorAll('span.math, div.math')];
  return {total: math.length,
          typeset: math.filter(m => m.querySelector('mjx-container')).length,
          containers: document.querySelectorAll('mjx-container').length};
}"""

IMAGES_JS = """() => [...document.querySelectorAll('article img')].map(img => ({
  src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth,
  alt: img.getAttribute('alt') || '',
  caption: !!(img.closest('figure') && img.closest('figure').querySelector('figcaption'))}))"""

# Text of the article outside code and tables: a Markdown table that did not render as a table
# leaves its rows here (Sphinx's smart quotes turn the separator's dashes into em dashes).
UNTABLED_TEXT_JS = """() => {
  const main = document.querySelector('article') || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, table, mjx-container, script, style')
       .forEach(e => e.remove());
  return clone.innerText;
}"""
RAW_TABLE = re.compile(r"\|\s*:?[-\u2013\u2014]+:?\s*\||^[ \t]*\|[^\n|]*\|[^\n|]*\|", re.M)

OUTPUTS_JS = "() => [...document.querySelectorAll('.cell_output')].map(e => e.textContent)"
WARNING = re.compile(r"\w*Warning:|\bWARNING\b|Traceback \(most recent call last\)")
PAGE_TEXT_JS = "() => (document.querySelector('article') || document.body).textContent"
# Absolute paths of the machine that built the book: its checkout, temporary folder, home
# folders and installed packages.  A reader's machine has none of them.
MACHINE_PATHS = sorted({str(ROOT), tempfile.gettempdir().rstrip("/") + "/", "/tmp/", "/root/",
                        "/home/", "site-packages"})  # fmt: skip

LINKS_JS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"

FONT_JS = """() => {
  const p = document.querySelector('article p');
  return p ? parseFloat(getComputedStyle(p).fontSize) : null;
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    if not PAGES:
        pytest.fail(f"no built book in {HTML}: run `make book` first")
    handler = functools.partial(_Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def summary():
    data: dict[str, dict] = {}
    yield data
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "summary.json").write_text(json.dumps(data, indent=2))


def _anchors(page_file: Path) -> set[str]:
    text = page_file.read_text(encoding="utf-8")
    return set(re.findall(r'\bid="([^"]+)"', text)) | set(re.findall(r'\bname="([^"]+)"', text))


@pytest.mark.parametrize("page_path", PAGES)
def test_page_renders_offline(page_path, server, browser, summary):
    page_file = HTML / page_path
    redirect = re.search(r'http-equiv="refresh"[^>]*url=([^"]+)"', page_file.read_text(), re.I)
    if redirect:  # index.html only forwards to the landing page
        assert (page_file.parent / redirect.group(1)).exists(), "redirect to a missing page"
        return
    external, console_errors, missing = [], [], []
    for width, height in ((1280, 900), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()

        def route(r, _ext=external):
            url = r.request.url
            if url.startswith(server) or url.startswith(("data:", "blob:", "about:")):
                r.continue_()
            else:
                _ext.append(url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
        page.goto(server + page_path, wait_until="load")
        math = page.evaluate(MATH_JS)
        page.wait_for_load_state("networkidle")
        images = page.evaluate(IMAGES_JS)
        name = page_path.replace("/", "_").removesuffix(".html")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        if width == 1280:
            prose = page.evaluate(PROSE_TEXT_JS)
            links = page.evaluate(LINKS_JS)
            untabled = page.evaluate(UNTABLED_TEXT_JS)
            outputs = page.evaluate(OUTPUTS_JS)
            text = page.evaluate(PAGE_TEXT_JS)
        else:
            font_px = page.evaluate(FONT_JS)
        context.close()

    assert not external, f"requests left localhost: {external[:5]}"
    assert not missing, f"resources not found: {sorted(set(missing))[:5]}"
    assert not console_errors, f"console errors: {console_errors[:5]}"
    assert math["typeset"] == math["total"], f"untypeset formulas: {math}"
    for raw in ("\\(", "\\[", "$$", "$"):
        assert raw not in prose, f"raw TeX {raw!r} left in the prose"
    raw_rows = [m.group(0) for m in RAW_TABLE.finditer(untabled)]
    assert not raw_rows, f"a table rendered as text: {raw_rows[:3]}"
    warned = [o.strip()[:200] for o in outputs if WARNING.search(o)]
    assert not warned, f"an output cell shows a warning or traceback: {warned[:2]}"
    leaked = sorted({p for p in MACHINE_PATHS if p in text})
    assert not leaked, f"the page shows paths of the build machine: {leaked}"
    for img in images:
        assert img["complete"] and img["width"] > 0, f"image failed to load: {img['src']}"
        meaningful_alt = img["alt"] and not img["alt"].endswith((".png", ".svg", ".jpg"))
        assert meaningful_alt or img["caption"], f"image without alt text or caption: {img['src']}"
    if font_px is not None:
        assert font_px >= 14, f"body text is {font_px}px at 390 px width"

    for href in links:
        if not href.startswith(server):
            continue
        parts = urlsplit(href)
        target = HTML / unquote(parts.path[len(urlsplit(server).path):])
        if target.is_dir():
            target = target / "index.html"
        assert target.exists(), f"broken link from {page_path}: {href}"
        if parts.fragment and target.suffix == ".html":
            assert unquote(parts.fragment) in _anchors(target), f"broken anchor: {href}"
    summary[page_path] = {"formulas": math["containers"], "figures": len(images),
                          "file": str(page_file.relative_to(ROOT))}
