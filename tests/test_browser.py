"""The student's path through JupyterLab, tested in a real browser.

JupyterLab is started from this venv on a temporary copy of lab 01, headless
Chromium (Debian's package, driven by Playwright's Python package) opens it,
runs Run > Run All Cells at the smoke profile, saves it, and the test checks
what the student sees: every code cell ran, no cell shows an error, the
figures are images on the page, progress bars are widgets, the kernel is idle.
A copy of lab 01 with a raising cell must fail those checks.

Also the rules behind that path: the default profile ($LABKIT_PROFILE, else
cpu) and the folder that notebooks run by hand write into.
"""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

import labkit as lk
from labkit import report

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the browser tests skip, saying so
    sync_playwright = None

ROOT = Path(__file__).resolve().parents[1]
LAB01 = ROOT / "notebooks" / "01_mnist_weight_vs_unit_pruning.ipynb"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_S = 120    # JupyterLab answering /api/status
KERNEL_START_S = 120    # the notebook's kernel idle after opening
RUN_ALL_S = 600         # Run All Cells of lab 01 at the smoke profile (about 50 s on 2 cores)

STATE_JS = """() => {
  const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'));
  const imgs = Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img'));
  return {
    prompts: cells.map(c => (c.querySelector('.jp-InputPrompt') || {innerText: ''}).innerText.trim()),
    tracebacks: Array.from(document.querySelectorAll(
        '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
        .map(o => o.innerText).filter(t => /Traceback|Error:/.test(t)),
    images: imgs.map(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('data:image/png')),
    progress_widgets: document.querySelectorAll('.jp-Notebook .widget-hprogress').length,
    kernel: (document.querySelector('#jp-main-statusbar') || {innerText: ''}).innerText.replace(/\\n/g, ' '),
    outputs: Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output'))
        .map(o => o.innerText).join('\\n'),
  };
}"""


# ------------------------------------------------------------ the rules behind the path

def test_default_profile_is_cpu_unless_labkit_profile_says(monkeypatch):
    monkeypatch.delenv("LABKIT_PROFILE", raising=False)
    assert lk.config.default_profile() == "cpu"
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    assert lk.config.default_profile() == "smoke"
    monkeypatch.setenv("LABKIT_PROFILE", "gpu")
    with pytest.raises(ValueError, match="LABKIT_PROFILE='gpu'"):
        lk.config.default_profile()


def test_configure_without_a_profile_takes_the_default(monkeypatch, tmp_env):
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    cfg = lk.configure(None, {"smoke": {}}, lab="t", dataset="mnist", quiet=True)
    assert cfg.profile == "smoke" and cfg.dataset == "synthetic-mnist"


def test_a_notebook_run_by_hand_writes_under_reports_interactive(monkeypatch):
    monkeypatch.delenv("LABKIT_REPORTS", raising=False)
    assert lk.config.reports_root() == lk.config.ROOT / "reports" / "interactive"
    assert lk.results.path_for("cpu") == lk.config.ROOT / "reports" / "interactive" / "cpu" / "results.jsonl"


def test_the_report_command_writes_under_reports(monkeypatch):
    """`python -m labkit report` (and `make report`) defaults $LABKIT_REPORTS to <root>/reports."""
    seen = []

    def no_notebooks(folder, only):
        seen.append(lk.config.reports_root())
        raise SystemExit(0)

    monkeypatch.delenv("LABKIT_REPORTS", raising=False)
    monkeypatch.setattr(report, "find_notebooks", no_notebooks)
    with pytest.raises(SystemExit) as done:
        report.main(["report", "--profile", "smoke"])
    assert done.value.code == 0 and seen == [lk.config.ROOT / "reports"]


# ------------------------------------------------------------ JupyterLab and the browser

