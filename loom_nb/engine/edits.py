"""What a person adds to a decision on a paused call: edited arguments, a remembered approval,
an answer to the model's question (see :class:`~loom_nb.result.Approved`).

Edited arguments are checked twice: when they are given (``result.approve(id, args=...)``, with
the tools the session knows) and again before the paused run is claimed (:func:`check_edits`,
with the tools resolved), so a bad edit is a :class:`~loom_nb.errors.ConfigError` and the run
still waits. The edited call is decided by governance again (a deny on the new arguments wins)
and runs with those arguments; the turn goes into history with the call as edited, as
LangGraph's human-in-the-loop middleware does, and its result starts with a note that a person
changed the arguments, so that the model neither mistakes the edit for its own call nor tries
its original call again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..decisions import check_rememberable, check_schema, edited_args
from ..errors import ConfigError
from ..events import GovernanceDecisionData
from ..governance import GovernanceDecision, ToolRequest
from ..messages import Message, ToolCall, ToolResult
from ..result import Approved, Decision, PendingApproval, is_approved
from .approval import recheck

if TYPE_CHECKING:
    from .loop import RunLoop

__all__ = ["carry_out", "check_edits", "decide_remembering", "decision_data", "edited_message",
           "note_edits"]

async def check_edits(loop: RunLoop, state: Mapping[str, Any], decisions: Mapping[str, Decision]) -> None:
    """Before the claim: each decision fits its call (answers for questions only, a question
    answered or rejected), and each edit is valid for the tool as resolved now (a sub-agent's
    call: for that sub-agent's tool, so that a bad edit leaves the calling run waiting too)."""
    for raw in state.get("pending", []):
        pending = PendingApproval(**raw)
        decision = decisions.get(pending.call_id, "")
        answer = decision.answer if isinstance(decision, Approved) else None
        if pending.kind == "question" and is_approved(decision) and answer is None:
            raise ConfigError(f"{pending.call_id!r} in run {loop.run_id} is a question of the "
                              f"model: answer it (answer(call_id, text)) or reject it.")
        if pending.kind != "question" and answer is not None:
            raise ConfigError(f"{pending.call_id!r} in run {loop.run_id} is not a question; "
                              f"approve or reject it.")
        if isinstance(decision, Approved) and decision.remember:
            check_rememberable(pending, loop.run_id)
        if isinstance(decision, Approved) and decision.args is not None:
            args = edited_args(None, pending, decision.args, loop.run_id)
            tools = await _tools_for(loop, state, pending)
            if tools is not None:
                check_schema(tools.get(pending.name), pending, args, loop.run_id)


async def _tools_for(loop: RunLoop, state: Mapping[str, Any],
                     pending: PendingApproval) -> Mapping[str, Any] | None:
    """The tools that run ``pending``: the agent's, or the sub-agent's for a call under a
    ``delegate`` call (None when that sub-agent is unknown: its own resume reports it)."""
    if pending.via is None:
        return await loop.agent.resolve_tools()
    if "/" in pending.call_id.removeprefix(f"{pending.via}/"):
        return None  # a call two delegations down: the sub-run in between checks it
    name = state.get("nested", {}).get(pending.via, {}).get("agent")
    agent = getattr(loop.agent.runtime.delegation, "agents", {}).get(name)
    return None if agent is None else await agent.resolve_tools()


def decision_data(pending: Mapping[str, Any], decision: Decision) -> GovernanceDecisionData:
    """The ``governance.decision`` event of a person's decision on a waiting call."""
    approved = is_approved(decision)
    data: GovernanceDecisionData = {
        "call_id": pending["call_id"], "name": pending["name"],
        "action": "allow" if approved else "deny",
        "reason": "approved by a person" if approved else f"rejected by a person: {decision}",
        "check": "approval"}
    if isinstance(decision, Approved):
        if decision.answer is not None:
            data["reason"], data["answered"] = "answered by a person", True
        if decision.args is not None:
            data["reason"] = "approved by a person with edited arguments"
            data["args"], data["original_args"] = decision.args, pending["args"]
        if decision.remember:
            data["remember"] = True
            data["reason"] += f"; {pending['name']} is allowed for the rest of the session"
    if pending.get("via") is not None:
        data["via"] = pending["via"]
        data.setdefault("args", pending["args"])
    return data


def decide_remembering(loop: RunLoop, request: ToolRequest) -> GovernanceDecision:
    """Governance's decision on a call, with the tools the session remembers: asked only when
    the policy would ask (so a turn that asks nothing reads nothing), the call is decided again
    as remembered when its tool is (an ask alone never counts against a rate limit)."""
    decision = loop.agent.runtime.governance.decide(request)
    if (decision.action == "ask" and decision.check != "question"
            and request.name in loop.session.remembered_in(loop.run_id)):
        request.remembered = True
        decision = loop.agent.runtime.governance.decide(request)
    return decision


def carry_out(loop: RunLoop, call: ToolCall, decision: Decision) -> tuple[ToolResult | None, ToolCall]:
    """A decided call of the paused turn: its result when the decision makes it (a rejection,
    an answer, governance refusing the call again), else None: the call (as edited) runs with
    the turn's other approved calls. Also the call as history keeps it."""
    if not is_approved(decision):
        return loop._loop_result(call, "Rejected", f"A person rejected this call: {decision or 'no reason given'}"), call
    extra = decision if isinstance(decision, Approved) else Approved()
    if extra.remember:
        loop.session.remember_approval(call.name, run_id=loop.run_id, call_id=call.id)
    if extra.answer is not None:  # the question's answer is its result (governance allowed it)
        refusal = recheck(loop, call)
        return (refusal if refusal is not None else loop._loop_result(call, None, extra.answer)), call
    if extra.args is not None:
        call = dataclasses.replace(call, args=extra.args, invalid_args=None)
    return recheck(loop, call), call  # governance again, on the call as it will run


def note_edits(results: dict[str, ToolResult], ran: Mapping[str, ToolCall],
               calls: Mapping[str, ToolCall]) -> None:
    """Start the result of each call a person edited with a note saying so (see the module
    docstring), for the model; the ``tool.result`` event keeps the tool's own content."""
    for call_id, call in ran.items():
        original = calls[call_id]
        if call.args != original.args and call_id in results:
            asked = json.dumps(original.args, ensure_ascii=False)[:2000]
            note = (f"[A person edited the arguments of this call before it ran; it ran with the "
                    f"arguments shown. You had asked for {asked}.]\n")
            result = results[call_id]
            results[call_id] = dataclasses.replace(result, content=note + result.content)


def edited_message(message: Message, calls: Mapping[str, ToolCall]) -> Message:
    """``message`` with its tool calls replaced by the calls as they ran (edited arguments)."""
    parts = tuple(calls.get(p.id, p) if isinstance(p, ToolCall) else p for p in message.parts)
    return message if parts == message.parts else dataclasses.replace(message, parts=parts)
