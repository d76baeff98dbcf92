"""Reading a PostgreSQL store for :mod:`loom_nb.export`, with SQL, as an SQLite file is read.

The tables are SQLite's (see :mod:`loom_nb.store.postgres`), so the reader is
:class:`~loom_nb._export_read._SQLReader` with another connection: rows come from a server-side
cursor in batches (a large store is never all in memory at once), each query in a read-only
transaction of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from ._export_read import _SQLReader
from .errors import ExportError

__all__ = ["PostgresReader"]

#: Rows fetched per round trip from the server-side cursor.
_BATCH = 2000


class PostgresReader(_SQLReader):
    """A PostgreSQL store (its DSN), read with SQL (optionally one session's or one run's rows)."""

    _POS = "pos"
    _MARK = "%s"

    def __init__(self, dsn: str, *, session_id: str | None = None,  # noqa: D107
                 run_id: str | None = None) -> None:
        from .store.postgres import _safe_dsn

        self.dsn, self.where, self.run_id = dsn, _safe_dsn(dsn), run_id
        self.key = ("postgres", dsn, session_id, run_id)
        self.filters = [(c, v) for c, v in (("session_id", session_id), ("run_id", run_id)) if v]
        self.run_id = run_id

    def _connect(self) -> Any:
        import psycopg  # present: postgres_reader checked

        try:
            db = psycopg.connect(self.dsn, connect_timeout=10)
            db.read_only = True
            # SET, not connect(options=...): that would replace the DSN's own options.
            db.execute("SET TIME ZONE 'UTC'")
            tables = {name for (name,) in db.execute(
                "SELECT table_name::text FROM information_schema.tables "
                "WHERE table_schema = ANY (current_schemas(false))")}
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"The PostgreSQL store {self.where} cannot be read ({first}). Check "
                              f"that the server is running and the DSN.") from None
        if not {"runs", "events", "messages"} <= tables:
            db.close()
            raise ExportError(f"{self.where} is a PostgreSQL database but not a loom_nb session "
                              f"store (it has no runs, events and messages tables).")
        return db

    def _rows(self, db: Any, sql: str, args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        with db.cursor(name=f"loom_export_{uuid.uuid4().hex[:8]}") as cursor:
            cursor.itersize = _BATCH
            cursor.execute(sql, args)
            yield from cursor

    def samples(self) -> Iterator[tuple[str, str, str | None, Any]]:
        """As SQLite's, with the labels read in Python: PostgreSQL 15 has no JSON validity test
        that would let a damaged row through without failing the whole query."""
        import json

        sql = ("SELECT run_id, session_id, parent_run_id, data FROM events{where} "
               f"ORDER BY {self._POS}")
        for run_id, session_id, parent, data in self._select(sql, extra="type = 'run.started'"):
            try:
                labels = json.loads(data).get("context", {}).get("metadata", {}).get("loom_eval")
            except (ValueError, AttributeError):
                labels = None
            yield run_id, session_id, parent, labels

    def _has(self, table: str) -> bool:
        db = self._connect()
        try:
            return db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        finally:
            db.close()


def postgres_reader(dsn: str, **only: str) -> PostgresReader:
    """The reader for a DSN; a StoreError with the install command when psycopg is missing."""
    from .store.postgres import _import_psycopg

    _import_psycopg()
    return PostgresReader(dsn, **only)
