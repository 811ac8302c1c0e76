"""The rendered smoke book in a real browser (headless Chromium through Selenium): every page clean,
summary box first, nothing wider than the column, and the static misclassified-image browser working.

Each check below catches a class of problem on every page, not one instance: a caption that claims how
many models agree, checked against the page's own data; a table header broken inside a word; a page that
scrolls sideways on a phone; a visible code cell or an empty "show code" toggle; a raw Keras or TensorFlow
log line in the text; an image without a meaningful alt text; a favicon that is missing.

The ipywidgets browser is exercised through ipywidgets' own Python API in
tests/test_explain_and_widgets.py (no Jupyter front end is started here).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cxrlib.machinery import runner
from cxrlib.machinery import site

WIDTH = 1400
PHONE = 390  # an iPhone 12-15's CSS width
SHOTS = ("book/chapters/ensemble", "book/chapters/error_analysis", "book/chapters/pretrained",
         "book/chapters/conclusions")

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
for (const el of article.querySelectorAll("table, img, .cxr-browser, .cxr-summary, pre")) {
  const box = el.getBoundingClientRect();
  if (!box.width || el.closest("details:not([open])")) continue;
  // an element inside a box that scrolls sideways on its own (a wide table's container) does not widen the page
  let clipped = false;
  for (let up = el.parentElement; up && up !== article; up = up.parentElement) {
    const style = getComputedStyle(up);
    if (["auto", "scroll"].includes(style.overflowX) && up.getBoundingClientRect().right <= right) { clipped = true; break; }
  }
  if (!clipped && box.right > right) problems.push(el.tagName.toLowerCase() + " wider than the column (" + Math.round(box.right) + " > " + Math.round(right) + " px)");
}
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

# Sideways scrolling of the page itself (a table scrolling inside its own box is allowed).
SCROLLS_SIDEWAYS_JS = r"""
const page = document.scrollingElement || document.documentElement;
return page.scrollWidth > window.innerWidth ? page.scrollWidth : 0;
"""

# Every header cell whose rendered text breaks inside a word. A word is what lies between spaces, hyphens,
# slashes, underscores and zero-width spaces (where a break is allowed); a word drawn on two lines (two line
# boxes at different heights) is broken. The computed CSS is checked too: overflow-wrap:anywhere or
# word-break:break-all lets a browser break any header inside a word once the column narrows.
HEADER_BREAKS_JS = r"""
const found = [];
const article = document.querySelector("article.bd-article") || document.body;
for (const th of article.querySelectorAll("th")) {
  if (!th.getClientRects().length || th.closest("details:not([open])")) continue;
  const style = getComputedStyle(th);
  if (style.overflowWrap === "anywhere" || style.wordBreak === "break-all")
    found.push(th.innerText.trim().slice(0, 40) + ": CSS allows breaks inside words (" + style.overflowWrap + ", " + style.wordBreak + ")");
  const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const words = /[^\s\-\/_\u200b]+[\-\/_]?/g;
    let m;
    while ((m = words.exec(node.textContent))) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].replace(/[\-\/_]$/, "").length);
      const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) found.push("'" + m[0] + "' in header '" + th.innerText.trim().slice(0, 40) + "' is broken across lines");
    }
  }
}
return found;
"""

# Code a reader sees without asking: any rendered cell input, except in cells tagged show-code
# (cxrlib.machinery.site.SHOW_CODE: code a page shows on purpose); and "show code" toggles of cells that show nothing.
VISIBLE_CODE_JS = r"""
const found = [];
for (const input of document.querySelectorAll(".cell_input")) {
  const cell = input.closest(".cell");
  if (cell && cell.classList.contains("tag_show-code")) continue;
  if (input.getClientRects().length && !input.closest("details:not([open])"))
    found.push("visible code: " + input.innerText.trim().slice(0, 60));
}
for (const cell of document.querySelectorAll(".cell")) {
  const toggle = cell.querySelector("details.hide > summary");
  const output = cell.querySelector(".cell_output");
  const shown = output && (output.innerText.trim() || output.querySelector("img, table, svg, iframe"));
  if (toggle && !shown) found.push("a 'show code' toggle over a cell that shows nothing");
}
return found;
"""

# Lines a library logs, never a sentence of the book: Keras callbacks and progress bars, TensorFlow's and
# absl's log prefixes, keras-tuner's trial chatter, Python warnings.
RAW_LOG = [re.compile(p, re.M) for p in (
    r"ReduceLROnPlateau reducing", r"reducing learning rate to", r"^Epoch \d+(/\d+)?\s*$", r"^Epoch \d+:",
    r"\d+/\d+ \[[=>.]*\]", r"\d+ms/step", r"\bstep - loss\b",
    r"^[IWEF]\d{4} \d\d:\d\d", r"^(WARNING|INFO|ERROR):(absl|tensorflow|root)", r"tensorflow/core/",
    r"oneDNN custom operations", r"This TensorFlow binary is optimized",
    r"Trial \d+ Complete", r"Best val_loss So Far", r"Total elapsed time", r"Search: Running Trial",
    r"\b\w+Warning: ", r"Traceback \(most recent call last\)",
)]

# Every image with its alt text (after the page's scripts ran, so the static browser's image counts too).
ALTS_JS = r"""
return Array.from(document.images).filter(img => img.getClientRects().length || img.closest(".cxr-browser"))
  .map(img => [img.getAttribute("src") ? img.getAttribute("src").slice(0, 60) : "", img.getAttribute("alt")]);
