"""The rendered smoke book in headless Chromium, as a reader sees it.

Every page of the table of contents is served from the build folder over http://127.0.0.1 (a stdlib server in a
thread) and opened in headless Chromium through selenium, with every host but 127.0.0.1 unresolvable, as on an
offline machine. Each page must load, log no SEVERE console message, request nothing from outside the book, decode
every image, and show neither raw TeX nor a raw Markdown table rule in its visible text. A full-page screenshot of
each page goes to ``_build/screenshots/<page>.png``. One request is treated specially: Chromium asks every site for
/favicon.ico on its own, and while the book has none the server answers it with "204 No Content".

Every page's ``<title>`` (the browser tab's text, which MathJax does not typeset) must be plain text too.

Chromium and chromedriver come from Debian (`scripts/setup_browser.sh`, run by `make test`); without them every test
here fails with a message saying so, never skips.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from smoke_book import load_build_book

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "_build" / "screenshots"
WIDTH, MAX_HEIGHT = 1280, 16000           # screenshot size in CSS pixels; taller pages are cut at MAX_HEIGHT
PAGE_TIMEOUT_S = 60

RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\$\\")                       # \(  \[  $$  $\
# TeX in a page's <title> (the browser tab, never typeset): a command or math delimiter, a dollar, a TeX sub/superscript
TITLE_TEX = re.compile(r"\\[A-Za-z()\[\]]|\$|[_^]\{")
# a Markdown table's rule line, | --- | --- | or |---|, also after Sphinx's smartquotes made --- an em dash (| — | — |)
TABLE_RULE = re.compile(r"^(?=[^\n]*\|)(?=[^\n]*(?:-{3}|\u2014|\u2013))[ \t|:\-\u2013\u2014]+$", re.M)
EXPLORER = "#dmd-explorer, .dmd-explorer"
# the chapters with a seed explorer (dmdlib.explorer.seed_explorer): one per data-set family
EXPLORER_PAGES = ("notebooks/01_lowdim_remapping", "notebooks/02_mnist_copying", "notebooks/06_where_copying_begins")


def pages_in_toc(root: Path) -> list[str]:
    """The book's pages (root first, then every `file` of _toc.yml in order), without suffix."""
    return [p.removesuffix(".ipynb").removesuffix(".md") for p in load_build_book().toc_files(root)]


PAGES = pages_in_toc(ROOT)


# ----------------------------------------------------------------------------- the server and the browser

class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder and records every request's path and status instead of printing it."""

    requests: list = []

    def send_head(self):
        # Chromium asks every site for /favicon.ico on its own; the book declares no icon, so this one request is
        # answered "204 No Content" rather than logged as the book's 404 (any other missing file stays a 404)
        if self.path == "/favicon.ico" and not Path(self.directory, "favicon.ico").exists():
            self.send_response(204)
            self.end_headers()
            return None
        return super().send_head()

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server(smoke_book):
    """(base URL, request log) of the smoke book's HTML served on a free loopback port."""
    html = smoke_book / "_build" / "html"
    assert (html / "index.html").exists(), f"no built book in {html}"
    log = []
    handler = type("Handler", (_Handler,), {"requests": log})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(html)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", log
    httpd.shutdown()
    httpd.server_close()


