"""Signals and attention: each decision and its effect, during runs, in bursts, from timers."""

from __future__ import annotations

import asyncio
import queue
import threading
from datetime import datetime, timezone

import pytest

from loom_nb import (Agent, ConfigError, Model, ModelRequest, RuntimeSignal, SessionConfig,
                     SignalAdapter, tool)
from loom_nb.runtime import AttentionPolicy, AttentionRule, AttentionState, Runtime
from loom_nb.sources import Cron
from tests.backends import Backend


def sig(summary: str, urgency: str = "normal", source: str = "app", **kw) -> RuntimeSignal:
    return RuntimeSignal(source=source, type="event", summary=summary, urgency=urgency, **kw)  # type: ignore[arg-type]


def echo_model() -> Model:
    """Answers each request with the last user message it saw; calls `step` when asked to."""

    def answer(request: ModelRequest) -> object:
        last = request.messages[-1]
        if last.role == "user" and last.text.startswith("work"):
            return {"tool": "step", "args": {}}
        return f"seen: {last.text if last.role == 'user' else 'tool result'}"

    return Model.function(answer)


class Gate:
    """A tool that blocks inside a run until the test opens it: a run the test can act during."""

    def __init__(self) -> None:
        self.entered, self.opened = threading.Event(), threading.Event()

        @tool
        def step() -> str:
            """One step of work."""
            self.entered.set()
            assert self.opened.wait(10)
            return "step done"

        self.tool = step


def session_with(policy: AttentionPolicy | None = None, gate: Gate | None = None):
    gate = gate or Gate()
    agent = Agent(echo_model(), tools=[gate.tool], runtime=Runtime.sdk(attention=policy))
    return agent.session(), gate


def test_observe_puts_the_signal_into_the_next_runs_working_partition() -> None:
    session, _ = session_with()
    decision = session.receive_sync(sig("disk at 85%", urgency="low"))
    assert (decision.action, decision.reason) == ("observe", "urgency low")
    assert session.runs == []  # nothing started
    result = session.run_sync("status?")
    request = session.agent.model.requests[0]
    assert "Signals observed since the last run" in request.system and "disk at 85%" in request.system
    assert result.events[0].data["observed_signals"][0]["summary"] == "disk at 85%"
    session.run_sync("again?")
    assert "disk at 85%" not in session.agent.model.requests[1].system  # shown once


def test_queue_starts_a_run_when_idle() -> None:
    session, _ = session_with()
    decision = session.receive_sync(sig("new ticket #42", payload={"id": 42}))
    assert decision.action == "queue"
    session.wait_idle(10)
    (record,) = session.runs
    assert record.prompt.startswith("Handle this signal from app (event, urgency normal): new ticket #42")
    events = session.events(record.run_id)
    assert events[0].data["signal"]["summary"] == "new ticket #42"
    assert "signal_payload" in events[0].data["task"]["inputs"]
    assert session.signals[0].run_id == record.run_id  # the decision names the run it started


def test_interrupt_stops_the_active_run_at_a_safe_point_and_continues() -> None:
    session, gate = session_with()
    run = session.start("work on the report")
    assert gate.entered.wait(10)  # the run is inside its tool call
    decision = session.receive_sync(sig("the server is down", urgency="critical"))
    assert decision.action == "interrupt" and decision.reason == "urgency critical: interrupt the active run"
    gate.opened.set()
    result = run.result(10)
    assert result.status == "completed" and result.run_id == session.signals[0].run_id
    types = [e.type for e in result.events]
    assert types.index("run.interrupted") == types.index("tool.result") + 1  # after the tool result
    interrupted = next(e.data for e in result.events if e.type == "run.interrupted")
    assert interrupted["reason"] == "signal" and interrupted["signal"]["summary"] == "the server is down"
    # the same run continued with the signal in its context
    assert result.output.startswith("seen: [Interrupting signal] app / event (urgency critical): the server is down")
    assert [m.role for m in session.messages] == ["user", "assistant", "tool", "user", "assistant"]
    assert len(session.runs) == 1


