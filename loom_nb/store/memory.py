"""In-memory stores: :class:`InMemoryStore` (yours, for one process) and the process-wide
store that sessions opened without a store share.

The process-wide store keeps every session that is open and, of those that are gone (their
``Session`` objects garbage-collected), the latest :data:`KEEP_RELEASED`: a notebook that opens
sessions in a loop, or runs that delegate thousands of times, does not grow without end. A
session gone from it is one nobody can reach any more except by id, and reopening it then starts
it anew. Sessions with a run waiting for approval (a paused sub-agent's, whose parent resumes it
by id) are kept however many there are.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..continuity import RestoreMode
from ..events import RunEvent, utcnow
from ..messages import Message, message_from_dict
from .protocols import Checkpoint, RunRecord, SignalRecord, StoredMessage, StoredSession

if TYPE_CHECKING:
    from ..feedback import FeedbackRecord

__all__ = ["KEEP_RELEASED", "InMemoryStore", "ProcessStore"]

#: How many gone sessions the process-wide store keeps (the most recently released).
KEEP_RELEASED = 256


class InMemoryStore:
    """A store that lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self._messages: dict[str, list[tuple[str, Message]]] = {}  # (run_id, message)
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[RunEvent]] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._signals: dict[str, list[SignalRecord]] = {}
        self._feedback: dict[str, list[FeedbackRecord]] = {}
        #: Images and documents, each once: sha256 -> (bytes, the sessions that hold it).
        self._blobs: dict[str, tuple[bytes, set[str]]] = {}

    def __repr__(self) -> str:
        return f"<InMemoryStore sessions={len(self._sessions)}>"

    def open_session(self, session_id: str, metadata: dict[str, Any],
                     restore: RestoreMode = "checkpoint") -> StoredSession:
        with self._lock:
            restored = session_id in self._sessions
            if not restored:
                self._sessions[session_id] = (utcnow(), dict(metadata))
                self._messages[session_id] = []
            created, meta = self._sessions[session_id]
            meta.update(metadata)
            messages = [m for _, m in self._messages[session_id]]
            point = self._checkpoints.get(session_id) if restore == "checkpoint" else None
            history = point.history + messages[point.through:] if point else list(messages)
            return StoredSession(id=session_id, created_at=created, metadata=dict(meta),
                                 messages=list(history), restored=restored,
                                 memory=list(point.memory) if point else [],
                                 message_count=len(messages))

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._lock:
            self._checkpoints[checkpoint.session_id] = checkpoint

    def append_signal(self, record: SignalRecord) -> None:
        with self._lock:
            self._signals.setdefault(record.session_id, []).append(_copy(record))

    def signals(self, session_id: str) -> list[SignalRecord]:
        with self._lock:
            return [_copy(r) for r in self._signals.get(session_id, [])]

    def append_feedback(self, record: FeedbackRecord) -> None:
        with self._lock:
            self._feedback.setdefault(record.session_id, []).append(record)

    def feedback(self, session_id: str, kind: str | None = None) -> list[FeedbackRecord]:
        with self._lock:
            records = self._feedback.get(session_id, [])
            return list(records) if kind is None else [r for r in records if r.kind == kind]

    def append_messages(self, session_id: str, run_id: str, messages: list[Message]) -> None:
        with self._lock:
            self._messages[session_id].extend([(run_id, self._share(session_id, m)) for m in messages])

    def _share(self, session_id: str, message: Message) -> Message:
        """The message with each binary part's bytes the one copy the store keeps of them."""
        if not message.media:
            return message
        blobs: dict[str, bytes] = {}
        data = message.to_dict(blobs)
        for sha, raw in blobs.items():
            kept, holders = self._blobs.setdefault(sha, (raw, set()))
            holders.add(session_id)
            blobs[sha] = kept
        return message_from_dict(data, blobs)

    def blob_count(self) -> int:
        """How many distinct images and documents the store holds."""
        with self._lock:
            return len(self._blobs)

    def append_turn(self, session_id: str, run_id: str, messages: list[Message],
                    events: list[RunEvent]) -> None:
        """A turn's messages and events under one lock: one call a turn instead of two."""
        with self._lock:
            if messages:  # images and documents: the one copy the store keeps of each
                self._messages[session_id].extend([(run_id, self._share(session_id, m))
                                                   for m in messages])
            self._keep_events(events)

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def stored_messages(self, session_id: str) -> list[StoredMessage]:
        with self._lock:
            return [StoredMessage(session_id, i, run_id, m)
                    for i, (run_id, m) in enumerate(self._messages.get(session_id, []))]

    def append_events(self, events: list[RunEvent]) -> None:
        with self._lock:
            self._keep_events(events)

    def _keep_events(self, events: list[RunEvent]) -> None:
        by_run = self._events  # the caller holds the lock
        for event in events:
            kept = by_run.get(event.run_id)
            if kept is None:
                kept = by_run[event.run_id] = []
            kept.append(event)

    def save_run(self, record: RunRecord) -> None:
        with self._lock:
            # A copy, as a database would keep: later changes to the caller's record are not saved.
            self._runs[record.run_id] = _copy(record)

    def claim_run(self, record: RunRecord, *, expected: str) -> bool:
        with self._lock:
            stored = self._runs.get(record.run_id)
            if stored is None or stored.status != expected:
                return False
            self._runs[record.run_id] = _copy(record)
            return True

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            record = self._runs.get(run_id)
            return _copy(record) if record else None

    def runs(self, session_id: str | None = None) -> list[RunRecord]:
        """The runs of a session (of every session when None), in the order they started."""
        with self._lock:
            return [_copy(r) for r in self._runs.values()
                    if session_id is None or r.session_id == session_id]

    def events(self, *, session_id: str | None = None, run_id: str | None = None) -> list[RunEvent]:
        with self._lock:
            if run_id is not None:
                return list(self._events.get(run_id, []))
            return [e for evs in self._events.values() for e in evs
                    if session_id is None or e.session_id == session_id]

    def _drop(self, session_id: str) -> None:
        """Forget a session and everything of it (under the lock)."""
        self._sessions.pop(session_id, None)
        self._messages.pop(session_id, None)
        self._checkpoints.pop(session_id, None)
        self._signals.pop(session_id, None)
        self._feedback.pop(session_id, None)
        for sha, (_, holders) in list(self._blobs.items()):
            holders.discard(session_id)
            if not holders:
                del self._blobs[sha]
        for run_id in [r.run_id for r in self._runs.values() if r.session_id == session_id]:
            self._runs.pop(run_id, None)
            self._events.pop(run_id, None)


