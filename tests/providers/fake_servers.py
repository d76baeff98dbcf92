"""Loopback HTTP servers that speak the Anthropic and OpenAI wire protocols (JSON and SSE).

A :class:`FakeServer` plays a queue of scripted replies, one per request, and records every
request (method, path, headers, JSON body, arrival time) so that tests can assert exactly what
the real SDK clients sent. Faults are replies too: an error status with headers, a stream that is
cut mid-way (the socket is shut down inside a chunked body), a stream that hangs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, TypeAlias

__all__ = [
    "FakeServer",
    "JSONReply",
    "Recorded",
    "SSEReply",
    "anthropic_error",
    "anthropic_stream",
    "chat_stream",
    "openai_error",
    "responses_stream",
]


@dataclass
class JSONReply:
    """A plain JSON response (an error, usually); ``delay``: seconds before it is sent."""

    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class SSEReply:
    """A ``text/event-stream`` response, written frame by frame as HTTP chunks.

    ``cut_after``: shut the socket down after that many frames, inside the chunked body.
    ``hang_after``: after that many frames, stop writing until the server closes.
    ``delay``: seconds before the response starts (nothing, not even headers, is sent).
    """

    frames: list[str]
    cut_after: int | None = None
    hang_after: int | None = None
    frame_delay: float = 0.0
    delay: float = 0.0


#: A reply made from the request's JSON body when it arrives (e.g. a server that tracks a cache).
Dynamic: TypeAlias = Callable[[Any], "JSONReply | SSEReply"]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


class FakeServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with a random port, scripted per test."""

    def __init__(self) -> None:
        self.replies: deque[JSONReply | SSEReply | Dynamic] = deque()
        self.requests: list[Recorded] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, *replies: JSONReply | SSEReply | Dynamic) -> FakeServer:
        with self._lock:
            self.replies.extend(replies)
        return self

    def next_reply(self) -> JSONReply | SSEReply | Dynamic:
        with self._lock:
            if self.replies:
                return self.replies.popleft()
        # 418 is not retried by the providers: a test that forgot a reply fails at once.
        return JSONReply(418, {"error": {"type": "test_error",
                                         "message": "fake server: no scripted reply left"}})

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so SDK connection pools really pool
    fake: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake.requests.append(Recorded(self.command, self.path, headers, body,
                                           time.monotonic()))
        reply = self.fake.next_reply()
        if callable(reply):
            reply = reply(body)
        if reply.delay:
            self.fake.closing.wait(reply.delay)  # a slow server; closing the fake ends the wait
        try:
            if isinstance(reply, JSONReply):
                self._json(reply)
            else:
                self._sse(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test): nothing to do

    def _json(self, reply: JSONReply) -> None:
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, reply: SSEReply) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i, frame in enumerate(reply.frames):
            if reply.cut_after is not None and i == reply.cut_after:
                self._cut()
                return
            if reply.hang_after is not None and i == reply.hang_after:
                self.wfile.flush()
                self.fake.closing.wait(30)
                self._cut()
                return
            data = frame.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            if reply.frame_delay:
                time.sleep(reply.frame_delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# -- Anthropic ------------------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def anthropic_stream(
    *,
    text: list[str] | None = None,
    tools: list[tuple[str, str, list[str]]] | None = None,
    stop_reason: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_read: int = 0,
    cache_write: int = 0,
    model: str = "claude-sonnet-5",
    thinking: list[str] | None = None,
    signature: str = "",
    redacted: str | None = None,
) -> list[str]:
    """The SSE frames of one Messages API stream: thinking, text chunks, then tool_use blocks.

    ``tools`` holds ``(id, name, [partial_json, ...])``. ``thinking`` chunks stream as
    thinking_delta events, followed by one signature_delta (as Claude sends them);
    ``redacted`` adds a redacted_thinking block with that data after the thinking.
    """
    frames = [_event("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                  "cache_read_input_tokens": cache_read,
                  "cache_creation_input_tokens": cache_write}}})]
    frames.append(_event("ping", {"type": "ping"}))
    index = 0
    if thinking is not None:
        frames.append(_event("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
        for chunk in thinking:
            frames.append(_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "thinking_delta", "thinking": chunk}}))
        frames.append(_event("content_block_delta", {
            "type": "content_block_delta", "index": index,
            "delta": {"type": "signature_delta", "signature": signature}}))
        frames.append(_event("content_block_stop", {"type": "content_block_stop",
                                                    "index": index}))
        index += 1
    if redacted is not None:
        frames.append(_event("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "redacted_thinking", "data": redacted}}))
        frames.append(_event("content_block_stop", {"type": "content_block_stop",
                                                    "index": index}))
        index += 1
    if text:
        frames.append(_event("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "text", "text": ""}}))
        for chunk in text:
            frames.append(_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": chunk}}))
        frames.append(_event("content_block_stop", {"type": "content_block_stop",
                                                    "index": index}))
        index += 1
    for call_id, name, parts in tools or []:
        frames.append(_event("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}}))
        for part in parts:
            frames.append(_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": part}}))
        frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    stop = stop_reason or ("tool_use" if tools else "end_turn")
    frames.append(_event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": stop, "stop_sequence": None},
                                           "usage": {"output_tokens": output_tokens}}))
    frames.append(_event("message_stop", {"type": "message_stop"}))
    return frames


def anthropic_error(status: int, kind: str, message: str,
                    headers: dict[str, str] | None = None) -> JSONReply:
    return JSONReply(status, {"type": "error", "error": {"type": kind, "message": message}},
                     headers or {})


# -- OpenAI chat completions ---------------------------------------------------------------------


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-5.4", "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": finish}]}


def chat_stream(
    *,
    text: list[str] | None = None,
    tools: list[tuple[str, str, list[str]]] | None = None,
    finish_reason: str | None = None,
    prompt_tokens: int = 12,
    completion_tokens: int = 7,
    cached_tokens: int = 0,
    usage: bool = True,
) -> list[str]:
    """The SSE frames of one streamed chat completion, ending in ``data: [DONE]``.

    Tool calls stream as real servers do: id and name on the first delta of an index only.
    """
    frames = [_data(_chunk({"role": "assistant", "content": ""}))]
    for chunk in text or []:
        frames.append(_data(_chunk({"content": chunk})))
    for index, (call_id, name, parts) in enumerate(tools or []):
        frames.append(_data(_chunk({"tool_calls": [{
            "index": index, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": ""}}]})))
        for part in parts:
            frames.append(_data(_chunk({"tool_calls": [{
                "index": index, "function": {"arguments": part}}]})))
    finish = finish_reason or ("tool_calls" if tools else "stop")
    frames.append(_data(_chunk({}, finish)))
    if usage:
        frames.append(_data({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-5.4", "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached_tokens}}}))
    frames.append("data: [DONE]\n\n")
    return frames


def openai_error(status: int, message: str, *, code: str | None = None,
                 kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> JSONReply:
    return JSONReply(status, {"error": {"message": message, "type": kind, "param": None,
                                        "code": code}}, headers or {})


# -- OpenAI Responses ----------------------------------------------------------------------------


def responses_stream(
    *,
    text: list[str] | None = None,
    tools: list[tuple[str, str, list[str]]] | None = None,
    input_tokens: int = 20,
    output_tokens: int = 9,
    cached_tokens: int = 0,
    status: str = "completed",
    incomplete_reason: str | None = None,
    reasoning: tuple[list[str], str | None] | None = None,
) -> list[str]:
    """The typed SSE events of one streamed Responses API call.

    ``reasoning`` is ``([summary text, ...], encrypted_content or None)``: a reasoning item first.
    """
    seq = iter(range(10_000))
    frames: list[str] = []

    def emit(kind: str, **data: Any) -> None:
        frames.append(f"event: {kind}\ndata: "
                      f"{json.dumps({'type': kind, 'sequence_number': next(seq), **data})}\n\n")

    base = {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-5.4",
            "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    emit("response.created", response={**base, "status": "in_progress"})
    output: list[dict[str, Any]] = []
    if reasoning is not None:
        summary, encrypted = reasoning
        item = {"id": "rs_1", "type": "reasoning", "summary": []}
        emit("response.output_item.added", output_index=0, item=item)
        done = {**item, "summary": [{"type": "summary_text", "text": t} for t in summary]}
        if encrypted is not None:
            done["encrypted_content"] = encrypted
        emit("response.output_item.done", output_index=0, item=done)
        output.append(done)
    if text:
        index = len(output)
        item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress",
                "content": []}
        emit("response.output_item.added", output_index=index, item=item)
        for chunk in text:
            emit("response.output_text.delta", item_id="msg_1", output_index=index,
                 content_index=0, delta=chunk, logprobs=[])
        done = {**item, "status": "completed", "content": [
            {"type": "output_text", "text": "".join(text), "annotations": [], "logprobs": []}]}
        emit("response.output_item.done", output_index=index, item=done)
        output.append(done)
    for call_id, name, parts in tools or []:
        index = len(output)
        item = {"id": f"fc_{index}", "type": "function_call", "call_id": call_id, "name": name,
                "arguments": "", "status": "in_progress"}
        emit("response.output_item.added", output_index=index, item=item)
        for part in parts:
            emit("response.function_call_arguments.delta", item_id=item["id"],
                 output_index=index, delta=part)
        done = {**item, "arguments": "".join(parts), "status": "completed"}
        emit("response.output_item.done", output_index=index, item=done)
        output.append(done)
    final = {**base, "status": status, "output": output,
             "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                       "total_tokens": input_tokens + output_tokens,
                       "input_tokens_details": {"cached_tokens": cached_tokens},
                       "output_tokens_details": {"reasoning_tokens": 0}}}
    if incomplete_reason:
        final["incomplete_details"] = {"reason": incomplete_reason}
    emit("response.completed" if status == "completed" else f"response.{status}", response=final)
    return frames