def test_interrupt_skips_the_rest_of_a_turns_tool_calls() -> None:
    gate = Gate()

    @tool
    def later() -> str:
        """Never reached."""
        raise AssertionError("must not run")

    model = Model.scripted([[{"tool": "step", "args": {}}, {"tool": "later", "args": {}}], "handled"])
    # One call after the other: parallel calls all start before a signal could come between them.
    session = Agent(model, tools=[gate.tool, later], runtime=Runtime(parallel_tools=False)).session()
    run = session.start("go")
    assert gate.entered.wait(10)
    session.receive_sync(sig("stop that", urgency="high"))
    gate.opened.set()
    result = run.result(10)
    assert [(c.name, c.is_error) for c in result.tool_calls] == [("step", False), ("later", True)]
    assert result.tool_calls[1].content.startswith("Not run: a signal interrupted the run")


def test_interrupt_when_idle_runs_now_ahead_of_the_queue() -> None:
    session, gate = session_with()
    run = session.start("work")
    assert gate.entered.wait(10)
    policy_decisions = [session.receive_sync(sig(f"normal {i}")) for i in range(2)]
    assert [d.action for d in policy_decisions] == ["queue", "queue"]
    gate.opened.set()
    run.result(10)
    session.wait_idle(10)
    # now idle: a high signal runs right away (before anything queued later)
    assert session.receive_sync(sig("urgent", urgency="high")).reason == "urgency high: idle, run now"
    session.wait_idle(10)
    prompts = [r.prompt.split(": ", 1)[1] for r in session.runs[1:]]
    assert prompts == ["normal 0", "normal 1", "urgent"]


def test_queued_signals_wait_behind_a_run_in_urgency_then_arrival_order() -> None:
    policy = AttentionPolicy(rules=[AttentionRule(source="jobs", action="queue")])
    session, gate = session_with(policy)
    run = session.start("work")
    assert gate.entered.wait(10)
    for summary, urgency in [("a-low", "low"), ("b-normal", "normal"), ("c-critical", "critical"),
                             ("d-normal", "normal"), ("e-high", "high")]:
        assert session.receive_sync(sig(summary, urgency, source="jobs")).action == "queue"
    assert [s.summary for s in session.inbox.queued] == ["c-critical", "e-high", "b-normal", "d-normal", "a-low"]
    assert len(session.runs) == 1  # nothing starts while the run goes on
    gate.opened.set()
    run.result(10)
    session.wait_idle(10)
    handled = [r.prompt.rsplit(": ", 1)[1] for r in session.runs[1:]]
    assert handled == ["c-critical", "e-high", "b-normal", "d-normal", "a-low"]
    assert all(r.status == "completed" for r in session.runs)


def test_ignore_rules_dedupe_and_the_record_of_decisions() -> None:
    policy = AttentionPolicy(rules=[AttentionRule(source="spam*", action="ignore", reason="noise")])
    session, _ = session_with(policy)
    assert session.receive_sync(sig("buy now", source="spam-bot")).reason == "noise"
    first = session.receive_sync(sig("deploy done", urgency="low", dedupe_key="deploy-7"))
    again = session.receive_sync(sig("deploy done", urgency="low", dedupe_key="deploy-7"))
    assert (first.action, again.action) == ("observe", "ignore")
    assert again.reason == "duplicate: dedupe_key 'deploy-7' was seen before"
    assert [(r.seq, r.action) for r in session.signals] == [(0, "ignore"), (1, "observe"), (2, "ignore")]
    assert len(session.inbox.observed) == 1


def test_a_dedupe_key_counts_in_the_session_that_saw_it() -> None:
    session, _ = session_with(AttentionPolicy())
    other = session.agent.session()  # same agent, same policy object
    delivered = sig("parcel", urgency="low", dedupe_key="delivery-1")
    assert session.receive_sync(delivered).action == "observe"
    assert other.receive_sync(delivered).action == "observe"
    assert session.receive_sync(delivered).action == "ignore"


