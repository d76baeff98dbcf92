"""The session panel in a real JupyterLab, driven by a real headless Chromium (Debian's package).

The test starts JupyterLab on loopback (a free port, a fixed token, a throwaway config, data and
runtime dir), opens a notebook that builds an agent on a scripted model and shows ``%loom panel``,
runs all cells from Lab's Run menu, waits for the panel's widgets (the Send button, the tabs),
types a prompt, clicks Send and waits until the transcript shows the scripted answer; it then opens
the Trace tab, and keeps a screenshot at ``build/test-artifacts/lab_panel.png``.

Playwright drives the system Chromium (``executable_path``); it never downloads a browser of its
own. Deselect with ``-m "not browser"``. Without a Chromium the test skips and says how to get one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
TOKEN = "loom-lab-browser-test"
# Headless Chromium as it works on a closed network: no sandbox (root), no GPU, no QUIC, and no
# background connections (they are refused here, many at a time). Playwright adds --headless and
# a fresh --user-data-dir of its own.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"]
# The open notebook's session, as Lab's frontend sees it: ready, with a connected, idle kernel.
KERNEL_READY = """() => {
    const context = window.jupyterapp?.shell?.currentWidget?.sessionContext;
    const kernel = context?.session?.kernel;
    return !!context && context.isReady && !context.hasNoKernel && !!kernel
        && kernel.connectionStatus === "connected" && kernel.status === "idle";
}"""
# How far a scroll box is from showing its end (column-reverse boxes count scrollTop from it).
SCROLL = """(el) => {
    const reverse = getComputedStyle(el).flexDirection === "column-reverse";
    const fromBottom = reverse ? Math.abs(el.scrollTop)
        : el.scrollHeight - el.clientHeight - el.scrollTop;
    return {overflows: el.scrollHeight > el.clientHeight + 10, fromBottom, reverse};
}"""
# A browser's notice that layout outran its resize observers: harmless, and timing-dependent.
BENIGN = re.compile(r"ResizeObserver loop")
ANSWER = "Oslo is mild today, 21 C and a light wind."
# The relative luminance (0 black .. 1 white) of an element's background and text colours.
CONTRAST = """(selector) => {
    const element = document.querySelector(selector);
    if (!element) throw new Error(`nothing matches ${selector}`);
    const lum = (css) => {
        const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map((v) => {
            v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const style = getComputedStyle(element);
    return {background: lum(style.backgroundColor), text: lum(style.color)};
}"""

CELLS = [
    "%load_ext loom_nb\nfrom loom_nb import Agent, Model",
    '''\
def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: 21 C, light wind.\\n" * 12

agent = Agent(Model.scripted([{"tool": "lookup", "args": {"city": "Oslo"}},
                              "## Forecast\\n\\n''' + ANSWER + '''",
                              "Bergen: rain.\\n\\n" * 40 + "The end of Bergen.",
                              "Tromsø: snow."]),
              "You answer briefly.", tools=[lookup])''',
    "%loom panel -a agent -o panel",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=(
        "no Chromium on this machine (looked for `chromium` and `chromium-browser` on PATH): "
        "`apt-get install -y chromium` to run the JupyterLab browser test")),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api(base: str, path: str, method: str = "GET") -> urllib.request.Request:
    return urllib.request.Request(f"{base}{path}", method=method,
                                  headers={"Authorization": f"token {TOKEN}"})


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on 127.0.0.1 serving a root with ``panel.ipynb``; yields the base URL."""
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, root / "panel.ipynb")

    config = tmp_path / "config"
    # No "news" toast over the notebook, whatever Lab's version asks on a first start.
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {k: v for k, v in os.environ.items() if k not in {"LOOM_MODEL", "LOOM_LIVE"}}
    env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_PLATFORM_DIRS="1",
               # Lab's own settings, workspaces and the kernel's history stay in tmp_path.
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={TOKEN}",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly",
         # window.jupyterapp: the test waits on the notebook's own kernel connection.
         "--LabApp.expose_app_in_browser=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n"
                            + (tmp_path / "lab.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(_api(base, "/api/status"), timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("JupyterLab did not answer in 60 s:\n"
                            + (tmp_path / "lab.log").read_text()[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        # Lab's shutdown endpoint shuts its kernels down first; the kill is the backstop.
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(_api(base, "/api/shutdown", "POST"), timeout=10).close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        # Lab's log beside the screenshot, for whoever reads a failure.
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "lab.log", ARTIFACTS / "lab_server.log")
        _kill_leftover_kernels(tmp_path / "runtime")


def _kill_leftover_kernels(runtime: Path) -> None:
    """Kernels run in sessions of their own; end any whose connection file is still there."""
    for connection in runtime.glob("kernel-*.json"):
        for line in subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True,
                                   text=True).stdout.splitlines():
            pid, _, args = line.strip().partition(" ")
            if str(connection) in args:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def test_session_panel_in_jupyterlab(lab: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "lab_panel.png"
    for stale in ("lab_panel.png", "lab_panel_widget.png", "lab_panel_failure.png",
                  "lab_panel_console.log"):
        (ARTIFACTS / stale).unlink(missing_ok=True)
    errors: list[str] = []
    console: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: None if BENIGN.search(str(exc)) else errors.append(
                f"pageerror: {exc}"))
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.goto(f"{lab}/doc/tree/panel.ipynb?token={TOKEN}", wait_until="domcontentloaded")

            # The notebook is open and the frontend holds a connected, idle kernel (the toolbar's
            # indicator can say "Idle" a moment before the notebook's session has its kernel).
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            expect(notebook.locator(".jp-Cell").nth(len(CELLS) - 1)).to_be_visible(timeout=60_000)
            page.wait_for_function(KERNEL_READY, timeout=60_000)

            # Run ▸ Run All Cells, through Lab's own menu.
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            # The first cell starts (a run-all that found no kernel would silently do nothing).
            cells = notebook.locator(".jp-Cell")
            expect(cells.first.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[[*1]\]"),
                                                                      timeout=10_000)

            # The panel's widgets render in the last cell's output.
            output = cells.nth(len(CELLS) - 1).locator(".jp-OutputArea")
            send = output.locator("button.jupyter-button", has_text="Send")
            stop = output.locator("button.jupyter-button", has_text="Stop")
            expect(send).to_be_visible(timeout=60_000)
            expect(send).to_be_enabled()
            expect(stop).to_be_disabled()
            tabs = output.locator(".jupyter-widget-tab .lm-TabBar-tab")
            expect(tabs).to_have_text(["Context", "Budget", "Signals", "Approvals", "Trace"])
            transcript = output.locator(".widget-html").nth(1)
            expect(transcript).to_contain_text("No runs yet")

            # A prompt typed into the box, and Send clicked: the run goes on loom_nb's loop.
            output.locator(".widget-textarea textarea").fill("Weather in Oslo?")
            send.click()
            expect(transcript.get_by_text(ANSWER)).to_be_visible(timeout=30_000)
            expect(transcript).to_contain_text('lookup(city="Oslo")')  # the call, and its result
            expect(transcript).to_contain_text("Oslo: 21 C, light wind.")
            expect(output).to_contain_text("The run completed.", timeout=30_000)
            expect(send).to_be_enabled()
            expect(output.locator(".widget-textarea textarea")).to_have_value("")

            # A second click: the Trace tab comes to the front with the run's timeline.
            started = output.get_by_text('run started: "Weather in Oslo?"')
            expect(started).to_be_hidden()
            tabs.filter(has_text="Trace").click()
            expect(tabs.filter(has_text="Trace")).to_have_class(re.compile(r"\blm-mod-current\b"))
            expect(started).to_be_visible(timeout=10_000)
            expect(output.get_by_text("run finished: completed")).to_be_visible()

            # The answer is Markdown: a heading, not "## Forecast" as text.
            expect(transcript.locator("h2")).to_have_text("Forecast")
            transcript.locator("details summary").first.click()  # the long tool result

            output.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
            output.screenshot(path=str(ARTIFACTS / "lab_panel_widget.png"))
            light = page.evaluate(CONTRAST, ".loom-transcript details pre")

            # The same panel in JupyterLab Dark: text boxes and bar tracks follow the theme.
            page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme',"
                          " {theme: 'JupyterLab Dark'})")
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                                   timeout=30_000)
            page.wait_for_timeout(500)
            dark = page.evaluate(CONTRAST, ".loom-transcript details pre")
            assert light["background"] > 0.8 and light["text"] < 0.2, light
            assert dark["background"] < 0.2 and dark["text"] > 0.5, dark  # light text, dark box
            page.screenshot(path=str(ARTIFACTS / "lab_panel_dark.png"))
            output.screenshot(path=str(ARTIFACTS / "lab_panel_widget_dark.png"))
            tabs.filter(has_text="Context").click()
            track = page.evaluate(CONTRAST, ".loom-context span[style*='inline-flex']")
            assert track["background"] < 0.3, track  # an empty bar is not a bright white strip
            output.screenshot(path=str(ARTIFACTS / "lab_context_dark.png"))

            # The transcript follows the newest run, unless the reader scrolled up to read.
            def ask(prompt: str, answer: str) -> None:
                output.locator(".widget-textarea textarea").fill(prompt)
                send.click()
                expect(transcript.get_by_text(answer)).to_have_count(1, timeout=30_000)
                expect(send).to_be_enabled(timeout=30_000)
                page.wait_for_timeout(300)  # the last redraw

            ask("Weather in Bergen?", "The end of Bergen.")
            box = transcript.element_handle()
            assert box is not None
            metrics = page.evaluate(SCROLL, box)
            assert metrics["overflows"] and metrics["fromBottom"] < 2, metrics  # the newest in view
            page.evaluate("(el) => { el.scrollTop = el.scrollTop - 300; }", box)
            page.wait_for_timeout(200)
            before = page.evaluate(SCROLL, box)
            assert before["fromBottom"] > 250, before
            ask("Weather in Tromsø?", "Tromsø: snow.")
            after = page.evaluate(SCROLL, box)
            assert after["fromBottom"] > 250, (before, after)  # not pulled down to the end
            assert not errors, f"JavaScript errors in Lab: {errors}"
        except Exception:
            # What the browser showed when it went wrong, for whoever reads the failure.
            (ARTIFACTS / "lab_panel_console.log").write_text("\n".join(console + errors))
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / "lab_panel_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
