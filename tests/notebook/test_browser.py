"""The static HTML forms of the views, rendered by a real headless Chromium (Debian's package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from loom_nb import Agent, Model, RuntimeSignal, tool
from loom_nb.notebook import (ApprovalsView, BudgetView, ContextView, SessionPanel, SignalsView,
                              TraceView)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"


def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: 21 C, light wind.\n" * 12


def _page() -> str:
    agent = Agent(Model.scripted([{"tool": "lookup", "args": {"city": "Oslo"}}, "Oslo is mild.",
                                  {"tool": "wipe", "args": {"path": "/tmp/cache"}}, "Done."]),
                  "You answer briefly.", tools=[lookup, wipe])
    session = agent.session()
    first = session.run_sync("Weather in Oslo?")
    session.run_sync("Clear the cache")
    session.receive_sync(RuntimeSignal(source="pager", type="alert", summary="disk at 91%"))
    session.feedback(first.run_id, 5, "clear")
    views = [SessionPanel(session), ContextView(first), BudgetView(session), SignalsView(session),
             ApprovalsView(session), TraceView(first)]
    return ("<html><head><meta charset='utf-8'></head><body style='margin:16px'>"
            + "".join(v.to_html() for v in views) + "</body></html>")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install -y chromium` to run")
def test_static_views_render_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "views.html"
    page.write_text(_page(), encoding="utf-8")
    shot = tmp_path / "views.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"]
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1100,2400",
                    page.as_uri()], capture_output=True, timeout=90, check=True)
    assert shot.exists() and shot.stat().st_size > 20_000  # a drawn page, not a blank one
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=90, check=True).stdout
    # The browser parsed every view: six cards (the panel holds five more) and their tables.
    assert dom.count("class=\"loom-view") == 6 + 5
    assert dom.count("<details") >= 5 + 5  # partitions open on demand, long results collapsed
    assert "Waiting for a decision" in dom and "disk at 91%" in dom


def _executed_views_notebook(tmp_path: Path) -> Path:
    """A notebook executed in a real kernel, saved with its widget state (as Lab does)."""
    import nbformat
    from nbclient import NotebookClient
    cells = ["%load_ext loom_nb\nfrom loom_nb import Agent, Model\n"
             "agent = Agent(Model.scripted(['Oslo is mild.', 'The cache is gone.']))\n"
             "%loom agent agent",
             "%loom run Weather in Oslo?",
             "%loom budget",
             "%loom run Clear the cache"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=120, store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "widgets" in nb.metadata
    path = tmp_path / "views.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install -y chromium` to run")
def test_loom_html_shows_each_views_cell_state_with_no_javascript(tmp_path: Path) -> None:
    """`jupyter nbconvert --to loom-html` draws views from their static form: an offline
    browser (no widget JavaScript from a CDN) shows them, each with its own cell's state."""
    notebook = _executed_views_notebook(tmp_path)
    jupyter = Path(sys.executable).with_name("jupyter")
    for to in ("html", "loom-html"):
        subprocess.run([str(jupyter), "nbconvert", "--to", to, "--output", f"views-{to}",
                        str(notebook)], capture_output=True, timeout=120, check=True)
    plain = (tmp_path / "views-html.html").read_text(encoding="utf-8")
    static = (tmp_path / "views-loom-html.html").read_text(encoding="utf-8")
    # The stock exporter hands the view to the widget JavaScript; ours to the HTML form.
    assert "application/vnd.jupyter.widget-view+json" in plain
    assert "application/vnd.jupyter.widget-view+json" not in static
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"]
    page = (tmp_path / "views-loom-html.html").as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page], capture_output=True, text=True,
                         timeout=90, check=True).stdout
    budget = dom[dom.index("loom-budget"):]
    budget = budget[:budget.index("</table>")]
    assert budget.count("<tr") == 2  # the header and the one request made before its cell
    artifacts = Path("build/test-artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "static-views-offline.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot.resolve()}", "--window-size=1100,1600",
                    page], capture_output=True, timeout=90, check=True)
    assert shot.stat().st_size > 20_000


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install -y chromium` to run")
def test_tables_in_a_narrow_place_keep_whole_words_and_scroll_in_their_own_box(
        tmp_path: Path) -> None:
    """A panel tab is about 400 px wide: a table's headers and numbers stay on one line, words
    are not broken letter by letter, and a table too wide scrolls in its own box."""
    from playwright.sync_api import sync_playwright
    page_file = tmp_path / "views.html"
    page_file.write_text(_page(), encoding="utf-8")
    flags = ["--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-gpu"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", *flags])
        try:
            page = browser.new_page(viewport={"width": 420, "height": 1800})
            page.goto(page_file.as_uri())
            tall = page.evaluate("""() => [...document.querySelectorAll('th')]
                .filter(th => th.getBoundingClientRect().height > 24).map(th => th.textContent)""")
            assert tall == []  # every header on one line
            squeezed = page.evaluate("""() => [...document.querySelectorAll('td')]
                .filter(td => td.textContent.trim().length > 3
                        && td.getBoundingClientRect().width < 24).map(td => td.textContent)""")
            assert squeezed == []
            wider = page.evaluate("""() => document.documentElement.scrollWidth
                                    <= document.documentElement.clientWidth""")
            assert wider  # the page itself does not scroll sideways
            artifacts = Path("build/test-artifacts")
            artifacts.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(artifacts / "views-narrow.png"), full_page=True)
        finally:
            browser.close()
