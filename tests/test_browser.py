"""End to end in real headless Chromium: ``streamlit run app.py`` on 127.0.0.1 against a small real lab.

The lab (``tests/pagedata.build_showcase_lab``): ``default`` (all-MiniLM-L6-v2) and ``minilm-cls-pooling``
(the same weights with CLS pooling), each with its full 6 x 6 grid on the first 200 pairs of STS-B test
("stsb-test-sample"). The test opens every page, moves the Explore layer slider with the keyboard and
checks that the selected cell's numbers change to the database's, runs a live Demo search on pasted
documents and a sentence pair restored from a link, trains a 3-step Starbucks checkpoint from the
Train page (through a page reload), and saves a screenshot of each page
under ``test-artifacts/screenshots/`` (copied to ``docs/screenshots/`` when ``MLAB_UPDATE_SCREENSHOTS=1``).

Chromium must be at ``/usr/bin/chromium`` (Debian packages chromium and chromium-driver, installed by
``.ci/run``); without it the test fails with that message. It is never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import views
from storage import db, repository
from tests.pagedata import SHOWCASE_DATASET, Lab, build_showcase_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 1000}
WAIT_MS = 60_000
MEASURE_WAIT_MS = 480_000  # two real checkpoints, every layer, on a shared CPU
TRAIN_WAIT_MS = 240_000  # loading the base model, 3 steps, saving and registering
LONG_DOC = (
    "A street musician plays a battered acoustic guitar outside the station every morning, tuning it by ear "
    "between songs, while commuters slow down to listen, drop coins into the open case and sometimes stay "
    "for a whole verse before running for their trains; by noon he has played the same three chords for "
    "hours, and the last words of this long document must still be readable in the results table: END-OF-DOC."
)
RENAMED = "CLS pooled"
DEMO_DOCS = [
    "A man is playing a guitar on stage.",
    "The orchestra tuned their violins before the concert.",
    "A chef slices onions in a busy kitchen.",
    "Stock markets fell sharply on Monday.",
    "A child is learning to ride a bicycle.",
    "The band's drummer kept a steady beat.",
    "Heavy rain flooded the streets of the city.",
    "She practised the piano every evening.",
    "A dog chases a ball across the park.",
    "Engineers tested the new bridge for safety.",
    "The singer strummed an acoustic guitar.",
    "Farmers harvested wheat before the storm.",
    LONG_DOC,
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    folder = tmp_path_factory.mktemp("browserlab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_HOME", str(folder / "home"))
        mp.setenv("MLAB_CACHE_DIR", str(folder / "embedding-cache"))
        return build_showcase_lab(folder, pairs=200)


@pytest.fixture(scope="module")
def server(showcase: Lab) -> Iterator[str]:
    """``streamlit run app.py`` on a free port of 127.0.0.1, stopped after the module."""
    yield from _serve(showcase, read_only=False)


@pytest.fixture(scope="module")
def read_only_server(showcase: Lab) -> Iterator[str]:
    """The same lab served in read-only demo mode (``streamlit run app.py -- --read-only``)."""
    yield from _serve(showcase, read_only=True)


def _serve(showcase: Lab, read_only: bool) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAB_")}
    env.update(
        MLAB_HOME=str(showcase.folder / "home"),
        MLAB_CACHE_DIR=str(showcase.folder / "embedding-cache"),
        MLAB_DATABASE_URL=showcase.database_url,
        HF_HUB_OFFLINE="1",
    )
    log_path = showcase.folder / f"streamlit{'-read-only' if read_only else ''}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
             *(["--", "--read-only"] if read_only else [])],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url} within 90 s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def page(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install the Debian packages chromium and chromium-driver "
            "(.ci/run does) to run the browser test"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        try:
            tab = context.new_page()
            tab.set_default_timeout(WAIT_MS)
            yield tab
        finally:
            context.close()


def settle(tab: Any) -> None:
    """Wait until the script run is over (no running indicator) and charts have drawn."""
    tab.wait_for_selector('[data-testid="stApp"]')
    tab.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || getComputedStyle(document.querySelector('[data-testid=\"stStatusWidget\"]')).visibility === 'hidden'"
    )
    tab.wait_for_timeout(1500)


def no_errors(tab: Any, where: str) -> None:
    exceptions = tab.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{where}: {exceptions.first.inner_text()}"
    errors = tab.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{where}: {errors.first.inner_text()}"


CONTENT_HEIGHT_JS = """() => Math.max(
  ...['[data-testid="stMain"]', '[data-testid="stMainBlockContainer"]', '[data-testid="stSidebarContent"]']
    .map(s => document.querySelector(s)).filter(e => e).map(e => e.scrollHeight),
  document.body.scrollHeight)"""


def shoot(tab: Any, name: str) -> Path:
    """Screenshot the whole page: the main area scrolls inside the app, so grow the viewport to fit."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = int(tab.evaluate(CONTENT_HEIGHT_JS))
    tab.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height + 60, 900), 4000)})
    tab.wait_for_timeout(1000)
    tab.screenshot(path=str(path), full_page=True)
    tab.set_viewport_size(VIEWPORT)
    return path


