"""Anthropic's prompt cache as the Messages API bills it, for the loopback wire server.

The API caches the prefix of a request (tools, then system, then the messages' content blocks)
up to each block marked ``cache_control``, when that prefix is at least the model's minimum
length. A later request whose prefix matches an entry at one of its breakpoints, or at up to 20
blocks before one, reads that much from the cache; what lies between the hit and its last
breakpoint is written; the rest is plain input. The usage says so:
``input_tokens`` (after the last breakpoint, or not cached), ``cache_read_input_tokens`` and
``cache_creation_input_tokens``, which add up to the whole prompt. Tokens are estimated as
characters / 4 of each block's JSON (the real tokenizer differs; the accounting does not).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .fake_servers import SSEReply, anthropic_stream

__all__ = ["PromptCache", "cached_turns"]


class PromptCache:
    """The cache entries of one fake Anthropic server, and the usage of each request."""

    def __init__(self, *, min_tokens: int = 1024, lookback: int = 20) -> None:
        self.min_tokens = min_tokens
        self.lookback = lookback
        self.entries: set[str] = set()

    def usage(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(input_tokens, cache_read, cache_write) of a request, updating the entries."""
        blocks = _blocks(body)
        hashes, totals, marks = [], [], []
        digest, total = hashlib.sha256(), 0
        for index, (text, marked) in enumerate(blocks):
            digest.update(text.encode())
            hashes.append(digest.copy().hexdigest())
            total += max(1, math.ceil(len(text) / 4))
            totals.append(total)
            if marked:
                marks.append(index)
        hit = -1
        for mark in marks:
            for j in range(mark, max(-1, mark - self.lookback - 1), -1):
                if hashes[j] in self.entries:
                    hit = max(hit, j)
                    break
        read = totals[hit] if hit >= 0 else 0
        written = hit
        for mark in marks:
            if mark > hit and totals[mark] >= self.min_tokens:
                self.entries.add(hashes[mark])
                written = max(written, mark)
        write = totals[written] - read if written > hit else 0
        return total - read - write, read, write


def _blocks(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """The request's cacheable blocks in cache order, as (canonical JSON, marked)."""
    out: list[tuple[str, bool]] = []

    def add(prefix: str, block: dict[str, Any]) -> None:
        plain = {k: v for k, v in block.items() if k != "cache_control"}
        out.append((prefix + json.dumps(plain, sort_keys=True), "cache_control" in block))

    for tool in body.get("tools") or []:
        add("tool:", tool)
    system = body.get("system")
    if isinstance(system, str) and system:
        add("system:", {"type": "text", "text": system})
    elif isinstance(system, list):
        for block in system:
            add("system:", block)
    for number, message in enumerate(body.get("messages") or []):
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content:
            add(f"{number}:{message['role']}:", block)
    return out


def cached_turns(cache: PromptCache, tool: str = "lookup", answer: str = "Done.") -> Any:
    """A reply for a fake server: a call of ``tool`` after a user prompt, ``answer`` after its
    result; the usage as the cache bills the request."""
    def reply(body: Any) -> SSEReply:
        uncached, read, write = cache.usage(body)
        last = body["messages"][-1]["content"][-1]
        usage = {"input_tokens": uncached, "cache_read": read, "cache_write": write,
                 "output_tokens": 12}
        if last.get("type") == "tool_result":
            return SSEReply(anthropic_stream(text=[answer], **usage))
        count = len(body["messages"])
        return SSEReply(anthropic_stream(tools=[(f"toolu_{count}", tool, ['{"key": "k"}'])], **usage))
    return reply
