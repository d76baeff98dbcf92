"""A run paused for approval: the state it keeps, its rebuilding (also in a new process), what
an approval binds, and the claim that lets exactly one resume go on.

A person approves a call they saw: an id, a tool and its arguments. Before anything of a paused
turn runs again, :func:`check_decisions` makes sure the decisions cover exactly the waiting calls
and that each waiting call is still that call in the stored turn (a store edited, damaged or
written by another version must not run a different call under an approved id); then
:func:`claim` takes the run with a compare-and-set of its status from ``needs_approval`` to
``running`` in the store: of two resumes at once (a double click, two sessions, two processes)
one wins and the other raises :class:`~loom_nb.RunAlreadyResumedError` before it has run or
stored anything. :func:`recheck` asks governance again for each approved call, so that a deny
rule, a veto or a full rate limit that came while the run was paused wins over the approval.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._owner import current_owner
from ..errors import ApprovalMismatchError, ConfigError
from ..governance import ToolRequest
from ..messages import ToolCall, ToolResult, Usage, message_from_dict
from ..result import Decision, PendingApproval, is_approved
from ..limits import Limits
from ..task import RunContext, RuntimeTask
from .structured import PAUSED

if TYPE_CHECKING:
    from .loop import Decisions, RunLoop
    from .record import RunRecorder
    from ..session import Session
    from ..store import RunRecord

__all__ = ["STATE_VERSION", "check_decisions", "claim", "pause_state", "recheck", "restore"]

STATE_VERSION = 1


def pause_state(loop: RunRecorder, next_seq: int) -> dict[str, Any]:
    """Everything :func:`restore` needs, as JSON-ready data (``next_seq``: where it goes on)."""
    assert loop._pause is not None
    return {**loop._pause, "version": STATE_VERSION, "seq": next_seq, "turns": loop.turns,
            "tool_calls": loop.tool_calls,
            "usage": loop.usage.to_dict(), "output": loop.output, "task": loop.task.to_dict(),
            "context": {"inputs": loop.context.inputs, "metadata": loop.context.metadata},
            "limits": loop.limits.to_dict()}


def restore(session: Session, record: RunRecord) -> RunLoop:
    """Rebuild a run paused for approval from its stored record."""
    from .loop import RunLoop

    state = record.state
    if record.status != "needs_approval" or not state:
        raise ConfigError(f"Run {record.run_id} is {record.status!r}, not waiting for approval.")
    version = state.get("version", STATE_VERSION)  # states from before the field are version 1
    if version != STATE_VERSION:  # another layout: reading it as this one could run other calls
        raise ConfigError(
            f"Run {record.run_id} was paused by a loom_nb that stores paused runs as version "
            f"{version!r}; this one reads version {STATE_VERSION}. Nothing was run. Resume it "
            f"with the loom_nb version that paused it, or start a new run.")
    task = state["task"]
    restored = RuntimeTask(task["goal"], task["inputs"], task["criteria"], task["metadata"])
    loop = RunLoop(session, restored,
                   RunContext(state["context"]["inputs"], state["context"]["metadata"],
                              Limits(**state["limits"]),
                              _PAUSED_DEPS.get(session, {}).pop(record.run_id, None)),
                   run_id=record.run_id, parent_run_id=record.parent_run_id)
    loop.record = record
    loop.steer = PAUSED.get(record.run_id, loop.steer)
    loop._seq, loop.turns, loop.output = state["seq"], state["turns"], state["output"]
    loop.usage = Usage.from_dict(state["usage"])
    loop.tool_calls = state.get("tool_calls", 0)  # absent from states paused before the limit
    loop.events = session.store.events(run_id=record.run_id)
    loop.call_ids = {e.data["call_id"] for e in loop.events if e.type == "tool.call"}
    return loop


#: The deps of runs paused in this process, by session and run id: deps are live objects (a
#: database client), never stored, so a run resumed in another process has deps=None.
_PAUSED_DEPS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def remember_deps(loop: RunLoop) -> None:
    """Keep a pausing run's deps for its resume in this process."""
    if loop.context.deps is not None:
        _PAUSED_DEPS.setdefault(loop.session, {})[loop.run_id] = loop.context.deps


