"""Session: the state boundary around many runs of one agent.

A session keeps the conversation history across runs and writes every message, run and event
to its store as it happens. Opening a session with an existing id in the same store restores it,
also in a new process. Its other seams live beside it: runs (``session/runs.py``), signals and
timers (``session/signals.py``), feedback (``session/feedback.py``); :class:`Session` composes
them, so every method is on the one object.
"""

from __future__ import annotations

import collections.abc
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._compaction import ContextState
from .._recovery import open_runs
from .._turns import TurnLock
from ..errors import ConfigError
from ..events import SESSION_SUBSCRIBERS, RunEvent
from ..messages import Message
from ..sources import SourceHandle
from ..store import (Checkpoint, InMemoryStore, ProcessStore, SessionStore, SQLiteStore,
                     open_store)
from .approvals import SessionApprovals
from .feedback import SessionFeedback
from .runs import SessionRuns
from .signals import Inbox, SessionSignals

if TYPE_CHECKING:
    from ..agent import Agent
    from ..engine import RunLoop
    from ..result import RunResult

__all__ = ["Session", "SessionConfig", "new_session_id"]


@dataclass(frozen=True)
class SessionConfig:
    """How to open a session.

    Attributes:
        id: the session id; an existing id in the same store restores that session. None makes a
            new id.
        store: an SQLite file path (durable, the usual choice in notebooks), a store object, or
            None for the process-wide in-memory store (it keeps open sessions and the latest
            gone ones: see ``loom_nb.store.memory``).
        metadata: labels kept with the session (merged into an existing session's).
    """

    id: str | None = None
    store: SessionStore | str | os.PathLike[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, where the mistake is made: a wrong field found later (at the first
        # write, in another thread) would name neither the field nor the fix.
        if self.id is not None and (not isinstance(self.id, str) or not self.id.strip()):
            raise ConfigError(
                f"SessionConfig(id=...) takes a non-empty str such as 'notes-2024' (or None for a "
                f"new id), not {_shown(self.id)}.")
        if isinstance(self.id, str) and "\x00" in self.id:
            raise ConfigError("SessionConfig(id=...) must not contain NUL characters.")
        store = self.store
        if isinstance(store, str) and not store.strip():
            raise ConfigError("SessionConfig(store='') names no file: give a path such as "
                              "'sessions.sqlite', or None for the in-memory store.")
        # The built-in stores first: a protocol check inspects every method (~100 µs a session).
        if not (store is None or isinstance(store, str | os.PathLike | InMemoryStore | SQLiteStore)
                or isinstance(store, SessionStore)):
            raise ConfigError(
                f"SessionConfig(store=...) takes an SQLite file path such as 'sessions.sqlite', a "
                f"PostgreSQL DSN such as 'postgresql://user@host/db', a store object "
                f"(SQLiteStore, PostgresStore, InMemoryStore), or None for the in-memory store; "
                f"not {_shown(store)}.")
        metadata = self.metadata
        if not isinstance(metadata, collections.abc.Mapping):
            raise ConfigError(
                f"SessionConfig(metadata=...) takes a dict of labels such as {{'user': 'ana'}}, "
                f"not {_shown(metadata)}.")
        bad_keys = [k for k in metadata if not isinstance(k, str)]
        if bad_keys:
            raise ConfigError(
                f"SessionConfig(metadata=...) keys must be str (they are stored as JSON); "
                f"got {bad_keys[0]!r}. Use str({bad_keys[0]!r}) as the key.")
        # A copy: the caller's dict changing later must not change the config (it is frozen).
        object.__setattr__(self, "metadata", dict(metadata))


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def new_session_id() -> str:
    return f"ses_{os.urandom(8).hex()}"


class Session(SessionRuns, SessionSignals, SessionFeedback, SessionApprovals):
    """Many runs of one agent, with a shared history. Get one with ``agent.session(...)``."""

    def __init__(self, agent: Agent, config: SessionConfig | None = None) -> None:
        config = config or SessionConfig()
        if not isinstance(config, SessionConfig):
            raise ConfigError("agent.session() takes a SessionConfig(id=..., store=..., metadata=...).")
        self.agent = agent
        self.config = config
        self.store: SessionStore = open_store(config.store)
        self.id: str = config.id or new_session_id()
        stored = self.store.open_session(self.id, dict(config.metadata),
                                         agent.runtime.continuity.restore)
        if isinstance(self.store, ProcessStore):  # it forgets sessions once they are gone
            weakref.finalize(self, self.store.release, self.id)
        self.metadata: dict[str, Any] = stored.metadata
        self.created_at: datetime = stored.created_at
        #: True when the session existed in the store before it was opened here.
        self.restored: bool = stored.restored
        #: History, memory and token calibration: what the next request is built from.
        self.context = ContextState(history=stored.messages, memory=stored.memory,
                                    message_count=stored.message_count)
        self._lock = TurnLock()
        self.closed = False
        # A run paused for approval must be decided before the next run: its tool calls belong
        # between the messages already in history and whatever a new run would add. Runs a dead
        # process left "running" become "interrupted" here, so they do not look alive forever.
        self._waiting_run: str | None = next(
            (r.run_id for r in open_runs(self.store, self.id) if r.status == "needs_approval"),
            None)
        #: The run executing now, if any.
        self.active_run: RunLoop | None = None
        #: Runs started in the background (``session.start``) that have not ended yet.
        self.background: set[str] = set()
        # Process-wide subscribers and the runtime's tracer (loom_nb.tracing); usually none.
        self._subscribers: list[Callable[[RunEvent], None]] = [*SESSION_SUBSCRIBERS]
        if agent.runtime.tracing is not None and agent.runtime.tracing not in self._subscribers:
            self._subscribers.append(agent.runtime.tracing)
        self._sources: list[SourceHandle] = []
        self.inbox = Inbox(self)
        #: Notes shown to the model in the working partition of every run until removed.
        self.notes: list[str] = []
        # Writes that failed at a run's end (disk full): retried, in order, before the next run.
        self._unsaved: list[Callable[[], None]] = []
        # The waiting run as one RunResult that collects decisions (see session/approvals.py).
        self._shared: RunResult | None = None
        self._shared_lock = threading.Lock()
        # (run id, the tools remembered as that run first saw them): one store read per run.
        self._remembered_cache: tuple[str, frozenset[str]] | None = None
        if agent.runtime.feedback.kinds - {"rating"}:
            self._subscribers.append(self._record_feedback)

    def __repr__(self) -> str:
        return (f"<Session {self.id} agent={self.agent.name!r} messages={len(self.history)} "
                f"store={self.store!r}>")

    # -- state -------------------------------------------------------------------------------------

    @property
    def history(self) -> list[Message]:
        return self.context.history

    @property
    def messages(self) -> tuple[Message, ...]:
        """The conversation the model sees now, oldest first (compacted parts are in memory)."""
        return tuple(self.context.history)

    @property
    def memory(self) -> tuple[str, ...]:
        """Summaries and handoff notes carried over by compaction and renewal."""
        return tuple(self.context.memory)

    def open_tasks(self, limit: int = 5) -> list[str]:
        """Goals of runs that did not complete (failed, cancelled or at a limit) and that no
        later run with the same goal completed; the latest ``limit`` of them."""
        open_goals: dict[str, None] = {}
        for record in self.runs:
            open_goals.pop(record.prompt, None)
            if record.status in ("failed", "cancelled", "limit"):
                open_goals[record.prompt] = None
        return list(open_goals)[-limit:]

    def child(self, label: str, *, agent: Agent | None = None, seed: bool = False) -> Session:
        """A nested session in the same store (sub-runs live there, linked by parent_run_id);
        ``seed`` starts it from a copy of this session's context."""
        child = Session(agent or self.agent,
                        SessionConfig(id=f"{self.id}/{label}-{os.urandom(3).hex()}", store=self.store))
        child.forward_to(self)  # views of this session see nested runs live
        if seed:
            child.context = ContextState(history=list(self.context.history),
                                         memory=list(self.context.memory), factor=self.context.factor)
        return child

    def checkpoint(self) -> None:
        """Store the current (compacted) context, so a restored session starts from it."""
        self.store.save_checkpoint(Checkpoint(
            session_id=self.id, through=self.context.message_count,
            history=list(self.context.history), memory=list(self.context.memory)))

    def events(self, run_id: str | None = None) -> list[RunEvent]:
        """The stored events of this session (or of one of its runs), in order."""
        if run_id is not None:
            return self.store.events(run_id=run_id)
        return self.store.events(session_id=self.id)

    def commit(self, run_id: str, messages: list[Message],
               events: list[RunEvent] | None = None) -> bool:
        """Append messages to the history; the store first, so a failed write changes nothing.

        With ``events``, a store that has ``append_turn`` writes them in the same transaction
        and this returns True; otherwise only the messages are written (False): the caller
        stores the events itself.
        """
        turn = getattr(self.store, "append_turn", None) if events else None
        if turn is not None:
            turn(self.id, run_id, messages, events)
        else:
            self.store.append_messages(self.id, run_id, messages)
        self.context.append(messages)
        return turn is not None

    # -- subscribers -------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[RunEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every event of this session's runs and every signal decision,
        as they happen (from loom_nb's threads: keep it quick). Returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def notify(self, event: RunEvent) -> None:
        for callback in list(self._subscribers):
            callback(event)

    @property
    def watched(self) -> bool:
        """True while anyone subscribes to this session's events (live-only ones are skipped
        otherwise)."""
        return bool(self._subscribers)

    def forward_to(self, other: Session) -> None:
        """Send this session's events on to ``other``'s subscribers too (once, however often it
        is asked): a nested session's runs show in the views of the session that started them."""
        if other.notify not in self._subscribers:
            self._subscribers.append(other.notify)

    # -- closing -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting runs and signals and stop this session's timers. The stored session
        stays and can be opened again.

        What the agent's capabilities opened (MCP server connections) belongs to the agent, which
        other sessions (evaluate()'s tasks, sub-agents, a second notebook session) may be using
        at the same moment: close it with ``agent.close()``, ``await agent.aclose()`` or
        ``async with agent``. A run already going on is not stopped (``run.cancel()`` does that).
        """
        for handle in self._sources:
            handle.stop()
        self.closed = True
        self.agent._forget(self)

    async def aclose(self) -> None:
        """:meth:`close` from async code; also waits until the signal queue has stopped (a run a
        signal started, and any run it waits behind, ends first; no further queued signal starts)."""
        self.close()
        await self.inbox.idle()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
