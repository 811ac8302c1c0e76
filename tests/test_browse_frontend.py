"""Browsing misclassified images: the widget's behaviour, the project's kernel, read-only browsing, and
`cxr browse` driven in headless Chromium through Selenium against a tiny run folder (marker `browser`)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cxrlib.core.config import CLASSES
from cxrlib.machinery import browse, runs
from cxrlib.present.widgets import ALL_MODELS, MisclassifiedBrowser, Selection, draw_page, dropdown_width, page_text

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "smoke"
# two models with long display labels; 10 test images; A misses 5, B misses 7, both miss the first 4
MODELS = {"CheXNet (no pretrained weights)": [1, 0, 0, 0, 0, 0, 2, 3, 0, 1],
          "CNN from scratch": [1, 0, 3, 2, 2, 1, 3, 3, 3, 1]}
LABELS = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
IDS = [f"{k + 1:08d}_000.png" for k in range(len(LABELS))]


def designed_predictions() -> dict:
    """Each model's test predictions, with the mistakes above (probability 0.7 on the predicted class, 0.1 elsewhere)."""
    return {name: runs.predictions_frame(IDS, LABELS, np.eye(4)[preds] * 0.6 + 0.1) for name, preds in MODELS.items()}


def tiny_images(size: int = 48) -> dict:
    """A distinct picture per image: a bright disc at a place of its own on a gradient."""
    rows, columns = np.mgrid[:size, :size]
    images = {}
    for k, image_id in enumerate(IDS):
        y, x = 8 + (k * 7) % (size - 16), 8 + (k * 11) % (size - 16)
        disc = ((rows - y) ** 2 + (columns - x) ** 2 < 40) * 150
        images[image_id] = np.clip(40 + columns * 1.5 + disc, 0, 255).astype(np.uint8)
    return images


def tiny_model(seed: int):
    """A convolution, pooling and a 4-class classifier: enough for Grad-CAM."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((48, 48, 1))
    maps = keras.layers.Conv2D(6, 5, padding="same", activation="relu")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.MaxPooling2D(4)(maps))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="classifier")(pooled))


def build_run_folder(root: Path, profile: str = PROFILE) -> Path:
    """A run folder as the error-analysis chapter leaves it: predictions, images and cached Grad-CAM of tiny models."""
    predictions, images = designed_predictions(), tiny_images()
    models = {name: tiny_model(seed) for seed, name in enumerate(MODELS)}
    images_for = lambda ids, size: {i: images[i] for i in ids}  # noqa: E731  (already at the models' size)
    maps = browse.compute_heatmaps(models, images_for, predictions)
    run = runs.ChapterRun(profile, browse.CHAPTER, root)
    runs.write_json(run.live / "chapter.json", {"chapter": browse.CHAPTER, "profile": profile})
    browse.save_cache(run.live / browse.FOLDER, predictions, images, maps)
    fused = runs.ChapterRun(profile, "fused", root)
    fused.save_predictions("fused", "test", predictions["CNN from scratch"])
    return root


def hashes(root: Path) -> dict:
    """Every file under root and the SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """The tiny run folder, built once for the module."""
    return build_run_folder(tmp_path_factory.mktemp("browse") / "runs")


# ---------------------------------------------------------------- the widget, through its Python API

def test_status_says_image_for_one_and_images_for_several():
    assert page_text(0, 1, 1) == "image 1 of 1"
    assert page_text(3, 1, 4) == "image 4 of 4"
    assert page_text(0, 3, 7) == "images 1-3 of 7"
    assert page_text(0, 0, 0) == "no misclassified image matches this choice"


def test_browser_pages_keep_their_place_and_disable_the_ends(run_folder):
    browser = browse.browser(profile=PROFILE, runs_root=run_folder)
    assert browser.status.value == "images 1-3 of 4" and browser.previous.disabled and not browser.next.disabled
    browser.next.click()
    assert browser.status.value == "image 4 of 4" and browser.next.disabled and not browser.previous.disabled
    before = browser.rows[0][1].value
    browser.gradcam.value = True  # the overlay keeps the page
    assert browser.page == 1 and browser.status.value == "image 4 of 4" and browser.rows[0][1].value != before
    assert "Grad-CAM" in browser.rows[0][2].value
    browser.model.value = "CNN from scratch"  # a new choice starts again at the first page
    assert browser.page == 0 and browser.status.value == "images 1-3 of 7"
    browser.true_class.value, browser.predicted.value = "Effusion", "Effusion"
    assert browser.status.value == "no misclassified image matches this choice"
    assert "No test image misclassified by CNN from scratch" in browser.message.value
    assert all(box.layout.display == "none" for box, _, _ in browser.rows)


