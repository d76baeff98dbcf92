"""The test models keep a bounded window of requests (issue 25): memory flat in session length."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from loom_nb import Agent, ConfigError, Model, ModelRequest, tool
from loom_nb.models._requests import RequestLog


@tool
def note(n: int) -> str:
    """Write a note."""
    return f"noted {n}"


def _tool_then_answer(request: ModelRequest) -> object:
    if request.messages[-1].role == "user":
        return {"tool": "note", "args": {"n": len(request.messages)}}
    return "done"


def _live_requests() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is ModelRequest)


def test_a_long_session_keeps_the_first_and_last_requests_and_counts_all() -> None:
    model = Model.function(_tool_then_answer, keep_requests=3)
    session = Agent(model, tools=[note]).session()
    before = _live_requests()
    for i in range(40):
        assert session.run_sync(f"task {i}").status == "completed"
    requests = model.requests
    assert len(requests) == 80 and requests.dropped == 74
    assert [m.text for m in requests[0].messages] == ["task 0"]
    assert requests[2].messages[0].text == "task 0" and requests[2].messages[-1].text == "task 1"
    assert requests[-1] is requests.last is requests[79]
    assert requests[-1].messages[-2].role == "assistant"  # the last run's tool call, then its result
    assert [p for p, _ in requests.kept()] == [0, 1, 2, 77, 78, 79]
    # Only the six kept requests stay alive: nothing else holds a copy of the history.
    assert _live_requests() - before <= 6


def test_a_dropped_request_fails_loudly_naming_the_opt_in() -> None:
    model = Model.scripted(["a", "b", "c", "d", "e"], keep_requests=1)
    agent = Agent(model)
    for _ in range(5):
        agent.run_sync("hi")
    assert model.requests[0] is not None and model.requests[4] is model.requests[-1]
    with pytest.raises(ConfigError, match="keep_requests='all'"):
        model.requests[2]
    with pytest.raises(ConfigError, match="Request 1 of 5 was not kept"):
        list(model.requests)  # an iteration that skipped some would let a test pass on less
    with pytest.raises(ConfigError):
        model.requests[0:3]
    with pytest.raises(IndexError, match="out of range"):
        model.requests[5]
    assert model.requests[-1:] == [model.requests[4]]


def test_keep_all_is_the_opt_in_and_bad_values_are_refused() -> None:
    model = Model.scripted(["x"] * 70, keep_requests="all")
    agent = Agent(model)
    for _ in range(70):
        agent.run_sync("hi")
    assert len(list(model.requests)) == 70 and model.requests.dropped == 0
    assert len(model.requests[10:60]) == 50
    for bad in (0, -1, True, "some", 2.5):
        with pytest.raises(ConfigError, match="positive int"):
            RequestLog(bad)  # type: ignore[arg-type]


def test_the_default_window_covers_short_tests_whole() -> None:
    model = Model.function(lambda r: "ok")
    agent = Agent(model)
    for _ in range(64):
        agent.run_sync("hi")
    assert len(list(model.requests)) == 64  # 32 first + 32 last: nothing dropped yet
    agent.run_sync("one more")
    assert model.requests.dropped == 1 and model.requests[-1].messages[-1].text == "one more"


def test_the_replay_model_keeps_a_window_too(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    recorder = Model.record(Model.scripted(["one", "two", "three"]), path)
    agent = Agent(recorder)
    for prompt in ("a", "b", "c"):
        agent.run_sync(prompt)
    assert len(path.read_text().splitlines()) == 3 and json.loads(path.read_text().splitlines()[0])
    replay = Model.replay(path, keep_requests=1)
    agent = Agent(replay)
    outputs = [agent.run_sync(p).output for p in ("a", "b", "c")]
    assert outputs == ["one", "two", "three"]
    assert len(replay.requests) == 3 and replay.requests.dropped == 1
    assert replay.requests[-1].messages[-1].text == "c"