def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(tmp: Path) -> dict:
    """A student's environment at the smoke profile, with every Jupyter and
    labkit folder in `tmp` (fresh settings and workspace, no repo writes)."""
    env = dict(os.environ, LABKIT_PROFILE="smoke", LABKIT_PROGRESS="1",
               LABKIT_REPORTS=str(tmp / "reports"), LABKIT_CACHE=str(tmp / "cache"),
               JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"), JUPYTER_DATA_DIR=str(tmp / "jupyter-data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"), IPYTHONDIR=str(tmp / "ipython"))
    env.pop("MPLBACKEND", None)  # the tests' Agg would hide inline figures; a student has none
    settings = tmp / "jupyter-config" / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True, exist_ok=True)
    # every cell in the DOM (no virtual scrolling), so the page shows the whole notebook
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = settings.parent / "apputils-extension"  # no "official Jupyter news?" toast over the screenshot
    news.mkdir(exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    return env


def _wait_for_server(proc: subprocess.Popen, url: str, log: Path) -> None:
    """Poll JupyterLab's /api/status until it answers; fail with its log if it exits or hangs."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop_server(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut JupyterLab and its kernels down through its API; kill it if that hangs."""
    try:
        req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
        urllib.request.urlopen(req, timeout=10).close()
        proc.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a folder holding lab 01 and a copy of it with a raising cell;
    yields (base url, token, folder)."""
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if CHROMIUM is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("jupyterlab")
    books = tmp / "notebooks"
    books.mkdir()
    shutil.copy(LAB01, books / LAB01.name)  # a copy: saving it never touches notebooks/
    _with_raising_cell(LAB01, books / "01_raises.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    base, log = f"http://127.0.0.1:{port}", tmp / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={books}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=_server_env(tmp), stdout=out, stderr=subprocess.STDOUT, cwd=books)
    try:
        _wait_for_server(proc, f"{base}/api/status?token={token}", log)
        yield base, token, books
    finally:
        _stop_server(proc, base, token)


def _with_raising_cell(src: Path, dst: Path) -> None:
    """Copy notebook `src` to `dst` with a raising code cell right after the set-up cell."""
    nb = nbformat.read(str(src), as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if "lk.configure(" in c.source)
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell('raise RuntimeError("a cell of lab 01 raised")'))
    nbformat.write(nb, str(dst))


def _click_menu(page, menu: str, item: str) -> None:
    """Click menu bar entry `menu`, then its item `item` (exact labels)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def _wait_until_done(page) -> dict:
    """Wait until Run All has started, then until the kernel is idle with no
    queued cell on two polls in a row; returns the page state."""
    page.wait_for_function("() => Array.from(document.querySelectorAll('.jp-Notebook .jp-InputPrompt'))"
                           ".some(p => /\\[(\\*|\\d+)\\]/.test(p.innerText))", timeout=KERNEL_START_S * 1000)
    deadline, calm = time.monotonic() + RUN_ALL_S, 0
    while time.monotonic() < deadline:
        state = page.evaluate(STATE_JS)
        done = "| Idle" in state["kernel"] and not any("*" in p for p in state["prompts"])
        calm = calm + 1 if done else 0
        if calm == 2:
            return state
        time.sleep(1)
    pytest.fail(f"Run All did not finish in {RUN_ALL_S} s; prompts {state['prompts']}, kernel {state['kernel']!r}")


def run_all_in_browser(base: str, token: str, books: Path, name: str, screenshot: Path) -> tuple[dict, dict]:
    """Open notebook `name` in headless Chromium, Run All Cells, save it and
    screenshot the page; returns (page state, saved notebook)."""
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(screenshot.parent / f"chromium-{name}"), executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            # a workspace of its own: the page shows this notebook only, not the tabs of earlier tests
            page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?token={token}",
                      timeout=KERNEL_START_S * 1000)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=KERNEL_START_S * 1000)
            page.wait_for_function("() => /Python 3.*\\| Idle/.test(document.querySelector('#jp-main-statusbar')"
                                   ".innerText)", timeout=KERNEL_START_S * 1000)
            before = (books / name).stat().st_mtime_ns
            _click_menu(page, "Run", "Run All Cells")
            state = _wait_until_done(page)
            _click_menu(page, "File", "Save Notebook")
            page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=60_000)
            deadline = time.monotonic() + 30
            while (books / name).stat().st_mtime_ns == before and time.monotonic() < deadline:
                time.sleep(0.5)
            last_image = page.locator(".jp-Notebook .jp-OutputArea-output img").last
            if state["images"]:
                last_image.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
        finally:
            context.close()
    return state, json.loads((books / name).read_text())


def check_walkthrough(state: dict, saved: dict) -> None:
    """What a student must see after Run All: every code cell ran, no error,
    the figures as images, progress bars as widgets, the kernel idle."""
    errors = [o.get("evalue", "") for c in saved["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors and not state["tracebacks"], f"a cell raised: {errors or state['tracebacks']}"
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), \
        f"{sum(not c['execution_count'] for c in code)} of {len(code)} code cells did not run"
    assert len(state["prompts"]) == len(code) and all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]), \
        state["prompts"]
    figures = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    assert figures >= 1 and state["images"] == [True] * figures, (figures, state["images"])
    assert state["progress_widgets"] >= 1, "no progress bar was shown as a widget"
    assert "profile smoke" in state["outputs"], "LABKIT_PROFILE=smoke did not reach the notebook"
    assert re.search(r"Python 3.*\| Idle", state["kernel"]), state["kernel"]


def test_lab01_run_all_in_jupyterlab(lab, tmp_path):
    base, token, books = lab
    shot = tmp_path / "lab01_after_run_all.png"
    state, saved = run_all_in_browser(base, token, books, LAB01.name, shot)
    print(f"\nscreenshot: {shot}")
    check_walkthrough(state, saved)
    assert shot.stat().st_size > 10_000


def test_the_browser_check_fails_when_a_cell_raises(lab, tmp_path):
    base, token, books = lab
    state, saved = run_all_in_browser(base, token, books, "01_raises.ipynb", tmp_path / "lab01_raises.png")
    with pytest.raises(AssertionError, match="a cell of lab 01 raised"):
        check_walkthrough(state, saved)
    assert any("[ ]:" == p for p in state["prompts"]), "Run All should stop at the raising cell"