"""

# The static browser's data (every model's probabilities per image), and the captions and alt texts that
# say what was predicted (the gallery figures' alt texts hold their panel titles).
CLAIMS_JS = r"""
const twin = document.querySelector(".cxr-browser script[type='application/json']");
const texts = Array.from(document.images).map(img => img.getAttribute("alt") || "");
texts.push(document.body.innerText);
return [twin ? JSON.parse(twin.textContent) : null, texts];
"""
CLAIM = re.compile(r"(?P<id>[\w.-]+\.png)\W+true (?P<true>[A-Z][a-z]+(?: [A-Z][a-z]+)?),? predicted "
                   r"(?P<pred>[A-Z][a-z]+(?: [A-Z][a-z]+)?) by (?:all (?P<all>\d+) models|(?P<n>\d+) of (?P<of>\d+) models"
                   r"|(?P<model>all models|every model))")


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
                 f"--window-size={WIDTH},1000", "--hide-scrollbars"):
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
    return [root / "_build" / "html" / f"{name}.html" for name in site.toc_files(root)]


def set_width(driver, width: int) -> None:
    """A viewport of this CSS width (the window's outer size is adjusted until the viewport matches)."""
    driver.set_window_size(width, 1000)
    inner = driver.execute_script("return window.innerWidth")
    if inner and inner != width:
        driver.set_window_size(2 * width - inner, 1000)


def open_page(driver, page: Path, width: int = WIDTH) -> list:
    """Load a page at a width and return the console errors it logged."""
    driver.get_log("browser")  # forget the previous page's messages
    set_width(driver, width)
    driver.get(page.as_uri())
    driver.execute_script("return document.readyState")
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, page: Path, folder: Path, width: int = WIDTH) -> Path:
    """The whole page at a width, as folder/<page>-<width>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    set_width(driver, width)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(driver.get_window_size()["width"], min(max(height, 600), 20000))
    name = page.with_suffix("").name
    path = folder / f"{name}-{width}.png"
    driver.save_screenshot(str(path))
    set_width(driver, width)
    return path


def each_page(driver, root: Path, width: int = WIDTH):
    """(name, page) for every page, loaded at a width."""
    for page in pages(root):
        assert page.is_file(), f"{page} was not built"
        open_page(driver, page, width)
        yield page.stem, page


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
        assert screenshot(browser, page, smoke_book / "_build" / "screenshots").is_file()
    assert not problems, "\n".join(problems)


@pytest.mark.book
def test_nothing_scrolls_sideways_on_a_phone(smoke_book, browser):
    problems = []
    for name, _ in each_page(browser, smoke_book, PHONE):
        wide = browser.execute_script(SCROLLS_SIDEWAYS_JS)
        if wide:
            problems.append(f"{name}: the page is {wide} px wide at {PHONE} px, so it scrolls sideways")
        problems += [f"{name} at {PHONE} px: {p}" for p in browser.execute_script(PAGE_PROBLEMS_JS)]
    assert not problems, "\n".join(problems)


# A figure shrunk to a phone's column shrinks its text with it (10 pt at 100 dpi reads as about 4 px at a third
# of its size): every figure of a page keeps at least this share of its own width, scrolling in its box instead.
FIGURE_SCALE_JS = r"""
return Array.from(document.querySelectorAll(".cell_output img"))
  .filter(img => img.naturalWidth > 0 && img.getClientRects().length && !img.closest(".cxr-browser"))
  .map(img => [img.getAttribute("alt") || img.getAttribute("src").slice(0, 60), img.getBoundingClientRect().width / img.naturalWidth])
  .filter(([, scale]) => scale < arguments[0]).map(([name, scale]) => name + " shown at " + Math.round(scale * 100) + "%");
