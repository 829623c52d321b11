"""Browser test of the built book: load every page in Chromium and check what a reader sees.

    .venv/bin/python tools/browser_test.py                 # test _build/html
    .venv/bin/python tools/browser_test.py --strict        # also fail on notebook-phase problems
    .venv/bin/python tools/browser_test.py --screenshots /tmp/shots/after

It serves the built site on 127.0.0.1, blocks every request to any other host, and drives the
system's Chromium through Playwright (``executable_path``: nothing is downloaded). Checks:

site checks (always fail the run)
  console     no console error and no uncaught exception on any page, at 1400 and 400 px
  outside     no request to a host other than the local server (CDNs, fonts, thebe, ...)
  links       every internal link resolves: the file exists, and its #fragment is an id there
  menu        at 400 px the menu button opens the chapter list and Escape closes it; at
              1400 px the same button hides and shows the sidebar
  column      at 1400 px no output block or equation sticks out of the text column, and no
              page scrolls sideways as a whole

notebook checks (reported; they fail the run only with --strict)
  widget      every widget area shows something: no empty output, and no ipywidgets output,
              which needs a live kernel (switch the cell to minigpt.widgets.static_controls)
  scroll      no output block or display equation needs sideways scrolling at 1400 px
  markers     no test machinery on the page ("# NBVAL_..." comments)

Exit status 0 when every site check passes (and, with --strict, every notebook check too).
``tools/test.sh`` runs it after building the book whenever a Chromium is found.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SITE_CHECKS = ("console", "outside", "links", "menu", "column")
NOTEBOOK_CHECKS = ("widget", "scroll", "markers")
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 400, "height": 800}
# Pages whose screenshots are taken with --screenshots (and the menu opened on a phone).
SHOT_PAGES = ("intro.html", "chapters/01_ngrams.html", "chapters/07_gpt3_model.html",
              "chapters/09_scaling.html", "glossary.html", "bibliography.html")


def find_chromium() -> str | None:
    """The system's Chromium: $CHROMIUM, or the first of CHROMIUM_NAMES on the PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# Runs in the page at 1400 px: measures outputs against the text column, finds widget areas,
# collects ids and links. Returns plain JSON.
MEASURE_JS = r"""
() => {
  const px = (x) => Math.round(x);
  const column = document.querySelector("article.bd-article") || document.querySelector("main");
  const colRight = column ? column.getBoundingClientRect().right : window.innerWidth;
  const label = (el) => {
    const cell = el.closest(".cell");
    const cells = Array.from(document.querySelectorAll("article .cell"));
    const sec = el.closest("section");
    const title = sec && sec.querySelector("h1,h2,h3");
    return (cell ? "cell " + (cells.indexOf(cell) + 1) : "text") +
      (title ? " in '" + title.textContent.replace(/#$/, "").trim().slice(0, 50) + "'" : "");
  };
  const sticking = [], scrolling = [], empty = [], kernelWidgets = [];
  const blocks = document.querySelectorAll(
    "article .cell_output, mjx-container[display='true']");
  for (const el of blocks) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0 && !el.matches(".cell_output")) continue;
    if (r.right > colRight + 1) sticking.push(label(el) + ": " + px(r.right - colRight) + " px");
    // An inner element that scrolls sideways (a <pre>, a table wrapper, the equation).
    const inner = [el, ...el.querySelectorAll("pre, .output_html, .minigpt-widget, div")];
    for (const x of inner) {
      const cs = getComputedStyle(x);
      if (x.scrollWidth > x.clientWidth + 1 && x.clientWidth > 0 &&
          cs.overflowX !== "visible") {
        const kind = el.matches("mjx-container") ? "equation" : "output";
        scrolling.push(label(el) + ": " + kind + " " + px(x.scrollWidth) + " px in " +
                       px(x.clientWidth) + " px");
        break;
      }
    }
  }
  for (const out of document.querySelectorAll("article .cell_output")) {
    if (out.querySelector("script[type='application/vnd.jupyter.widget-view+json']")) {
      kernelWidgets.push(label(out));
    } else if (out.getBoundingClientRect().height < 2) {
      empty.push(label(out));
    }
  }
  for (const w of document.querySelectorAll(".minigpt-widget")) {
    const shown = w.querySelector(".minigpt-widget-frame:not([hidden])");
    if (!shown || shown.getBoundingClientRect().height < 2) empty.push(label(w) + " (static)");
  }
  const markers = [];
  for (const pre of document.querySelectorAll("article pre")) {
    const m = pre.textContent.match(/#\s*NBVAL_\w+/);
    if (m) markers.push(label(pre) + ": " + m[0]);
  }
  return {
    pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
    sticking, scrolling, empty, kernelWidgets, markers,
    ids: Array.from(document.querySelectorAll("[id]"), (e) => e.id)
      .concat(Array.from(document.querySelectorAll("a[name]"), (e) => e.name)),
    links: Array.from(document.querySelectorAll("a[href]"), (a) => a.getAttribute("href")),
  };
}
"""