def test_a_duplicate_of_a_rate_limited_signal_is_ignored() -> None:
    now = [0.0]
    session, _ = session_with(AttentionPolicy(rate_limit="1/min", clock=lambda: now[0]))
    session.receive_sync(sig("job 0"))
    held = sig("job 1", dedupe_key="job-1")
    assert session.receive_sync(held).action == "observe"  # over the limit: kept for later
    assert session.receive_sync(held).action == "ignore"
    session.wait_idle(10)  # job 0 runs in the background


def test_rate_limit_on_signal_runs_keeps_the_extra_signals_as_observations() -> None:
    now = [0.0]
    policy = AttentionPolicy(rate_limit="2/min", clock=lambda: now[0])
    session, gate = session_with(policy)
    run = session.start("work")
    assert gate.entered.wait(10)
    decisions = [session.receive_sync(sig(f"job {i}")) for i in range(3)]
    assert [d.action for d in decisions] == ["queue", "queue", "observe"]
    assert decisions[2].reason.startswith("rate limit: at most 2 signal runs per 60 s")
    now[0] = 61.0
    assert session.receive_sync(sig("job 3")).action == "queue"
    assert [s.summary for s in session.inbox.observed] == ["job 2"]  # kept, not dropped
    gate.opened.set()
    run.result(10)
    session.wait_idle(10)
    started = [r.events[0].data["signal"]["summary"] for r in (session.result(x.run_id)
                                                               for x in session.runs[1:])]
    assert started == ["job 0", "job 1", "job 3"]
    assert any("job 2" in r.system for r in session.agent.model.requests)  # shown to a later run


def test_custom_policy_sees_the_session_state() -> None:
    seen: list[AttentionState] = []

    def only_when_idle(signal: RuntimeSignal, state: AttentionState) -> str | None:
        seen.append(state)
        return "queue" if state.idle else "observe"

    session, gate = session_with(AttentionPolicy(decide=only_when_idle))
    run = session.start("work")
    assert gate.entered.wait(10)
    assert session.receive_sync(sig("while busy", urgency="critical")).action == "observe"
    gate.opened.set()
    run.result(10)
    assert session.receive_sync(sig("when idle")).action == "queue"
    session.wait_idle(10)
    assert seen[0].active_run_id == run.run_id and seen[1].idle
    with pytest.raises(ConfigError, match="return None, one of"):
        AttentionPolicy(decide=lambda s, st: "panic").evaluate(sig("x"), seen[1])


def test_a_signal_during_a_paused_run_waits_for_the_decision() -> None:
    @tool(requires_approval=True)
    def deploy() -> str:
        """Deploy."""
        return "deployed"

    model = Model.scripted([{"tool": "deploy", "args": {}}, "deployed it", "handled the alert"])
    session = Agent(model, tools=[deploy]).session()
    paused = session.run_sync("deploy please")
    assert paused.status == "needs_approval"
    assert session.receive_sync(sig("alert")).action == "queue"
    session.wait_idle(5)
    assert [r.status for r in session.runs] == ["needs_approval"]  # kept, not run, not lost
    paused.approve().resume_sync()
    session.wait_idle(10)
    assert [r.status for r in session.runs] == ["completed", "completed"]
    assert session.runs[1].output == "handled the alert"


def test_cancelled_run_leaves_queued_signals_to_run() -> None:
    session, gate = session_with()
    run = session.start("work")
    assert gate.entered.wait(10)
    session.receive_sync(sig("after the cancel"))
    run.cancel()
    gate.opened.set()
    assert run.result(10).status == "cancelled"
    session.wait_idle(10)
    assert [r.status for r in session.runs] == ["cancelled", "completed"]
    assert session.runs[1].prompt.endswith("after the cancel")