def test_a_page_says_it_is_loading_before_it_shows(run_folder):
    browser = browse.browser(profile=PROFILE, runs_root=run_folder)
    seen = []
    browser.status.observe(lambda change: seen.append(change["new"]), names="value")
    browser.rows[0][0].layout.observe(lambda change: seen.append(f"row {change['new']}"), names="display")
    browser.next.click()
    assert seen[0] == "row none" and seen[1] == "loading image 4 of 4 ..." and seen[-1] == "image 4 of 4"


def test_dropdowns_are_wide_enough_for_every_model_name():
    names = list(MODELS)
    width = dropdown_width("model", [ALL_MODELS, *names])
    assert int(width.removesuffix("ch")) >= len("model") + max(len(n) for n in names) + 4


@pytest.mark.parametrize("model", [ALL_MODELS, "CheXNet (no pretrained weights)"])
@pytest.mark.parametrize("with_gradcam", [False, True])
def test_caption_of_a_gallery_row_does_not_overlap_the_bar_chart(model, with_gradcam):
    selection = Selection(designed_predictions())
    heatmaps = (lambda name, image_id: np.outer(np.linspace(0, 1, 12), np.ones(12))) if with_gradcam else None
    fig = draw_page(selection, selection.pick(model).head(3), tiny_images(), heatmaps, title="t", model=model)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for image_ax, bar_ax in np.asarray(fig.axes[:6]).reshape(3, 2):
        caption = image_ax.title.get_window_extent(renderer)
        for label in [*bar_ax.get_yticklabels(), bar_ax.yaxis.label, bar_ax.title]:
            if label.get_text():
                assert not caption.overlaps(label.get_window_extent(renderer)), label.get_text()


def test_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "browser(" in block)
    profile = re.search(r'profile="(\w+)"', snippet).group(1)
    monkeypatch.setenv("CXR_RUNS_DIR", str(build_run_folder(tmp_path / "runs", profile)))
    *statements, last = snippet.strip().splitlines()
    scope: dict = {}
    exec("\n".join(statements), scope)
    browser = eval(last.split("#")[0], scope)  # the snippet's last line is the browser a notebook cell shows
    assert isinstance(browser, MisclassifiedBrowser) and browser.status.value == "images 1-3 of 4"


# ---------------------------------------------------------------- kernel, notebooks, read-only chapter

def test_every_notebook_names_the_projects_kernel_and_it_is_registered_here():
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        kernel = json.loads(path.read_text())["metadata"]["kernelspec"]["name"]
        assert kernel == browse.KERNEL, f"{path.relative_to(ROOT)} asks for kernel {kernel!r}"
    assert "ipykernel install --sys-prefix --name $(KERNEL)" in (ROOT / "Makefile").read_text()
    assert browse.kernel_name() == browse.KERNEL, "the kernel cxr-book is not registered for this Python: run make env"


def test_error_analysis_in_a_live_front_end_writes_nothing(isolated, nih_folder, monkeypatch):
    from cxrlib.machinery.chapter import open_chapter

    monkeypatch.delenv(runs.RUNNER_ENV, raising=False)
    root = isolated / "runs"
    runs.write_json(root / "smoke" / "error_analysis" / "chapter.json", {"identity": "made by cxr run"})
    before = hashes(root)
    chapter = open_chapter("error_analysis", {"PROFILE": "smoke", "DATA_DIR": str(nih_folder)}, show=False, viewer=True)
    assert chapter.readonly and chapter.live
    chapter.finish()
    assert hashes(root) == before and not (root / "smoke" / ".staging").exists()
    monkeypatch.setenv(runs.RUNNER_ENV, "1")  # under `cxr run` the same notebook stages its results
    staged = open_chapter("error_analysis", {"PROFILE": "smoke", "DATA_DIR": str(nih_folder)}, show=False, viewer=True)
    assert not staged.readonly and not staged.live and (staged.run.path / "chapter.json").is_file()