class ProcessStore(InMemoryStore):
    """The store of sessions opened without one: an :class:`InMemoryStore` that forgets gone
    sessions beyond the latest ``keep`` (see the module docstring)."""

    def __init__(self, keep: int = KEEP_RELEASED) -> None:
        super().__init__()
        self.keep = keep
        self._holds: dict[str, int] = {}
        self._released: OrderedDict[str, None] = OrderedDict()
        # Filled by garbage collection, which may run inside any method of this store, in the
        # middle of its lock: appending to a deque needs no lock, and the next hold() drains it.
        self._gone: deque[str] = deque()

    def open_session(self, session_id: str, metadata: dict[str, Any],
                     restore: RestoreMode = "checkpoint") -> StoredSession:
        with self._lock:
            self._forget_gone()
            # Held from here: a session being opened is not forgotten before its object holds it.
            self._holds[session_id] = self._holds.get(session_id, 0) + 1
            self._released.pop(session_id, None)
        return super().open_session(session_id, metadata, restore)

    def release(self, session_id: str) -> None:
        """A Session object on ``session_id`` is gone (called by its finalizer)."""
        self._gone.append(session_id)

    def _forget_gone(self) -> None:
        """Count the releases, and forget the oldest gone sessions beyond ``keep`` (under the
        lock)."""
        while self._gone:
            session_id = self._gone.popleft()
            left = self._holds.get(session_id, 1) - 1
            if left > 0:
                self._holds[session_id] = left
                continue
            self._holds.pop(session_id, None)
            self._released[session_id] = None
        for gone in list(self._released)[:max(0, len(self._released) - self.keep)]:
            if not self._pinned(gone):
                del self._released[gone]
                self._drop(gone)

    def _pinned(self, session_id: str) -> bool:
        # A nested session (``parent/label-...``) lives while its root does: the root's views
        # and exports read it. A paused run is resumed by id, maybe much later.
        root = session_id.split("/", 1)[0]
        return bool(self._holds.get(root)) or any(
            r.session_id == session_id and r.status == "needs_approval"
            for r in self._runs.values())


_Record = TypeVar("_Record")


def _copy(record: _Record) -> _Record:
    """A shallow copy of a record (a plain dataclass), as a database would return it; cheaper
    than dataclasses.replace, which checks every field."""
    copied = object.__new__(type(record))
    copied.__dict__.update(record.__dict__)
    return copied
