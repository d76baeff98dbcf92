"""Model.fallback with the real SDK clients: a primary that is down (after its retries) or
rate-limited hands the turn to the next model; events and runs_df say who answered each turn."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Image, Model, SessionConfig
from loom_nb.errors import IncompleteStreamError, ModelAuthenticationError, ModelRateLimitError

from .conftest import FAST, free_port
from .fake_servers import (FakeServer, SSEReply, anthropic_error, anthropic_stream, chat_stream,
                           openai_error)

pytestmark = pytest.mark.anyio

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360606060000000050001a5f645400000000049454e44ae426082")


@pytest.fixture
def backup() -> Any:
    fake = FakeServer()
    try:
        yield fake
    finally:
        fake.close()


def primary(server: FakeServer, **kwargs: Any) -> Model:
    return Model.openai("gpt-5.4", api_key="sk", base_url=f"{server.url}/v1",
                        **{**FAST, "max_retries": 1, **kwargs})


def secondary(server: FakeServer) -> Model:
    # cache=False: the bodies compared here hold no prompt-caching breakpoints.
    return Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, cache=False,
                           **FAST)


async def test_an_unavailable_primary_hands_the_turn_over(server: FakeServer,
                                                          backup: FakeServer) -> None:
    server.add(openai_error(503, "overloaded", kind="server_error"),
               openai_error(503, "overloaded", kind="server_error"),  # its one retry
               SSEReply(chat_stream(text=["from openai"])))
    backup.add(SSEReply(anthropic_stream(text=["from claude"])))
    model = Model.fallback(primary(server), secondary(backup))
    session = Agent(model).session(SessionConfig())
    first = await session.run("one")
    second = await session.run("two")  # the primary is back: it answers again
    assert (first.output, second.output) == ("from claude", "from openai")
    assert len(server.requests) == 3 and len(backup.requests) == 1
    types = [e.type for e in first.events]
    assert types.count("model.retry") == 1 and types.count("model.fallback") == 1
    (fallback,) = [e.data for e in first.events if e.type == "model.fallback"]
    assert fallback == {"failed": "openai:gpt-5.4", "next": "anthropic:claude-sonnet-5",
                        "error": fallback["error"], "error_type": "ModelUnavailableError",
                        "discarded": False}
    answered = [e.data["answered_by"] for r in (first, second) for e in r.events
                if e.type == "model.response"]
    assert answered == ["anthropic:claude-sonnet-5", "openai:gpt-5.4"]
    # Both got the same conversation: the backup's request holds the prompt.
    assert backup.last.body["messages"] == [{"role": "user", "content": [{"type": "text",
                                                                          "text": "one"}]}]
    pytest.importorskip("pandas")
    from loom_nb.export import runs_df

    frame = runs_df(session)
    assert [json.loads(v) for v in frame["turn_models"]] == [["anthropic:claude-sonnet-5"],
                                                             ["openai:gpt-5.4"]]
    assert model.identifier == "fallback:openai:gpt-5.4,anthropic:claude-sonnet-5"


async def test_rate_limits_and_refused_connections_fall_back(backup: FakeServer) -> None:
    refused = Model.openai("gpt-5.4", api_key="sk", base_url=f"http://127.0.0.1:{free_port()}/v1",
                           **{**FAST, "max_retries": 0})
    backup.add(SSEReply(anthropic_stream(text=["ok"])))
    result = await Agent(Model.fallback(refused, secondary(backup))).run("hi")
    assert result.output == "ok"
    (event,) = [e.data for e in result.events if e.type == "model.fallback"]
    assert event["error_type"] == "ModelConnectionError"


async def test_errors_not_listed_end_the_run(server: FakeServer, backup: FakeServer) -> None:
    server.add(openai_error(401, "bad key", kind="authentication_error"))
    result = await Agent(Model.fallback(primary(server), secondary(backup))).run("hi")
    assert result.status == "failed" and result.error_type == "ModelAuthenticationError"
    assert backup.requests == []  # a wrong key is not hidden by another model


async def test_the_last_model_failing_fails_the_run(server: FakeServer, backup: FakeServer) -> None:
    server.add(*[openai_error(429, "slow down", kind="rate_limit_error",
                              headers={"retry-after": "0"})] * 2)
    backup.add(anthropic_error(400, "invalid_request_error", "temperature: out of range"))
    model = Model.fallback(primary(server), secondary(backup), on=(ModelRateLimitError,))
    result = await Agent(model).run("hi")
    assert result.status == "failed" and result.error_type == "ModelRequestError"
    assert "temperature: out of range" in (result.error or "")
    assert [e.type for e in result.events].count("model.fallback") == 1


async def test_a_turn_cut_after_text_is_answered_whole_by_the_next(server: FakeServer,
                                                                   backup: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["Half ", "an ", "answer"]), cut_after=3))
    backup.add(SSEReply(anthropic_stream(text=["Whole answer."])))
    model = Model.fallback(primary(server), secondary(backup), on=(IncompleteStreamError,))
    session = Agent(model).session(SessionConfig())
    result = await session.run("Tell me")
    assert result.output == "Whole answer."
    (event,) = [e.data for e in result.events if e.type == "model.fallback"]
    assert event["discarded"] is True
    assert [m.text for m in session.messages] == ["Tell me", "Whole answer."]


async def test_a_text_only_model_is_passed_over_for_images(server: FakeServer,
                                                           backup: FakeServer) -> None:
    backup.add(SSEReply(anthropic_stream(text=["a pixel"])))
    model = Model.fallback(primary(server, vision=False), secondary(backup))
    result = await Agent(model).run(["What is it?", Image(PNG)])
    assert result.output == "a pixel" and server.requests == []
    (event,) = [e.data for e in result.events if e.type == "model.fallback"]
    assert event["error_type"] == "ConfigError"
    only_text = Model.fallback(primary(server, vision=False), primary(server, vision=False))
    failed = await Agent(only_text).run(["What is it?", Image(PNG)])
    assert failed.error_type == "ConfigError" and server.requests == []


def test_fallback_needs_two_models_and_exception_classes() -> None:
    with pytest.raises(ConfigError, match="at least two models"):
        Model.fallback(Model.scripted(["a"]))
    with pytest.raises(ConfigError, match="takes exception classes"):
        Model.fallback(Model.scripted(["a"]), Model.scripted(["b"]), on=("429",))  # type: ignore[arg-type]
    chain = Model.fallback(Model.scripted(["a"], context_window=1000),
                           Model.scripted(["b"], context_window=500))
    assert chain.context_window == 500 and chain.vision
    assert ModelAuthenticationError not in chain.on