"""
LEGIBLE_SCALE = 0.75


@pytest.mark.book
def test_figure_text_stays_legible_on_a_phone(smoke_book, browser):
    problems = [f"{name} at {PHONE} px: {p}" for name, _ in each_page(browser, smoke_book, PHONE)
                for p in browser.execute_script(FIGURE_SCALE_JS, LEGIBLE_SCALE)]
    assert not problems, "\n".join(problems[:40])


@pytest.mark.book
@pytest.mark.parametrize("width", [WIDTH, PHONE])
def test_no_table_header_breaks_inside_a_word(smoke_book, browser, width):
    problems = [f"{name}: {p}" for name, _ in each_page(browser, smoke_book, width)
                for p in browser.execute_script(HEADER_BREAKS_JS)]
    assert not problems, "\n".join(problems[:40])


# The pretrained chapter's flow tables (a "best epoch" header: one per backbone, and one of both training sets, whose
# index is the "training set") and its two tables of answers to the report's questions (an "our answer" header): how
# many are drawn, and whether each fits the column or scrolls in a box of its own.
FLOW_TABLES_JS = r"""
const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
const right = article.getBoundingClientRect().right + 2;
const found = {flows: 0, sets: 0, answers: 0, problems: []};
for (const table of article.querySelectorAll("table")) {
  const heads = Array.from(table.querySelectorAll("th")).map(th => th.innerText.replace(/\u200b/g, "").trim());
  const kind = heads.includes("training set") ? "sets" : heads.includes("best epoch") ? "flows"
    : heads.includes("our answer") ? "answers" : null;
  if (!kind) continue;
  found[kind] += 1;
  const box = table.getBoundingClientRect();
  if (!box.width || !box.height || table.querySelectorAll("tbody tr").length < 1) found.problems.push(kind + " table empty");
  let scrolls = false;
  for (let up = table.parentElement; up && up !== article; up = up.parentElement) {
    if (["auto", "scroll"].includes(getComputedStyle(up).overflowX) && up.getBoundingClientRect().right <= right) scrolls = true;
  }
  if (box.right > right && !scrolls) found.problems.push(kind + " table wider than the column");
}
return found;
"""


@pytest.mark.book
@pytest.mark.parametrize("width", [WIDTH, PHONE])
def test_the_pretrained_flow_tables_are_drawn_at_desk_and_phone_widths(smoke_book, browser, width):
    from cxrlib.core.manifest import PROFILES

    open_page(browser, smoke_book / "_build" / "html" / "book" / "chapters" / "pretrained.html", width)
    found = browser.execute_script(FLOW_TABLES_JS)
    backbones = len(PROFILES["smoke"]["backbones"])
    assert (found["flows"], found["sets"], found["answers"], found["problems"]) == (backbones, 1, 2, [])


@pytest.mark.book
def test_no_code_is_visible_unless_shown_on_purpose(smoke_book, browser):
    problems = [f"{name}: {p}" for name, _ in each_page(browser, smoke_book)
                for p in browser.execute_script(VISIBLE_CODE_JS)]
    assert not problems, "\n".join(problems)


@pytest.mark.book
def test_no_raw_log_line_in_the_page_text(smoke_book, browser):
    problems = []
    for name, _ in each_page(browser, smoke_book):
        text = browser.execute_script("return document.body.innerText")
        for pattern in RAW_LOG:
            found = pattern.search(text)
            if found:
                line = text[text.rfind("\n", 0, found.start()) + 1:text.find("\n", found.end())][:120]
                problems.append(f"{name}: log line ({pattern.pattern}): {line}")
    assert not problems, "\n".join(problems)


def meaningful(alt) -> bool:
    """An alt text that tells a reader what the image shows: words, not a file name, a path or an address."""
    if not alt or len(alt.strip()) < 8 or " " not in alt.strip():
        return False
    return not re.fullmatch(r"\S*[/\\]\S*|\S+\.(png|jpe?g|svg|gif|webp)|data:\S+", alt.strip())


@pytest.mark.book
def test_every_image_has_a_meaningful_alt_text(smoke_book, browser):
    problems = [f"{name}: image {src!r} has alt text {alt!r}" for name, _ in each_page(browser, smoke_book)
                for src, alt in browser.execute_script(ALTS_JS) if not meaningful(alt)]
    assert not problems, "\n".join(problems[:40])


def claim_problems(text: str, data: dict) -> list:
    """Every 'predicted X by all N models' or 'by n of N models' in a text, checked against the page's data:
    the probabilities of every model for that image (a model predicts the class with the highest; a class
    tied at the top in the shown decimals counts as possibly predicted)."""
    problems = []
    for claim in CLAIM.finditer(text):
        said = claim.group(0)
        if claim.group("model"):
            problems.append(f"'{said}' claims every model agrees without counting them")
            continue
        probs = (data or {}).get("probs", {}).get(claim.group("id"))
        if probs is None:
            problems.append(f"'{said}': the page holds no probabilities for {claim.group('id')} to check it")
            continue
        k = data["classes"].index(claim.group("pred"))
        surely = sum(1 for p in probs.values() if p[k] == max(p) and p.count(max(p)) == 1)
        maybe = sum(1 for p in probs.values() if p[k] == max(p))
        claimed = int(claim.group("all") or claim.group("n"))
        total = int(claim.group("all") or claim.group("of"))
        if total != len(probs) or not surely <= claimed <= maybe or (claim.group("all") and maybe != len(probs)):
            problems.append(f"'{said}', but {surely} of {len(probs)} models predict {claim.group('pred')} "
                            f"(up to {maybe} with ties): {probs}")
    return problems


@pytest.mark.book
def test_captions_claiming_agreement_of_models_match_the_pages_data(smoke_book, browser):
    """The gallery figures (their alt texts carry their captions) and every state of the static browser."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    problems, checked = [], 0
    for name, _ in each_page(browser, smoke_book):
        data, texts = browser.execute_script(CLAIMS_JS)
        for text in texts:
            problems += [f"{name}: {p}" for p in claim_problems(text, data)]
            checked += len(CLAIM.findall(text))
        if data is None:
            continue
        twin = browser.find_element(By.CSS_SELECTOR, ".cxr-browser")
        role = lambda n: twin.find_element(By.CSS_SELECTOR, f"[data-role='{n}']")  # noqa: E731
        for model in [o.text for o in Select(role("model")).options]:
            Select(role("model")).select_by_visible_text(model)
            for _ in range(len(data["choices"][model])):
                caption = role("caption").text
                problems += [f"{name}, browser ({model}): {p}" for p in claim_problems(caption, data)]
                checked += bool(CLAIM.search(caption))
                if not role("next").is_enabled():
                    break
                role("next").click()
    assert checked, "no caption claims what the models predicted: the check checked nothing"
    assert not problems, "\n".join(problems[:30])


