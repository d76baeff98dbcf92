"""Session stores: where a session's messages, runs, events, signals and feedback live.

Three stores come with loom_nb: :class:`InMemoryStore` (for one process), :class:`SQLiteStore`,
an embedded SQLite file that survives a kernel restart, and :class:`PostgresStore`, a PostgreSQL
database that many processes on many machines share. Each implements :class:`SessionStore`, the
union of the small protocols in :mod:`loom_nb.store.protocols`; :func:`copy` moves sessions
from one to another. Everything is appended, never rewritten: the cost of a run does not
grow with the length of the session.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from ..errors import StoreError
from .memory import InMemoryStore, ProcessStore
from .protocols import (Checkpoint, EventLog, FeedbackLog, HistoryStore, RestoreMode, RunRecord,
                        RunStore, SessionStore, SignalLog, SignalRecord, StoredMessage,
                        StoredSession)
from .postgres import PostgresStore, is_postgres_dsn
from .sqlite import SQLiteStore
from .transfer import CopyResult, copy

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Checkpoint", "CopyResult", "EventLog", "FeedbackLog", "HistoryStore", "InMemoryStore", "RestoreMode",
           "PostgresStore", "RunRecord", "RunStore", "SQLiteStore", "SessionStore", "SignalLog", "SignalRecord",
           "StoredMessage", "StoredSession", "copy", "open_store"]

_DEFAULT_MEMORY_STORE = ProcessStore()
_SQLITE_STORES: dict[Path, SQLiteStore] = {}
_POSTGRES_STORES: dict[str, PostgresStore] = {}
_REGISTRY_LOCK = threading.Lock()


def open_store(spec: SessionStore | str | os.PathLike[str] | None) -> SessionStore:
    """The store for ``SessionConfig.store``.

    ``None`` is the process-wide in-memory store (which forgets the oldest gone sessions, see
    :mod:`loom_nb.store.memory`); a ``postgresql://`` DSN is a PostgreSQL database (one store
    object, with its pool of connections, per DSN per process); a path is an SQLite file (one
    store object per file per process, so two sessions on one file share a connection); a store
    object is itself.
    """
    if spec is None:
        return _DEFAULT_MEMORY_STORE
    if is_postgres_dsn(spec):
        assert isinstance(spec, str)
        with _REGISTRY_LOCK:
            found = _POSTGRES_STORES.get(spec)
            if found is None or found.closed:  # a closed one is replaced, not handed out
                found = _POSTGRES_STORES[spec] = PostgresStore(spec)
            return found
    if isinstance(spec, str | os.PathLike):
        if str(spec) == ":memory:":
            return InMemoryStore()
        from pathlib import Path

        path = Path(spec).expanduser().absolute()
        with _REGISTRY_LOCK:
            store = _SQLITE_STORES.get(path)
            if store is None:
                store = _SQLITE_STORES[path] = SQLiteStore(path)
            return store
    if isinstance(spec, (InMemoryStore, SQLiteStore, PostgresStore, SessionStore)):
        return spec  # the built-in stores first: a protocol check inspects every method
    raise StoreError(
        f"SessionConfig(store=...) takes a file path (an SQLite store), a 'postgresql://...' DSN, "
        f"None (in memory) or a store object, not {type(spec).__name__}."
    )
