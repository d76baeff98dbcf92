"""Harness, quality gates, delegation, feedback and profiles: each changes what a run does."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pydantic
import pytest

from loom_nb import Agent, ConfigError, Limits, Model, ModelRequest, RuntimeTask, SessionConfig, tool
from loom_nb.runtime import (DelegationPolicy, FeedbackPolicy, Harness, QualityGate, Runtime)

LONG_ENOUGH = QualityGate.check(lambda out: (len(out) >= 20, "Too short: give at least 20 characters."),
                                name="length")


def drafting_model() -> Model:
    """Writes a short draft, then a longer one once a critique is in the conversation."""

    def write(request: ModelRequest) -> str:
        critique = any("did not pass review" in m.text for m in request.messages if m.role == "user")
        return "A much longer, complete answer." if critique else "Short."

    return Model.function(write)


def test_a_failing_gate_triggers_a_retry_that_passes_with_the_critique_in_context() -> None:
    model = drafting_model()
    agent = Agent(model, runtime=Runtime.sdk(harness=Harness.retry(3), quality=LONG_ENOUGH))
    result = agent.run_sync("Explain it.")
    assert (result.status, result.output, result.attempts, result.winner) == (
        "completed", "A much longer, complete answer.", 2, 2)
    verdicts = [e.data for e in result.events if e.type == "quality.verdict"]
    assert [(v["attempt"], v["passed"]) for v in verdicts] == [(1, False), (2, True)]
    assert verdicts[0]["critique"] == "Too short: give at least 20 characters."
    assert "Critique: Too short" in model.requests[1].messages[-1].text
    assert [e.data["attempt"] for e in result.events if e.type == "harness.attempt"] == [1, 2]
    assert result.verdict is not None and result.verdict.passed


def test_without_retries_a_failing_gate_fails_the_run_and_keeps_the_answer() -> None:
    result = Agent(drafting_model(), runtime=Runtime.sdk(quality=LONG_ENOUGH)).run_sync("Explain it.")
    assert (result.status, result.error_type, result.output) == ("failed", "QualityGateFailed", "Short.")
    assert "did not pass the quality gate (check length) after 1 attempt(s)" in (result.error or "")
    retried = Agent(Model.scripted(["No.", "Still no."]), runtime=Runtime.sdk(
        harness=Harness.retry(2), quality=LONG_ENOUGH)).run_sync("x")
    assert (retried.status, retried.attempts) == ("failed", 2)


def test_best_of_picks_the_passing_candidate_and_keeps_only_its_messages() -> None:
    model = Model.scripted(["Nope.", "This candidate is good enough.", "This one is fine as well."])
    agent = Agent(model, runtime=Runtime.sdk(harness=Harness.best_of(3), quality=LONG_ENOUGH))
    session = agent.session()
    result = session.run_sync("Write a sentence.")
    assert (result.status, result.output, result.winner, result.attempts) == (
        "completed", "This candidate is good enough.", 2, 3)
    # candidates did not see each other, and only the winner joined the session
    assert all(len(r.messages) == 1 for r in model.requests)
    assert [m.text for m in session.messages] == ["Write a sentence.", "This candidate is good enough."]
    candidates = [e.data for e in result.events if e.type == "harness.attempt"]
    assert [c["mode"] for c in candidates] == ["candidate"] * 3
    child_runs = [session.store.get_run(c["run_id"]) for c in candidates]
    assert {r.parent_run_id for r in child_runs} == {result.run_id}
    assert [r.output for r in child_runs] == ["Nope.", "This candidate is good enough.", "This one is fine as well."]
    assert result.usage.requests == 3  # every candidate's cost counts


def judge(reply: str) -> Model:
    return Model.function(lambda request: reply)


@pytest.mark.parametrize(("reply", "passed", "critique"), [
    ("PASS\nIt names the capital.", True, "It names the capital."),
    ("**FAIL**\nIt does not name the capital.", False, "It does not name the capital."),
    ("FAIL", False, "failed"),
    ("The answer looks good. PASS", False, "The judge's verdict could not be read: the first line must be exactly PASS or FAIL"),
    ("PASSED", False, "The judge's verdict could not be read"),
    ("", False, "The judge's verdict could not be read"),
])
def test_the_model_judge_parses_pass_fail_strictly(reply: str, passed: bool, critique: str) -> None:
    gate = QualityGate.criteria(model=judge(reply))
    task = RuntimeTask("Capital of France?", criteria=["names the capital"])
    result = Agent(Model.scripted(["Paris."]), runtime=Runtime.sdk(quality=gate)).run_sync(task)
    assert result.verdict is not None and result.verdict.passed is passed
    assert result.verdict.critique.startswith(critique)
    assert result.status == ("completed" if passed else "failed")


def test_the_judge_sees_the_task_the_criteria_and_the_answer() -> None:
    seen: list[ModelRequest] = []

    def strict(request: ModelRequest) -> str:
        seen.append(request)
        return "PASS\nfine"

    gate = QualityGate.criteria(["cites a source", "one sentence"], model=Model.function(strict))
    Agent(Model.scripted(["Paris (Wikipedia)."]), runtime=Runtime.sdk(quality=gate)).run_sync("Capital?")
    assert seen[0].system.startswith("You are a strict reviewer")
    assert seen[0].messages[0].text == ("TASK:\nCapital?\n\nCRITERIA:\n- cites a source\n- one sentence\n\n"
                                        "ANSWER:\nParis (Wikipedia).")
    with pytest.raises(ConfigError, match="has no criteria"):
        asyncio.run(QualityGate.criteria(model=judge("PASS")).evaluate("x", RuntimeTask("t"), judge("x")))


class Weather(pydantic.BaseModel):
    city: str
    temp_c: float


def test_output_type_and_combined_gates() -> None:
    typed = QualityGate.output_type(Weather)
    good = asyncio.run(typed.evaluate('```json\n{"city": "Oslo", "temp_c": 9}\n```', RuntimeTask("t"), judge("")))
    bad = asyncio.run(typed.evaluate('{"city": "Oslo"}', RuntimeTask("t"), judge("")))
    assert good.passed and not bad.passed and "temp_c: Field required" in bad.critique
    both = typed & QualityGate.check(lambda out: "Oslo" in out, name="oslo")
    either = QualityGate.check(lambda out: False, name="never") | typed
    out = '{"city": "Bergen", "temp_c": 7}'
    assert not asyncio.run(both.evaluate(out, RuntimeTask("t"), judge(""))).passed
    verdict = asyncio.run(either.evaluate(out, RuntimeTask("t"), judge("")))
    assert verdict.passed and [p.gate for p in verdict.parts] == ["check never", "output_type Weather"]


def test_custom_harness_gets_the_request() -> None:
    async def twice_then_choose(request):
        first = await request.attempt()
        second = await request.attempt("Say it differently.")
        return first if len(first.output) > len(second.output) else second

    model = Model.scripted(["A longer first answer.", "Short."])
    result = Agent(model, runtime=Runtime.sdk(harness=Harness.custom(twice_then_choose))).run_sync("x")
    assert (result.output, result.winner, result.attempts) == ("A longer first answer.", 1, 2)


def test_a_custom_harness_that_does_not_judge_is_still_judged_by_the_gate() -> None:
    async def keep_first(request):
        return await request.attempt()

    async def rewrite(request):
        await request.attempt()
        return "A rewritten answer that is long enough."

    short = Agent(Model.scripted(["Short."]), runtime=Runtime.sdk(
        harness=Harness.custom(keep_first), quality=LONG_ENOUGH)).run_sync("x")
    assert (short.status, short.error_type, short.verdict.passed) == (
        "failed", "QualityGateFailed", False)
    # Text returned in place of an attempt is judged itself, not given the attempt's verdict.
    rewritten = Agent(Model.scripted(["Short."]), runtime=Runtime.sdk(
        harness=Harness.custom(rewrite), quality=LONG_ENOUGH)).run_sync("x")
    assert (rewritten.status, rewritten.output, rewritten.verdict.passed) == (
        "completed", "A rewritten answer that is long enough.", True)


def test_best_of_whose_candidates_all_fail_reports_their_error_not_a_limit() -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError("model down")

    result = Agent(Model.function(broken),
                   runtime=Runtime.sdk(harness=Harness.best_of(2))).run_sync("x")
    assert (result.status, result.limit) == ("failed", None)
    assert "The candidate run failed: RuntimeError: model down" in (result.error or "")


# -- delegation --------------------------------------------------------------------------------------


def researcher(answer: str = "The answer is 42.") -> Agent:
    return Agent(Model.scripted([answer]), "You look facts up.", name="researcher")


def test_a_delegated_sub_run_is_a_full_run_nested_under_its_parent() -> None:
    sub = researcher()
    model = Model.scripted([{"tool": "delegate", "args": {"agent": "researcher", "task": "Find the answer."}},
                            "The researcher says 42."])
    lead = Agent(model, runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"researcher": sub})))
    schema = lead.tools["delegate"].parameters
    agent_schema = schema["properties"]["agent"]
    assert agent_schema.get("enum", [agent_schema.get("const")]) == ["researcher"]
    assert "researcher: You look facts up." in lead.tools["delegate"].description

    async def collect():
        stream = lead.session().stream("What is the answer?")
        return [e async for e in stream], stream.result

    events, result = asyncio.run(collect())
    assert result.output == "The researcher says 42." and result.tool_calls[0].content == "The answer is 42."
    started = next(e.data for e in result.events if e.type == "delegation.started")
    finished = next(e.data for e in result.events if e.type == "delegation.finished")
    assert (started["agent"], started["depth"], finished["status"]) == ("researcher", 1, "completed")
    child = result.session.store.get_run(started["run_id"])
    assert child.parent_run_id == result.run_id and child.session_id.startswith(result.session_id + "/researcher-")
    nested = [e for e in events if e.run_id == started["run_id"]]  # live views see the sub-run
    assert nested and {e.parent_run_id for e in nested} == {result.run_id}
    assert result.usage.requests == 3  # two lead turns and the researcher's


def test_delegation_depth_limit_is_enforced() -> None:
    deepest = researcher("never called")
    middle = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "deep", "task": "go deeper"}},
                                   "I had to do it myself."]), name="middle",
                   runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"deep": deepest}, max_depth=1)))
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "middle", "task": "handle it"}}, "done"]),
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"middle": middle}, max_depth=1)))
    result = lead.run_sync("start")
    assert result.tool_calls[0].content == "I had to do it myself."
    middle_run = next(e.data["run_id"] for e in result.events if e.type == "delegation.started")
    stored = [e for e in result.session.store.events(run_id=middle_run) if e.type == "tool.result"]
    assert stored[0].data["is_error"] and "Delegation depth limit reached (max_depth=1)" in stored[0].data["content"]
    assert deepest.model.remaining == 1  # never ran


def test_a_sub_run_over_its_budget_comes_back_as_an_error() -> None:
    @tool
    def look() -> str:
        """Look."""
        return "nothing"

    sub = Agent(Model.scripted([{"tool": "look", "args": {}}, "found it"]), tools=[look], name="slow")
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "slow", "task": "search"}}, "gave up"]),
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"slow": sub}, budget=Limits(max_turns=1))))
    result = lead.run_sync("x")
    call = result.tool_calls[0]
    assert call.is_error and "Sub-agent 'slow' ended with status 'limit'" in (call.content or "")


def test_parallel_sub_runs_are_bounded() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    async def busy(request: ModelRequest) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.05)
        with lock:
            running[0] -= 1
        return "done"

    helper = Agent(Model.function(busy), name="helper")
    policy = DelegationPolicy.subagents({"helper": helper}, max_parallel=1)

    def lead_model(request: ModelRequest) -> object:
        if request.messages[-1].role == "user":
            return {"tool": "delegate", "args": {"agent": "helper", "task": "work"}}
        return "ok"

    lead = Agent(Model.function(lead_model), runtime=Runtime.sdk(delegation=policy))

    async def three_at_once():
        return await asyncio.gather(*(lead.run(f"job {i}") for i in range(3)))

    results = asyncio.run(three_at_once())
    assert [r.tool_calls[0].content for r in results] == ["done"] * 3
    assert peak[0] == 1


# -- feedback ----------------------------------------------------------------------------------------


@tool
def fragile(n: int) -> int:
    """Fails on odd numbers."""
    if n % 2:
        raise ValueError("odd")
    return n


def test_feedback_records_are_written_and_summarized(tmp_path: Path) -> None:
    jsonl = tmp_path / "feedback.jsonl"
    model = Model.scripted([[{"tool": "fragile", "args": {"n": 2}}, {"tool": "fragile", "args": {"n": 3}}],
                            "Short.", "A much longer, complete answer."])
    runtime = Runtime.sdk(feedback=FeedbackPolicy.collect(jsonl=jsonl), harness=Harness.retry(2), quality=LONG_ENOUGH)
    session = Agent(model, tools=[fragile], runtime=runtime).session(SessionConfig(store=tmp_path / "s.sqlite"))
    result = session.run_sync("compute")
    session.feedback(result.run_id, 4, "good after the retry")
    kinds = [r.kind for r in session.feedback_records]
    assert kinds.count("tool") == 2 and kinds.count("governance") == 2 and kinds.count("quality") == 2
    assert kinds[-2:] == ["run", "rating"]
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["kind"] for line in lines] == kinds
    summary = session.feedback_summary()
    assert summary["tool_calls"] == 2 and summary["tool_error_rate"] == 0.5
    assert summary["tool_errors_by_tool"] == {"fragile": 1}
    assert summary["quality_pass_rate"] == 0.5 and summary["completed_rate"] == 1.0
    assert (summary["ratings"], summary["mean_rating"]) == (1, 4.0)
    with pytest.raises(ConfigError, match="no run 'nope'"):
        session.feedback("nope", 1)


def test_the_feedback_summary_is_a_dict_that_reads_as_a_table() -> None:
    session = Agent(Model.scripted(["hi", "again"]),
                    runtime=Runtime.sdk(feedback=FeedbackPolicy.collect(["run"]))).session()
    first = session.run_sync("x")
    session.run_sync("y")
    session.feedback(first.run_id, 5)
    session.feedback(first.run_id, 3, "on second thought")  # replaces the 5
    summary = session.feedback_summary()
    assert isinstance(summary, dict) and summary["ratings"] == 1 and summary["mean_rating"] == 3.0
    assert json.loads(json.dumps(summary)) == dict(summary)
    lines = repr(summary).splitlines()
    assert lines[0] == "Feedback summary"
    assert "  runs                 2" in lines and "  completed rate       100%" in lines
    assert "  quality pass rate    -" in lines and "  tool errors by tool  none" in lines
    assert "  mean rating          3" in lines
    markup = summary._repr_html_()
    assert markup.startswith("<b>Feedback summary</b><div") and "<table" in markup
    assert ">completed rate</td>" in markup


def test_default_feedback_keeps_only_ratings() -> None:
    session = Agent(Model.scripted(["hi"])).session()
    result = session.run_sync("x")
    session.feedback(result.run_id, 1, "meh")
    assert [r.kind for r in session.feedback_records] == ["rating"]
    other = session.agent.session()  # the same (process-wide in-memory) store
    with pytest.raises(ConfigError, match="has no run .* to rate"):
        other.feedback(result.run_id, 5)
    with pytest.raises(ConfigError, match="Unknown feedback kinds"):
        FeedbackPolicy.collect(["tools"])


# -- profiles ----------------------------------------------------------------------------------------


@tool(read_only=True)
def read_notes() -> str:
    """Read the notes."""
    return "notes"


@tool
def write_note(text: str) -> str:
    """Write a note."""
    return "written"


@tool(destructive=True)
def wipe() -> str:
    """Delete everything."""
    return "wiped"


def test_supervised_asks_before_anything_that_is_not_read_only() -> None:
    model = Model.scripted([[{"tool": "read_notes", "args": {}}, {"tool": "write_note", "args": {"text": "x"}}], "ok"])
    session = Agent(model, tools=[read_notes, write_note], runtime=Runtime.supervised()).session()
    paused = session.run_sync("update the notes")
    assert paused.status == "needs_approval" and [p.name for p in paused.pending] == ["write_note"]
    assert paused.tool_calls[0].content == "notes"  # read-only ran without asking
    assert paused.approve().resume_sync().status == "completed"


def test_autonomous_denies_what_would_need_a_person() -> None:
    @tool(requires_approval=True)
    def pay(amount: int) -> str:
        """Pay."""
        return "paid"

    model = Model.scripted([[{"tool": "wipe", "args": {}}, {"tool": "pay", "args": {"amount": 5}},
                             {"tool": "write_note", "args": {"text": "x"}}], "done"])
    result = Agent(model, tools=[wipe, pay, write_note], runtime=Runtime.autonomous()).run_sync("go")
    assert result.status == "completed"
    assert [(c.name, c.is_error) for c in result.tool_calls] == [("wipe", True), ("pay", True), ("write_note", False)]
    assert "no one is here to approve 'pay'" in (result.tool_calls[1].content or "")


def test_profiles_set_their_policies_and_each_can_be_replaced() -> None:
    assert Runtime.sdk().harness.kind == "single" and Runtime.sdk().quality is None
    long_run = Runtime.long_running(criteria=["complete"])
    assert (long_run.profile, long_run.harness.kind, long_run.limits.max_turns) == ("long_running", "retry", 200)
    assert long_run.context.compact_at == 0.7 and "tool" in long_run.feedback.kinds
    auto = Runtime.autonomous(subagents={"r": researcher()}, criteria=["x"])
    assert auto.delegation.agents.keys() == {"r"} and auto.harness.options == {"max_attempts": 3}
    custom = Runtime.supervised(harness=Harness.best_of(2), quality=LONG_ENOUGH)
    assert custom.harness.kind == "best_of" and custom.quality is LONG_ENOUGH
    assert set(Runtime.sdk().describe()) >= {"profile", "governance", "harness", "quality", "delegation", "feedback"}
    with pytest.raises(ConfigError, match="unknown option"):
        Runtime.autonomous(governace=None)
    # long_running: the retry harness really retries against its criteria judge
    judge_model = Model.function(lambda r: "PASS" if "longer" in r.messages[0].text else "FAIL\ntoo short")
    agent = Agent(drafting_model(), runtime=Runtime.long_running(
        criteria=["complete"], quality=QualityGate.criteria(["complete"], model=judge_model)))
    assert agent.run_sync("Explain.").attempts == 2
