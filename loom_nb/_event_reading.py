"""Reading events: :func:`payload` (an event's data as its TypedDict) and :func:`tool_calls`
(each ``tool.call`` paired with its ``tool.result`` and governance decisions), for every reader of
:class:`~loom_nb.events.RunEvent` s or of rows read from a store. Import them from
:mod:`loom_nb.events`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

__all__ = ["EventLike", "ToolCallTrace", "payload", "tool_calls"]


class EventLike(Protocol):
    """What readers need of an event: a :class:`RunEvent`, or a row read from a store."""

    @property
    def type(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def data(self) -> dict[str, Any]: ...


P = TypeVar("P", bound=Mapping[str, Any])
E = TypeVar("E", bound=EventLike)


def payload(event: EventLike, kind: type[P]) -> P:
    """``event.data`` seen as its type's TypedDict (e.g. ``payload(event, ToolResultData)``).

    No copy and no check: the caller has checked ``event.type``. Data read from a store may come
    from an older version or be damaged, so readers of stored data still use ``.get``.
    """
    return cast(P, event.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallTrace(Generic[E]):
    """One tool call of a run with its outcome: its ``tool.call`` event, the ``tool.result``
    (None while the call runs or waits for approval) and the governance decisions on it.

    ``ToolCallRecord`` (``result.tool_calls``) is this class.
    """

    call_id: str
    name: str
    args: dict[str, Any]
    content: str | None = None
    is_error: bool = False
    error_type: str | None = None
    duration_ms: float | None = None
    run_id: str = ""
    turn: int | None = None  #: the model turn that asked for the call
    call_seq: int | None = None
    result_seq: int | None = None
    call: E | None = field(default=None, repr=False, compare=False)
    result: E | None = field(default=None, repr=False, compare=False)
    decisions: tuple[E, ...] = field(default=(), repr=False, compare=False)


def tool_calls(events: Iterable[E]) -> list[ToolCallTrace[E]]:
    """The tool calls among ``events`` (of one run or several), in the order they were made,
    each paired with its result and decisions by run and call id.

    A result or decision whose call is not among the events (a sub-agent's call, decided in the
    calling run) is left out; a later result of the same call replaces an earlier one.
    """
    found: dict[tuple[str, str], tuple[E, int | None, list[E]]] = {}
    results: dict[tuple[str, str], E] = {}
    turns: dict[str, int | None] = {}
    for event in events:
        kind = event.type
        if kind == "model.response":
            turns[event.run_id] = event.data.get("turn")
            continue
        if kind not in _PAIRED:
            continue
        key = (event.run_id, str(event.data.get("call_id")))
        if kind == "tool.call":  # a second call with one id (a damaged store) starts afresh
            found[key] = (event, turns.get(event.run_id), [])
            results.pop(key, None)
        elif key in found:
            if kind == "tool.result":
                results[key] = event
            else:
                found[key][2].append(event)
    return [_trace(call, turn, results.get(key), decisions)
            for key, (call, turn, decisions) in found.items()]


_PAIRED = frozenset({"tool.call", "tool.result", "governance.decision"})


def _trace(call: E, turn: int | None, result: E | None, decisions: list[E]) -> ToolCallTrace[E]:
    asked, got = call.data, (result.data if result is not None else {})
    return ToolCallTrace(
        call_id=asked.get("call_id", ""), name=asked.get("name", ""), args=asked.get("args", {}),
        content=got.get("content"), is_error=got.get("is_error", False),
        error_type=got.get("error_type"), duration_ms=got.get("duration_ms"),
        run_id=call.run_id, turn=turn, call_seq=call.seq,
        result_seq=result.seq if result is not None else None,
        call=call, result=result, decisions=tuple(decisions))
