"""A view of a session shows the state of the cell that displayed it (loom_nb.notebook.cells),
through a real IPython shell: cells are ``run_cell`` calls, which raise ``pre_run_cell``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from loom_nb import Agent, Model, tool
from loom_nb.errors import ConfigError
from loom_nb.notebook import ApprovalsView, BudgetView, SignalsView, TraceView


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"


def cell(ip: InteractiveShell, source: str) -> Any:
    with capture_output():
        result = ip.run_cell(source)
    result.raise_error()
    return result.result


def paused_call(ip: InteractiveShell) -> str:
    return str(ip.user_ns["paused"].pending[0].call_id)


@pytest.fixture
def chat(ip: InteractiveShell) -> Any:
    agent = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped.",
                                  "Second answer.", "Third answer."]), tools=[wipe])
    ip.user_ns.update(agent=agent, ApprovalsView=ApprovalsView, BudgetView=BudgetView,
                      SignalsView=SignalsView, TraceView=TraceView)
    cell(ip, "chat = agent.session()\npaused = chat.run_sync('clean /x')")
    return ip.user_ns["chat"]


def test_an_approvals_view_keeps_waiting_when_a_later_cell_approves(
        ip: InteractiveShell, chat: Any) -> None:
    view = cell(ip, "ApprovalsView(chat)")
    shown, updates = view._html.value, view.updates
    assert "1 waiting" in shown and view._pending_box.children
    cell(ip, "answered = paused.approve().resume_sync()")
    assert ip.user_ns["answered"].output == "Wiped."
    # What the view's cell saw stays on screen (and in the saved widget state).
    assert view._html.value == shown and view.updates == updates
    assert view._pending_box.children
    # A click on the stale buttons says what happened instead of failing silently.
    view._click(paused_call(ip), True)
    assert "No run is waiting" in view.note
    # Displayed again in a later cell, it is that cell's: up to date.
    ip.user_ns["view"] = view
    assert cell(ip, "view") is view
    assert "1 waiting" not in view._html.value and "allow" in view._html.value


def test_a_budget_view_does_not_take_in_a_later_cells_run(ip: InteractiveShell,
                                                          chat: Any) -> None:
    cell(ip, "paused.approve().resume_sync()")
    view = cell(ip, "BudgetView(chat)")
    before = view._html.value
    assert before.count("<tr") == 3  # a header and the two requests so far
    cell(ip, "chat.run_sync('again')")
    assert view._html.value == before
    assert {e.run_id for e in view.events()} == {chat.runs[0].run_id}


def test_a_trace_view_of_a_session_does_not_list_later_runs(ip: InteractiveShell,
                                                            chat: Any) -> None:
    cell(ip, "paused.approve().resume_sync()")
    view = cell(ip, "TraceView(chat)")
    cell(ip, "chat.run_sync('again')")
    assert len(view._pick.options) == 1 and view.selected_run() == chat.runs[0].run_id


def test_a_run_going_when_the_next_cell_starts_is_followed_to_its_end(
        ip: InteractiveShell) -> None:
    async def slow(request: Any) -> Any:
        await asyncio.sleep(0.3)
        yield "Slow answer."

    ip.user_ns.update(agent=Agent(Model.function(slow)), BudgetView=BudgetView)
    cell(ip, "chat = agent.session()\nview = BudgetView(chat)\ndisplay(view)\n"
             "run = chat.start('slow one')")
    view, run = ip.user_ns["view"], ip.user_ns["run"]
    cell(ip, "x = 1")  # the next cell starts while the run goes (or before it starts)
    assert run.result(10).status == "completed"
    deadline = time.monotonic() + 5
    while view._html.value.count("<tr") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert view._html.value.count("<tr") == 2  # its request is shown
    cell(ip, "chat.run_sync('later')")
    assert view._html.value.count("<tr") == 2  # a run of a later cell is not


def test_follow_session_keeps_following_and_bad_values_are_refused(ip: InteractiveShell,
                                                                   chat: Any) -> None:
    cell(ip, "paused.approve().resume_sync()")
    view = cell(ip, "BudgetView(chat, follow='session')")
    cell(ip, "chat.run_sync('again')")
    assert view._html.value.count("<tr") == 4
    with pytest.raises(ConfigError, match="follows its 'cell'"):
        BudgetView(chat, follow="everything")  # type: ignore[arg-type]


def test_a_signals_view_keeps_its_cells_signals(ip: InteractiveShell, chat: Any) -> None:
    cell(ip, "paused.approve().resume_sync()")
    signal = "chat.receive_sync({'source': 'pager', 'summary': 'disk at %s', 'urgency': 'low'})"
    cell(ip, signal % "91%")
    view = cell(ip, "SignalsView(chat)")
    assert len(view.rows()) == 1
    cell(ip, signal % "95%")
    assert len(view.rows()) == 1 and "95%" not in view.to_text()
