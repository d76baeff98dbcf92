"""Runs that cannot go on as their record says: left ``running`` by a process that died (a
``kill -9``, a crashed kernel, a machine that stopped), or resumed by someone else first.

A dead owner's run becomes ``interrupted``, with its usage and turns summed from the events it
stored, an error that says what to check, and a ``run.finished`` event. The change is a
compare-and-set on the status, so two sessions opening the store at once settle a run once; a
run whose owner may be alive (this process, a live pid with the same start time, another host)
is never touched.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from ._owner import liveness
from .errors import ConfigError, RunAlreadyResumedError, StoreError
from .events import RunEvent, make_event
from .messages import Usage
from .store import RunRecord, SessionStore

__all__ = ["not_resumable", "open_runs", "settle", "settle_dead", "settle_one", "signal_count"]

#: The statuses a session has to look at when it opens: a run left running, a run paused.
OPEN_STATUSES = ("running", "needs_approval")


def open_runs(store: SessionStore, session_id: str) -> list[RunRecord]:
    """The session's runs that are running or paused for approval, oldest first, settled.

    What opening a session needs, read without parsing every finished run when the store can
    select by status (``SQLiteStore.runs_with_status``, on an index); other stores are filtered.
    """
    select = getattr(store, "runs_with_status", None)
    if select is not None:
        records = select(session_id, OPEN_STATUSES)
    else:
        records = [r for r in store.runs(session_id) if r.status in OPEN_STATUSES]
    return settle(store, records)


def signal_count(store: SessionStore, session_id: str) -> int:
    """How many signal records the session has (a COUNT when the store offers one)."""
    count = getattr(store, "signal_count", None)
    return int(count(session_id)) if count is not None else len(store.signals(session_id))


def settle(store: SessionStore, records: list[RunRecord]) -> list[RunRecord]:
    """``records`` with every run a dead process left ``running`` marked ``interrupted``, in
    the store too. A store that cannot be written leaves them as they are (and says so in no
    other way: the next look tries again), so that reading a session never fails for it."""
    return [settle_one(store, r) if r.status == "running" else r for r in records]


def settle_one(store: SessionStore, record: RunRecord) -> RunRecord:
    if record.status != "running" or record.owner is None or liveness(record.owner) != "dead":
        return record  # no owner: stored by a loom_nb that kept none, and it may still run
    return settle_dead(store, record)


def settle_dead(store: SessionStore, record: RunRecord) -> RunRecord:
    """Settle ``record`` as ``interrupted`` when its owner is known to be dead by other means
    than :func:`liveness` (a Ray worker the cluster reported crashed, on another host)."""
    if record.status != "running" or record.owner is None:
        return record
    with contextlib.suppress(StoreError):
        events = store.events(run_id=record.run_id)
        settled = _interrupted(record, events)
        if store.claim_run(settled, expected="running"):
            store.append_events([_finished_event(settled, events)])
            return settled
        return store.get_run(record.run_id) or record  # another session settled it first
    return record


def _interrupted(record: RunRecord, events: list[RunEvent]) -> RunRecord:
    usage, turns = Usage(), 0
    for event in events:
        if event.type == "model.response":
            usage, turns = usage + Usage.from_dict(event.data.get("usage")), turns + 1
    assert record.owner is not None
    error = (f"The {record.owner.describe()} that ran this run ended before the run did (it was "
             f"killed, crashed, or its machine stopped), so the run stopped where its stored "
             f"events end. {_unfinished_call(events)}Start a new run to go on; the session's "
             f"history holds every complete turn.")
    last = events[-1].ts if events else record.started_at
    return replace(record, status="interrupted", error=error, usage=usage, turns=turns,
                   finished_at=last, state=None)


def _unfinished_call(events: list[RunEvent]) -> str:
    """What to check: a call that was allowed (or approved) but has no stored result."""
    results = {e.data.get("call_id") for e in events if e.type == "tool.result"}
    started = {e.data.get("call_id") for e in events if e.type == "tool.started"}
    allowed = [e.data for e in events if e.type == "governance.decision"
               and e.data.get("action") == "allow" and e.data.get("via") is None
               and e.data.get("call_id") not in results]
    if not allowed:
        return ""
    call = allowed[-1]
    how = "started" if call.get("call_id") in started else "was allowed to start"
    approved = " (approved by a person)" if call.get("check") == "approval" else ""
    return (f"Its call of {call.get('name')!r}{approved} {how} but has no result: it may or may "
            f"not have completed. Check whether its effect happened before you run it again. ")


def _finished_event(record: RunRecord, events: list[RunEvent]) -> RunEvent:
    data: dict[str, Any] = {"status": "interrupted", "output": record.output,
                            "turns": record.turns, "usage": record.usage.to_dict(),
                            "error": record.error, "error_type": "ProcessEnded", "limit": None,
                            "attempts": 0, "winner": None, "verdict": None}
    seq = events[-1].seq + 1 if events else 0
    return make_event("run.finished", record.run_id, record.session_id, seq, data,
                      record.parent_run_id)


def not_resumable(store: SessionStore, record: RunRecord) -> ConfigError:
    """The error for resuming ``record``, which no longer waits for approval: it was resumed
    already (RunAlreadyResumedError) or never paused (ConfigError)."""
    run_id, status = record.run_id, record.status
    paused = any(e.type == "run.finished" and e.data.get("status") == "needs_approval"
                 for e in store.events(run_id=run_id))
    if not paused:
        return ConfigError(f"Run {run_id} is {status!r}, not waiting for approval.")
    where = (f"it is running there now; session.result({run_id!r}) shows its progress and, "
             f"once it ends, its outcome" if status == "running" else
             f"it is now {status!r}; session.result({run_id!r}) shows its outcome")
    return RunAlreadyResumedError(
        f"Run {run_id} was already resumed (by another click, thread, session or process), so "
        f"its decisions were not applied again and no approved call ran twice: {where}. To act "
        f"on its result, start a new run.", run_id=run_id, status=status)
