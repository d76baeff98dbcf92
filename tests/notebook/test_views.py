"""The notebook views against runs with known events: widget values, text and HTML forms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import ipywidgets as widgets
import pytest

from loom_nb import Agent, Model, ModelRequest, RuntimeSignal, RuntimeTask, tool
from loom_nb.runtime import ContextProtocol, DelegationPolicy, QualityGate, Runtime
from loom_nb.notebook import (ApprovalsView, BudgetView, ContextView, SessionPanel, SignalsView,
                              TraceView)
from loom_nb.notebook.approvals import waiting_result
from loom_nb.notebook.views import WIDGET_MIME


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"


def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: 21 C"


def buttons(widget: widgets.Widget, description: str) -> list[widgets.Button]:
    """Every Button under ``widget`` with that label."""
    found = []
    if isinstance(widget, widgets.Button) and widget.description == description:
        found.append(widget)
    for child in getattr(widget, "children", ()):
        found += buttons(child, description)
    return found


def requests_of(result: Any) -> list[dict[str, Any]]:
    return [e.data["context"] for e in result.events if e.type == "model.request"]


# -- context and budget ----------------------------------------------------------------------------


def test_context_view_of_a_run_shows_each_request() -> None:
    agent = Agent(Model.scripted([{"tool": "lookup", "args": {"city": "Oslo"}}, "Oslo is mild."]),
                  "You answer about weather.", tools=[lookup])
    result = agent.session().run_sync(RuntimeTask("Weather?", inputs={"units": "metric"}))
    view = ContextView(result, live=False)
    contexts = requests_of(result)
    assert len(contexts) == 2
    # The dropdown offers "latest" and each request; the latest is drawn by default.
    assert [v for _, v in view._pick.options] == [0, 1, 2]
    text = view.to_text()
    last = contexts[-1]
    assert text.splitlines()[0] == (f"Context · request 2 of 2 (run 1, turn 2) · "
                                    f"{last['total_tokens']} of {last['budget']} tokens (<0.1%)")
    for name, tokens in last["partitions"].items():
        label = "history (3 messages)" if name == "history" else name
        assert any(line.split() [:len(label.split()) + 1] == [*label.split(), str(tokens)]
                   for line in text.splitlines()), (name, text)
    # Content on demand: collapsed <details> with the partition's text.
    html = view._html.value
    assert html.count("<details") == 5
    assert "You answer about weather." in html and "units: metric" in html
    view._pick.value = 1
    assert view.to_text().startswith("Context · request 1 of 2 (run 1, turn 1)")
    assert f"{contexts[0]['total_tokens']} of" in view._html.value
    assert "run_" not in text and "ses_" not in text


def test_context_view_of_a_session_marks_compactions() -> None:
    def answer(request: ModelRequest) -> str:
        return "A fairly long answer that fills the history quickly. " * 6

    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=500, summarizer="extractive"))
    session = Agent(Model.function(answer, context_window=2_000), runtime=runtime).session()
    results = [session.run_sync(f"question {i} " + "x" * 600) for i in range(12)]
    events = [e for r in results for e in r.events]
    compactions = [e for e in events if e.type in ("context.compacted", "context.renewed")]
    assert compactions, "the setup must compact"
    view = ContextView(session, live=False)
    text = view.to_text()
    assert f"compactions in the session: {len(compactions)}" in text
    assert text.count(" → ") >= len(compactions)
    first = compactions[0].data
    assert f"{first['before_tokens']} → {first['after_tokens']} tokens" in text
    assert "Compactions in the session" in view.to_html()
    # A request right after a compaction is marked.
    marked = ContextView(next(r for r in results if any(
        e.type == "context.compacted" for e in r.events)), live=False)
    marked._pick.value = 1
    assert "before this request: compacted" in marked.to_text()


def test_budget_view_rows_match_the_requests() -> None:
    agent = Agent(Model.scripted([{"tool": "lookup", "args": {"city": "Rome"}}, "Warm.", "Again."]),
                  tools=[lookup])
    session = agent.session()
    first = session.run_sync("Weather in Rome?")
    second = session.run_sync("And now?")
    view = BudgetView(session, live=False)
    contexts = requests_of(first) + requests_of(second)
    usages = [e.data["usage"] for r in (first, second) for e in r.events if e.type == "model.response"]
    lines = view.to_text().splitlines()
    assert lines[0].startswith(f"Budget · latest request: {contexts[-1]['total_tokens']} of "
                               f"{contexts[-1]['budget']} tokens")
    assert lines[0].endswith("compaction at 80%")
    rows = [line.split() for line in lines[2:-1]]
    assert [(r[1], r[2], r[3], r[5], r[6]) for r in rows] == [
        (str(run), str(turn), str(c["total_tokens"]), str(u["input_tokens"]), str(u["output_tokens"]))
        for (run, turn), c, u in zip([(1, 1), (1, 2), (2, 1)], contexts, usages)]
    total_in = sum(u["input_tokens"] for u in usages)
    assert lines[-1] == f"  usage: {total_in} in, {sum(u['output_tokens'] for u in usages)} out over 3 requests"
    assert view.to_html().count("<tr>") == 1 + 3


# -- signals ---------------------------------------------------------------------------------------


def test_signals_view_marks_decisions_queued_and_interrupting_runs() -> None:
    agent = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/tmp/x"}}, "Wiped.",
                                  "Handled the alert."]), tools=[wipe])
    session = agent.session()
    view = SignalsView(session, live=False)
    paused = session.run_sync("Clean up")
    assert paused.status == "needs_approval"
    session.receive_sync(RuntimeSignal(source="timer", type="tick", urgency="low", summary="tick"))
    session.receive_sync(RuntimeSignal(source="pager", type="alert", urgency="normal",
                                       summary="disk full"))
    # The paused run holds the queue: the normal signal waits.
    assert view.updates == 3  # the run's end and each decision, even with live updates off
    text = view.to_text()
    assert text.splitlines() == [
        "Signals · 2 received · 1 queued",
        '  1. timer/tick [low] "tick" → observe: urgency low · kept for the next run',
        '  2. pager/alert [normal] "disk full" → queue: urgency normal · queued',
        '  waiting to run: pager/alert [normal] "disk full"',
    ], text
    view.close()
    waiting_result(session).approve().resume_sync()
    session.wait_idle(5)
    final = SignalsView(session, live=False).to_text().splitlines()
    assert final[0] == "Signals · 2 received · 0 queued"
    assert final[2].endswith("· ran as run 2 (completed)")
    assert "queue" in SignalsView(session, live=False).to_html()


def test_signals_view_marks_an_interrupted_run() -> None:
    async def slow(request: ModelRequest) -> AsyncIterator[str]:
        if any("[Interrupting signal]" in m.text for m in request.messages):
            yield "Saw the alert."
            return
        yield "working "
        await asyncio.sleep(0.3)
        yield "done"

    session = Agent(Model.function(slow)).session()
    run = session.start("long job")
    time.sleep(0.1)
    session.receive_sync(RuntimeSignal(source="pager", type="alert", urgency="high", summary="fire"))
    running = SignalsView(session, live=False).to_text()
    assert "→ interrupt:" in running and "· interrupting run 1" in running
    run.result(5)
    assert "· interrupted run 1 (completed)" in SignalsView(session, live=False).to_text()


# -- approvals -------------------------------------------------------------------------------------


def test_approve_button_resumes_the_paused_run_in_the_background() -> None:
    session = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/data"}}, "Wiped it."]),
                    tools=[wipe]).session()
    paused = session.run_sync("Clean /data")
    view = ApprovalsView(paused, live=False)
    assert view.to_text().splitlines() == [
        "Approvals · 1 decision · 1 waiting",
        "  wipe(path=\"/data\") → ask: Tool 'wipe' requires approval. [requires_approval]",
        "  waiting for a decision:",
        "    wipe(path=\"/data\"): Tool 'wipe' requires approval.",
    ]
    [approve] = buttons(view.widget, "Approve")
    assert len(buttons(view.widget, "Reject")) == 1
    approve.click()  # what a click in the frontend does; it must not block
    assert view.future is not None
    result = view.future.result(5)
    assert (result.status, result.output) == ("completed", "Wiped it.")
    assert result.tool_calls[0].content == "wiped /data"
    assert view.result is result and not buttons(view.widget, "Approve")
    lines = view.to_text().splitlines()
    assert lines[0] == "Approvals · 2 decisions · 0 waiting"
    assert "→ allow: approved by a person [approval]" in lines[2]
    # Where the person clicked: the note, then the resumed run's card with its answer.
    assert "  Resumed. The run completed." in lines and lines[-1] == "Wiped it."
    assert session.waiting == []


def test_reject_button_sends_the_reason_to_the_model() -> None:
    model = Model.scripted([{"tool": "wipe", "args": {"path": "/"}}, "Understood, not wiping."])
    session = Agent(model, tools=[wipe]).session()
    session.run_sync("Wipe everything")
    view = ApprovalsView(session, live=False)
    view._reason.value = "far too risky"
    buttons(view.widget, "Reject")[0].click()
    result = view.future.result(5)
    assert result.output == "Understood, not wiping."
    assert result.tool_calls[0].is_error
    assert "far too risky" in model.requests[-1].messages[-1].parts[0].content
    assert "→ deny: rejected by a person: far too risky" in view.to_text()


def test_two_waiting_calls_resume_once_both_are_decided() -> None:
    model = Model.scripted([[{"tool": "wipe", "args": {"path": "/a"}},
                             {"tool": "wipe", "args": {"path": "/b"}}], "Half done."])
    session = Agent(model, tools=[wipe]).session()
    session.run_sync("Wipe a and b")
    view = ApprovalsView(session, live=False)
    first_approve = buttons(view.widget, "Approve")[0]
    assert len(buttons(view.widget, "Approve")) == 2
    first_approve.click()
    assert view.future is None and "1 more call to decide." in view.to_text()
    assert len(buttons(view.widget, "Reject")) == 1  # only the undecided call is left
    buttons(view.widget, "Reject")[0].click()
    result = view.future.result(5)
    assert [c.is_error for c in result.tool_calls] == [False, True]


# -- traces and ratings ----------------------------------------------------------------------------


def test_trace_view_nests_sub_runs_and_shows_verdicts() -> None:
    sub = Agent(Model.scripted(["The answer is 42."]), "You look facts up.", name="researcher")
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "researcher",
                                                                 "task": "Find the answer."}},
                                 "The researcher says 42."]),
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"researcher": sub}),
                                     quality=QualityGate.check(lambda out: "42" in out)))
    result = lead.session().run_sync("What is the answer?")
    lines = TraceView(result, live=False).to_text().splitlines()
    assert lines[0] == "Trace · completed"
    start = next(i for i, line in enumerate(lines) if "delegated to researcher" in line)
    assert lines[start] == "  delegated to researcher: Find the answer."
    nested = lines[start + 1: start + 5]
    assert nested[0] == '      run started: "Find the answer."'
    assert all(line.startswith("      ") for line in nested)
    assert nested[-1] == "      run finished: completed, 1 turn, 13 in, 5 out"
    assert lines[start + 5] == "  researcher finished: completed"
    assert any("response, turn 1 (end_turn" in line and "The answer is 42." in line for line in nested)
    assert "  researcher finished: completed" in lines
    assert any(line.startswith("  quality PASS (attempt 1, ") for line in lines)
    html = TraceView(result, live=False).to_html()
    assert "margin-left:22px" in html and "#1a7f37" in html


def test_rating_buttons_write_feedback() -> None:
    session = Agent(Model.scripted(["one", "two"])).session()
    first = session.run_sync("first")
    session.run_sync("second")
    view = TraceView(session, live=False)
    assert view.selected_run() == session.runs[-1].run_id  # the latest by default
    view._pick.value = first.run_id
    assert view.to_text().startswith("Trace · run 1 of 2 · completed")
    view._comment.value = "short but right"
    buttons(view.widget, "4")[0].click()
    [record] = session.feedback_records
    assert (record.run_id, record.kind, record.data) == (
        first.run_id, "rating", {"score": 4.0, "comment": "short but right"})
    assert view._comment.value == ""
    assert view.to_text().splitlines()[-1] == '  ratings: 4 "short but right"'
    assert [b.button_style for b in view._scores] == ["", "", "", "info", ""]


def test_a_second_rating_click_replaces_the_first_and_stays_pressed() -> None:
    session = Agent(Model.scripted(["one", "two"])).session()
    first = session.run_sync("first")
    second = session.run_sync("second")
    view = TraceView(session, live=False)
    buttons(view.widget, "4")[0].click()
    buttons(view.widget, "2")[0].click()
    assert view.to_text().splitlines()[-1] == "  ratings: 2"
    assert "Rated 2 of 5 (was 4)." in view._status.value
    assert [b.button_style for b in view._scores] == ["", "info", "", "", ""]
    summary = session.feedback_summary()
    assert (summary["ratings"], summary["mean_rating"]) == (1, 2.0)
    assert len(session.feedback_records) == 2  # the log keeps both; the newest counts
    view._pick.value = first.run_id  # another run: its own (no) rating, nothing pressed
    assert [b.button_style for b in view._scores] == [""] * 5
    assert view.to_text().splitlines()[-1] == "  ratings: none"
    view._pick.value = second.run_id
    assert view._scores[1].button_style == "info"


# -- live updates, static forms, provenance --------------------------------------------------------


async def _words(request: ModelRequest) -> AsyncIterator[str]:
    for word in "one two three four five six seven eight nine ten".split():
        await asyncio.sleep(0.03)
        yield word + " "


def test_the_panel_and_the_live_display_spell_a_streamed_tool_call_alike() -> None:
    from loom_nb.events import RunEvent
    from loom_nb.notebook.live import LiveDisplay

    session = Agent(Model.scripted([])).session()
    panel = SessionPanel(session)
    shown = LiveDisplay("p", agent="a", model="m", live=False)
    fragments = ['{"ci', 'ty": ', '"Paris"}']
    for seq, fragment in enumerate(fragments):
        event = RunEvent(type="model.delta", run_id="run_1", session_id=session.id, seq=seq,
                         data={"tool_call_id": "c1", "name": "lookup", "args_delta": fragment})
        panel._observe(event)
        shown.on_event(event)
    spelled = '→ lookup({"city": "Paris"}'
    assert panel._live_text["run_1"].text == spelled  # one call line, not one per fragment
    assert shown._live.text == spelled


def test_live_redraws_are_throttled() -> None:
    session = Agent(Model.function(_words)).session()
    panel = SessionPanel(session, live=True, interval=0.1)
    deltas: list[Any] = []
    session.subscribe(lambda e: deltas.append(e) if e.type == "model.delta" else None)
    before = panel.updates
    result = session.run_sync("count")
    redraws = panel.updates - before
    assert len(deltas) == 10
    assert 2 <= redraws <= 6, redraws  # far fewer than deltas, but it did move
    assert "one two three four five six seven eight nine ten" in panel._transcript.value
    assert panel.to_text().splitlines()[1] == "▶ run 1 (completed): count"
    assert result.status == "completed"


def test_no_live_redraws_without_a_frontend_but_the_final_state_is_drawn() -> None:
    session = Agent(Model.function(_words)).session()
    views = [SessionPanel(session), ContextView(session), TraceView(session)]  # no kernel here
    assert not any(v.live for v in views)
    session.run_sync("count")
    assert [v.updates for v in views] == [1, 1, 1]  # run.finished only
    assert "nine ten" in views[0]._transcript.value
    assert "request 1 of 1" in views[1]._html.value
    assert "run finished: completed" in views[2]._html.value


def test_mimebundle_has_widget_static_forms_and_provenance() -> None:
    session = Agent(Model.scripted(["hi"])).session()
    result = session.run_sync("hello")
    for view in (ContextView(result), BudgetView(result), SignalsView(result),
                 ApprovalsView(result), TraceView(result)):
        data, metadata = view._repr_mimebundle_()
        assert data["text/plain"] == view.to_text()
        assert data["text/html"].startswith("<div class='loom-view")
        assert data[WIDGET_MIME]["model_id"] == view.widget.model_id
        assert metadata == {"loom": result.provenance()}
    data, metadata = SessionPanel(session)._repr_mimebundle_()
    assert metadata["loom"]["session_id"] == session.id and metadata["loom"]["runs"] == 1
    assert data["text/plain"].splitlines() == ["Session panel · 1 run", "▶ run 1 (completed): hello",
                                               "  hi"]


def test_panel_send_and_stop() -> None:
    async def slow(request: ModelRequest) -> AsyncIterator[str]:
        yield "start "
        await asyncio.sleep(30)
        yield "never"

    session = Agent(Model.function(slow)).session()
    panel = SessionPanel(session, live=False)
    panel.send_button.click()
    assert "Write a prompt in the box first." in panel._status.value
    panel.prompt.value = "take your time"
    panel.send_button.click()
    assert panel.run is not None and panel.send_button.disabled and not panel.stop_button.disabled
    assert panel.prompt.value == ""
    time.sleep(0.1)
    panel.stop_button.click()
    result = panel.future.result(5)
    assert result.status == "cancelled"
    assert not panel.send_button.disabled and panel.stop_button.disabled
    assert "The run was cancelled." in panel._status.value
    # What streamed before Stop stays on screen, marked as cut, and is the result's output.
    assert result.output == "start "
    panel.refresh()
    assert "<p" in panel._transcript.value and ">start</p>" in panel._transcript.value
    assert "✂ cut off here" in panel._transcript.value
    assert session.runs[-1].status == "cancelled"


def test_panel_switches_to_approvals_when_a_run_pauses() -> None:
    session = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "ok"]),
                    tools=[wipe]).session()
    panel = SessionPanel(session, live=False)
    panel.send("wipe /x")
    assert panel.future.result(5).status == "needs_approval"
    assert panel.tabs.selected_index == 3
    approvals = panel.views["approvals"]
    assert approvals.updates >= 1 and buttons(panel.widget, "Approve")
    buttons(panel.widget, "Approve")[0].click()
    assert approvals.future.result(5).status == "completed"


def test_a_view_needs_a_run_or_a_session() -> None:
    with pytest.raises(Exception, match="takes a RunResult or a Session"):
        ContextView("not a run")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="has no run 'run_nope'"):
        TraceView(Agent(Model.scripted([])).session(), run_id="run_nope")
