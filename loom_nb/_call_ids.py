"""Every tool call of a run gets an id of its own, whatever the provider sent.

Providers and compatible servers do send ids that collide (two calls of one turn with the same
id, the same ``call_0`` in every turn) or are empty. The run loop keys results, approvals and
events by call id, so a collision lets one call's approval run another call, or one call's
result stand in for both. The loop therefore rewrites ids once, where it takes a model
response, before anything (events, governance, history) sees them: the rewritten assistant
message is what history keeps and what the next request sends back, so ``tool_use`` and
``tool_result`` (or ``tool_calls`` and ``tool`` messages) still match pairwise on every wire.

The rule is deterministic: the first call to use an id that is new in the run keeps it; a later
call with that id gets ``<id>_2`` (``_3``, ... until unused); an empty id becomes
``call_<turn>_<n>`` (the n-th call of that turn, from 1). ``_`` rather than another separator
because Anthropic accepts only ``[A-Za-z0-9_-]`` in tool-use ids. A ``/`` in a provider's id
becomes ``_``: ``/`` joins a delegate call's id to its sub-agent's call ids in approvals, and a
model must not be able to write an id that reads as a sub-agent's waiting call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from .messages import Message, Part, ToolCall

if TYPE_CHECKING:
    from .events import ResponseCallData
    from .models import ModelResponse

__all__ = ["call_data", "own_call_ids", "unique_call_ids"]


def own_call_ids(response: ModelResponse, turn: int, taken: set[str]) -> tuple[ModelResponse, dict[str, str]]:
    """``response`` with call ids unique in the run (see :func:`unique_call_ids`)."""
    message, renamed = unique_call_ids(response.message, turn, taken)
    return (replace(response, message=message) if renamed else response), renamed


def call_data(calls: tuple[ToolCall, ...], renamed: dict[str, str]) -> list[ResponseCallData]:
    """The calls as a ``model.response`` event lists them; a rewritten id keeps the provider's
    next to it (``provider_id``), so a trace still shows what the model sent."""
    listed: list[ResponseCallData] = []
    for c in calls:
        entry: ResponseCallData = {"id": c.id, "name": c.name, "args": c.args}
        if c.id in renamed:
            entry["provider_id"] = renamed[c.id]
        listed.append(entry)
    return listed


def unique_call_ids(message: Message, turn: int, taken: set[str]) -> tuple[Message, dict[str, str]]:
    """``message`` with every tool call id unique in the run; ``taken`` (the run's ids so far)
    gains the new ones. Also returns new id -> the provider's id, for each id that changed."""
    calls = message.tool_calls
    if not calls:
        return message, {}
    ids: list[str | None] = []
    for call in calls:  # first pass: every id that can stay reserves itself
        wanted = call.id.replace("/", "_") if call.id.strip() else None
        if wanted is not None and wanted == call.id and wanted not in taken:
            taken.add(wanted)
            ids.append(wanted)
        else:
            ids.append(None)
    renamed: dict[str, str] = {}
    for n, (call, kept) in enumerate(zip(calls, ids, strict=True), start=1):
        if kept is None:  # second pass: the others take a free derived id
            base = call.id.replace("/", "_") if call.id.strip() else f"call_{turn}_{n}"
            new, k = base, 2
            while new in taken:
                new, k = f"{base}_{k}", k + 1
            taken.add(new)
            ids[n - 1] = new
            renamed[new] = call.id
    if not renamed:
        return message, {}
    new_ids = iter(cast("list[str]", ids))  # the second pass gave every call an id
    parts: list[Part] = [replace(p, id=next(new_ids)) if isinstance(p, ToolCall) else p
                         for p in message.parts]
    return Message(role=message.role, parts=tuple(parts)), renamed
