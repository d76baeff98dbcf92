"""%loom panel / context / budget / signals / approvals / trace / signal / approve / reject,
through a real IPython shell."""

from __future__ import annotations

import time
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from loom_nb import Agent, Model, tool
from loom_nb.notebook import ApprovalsView, ContextView, SessionPanel, TraceView
from loom_nb.notebook.magics import LoomMagics, parse_command
from loom_nb.notebook.views import WIDGET_MIME


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"


def shown(captured: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(o.data, o.metadata) for o in captured.outputs]


@pytest.fixture
def agent(ip: InteractiveShell) -> Agent:
    agent = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped.",
                                  {"tool": "wipe", "args": {"path": "/y"}}, "Not wiped.",
                                  "Handled."]), tools=[wipe])
    ip.user_ns["agent"] = agent
    with capture_output():
        ip.run_line_magic("loom", "agent agent")
    return agent


@pytest.mark.parametrize("command, kind", [("panel", SessionPanel), ("context", ContextView),
                                           ("approvals", ApprovalsView), ("trace", TraceView)])
def test_view_commands_show_the_default_session(ip: InteractiveShell, magics: LoomMagics,
                                                agent: Agent, command: str, kind: type) -> None:
    with capture_output():
        ip.run_line_magic("loom", "run -o r clean /x")
    with capture_output() as captured:
        ip.run_line_magic("loom", f"{command} -o v")
    view = ip.user_ns["v"]
    assert isinstance(view, kind)
    # The notebook-default session of the default agent: the one %loom run used.
    assert view.session is magics._agent_sessions[agent]
    [(data, metadata)] = shown(captured)
    assert data["text/plain"] == view.to_text()
    assert WIDGET_MIME in data and "loom-view" in data["text/html"]
    assert metadata["loom"]["session_id"] == ip.user_ns["r"].session_id