def _missing_browser() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (requirements.txt)")
    if not missing:
        return None
    return (f"the browser test needs {', '.join(missing)}: run `sh scripts/setup_browser.sh` (as root on Debian: "
            f"apt-get install chromium chromium-driver; `make test` runs it) and `pip install -r requirements.txt`"
            + (" -- under CI the setup must install them" if os.environ.get("CI") == "true" else ""))


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """Headless Chromium with a fresh profile, its console log kept, every host but 127.0.0.1 unresolvable."""
    why = _missing_browser()
    if why:
        pytest.fail(why, pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", f"--window-size={WIDTH},900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(PAGE_TIMEOUT_S)
    drv.set_script_timeout(PAGE_TIMEOUT_S)
    yield drv
    drv.quit()


# ----------------------------------------------------------------------------- one visit per page

@dataclass
class PageReport:
    """What one visit of a page found; empty lists are clean."""

    page: str
    url: str
    error: str = ""                                        # the visit itself failed (timeout, script error)
    status: int = 0                                        # HTTP status of the page
    title: str = ""
    main_chars: int = 0                                    # characters of text in the page's main element
    failed_requests: list = field(default_factory=list)   # local requests answered with status >= 400
    severe: list = field(default_factory=list)            # SEVERE console messages
    external: list = field(default_factory=list)          # resources requested from outside the book
    broken_images: list = field(default_factory=list)     # <img> with naturalWidth 0
    mathjax: str = ""                                      # 'typeset', 'no MathJax', 'configured but not loaded'
    raw_tex: list = field(default_factory=list)           # visible text around \( \[ $$ $\, MathJax errors
    table_rules: list = field(default_factory=list)       # visible lines like | --- | --- |
    explorer: bool = False                                 # a visible #dmd-explorer / .dmd-explorer
    screenshot: Path | None = None


_WAIT_MATHJAX = """
const done = arguments[arguments.length - 1];
const mj = window.MathJax;
if (mj && mj.startup && mj.startup.promise) mj.startup.promise.then(() => done('typeset'), e => done('error ' + e));
else done(mj ? 'configured but not loaded' : 'no MathJax');
"""

_WAIT_IMAGES = """
const done = arguments[arguments.length - 1];
Promise.all([...document.images].map(i => i.complete ? null
    : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); }))).then(() => done(null));
"""

_EXTERNAL = """
const urls = [];
const sel = 'script[src], img[src], iframe[src], source[src], embed[src], link[href]';
for (const el of document.querySelectorAll(sel)) {
  if (el.tagName === 'LINK' && !/\\b(stylesheet|preload|modulepreload|icon|prefetch|manifest)\\b/i.test(el.rel)) continue;
  urls.push(el.src || el.href);
}
for (const e of performance.getEntriesByType('resource')) urls.push(e.name);
return [...new Set(urls)].filter(u => {
  const url = new URL(u, location.href);
  return !['data:', 'blob:', 'about:'].includes(url.protocol) && url.origin !== location.origin;
});
"""

_BROKEN_IMAGES = "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);"

# the text a reader sees: visible text nodes outside code (cell sources, literal blocks, inline code) and outside
# rendered math; cell outputs count (a table printed as text is still a raw table to the reader)
_VISIBLE_TEXT = """
const skip = 'script, style, noscript, template, textarea, mjx-container, .cell_input, '
           + 'div[class*="highlight-"]:not(.output), code, kbd, samp';
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const out = [];
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const el = n.parentElement;
  if (!n.data.trim() || !el || el.closest(skip)) continue;
  if (!el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
  out.push(n.data);
}
return out.join('\\n');
"""

# math MathJax could not typeset, inside mjx-container: a TeX error (an error box) or an undefined macro (shown as
# its name in red; the assistive MathML holds it as an mtext starting with a backslash)
_MATH_ERRORS = """
return [...document.querySelectorAll('mjx-merror')]
         .map(e => 'MathJax error: ' + (e.getAttribute('data-mjx-error') || e.textContent))
  .concat([...document.querySelectorAll('mjx-assistive-mml mtext')].map(e => e.textContent)
         .filter(t => t.startsWith('\\\\')).map(t => 'MathJax undefined macro: ' + t));
"""

_EXPLORER = ("return [...document.querySelectorAll(arguments[0])]"
             ".some(e => e.checkVisibility() && e.getBoundingClientRect().height > 0);")


def _snippets(pattern: re.Pattern, text: str, width: int = 40) -> list[str]:
    return [text[max(0, m.start() - width):m.end() + width].replace("\n", " ") for m in pattern.finditer(text)]


def visit(driver, base: str, requests: list, page: str, shot: Path) -> PageReport:
    """Open one page, wait for its math and images, take a full-page screenshot and collect what it shows."""
    from selenium.common.exceptions import WebDriverException

    rep = PageReport(page=page, url=base + page + ".html")
    driver.get_log("browser")                              # drop what earlier pages logged
    first = len(requests)
    try:
        driver.set_window_size(WIDTH, 900)
        driver.get(rep.url)
        rep.title = driver.title
        rep.main_chars = driver.execute_script(
            "const m = document.querySelector('main, [role=main], article'); return m ? m.innerText.trim().length : 0;")
        rep.mathjax = driver.execute_async_script(_WAIT_MATHJAX)
        height, chrome = driver.execute_script(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];")
        driver.set_window_size(WIDTH, min(height, MAX_HEIGHT) + chrome)   # the viewport holds the whole page
        driver.execute_async_script(_WAIT_IMAGES)
        shot.parent.mkdir(parents=True, exist_ok=True)
        if driver.save_screenshot(str(shot)):
            rep.screenshot = shot
        rep.external = driver.execute_script(_EXTERNAL)
        rep.broken_images = driver.execute_script(_BROKEN_IMAGES)
        text = driver.execute_script(_VISIBLE_TEXT)
        rep.raw_tex = _snippets(RAW_TEX, text) + driver.execute_script(_MATH_ERRORS)
        rep.table_rules = _snippets(TABLE_RULE, text, width=0)
        rep.explorer = driver.execute_script(_EXPLORER, EXPLORER)
    except WebDriverException as e:
        rep.error = f"{type(e).__name__}: {e.msg}"
    rep.severe = [f"[{e.get('source')}] {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    page_path = "/" + page + ".html"
    for path, status in requests[first:]:
        if path.split("?")[0] == page_path:
            rep.status = status
        elif status >= 400:
            rep.failed_requests.append(f"{path} -> {status}")
    return rep


@pytest.fixture(scope="module")
def reports(driver, server) -> dict[str, PageReport]:
    """Every page of the table of contents visited once, its screenshot in _build/screenshots/."""
    base, requests = server
    stems = [Path(p).name for p in PAGES]
    assert len(set(stems)) == len(stems), f"two pages share a screenshot name: {stems}"
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    return {p: visit(driver, base, requests, p, SCREENSHOTS / f"{Path(p).name}.png") for p in PAGES}


def _report(reports, page) -> PageReport:
    rep = reports[page]
    if rep.error:
        pytest.fail(f"{page}: the visit failed: {rep.error}", pytrace=False)
    return rep


def _none(found: list, what: str) -> None:
    """Fail with what was found (the first 10, one a line) under a heading naming the check."""
    if found:
        more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
        pytest.fail(f"{what} ({len(found)}):\n  " + "\n  ".join(found[:10]) + more, pytrace=False)


# ----------------------------------------------------------------------------- the checks, one per page each

@pytest.mark.parametrize("page", PAGES)
def test_page_loads(reports, page):
    rep = _report(reports, page)
    if rep.status != 200 or not rep.title or rep.main_chars == 0:
        pytest.fail(f"{rep.url}: status {rep.status}, title {rep.title!r}, {rep.main_chars} characters of main text",
                    pytrace=False)
    _none(rep.failed_requests, f"{page}: local requests that failed")
    if rep.screenshot is None or rep.screenshot.stat().st_size == 0:
        pytest.fail(f"{page}: no screenshot", pytrace=False)


@pytest.mark.parametrize("page", PAGES)
def test_no_severe_console_message(reports, page):
    _none(_report(reports, page).severe, f"{page}: SEVERE browser console messages")


@pytest.mark.parametrize("page", PAGES)
def test_nothing_loaded_from_outside_the_book(reports, page):
    """The book must work offline: a script or style from a CDN (MathJax's, say) fails on an offline machine."""
    _none(_report(reports, page).external, f"{page}: resources requested from outside the book (offline they fail)")


@pytest.mark.parametrize("page", PAGES)
def test_every_image_decodes(reports, page):
    _none(_report(reports, page).broken_images, f"{page}: images with naturalWidth 0")


@pytest.mark.parametrize("page", PAGES)
def test_no_raw_tex_in_visible_text(reports, page):
    rep = _report(reports, page)
    _none(rep.raw_tex, f"{page}: raw TeX (\\( \\[ $$ $\\) in the visible text, or math MathJax could not typeset "
                       f"(MathJax: {rep.mathjax})")


@pytest.mark.parametrize("page", PAGES)
def test_page_title_has_no_raw_tex(reports, page):
    rep = _report(reports, page)
    _none(_snippets(TITLE_TEX, rep.title), f"{page}: raw TeX in the page's <title> {rep.title!r} (the browser tab)")


@pytest.mark.parametrize("page", PAGES)
def test_no_raw_markdown_table_in_visible_text(reports, page):
    _none(_report(reports, page).table_rules, f"{page}: raw Markdown table rules in the visible text")


@pytest.mark.parametrize("page", EXPLORER_PAGES)
def test_explorer_or_its_fallback_is_present(reports, page):
    """The chapters with a seed explorer (dmdlib.explorer) show it: its static version, a visible .dmd-explorer."""
    assert page in reports, f"{page} has a seed explorer but is not in the table of contents"
    if not _report(reports, page).explorer:
        pytest.fail(f"{page}: no visible element matching {EXPLORER!r} (the seed explorer's static version)",
                    pytrace=False)