def test_the_claim_check_catches_a_false_caption():
    data = {"classes": ["No Finding", "Effusion", "Infiltration", "Atelectasis"],
            "probs": {"a.png": {"m1": [0.1, 0.2, 0.3, 0.4], "m2": [0.1, 0.2, 0.6, 0.1], "m3": [0.1, 0.1, 0.2, 0.6]}}}
    assert claim_problems("a.png: true Effusion, predicted Atelectasis by 2 of 3 models", data) == []
    assert claim_problems("a.png true Effusion predicted Atelectasis by all 3 models", data)
    assert claim_problems("a.png: true Effusion, predicted Atelectasis by all models", data)
    assert claim_problems("a.png: true Effusion, predicted Infiltration by 2 of 3 models", data)
    assert claim_problems("b.png: true Effusion, predicted Infiltration by 1 of 3 models", data)


def test_the_log_patterns_catch_keras_and_tensorflow_lines():
    lines = ["Epoch 3: ReduceLROnPlateau reducing learning rate to 0.000800000037997961.",
             "2/2 [==============================] - 1s 40ms/step - loss: 1.38",
             "W0000 00:00:1733 1234 cpu_feature_guard.cc:210] This TensorFlow binary is optimized",
             "WARNING:absl:Compiled the loaded model, but the compiled metrics have yet to be built.",
             "Trial 2 Complete [00h 00m 03s]", "/x/keras/src/y.py:12: UserWarning: The structure of `inputs`"]
    assert all(any(p.search(line) for p in RAW_LOG) for line in lines)
    book_text = ["[fused] epoch 2/2: accuracy 0.25, loss 1.386 (3s)",
                 "[fused] learning rate lowered from 0.001 to 0.0008 (no recent improvement)",
                 "Each model's test metrics, with the report's rows below ours."]
    assert not any(p.search(line) for p in RAW_LOG for line in book_text)


def test_meaningful_alt_texts():
    assert meaningful("Figure: Fused network; panels: loss, accuracy")
    assert not any(meaningful(a) for a in ("", None, "../../_images/ab12.png", "ab12.png", "image",
                                           "00000073_006.png", "data:image/png;base64,AAAA"))


