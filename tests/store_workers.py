"""Worker processes for test_store_concurrency: each opens its own store object on the same
database (as another kernel or machine would) and races the others, released by a barrier."""

from __future__ import annotations

import os
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any


def _open(kind: str, spec: str) -> Any:
    from loom_nb.store import PostgresStore, SQLiteStore
    return SQLiteStore(spec) if kind == "sqlite" else PostgresStore(spec)


def claim(kind: str, spec: str, run_ids: list[str], barrier: Barrier, out: Connection) -> None:
    """Claim each run (needs_approval -> running, owned by this process) at the same moment as
    the other worker; send the ids of the runs this process won."""
    from dataclasses import replace

    from loom_nb._owner import current_owner

    store, me, won = _open(kind, spec), current_owner(), []
    for run_id in run_ids:
        record = store.get_run(run_id)
        claimed = replace(record, status="running", owner=me, output=f"won by {os.getpid()}")
        barrier.wait()
        if store.claim_run(claimed, expected="needs_approval"):
            won.append(run_id)
    out.send((os.getpid(), won))
    store.close()


def append(kind: str, spec: str, session_id: str, batches: int, barrier: Barrier,
           out: Connection) -> None:
    """Append ``batches`` batches of three messages to one session, racing the other worker."""
    from loom_nb.messages import Message

    store = _open(kind, spec)
    barrier.wait()
    for n in range(batches):
        store.append_messages(session_id, f"run_{os.getpid()}_{n}",
                              [Message.user(f"{os.getpid()} {n} {part}") for part in range(3)])
    out.send(os.getpid())
    store.close()


def open_only(kind: str, spec: str, barrier: Barrier, out: Connection) -> None:
    """Open the store (creating its tables) at the same moment as the others."""
    barrier.wait()
    try:
        _open(kind, spec).close()
        out.send("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports it
        out.send(f"{type(exc).__name__}: {exc}")
