"""The richer approvals in the notebook: %loom answer through a real IPython shell, and the
approvals view's edit / remember / answer controls driven as the frontend drives them (values
set on the widgets, buttons clicked)."""

from __future__ import annotations

import json
from typing import Any

import ipywidgets as widgets
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from loom_nb import Agent, Capability, Model, tool
from loom_nb.notebook import ApprovalsView

DONE: list[str] = []


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    DONE.append(path)
    return f"wiped {path}"


def _ask(question: str = "Which folder?") -> dict[str, Any]:
    return {"tool": "ask_user", "id": "q1", "args": {"question": question}}


@pytest.fixture
def asking(ip: InteractiveShell) -> Agent:
    agent = Agent(Model.scripted([_ask(), "Wiping /tmp then.", _ask("Sure?"), "Fine."]),
                  capabilities=[Capability.ask_user()], tools=[wipe])
    ip.user_ns["agent"] = agent
    with capture_output():
        ip.run_line_magic("loom", "agent agent")
    return agent


def test_loom_answer_answers_the_question_and_the_run_goes_on(ip: InteractiveShell,
                                                               asking: Agent) -> None:
    with capture_output() as captured:
        ip.run_line_magic("loom", "run -o r wipe something")
    assert ip.user_ns["r"].status == "needs_approval"
    assert "the model asks: Which folder?" in ip.user_ns["r"].to_text() or any(
        "Which folder?" in o.data.get("text/plain", "") for o in captured.outputs)
    with capture_output():
        ip.run_line_magic("loom", "approvals -o v")
    assert "q1: the model asks: Which folder?" in ip.user_ns["v"].to_text()
    with capture_output():
        ip.run_line_magic("loom", "answer -o a q1 /tmp, please")
    result = ip.user_ns["a"].future.result(10)
    assert (result.status, result.output) == ("completed", "Wiping /tmp then.")
    answered = [e for e in result.events if e.type == "tool.result"][-1]
    assert answered.data["content"] == "/tmp, please"
    # without an id (the only question), and as a cell body
    with capture_output():
        ip.run_line_magic("loom", "run -o r2 again")
        ip.run_cell_magic("loom", "answer -o a2", "yes,\nsure\n")
    assert ip.user_ns["a2"].future.result(10).status == "completed"
    last = [e for e in ip.user_ns["a2"].future.result().events if e.type == "tool.result"][-1]
    assert last.data["content"] == "yes,\nsure"
    with pytest.raises(UsageError, match="No question of the model waits"):
        ip.run_line_magic("loom", "answer hello")


def _buttons(view: ApprovalsView) -> list[widgets.Button]:
    found: list[widgets.Button] = []

    def walk(w: Any) -> None:
        if isinstance(w, widgets.Button):
            found.append(w)
        for child in getattr(w, "children", ()):
            walk(child)
    walk(view.widget)
    return found


def _first(view: ApprovalsView, kind: type, description: str = "") -> Any:
    def walk(w: Any) -> Any:
        if isinstance(w, kind) and description in getattr(w, "description", ""):
            return w
        for child in getattr(w, "children", ()):
            hit = walk(child)
            if hit is not None:
                return hit
        return None
    return walk(view.widget)


def test_view_edit_and_remember_controls() -> None:
    DONE.clear()
    agent = Agent(Model.scripted([{"tool": "wipe", "id": "c1", "args": {"path": "/x"}}, "Wiped.",
                                  {"tool": "wipe", "id": "c2", "args": {"path": "/z"}}, "Again."]),
                  tools=[wipe])
    session = agent.session()
    session.run_sync("clean")
    view = ApprovalsView(session)
    edit = _first(view, widgets.Textarea)
    assert json.loads(edit.value) == {"path": "/x"} and edit.layout.display == "none"
    toggle = _first(view, widgets.ToggleButton, "Edit arguments")
    toggle.value = True  # what a click on the toggle sends
    assert edit.layout.display == ""
    edit.value = "{not json"
    _first(view, widgets.Button, "Approve").click()
    assert "not JSON" in view.note and view.future is None and DONE == []
    edit.value = json.dumps({"path": 7})
    _first(view, widgets.Button, "Approve").click()
    assert "do not match its schema" in view.note and DONE == []
    edit.value = json.dumps({"path": "/y"})
    _first(view, widgets.Checkbox, "remember").value = True
    _first(view, widgets.Button, "Approve").click()
    assert view.future is not None and view.future.result(10).status == "completed"
    assert DONE == ["/y"] and session.remembered == {"wipe"}
    assert "allowed for this session (remember=True): wipe" in view.to_text()
    # remembered: the next call runs without asking; Forget undoes it
    assert session.run_sync("again").status == "completed" and DONE == ["/y", "/z"]
    view.refresh()
    _first(view, widgets.Button, "Forget wipe").click()
    assert session.remembered == frozenset() and "asks again" in view.note


def test_view_answer_box() -> None:
    agent = Agent(Model.scripted([_ask(), "ok"]), capabilities=[Capability.ask_user()])
    session = agent.session()
    session.run_sync("go")
    view = ApprovalsView(session)
    assert "Which folder?" in view.to_html()
    assert _first(view, widgets.HTML, "") is not None
    box = _first(view, widgets.Textarea)
    assert box.placeholder.startswith("your answer")
    _first(view, widgets.Button, "Answer").click()  # empty: refused, the run still waits
    assert "non-empty" in view.note and session.waiting
    box.value = "the docs folder"
    _first(view, widgets.Button, "Answer").click()
    result = view.future.result(10)  # type: ignore[union-attr]
    assert result.status == "completed"
    assert [e for e in result.events if e.type == "tool.result"][-1].data["content"] == "the docs folder"