class Report:
    def __init__(self) -> None:
        self.problems: dict[str, list[str]] = defaultdict(list)

    def add(self, check: str, page: str, what: str) -> None:
        self.problems[check].append(f"{page}: {what}")

    def print(self, strict: bool) -> bool:
        ok = True
        for check in SITE_CHECKS + NOTEBOOK_CHECKS:
            found = self.problems.get(check, [])
            fails = check in SITE_CHECKS or strict
            status = "ok" if not found else ("FAIL" if fails else "report")
            ok &= not (found and fails)
            print(f"[{status}] {check}: {len(found)} problem(s)")
            for line in found:
                print(f"    {line}")
        return ok


def check_menu(page, base: str, name: str, report: Report) -> None:  # noqa: ANN001
    """The visible menu button opens and closes the chapter list (phone) or sidebar (desktop)."""
    page.set_viewport_size(PHONE)
    page.goto(base + name, wait_until="load")
    buttons = [b for b in page.query_selector_all(".primary-toggle") if b.is_visible()]
    if not buttons:
        report.add("menu", name, "no visible menu button at 400 px")
        return
    buttons[0].click()
    page.wait_for_timeout(300)
    dialog = page.query_selector("#pst-primary-sidebar-modal")
    opened = page.evaluate("() => !!document.querySelector('#pst-primary-sidebar-modal[open]')")
    links = [a for a in dialog.query_selector_all("nav a.reference")] if dialog else []
    visible = [a for a in links if a.is_visible()]
    if not opened or len(visible) < 5:
        report.add("menu", name, f"at 400 px the menu did not open the chapter list "
                                 f"(open={opened}, {len(visible)} visible links)")
        return
    page.keyboard.press("Escape")
    page.wait_for_timeout(300)
    if page.evaluate("() => !!document.querySelector('#pst-primary-sidebar-modal[open]')"):
        report.add("menu", name, "at 400 px Escape did not close the menu")
    page.set_viewport_size(DESKTOP)
    page.goto(base + name, wait_until="load")
    sidebar = page.query_selector("#pst-primary-sidebar")
    buttons = [b for b in page.query_selector_all(".primary-toggle") if b.is_visible()]
    if not (sidebar and buttons and sidebar.is_visible()):
        report.add("menu", name, "at 1400 px no visible sidebar and menu button")
        return
    buttons[0].click()
    page.wait_for_timeout(500)
    hidden = not sidebar.is_visible() or sidebar.bounding_box()["width"] < 2
    buttons[0].click()
    page.wait_for_timeout(500)
    shown = sidebar.is_visible() and sidebar.bounding_box()["width"] > 100
    if not (hidden and shown):
        report.add("menu", name, f"at 1400 px the button did not toggle the sidebar "
                                 f"(hid={hidden}, showed again={shown})")


def take_screenshots(page, base: str, out: Path) -> None:  # noqa: ANN001
    out.mkdir(parents=True, exist_ok=True)
    for name in SHOT_PAGES:
        stem = name.replace("/", "_").removesuffix(".html")
        for label, size in (("1400", DESKTOP), ("400", PHONE)):
            page.set_viewport_size(size)
            page.goto(base + name, wait_until="load")
            page.wait_for_timeout(800)  # MathJax
            page.screenshot(path=str(out / f"{stem}_{label}.png"))
        # The phone menu, opened.
        page.set_viewport_size(PHONE)
        buttons = [b for b in page.query_selector_all(".primary-toggle") if b.is_visible()]
        if buttons:
            buttons[0].click()
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / f"{stem}_400_menu.png"))
    # Close-ups at 1400 px: the first widget area, the widest output and the widest equation.
    page.set_viewport_size(DESKTOP)
    for name in ("chapters/01_ngrams.html", "chapters/07_gpt3_model.html",
                 "chapters/09_scaling.html"):
        stem = name.replace("/", "_").removesuffix(".html")
        page.goto(base + name, wait_until="load")
        page.wait_for_timeout(1500)
        for kind, selector in (
            ("widget", ".minigpt-widget, .cell_output:has(script[type*='widget-view'])"),
            ("output", "article .cell_output"),
            ("equation", "mjx-container[display='true']"),
        ):
            handle = page.evaluate_handle(
                """(sel) => { let best = null, w = -1;
                   for (const e of document.querySelectorAll(sel)) {
                     const s = e.querySelector('pre') || e;
                     const sw = sel.includes('widget') ? 1 : s.scrollWidth;
                     if (sw > w) { w = sw; best = e; if (sel.includes('widget')) break; } }
                   return best; }""", selector)
            el = handle.as_element()
            if el is None:
                continue
            el.scroll_into_view_if_needed()
            page.evaluate("() => window.scrollBy(0, -150)")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"{stem}_1400_{kind}.png"))


