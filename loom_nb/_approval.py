"""A run paused for approval: the state it keeps, its rebuilding (also in a new process), and
the claim that lets exactly one resume go on.

The state is JSON stored with the run record. Resuming claims the record first, with a
compare-and-set of its status from ``needs_approval`` to ``running`` in the store: of two resumes
at once (a double click, two sessions, two processes) one wins and the other raises
:class:`~loom_nb.RunAlreadyResumedError` before it has run or stored anything.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ._owner import current_owner
from .errors import ConfigError
from .messages import Usage
from .runtime import Limits
from .task import RunContext, RuntimeTask

if TYPE_CHECKING:
    from .run import Decisions, RunLoop
    from .session import Session
    from .store import RunRecord

__all__ = ["STATE_VERSION", "claim", "pause_state", "restore"]

STATE_VERSION = 1


def pause_state(loop: RunLoop, next_seq: int) -> dict[str, Any]:
    """Everything :func:`restore` needs, as JSON-ready data (``next_seq``: where it goes on)."""
    assert loop._pause is not None
    return {**loop._pause, "version": STATE_VERSION, "seq": next_seq, "turns": loop.turns,
            "usage": loop.usage.to_dict(), "output": loop.output, "task": loop.task.to_dict(),
            "context": {"inputs": loop.context.inputs, "metadata": loop.context.metadata},
            "limits": loop.limits.to_dict()}


def restore(session: Session, record: RunRecord) -> RunLoop:
    """Rebuild a run paused for approval from its stored record."""
    from .run import RunLoop

    state = record.state
    if record.status != "needs_approval" or not state:
        raise ConfigError(f"Run {record.run_id} is {record.status!r}, not waiting for approval.")
    task = state["task"]
    loop = RunLoop(session, RuntimeTask(task["goal"], task["inputs"], task["criteria"], task["metadata"]),
                   RunContext(state["context"]["inputs"], state["context"]["metadata"],
                              Limits(**state["limits"])),
                   run_id=record.run_id, parent_run_id=record.parent_run_id)
    loop.record = record
    loop._seq, loop.turns, loop.output = state["seq"], state["turns"], state["output"]
    loop.usage = Usage.from_dict(state["usage"])
    loop.events = session.store.events(run_id=record.run_id)
    return loop


def claim(loop: RunLoop, decisions: Decisions) -> dict[str, Any]:
    """Check that ``decisions`` decide every waiting call, then claim the run for this process;
    the paused state to go on from. Raises RunAlreadyResumedError when another resume won, and
    StoreError when the store cannot be written (the run then still waits, unchanged)."""
    state = loop.record.state or {}
    waiting = [p["call_id"] for p in state.get("pending", [])]
    undecided = [c for c in waiting if c not in decisions]
    unknown = [c for c in decisions if c not in waiting]
    if undecided or unknown:
        raise ConfigError(
            f"Run {loop.run_id} waits for a decision on {waiting}; undecided: {undecided}, "
            f"unknown: {unknown}. Approve or reject each waiting call, then resume."
        )
    claimed = dataclasses.replace(loop.record, status="running", state=None, owner=current_owner())
    if not loop.session.store.claim_run(claimed, expected="needs_approval"):
        raise loop.session.already_resumed(loop.run_id)
    loop.record = claimed
    return state
