"""The views and the session panel in a real Jupyter kernel (ipykernel via nbclient), with the
widget state saved into the notebook's metadata as JupyterLab's "save widget state" does."""

from __future__ import annotations

import os
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

SETUP = '''\
%load_ext loom_nb
from loom_nb import Agent, Model, tool

def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: 21 C"

@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"

agent = Agent(Model.scripted([
    {"tool": "lookup", "args": {"city": "Oslo"}}, "Oslo is mild today.",
    {"tool": "wipe", "args": {"path": "/tmp/cache"}}, "The cache is gone.",
]), "You answer briefly.", tools=[lookup, wipe])
%loom agent agent
'''

CELLS = [
    SETUP,
    "%loom run -o r Weather in Oslo?",
    "%loom panel -o panel",
    "%loom context",
    "%loom budget",
    "%loom signal --urgency low --source pager disk at 91%",
    "%loom signals",
    "%loom run -o paused Clear the cache",
    "%loom approvals -o approvals",
    # A click, as the frontend would send it; the run resumes on loom_nb's loop, not in the cell.
    "[b for b in approvals.widget.children[1].children[1].children if b.description == 'Approve'][0].click()\n"
    "print(approvals.future.result(10).status)",
    "%loom trace",
    # Richer approvals (cells 11-15): an edit with "remember", then a question and its answer box.
    "from loom_nb import Capability\n"
    "helper = Agent(Model.scripted([{'tool': 'wipe', 'args': {'path': '/a'}}, 'Wiped /b.',\n"
    "    {'tool': 'ask_user', 'args': {'question': 'Which city?'}}, 'Lisbon it is.']),\n"
    "    capabilities=[Capability.ask_user()], tools=[wipe])\n"
    "%loom run -a helper -o edited wipe a",
    "%loom approvals -a helper -o edits",
    # As the frontend sends them: the toggle's and text area's new values, the checkbox, a click.
    "controls = next(iter(edits._controls.values()))\n"
    "[w for w in controls.box.children[0].children if w.description == 'Edit arguments'][0].value = True\n"
    "controls.edit.value = '{\"path\": \"/b\"}'\n"
    "controls.remember.value = True\n"
    "[b for b in edits.widget.children[1].children[1].children if b.description == 'Approve'][0].click()\n"
    "done = edits.future.result(10)\n"
    "print(done.status, done.output, sorted(edits.session.remembered))",
    "%loom run -a helper -o asked plan a trip\n%loom approvals -a helper -o questions",
    "next(iter(questions._controls.values())).question.value = 'Lisbon'\n"
    "[b for b in questions.widget.children[1].children[1].children if b.description == 'Answer'][0].click()\n"
    "answered = questions.future.result(10)\n"
    "print(answered.status, answered.output)",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    workdir = tmp_path_factory.mktemp("widgets")
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(workdir / "kernel"))
    client = NotebookClient(nb, km=km, timeout=120, allow_errors=False, store_widget_state=True,
                            resources={"metadata": {"path": str(workdir)}})
    env = {k: v for k, v in os.environ.items() if k not in {"LOOM_LIVE", "LOOM_MODEL"}}
    client.execute(env=env)
    nbformat.write(nb, str(workdir / "views.ipynb"))  # kept for a look (pytest's tmp dir)
    return nb


def _display(nb: Any, index: int) -> dict[str, Any]:
    [output] = [o for o in nb.cells[index].outputs if o["output_type"] == "display_data"]
    return output


