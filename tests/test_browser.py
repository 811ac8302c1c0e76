"""The rendered smoke book in a real browser (headless Chromium through Selenium): every page clean,
summary box first, nothing wider than the column, and the static misclassified-image browser working.

The ipywidgets browser is exercised through ipywidgets' own Python API in
tests/test_explain_and_widgets.py (no Jupyter front end is started here).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxrlib import runner

WIDTH = 1400

PAGE_PROBLEMS_JS = r"""
const problems = [];
const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
const text = document.body.innerText;
if (text.includes("\\(")) problems.push("visible \\( (math not rendered)");
if (text.includes("$$")) problems.push("visible $$ (math not rendered)");
if (text.includes("Loading widget")) problems.push("'Loading widget' text (widget state that cannot render)");
for (const img of document.images) {
  if (img.getAttribute("src") && img.complete && img.naturalWidth === 0) problems.push("image with zero natural width: " + img.getAttribute("src").slice(0, 80));
}
const right = article.getBoundingClientRect().right + 2;
for (const el of article.querySelectorAll("table, img, .cxr-browser, .cxr-summary")) {
  const box = el.getBoundingClientRect();
  if (box.width > 0 && box.right > right) problems.push(el.tagName.toLowerCase() + " wider than the column (" + Math.round(box.right) + " > " + Math.round(right) + " px)");
}
if (document.documentElement.scrollWidth > window.innerWidth + 2) problems.push("page scrolls sideways at " + window.innerWidth + " px");
return problems;
"""

# The first visible text after the chapter's title must belong to the summary box
# (the collapsed "show code" toggle of the hidden set-up cell does not count).
SUMMARY_FIRST_JS = r"""
const h1 = document.querySelector("section > h1") || document.querySelector("article h1");
if (!h1) return "no title";
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
let node, after = false;
while ((node = walker.nextNode())) {
  if (!after) { if (h1.contains(node)) after = "title"; continue; }
  if (h1.contains(node)) continue;
  const el = node.parentElement;
  if (!node.textContent.trim() || !el || el.offsetParent === null) continue;
  if (el.closest(".cell_input, details.hide > summary, .headerlink, script, style")) continue;
  return el.closest(".cxr-summary") ? "ok" : "first text after the title is not the summary box: " + node.textContent.trim().slice(0, 60);
}
return "no text after the title";
"""


def chromium_driver():
    """Headless Chromium driven by Selenium; skip, saying why, where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver; .ci/run does it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={WIDTH},1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture(scope="module")
def browser():
    """One browser for every page of the module."""
    driver = chromium_driver()
    yield driver
    driver.quit()


def pages(root: Path) -> list:
    """Every page the table of contents names, as built HTML files."""
    return [root / "_build" / "html" / f"{name}.html" for name in runner.toc_files(root)]


def open_page(driver, page: Path) -> list:
    """Load a page and return the console errors it logged."""
    driver.get_log("browser")  # forget the previous page's messages
    driver.set_window_size(WIDTH, 1000)
    driver.get(page.as_uri())
    driver.execute_script("return document.readyState")
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, root: Path, page: Path) -> Path:
    """The whole page at the test width, under _build/screenshots/."""
    folder = root / "_build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(max(height, 600), 20000))
    path = folder / f"{page.relative_to(root / '_build' / 'html').with_suffix('').as_posix().replace('/', '_')}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(WIDTH, 1000)
    return path


@pytest.mark.book
def test_every_page_is_clean_in_a_real_browser(smoke_book, browser):
    problems = []
    for page in pages(smoke_book):
        assert page.is_file(), f"{page} was not built"
        name = page.stem
        problems += [f"{name}: console error: {m}" for m in open_page(browser, page)]
        problems += [f"{name}: {p}" for p in browser.execute_script(PAGE_PROBLEMS_JS)]
        if "chapters" in page.parts:
            verdict = browser.execute_script(SUMMARY_FIRST_JS)
            if verdict != "ok":
                problems.append(f"{name}: {verdict}")
        assert screenshot(browser, smoke_book, page).is_file()
    assert not problems, "\n".join(problems)


@pytest.mark.book
def test_published_site_has_no_source_maps_or_notebook_copies(smoke_book):
    html = smoke_book / "_build" / "html"
    leftovers = sorted(str(p.relative_to(html)) for p in [*html.rglob("*.map"), *html.rglob("*.ipynb")])
    assert not leftovers, f"the site still holds {leftovers[:5]}"


@pytest.mark.book
def test_static_browser_twin_answers_its_controls(smoke_book, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = smoke_book / "_build" / "html" / "book" / "chapters" / "error_analysis.html"
    assert open_page(browser, page) == []
    assert page.stat().st_size < 3_000_000, f"error analysis page is {page.stat().st_size:,} bytes"
    twin = browser.find_element(By.CSS_SELECTOR, ".cxr-browser")
    role = lambda name: twin.find_element(By.CSS_SELECTOR, f"[data-role='{name}']")  # noqa: E731
    seen = lambda: (role("caption").text, role("image").get_attribute("src"))  # noqa: E731
    model = Select(role("model"))
    assert len(model.options) >= 2, "the twin offers no model to choose"
    states = {}
    for option in [o.text for o in model.options]:
        model.select_by_visible_text(option)
        states[option] = seen()
        assert option in states[option][0], f"caption {states[option][0]!r} does not name the model {option!r}"
    assert len({caption for caption, _ in states.values()}) > 1, "choosing another model changed nothing"
    model.select_by_index(1)
    before = seen()
    true_class = Select(role("true"))
    changed = False
    for option in [o.text for o in true_class.options][1:]:
        true_class.select_by_visible_text(option)
        caption, _ = seen()
        assert f"true {option}" in caption or caption.startswith("No image"), caption
        changed |= seen() != before
    assert changed, "choosing another true class changed neither image nor caption"
    true_class.select_by_visible_text("any")
    first = seen()
    role("next").click()
    status = role("status").text
    assert seen() != first or status.endswith("of 1"), "next did not turn the page"
