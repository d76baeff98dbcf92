"""Prompt caching for Claude: ``cache_control`` breakpoints on the stable prefix of a request.

Anthropic caches a request's prefix up to each block marked ``cache_control`` (at most four per
request) and bills a later request that starts with the same prefix at a tenth of the input price
for it (a write costs 1.25 times the price, once). The prefix is, in this order: the tools, the
system prompt, then the messages. A loom_nb run sends the same tools and system prompt every turn
and only appends to the conversation, so by default (``Model.anthropic(name, cache=True)``) the
breakpoints go on:

* ``"tools"``: the last tool definition (all tools are cached together);
* ``"system"``: the system prompt (instructions, skills, memory and the run's working context);
* ``"history"``: the last block of the newest message, so that the next turn reads the whole
  conversation so far from the cache, and the last block of the user message before it (the
  previous turn's breakpoint), which the next request still matches however many blocks (parallel
  tool results) this turn added: Anthropic looks back only 20 blocks from a breakpoint.

``cache=False`` sends no breakpoint; ``cache=("tools", "system")`` (any of the three names)
places them only there. A prefix shorter than the model's minimum (1,024 tokens for most Claude
models) is not cached by Anthropic: nothing fails, the usage just shows no cache tokens.
The default five-minute cache is used; a one-hour TTL (priced differently) is not offered yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias, get_args

from ..errors import ConfigError

__all__ = ["CachePlace", "add_breakpoints", "cache_places"]

CachePlace: TypeAlias = Literal["tools", "system", "history"]
_PLACES: tuple[CachePlace, ...] = get_args(CachePlace)
_MARK = {"type": "ephemeral"}


def cache_places(key: str, value: Any) -> tuple[CachePlace, ...]:
    """The ``cache=`` setting of ``Model.anthropic``: True (everywhere), False, or the places."""
    if value is True:
        return _PLACES
    if value is False or value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, Sequence) and all(v in _PLACES for v in value):
        return tuple(p for p in _PLACES if p in value)
    raise ConfigError(f"The setting {key} takes True (cache tools, system and history), False (no "
                      f"prompt caching), or some of {list(_PLACES)}; got {value!r}.")


def add_breakpoints(kwargs: dict[str, Any], places: tuple[CachePlace, ...]) -> None:
    """Mark ``places`` in the ``messages.create`` keyword arguments (in place)."""
    if "tools" in places and kwargs.get("tools"):
        kwargs["tools"][-1] = {**kwargs["tools"][-1], "cache_control": dict(_MARK)}
    if "system" in places and kwargs.get("system"):
        kwargs["system"] = [{"type": "text", "text": kwargs["system"], "cache_control": dict(_MARK)}]
    if "history" in places:
        messages = kwargs["messages"]
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        # The newest message, and the user message the previous request ended with.
        for index in {len(messages) - 1, *users[-2:-1]}:
            if index >= 0:
                _mark_last_block(messages[index])


def _mark_last_block(message: dict[str, Any]) -> None:
    content = message["content"]
    for i in range(len(content) - 1, -1, -1):
        # Thinking blocks cannot carry cache_control; the block before them can.
        if content[i].get("type") not in ("thinking", "redacted_thinking"):
            content[i] = {**content[i], "cache_control": dict(_MARK)}
            return
