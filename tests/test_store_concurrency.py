"""Several processes on one store at once, on SQLite and PostgreSQL: a paused run is claimed by
exactly one of them, appended messages get unique, contiguous indices, and creating the tables
from several processes at once is safe.

The races are real processes (spawned, each with its own store object and connection), released
together by a barrier at every step: 400 claims make a race that two processes win 2 % of the
time show up with a probability above 99.9 % (0.98 ** 400 < 0.0004).
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from typing import Any

from loom_nb.store import RunRecord
from tests import store_workers
from tests.backends import Backend

CLAIMS = 400
BATCHES = 150


def _race(target: Any, args_for: list[tuple[Any, ...]], timeout: float = 120) -> list[Any]:
    """Run ``target(*args, barrier, pipe)`` in one spawned process per args; what each sends."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(args_for))
    pipes = [context.Pipe(duplex=False) for _ in args_for]
    workers = [context.Process(target=target, args=(*args, barrier, send), daemon=True)
               for args, (_, send) in zip(args_for, pipes, strict=True)]
    for worker in workers:
        worker.start()
    try:
        results = []
        for receive, _ in pipes:
            assert receive.poll(timeout), "a worker did not answer in time"
            results.append(receive.recv())
        return results
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()


def test_two_processes_claiming_the_same_runs_win_each_exactly_once(backend: Backend) -> None:
    store = backend.open()
    run_ids = [f"run_claim_{i}" for i in range(CLAIMS)]
    for run_id in run_ids:
        store.save_run(RunRecord(run_id=run_id, session_id="claims", agent="a", model="m",
                                 prompt="p", status="needs_approval", state={"pending": []}))
    results = _race(store_workers.claim, [(backend.kind, backend.spec, run_ids)] * 2)
    wins = Counter(run_id for _, won in results for run_id in won)
    assert set(wins) == set(run_ids) and set(wins.values()) == {1}  # each run: one winner
    winner = {run_id: pid for pid, won in results for run_id in won}
    for record in store.runs("claims"):
        assert record.status == "running" and record.owner is not None
        assert record.owner.pid == winner[record.run_id]  # the stored record is the winner's
        assert record.output == f"won by {winner[record.run_id]}"


def test_two_processes_appending_to_one_session_get_contiguous_indices(backend: Backend) -> None:
    store = backend.open()
    store.open_session("shared", {})
    pids = _race(store_workers.append, [(backend.kind, backend.spec, "shared", BATCHES)] * 2)
    stored = store.stored_messages("shared")
    assert [m.idx for m in stored] == list(range(2 * BATCHES * 3))
    for start in range(0, len(stored), 3):  # a batch is never split by the other's
        batch = stored[start:start + 3]
        assert len({m.run_id for m in batch}) == 1
        assert [m.message.text.rsplit(" ", 1)[1] for m in batch] == ["0", "1", "2"]
    assert {int(m.run_id.split("_")[1]) for m in stored} == set(pids)


def test_processes_creating_the_tables_at_once_all_succeed(backend: Backend) -> None:
    assert _race(store_workers.open_only, [(backend.kind, backend.spec)] * 4) == ["ok"] * 4
    store = backend.open()
    assert store.sessions() == []
    if backend.kind == "postgres":
        assert backend.query("SELECT version FROM loom_schema") == [(2,)]


def _open_new(path: str, barrier: Any, out: Any) -> None:
    from loom_nb.store import SQLiteStore

    barrier.wait()
    try:
        SQLiteStore(path).close()
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports it
        out.put(f"{type(exc).__name__}: {exc}")


def test_many_processes_opening_one_new_sqlite_file_at_once_all_succeed(tmp_path: Any) -> None:
    """SQLite answers "database is locked" at once (no busy handler) to a connection that asks
    for WAL while another switches the same new file: about 1 open in 40 failed so before the
    store waited for it. 8 forked processes (they start at once, loom_nb already imported) on
    each of 30 new files."""
    context = multiprocessing.get_context("fork")
    failed = []
    for round_ in range(30):
        path = str(tmp_path / f"s{round_}.sqlite")
        barrier, out = context.Barrier(8), context.Queue()
        workers = [context.Process(target=_open_new, args=(path, barrier, out), daemon=True)
                   for _ in range(8)]
        for worker in workers:
            worker.start()
        results = [out.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(10)
        failed += [r for r in results if r != "ok"]
    assert failed == []