def test_chapter_heatmaps_are_saved_under_the_runner_and_only_read_in_a_live_front_end(run_folder, tmp_path):
    predictions, images, cached = browse.load_cache(PROFILE, run_folder)

    class Viewer:
        """What chapter_heatmaps reads of a read-only chapter."""
        readonly, profile, runs_root = True, PROFILE, run_folder

    source = browse.chapter_heatmaps(Viewer(), predictions, images, lambda: pytest.fail("no model is loaded"))
    pair = browse.misclassified(predictions)[0]
    assert np.array_equal(source(*pair), cached(*pair))


# ---------------------------------------------------------------- the real front end in a real browser

def chromium():
    """Headless Chromium through Selenium; skip, saying why, where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not binary or not shutil.which("chromedriver"):
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver; .ci/run does it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1200"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def server_env(run_folder: Path, scratch: Path) -> dict:
    """The environment of a server under test: its run folder, and scratch folders for everything it writes."""
    return {**os.environ, "CXR_RUNS_DIR": str(run_folder), "CXR_CACHE_DIR": str(scratch / "cache"),
            "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "IPYTHONDIR": str(scratch / "ipython"),
            "MPLCONFIGDIR": str(scratch / "matplotlib")}


def start_server(run_folder: Path, scratch: Path, *options: str, stdin=None) -> tuple:
    """`cxr browse` on 127.0.0.1 with a token and a free port, in a process group of its own: (process, address
    printed, log file). The server must answer the moment the address appears."""
    port, token = browse.free_port(), "t" + os.urandom(12).hex()
    log = scratch / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "cxrlib.machinery.cli", "browse", "--profile", PROFILE,
                                   "--port", str(port), "--token", token, *options], stdout=out,
                                  stderr=subprocess.STDOUT, stdin=stdin, env=server_env(run_folder, scratch),
                                  start_new_session=True)
    address = browse.address("127.0.0.1", port, token, "--lab" in options)
    deadline = time.monotonic() + 120
    while f"open {address}" not in log.read_text():
        assert server.poll() is None and time.monotonic() < deadline, f"cxr browse did not start:\n{log.read_text()}"
        time.sleep(0.05)
    assert browse.answers("127.0.0.1", port), "the address was printed before the server answered"
    return server, address, log


def family(server) -> list:
    """The server's processes: cxr, the Jupyter server it started and that server's kernels."""
    import psutil

    return [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]


def kernels(server) -> list:
    """The kernels the server runs now: a kernel that ends while it is listed (gone, or a zombie its server has not
    reaped yet) is not running."""
    import psutil

    running = []
    for process in family(server)[1:]:
        try:
            if "ipykernel" in " ".join(process.cmdline()):
                running.append(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return running


def stop(server, processes: list) -> None:
    """SIGTERM to cxr alone, as a service manager stops it; it and every process it started must end."""
    import psutil

    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    gone, alive = psutil.wait_procs(processes, timeout=30)
    for process in alive:
        process.kill()
    assert not alive, f"processes {[p.cmdline()[:3] for p in alive]} outlived SIGTERM to cxr browse"


def wait_for(condition, seconds: float):
    """condition()'s first true value within `seconds`, else its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


PAGE_STATE_JS = r"""
const root = document.querySelector(".cxr-widget-browser");
if (!root) return null;
const rows = [...root.querySelectorAll(".cxr-row")].filter(r => r.offsetParent !== null);
const pixels = img => {
  if (!img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement("canvas"); canvas.width = 32; canvas.height = 32;
  const context = canvas.getContext("2d"); context.drawImage(img, 0, 0, 32, 32);
  const data = context.getImageData(0, 0, 32, 32).data;
  let hash = 0, colour = 0;
  for (let i = 0; i < data.length; i += 4) {
    hash = (hash * 31 + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) % 1000000007;
    colour += Math.abs(data[i] - data[i + 1]) + Math.abs(data[i + 1] - data[i + 2]);
  }
  return {hash: hash, colour: colour / 1024};
};
const button = name => root.querySelector("button.cxr-" + name);
return {
  status: root.querySelector(".cxr-status").textContent.trim(),
  message: root.querySelector(".cxr-message").textContent.trim(),
  captions: rows.map(r => r.querySelector(".cxr-caption").textContent),
  images: rows.map(r => pixels(r.querySelector("img.cxr-image"))),
  previousDisabled: button("previous").disabled,
  nextDisabled: button("next").disabled,
};
"""

