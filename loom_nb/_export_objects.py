"""Reading export rows from objects: a store other than SQLite or PostgreSQL (through the
store protocols' reading methods), and a RunResult. See :mod:`loom_nb._export_read`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._export_read import (EventRow, FeedbackRow, MessageRow, Problems, RunRow, SignalRow,
                           _store_reader, make_event)
from .events import RunStartedData, payload

__all__ = ["MemoryReader", "ResultReader"]


class MemoryReader:
    """Any store other than SQLite (an :class:`~loom_nb.InMemoryStore`, or a store of your own),
    or one of its sessions or runs, through the reading methods of the store protocols."""

    def __init__(self, store: Any, *, session_id: str | None = None, run_id: str | None = None) -> None:
        self.store, self.session_id, self.run_id = store, session_id, run_id
        self.key = ("memory", id(store), session_id, run_id)

    def _records(self, *, every_run: bool = False) -> list[Any]:
        records = self.store.runs(None)
        return sorted((r for r in records
                       if (self.session_id is None or r.session_id == self.session_id)
                       and (every_run or self.run_id is None or r.run_id == self.run_id)),
                      key=lambda r: r.started_at)

    def _wanted(self, session_id: str | None, run_id: str | None) -> bool:
        return ((self.session_id is None or session_id == self.session_id)
                and (self.run_id is None or run_id == self.run_id))

    def runs(self, problems: Problems) -> Iterator[RunRow]:
        for r in self._records():
            yield RunRow(r.run_id, r.session_id, r.parent_run_id, r.agent, r.model, r.prompt,
                         r.status, r.output, r.error, r.started_at, r.finished_at,
                         r.usage.to_dict(), r.turns)

    def events(self, problems: Problems, types: set[str] | None) -> Iterator[EventRow]:
        if self.run_id is None:
            found = self.store.events(session_id=self.session_id, run_id=None)
            yield from _object_events(found, problems, types, self._wanted)
            return
        mine = self.store.events(run_id=self.run_id)
        session = self.session_id or (mine[0].session_id if mine else None)
        everything = self.store.events(session_id=session) if session is not None else []
        positions = {(e.run_id, e.seq): n for n, e in enumerate(everything)}
        for row in _object_events(mine, problems, types, self._wanted):
            row.position = positions.get((row.run_id, row.seq))
            yield row

    def messages(self, problems: Problems) -> Iterator[MessageRow]:
        sessions = [self.session_id] if self.session_id is not None else self.store.sessions()
        parents = {r.run_id: r.parent_run_id for r in self._records(every_run=True)}
        for session_id in sessions:
            for stored in self.store.stored_messages(session_id):
                if self.run_id is None or stored.run_id == self.run_id:
                    yield MessageRow(session_id, stored.idx, stored.run_id,
                                     parents.get(stored.run_id), stored.message.to_dict({}))

    def signals(self, problems: Problems) -> Iterator[SignalRow]:
        sessions = [self.session_id] if self.session_id is not None else self.store.sessions()
        stored = [r for s in sessions for r in self.store.signals(s)]
        for r in stored:
            if (self.session_id in (None, r.session_id)) and (self.run_id in (None, r.run_id)):
                yield SignalRow(r.session_id, r.seq, r.ts, r.run_id, r.action, r.reason, r.signal)

    def feedback(self, problems: Problems) -> Iterator[FeedbackRow]:
        sessions = [self.session_id] if self.session_id is not None else self.store.sessions()
        for session_id in sessions:
            # The position within the session is a stable id, as the rowid is for SQLite.
            for n, r in enumerate(self.store.feedback(session_id)):
                if self.run_id in (None, r.run_id):
                    yield FeedbackRow(r.session_id, r.ts, r.run_id, r.kind, dict(r.data),
                                      f"{r.session_id}:feedback:{n}", n)

    def event_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self.store.events(session_id=self.session_id, run_id=self.run_id):
            counts[event.run_id] = counts.get(event.run_id, 0) + 1
        return counts


def _object_events(found: Iterable[Any], problems: Problems, types: set[str] | None,
                   wanted: Callable[[str, str], bool]) -> Iterator[EventRow]:
    for e in found:
        if (types is None or e.type in types) and wanted(e.session_id, e.run_id):
            row = make_event((e.run_id, e.seq, e.session_id, e.parent_run_id, e.type, e.ts, e.data),
                             problems)
            if row is not None:
                yield row


class ResultReader:
    """One RunResult: its own events; its messages from its session's store."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.key = ("result", result.run_id)

    def runs(self, problems: Problems) -> Iterator[RunRow]:
        r = self.result
        started = next((e for e in r.events if e.type == "run.started"), None)
        prompt = payload(started, RunStartedData).get("prompt") if started else None
        parent = r.events[0].parent_run_id if r.events else None
        yield RunRow(r.run_id, r.session_id, parent, r.agent, r.model, prompt, r.status, r.output,
                     r.error, r.started_at, r.finished_at, r.usage.to_dict(), r.turns)

    def events(self, problems: Problems, types: set[str] | None) -> Iterator[EventRow]:
        session = self.result.session
        if session is not None and types is None:  # the store knows the session-wide positions
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            stored = list(_store_reader(session.store, **only).events(problems, None))
            if len(stored) >= len(self.result.events):
                yield from stored
                return
        yield from _object_events(self.result.events, problems, types, lambda s, r: True)

    def messages(self, problems: Problems) -> Iterator[MessageRow]:
        session = self.result.session
        if session is not None:
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            yield from _store_reader(session.store, **only).messages(problems)
            return
        for idx, message in enumerate(self.result.messages):  # no session: positions in the run
            yield MessageRow(self.result.session_id, idx, self.result.run_id, None, message.to_dict({}))

    def event_counts(self) -> dict[str, int]:
        return {self.result.run_id: len(self.result.events)}

    def feedback(self, problems: Problems) -> Iterator[FeedbackRow]:
        if self.result.session is not None:
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            yield from _store_reader(self.result.session.store, **only).feedback(problems)

    def signals(self, problems: Problems) -> Iterator[SignalRow]:
        if self.result.session is not None:
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            yield from _store_reader(self.result.session.store, **only).signals(problems)
