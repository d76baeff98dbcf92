"""Images and documents on the wire: the exact request bodies the real SDKs send for them
(Anthropic Messages, OpenAI Chat Completions and Responses), and vision=False refusing them."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Document, Image, Message, Model
from loom_nb.errors import NotSupportedError
from loom_nb.messages import TextPart, ToolCall, ToolResult

from .conftest import FAST, request
from .fake_servers import FakeServer, SSEReply, anthropic_stream, chat_stream, responses_stream

pytestmark = pytest.mark.anyio

#: A real 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAfbLI3wAAAABJRU5ErkJggg==")
PNG_B64 = base64.b64encode(PNG).decode()
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
PDF_B64 = base64.b64encode(PDF).decode()

IMAGE = Image(PNG)
PDF_DOC = Document(PDF, name="report.pdf")
NOTES = Document.from_text("line one\nline two", name="notes.txt")
URL_IMAGE = Image("https://example.com/cat.png")

PROMPT = Message(role="user", parts=(TextPart(text="What is in these?"), IMAGE, PDF_DOC, NOTES,
                                     URL_IMAGE))
#: A tool that returned an image, then the user goes on.
TOOL_TURN = (
    Message.user("Plot it."),
    Message(role="assistant", parts=(ToolCall(id="call_1", name="get_weather", args={}),)),
    Message(role="tool", parts=(ToolResult(call_id="call_1", name="get_weather",
                                           content="Returned image (image/png, 0.1 KB).",
                                           media=(IMAGE,)),)),
)


def anthropic(server: FakeServer) -> Model:
    # cache=False: the bodies compared here hold no prompt-caching breakpoints.
    return Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, cache=False,
                           **FAST)


def openai(server: FakeServer, api: str = "chat", **kwargs: Any) -> Model:
    return Model.openai("gpt-5.4", api_key="sk", base_url=f"{server.url}/v1", api=api,  # type: ignore[arg-type]
                        **{**FAST, **kwargs})


async def test_anthropic_image_and_document_blocks(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["ok"])))
    await anthropic(server).request(request(PROMPT))
    assert server.last.body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": PDF_B64}, "title": "report.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "line one\nline two"}, "title": "notes.txt"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]}]


async def test_anthropic_tool_result_holds_the_image(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["ok"])))
    await anthropic(server).request(request(*TOOL_TURN))
    last = server.last.body["messages"][-1]
    assert last == {"role": "user", "content": [{
        "type": "tool_result", "tool_use_id": "call_1", "is_error": False, "content": [
            {"type": "text", "text": "Returned image (image/png, 0.1 KB)."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_B64}}]}]}


async def test_chat_content_parts(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["ok"])))
    await openai(server).request(request(PROMPT))
    assert server.last.body["messages"][1:] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "file", "file": {"filename": "report.pdf",
                                  "file_data": f"data:application/pdf;base64,{PDF_B64}"}},
        {"type": "text", "text": "Document 'notes.txt' (text/plain):\n\nline one\nline two"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]}]


async def test_chat_tool_images_follow_the_tool_messages(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["ok"])))
    await openai(server).request(request(*TOOL_TURN))
    tool, follow = server.last.body["messages"][-2:]
    assert tool == {"role": "tool", "tool_call_id": "call_1",
                    "content": "Returned image (image/png, 0.1 KB)."}
    assert follow == {"role": "user", "content": [
        {"type": "text", "text": "Returned by the tool call call_1 (get_weather):"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]}


async def test_chat_refuses_a_pdf_url_before_sending(server: FakeServer) -> None:
    with pytest.raises(NotSupportedError, match="api='responses'"):
        await openai(server).request(request(Message(role="user", parts=(
            TextPart(text="Read"), Document("https://example.com/a.pdf")))))
    assert server.requests == []


async def test_responses_input_parts(server: FakeServer) -> None:
    server.add(SSEReply(responses_stream(text=["ok"])))
    await openai(server, api="responses").request(request(
        Message(role="user", parts=(*PROMPT.parts, Document("https://example.com/a.pdf")))))
    assert server.last.body["input"] == [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "What is in these?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"},
        {"type": "input_file", "filename": "report.pdf",
         "file_data": f"data:application/pdf;base64,{PDF_B64}"},
        {"type": "input_text", "text": "Document 'notes.txt' (text/plain):\n\nline one\nline two"},
        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"},
        {"type": "input_file", "file_url": "https://example.com/a.pdf"},
    ]}]


async def test_responses_function_output_holds_the_image(server: FakeServer) -> None:
    server.add(SSEReply(responses_stream(text=["ok"])))
    await openai(server, api="responses").request(request(*TOOL_TURN))
    assert server.last.body["input"][-1] == {
        "type": "function_call_output", "call_id": "call_1", "output": [
            {"type": "input_text", "text": "Returned image (image/png, 0.1 KB)."},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}",
             "detail": "auto"}]}


async def test_a_text_only_server_fails_before_sending(server: FakeServer) -> None:
    agent = Agent(openai(server, vision=False))
    result = await agent.run(["Describe", IMAGE])
    assert result.status == "failed" and result.error_type == "ConfigError"
    assert "does not take images or PDFs (vision=False)" in (result.error or "")
    assert server.requests == []  # nothing was sent
    # A text document is text: it goes to a text-only model.
    server.add(SSEReply(chat_stream(text=["two lines"])))
    result = await agent.run(["Summarize", NOTES])
    assert result.status == "completed"
    assert server.last.body["messages"][-1]["content"][1]["text"].endswith("line one\nline two")


async def test_vision_must_be_a_bool(server: FakeServer) -> None:
    with pytest.raises(ConfigError, match="vision=...") :
        openai(server, vision="no")
