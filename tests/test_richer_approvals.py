"""Richer approvals: edited arguments, remembered approvals, and the model's questions.

Each test drives a real session (the scripted model, an SQLite store where a restart matters)
and checks what ran, what the model saw next, and what the store and events keep.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from loom_nb import Agent, Capability, ConfigError, Model, SessionConfig, tool
from loom_nb._bridge import run_sync
from loom_nb.errors import ApprovalMismatchError, NotSupportedError, RunAlreadyResumedError
from loom_nb.messages import ToolCall
from loom_nb.runtime import GovernancePolicy, Runtime
from loom_nb.store import SQLiteStore

SENT: list[str] = []


@tool(requires_approval=True)
def send_email(to: str, subject: str = "hi") -> str:
    """Send an email."""
    SENT.append(f"{to}:{subject}")
    return f"sent to {to}"


def _mail(to: str = "ana@example.org", call_id: str = "c1") -> dict[str, Any]:
    return {"tool": "send_email", "id": call_id, "args": {"to": to}}


def _agent(turns: list[Any], policy: GovernancePolicy | None = None, **kwargs: Any) -> Agent:
    SENT.clear()
    return Agent(Model.scripted(turns), tools=[send_email],
                 runtime=Runtime.sdk(governance=policy or GovernancePolicy()), **kwargs)


def _seen_by_model(agent: Agent) -> list[Any]:
    return agent.model.requests[-1].messages  # type: ignore[attr-defined]


# -- edited arguments ------------------------------------------------------------------------------

def test_edited_arguments_run_and_are_recorded(tmp_path: Path) -> None:
    agent = _agent([_mail(), "Done."])
    session = agent.session(SessionConfig(store=tmp_path / "s.sqlite"))
    paused = session.run_sync("Email Ana")
    resumed = paused.approve("c1", args={"to": "bob@example.org", "subject": "edited"}).resume_sync()
    assert resumed.status == "completed", resumed.error
    assert SENT == ["bob@example.org:edited"]
    decision = [e for e in resumed.events if e.type == "governance.decision"][-1]
    assert decision.data["args"] == {"to": "bob@example.org", "subject": "edited"}
    assert decision.data["original_args"] == {"to": "ana@example.org"}
    # history: the call as edited, and a result that tells the model a person changed it
    call = next(p for m in session.history for p in m.parts if isinstance(p, ToolCall))
    assert call.args == {"to": "bob@example.org", "subject": "edited"}
    result = session.history[-2].parts[0]
    assert "A person edited the arguments" in result.content  # type: ignore[union-attr]
    assert "ana@example.org" in result.content  # type: ignore[union-attr]


def test_bad_edit_is_a_config_error_and_the_run_still_waits(tmp_path: Path) -> None:
    agent = _agent([_mail(), "Done."])
    session = agent.session(SessionConfig(store=tmp_path / "s.sqlite"))
    paused = session.run_sync("Email Ana")
    with pytest.raises(ConfigError, match="do not match its schema"):
        paused.approve("c1", args={"to": 5, "cc": "x"})
    with pytest.raises(ConfigError, match="JSON data"):
        paused.approve("c1", args={"to": {1, 2}})
    with pytest.raises(ConfigError, match="edits one call"):
        paused.approve(args={"to": "x"})
    # a bad edit that reaches resume (here: given straight to session.resume) runs nothing either
    with pytest.raises(ConfigError, match="do not match its schema"):
        run_sync(session.resume(paused.run_id, {"c1": _approved(args={"to": 5})}))
    assert SENT == [] and session.waiting[0].run_id == paused.run_id
    assert session.store.get_run(paused.run_id).status == "needs_approval"  # type: ignore[union-attr]
    assert paused.undecided == list(paused.pending)
    assert paused.approve("c1", args={"to": "ok@example.org"}).resume_sync().status == "completed"
    assert SENT == ["ok@example.org:hi"]


def _approved(**kwargs: Any) -> Any:
    from loom_nb.result import Approved
    return Approved(**kwargs)


def test_deny_rule_on_edited_arguments_wins(tmp_path: Path) -> None:
    def no_bob(request: Any) -> str | None:
        return "never to bob" if "bob" in str(request.args.get("to")) else None

    agent = _agent([_mail(), "Done."], GovernancePolicy(vetoes=[no_bob]))
    paused = agent.session().run_sync("Email Ana")
    resumed = paused.approve("c1", args={"to": "bob@example.org"}).resume_sync()
    assert resumed.status == "completed" and SENT == []
    result = [e for e in resumed.events if e.type == "tool.result"][-1]
    assert result.data["error_type"] == "Denied" and "never to bob" in result.data["content"]


def test_edit_keeps_binding_and_claim(tmp_path: Path) -> None:
    agent = _agent([_mail(), "Done."])
    session = agent.session(SessionConfig(store=tmp_path / "s.sqlite"))
    paused = session.run_sync("Email Ana")
    other = agent.session(SessionConfig(id=session.id, store=tmp_path / "s.sqlite")).waiting[0]
    paused.approve("c1", args={"to": "a@example.org"})
    other.approve("c1", args={"to": "b@example.org"})
    outcomes: list[Any] = []

    def resume(result: Any) -> None:
        try:
            outcomes.append(result.resume_sync().status)
        except RunAlreadyResumedError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=resume, args=(r,)) for r in (paused, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, map(type, outcomes))).count(str(RunAlreadyResumedError)) == 1
    assert len(SENT) == 1
    # binding: an edit on a call shown with other arguments is refused
    from loom_nb.result import PendingApproval
    shown = PendingApproval(call_id="c1", name="send_email", args={"to": "x"}, reason="")
    agent2 = _agent([_mail(), "Done."])
    paused2 = agent2.session().run_sync("Email Ana")
    with pytest.raises(ApprovalMismatchError):
        paused2.approve(shown, args={"to": "y@example.org"})


# -- remember --------------------------------------------------------------------------------------

def test_remember_allows_the_tool_for_the_session_and_survives_a_reopen(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    agent = _agent([_mail(), "Done.", _mail("cy@example.org", "c2"), "Done again.",
                    _mail("di@example.org", "c3"), "Sent to Di."])
    session = agent.session(SessionConfig(id="mail", store=store))
    resumed = session.run_sync("Email Ana").approve("c1", remember=True).resume_sync()
    assert resumed.status == "completed" and session.remembered == {"send_email"}
    second = session.run_sync("Email Cy")
    assert second.status == "completed", second.error  # no pause: remembered
    decision = next(e for e in second.events if e.type == "governance.decision")
    assert decision.data["check"] == "remembered"
    assert SENT == ["ana@example.org:hi", "cy@example.org:hi"]
    reopened = agent.session(SessionConfig(id="mail", store=SQLiteStore(store)))
    assert reopened.remembered == {"send_email"}
    reopened.forget_approval("send_email")
    assert reopened.remembered == frozenset()
    assert agent.session(SessionConfig(id="mail", store=store)).remembered == frozenset()
    with pytest.raises(ConfigError, match="remembers no approval"):
        reopened.forget_approval("send_email")
    # the first session object's next run reads the store again: send_email asks again
    third = session.run_sync("Email Di")
    assert third.status == "needs_approval" and SENT == ["ana@example.org:hi", "cy@example.org:hi"]


def test_deny_rule_wins_over_a_remembered_allow() -> None:
    policy = GovernancePolicy()
    agent = _agent([_mail(), "Done.", _mail("cy@example.org", "c2"), "Denied, ok."], policy)
    session = agent.session()
    session.run_sync("Email Ana").approve(remember=True).resume_sync()
    policy.deny = ["send_*"]  # a deny rule added later
    second = session.run_sync("Email Cy")
    assert second.status == "completed" and SENT == ["ana@example.org:hi"]
    decision = next(e for e in second.events if e.type == "governance.decision")
    assert decision.data["action"] == "deny" and decision.data["check"] == "deny_list"


def test_session_decide_api_resumes_when_all_are_decided() -> None:
    agent = _agent([[_mail("a@x.org", "c1"), _mail("b@x.org", "c2")], "Done."])
    session = agent.session()
    paused = session.run_sync("Two emails")
    partial = session.approve_sync("c1", args={"to": "a2@x.org"})
    assert partial.status == "needs_approval" and [p.call_id for p in partial.undecided] == ["c2"]
    done = session.reject_sync("c2", reason="not b")
    assert done.status == "completed" and SENT == ["a2@x.org:hi"] and paused.run_id == done.run_id
    with pytest.raises(ConfigError, match="nothing to approve"):
        session.approve_sync()


# -- ask_user --------------------------------------------------------------------------------------

def _asking(turns: list[Any]) -> Agent:
    return Agent(Model.scripted(turns), capabilities=[Capability.ask_user()])


def test_ask_user_pauses_and_the_answer_is_the_result(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    ask = {"tool": "ask_user", "id": "q1", "args": {"question": "Which city?"}}
    agent = _asking([ask, "Booked for Lisbon."])
    paused = agent.session(SessionConfig(id="trip", store=store)).run_sync("Book a trip")
    assert paused.status == "needs_approval"
    (question,) = paused.pending
    assert question.kind == "question" and question.question == "Which city?"
    with pytest.raises(ConfigError, match="question"):
        paused.approve("q1")
    # a restart: a new agent and session object on the same store answer it
    again = _asking(["Booked for Lisbon."])  # the model's next turn, in the new process
    reopened = again.session(SessionConfig(id="trip", store=SQLiteStore(store)))
    done = reopened.answer_sync(None, "Lisbon")
    assert done.status == "completed" and done.output == "Booked for Lisbon."
    result = [e for e in done.events if e.type == "tool.result"][-1]
    assert result.data["content"] == "Lisbon" and not result.data["is_error"]
    assert reopened.history[-2].parts[0].content == "Lisbon"  # type: ignore[union-attr]


def test_two_answers_at_once_exactly_one_wins(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    agent = _asking([{"tool": "ask_user", "id": "q1", "args": {"question": "Yes?"}}, "ok"])
    session = agent.session(SessionConfig(id="q", store=store))
    first = session.run_sync("go")
    second = agent.session(SessionConfig(id="q", store=store)).waiting[0]
    first.answer("q1", "yes")
    second.answer("q1", "no")
    outcomes: list[Any] = []

    def resume(result: Any) -> None:
        try:
            outcomes.append(result.resume_sync())
        except RunAlreadyResumedError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=resume, args=(r,)) for r in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, RunAlreadyResumedError) for o in outcomes) == 1
    answers = [e.data["content"] for e in session.events() if e.type == "tool.result"]
    assert len(answers) == 1 and answers[0] in ("yes", "no")


def test_rejected_and_malformed_questions() -> None:
    agent = _asking([{"tool": "ask_user", "id": "q1", "args": {}},
                     {"tool": "ask_user", "id": "q2", "args": {"question": "Go?"}}, "fine"])
    paused = agent.session().run_sync("go")
    # the malformed question went back to the model; the well-formed one waits
    assert [p.call_id for p in paused.pending] == ["q2"]
    denied = next(e for e in paused.events if e.type == "tool.result")
    assert "could not be asked" in denied.data["content"]
    with pytest.raises(ConfigError, match="non-empty"):
        paused.answer("q2", "  ")
    with pytest.raises(ConfigError, match="waits only on questions"):
        paused.approve(remember=True)  # approve() decides approvals; a question is answered
    with pytest.raises(ConfigError, match="is a question of the model"):
        paused.approve("q2", remember=True)
    done = paused.reject("q2", reason="not now").resume_sync()
    assert done.status == "completed"
    last = [e for e in done.events if e.type == "tool.result"][-1]
    assert last.data["error_type"] == "Rejected" and "not now" in last.data["content"]


def test_a_question_cannot_be_remembered_or_allowed_by_governance() -> None:
    agent = Agent(Model.scripted([{"tool": "ask_user", "id": "q1", "args": {"question": "?"}}, "x"]),
                  capabilities=[Capability.ask_user()],
                  runtime=Runtime.sdk(governance=GovernancePolicy(destructive="allow")))
    session = agent.session()
    session.remember_approval("ask_user")  # even so, a question asks
    paused = session.run_sync("go")
    assert paused.status == "needs_approval" and paused.pending[0].kind == "question"
    with pytest.raises(NotSupportedError):
        from loom_nb.decisions import check_rememberable
        from loom_nb.result import PendingApproval
        check_rememberable(PendingApproval(call_id="d/c", name="t", args={}, reason="", via="d"), "r")


def test_profiles_treat_a_question_as_a_question() -> None:
    ask = {"tool": "ask_user", "id": "q1", "args": {"question": "Which city?"}}
    supervised = Agent(Model.scripted([ask, "Rome then."]), capabilities=[Capability.ask_user()],
                       runtime=Runtime.supervised())
    paused = supervised.run_sync("go")  # the profile's ask-everything veto: still a question
    assert paused.pending[0].kind == "question"
    assert paused.answer(None, "Rome").resume_sync().output == "Rome then."
    autonomous = Agent(Model.scripted([ask, "No one to ask."]), capabilities=[Capability.ask_user()],
                       runtime=Runtime.autonomous())
    done = autonomous.run_sync("go")  # no one to ask: the model is told so
    assert done.status == "completed"
    assert next(e for e in done.events if e.type == "tool.result").data["error_type"] == "Denied"


def test_remembered_approvals_and_questions_on_each_store(backend: Any) -> None:
    """SQLite and PostgreSQL: a remembered tool and a waiting question survive a new store
    object (another kernel); the approval records are queried by kind."""
    agent = _agent([_mail(), "Done.", {"tool": "ask_user", "id": "q1", "args": {"question": "Cc?"}}],
                   capabilities=[Capability.ask_user()])
    session = agent.session(SessionConfig(id="s", store=backend.open()))
    session.run_sync("Email Ana").approve(remember=True).resume_sync()
    assert session.run_sync("ask").status == "needs_approval"
    other = Agent(Model.scripted(["No cc then."]), tools=[send_email],
                  capabilities=[Capability.ask_user()])
    reopened = other.session(SessionConfig(id="s", store=backend.open()))
    assert reopened.remembered == {"send_email"}
    assert reopened.waiting[0].pending[0].question == "Cc?"
    assert reopened.answer_sync("q1", "no").output == "No cc then."
    reopened.forget_approval("send_email")
    assert agent.session(SessionConfig(id="s", store=backend.open())).remembered == frozenset()


def test_an_edited_call_runs_beside_the_turns_other_approved_calls() -> None:
    """With parallel tool calls (the default), the approved calls of a paused turn run together;
    the edited one with its new arguments, and history keeps the model's order."""
    agent = _agent([[_mail("a@x.org", "c1"), _mail("b@x.org", "c2"), _mail("c@x.org", "c3")], "ok"])
    session = agent.session()
    paused = session.run_sync("Three emails")
    done = (paused.approve("c1").approve("c2", args={"to": "b2@x.org"}).reject("c3", reason="no")
            .resume_sync())
    assert done.status == "completed" and sorted(SENT) == ["a@x.org:hi", "b2@x.org:hi"]
    turn = next(m for m in session.history if m.tool_calls)
    assert [c.args["to"] for c in turn.tool_calls] == ["a@x.org", "b2@x.org", "c@x.org"]
    results = session.history[session.history.index(turn) + 1].tool_results
    assert [r.call_id for r in results] == ["c1", "c2", "c3"]
    assert results[1].content.startswith("[A person edited") and "b2@x.org" in results[1].content
    assert not results[0].content.startswith("[") and results[2].is_error