def run(site: Path, strict: bool, screenshots: Path | None, chromium: str) -> bool:
    from playwright.sync_api import sync_playwright

    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                   if "_static" not in p.parts and "_sources" not in p.parts)
    server, base = serve(site)
    report = Report()
    ids: dict[str, set[str]] = {}
    links: dict[str, list[str]] = {}
    start = time.time()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium,
                                         args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport=DESKTOP)
            current = {"name": ""}

            def route(r) -> None:  # noqa: ANN001
                url = r.request.url
                if url.startswith(base) or url.startswith(("data:", "blob:")):
                    r.continue_()
                else:
                    report.add("outside", current["name"], url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and report.add(
                "console", current["name"], m.text[:300]))
            page.on("pageerror", lambda e: report.add("console", current["name"], str(e)[:300]))
            for name in pages:
                current["name"] = name
                for size in (PHONE, DESKTOP):  # the console at both widths; measure at 1400
                    page.set_viewport_size(size)
                    page.goto(base + name, wait_until="load")
                page.wait_for_timeout(300)
                m = page.evaluate(MEASURE_JS)
                ids[name] = set(m["ids"])
                links[name] = m["links"]
                if m["pageOverflow"] > 1:
                    report.add("column", name, f"the page scrolls sideways by "
                                               f"{m['pageOverflow']} px at 1400 px")
                for what in m["sticking"]:
                    report.add("column", name, "sticks out of the column: " + what)
                for what in m["scrolling"]:
                    report.add("scroll", name, what)
                for what in m["empty"]:
                    report.add("widget", name, "empty output: " + what)
                for what in m["kernelWidgets"]:
                    report.add("widget", name, "ipywidgets output (needs a kernel): " + what)
                for what in m["markers"]:
                    report.add("markers", name, what)
            for name in ("intro.html", "chapters/01_ngrams.html"):
                if name in pages:
                    current["name"] = name + " (menu)"
                    check_menu(page, base, name, report)
            if screenshots is not None:
                current["name"] = "(screenshots)"
                take_screenshots(page, base, screenshots)
            browser.close()
    finally:
        server.shutdown()
    for name, hrefs in links.items():
        for href in hrefs:
            url = urljoin(base + name, href)
            if not url.startswith(base):
                continue  # an outside link (Colab, GitHub): not followed
            path, frag = urldefrag(url)
            rel = unquote(urlparse(path).path)[1:] or "index.html"
            if rel.endswith("/"):
                rel += "index.html"
            if not (site / rel).is_file():
                report.add("links", name, f"{href}: no file {rel}")
            elif frag and rel in ids and unquote(frag) not in ids[rel]:
                report.add("links", name, f"{href}: no id '{frag}' in {rel}")
    print(f"browser test of {site}: {len(pages)} pages in {time.time() - start:.0f} s"
          f"{' (strict)' if strict else ''}")
    return report.print(strict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", nargs="?", default=str(ROOT / "_build" / "html"),
                        help="the built site (default: _build/html)")
    parser.add_argument("--strict", action="store_true",
                        help="also fail on the notebook checks: widget, scroll, markers")
    parser.add_argument("--screenshots", metavar="DIR", help="save screenshots in DIR")
    args = parser.parse_args(argv)
    site = Path(args.site)
    if not (site / "index.html").is_file():
        print(f"error: no built site in {site}; run bash tools/build-book.sh", file=sys.stderr)
        return 2
    chromium = find_chromium()
    if chromium is None:
        print("error: no Chromium found (set CHROMIUM=/path/to/chromium, or install it: "
              "apt-get install chromium)", file=sys.stderr)
        return 2
    shots = Path(args.screenshots) if args.screenshots else None
    return 0 if run(site, args.strict, shots, chromium) else 1


if __name__ == "__main__":
    sys.exit(main())
