"""SQLite failures as StoreErrors that say what to do (disk full, damaged file, locked, read-only).

Applied to :class:`loom_nb.store.SQLiteStore` as a class decorator, so that every public method,
including one added later, raises StoreError and never a raw ``sqlite3`` (or decoding) error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import LoomError, StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SQLITE_CORRUPT", "SQLITE_NOTADB", "sqlite_errors_become_store_errors", "store_error"]

_Method = TypeVar("_Method", bound=Callable[..., Any])
_Store = TypeVar("_Store")

# Primary SQLite result codes (exc.sqlite_errorcode & 0xFF) and what the user can do about each.
SQLITE_FULL, SQLITE_CORRUPT, SQLITE_NOTADB = 13, 11, 26
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_PERM = 5, 6, 8, 10, 14, 3


def store_error(path: Path, exc: Exception, action: str) -> StoreError:
    """A StoreError for a failure of the SQLite file at ``path``, saying what to do about it."""
    import sqlite3
    where = f"The session store {str(path)!r}"
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if not isinstance(exc, sqlite3.Error):  # stored data that no longer decodes
        return StoreError(
            f"{where} holds data loom_nb cannot read ({type(exc).__name__}: {_first_line(exc)}) "
            f"while it tried to {action}: the file is damaged. Restore it from a backup, or "
            f"open the session in a new store file; `sqlite3 {path.name} .recover` may rescue "
            f"what is readable.")
    if code == SQLITE_FULL:
        hint = ("the disk (or the file's size limit) is full. Free space on that disk, then run "
                "again: the session goes on from what was stored, and this run's record is "
                "written at the next run")
    elif code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        hint = ("the file is damaged. Restore it from a backup, or open the session in a new "
                f"store file; `sqlite3 {path.name} .recover` may rescue what is readable")
    elif code in (SQLITE_BUSY, SQLITE_LOCKED):
        hint = ("another process held the file locked for more than 10 s. Close the other "
                "sessions writing to it (another kernel, a script), or give each its own file")
    elif code in (SQLITE_READONLY, SQLITE_PERM, SQLITE_CANTOPEN):
        hint = ("the file or its folder cannot be written. Check their permissions and that the "
                "disk is mounted read-write, or choose a store path you can write to")
    elif code == SQLITE_IOERR:
        hint = ("the disk reported an I/O error. Check the disk (and free space), then run "
                "again")
    else:
        hint = "check the file and the disk it is on, then run again"
    return StoreError(f"{where} could not {action} ({_first_line(exc)}): {hint}.")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def _translated(method: _Method) -> _Method:
    import functools
    import sqlite3

    action = method.__name__.replace("_", " ")

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except LoomError:
            raise
        except (sqlite3.Error, ValueError, KeyError) as exc:  # ValueError: JSON, UTF-8, dates
            raise store_error(self.path, exc, action) from exc
    return call  # type: ignore[return-value]


def sqlite_errors_become_store_errors(cls: type[_Store]) -> type[_Store]:
    """Every public method of the class raises StoreError, never a raw sqlite3 (or decoding)
    error; methods added later are covered too, since this looks at the class itself."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value):
            setattr(cls, name, _translated(value))
    return cls