def test_widget_state_is_saved_with_the_expected_models(executed: Any) -> None:
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    names = [m["model_name"] for m in state.values()]
    for model in ("TabModel", "ButtonModel", "TextareaModel", "TextModel", "DropdownModel",
                  "HTMLModel", "HBoxModel", "VBoxModel"):
        assert model in names, model
    tabs = [m["state"] for m in state.values() if m["model_name"] == "TabModel"]
    assert any(t["titles"] == ["Context", "Budget", "Signals", "Approvals", "Trace"] for t in tabs)
    html = " ".join(str(m["state"].get("value", "")) for m in state.values()
                    if m["model_name"] == "HTMLModel")
    assert "Context partitions" in html and "Token budget" in html and "Oslo is mild today." in html
    # The panel's transcript was redrawn live in the kernel, up to the runs made later.
    assert "The cache is gone." in html
    buttons = {m["state"]["description"] for m in state.values() if m["model_name"] == "ButtonModel"}
    assert {"Send", "Stop", "Approve", "Reject", "1", "5"} <= buttons
    # Every displayed view points at a saved model.
    for index in (2, 3, 4, 6, 8, 10):
        model_id = _display(executed, index)["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        assert model_id in state


def _saved_html(state: dict[str, Any], model_id: str) -> str:
    """The HTML a saved widget shows: its HTML models' values, through its children."""
    model = state[model_id]["state"]
    own = str(model.get("value", "")) if state[model_id]["model_name"] == "HTMLModel" else ""
    children = [c.removeprefix("IPY_MODEL_") for c in model.get("children", [])]
    return own + "".join(_saved_html(state, c) for c in children if c in state)


def test_each_saved_view_shows_the_state_of_its_own_cell(executed: Any) -> None:
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]

    def saved(index: int) -> str:
        view = _display(executed, index)["data"]["application/vnd.jupyter.widget-view+json"]
        return _saved_html(state, view["model_id"])

    # Cells 3 and 4 ran before the second run (cell 7): their saved views do not show it.
    assert "Oslo is mild today." in saved(3) and "request 2 of 2" in saved(3)
    assert saved(4).count("<tr") == 3  # the header and run 1's two requests
    for index in (3, 4):
        assert "Clear the cache" not in saved(index) and "The cache is gone." not in saved(index)
    # The approvals view shows its own click's resumption, made after a later cell started.
    assert "The cache is gone." in saved(8)
    # The panel is the session's workspace: it follows the later runs.
    assert "The cache is gone." in saved(2)


def test_outputs_carry_text_and_html_fallbacks(executed: Any) -> None:
    texts = {i: _display(executed, i)["data"]["text/plain"] for i in (2, 3, 4, 6, 8, 10)}
    assert texts[2].splitlines()[:2] == ["Session panel · 1 run",
                                         "▶ run 1 (completed): Weather in Oslo?"]
    assert texts[3].startswith("Context · request 2 of 2 (run 1, turn 2)")
    assert texts[4].startswith("Budget · latest request:")
    assert texts[6].splitlines()[1] == (
        '  1. pager/message [low] "disk at 91%" → observe: urgency low · kept for the next run')
    assert texts[8].splitlines()[0] == "Approvals · 2 decisions · 1 waiting"
    assert texts[10].startswith("Trace · run 2 of 2 · completed")
    for index in texts:
        output = _display(executed, index)
        assert "loom-view" in output["data"]["text/html"]
        assert output["metadata"]["loom"]["session_id"].startswith("ses_")
    assert "".join(o.get("text", "") for o in executed.cells[9].outputs) == "completed\n"
    signal = _display(executed, 5)
    assert signal["data"]["text/plain"].startswith('Signal pager/message [low] "disk at 91%" →')


def test_richer_approvals_in_a_kernel(executed: Any) -> None:
    printed = ["".join(o.get("text", "") for o in executed.cells[i].outputs) for i in (13, 15)]
    assert printed == ["completed Wiped /b. ['wipe']\n", "completed Lisbon it is.\n"]
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    names = {m["model_name"] for m in state.values()}
    assert {"CheckboxModel", "ToggleButtonModel", "TextareaModel"} <= names
    edits = _display(executed, 12)["data"]
    assert "allowed for this session" not in edits["text/plain"]  # drawn before the click
    assert 'wipe(path="/a")' in edits["text/plain"]
    questions = [o for o in executed.cells[14].outputs if o["output_type"] == "display_data"][-1]["data"]
    assert "the model asks: Which city?" in questions["text/plain"]
    assert "Which city?" in questions["text/html"]