def metric(tab: Any, label: str) -> str:
    box = tab.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return str(box.locator('[data-testid="stMetricValue"]').inner_text()).strip()


def stored_value(lab: Lab, layer: int, dim: int) -> float:
    with db.init_db(lab.database_url)() as s:
        frame = repository.results_frame(s, checkpoint_fp=repository.get_checkpoint(s, "default").fingerprint)  # type: ignore[union-attr]
    frame = frame[frame["dataset"] == SHOWCASE_DATASET]
    return views.cell_value(frame, "cosine_spearman", (layer, dim))


def open_page(tab: Any, label: str) -> None:
    """Go to another page through the sidebar navigation (session state carries over)."""
    tab.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label).click()
    tab.wait_for_url(f"**/{label}**")
    settle(tab)


def test_every_page_in_chromium(showcase: Lab, server: str, page: Any) -> None:
    shots: list[Path] = []

    page.goto(f"{server}/?dataset={SHOWCASE_DATASET}")
    settle(page)
    page.get_by_role("heading", name="Matryoshka Lab").wait_for()
    page.get_by_role("button", name="Evaluate the default grid").wait_for()
    no_errors(page, "Home")
    # a junk upload is named with the reason (Streamlit alone showed only a red icon)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "junk.bin", "mimeType": "application/octet-stream", "buffer": bytes(range(256))}]
    )
    page.get_by_text("junk.bin: upload an STS .tsv file or a .zip of a BEIR folder").wait_for()
    page.locator('[data-testid="stFileChipDeleteBtn"]').first.click()
    settle(page)
    # one display name per checkpoint: rename on Home, the new name everywhere, links unchanged
    page.get_by_text("Rename a checkpoint").click()
    picker = page.locator('[data-testid="stExpander"]').filter(has_text="Rename a checkpoint")
    picker.locator('[data-testid="stSelectbox"]').get_by_role("combobox").click()
    page.keyboard.type("minilm")
    page.keyboard.press("Enter")
    settle(page)
    field = page.get_by_label("New display name", exact=True)
    field.fill(RENAMED)
    field.press("Enter")
    settle(page)
    page.get_by_role("button", name="Rename", exact=True).click()
    page.get_by_text(f"Renamed minilm-cls-pooling to {RENAMED}.").wait_for()
    settle(page)
    no_errors(page, "Home after the rename")
    shots.append(shoot(page, "1_home"))

    page.goto(f"{server}/Explore?checkpoint=default&dataset={SHOWCASE_DATASET}")
    settle(page)
    page.locator(".js-plotly-plot").first.wait_for()
    no_errors(page, "Explore")
    assert metric(page, "Layers used") == "4 / 6"  # the middle Starbucks pair (4, 192) is selected
    before = metric(page, "cosine Spearman")
    assert before == f"{stored_value(showcase, 4, 192):.4f}"
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Layers used").get_by_role("slider")
    thumb.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
        ".some(m => m.innerText.includes('Layers used') && m.innerText.includes('5 / 6'))"
    )
    settle(page)
    after = metric(page, "cosine Spearman")
    assert after != before and after == f"{stored_value(showcase, 5, 192):.4f}"
    assert "layer=5" in page.url  # the URL follows the view
    no_errors(page, "Explore after the slider moved")
    shots.append(shoot(page, "2_explore"))

    open_page(page, "Compare")
    page.locator('[data-testid="stTable"]').wait_for()
    no_errors(page, "Compare")
    chips = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Checkpoints")
    assert f"{RENAMED} (6 x 384)" in chips.inner_text()  # the new name in the picker's chips
    assert "minilm-cls-pooling" not in chips.inner_text()
    assert page.locator(".js-plotly-plot").count() == 3  # two grids and their difference
    # significance: a plain summary under the delta heatmap and under the per-size table (B - A)
    summaries = page.get_by_text(" vs default: better at ")
    summaries.first.wait_for()
    assert summaries.count() >= 2
    table = page.locator('[data-testid="stTable"]').inner_text()
    said = " ".join(summaries.all_inner_texts())
    assert ("▲" in table or "▼" in table) == ("better at 0 " not in said or "worse at none" not in said)
    shots.append(shoot(page, "3_compare"))

    # the renamed checkpoint on Explore, opened by its unchanged link name
    page.goto(
        f"{server}/Explore?checkpoint={showcase.checkpoints['minilm-cls-pooling']}&dataset={SHOWCASE_DATASET}"
    )
    settle(page)
    page.locator(".js-plotly-plot").first.wait_for()
    no_errors(page, "Explore of the renamed checkpoint")
    page.locator(".js-plotly-plot").filter(has_text=f"{RENAMED}:").first.wait_for()  # the chart title

    open_page(page, "Curves")
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_role("heading").filter(has_text="Pareto front (").wait_for()
    no_errors(page, "Curves")
    page.get_by_text("Latency not measured for:").wait_for()
    page.get_by_role("button", name="Measure latency").click()
    page.get_by_text("Latency not measured for:").wait_for(state="detached", timeout=MEASURE_WAIT_MS)
    settle(page)
    no_errors(page, "Curves after measuring latency")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Cost (x axis)").click()
    page.get_by_role("option", name="latency p50 (ms)").click()
    settle(page)
    page.get_by_role("heading").filter(has_text="Pareto front (").wait_for()
    assert page.get_by_text("Not measured (").count() == 0  # both checkpoints are on the latency plot
    no_errors(page, "Curves on latency")
    shots.append(shoot(page, "4_curves"))

    open_page(page, "Runs")
    page.get_by_text("4 of 4 runs.").wait_for()  # two evaluations, two latency measurements
    no_errors(page, "Runs")
    shots.append(shoot(page, "5_runs"))

    # Demo, search mode on pasted documents: the query comes from the link, only it is encoded live.
    page.goto(f"{server}/Demo?corpus=Paste+documents&q=someone+plays+a+guitar")
    settle(page)
    page.get_by_label("One document per line (kept in memory only)").fill("\n".join(DEMO_DOCS))
    page.keyboard.press("Control+Enter")
    page.locator('[data-testid="stMetric"]').filter(has_text="Shared documents").wait_for()
    settle(page)
    no_errors(page, "Demo search")
    assert page.locator('[data-testid="stMetric"]').filter(has_text="Query latency").count() == 2
    assert "a=default" in page.url and "b=default" in page.url  # both sub-models are in the link
    # long documents wrap in the results table: the whole text is there and no cell is cut
    cell = page.locator('[data-testid="stTable"] td').filter(has_text="A street musician plays").first
    cell.wait_for()
    assert cell.inner_text().endswith("END-OF-DOC.")
    assert cell.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && e.getBoundingClientRect().height > 40")
    assert cell.evaluate("e => { const b = e.getBoundingClientRect(); return b.right <= window.innerWidth; }")
    shots.append(shoot(page, "6_demo"))

    # Demo, sentence-pair mode restored from a link: one similarity per cell of the whole grid.
    page.goto(f"{server}/Demo?mode=Sentence+pair&s1=A+man+plays+a+guitar.&s2=Someone+plays+an+instrument.")
    settle(page)
    page.locator('[data-testid="stMetric"]').filter(has_text="Full model (6, 384)").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    no_errors(page, "Demo sentence pair")

    # Train: a real (tiny) Starbucks run in the background; it survives a reload and gets registered.
    open_page(page, "Train")
    no_errors(page, "Train")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Training data").click()
    page.get_by_role(
        "option", name=SHOWCASE_DATASET
    ).click()  # a registered test split: scored on itself after
    settle(page)
    for label, value in (("Max steps", "3"), ("Batch size", "8")):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(value)
        field.press("Enter")
        settle(page)
    page.get_by_role("button", name="Start training").click()
    page.locator('[data-testid="stProgress"]').first.wait_for()  # the job's panel: it has started
    page.reload()  # the job runs in its own process: a reload only re-reads its progress files
    settle(page)
    page.get_by_text("Saved and registered:").wait_for(timeout=TRAIN_WAIT_MS)
    page.get_by_text(f"Evaluated on {SHOWCASE_DATASET} with its base checkpoint.").wait_for(
        timeout=TRAIN_WAIT_MS
    )
    settle(page)
    no_errors(page, "Train after the run")
    shots.append(shoot(page, "7_train"))
    with db.init_db(showcase.database_url)() as s:
        trained = [c for c in repository.list_checkpoints(s) if c.kind == "local" and "starbucks" in c.name]
    assert len(trained) == 1, "the trained checkpoint is registered in the database"
    with db.init_db(showcase.database_url)() as s:
        evaluated = repository.results_frame(s, checkpoint_fp=trained[0].fingerprint)
    assert set(evaluated["dataset"]) == {SHOWCASE_DATASET} and len(evaluated) > 0  # evaluated after training

    # a bad link: the values that cannot be honoured are named, the page still works
    page.goto(f"{server}/Explore?checkpoint=nope&dataset={SHOWCASE_DATASET}&precision=int3")
    settle(page)
    page.get_by_text("Link value checkpoint='nope' was not used").wait_for()
    page.get_by_text("Link value precision='int3' was not used").wait_for()
    no_errors(page, "Explore from a bad link")

    assert all(p.stat().st_size > 10_000 for p in shots)
    if os.environ.get("MLAB_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for path in shots:
            shutil.copy(path, DOCS_SCREENSHOTS / path.name)


def test_read_only_navigation_in_chromium(read_only_server: str, page: Any) -> None:
    """A public demo: no Train page in the navigation, no evaluate button, stored results still shown."""
    page.goto(f"{read_only_server}/?dataset={SHOWCASE_DATASET}")
    settle(page)
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_role("link", name="Demo").wait_for()
    assert nav.get_by_role("link", name="Train").count() == 0
    assert page.get_by_role("button", name="Evaluate the default grid").count() == 0
    page.goto(f"{read_only_server}/Explore?checkpoint=default&dataset={SHOWCASE_DATASET}")
    settle(page)
    page.locator(".js-plotly-plot").first.wait_for()
    no_errors(page, "read-only Explore")
    assert page.get_by_role("button", name="Measure latency").count() == 0
