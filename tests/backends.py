"""The stores a parametrised test runs against (the ``backend`` fixture in conftest.py): an
SQLite file, or a database of its own on the test PostgreSQL server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class Backend:
    """Where a test's sessions go. ``spec`` is what ``SessionConfig(store=...)`` and another
    process take (a file path or a DSN); :meth:`open` gives a new store object on it, with its
    own connection, as another kernel would have."""

    kind: Literal["sqlite", "postgres"]
    spec: str
    opened: list[Any] = field(default_factory=list)

    def open(self, **options: Any) -> Any:
        from loom_nb.store import PostgresStore, SQLiteStore
        store = SQLiteStore(self.spec) if self.kind == "sqlite" else PostgresStore(self.spec, **options)
        self.opened.append(store)
        return store

    def close(self) -> None:
        """Close every store :meth:`open` gave (the fixture does, after the test): a
        PostgreSQL store holds server connections until then."""
        for store in self.opened:
            store.close()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (``?`` placeholders) on a connection of its own, outside loom_nb."""
        if self.kind == "sqlite":
            import sqlite3
            with sqlite3.connect(self.spec) as db:
                return db.execute(sql, args).fetchall()
        import psycopg
        with psycopg.connect(self.spec, autocommit=True) as db:
            cursor = db.execute(sql.replace("?", "%s"), args)
            return cursor.fetchall() if cursor.description else []