CLIPPED_OPTIONS_JS = r"""
const clipped = [];
const canvas = document.createElement("canvas").getContext("2d");
for (const select of document.querySelectorAll(".cxr-widget-browser select")) {
  canvas.font = getComputedStyle(select).font;
  for (const option of select.options) {
    const needed = canvas.measureText(option.text).width + 24;  // the arrow and the padding
    if (needed > select.clientWidth) clipped.push(option.text + " (" + Math.round(needed) + " > " + select.clientWidth + " px)");
  }
}
return clipped;
"""

ERRORS_JS = r"""
const found = [];
for (const el of document.querySelectorAll("[data-mime-type='application/vnd.jupyter.stderr'], [data-mime-type='application/vnd.jupyter.error'], .jp-Dialog, .voila-error, .jp-RenderedText[data-mime-type*='error']"))
  found.push(el.textContent.slice(0, 200));
if (/Traceback|There was an error when executing/.test(document.body.innerText)) found.push("an error in the page text");
return found;
"""


def expected(selection: Selection, model: str, true_class: str, predicted: str, page: int) -> tuple:
    """(status text, image ids shown) that the saved predictions call for."""
    picked = selection.pick(model, true_class, predicted)
    shown = picked.iloc[3 * page:3 * page + 3]
    return page_text(3 * page, len(shown), len(picked)), list(shown["Image Index"]), picked