def test_bursts_from_many_threads_are_all_decided_in_order() -> None:
    session, _ = session_with(AttentionPolicy(defaults={u: "observe" for u in ("low", "normal", "high", "critical")}))
    threads = [threading.Thread(target=lambda i=i: [session.receive_sync(sig(f"{i}-{j}")) for j in range(20)])
               for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = session.signals
    assert [r.seq for r in records] == list(range(100))
    assert len(session.inbox.observed) == 100
    for i in range(5):  # each sender's signals keep their order
        mine = [r.signal["summary"] for r in records if r.signal["summary"].startswith(f"{i}-")]
        assert mine == [f"{i}-{j}" for j in range(20)]


def test_adapters_agent_inbox_and_decision_events() -> None:
    agent = Agent(echo_model())
    events = []
    agent.inbox.subscribe(events.append)
    adapter = SignalAdapter(source="github", type=lambda e: e["action"], urgency="low",
                            summary=lambda e: e["title"])
    decision = asyncio.run(agent.receive({"action": "opened", "title": "Fix the bug"}, adapter))
    assert decision.action == "observe" and decision.signal.type == "opened"
    (event,) = [e for e in events if e.type == "signal.decision"]
    assert event.data["signal"]["summary"] == "Fix the bug" and event.data["action"] == "observe"


def test_signals_are_stored_with_the_session(backend: Backend) -> None:
    path = backend.spec
    agent = Agent(echo_model())
    session = agent.session(SessionConfig(id="ops", store=path))
    session.receive_sync(sig("one", urgency="low"))
    session.receive_sync(sig("two"))
    session.wait_idle(10)
    reopened = Agent(echo_model()).session(SessionConfig(id="ops", store=path))
    assert [(r.signal["summary"], r.action) for r in reopened.signals] == [("one", "observe"), ("two", "queue")]


class ManualSleep:
    """An injectable sleep: each call waits until the test releases it, time advancing by its delay."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 10, 7, tzinfo=timezone.utc).timestamp()
        self.delays: list[float] = []
        self._sleeping: queue.Queue = queue.Queue()

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        loop, done = asyncio.get_running_loop(), asyncio.get_running_loop().create_future()
        self._sleeping.put((loop, done, delay))
        await done

    def clock(self) -> float:
        return self.now

    def tick(self) -> None:
        loop, done, delay = self._sleeping.get(timeout=10)
        self.now += delay
        loop.call_soon_threadsafe(done.set_result, None)

    def settled(self) -> None:
        """Wait until the source sleeps again, i.e. has handed its last signal over."""
        item = self._sleeping.get(timeout=10)
        self._sleeping.put(item)


def test_timers_emit_signals_until_stopped() -> None:
    session, _ = session_with()
    fake = ManualSleep()
    handle = session.every(30, urgency="low", summary="poll the queue", sleep=fake.sleep, clock=fake.clock)
    for _ in range(3):
        fake.tick()
        fake.settled()
    assert fake.delays[:3] == [30, 30, 30] and handle.ticks == 3
    assert [r.signal["summary"] for r in session.signals] == ["poll the queue"] * 3
    assert [r.action for r in session.signals] == ["observe"] * 3
    handle.stop()
    session.close()
    assert not handle.running


def test_cron_and_heartbeat_schedules() -> None:
    fake = ManualSleep()  # 2026-11-24 10:07 UTC, a Tuesday
    assert Cron(expr="*/15 * * * *").next_delay(fake.now) == 8 * 60
    assert Cron(expr="0 9 * * mon-fri").next_delay(fake.now) == (22 * 60 + 53) * 60
    with pytest.raises(ConfigError, match="5 fields"):
        Cron(expr="every day")
    with pytest.raises(ConfigError, match="out of range"):
        Cron(expr="61 * * * *")
    session, _ = session_with()
    handle = session.cron("*/15 * * * *", summary="quarter hour", sleep=fake.sleep, clock=fake.clock)
    fake.tick()
    fake.settled()
    (record,) = session.signals
    assert record.signal["source"] == "cron" and record.signal["payload"]["at"] == "2026-11-24T10:15:00+00:00"
    assert record.action == "queue"
    beat = session.heartbeat(60, sleep=fake.sleep, clock=fake.clock)
    session.close()  # stops every source of the session
    assert not handle.running and not beat.running
