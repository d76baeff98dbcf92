"""The RunEvent stream: the single record of what a run did.

Displays, widgets, stores and DataFrames all subscribe to this one stream and never reach into
the loop. The vocabulary of ``type`` (documented in docs/events.md):

======================  ==========================================================================
``run.started``         a run begins: prompt, task, context inputs, agent and model, the signal
                        that started it and the signals observed since the last run
``model.request``       a request goes to the model: turn, tools, context snapshot (partitions)
``model.delta``         streamed text as it arrives (live only, see below)
``model.response``      the complete model turn: text, tool calls, usage, stop reason
``model.retry``         the provider failed in a retryable way; attempt, delay and error
``tool.call``           the model asks for a tool, with its arguments
``governance.decision`` allow / deny / ask for a tool call, the reason and the check that decided
``tool.started``        a call a person approved starts (stored before it runs)
``tool.result``         the tool's result or error, with its duration
``context.compacted``   history was shrunk or summarized: tokens before and after, what went
``context.renewed``     memory and history were replaced by a handoff note
``harness.attempt``     an attempt begins (in the run, or as a nested candidate run)
``quality.verdict``     a quality gate's PASS/FAIL on an attempt, with the critique
``delegation.started``  a sub-agent run begins (its run id, session, depth)
``delegation.finished`` it ended: status, output, usage
``run.interrupted``     the run stopped at a safe point: cancelled, or a signal interrupted it
``run.resumed``         a run paused for approval continues: which calls were approved/rejected
``run.finished``        a run ends, whatever its status: output, usage, error, turns, verdict
                        (a run paused for approval finishes with ``needs_approval``; a run
                        whose process died gets one with ``interrupted`` when it is found)
======================  ==========================================================================

``signal.decision`` events belong to the session, not to a run: they reach session
subscribers and are stored in the ``signals`` table (``run_id`` names the run a decision
affects, when there is one). Every type's data keys are listed in docs/events.md.

``model.delta`` events are *live only*: :meth:`Agent.stream` yields them and displays draw them,
but they are not stored and not part of ``RunResult.events``; the following ``model.response``
carries the whole text. A delta's ``seq`` is the ``seq`` of that ``model.response``, so the stored
events of a run are numbered 0, 1, 2, ... without gaps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeAlias

__all__ = ["EventType", "RunEvent", "utcnow"]

EventType: TypeAlias = Literal[
    "run.started",
    "run.finished",
    "run.resumed",
    "model.request",
    "model.delta",
    "model.response",
    "model.retry",
    "tool.call",
    "tool.started",
    "tool.result",
    "governance.decision",
    "signal.decision",
    "run.interrupted",
    "context.compacted",
    "context.renewed",
    "quality.verdict",
    "harness.attempt",
    "delegation.started",
    "delegation.finished",
]


#: The current time in UTC. A partial, not a function: events are made several times per model
#: turn, and a partial calls datetime.now without a Python frame.
utcnow: Callable[[], datetime] = functools.partial(datetime.now, timezone.utc)


# Not frozen: a frozen dataclass pays a setattr per field on every construction, and events are
# made several times per model turn. Treat events as read-only all the same.
@dataclass(slots=True, kw_only=True)
class RunEvent:
    """One step of a run.

    Attributes:
        type: what happened (see the module docstring for the vocabulary).
        run_id: the run it belongs to.
        session_id: the session of that run.
        seq: position in the run, from 0, without gaps among stored events.
        ts: when it happened (UTC).
        data: the details, JSON-serializable.
        parent_run_id: the run that started this one, for sub-runs.
    """

    type: EventType
    run_id: str
    session_id: str
    seq: int
    ts: datetime = field(default_factory=utcnow)
    data: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None

    @property
    def event_id(self) -> str:
        """A stable id: the run id and the sequence number."""
        return f"{self.run_id}:{self.seq}"

    @property
    def live_only(self) -> bool:
        return self.type == "model.delta"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "run_id": self.run_id,
            "session_id": self.session_id,
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "data": self.data,
            "parent_run_id": self.parent_run_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunEvent:
        return cls(
            type=data["type"],
            run_id=data["run_id"],
            session_id=data["session_id"],
            seq=int(data["seq"]),
            ts=datetime.fromisoformat(data["ts"]),
            data=data.get("data") or {},
            parent_run_id=data.get("parent_run_id"),
        )


_new = object.__new__


def make_event(type: EventType, run_id: str, session_id: str, seq: int, data: dict[str, Any],
               parent_run_id: str | None) -> RunEvent:
    """``RunEvent(...)`` for the run loop, which makes several per model turn: positional
    arguments and plain attribute stores cost half of the keyword-only constructor."""
    event: RunEvent = _new(RunEvent)
    event.type, event.run_id, event.session_id, event.seq = type, run_id, session_id, seq
    event.ts, event.data, event.parent_run_id = utcnow(), data, parent_run_id
    return event
