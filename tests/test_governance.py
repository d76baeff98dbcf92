"""GovernancePolicy: each check, their order, decisions as events, and approvals that pause runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from loom_nb import Agent, ConfigError, Model, Runtime, SessionConfig, tool
from loom_nb.runtime import GovernanceDecision, GovernancePolicy, RateLimit, ToolRequest
from tests.backends import Backend


@tool(read_only=True)
def read_notes() -> str:
    """Read the notes."""
    return "notes"


@tool
def write_note(text: str) -> str:
    """Write a note."""
    return f"wrote {text}"


@tool(destructive=True)
def delete_all() -> str:
    """Delete every note."""
    return "deleted"


@tool(requires_approval=True)
def send_email(to: str) -> str:
    """Send an email."""
    return f"sent to {to}"


def _request(t, args=None) -> ToolRequest:
    return ToolRequest(name=t.name, args=args or {}, call_id="c1", tool=t, run_id="r", session_id="s",
                       agent="a")


def _decide(policy: GovernancePolicy, t) -> tuple[str, str]:
    decision = policy.decide(_request(t))
    return decision.action, decision.check


def test_each_check() -> None:
    assert _decide(GovernancePolicy(), write_note) == ("allow", "default")
    assert _decide(GovernancePolicy(deny=["write_*"]), write_note) == ("deny", "deny_list")
    assert _decide(GovernancePolicy(allow=["read_*"]), write_note) == ("deny", "allow_list")
    assert _decide(GovernancePolicy(allow=["read_*"]), read_notes) == ("allow", "default")
    assert _decide(GovernancePolicy(read_only=True), write_note) == ("deny", "read_only")
    assert _decide(GovernancePolicy(read_only=True), read_notes) == ("allow", "default")
    assert _decide(GovernancePolicy(), send_email) == ("ask", "requires_approval")
    assert _decide(GovernancePolicy(), delete_all) == ("ask", "destructive")
    assert _decide(GovernancePolicy(destructive="deny"), delete_all) == ("deny", "destructive")
    assert _decide(GovernancePolicy(destructive="allow"), delete_all) == ("allow", "default")


def test_vetoes() -> None:
    def no_secrets(request: ToolRequest) -> str | None:
        return "no secrets in notes" if "secret" in request.args.get("text", "") else None

    def ask_on_long(request: ToolRequest) -> GovernanceDecision | None:
        return GovernanceDecision.ask("long note") if len(request.args.get("text", "")) > 10 else None

    policy = GovernancePolicy(vetoes=[no_secrets, ask_on_long])
    assert policy.decide(_request(write_note, {"text": "the secret"})).reason == "no secrets in notes"
    assert policy.decide(_request(write_note, {"text": "a very long note"})).action == "ask"
    assert policy.decide(_request(write_note, {"text": "hi"})).action == "allow"
    with pytest.raises(ConfigError, match="return None, a str"):
        GovernancePolicy(vetoes=[lambda r: 42]).decide(_request(write_note))


def test_check_order_first_decider_wins() -> None:
    vetoed: list[str] = []

    def record(request: ToolRequest) -> None:
        vetoed.append(request.name)

    # deny list before approval, read-only before vetoes, vetoes before rate limits
    assert _decide(GovernancePolicy(deny=["send_*"]), send_email) == ("deny", "deny_list")
    assert _decide(GovernancePolicy(read_only=True, vetoes=[record]), write_note) == ("deny", "read_only")
    assert vetoed == []
    policy = GovernancePolicy(vetoes=[lambda r: "vetoed"], rate_limit="1/min")
    assert _decide(policy, write_note) == ("deny", "veto")
    assert _decide(GovernancePolicy(rate_limits={"send_*": 1}), send_email) == ("ask", "requires_approval")
    # with the window already full, the order still shows: veto first, then the rate limit
    full = GovernancePolicy(vetoes=[lambda r: "vetoed" if r.args.get("veto") else None],
                            rate_limit="1/min")
    assert _decide(full, write_note) == ("allow", "default")  # fills the window
    assert full.decide(_request(write_note, {"veto": 1})).check == "veto"
    assert _decide(full, send_email) == ("deny", "rate_limit")  # before its approval


def test_rate_limits_slide_with_the_clock() -> None:
    now = [0.0]
    policy = GovernancePolicy(rate_limits={"write_*": "2/min"}, rate_limit=RateLimit(3, 10),
                              clock=lambda: now[0])
    assert [_decide(policy, write_note)[0] for _ in range(3)] == ["allow", "allow", "deny"]
    assert "at most 2 calls per 60 s" in policy.decide(_request(write_note)).reason
    assert _decide(policy, read_notes) == ("allow", "default")  # the global limit: 3rd call
    assert _decide(policy, read_notes) == ("deny", "rate_limit")
    now[0] = 61.0
    assert _decide(policy, write_note) == ("allow", "default")
    with pytest.raises(ConfigError, match="'N/s', 'N/min'"):
        GovernancePolicy(rate_limit="lots")


def test_denied_call_tells_the_model_and_the_run_goes_on() -> None:
    model = Model.scripted([{"tool": "write_note", "args": {"text": "x"}}, "I may not write."])
    agent = Agent(model, tools=[write_note], runtime=Runtime.sdk(
        governance=GovernancePolicy(read_only=True)))
    result = agent.run_sync("write x")
    assert result.status == "completed"
    decision = next(e for e in result.events if e.type == "governance.decision")
    assert decision.data == {"call_id": "call_1", "name": "write_note", "action": "deny",
                             "reason": "Read-only mode: tool 'write_note' may change things.",
                             "check": "read_only"}
    sent = model.requests[1].messages[-1].tool_results[0]
    assert sent.is_error and sent.content.startswith("Denied by the governance policy: Read-only mode")


def test_rate_limit_hit_inside_a_run() -> None:
    model = Model.scripted([[{"tool": "write_note", "args": {"text": "a"}},
                             {"tool": "write_note", "args": {"text": "b"}}], "one was refused"])
    agent = Agent(model, tools=[write_note], runtime=Runtime.sdk(
        governance=GovernancePolicy(rate_limits={"write_note": "1/min"})))
    result = agent.run_sync("write two")
    assert [(c.content or "")[:20] for c in result.tool_calls] == ["wrote a", "Denied by the govern"]


def _approval_agent(store=None) -> tuple[Agent, list[str]]:
    sent: list[str] = []

    @tool(requires_approval=True)
    def send_email(to: str) -> str:
        """Send an email."""
        sent.append(to)
        return f"sent to {to}"

    model = Model.scripted([[{"tool": "read_notes", "args": {}},
                             {"tool": "send_email", "args": {"to": "ana@example.org"}}],
                            "Done: read the notes and emailed Ana."])
    return Agent(model, tools=[read_notes, send_email]), sent


def test_ask_pauses_then_approve_resumes_the_same_run() -> None:
    agent, sent = _approval_agent()
    session = agent.session()
    paused = session.run_sync("Email Ana the notes")
    assert paused.status == "needs_approval" and sent == []
    assert [(p.name, p.args, p.reason) for p in paused.pending] == [
        ("send_email", {"to": "ana@example.org"}, "Tool 'send_email' requires approval.")]
    # the allowed call already ran; history holds only the prompt until the turn is decided
    assert [c.content for c in paused.tool_calls] == ["notes", None]
    assert [m.role for m in session.messages] == ["user"]
    assert session.waiting[0].run_id == paused.run_id
    with pytest.raises(ConfigError, match="waiting for approval"):
        session.run_sync("something else")
    with pytest.raises(ConfigError, match="undecided"):
        paused.resume_sync()

    done = paused.approve().resume_sync()
    assert (done.status, done.run_id, done.output) == ("completed", paused.run_id,
                                                        "Done: read the notes and emailed Ana.")
    assert sent == ["ana@example.org"]
    assert [e.seq for e in done.events] == list(range(len(done.events)))
    types = [e.type for e in done.events]
    assert types.count("run.finished") == 2 and "run.resumed" in types
    approval = [e.data for e in done.events if e.type == "governance.decision"][-1]
    assert (approval["action"], approval["check"]) == ("allow", "approval")
    assert [m.role for m in session.messages] == ["user", "assistant", "tool", "assistant"]
    assert session.waiting == []


def test_reject_tells_the_model_why() -> None:
    agent, sent = _approval_agent()
    paused = agent.session().run_sync("Email Ana")
    done = paused.reject(reason="not today").resume_sync()
    assert sent == [] and done.status == "completed"
    assert done.tool_calls[-1].content == "A person rejected this call: not today"
    with pytest.raises(ConfigError, match="only a run that needs approval"):
        done.approve()
    with pytest.raises(ConfigError, match="not waiting for approval"):
        _approval_agent()[0].session().run_sync("x").approve("call_99")


def test_paused_run_survives_a_restart(backend: Backend) -> None:
    path = backend.spec
    agent, sent = _approval_agent()
    paused = agent.session(SessionConfig(id="mail", store=path)).run_sync("Email Ana")
    assert paused.status == "needs_approval"

    script = textwrap.dedent(f"""
        import json
        from loom_nb import Agent, Model, SessionConfig, tool

        @tool(read_only=True)
        def read_notes() -> str:
            return "notes"

        @tool(requires_approval=True)
        def send_email(to: str) -> str:
            print("SENDING", to)
            return "sent"

        agent = Agent(Model.scripted(["Emailed."]), tools=[read_notes, send_email])
        session = agent.session(SessionConfig(id="mail", store={str(path)!r}))
        (waiting,) = session.waiting
        done = waiting.approve().resume_sync()
        print(json.dumps({{"status": done.status, "output": done.output, "run_id": done.run_id,
                          "roles": [m.role for m in session.messages]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "SENDING ana@example.org" and sent == []
    child = json.loads(lines[1])
    assert child == {"status": "completed", "output": "Emailed.", "run_id": paused.run_id,
                     "roles": ["user", "assistant", "tool", "assistant"]}


def test_runtime_takes_governance_and_checks_policy_types() -> None:
    policy = GovernancePolicy(deny=["x"])
    assert Runtime.sdk(governance=policy).governance is policy
    with pytest.raises(ConfigError, match="takes a QualityGate"):
        Runtime.sdk(quality=object())
    with pytest.raises(ConfigError, match="unknown option"):
        Runtime.sdk(qualiti=None)
    with pytest.raises(ConfigError, match="takes a GovernancePolicy"):
        Runtime.sdk(governance="strict")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list of patterns"):
        GovernancePolicy(deny="x")  # type: ignore[arg-type]


def test_undecided_lists_the_calls_still_waiting() -> None:
    @tool(requires_approval=True)
    def a() -> str:
        """A."""
        return "a"

    @tool(requires_approval=True)
    def b() -> str:
        """B."""
        return "b"

    model = Model.scripted([[{"tool": "a", "args": {}}, {"tool": "b", "args": {}}], "done"])
    paused = Agent(model, tools=[a, b]).session().run_sync("both")
    assert [p.name for p in paused.undecided] == ["a", "b"]
    paused.approve("call_1")
    assert [p.name for p in paused.undecided] == ["b"]
    # the stored run record was saved before run.finished was announced
    record = paused.session.store.get_run(paused.run_id)
    assert record.status == "needs_approval" and record.state["seq"] == len(paused.events)
