"""The live display of a run with many zero-latency tool calls (issue 25): throttled redraws
whose size does not grow with the run, and a final render that is exact and lists every step."""

from __future__ import annotations

import time
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from loom_nb import Agent, Model, RunResult, tool
from loom_nb.display.run import LIVE_STEPS, LiveCard
from loom_nb.events import RunEvent
from loom_nb.notebook.live import UPDATE_INTERVAL

CALLS = 200


@tool
async def bump(n: int) -> str:
    """Bump a counter."""
    return f"bumped {n}"


def test_two_hundred_tool_calls_publish_a_throttled_bounded_display(
        ip: InteractiveShell, live: None) -> None:
    # Ten calls a turn: 21 turns stay under the default turn limit.
    turns: list[object] = [[{"tool": "bump", "args": {"n": i + j}} for j in range(10)]
                           for i in range(0, CALLS, 10)] + ["All done."]
    ip.user_ns["agent"] = Agent(Model.scripted(turns), tools=[bump])
    start = time.monotonic()
    with capture_output() as captured:  # IPython's own capturing display publisher
        ip.run_line_magic("loom", "run -a agent -o r bump it")
    elapsed = time.monotonic() - start
    result: RunResult = ip.user_ns["r"]
    assert result.status == "completed" and len(result.tool_calls) == CALLS
    first, *updates = captured.outputs
    assert not first.update and all(u.update for u in updates)
    live_updates, final = updates[:-1], updates[-1]
    # Before: one redraw per tool step (401 messages). Now at most one per interval however
    # fast the steps come (the bound is from the measured run time, not a timing assertion).
    assert len(live_updates) <= elapsed / UPDATE_INTERVAL + 1
    assert len(live_updates) < CALLS // 4
    # Each live update shows the latest steps and counts the rest: its size is bounded.
    for update in live_updates:
        text = update.data["text/plain"]
        assert text.startswith("Run running")
        assert sum(line.startswith(("→", "  ←")) for line in text.splitlines()) <= LIVE_STEPS
        assert len(update.data["text/html"]) < 6_000
    # The final redraw is always exact: the result's own render, with all 200 calls in it.
    data, metadata = result._repr_mimebundle_()
    assert final.data == data and final.metadata == metadata
    assert all(f"bump(n={i})" in data["text/plain"] for i in range(CALLS))


def _event(seq: int, kind: str, data: dict[str, object]) -> RunEvent:
    return RunEvent(type=kind, run_id="r", session_id="s", seq=seq, data=data)


def test_the_live_card_folds_earlier_steps_into_a_count() -> None:
    card = LiveCard("go", agent="a", model="m")
    card.add(_event(0, "run.started", {"prompt": "go"}))
    assert card.bundle("").get("text/plain") == "Run running · turn 1 · 0 tool calls · a · m\ngo"
    seq = 1
    for i in range(30):
        card.add(_event(seq, "model.request", {}))
        card.add(_event(seq + 1, "tool.call", {"name": "bump", "args": {"n": i}, "call_id": f"c{i}"}))
        card.add(_event(seq + 2, "tool.result", {"content": f"bumped {i}", "is_error": False,
                                                 "call_id": f"c{i}", "name": "bump"}))
        seq += 3
    text = card.bundle("half an answ").get("text/plain", "")
    lines = text.splitlines()
    assert lines[0] == "Run running · turn 30 · 30 tool calls · a · m"
    assert lines[1] == f"… {60 - LIVE_STEPS} earlier steps (all of them in the final render)"
    assert lines[-3:] == ["→ bump(n=29)", "  ← bumped 29", "half an answ"]
    assert card.hidden == 60 - LIVE_STEPS
    html = card.bundle("").get("text/html", "")
    assert f"{60 - LIVE_STEPS} earlier steps" in html and "bump(n=21)" not in html


def test_the_live_card_shows_an_mcp_calls_latest_progress_in_place() -> None:
    from loom_nb.events import make_event

    card = LiveCard("Research", agent="agent", model="scripted")

    def event(type: str, data: dict, seq: int) -> RunEvent:
        return make_event(type, "run_1", "ses_1", seq, data, None)  # type: ignore[arg-type]

    card.add(event("tool.call", {"call_id": "c1", "name": "everything__research", "args": {}}, 1))
    for n in (1, 2, 3):
        card.add(event("mcp.progress", {"server": "everything", "tool": "research",
                                        "progress": n, "total": 5, "message": None}, 1 + n))
    text = card.bundle("")["text/plain"]
    assert "⏳ research: 3 of 5" in text and "1 of 5" not in text and "2 of 5" not in text
    assert "3 of 5" in card.bundle("")["text/html"]


def test_the_session_panel_redraws_a_few_times_and_draws_a_finished_run_once(
        monkeypatch: Any) -> None:
    from loom_nb.display import run as display_run
    from loom_nb.notebook import SessionPanel
    from loom_nb.notebook import panel as panel_module

    turns: list[object] = [[{"tool": "bump", "args": {"n": i + j}} for j in range(10)]
                           for i in range(0, CALLS, 10)] + ["All done.", "Second."]
    session = Agent(Model.scripted(turns), tools=[bump]).session()
    panel = SessionPanel(session, live=True, interval=0.05)
    drawn: list[int] = []

    def counting(events: list[RunEvent], live: str = "") -> str:
        drawn.append(len(events))
        return display_run.panel_run_html(events, live)

    monkeypatch.setattr(panel_module, "panel_run_html", counting)
    start = time.monotonic()
    first = session.run_sync("bump it")
    elapsed = time.monotonic() - start
    assert first.status == "completed" and len(first.tool_calls) == CALLS
    # Before: a redraw at once for each of the 400 tool steps, each the whole transcript.
    assert panel.updates <= elapsed / 0.05 + 3 and panel.updates < CALLS // 4, panel.updates
    assert "All done." in panel._transcript.value
    drawn.clear()
    session.run_sync("again")
    # The first run, finished, is not drawn again while the second goes on and ends.
    assert all(n < 10 for n in drawn), drawn
    assert "Second." in panel._transcript.value and "All done." in panel._transcript.value