@pytest.mark.book
def test_favicon_is_linked_and_present(smoke_book, browser):
    for page in pages(smoke_book):
        links = re.findall(r'<link[^>]*rel="(?:shortcut )?icon"[^>]*href="([^"]+)"', page.read_text())
        assert links, f"{page.stem} links no favicon, so a browser asks for /favicon.ico and gets a 404"
        assert all((page.parent / href.split("?")[0]).is_file() for href in links), f"{page.stem}: {links}"


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
    assert "fully interactive" in twin.text.lower(), "the browser does not say it works in the page"
    role = lambda name: twin.find_element(By.CSS_SELECTOR, f"[data-role='{name}']")  # noqa: E731
    seen = lambda: (role("caption").text, role("image").get_attribute("src"))  # noqa: E731
    model = Select(role("model"))
    assert len(model.options) >= 2, "the twin offers no model to choose"
    states = {}
    for option in [o.text for o in model.options]:
        model.select_by_visible_text(option)
        states[option] = seen()
        assert option in states[option][0] or "models" in states[option][0], \
            f"caption {states[option][0]!r} does not name the model {option!r}"
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
    assert seen() != first or status.startswith("image 1 of 1"), "next did not turn the page"


@pytest.mark.book
def test_static_browser_keeps_its_page_shows_images_at_their_size_and_says_where_it_caps(smoke_book, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = smoke_book / "_build" / "html" / "book" / "chapters" / "error_analysis.html"
    open_page(browser, page)
    twin = browser.find_element(By.CSS_SELECTOR, ".cxr-browser")
    role = lambda name: twin.find_element(By.CSS_SELECTOR, f"[data-role='{name}']")  # noqa: E731
    data = browser.execute_script(CLAIMS_JS)[0]
    model = Select(role("model"))
    for option in [o.text for o in model.options]:  # a choice with a second image, to toggle the overlay on
        model.select_by_visible_text(option)
        if role("next").is_enabled():
            break
    role("next").click()
    status, caption = role("status").text, role("caption").text
    role("overlay").click()
    assert (role("status").text, role("caption").text) == (status, caption), "the overlay toggle changed the image"
    role("overlay").click()
    natural, shown = browser.execute_script(
        "const i = arguments[0]; return [i.naturalWidth, i.getBoundingClientRect().width];", role("image"))
    assert natural and abs(natural - shown) <= 1, f"an image of {natural} px is shown at {shown:.0f} px"
    for option in [o.text for o in model.options]:
        model.select_by_visible_text(option)
        shown_count = len(data["choices"][option])
        total = sum(t[2] for t in data["totals"][option])
        status = role("status").text
        if total > shown_count:
            assert f"{total} misclassified" in status and "keeps the first" in status, status
        else:
            assert "keeps the first" not in status, status


@pytest.mark.book
def test_screenshots_of_the_report_pages_at_desk_and_phone_widths(smoke_book, browser):
    """Whole-page screenshots of the pages the issue names, at 1,400 and 390 px, for a person to look at."""
    folder = smoke_book / "_build" / "screenshots"
    for name in SHOTS:
        page = smoke_book / "_build" / "html" / f"{name}.html"
        for width in (WIDTH, PHONE):
            open_page(browser, page, width)
            assert screenshot(browser, page, folder, width).stat().st_size > 10_000


@pytest.mark.book
@pytest.mark.parametrize("width", [WIDTH, PHONE])
def test_the_conclusions_read_every_claim_from_an_interval(smoke_book, browser, width):
    """The conclusions page as a reader sees it: every metric with its interval, comparisons in the words an
    interval allows (never a bare 'above' from point estimates), the choice rule, chance named, the baselines, and
    what the test split can resolve; at both widths."""
    open_page(browser, smoke_book / "_build" / "html" / "book" / "chapters" / "conclusions.html", width)
    text = browser.execute_script("return document.querySelector('article').innerText")
    assert re.search(r"0\.\d{3} \(0\.\d{3}–[01]\.\d{3}\)", text), "no metric with its interval"
    assert re.search(r"(indistinguishable|cannot tell) on \d+ test images from \d+ patients", text)
    assert "highest validation macro F1 among all" in text and "not distinguishable from chance" in text
    assert "labels only" in text and "always No Finding" in text and "random guess" in text
    assert re.search(r"must differ by about \d\.\d\d in macro F1", text)
    assert "Does the ensemble help?" in text and ("No family wins" in text or " wins: " in text)
