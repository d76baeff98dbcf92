"""Compatible servers (as found with the LiteLLM proxy and llama-cpp-python's server), through the
real SDK clients: what each failure says happened, and that it is not retried blindly."""

from __future__ import annotations

from typing import Any

import pytest

from loom_nb import Agent, Model
from loom_nb.errors import IncompleteStreamError, ModelConnectionError, ModelNotFoundError, ModelRequestError
from loom_nb.models._errors import connection_reason

from .conftest import FAST, free_port, request
from .fake_servers import FakeServer, JSONReply, SSEReply, chat_stream, openai_error

pytestmark = pytest.mark.anyio

COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hello"}}]}


def openai(server: FakeServer, api: str = "chat", **kwargs: Any) -> Model:
    return Model.openai("llama", base_url=f"{server.url}/v1", api=api,  # type: ignore[arg-type]
                        **{**FAST, **kwargs})


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_plain_json_body_to_a_streamed_request(server: FakeServer, api: str) -> None:
    server.add(JSONReply(200, COMPLETION), JSONReply(200, COMPLETION))
    with pytest.raises(IncompleteStreamError, match="plain application/json body") as caught:
        await openai(server, api).request(request())
    assert '"content": "hello"' in str(caught.value) and "closed early" not in str(caught.value)
    assert len(server.requests) == 1  # the same answer would come again: not retried


async def test_empty_200_stream(server: FakeServer) -> None:
    server.add(SSEReply([]), SSEReply([]))
    with pytest.raises(IncompleteStreamError, match="empty event stream"):
        await openai(server).request(request())
    assert len(server.requests) == 1


async def test_a_stream_cut_early_is_still_retried(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["hi"]), cut_after=1), SSEReply(chat_stream(text=["ok"])))
    response = await openai(server).request(request())
    assert response.message.text == "ok" and len(server.requests) == 2


async def test_missing_responses_route_is_not_model_not_found(server: FakeServer) -> None:
    server.add(JSONReply(404, {"detail": "Not Found"}))
    with pytest.raises(ModelRequestError, match="no route POST /v1/responses; use api='chat'"):
        await openai(server, "responses").request(request())
    server.add(openai_error(404, "The model `llama` does not exist", code="model_not_found"))
    with pytest.raises(ModelNotFoundError, match="'llama' was not found"):
        await openai(server).request(request())


async def test_failed_connection_names_the_reason() -> None:
    model = Model.openai("llama", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    result = await Agent(model).run("hi")
    assert result.error_type == "ModelConnectionError"
    assert "Connection refused" in (result.error or "") or "Connect call failed" in (result.error or "")
    assert ": ." not in (result.error or "")


def test_connection_reason_with_empty_messages() -> None:
    class Empty(Exception):
        def __str__(self) -> str:
            return ""

    try:
        try:
            raise Empty()
        except Empty as inner:
            raise ModelConnectionError("") from inner
    except ModelConnectionError as outer:
        assert connection_reason(outer) == "Empty (no reason given)"
    assert connection_reason(ValueError()) == "ValueError (no reason given)"


async def test_control_characters_never_reach_a_terminal_raw(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["red \x1b[31mALERT\x1b[0m\x07 done\r"])))
    result = await Agent(openai(server)).run("hi")
    assert result.text == "red \x1b[31mALERT\x1b[0m\x07 done\r"  # the exact answer is kept
    for shown in (str(result), repr(result), result.to_text(),
                  result._repr_mimebundle_()[0]["text/plain"]):
        assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "\\x1b[31mALERT" in str(result)
