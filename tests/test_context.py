"""ContextProtocol: partitions, budget, compaction, renewal, continuity and calibration."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest

from loom_nb import (Agent, Capability, ConfigError, Message, Model, ModelRequest, ModelResponse,
                     RunContext, RuntimeTask, SessionConfig, TextPart, Usage, tool)
from loom_nb.context import estimate_tokens, message_tokens
from loom_nb.runtime import ContextProtocol, ContinuityPolicy, Runtime
from tests.backends import Backend


def _summarize(messages: Sequence[Message], instructions: str) -> str:
    return f"summary of {len(messages)} messages: " + "the pages said this and that. " * 10


@tool
def fetch(page: int) -> str:
    """Fetch a page of a long report."""
    return f"page {page}: " + "lorem ipsum dolor sit amet " * 60  # ~1600 characters


def _request_tokens(request: ModelRequest) -> int:
    tools = sum(estimate_tokens(t.name + t.description + json.dumps(t.parameters)) for t in request.tools)
    return estimate_tokens(request.system) + tools + sum(message_tokens(m) for m in request.messages)


def test_every_request_carries_a_snapshot_of_the_partitions() -> None:
    skills = Capability(name="skills", kind="skills", instructions="Skills: pdf-tables")
    model = Model.scripted([{"tool": "fetch", "args": {"page": 1}}, "done"], context_window=50_000)
    agent = Agent(model, "Be brief.", tools=[fetch], capabilities=[skills])
    task = RuntimeTask("Read the report", inputs={"pages": 3})
    result = agent.run_sync(task, RunContext(inputs={"reader": "ana"}))
    first, second = [e.data for e in result.events if e.type == "model.request"]
    assert set(first["context"]["partitions"]) == {"system", "skill", "memory", "working", "history"}
    assert first["context"]["window"] == 50_000 and first["context"]["window_source"] == "given"
    assert first["context"]["budget"] == 50_000 - 8_192
    assert first["content"] == {"system": "Be brief.", "skill": "Skills: pdf-tables", "memory": "",
                                "working": "Task inputs:\n- pages: 3\n\nRun inputs:\n- reader: ana"}
    assert second["content"] == {}  # nothing changed: contents are recorded once
    assert second["context"]["partitions"]["history"] > first["context"]["partitions"]["history"]
    assert model.requests[0].system == "Be brief.\n\nSkills: pdf-tables\n\nTask inputs:\n- pages: 3\n\nRun inputs:\n- reader: ana"
    total = first["context"]["total_tokens"]
    assert total == sum(first["context"]["partitions"].values())
    assert total == _request_tokens(model.requests[0])  # the snapshot counts what was sent


def test_window_sources() -> None:
    protocol = ContextProtocol()
    assert protocol.budget(Model.anthropic("claude-sonnet-5", api_key="k")).window == 1_000_000
    assert protocol.budget(Model.anthropic("claude-haiku-4-5", api_key="k")).source == "known"
    assert protocol.budget(Model.openai("gpt-5.4", api_key="k")).window == 1_050_000
    unknown = protocol.budget(Model.openai("my-local-model", api_key="k", base_url="http://127.0.0.1:9/v1"))
    assert (unknown.window, unknown.source) == (128_000, "default")
    assert ContextProtocol(window=9_000).budget(Model.scripted([], context_window=5)).window == 9_000
    with pytest.raises(ConfigError, match="compact_to < compact_at"):
        ContextProtocol(compact_at=0.5, compact_to=0.6)


def _long_session(store=None, *, window: int = 6_000, runs: int = 150, sid: str | None = None):
    """A session of many runs, each a tool call with a long result and an answer."""
    counter = {"n": 0}

    def model_fn(request: ModelRequest) -> object:
        counter["n"] += 1
        if request.messages[-1].role == "user":
            return {"tool": "fetch", "args": {"page": counter["n"]}}
        return f"Page read ({counter['n']})."

    # Every request is checked below: the opt-in that keeps all of them.
    model = Model.function(model_fn, context_window=window, keep_requests="all")
    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=1_000, summarizer=_summarize),
                          continuity=ContinuityPolicy(keep_recent=4))
    session = Agent(model, "You read reports.", tools=[fetch], runtime=runtime).session(
        SessionConfig(id=sid, store=store))
    results = [session.run_sync(f"Read page {i}") for i in range(runs)]
    return session, model, results


def test_hundreds_of_turns_stay_within_the_budget() -> None:
    session, model, results = _long_session(runs=150)
    assert all(r.status == "completed" for r in results)
    budget = 6_000 - 1_000
    assert len(model.requests) == 300
    assert max(_request_tokens(r) for r in model.requests) <= budget
    events = [e for r in results for e in r.events]
    requests = [e.data["context"] for e in events if e.type == "model.request"]
    assert max(c["total_tokens"] for c in requests) <= budget
    compactions = [e.data for e in events if e.type == "context.compacted"]
    renewals = [e.data for e in events if e.type == "context.renewed"]
    assert len(compactions) > 10 and len(renewals) >= 1
    for data in compactions:
        assert data["before_tokens"] > 0.8 * budget  # fired at its threshold
        assert data["after_tokens"] < data["before_tokens"]
        assert data["budget"] == budget
    for data in renewals:
        assert data["after_tokens"] < data["before_tokens"]
    # summaries land in the memory partition, not in history
    assert any(m.startswith("Summary of") or m.startswith("Handoff note") for m in session.memory)
    assert all("summary of" not in m.text for m in session.messages)
    assert "Memory of earlier work" in model.requests[-1].system
    assert model.requests[-1].messages[0].role == "user"  # providers need a user message first


def test_compaction_shrinks_old_tool_results_before_summarizing() -> None:
    def model_fn(request: ModelRequest) -> object:
        return ({"tool": "fetch", "args": {"page": len(request.messages)}}
                if request.messages[-1].role == "user" else "ok")

    summaries: list[int] = []

    def summarizer(messages: Sequence[Message], instructions: str) -> str:
        summaries.append(len(messages))
        return "s"

    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=500, shrink_over=50,
                                                  summarizer=summarizer, compact_to=0.6),
                          continuity=ContinuityPolicy(keep_recent=2))
    session = Agent(Model.function(model_fn, context_window=3_000), tools=[fetch],
                    runtime=runtime).session()
    events = [e for i in range(6) for e in session.run_sync(f"page {i}").events]
    first = next(e.data for e in events if e.type == "context.compacted")
    assert first["shrunk_results"] >= 1 and first["summarized_messages"] == 0 and summaries == []
    shrunk = [p for m in session.messages for p in m.tool_results if "removed by compaction" in p.content]
    assert shrunk


def test_a_model_can_summarize_and_its_usage_counts() -> None:
    judge_calls: list[ModelRequest] = []

    def summarizer_fn(request: ModelRequest) -> ModelResponse:
        judge_calls.append(request)
        return ModelResponse(message=Message(role="assistant", parts=(TextPart(text="They read pages."),)),
                             usage=Usage(input_tokens=111, output_tokens=7, requests=1))

    def model_fn(request: ModelRequest) -> object:
        return {"tool": "fetch", "args": {"page": 1}} if request.messages[-1].role == "user" else "ok"

    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=500, summarizer=Model.function(summarizer_fn)),
                          continuity=ContinuityPolicy(keep_recent=2))
    session = Agent(Model.function(model_fn, context_window=3_000), tools=[fetch], runtime=runtime).session()
    results = [session.run_sync(f"page {i}") for i in range(5)]
    compacted = [e.data for r in results for e in r.events if e.type == "context.compacted"
                 and e.data["summarized_messages"]]
    assert compacted and compacted[0]["summary_method"] == "model function:function"
    assert judge_calls[0].system.startswith("Summarize the conversation")
    assert "Assistant called fetch" in judge_calls[0].messages[0].text
    assert any("They read pages." in m for m in session.memory)
    run = next(r for r in results if any(e.type == "context.compacted" for e in r.events))
    assert run.usage.input_tokens >= 111


def test_a_failing_summarizer_falls_back_to_an_extractive_summary() -> None:
    def broken(messages: Sequence[Message], instructions: str) -> str:
        raise TimeoutError("summarizer down")

    def model_fn(request: ModelRequest) -> object:
        return {"tool": "fetch", "args": {"page": 2}} if request.messages[-1].role == "user" else "ok"

    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=500, summarizer=broken),
                          continuity=ContinuityPolicy(keep_recent=2))
    session = Agent(Model.function(model_fn, context_window=3_000), tools=[fetch], runtime=runtime).session()
    results = [session.run_sync(f"page {i}") for i in range(5)]
    assert all(r.status == "completed" for r in results)
    methods = [e.data.get("summary_method") for r in results for e in r.events if e.type == "context.compacted"]
    assert "extractive (summarizer failed: TimeoutError: summarizer down)" in methods


def test_the_test_doubles_input_tokens_count_every_request_whole() -> None:
    # The double counts only the new messages of a request that extends its previous one; a
    # compacted or renewed history, or another session's request in between, is counted afresh.
    session, model, results = _long_session(runs=40)
    other = Agent(Model.scripted(["fine"] * 3), "Other.").session()
    for i in range(3):
        other.run_sync(f"hello {i}")  # requests the first session's next one does not extend
        results.append(session.run_sync(f"Read page again {i}"))
    events = [e for r in results for e in r.events]
    assert any(e.type == "context.compacted" for e in events)
    reported = [e.data["usage"]["input_tokens"] for e in events if e.type == "model.response"]
    assert reported == [_request_tokens(r) for r in model.requests]


def test_an_item_bigger_than_the_budget_is_cut_with_a_marker() -> None:
    @tool
    def dump() -> str:
        """Return a huge log."""
        return "x" * 100_000

    model = Model.scripted([{"tool": "dump", "args": {}}, "done"], context_window=4_000)
    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=500))
    result = Agent(model, tools=[dump], runtime=runtime).run_sync("show the log")
    tool_result = next(e.data for e in result.events if e.type == "tool.result")
    assert tool_result["truncated_from"] == 100_000
    assert "characters cut here by loom_nb to fit the context budget" in tool_result["content"]
    assert _request_tokens(model.requests[1]) <= 3_500
    assert result.status == "completed"


def test_fixed_partitions_too_big_for_the_window_fail_clearly() -> None:
    agent = Agent(Model.scripted(["x"], context_window=1_000), "rule " * 2_000,
                  runtime=Runtime.sdk(context=ContextProtocol(output_reserve=100)))
    result = agent.run_sync("hi")
    assert result.status == "failed"
    assert "instructions, tools, skills and working context use" in (result.error or "")
    assert "larger" in (result.error or "")


def test_renewal_carries_open_tasks() -> None:
    failures = {"impossible": 1, "failed once": 1}

    def model_fn(request: ModelRequest) -> object:
        goal = request.messages[-1].text
        if failures.get(goal):
            failures[goal] -= 1
            raise RuntimeError("no")
        return {"tool": "fetch", "args": {"page": 1}} if request.messages[-1].role == "user" else "ok"

    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=500, summarizer=_summarize, compact_to=0.3,
                                                  max_memory=0.08),
                          continuity=ContinuityPolicy(keep_recent=2, renewal_recent=0))
    session = Agent(Model.function(model_fn, context_window=3_000), tools=[fetch], runtime=runtime).session()
    assert session.run_sync("impossible").status == "failed"
    assert session.run_sync("failed once").status == "failed"
    assert session.run_sync("failed once").status == "completed"  # done on a second try
    results = [session.run_sync(f"page {i}") for i in range(24)]
    renewed = [e.data for r in results for e in r.events if e.type == "context.renewed"]
    assert renewed and renewed[0]["open_tasks"] == ["impossible"]
    assert any("Open tasks" in m and "- impossible" in m for m in session.memory)


def test_calibration_follows_the_reported_input_tokens() -> None:
    def model_fn(request: ModelRequest) -> ModelResponse:
        reported = 2 * _request_tokens(request)  # a provider whose tokenizer counts double
        return ModelResponse(message=Message(role="assistant", parts=(TextPart(text="ok"),)),
                             usage=Usage(input_tokens=reported, output_tokens=1, requests=1))

    session = Agent(Model.function(model_fn, context_window=100_000)).session()
    for _ in range(6):
        result = session.run_sync("hello there")
    assert 1.9 <= session.context.factor <= 2.0
    request = next(e.data["context"] for e in result.events if e.type == "model.request")
    assert request["total_tokens"] >= 1.9 * _request_tokens(session.agent.model.requests[-1])


def test_a_restored_session_resumes_with_the_carried_over_context(backend: Backend) -> None:
    path = backend.spec
    session, _, _ = _long_session(path, runs=40, sid="report")
    memory, kept = list(session.memory), [m.to_dict() for m in session.messages]
    assert memory
    script = textwrap.dedent(f"""
        import json
        from loom_nb import Agent, Model, SessionConfig
        from loom_nb.runtime import ContinuityPolicy, Runtime
        for restore in ("checkpoint", "full"):
            model = Model.scripted(["resumed"], context_window=10**6)
            runtime = Runtime.sdk(continuity=ContinuityPolicy(restore=restore))
            session = Agent(model, runtime=runtime).session(SessionConfig(id="report", store={str(path)!r}))
            session.run_sync("go on")
            print(json.dumps({{"memory": list(session.memory),
                              "messages": [m.to_dict() for m in session.messages[:-2]],
                              "system": model.requests[0].system, "sent": len(model.requests[0].messages)}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    checkpoint, full = (json.loads(line) for line in out.stdout.splitlines())
    assert checkpoint["memory"] == memory and checkpoint["messages"] == kept
    assert "Memory of earlier work" in checkpoint["system"] and memory[-1].split("\n")[0] in checkpoint["system"]
    assert full["memory"] == [] and full["sent"] == 40 * 4 + 2 + 1  # every stored message, the first go-on included


def test_session_notes_stay_in_the_working_partition_until_removed() -> None:
    model = Model.scripted(["a", "b"])
    session = Agent(model).session()
    session.notes.append("The user prefers metric units.")
    session.run_sync("Weather?")
    session.notes.clear()
    session.run_sync("And tomorrow?")
    assert "Notes:\n- The user prefers metric units." in model.requests[0].system
    assert "metric" not in model.requests[1].system
