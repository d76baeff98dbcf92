"""An approval binds to the call the person saw, and governance is asked again at resume.

Approving a call means: this id, this tool, these arguments. A stored paused turn that says
otherwise (edited, damaged, written by an older version) runs nothing and raises
ApprovalMismatchError. When the run resumes, each approved call is decided again: the approval
satisfies an ``ask``, a ``deny`` added while the run was paused wins, and a rate limit counts
approved calls like any other.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loom_nb import Agent, ApprovalMismatchError, ConfigError, Model, SessionConfig, tool
from loom_nb._bridge import run_sync
from loom_nb.result import PendingApproval, RunResult
from loom_nb.runtime import GovernanceDecision, GovernancePolicy, Runtime, ToolRequest
from loom_nb.store import SQLiteStore

SENT: list[str] = []


@tool(requires_approval=True)
def send_email(to: str) -> str:
    """Send an email."""
    SENT.append(to)
    return f"sent to {to}"


@tool
def send_sms(to: str) -> str:
    """Send a text message."""
    SENT.append(f"sms {to}")
    return f"texted {to}"


def _mail(to: str = "ana@example.org", call_id: str = "c1") -> dict[str, Any]:
    return {"tool": "send_email", "id": call_id, "args": {"to": to}}


def _paused(tmp_path: Path, policy: GovernancePolicy | None = None,
            turn: Any = None) -> tuple[RunResult, SQLiteStore]:
    SENT.clear()
    store = SQLiteStore(tmp_path / "s.sqlite")
    model = Model.scripted([turn or _mail(), "Done."])
    agent = Agent(model, tools=[send_email, send_sms],
                  runtime=Runtime.sdk(governance=policy or GovernancePolicy()))
    paused = agent.session(SessionConfig(id="mail", store=store)).run_sync("Email Ana")
    assert paused.status == "needs_approval", paused.error
    return paused, store


def _tamper(store: SQLiteStore, run_id: str, edit: Any) -> None:
    record = store.get_run(run_id)
    assert record is not None and record.state is not None
    edit(record.state)
    store.save_run(record)


def _still_waiting(store: SQLiteStore, paused: RunResult) -> None:
    assert SENT == []
    record = store.get_run(paused.run_id)
    assert record is not None and record.status == "needs_approval" and record.state


# -- binding ---------------------------------------------------------------------------------------


def test_a_stored_turn_that_holds_another_call_under_the_approved_id_runs_nothing(
        tmp_path: Path) -> None:
    paused, store = _paused(tmp_path)

    def other_recipient(state: dict[str, Any]) -> None:
        state["message"]["parts"][0]["args"] = {"to": "eve@example.org"}

    _tamper(store, paused.run_id, other_recipient)
    with pytest.raises(ApprovalMismatchError, match="does not hold together.*eve@example.org"):
        run_sync(paused.session.resume(paused.run_id, {"c1": None}))  # type: ignore[union-attr]
    _still_waiting(store, paused)


def test_a_consistently_edited_store_still_cannot_run_what_the_person_did_not_see(
        tmp_path: Path) -> None:
    paused, store = _paused(tmp_path)

    def both(state: dict[str, Any]) -> None:
        state["message"]["parts"][0]["args"] = {"to": "eve@example.org"}
        state["pending"][0]["args"] = {"to": "eve@example.org"}

    _tamper(store, paused.run_id, both)
    with pytest.raises(ApprovalMismatchError, match="you approved was send_email.*ana@example"):
        paused.approve().resume_sync()
    _still_waiting(store, paused)


def test_a_stored_turn_with_two_calls_under_one_id_is_refused(tmp_path: Path) -> None:
    paused, store = _paused(tmp_path)

    def twin(state: dict[str, Any]) -> None:  # what an older version stored for a colliding id
        part = dict(state["message"]["parts"][0], name="send_sms")
        state["message"]["parts"].append(part)

    _tamper(store, paused.run_id, twin)
    with pytest.raises(ApprovalMismatchError, match="two tool calls share the id 'c1'"):
        paused.approve().resume_sync()
    _still_waiting(store, paused)


def test_approve_takes_the_pending_objects_and_checks_them(tmp_path: Path) -> None:
    paused, store = _paused(tmp_path)
    [shown] = paused.pending
    forged = PendingApproval(call_id="c1", name="send_email", args={"to": "eve@example.org"},
                             reason="")
    with pytest.raises(ApprovalMismatchError, match="is send_email.*not send_email.*eve"):
        paused.approve(forged)
    with pytest.raises(ConfigError, match="not waiting"):
        paused.approve(PendingApproval(call_id="c9", name="send_email", args={}, reason=""))
    done = paused.approve(shown).resume_sync()
    assert done.status == "completed" and SENT == ["ana@example.org"]


# -- governance again at resume --------------------------------------------------------------------


def _denied_after_approval(done: RunResult, check: str) -> None:
    assert done.status == "completed", done.error
    assert SENT == []
    last = [e.data for e in done.events if e.type == "governance.decision"][-1]
    assert (last["action"], last["check"]) == ("deny", check)
    result = done.tool_calls[-1]
    assert result.is_error and result.content is not None
    assert result.content.startswith("Not run: a person approved this call, but it was denied by "
                                     "the governance policy after approval")


def test_a_deny_rule_added_while_paused_wins_over_the_approval(tmp_path: Path) -> None:
    policy = GovernancePolicy()
    paused, _ = _paused(tmp_path, policy)
    policy.deny = ["send_*"]
    _denied_after_approval(paused.approve().resume_sync(), "deny_list")


def test_a_veto_appended_while_paused_wins_over_the_approval(tmp_path: Path) -> None:
    vetoes: list[Any] = []
    paused, _ = _paused(tmp_path, GovernancePolicy(vetoes=vetoes))
    vetoes.append(lambda r: "no mail to ana" if "ana" in r.args.get("to", "") else None)
    done = paused.approve().resume_sync()
    _denied_after_approval(done, "veto")
    assert done.tool_calls[-1].content.endswith("no mail to ana")  # type: ignore[union-attr]


def test_a_new_session_with_a_stricter_policy_denies_the_restored_approval(tmp_path: Path) -> None:
    paused, _ = _paused(tmp_path)
    strict = Agent(Model.scripted(["Could not send."]), tools=[send_email, send_sms],
                   runtime=Runtime.sdk(governance=GovernancePolicy(destructive="deny",
                                                                   allow=["send_sms"])))
    session = strict.session(SessionConfig(id="mail", store=SQLiteStore(tmp_path / "s.sqlite")))
    (waiting,) = session.waiting  # a new Session object: RunLoop.restore from the store
    assert waiting.run_id == paused.run_id
    _denied_after_approval(waiting.approve().resume_sync(), "allow_list")


def test_a_tool_gone_from_the_restored_agent_is_not_run(tmp_path: Path) -> None:
    paused, _ = _paused(tmp_path)
    other = Agent(Model.scripted(["ok"]), tools=[send_sms])
    session = other.session(SessionConfig(id="mail", store=SQLiteStore(tmp_path / "s.sqlite")))
    done = session.waiting[0].approve().resume_sync()
    assert done.status == "completed" and SENT == []
    assert "There is no tool named 'send_email'" in (done.tool_calls[-1].content or "")


def test_three_approved_calls_under_one_per_minute_run_once(tmp_path: Path) -> None:
    turn = [_mail("a", "c1"), _mail("b", "c2"), _mail("c", "c3")]
    paused, _ = _paused(tmp_path, GovernancePolicy(rate_limits={"send_*": "1/min"}), turn)
    assert len(paused.pending) == 3
    done = paused.approve().resume_sync()
    assert done.status == "completed", done.error
    assert SENT == ["a"]
    contents = [c.content or "" for c in done.tool_calls]
    assert contents[0] == "sent to a"
    assert all("Rate limit reached for 'send_email'" in c for c in contents[1:])


def test_an_approved_call_counts_against_the_next_runs_rate_limit(tmp_path: Path) -> None:
    policy = GovernancePolicy(rate_limit="1/min")
    paused, _ = _paused(tmp_path, policy)
    assert paused.approve().resume_sync().status == "completed" and SENT == ["ana@example.org"]
    request = ToolRequest(name="send_sms", args={"to": "x"}, call_id="c", tool=send_sms,
                          run_id="r", session_id="s", agent="a")
    decision = policy.decide(request)  # the approved call filled the window
    assert (decision.action, decision.check) == ("deny", "rate_limit")


def test_threads_sharing_a_policy_never_take_more_than_the_limit() -> None:
    # A clock that lets other threads in, as any real switch between checking a window and
    # counting the call would: six threads at a barrier, one call per minute allowed.
    def yielding_clock() -> float:
        time.sleep(0)
        return time.monotonic()

    def request() -> ToolRequest:
        return ToolRequest(name="send_sms", args={"to": "x"}, call_id="c", tool=send_sms,
                           run_id="r", session_id="s", agent="a")

    over = 0
    for _ in range(200):
        policy = GovernancePolicy(rate_limit="1/min", clock=yielding_clock)
        barrier = threading.Barrier(6)
        actions: list[str] = []

        def decide() -> None:
            barrier.wait()
            actions.append(policy.decide(request()).action)

        threads = [threading.Thread(target=decide) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        over += actions.count("allow") != 1
    assert over == 0, f"{over} of 200 trials allowed more (or less) than one call"


def test_an_asking_veto_is_satisfied_but_the_rate_limit_behind_it_still_counts(
        tmp_path: Path) -> None:
    def ask_always(request: ToolRequest) -> GovernanceDecision:
        return GovernanceDecision.ask("a person looks at every message")

    turn = [{"tool": "send_sms", "id": "s1", "args": {"to": "a"}},
            {"tool": "send_sms", "id": "s2", "args": {"to": "b"}}]
    policy = GovernancePolicy(vetoes=[ask_always], rate_limits={"send_sms": "1/min"})
    paused, _ = _paused(tmp_path, policy, turn)
    assert [p.reason for p in paused.pending] == ["a person looks at every message"] * 2
    done = paused.approve().resume_sync()
    assert done.status == "completed", done.error
    assert SENT == ["sms a"]  # ran once, and did not ask again
    assert "Rate limit reached" in (done.tool_calls[-1].content or "")


def test_approved_is_seen_by_vetoes_and_destructive_deny_still_wins() -> None:
    @tool(destructive=True)
    def wipe() -> str:
        """Wipe."""
        return "wiped"

    def request(approved: bool) -> ToolRequest:
        return ToolRequest(name="wipe", args={}, call_id="c", tool=wipe, run_id="r",
                           session_id="s", agent="a", approved=approved)

    assert GovernancePolicy().decide(request(False)).action == "ask"
    assert (GovernancePolicy().decide(request(True)).action,
            GovernancePolicy().decide(request(True)).check) == ("allow", "approval")
    assert GovernancePolicy(destructive="deny").decide(request(True)).action == "deny"


# -- a sub-agent's call, approved where the caller waits -------------------------------------------

WIPED: list[str] = []


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    WIPED.append(path)
    return f"wiped {path}"


def _team(tmp_path: Path, sub_policy: GovernancePolicy) -> tuple[RunResult, SQLiteStore]:
    from loom_nb.runtime import DelegationPolicy

    WIPED.clear()
    sub = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "Cleaner done."]),
                tools=[wipe], name="cleaner", runtime=Runtime.sdk(governance=sub_policy))
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "cleaner", "task": "wipe"}},
                                 "Lead done."]),
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"cleaner": sub})))
    store = SQLiteStore(tmp_path / "team.sqlite")
    paused = lead.session(SessionConfig(id="team", store=store)).run_sync("Clean up.")
    assert paused.status == "needs_approval" and paused.pending[0].via == "call_1"
    return paused, store


def test_a_sub_agents_deny_rule_added_while_paused_wins(tmp_path: Path) -> None:
    sub_policy = GovernancePolicy()
    paused, _ = _team(tmp_path, sub_policy)
    sub_policy.deny = ["wipe"]
    done = paused.approve().resume_sync()
    assert (done.status, WIPED) == ("completed", [])
    sub_session = next(e.data["session_id"] for e in done.events if e.type == "delegation.started")
    [result] = [e.data["content"] for e in done.session.store.events(session_id=sub_session)
                if e.type == "tool.result"]
    assert "denied by the governance policy after approval" in result


def test_a_sub_run_edited_in_the_store_does_not_run_what_the_caller_showed(tmp_path: Path) -> None:
    paused, store = _team(tmp_path, GovernancePolicy())
    sub_run = next(e.data["run_id"] for e in paused.events if e.type == "delegation.started")

    def elsewhere(state: dict[str, Any]) -> None:
        state["message"]["parts"][0]["args"] = {"path": "/home"}
        state["pending"][0]["args"] = {"path": "/home"}

    _tamper(store, sub_run, elsewhere)
    done = paused.approve().resume_sync()
    assert WIPED == []
    delegate = next(c for c in done.tool_calls if c.name == "delegate")
    assert delegate.is_error and "you approved was wipe({'path': '/x'})" in (delegate.content or "")
    record = store.get_run(sub_run)
    assert record is not None and record.status == "needs_approval"  # nothing of it ran
