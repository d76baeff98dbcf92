"""What a store keeps (the records) and what it must do (the protocols).

A store is split by what its callers need, so that a new backend (a server database, say) can be
written against the small protocols and checked one piece at a time:

=================  =============================================  ========================
protocol           methods                                        used by
=================  =============================================  ========================
``HistoryStore``   ``open_session``, ``append_messages``,         the session, export
                   ``save_checkpoint``, ``stored_messages``,
                   ``sessions``
``RunStore``       ``save_run``, ``claim_run``, ``get_run``,      the engine, the session,
                   ``runs``                                       export
``EventLog``       ``append_events``, ``events``                  the engine, export
``SignalLog``      ``append_signal``, ``signals``                 the inbox, export
``FeedbackLog``    ``append_feedback``, ``feedback``              the session, export
=================  =============================================  ========================

Optional methods a store may add, found with ``getattr`` (``SQLiteStore`` has them all):
``append_turn(session_id, run_id, messages, events)`` writes a turn's messages and events in one
transaction; ``submit_turn(...)`` the same off the event loop (returns a
``concurrent.futures.Future``, or None when written already); ``runs_with_status(session_id,
statuses)`` and ``signal_count(session_id)`` let a session open without reading every record;
``feedback(session_id, kind=...)`` (a parameter, found by signature) reads one kind of record
(the session's remembered approvals).

:class:`SessionStore` is their union: what ``SessionConfig(store=...)`` takes. Every method must
be safe to call from several threads (runs go on in loom_nb's background loop while a cell
reads), and everything is appended, never rewritten, except a run's record, which
:meth:`RunStore.save_run` replaces and :meth:`RunStore.claim_run` replaces atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._owner import RunOwner
from ..continuity import RestoreMode
from ..events import RunEvent, SignalData, utcnow
from ..messages import Message, Usage

if TYPE_CHECKING:
    from ..feedback import FeedbackRecord

__all__ = ["Checkpoint", "EventLog", "FeedbackLog", "HistoryStore", "RestoreMode", "RunRecord",
           "RunStore", "SessionStore", "SignalLog", "SignalRecord", "StoredMessage",
           "StoredSession"]


@dataclass(kw_only=True)
class RunRecord:
    """The summary of one run, as a store keeps it."""

    run_id: str
    session_id: str
    agent: str
    model: str
    prompt: str
    status: str = "running"
    output: str = ""
    error: str | None = None
    parent_run_id: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    usage: Usage = field(default_factory=Usage)
    turns: int = 0
    #: For a run paused for approval: what is needed to resume it (see loom_nb._approval).
    state: dict[str, Any] | None = None
    #: The process that runs (or last ran) it; None for runs stored before owners were kept.
    owner: RunOwner | None = None


@dataclass(kw_only=True)
class StoredSession:
    """A session as loaded from a store: its history (after the latest checkpoint, when asked
    for) and the memory carried by that checkpoint."""

    id: str
    created_at: datetime
    metadata: dict[str, Any]
    messages: list[Message]
    restored: bool
    memory: list[str] = field(default_factory=list)
    #: How many messages were ever stored for the session.
    message_count: int = 0


@dataclass(frozen=True)
class StoredMessage:
    """A message as stored: its position in the session and the run that added it."""

    session_id: str
    idx: int
    run_id: str
    message: Message


@dataclass(kw_only=True)
class SignalRecord:
    """A signal a session received and what the attention policy decided for it."""

    session_id: str
    seq: int
    signal: SignalData
    action: str
    reason: str
    run_id: str | None = None
    ts: datetime = field(default_factory=utcnow)


@dataclass(kw_only=True)
class Checkpoint:
    """A compacted context: it stands for every message stored before index ``through``."""

    session_id: str
    through: int
    history: list[Message]
    memory: list[str]
    created_at: datetime = field(default_factory=utcnow)


class HistoryStore(Protocol):
    """Sessions and their conversation history, with the checkpoints compaction leaves."""

    def open_session(self, session_id: str, metadata: dict[str, Any],
                     restore: RestoreMode = "checkpoint") -> StoredSession:
        """Create the session, or load it (``restored=True``) with ``metadata`` merged in; its
        history from the latest checkpoint on (``restore="checkpoint"``) or all of it."""
        ...
    def append_messages(self, session_id: str, run_id: str, messages: list[Message]) -> None: ...
    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...
    def stored_messages(self, session_id: str) -> list[StoredMessage]: ...
    def sessions(self) -> list[str]: ...


class RunStore(Protocol):
    """The record of each run: its status, its output, and (while paused) its state."""

    def save_run(self, record: RunRecord) -> None: ...
    def claim_run(self, record: RunRecord, *, expected: str) -> bool:
        """Atomically: if the stored run ``record.run_id`` has status ``expected``, replace it by
        ``record`` and return True; otherwise change nothing and return False. Of several
        callers (threads, processes) that claim the same run at once, exactly one wins."""
        ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def runs(self, session_id: str | None = None) -> list[RunRecord]:
        """The runs of a session (of every session when None), in the order they started."""
        ...


class EventLog(Protocol):
    """Every run's events, in order (``seq`` is unique within a run)."""

    def append_events(self, events: list[RunEvent]) -> None: ...
    def events(self, *, session_id: str | None = None,
               run_id: str | None = None) -> list[RunEvent]: ...


class SignalLog(Protocol):
    """The signals a session received, each with the attention policy's decision."""

    def append_signal(self, record: SignalRecord) -> None: ...
    def signals(self, session_id: str) -> list[SignalRecord]: ...


class FeedbackLog(Protocol):
    """The feedback records a session keeps (see :class:`~loom_nb.feedback.FeedbackPolicy`)."""

    def append_feedback(self, record: FeedbackRecord) -> None: ...
    def feedback(self, session_id: str) -> list[FeedbackRecord]: ...


@runtime_checkable
class SessionStore(HistoryStore, RunStore, EventLog, SignalLog, FeedbackLog, Protocol):
    """Where sessions are kept: every piece above (see the module docstring)."""