def test_views_follow_the_latest_run_until_a_default_is_set(ip: InteractiveShell,
                                                             magics: LoomMagics, agent: Agent,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOM_MODEL", raising=False)
    other = Agent(Model.scripted(["Hi from other."]), name="other")
    ip.user_ns["other"] = other
    with capture_output():
        ip.run_line_magic("loom", "run -a other -o r hello")
        ip.run_line_magic("loom", "trace -o v")
    assert ip.user_ns["v"].session is magics._agent_sessions[other]
    assert ip.user_ns["v"].to_text().startswith("Trace · run 1 of 1 · completed")
    with capture_output():
        ip.run_line_magic("loom", "budget -a agent -o b")  # an explicit -a still wins
        ip.run_line_magic("loom", "agent agent")  # a newer choice of default wins too
        ip.run_line_magic("loom", "context -o c")
    assert ip.user_ns["b"].session is magics._agent_sessions[agent]
    assert ip.user_ns["c"].session is magics._agent_sessions[agent]


def test_views_after_a_run_need_no_default_agent(ip: InteractiveShell,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOM_MODEL", raising=False)
    ip.user_ns["solo"] = Agent(Model.scripted(["Done."]), name="solo")
    with pytest.raises(UsageError, match="No agent to run"):
        ip.run_line_magic("loom", "budget")
    with capture_output() as captured:
        ip.run_line_magic("loom", "run -a solo go")
        ip.run_line_magic("loom", "budget")
    assert shown(captured)[-1][0]["text/plain"].startswith("Budget · latest request:")


def test_budget_and_signals_and_trace_by_run_id(ip: InteractiveShell, agent: Agent) -> None:
    with capture_output():
        ip.run_line_magic("loom", "run -o r clean /x")
    run_id = ip.user_ns["r"].run_id
    with capture_output() as captured:
        ip.run_line_magic("loom", "budget")
        ip.run_line_magic("loom", "signals")
        ip.run_line_magic("loom", f"trace {run_id}")
    texts = [d["text/plain"] for d, _ in shown(captured)]
    assert texts[0].startswith("Budget · latest request:")
    assert texts[1] == "Signals · 0 received · 0 queued"
    assert texts[2].startswith("Trace · run 1 of 1 · needs_approval")
    with pytest.raises(UsageError, match="has no run 'run_missing'"):
        ip.run_line_magic("loom", "trace run_missing")


def test_approve_resumes_the_waiting_run_in_the_background(ip: InteractiveShell,
                                                           agent: Agent) -> None:
    with capture_output():
        ip.run_line_magic("loom", "run -o r clean /x")
    assert ip.user_ns["r"].status == "needs_approval"
    with capture_output() as captured:
        ip.run_line_magic("loom", "approve -o v")
    view = ip.user_ns["v"]
    result = view.future.result(5)
    assert (result.status, result.output) == ("completed", "Wiped.")
    # Shown right after the click; the run may already have finished by then.
    [text] = [o.data["text/plain"] for o in captured.outputs if not o.update]
    assert "Resuming the run…" in text or "Resumed. The run completed." in text
    with pytest.raises(UsageError, match="No run in session .* is waiting for approval"):
        ip.run_line_magic("loom", "approve")


def _until(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_paused_run_gets_buttons_and_its_card_shows_the_answer_after_a_click(
        ip: InteractiveShell, agent: Agent) -> None:
    with capture_output() as captured:
        ip.run_line_magic("loom", "run -o r clean /x")
        [(card, card_meta), (buttons_view, _)] = shown(captured)
        assert "%loom approve" in card["text/plain"] and "<code>%loom approve</code>" in \
            card["text/html"]
        assert buttons_view["text/plain"].startswith("Approvals · 1 decision · 1 waiting")
        approvals = ApprovalsView(ip.user_ns["r"])
        # The widget's header counts the call that waits with buttons (it said 0 waiting).
        assert "1 decision · 1 waiting" in approvals._html.value
        [approve] = [b for b in approvals._pending_box.children[1].children
                     if getattr(b, "description", "") == "Approve"]
        approve.click()
        _until(lambda: approvals.resumed is not None)
    assert approvals.resumed.output == "Wiped."
    assert "Resumed. The run completed." in approvals.note
    # `-o r` bound the paused run; the notebook's resumption rebinds it to the resumed run.
    assert ip.user_ns["r"] is approvals.resumed and ip.user_ns["r"].status == "completed"
    assert "`r` now holds the resumed run." in approvals.note
    assert "Wiped." in approvals._answer.value and "Wiped." in approvals.to_text()
    # The card of the cell that started the run now shows the resumed run.
    updates = [o for o in captured.outputs if o.update]
    assert updates and "Wiped." in updates[-1].data["text/plain"]
    assert updates[-1].data["text/plain"].startswith("Run completed")
    assert updates[-1].transient["display_id"] == captured.outputs[0].transient["display_id"]


def test_a_variable_given_another_value_is_not_rebound(ip: InteractiveShell,
                                                       agent: Agent) -> None:
    with capture_output():
        ip.run_line_magic("loom", "run -o r clean /x")
        ip.user_ns["r"] = "mine now"
        ip.run_line_magic("loom", "approve -o v")
    ip.user_ns["v"].future.result(5)
    _until(lambda: ip.user_ns["v"].resumed is not None)
    assert ip.user_ns["r"] == "mine now" and "now holds" not in ip.user_ns["v"].note


def test_reject_with_a_quoted_reason(ip: InteractiveShell, agent: Agent) -> None:
    with capture_output():
        ip.run_line_magic("loom", "run -o r clean /x")
        ip.run_line_magic("loom", "approve -o v")
    ip.user_ns["v"].future.result(5)
    with capture_output():
        ip.run_line_magic("loom", "run -o r2 clean /y")
    call_id = ip.user_ns["r2"].pending[0].call_id
    with capture_output():
        ip.run_line_magic("loom", f'reject -o v2 --reason "far too risky" {call_id}')
    final = ip.user_ns["v2"].future.result(5)
    assert (final.status, final.output) == ("completed", "Not wiped.")
    assert "A person rejected this call: far too risky" in final.tool_calls[0].content
    with pytest.raises(UsageError, match="Unknown option '--because'"):
        ip.run_line_magic("loom", "reject --because x")


def test_signal_command_shows_the_decision(ip: InteractiveShell, agent: Agent) -> None:
    with capture_output() as captured:
        ip.run_line_magic("loom", "signal --urgency low --source pager --type alert Disk at 91%")
    [(data, metadata)] = shown(captured)
    assert data["text/plain"] == ('Signal pager/alert [low] "Disk at 91%" → observe: urgency low')
    assert metadata["loom"]["action"] == "observe"
    with pytest.raises(UsageError, match="urgency 'urgent' is not one of"):
        ip.run_line_magic("loom", "signal --urgency urgent hello")
    with pytest.raises(UsageError, match="needs a summary"):
        ip.run_line_magic("loom", "signal --urgency high")
    with capture_output() as captured:
        ip.run_line_magic("loom", "signals")
    assert shown(captured)[0][0]["text/plain"].splitlines()[1] == (
        '  1. pager/alert [low] "Disk at 91%" → observe: urgency low · kept for the next run')


def test_view_commands_without_an_agent_say_what_to_do(ip: InteractiveShell,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOM_MODEL", raising=False)
    with pytest.raises(UsageError, match="%loom agent NAME"):
        ip.run_line_magic("loom", "panel")


def test_parse_view_commands() -> None:
    command = parse_command('reject -s notes --reason "not now, later" call_1 call_2')
    assert (command.action, command.session, command.reason, command.args) == (
        "reject", "notes", "not now, later", ("call_1", "call_2"))
    command = parse_command("signal --urgency=high --type deploy -- -5 degrees {x}")
    assert (command.urgency, command.signal_type, command.prompt) == ("high", "deploy",
                                                                      "-5 degrees {x}")
    assert parse_command("trace run_1").args == ("run_1",)
    for line, message in [("context extra", "takes no more words"),
                          ("trace a b", "takes 1 more word"),
                          ('reject --reason "open', "close the quotes"),
                          ("budget --urgency high", "Unknown option '--urgency' for %loom budget")]:
        with pytest.raises(Exception, match=message):
            parse_command(line)
    with pytest.raises(Exception, match="takes no cell body"):
        parse_command("panel", "some body")


def test_help_lists_the_view_commands(ip: InteractiveShell) -> None:
    with capture_output() as captured:
        ip.run_line_magic("loom", "help")
    for command in ("%loom panel", "%loom context", "%loom budget", "%loom signals",
                    "%loom approvals", "%loom trace [RUN_ID]", "%loom signal [--urgency U]",
                    "%loom approve [CALL_ID ...]", "%loom reject [--reason R]"):
        assert command in captured.stdout
