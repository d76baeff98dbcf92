"""A sub-agent's call that needs approval pauses the calling run; a person decides it there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from loom_nb import Agent, Model, SessionConfig, tool
from loom_nb.runtime import DelegationPolicy, Runtime
from tests.backends import Backend

RAN: list[str] = []


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    RAN.append(path)
    return f"wiped {path}"


def team(sub_turns: list, main_turns: list | None = None) -> Agent:  # type: ignore[type-arg]
    sub = Agent(Model.scripted(sub_turns), "You clean up.", tools=[wipe], name="cleaner")
    main_turns = main_turns or [{"tool": "delegate", "args": {"agent": "cleaner", "task": "wipe /x"}},
                                "The cleaner is done."]
    return Agent(Model.scripted(main_turns), "You lead.", name="lead",
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"cleaner": sub})))


def test_the_sub_agents_waiting_call_pauses_the_caller_and_runs_once_approved() -> None:
    RAN.clear()
    lead = team([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped /x."])
    paused = lead.run_sync("Clean up.")
    assert paused.status == "needs_approval" and RAN == []
    [pending] = paused.pending
    assert (pending.call_id, pending.name, pending.args, pending.via) == (
        "call_1/call_1", "wipe", {"path": "/x"}, "call_1")
    assert pending.reason == "sub-agent 'cleaner': Tool 'wipe' requires approval."
    started = next(e.data for e in paused.events if e.type == "delegation.started")

    done = paused.approve().resume_sync()
    assert (done.status, done.output, RAN) == ("completed", "The cleaner is done.", ["/x"])
    delegate = next(c for c in done.tool_calls if c.name == "delegate")
    assert (delegate.content, delegate.is_error) == ("Wiped /x.", False)
    decision = [e.data for e in done.events if e.type == "governance.decision"][-1]
    assert (decision["call_id"], decision["action"], decision["check"]) == (
        "call_1/call_1", "allow", "approval")
    finished = [e.data["status"] for e in done.events if e.type == "delegation.finished"]
    assert finished == ["needs_approval", "completed"]
    # The sub-run itself was resumed (not run again) and finished in its own session.
    sub_run = done.session.store.get_run(started["run_id"])
    assert (sub_run.status, sub_run.output, sub_run.session_id) == (
        "completed", "Wiped /x.", started["session_id"])
    assert done.usage.requests == 2 + 2  # the sub-run's model calls count towards the caller


def test_a_rejection_reaches_the_sub_agent_which_answers_the_caller() -> None:
    RAN.clear()
    lead = team([{"tool": "wipe", "args": {"path": "/x"}}, "I was not allowed to wipe /x."])
    done = lead.run_sync("Clean up.").reject(reason="keep /x").resume_sync()
    assert (done.status, RAN) == ("completed", [])
    delegate = next(c for c in done.tool_calls if c.name == "delegate")
    assert delegate.content == "I was not allowed to wipe /x."
    sub_session = next(e.data["session_id"] for e in done.events if e.type == "delegation.started")
    sub_results = [e.data["content"] for e in done.session.store.events(session_id=sub_session)
                   if e.type == "tool.result"]
    assert sub_results == ["A person rejected this call: keep /x"]


def test_a_sub_agent_that_asks_again_pauses_the_caller_again() -> None:
    RAN.clear()
    lead = team([{"tool": "wipe", "args": {"path": "/x"}}, {"tool": "wipe", "args": {"path": "/y"}},
                 "Wiped both."])
    first = lead.run_sync("Clean up.")
    second = first.approve().resume_sync()
    assert second.status == "needs_approval" and RAN == ["/x"]
    assert [(p.call_id, p.args) for p in second.pending] == [("call_1/call_2", {"path": "/y"})]
    done = second.approve().resume_sync()
    assert (done.status, done.output, RAN) == ("completed", "The cleaner is done.", ["/x", "/y"])


def test_two_levels_down_the_ids_nest_and_one_approval_resumes_both() -> None:
    RAN.clear()
    leaf = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "leaf done"]),
                 tools=[wipe], name="leaf")
    mid = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "leaf", "task": "wipe"}}, "mid done"]),
                name="mid", runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"leaf": leaf}, max_depth=2)))
    top = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "mid", "task": "go"}}, "top done"]),
                runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"mid": mid}, max_depth=2)))
    paused = top.run_sync("go")
    assert [(p.call_id, p.via) for p in paused.pending] == [("call_1/call_1/call_1", "call_1")]
    done = paused.approve().resume_sync()
    assert (done.status, done.output, RAN) == ("completed", "top done", ["/x"])
    assert next(c.content for c in done.tool_calls if c.name == "delegate") == "mid done"


def test_the_paused_pair_resumes_in_another_process(backend: Backend) -> None:
    RAN.clear()
    store = backend.spec
    lead = team([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped /x."])
    paused = lead.session(SessionConfig(id="team", store=str(store))).run_sync("Clean up.")
    assert paused.status == "needs_approval"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_delegation_approvals import RAN, team
        from loom_nb import SessionConfig
        # New agents, new store connection: only the store remembers the paused pair. (The
        # scripted models start over, so they get only the turns still to come.)
        lead = team(["Wiped /x."], ["The cleaner is done."])
        session = lead.session(SessionConfig(id="team", store={str(store)!r}))
        [waiting] = session.waiting
        done = waiting.approve("call_1/call_1").resume_sync()
        print(done.status, repr(done.output), RAN)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "completed 'The cleaner is done.' ['/x']"


def test_a_sub_agents_call_runs_with_edited_arguments_and_a_bad_edit_waits() -> None:
    import pytest

    from loom_nb import ConfigError
    from loom_nb.errors import NotSupportedError

    RAN.clear()
    lead = team([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped."])
    paused = lead.run_sync("Clean up.")
    [pending] = paused.pending
    with pytest.raises(NotSupportedError, match="sub-agent"):
        paused.approve(pending.call_id, remember=True)
    # the sub-agent's own tools check the edit when its run resumes: nothing runs, it waits
    with pytest.raises(ConfigError, match="do not match its schema"):
        paused.approve(pending.call_id, args={"path": 3}).resume_sync()
    assert RAN == [] and paused.session is not None and paused.session.waiting
    again = paused.session.waiting[0]
    done = again.approve(pending.call_id, args={"path": "/tmp/x"}).resume_sync()
    assert (done.status, RAN) == ("completed", ["/tmp/x"])
    decision = [e.data for e in done.events if e.type == "governance.decision"][-1]
    assert (decision["args"], decision["original_args"]) == ({"path": "/tmp/x"}, {"path": "/x"})