@pytest.mark.browser
def test_cxr_browse_in_headless_chromium_reads_only_and_answers_every_control(run_folder, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    if browse.kernel_name() != browse.KERNEL:
        pytest.fail("the kernel cxr-book is not registered for this Python: run make env")
    folder = browse.cache_folder(PROFILE, run_folder)
    selection = Selection(browse.read_predictions(folder))
    _, _, heatmaps = browse.load_cache(PROFILE, run_folder)
    before = hashes(run_folder)
    driver = chromium()
    server, address, log = start_server(run_folder, tmp_path)
    latencies, processes = {}, []
    try:
        started = time.perf_counter()
        state = lambda: driver.execute_script(PAGE_STATE_JS)  # noqa: E731

        seen = lambda now: (now["status"], now["captions"], [i["hash"] for i in now["images"]])  # noqa: E731

        def settled(status: str, count: int, before=None):
            """Wait until the page differs from `before`, its status reads `status` and `count` images have loaded."""
            def ready(_):
                now = state()
                return now if now and now["status"] == status and len(now["images"]) == count and all(
                    now["images"]) and (before is None or seen(now) != seen(before)) else False
            return WebDriverWait(driver, 120, poll_frequency=0.05).until(ready, f"status never read {status!r}: {state()}")

        page_now = {}

        def act(name: str, action, model, true_class, predicted, page):
            """Do one thing, wait for what the predictions say, check the captions; return the new state."""
            status, ids, picked = expected(selection, model, true_class, predicted, page)
            clock = time.perf_counter()
            action()
            now = page_now["state"] = settled(status, len(ids), page_now.get("state"))
            latencies[name] = time.perf_counter() - clock
            truth = picked.set_index("Image Index")
            for caption, image_id in zip(now["captions"], ids):
                words = f"true {CLASSES[truth.loc[image_id, 'label']]}, predicted {CLASSES[truth.loc[image_id, 'pred']]}"
                assert caption.startswith(image_id) and words in caption, (caption, image_id, words)
            assert now["previousDisabled"] == (page == 0)
            assert now["nextDisabled"] == (3 * (page + 1) >= len(picked))
            return now

        first = act("first page (page, kernel, notebook)", lambda: driver.get(address), ALL_MODELS, "any", "any", 0)
        processes = family(server)
        assert kernels(server), "no kernel process was started"
        assert driver.execute_script(CLIPPED_OPTIONS_JS) == []
        button = lambda name: driver.find_element(By.CSS_SELECTOR, f"button.cxr-{name}")  # noqa: E731
        select = lambda name: Select(driver.find_element(By.CSS_SELECTOR, f".cxr-{name} select"))  # noqa: E731
        checkbox = driver.find_element(By.CSS_SELECTOR, ".cxr-gradcam input[type='checkbox']")

        last = act("next", button("next").click, ALL_MODELS, "any", "any", 1)
        assert last["images"][0]["hash"] not in {i["hash"] for i in first["images"]}, "next showed the same image"
        cam = act("Grad-CAM on", checkbox.click, ALL_MODELS, "any", "any", 1)  # the page is kept
        image_id = expected(selection, ALL_MODELS, "any", "any", 1)[1][0]
        if heatmaps(ALL_MODELS, image_id) is not None and np.ptp(heatmaps(ALL_MODELS, image_id)) > 0:
            assert cam["images"][0]["colour"] > last["images"][0]["colour"] + 5, "the overlay added no colour"
            assert "Grad-CAM" in cam["captions"][0]
        driver.save_screenshot(str(tmp_path / "browse.png"))  # for a person to look at (kept under tmp_path)
        back = act("previous", button("previous").click, ALL_MODELS, "any", "any", 0)
        assert [i["hash"] for i in back["images"]] != [i["hash"] for i in first["images"]], "no overlay on page 1"
        act("Grad-CAM off", checkbox.click, ALL_MODELS, "any", "any", 0)
        model = "CheXNet (no pretrained weights)"
        act("model", lambda: select("model").select_by_visible_text(model), model, "any", "any", 0)
        act("true class", lambda: select("true").select_by_visible_text("Effusion"), model, "Effusion", "any", 0)
        assert expected(selection, model, "Effusion", "Effusion", 0)[1] == []
        empty = act("filter with no match", lambda: select("predicted").select_by_visible_text("Effusion"), model,
                    "Effusion", "Effusion", 0)
        assert empty["message"].startswith(f"No test image misclassified by {model}"), empty["message"]
        act("predicted class", lambda: select("predicted").select_by_visible_text("any"), model, "Effusion", "any", 0)
        assert expected(selection, ALL_MODELS, "Effusion", "any", 0)[0] == "image 1 of 1"
        act("model: all models, one image", lambda: select("model").select_by_visible_text(ALL_MODELS), ALL_MODELS,
            "Effusion", "any", 0)
        assert driver.execute_script(ERRORS_JS) == []
        try:
            driver.switch_to.alert
            pytest.fail("a dialog appeared")
        except NoAlertPresentException:
            pass
        console = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert console == [], console
        latencies["whole session"] = time.perf_counter() - started
    finally:
        driver.quit()
        if not processes and server.poll() is None:
            processes = family(server)
        stop(server, processes)
    print("\nper-interaction latency in the real front end (seconds, not asserted):")
    for name, seconds in latencies.items():
        print(f"  {name}: {seconds:.2f}")
    assert hashes(run_folder) == before, "browsing changed the run folder"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


# ---------------------------------------------------------------- the server under use: kernels, memory, widths, Ctrl-C

def loaded(driver) -> bool:
    """Whether the browser's first images have arrived."""
    state = driver.execute_script(PAGE_STATE_JS)
    return bool(state and state["images"] and all(state["images"]))


def memory(server) -> int:
    """Resident memory of cxr, its Jupyter server and the kernels, in bytes."""
    return sum(p.memory_info().rss for p in family(server))


@pytest.mark.browser
def test_closed_pages_shut_their_kernels_down_and_the_memory_comes_back(run_folder, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    server, address, log = start_server(run_folder, tmp_path)
    start, processes = memory(server), family(server)
    try:
        blank = driver.current_window_handle
        for view in range(10):  # a tab opened on the browser, then closed; every other one left by navigating away
            driver.switch_to.new_window("tab")
            driver.get(address)
            WebDriverWait(driver, 120, poll_frequency=0.1).until(loaded, f"page view {view} never showed its images")
            processes += [p for p in family(server) if p not in processes]
            if view % 2:
                driver.get("about:blank")
                driver.close()
            else:  # as the tab's close button does, with the page's beforeunload (WebDriver's close skips it)
                driver.execute_cdp_cmd("Page.close", {})
            driver.switch_to.window(blank)
        wait_for(lambda: not kernels(server), 30)
        count, after = len(kernels(server)), memory(server)
    finally:
        driver.quit()
        stop(server, processes)
    print(f"\nserver memory: {start / 1e6:.0f} MB at start, {after / 1e6:.0f} MB after 10 page views closed")
    assert count <= 1, f"{count} kernels still run 30 s after the pages closed"
    assert after - start < 200e6, f"the server's memory grew by {(after - start) / 1e6:.0f} MB over 10 page views"
    text = log.read_text()
    assert text.count("Kernel shutdown") >= 9 and " 403 " not in text and "_xsrf" not in text, text[-3000:]


@pytest.mark.browser
def test_a_kernel_no_page_connects_to_is_culled(run_folder, tmp_path):
    import urllib.request

    port, token = browse.free_port(), "t" + os.urandom(12).hex()
    env = {**browse.server_env(PROFILE), **server_env(run_folder, tmp_path)}
    # the server's own settings, with only the idle time shortened from minutes to a second
    idle = "--MappingKernelManager.cull_idle_timeout="
    command = [f"{idle}1" if a.startswith(idle) else a for a in browse.server_command("127.0.0.1", port, token)]
    assert f"{idle}1" in command, "the server does not cull idle kernels"
    with open(tmp_path / "server.log", "w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for(lambda: browse.answers("127.0.0.1", port), 120), (tmp_path / "server.log").read_text()
        urllib.request.urlopen(browse.address("127.0.0.1", port, token), timeout=120).read()  # a plain GET, no page
        assert len(kernels(server)) == 1
        processes = family(server)
        culled = wait_for(lambda: not kernels(server), 60)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert culled, (tmp_path / "server.log").read_text()[-3000:]
    import psutil

    assert not psutil.wait_procs(processes, timeout=30)[1]


VIEWPORT_JS = r"""
const inside = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= innerWidth + 0.5; };
const root = document.querySelector(".cxr-widget-browser");
const controls = [...root.querySelectorAll("select, button, input")];
const images = [...root.querySelectorAll(".cxr-row img.cxr-image")].filter(i => i.offsetParent !== null);
return {
  width: innerWidth,
  controlsOutside: controls.filter(el => !inside(el)).map(el => el.outerHTML.slice(0, 80)),
  images: images.map(i => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width, i.getBoundingClientRect().height]),
  tablesUnreachable: [...root.querySelectorAll("table.cxr-probs")].filter(t => {
    const box = t.closest(".cxr-caption");
    const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
    return !inside(box) || (!inside(t) && !scrolls);
  }).length,
};
"""


@pytest.mark.browser
def test_at_desk_and_phone_widths_the_image_keeps_its_shape_and_every_control_is_on_screen(run_folder, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    server, address, _ = start_server(run_folder, tmp_path)
    processes, seen = family(server), {}
    try:
        for width in (1400, 390):
            driver.set_window_size(width, 900)
            driver.set_window_size(2 * width - driver.execute_script("return innerWidth"), 900)  # the viewport's width
            driver.get(address)
            WebDriverWait(driver, 120, poll_frequency=0.1).until(loaded, f"no images at {width} px")
            processes += [p for p in family(server) if p not in processes]
            seen[width] = driver.execute_script(VIEWPORT_JS)
            driver.save_screenshot(str(tmp_path / f"browse-{width}.png"))  # for a person to look at
    finally:
        driver.quit()
        stop(server, processes)
    for width, page in seen.items():
        assert page["width"] == width
        assert page["controlsOutside"] == [] and page["tablesUnreachable"] == 0, (width, page)
        assert page["images"] and all(abs(w / h - nw / nh) < 0.02 for nw, nh, w, h in page["images"]), (width, page)


@pytest.mark.browser
@pytest.mark.parametrize("front_end", ["voila", "lab"])
def test_one_ctrl_c_stops_either_front_end_and_its_kernels(run_folder, tmp_path, front_end):
    import pty
    import urllib.request

    import psutil

    terminal, stdin = pty.openpty()  # at a terminal, JupyterLab asked to confirm a Ctrl-C and went on serving
    server, address, log = start_server(run_folder, tmp_path, *(["--lab"] if front_end == "lab" else []), stdin=stdin)
    processes = family(server)
    try:
        if front_end == "voila":
            urllib.request.urlopen(address, timeout=120).read()  # a kernel to stop with it
        assert bool(kernels(server)) == (front_end == "voila")  # JupyterLab starts none until a notebook opens
        processes = family(server)
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        server.wait(timeout=60)
        alive = psutil.wait_procs(processes, timeout=30)[1]
    finally:
        os.close(terminal)
        os.close(stdin)
        for process in psutil.wait_procs(processes, timeout=0)[1]:
            process.kill()
    assert not alive and server.returncode == 130, log.read_text()[-3000:]
    hint = "Run > Run All Cells"  # the one step JupyterLab needs, said where the address is printed and in the README
    assert (hint in log.read_text()) == (front_end == "lab") and hint in (ROOT / "README.md").read_text()