def claim(loop: RunLoop, decisions: Decisions) -> dict[str, Any]:
    """Check ``decisions`` (:func:`check_decisions`), then claim the run for this process;
    the paused state to go on from. Raises RunAlreadyResumedError when another resume won, and
    StoreError when the store cannot be written (the run then still waits, unchanged)."""
    state = loop.record.state or {}
    check_decisions(loop.run_id, state, decisions, loop.seen)
    claimed = dataclasses.replace(loop.record, status="running", state=None, owner=current_owner())
    if not loop.session.store.claim_run(claimed, expected="needs_approval"):
        raise loop.session.already_resumed(loop.run_id)
    loop.record = claimed
    return state


def check_decisions(run_id: str, state: dict[str, Any], decisions: Mapping[str, Decision],
                    seen: Mapping[str, PendingApproval] | None = None) -> None:
    """Raise unless ``decisions`` (call id -> a decision, see Decisions) decide exactly the
    waiting calls of the stored ``state``, each of which is the call it says it is, and each
    approved call is the one the person saw (``seen``, by call id, when known)."""
    pending = [PendingApproval(**p) for p in state.get("pending", [])]
    waiting = [p.call_id for p in pending]
    undecided = [c for c in waiting if c not in decisions]
    unknown = [c for c in decisions if c not in waiting]
    if undecided or unknown:
        raise ConfigError(
            f"Run {run_id} waits for a decision on {waiting}; undecided: {undecided}, "
            f"unknown: {unknown}. Approve or reject each waiting call, then resume."
        )
    _check_stored_turn(run_id, state, pending)
    for p in pending:
        shown = (seen or {}).get(p.call_id)
        if is_approved(decisions[p.call_id]) and shown is not None and (
                shown.name, shown.args) != (p.name, p.args):
            raise ApprovalMismatchError(
                f"Run {run_id}: the call {p.call_id!r} you approved was {shown.name}"
                f"({shown.args!r}), but the run now waits on {p.name}({p.args!r}) under that id. "
                f"Nothing was run. Look at session.waiting again and decide on the calls it "
                f"shows.")


def _check_stored_turn(run_id: str, state: dict[str, Any], pending: list[PendingApproval]) -> None:
    """The stored turn holds each waiting call once, with the tool and arguments shown."""
    def damaged(what: str) -> ApprovalMismatchError:
        return ApprovalMismatchError(
            f"The stored state of paused run {run_id} does not hold together: {what}. Nothing "
            f"was run. The run cannot resume safely; start a new session (or restore the store "
            f"from a backup).")

    try:
        message = message_from_dict(state["message"])
    except (KeyError, TypeError, ValueError) as exc:
        raise damaged(f"its assistant turn cannot be read ({type(exc).__name__}: {exc})") from None
    calls: dict[str, ToolCall] = {}
    for call in message.tool_calls:
        if call.id in calls:
            raise damaged(f"two tool calls share the id {call.id!r}")
        calls[call.id] = call
    for p in pending:
        found = calls.get(p.via if p.via is not None else p.call_id)
        if found is None:
            raise damaged(f"the waiting call {p.call_id!r} is not in its assistant turn")
        if p.via is None and (found.name, found.args) != (p.name, p.args):
            raise damaged(f"the waiting call {p.call_id!r} shows {p.name}({p.args!r}) but the "
                          f"turn holds {found.name}({found.args!r})")
        if p.via is not None and p.via not in state.get("nested", {}):
            raise damaged(f"the sub-agent call {p.call_id!r} has no paused sub-run")


def recheck(loop: RunLoop, call: ToolCall) -> ToolResult | None:
    """Governance again for a call a person approved: None when it may run now, else the
    error result the model gets instead (a governance.decision event says why)."""
    refusal = loop._check_call(call)  # the tool may be gone from a restored agent
    if refusal is not None:
        return refusal
    decision = loop.agent.runtime.governance.decide(ToolRequest(
        name=call.name, args=call.args, call_id=call.id, tool=loop.agent.tools[call.name],
        run_id=loop.run_id, session_id=loop.session.id, agent=loop.agent.name, approved=True))
    if decision.action != "deny":  # an ask is what the person has answered
        return None
    reason = f"denied by the governance policy after approval: {decision.reason}"
    loop.emit("governance.decision", {"call_id": call.id, "name": call.name, "action": "deny",
                                      "reason": reason, "check": decision.check})
    return loop._loop_result(call, "Denied", f"Not run: a person approved this call, but it was "
                                             f"{reason}")
