"""The run loop: context -> model -> tool calls -> governance -> tool results -> ... -> RunResult.

Every step emits a :class:`RunEvent` to the run's subscribers (the session's store, a stream
consumer, a display); :mod:`loom_nb.engine.record` writes them and builds the result. History
is committed to the session at consistent points only: the user
message when the run starts, then each complete model turn, an assistant turn with tool calls
always together with its results. So a run that fails, hits a limit, is cancelled or pauses for
approval leaves a session whose history is a valid conversation to continue from.

A pause for approval stores the turn's state (the assistant message, the results already made
and the calls waiting) with the run record; ``loom_nb._approval.restore`` rebuilds the run from
it, also in a new process, and :meth:`RunLoop.resume` claims and continues the same run.

The policies decide; this loop asks them and carries their decisions out: governance for each
call, the harness through :class:`~loom_nb.engine.attempts.AttemptControl`, delegation through
the :class:`~loom_nb.delegation.SubRunner` methods below (see :mod:`loom_nb.engine.subruns`).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .._call_ids import call_data, own_call_ids
from .._owner import current_owner
from ..context import build_request
from ..cost import priced
from ..delegation import SubAgent, SubAgentPaused
from ..errors import ContextWindowExceededError, LoomError, ModelError, ModelRefusalError
from ..events import ToolResultData
from ..governance import ToolRequest
from ..harness import HarnessRequest
from ..limits import LimitName, Limits, Stop
from ..messages import Message, ToolCall, ToolResult, Usage, message_from_dict
from ..models import (FallbackNotice, ModelRequest, ModelResponse, RetryNotice, TextDelta,
                      ToolCallDelta)
from ..quality import Verdict
from ..result import Decision, PendingApproval, RunResult, RunStatus, is_approved
from ..signals import RuntimeSignal
from ..store import RunRecord
from ..task import RunContext, RuntimeTask, user_message
from ..tools import unrunnable
from . import parallel, subruns
from .approval import claim, recheck, remember_deps, restore
from .parts import (fallback_data, in_order, prepare_system, request_data, response_data,
                    result_dict, tool_result_from_dict)
from .attempts import AttemptControl
from .edits import (carry_out, check_edits, decide_remembering, decision_data, edited_message,
                    note_edits)
from .record import RunRecorder
from .structured import TurnSteer
from .subruns import resume_nested, shown_under
from .tool_call import run_tool_call
from .window import RunWindow

if TYPE_CHECKING:
    from ..events import RunEvent
    from ..models import ToolChoice
    from ..output import OutputSpec
    from ..session import Session

__all__ = ["Decisions", "RunLoop", "Stop", "new_run_id"]

Subscriber: TypeAlias = Callable[["RunEvent"], None]
#: A person's decisions on paused calls, by call id (see loom_nb.result.Decision).
Decisions: TypeAlias = dict[str, Decision]


def new_run_id() -> str:
    return f"run_{os.urandom(8).hex()}"


class RunLoop(RunRecorder):
    """One run of an agent in a session. Use :meth:`execute` once, or :meth:`resume` after a pause."""

    def __init__(self, session: Session, task: RuntimeTask, context: RunContext,
                 *, run_id: str | None = None, parent_run_id: str | None = None,
                 depth: int = 0, continuing: bool = False,
                 output: OutputSpec | None | Literal["agent"] = "agent",
                 tool_choice: ToolChoice | None = None) -> None:
        self.session = session
        self.agent = session.agent
        self.task = task
        self.context = context
        self.run_id = run_id or new_run_id()
        self.parent_run_id = parent_run_id
        #: How deep in delegation this run is (0 for a run started by a person or a signal).
        self.depth = depth
        # A continuing run (a best-of candidate) starts from history that already holds its prompt.
        self._continuing = continuing
        self.verdict: Verdict | None = None
        self.attempt_count = 0
        self.winner: int | None = None
        self.limits: Limits = context.budget or self.agent.runtime.limits
        self.subscribers: list[Subscriber] = []
        self.events: list[RunEvent] = []
        self._unflushed: list[RunEvent] = []
        self._writing: set[Any] = set()
        self._seq = 0
        self.usage = Usage()
        self.turns = 0
        #: Tool calls the run has started (or had approved), against Limits(max_tool_calls=).
        self.tool_calls = 0
        # A limit a tool call met in the current turn: the run ends at it once the turn is kept.
        self._stopped_at: LimitName | None = None
        self.output = ""
        self.added: list[Message] = []
        self.result: RunResult | None = None
        self._traceback: str | None = None
        self._pause: dict[str, Any] | None = None
        self._elapsed = 0.0
        #: When the current segment of the run (its start, or a resume) began (time.monotonic).
        self.started_at = time.monotonic()
        #: The run whose tool started this one (a tool calling an agent), if any; see Session.
        self.caller: RunLoop | None = None
        self.nesting = 0
        self._streamed: list[str] = []  # text of the model turn in progress
        self.call_ids: set[str] = set()  # every tool call id of the run so far (see _call_ids)
        #: At a resume: the waiting calls as the person saw them, by id (see _approval).
        self.seen: Mapping[str, PendingApproval] = {}
        #: The context window: snapshots, compaction and renewal, fitting items to the budget.
        self.window = RunWindow(self)
        #: The system partition's labelled parts for this run (instructions evaluated once).
        self.system_parts: list[tuple[str, str]] | None = None
        self.joined_system = ""
        #: The signal this run was started for, if any.
        self.started_by: RuntimeSignal | None = None
        #: Observed signals this run shows in its working partition.
        self.observed: list[RuntimeSignal] = []
        # Signals asking to interrupt: appended from any thread, taken at safe points.
        self._interrupts: collections.deque[RuntimeSignal] = collections.deque()
        # The run's end is decided at one point (_finish), under this lock, against requests from
        # other threads: a cancel() or an interrupt that arrives before it is never lost.
        self._ending = threading.Lock()
        self._ended = False
        self._cancel_requested = False
        #: Structured output and tool choice, turn by turn (the agent's unless the run's given).
        self.steer = TurnSteer(self.agent.output if output == "agent" else output, tool_choice,
                               self.agent.model)
        self.record = RunRecord(run_id=self.run_id, session_id=session.id, agent=self.agent.name,
                                model=self.agent.model.identifier, prompt=task.goal,
                                parent_run_id=parent_run_id, owner=current_owner())

    # -- requests from other threads ---------------------------------------------------------------

    def request_interrupt(self, signal: RuntimeSignal) -> bool:
        """Stop at the next safe point and continue with ``signal`` in context (thread-safe).

        False when the run has already ended: the caller must run the signal itself.
        """
        with self._ending:
            if self._ended:
                return False
            self._interrupts.append(signal)
            return True

    def request_cancel(self) -> bool:
        """Make the run end ``cancelled`` whatever else it reaches (thread-safe); False when it has
        already ended. Whoever runs the task also cancels it, so that a wait stops at once."""
        with self._ending:
            if self._ended:
                return False
            self._cancel_requested = True
            return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    @property
    def ended(self) -> bool:
        """True once the run's end is decided: it takes no more interrupts or cancels."""
        return self._ended

    # -- start, resume, and the common drive -------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end. Never raises for run faults: they become the result's status."""
        async def begin_then_harness(started: float) -> Stop:
            # Inside _drive: a store that fails on the first write fails the run, not the caller.
            self._begin()
            return await self._harnessed(started)

        return await self._drive(begin_then_harness)

    def _begin(self) -> None:
        self.session.store.save_run(self.record)
        self.observed = self.session.inbox.take_observed()
        self.emit("run.started", {
            "prompt": self.task.goal, "task": self.task.to_dict(),
            "context": {"inputs": self.context.inputs, "metadata": self.context.metadata},
            "agent": self.agent.name, "model": self.agent.model.identifier,
            "limits": self.limits.to_dict(),
            "signal": self.started_by.to_dict() if self.started_by else None,
            "observed_signals": [s.to_dict() for s in self.observed],
        })
        if not self._continuing:
            self.commit(user_message(self.task, self.window.fit))

    async def _harnessed(self, started: float) -> Stop:
        if self._continuing:  # a best-of candidate is one plain pass; its parent judges it
            return await self.run_turns(started)
        harness = self.agent.runtime.harness
        request = HarnessRequest(AttemptControl(self, started), harness.kind)
        attempt = await harness.run(request)
        self.attempt_count, self.winner, self.verdict = len(request.attempts), attempt.index, attempt.verdict
        self.output = attempt.output  # the kept attempt's answer, not necessarily the last
        return attempt.stop

    # -- sub-runs for delegation (the SubRunner of loom_nb.delegation) -----------------------------

    async def sub_run(self, name: str, agent: SubAgent, task: str, *, depth: int,
                      budget: Limits | None) -> str:
        return await subruns.sub_run(self, name, agent, task, depth=depth, budget=budget)

    async def resume_sub_run(self, name: str, agent: SubAgent, paused: Mapping[str, Any],
                             decisions: Mapping[str, Decision],
                             seen: Mapping[str, PendingApproval]) -> str:
        return await subruns.resume_sub_run(self, name, agent, paused, decisions, seen)

    # -- resume, and the common drive --------------------------------------------------------------

    async def resume(self, decisions: Decisions) -> RunResult:
        """Continue a run paused for approval, with a decision for every waiting call."""
        # The claim comes first: of two resumes at once (a double click, two processes), exactly
        # one finds the run still paused; the other raises before it has done anything (as a
        # bad edit does, checked first).
        await check_edits(self, self.record.state or {}, decisions)
        state = claim(self, decisions)
        waiting = [p["call_id"] for p in state.get("pending", [])]
        self.emit("run.resumed", {"approved": [c for c in waiting if is_approved(decisions[c])],
                                  "rejected": {c: r for c, r in decisions.items() if isinstance(r, str)}})

        async def finish_turn_then_continue(started: float) -> Stop:
            if await self._finish_paused_turn(state, decisions):
                return "needs_approval"  # a resumed sub-agent asks again
            if self._stopped_at is not None:  # an approved call was over a limit
                return self._stopped_at
            return await self.run_turns(started)

        return await self._drive(finish_turn_then_continue)

    async def _drive(self, body: Callable[[float], Any]) -> RunResult:
        import asyncio
        import traceback
        started = self.started_at = time.monotonic()
        status: RunStatus = "completed"
        error: str | None = None
        error_type: str | None = None
        limit: LimitName | None = None
        try:
            stop: Stop = await body(started)
            if stop == "completed" and self.verdict is not None and not self.verdict.passed:
                status, error_type = "failed", "QualityGateFailed"
                error = (f"The answer did not pass the quality gate ({self.verdict.gate}) after "
                         f"{self.attempt_count} attempt(s): {self.verdict.critique}")
            elif stop == "needs_approval":
                status = "needs_approval"
                error = "The run is waiting for a person to approve or reject tool calls."
            elif stop != "completed":
                limit = stop
                status, error = "limit", self.limits.message(stop, self.turns, self.usage,
                                                             self._elapsed, self.tool_calls)
        except (asyncio.CancelledError, KeyboardInterrupt) as exc:
            # A cancel (or an interrupt landing inside a blocking tool) stops the run here: record
            # it, so the session and its stored events stay consistent, then let it propagate.
            if self._streamed:  # keep what the interrupted answer had said so far
                self.output = "".join(self._streamed)
            self._emit_safely("run.interrupted", {"reason": "cancelled", "by": type(exc).__name__,
                                                  "partial_text": bool(self._streamed)})
            self._finish("cancelled", "The run was cancelled.", type(exc).__name__, None)
            raise
        except LoomError as exc:
            status, error, error_type = "failed", str(exc), type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - a run never raises for what happened inside it
            status, error, error_type = "failed", f"{type(exc).__name__}: {exc}", type(exc).__name__
            self._traceback = "".join(traceback.format_exception(exc, limit=-5))
        return self._finish(status, error, error_type, limit)

    # -- turns -------------------------------------------------------------------------------------

    @property
    def system_text(self) -> str:
        """The system partition's text (the agent's static instructions before the first turn)."""
        return self.agent.system_prompt if self.system_parts is None else self.joined_system

    async def run_turns(self, started: float) -> Stop:
        """Model turns until an answer without tool calls, a limit, or a pause for approval."""
        await self.agent.resolve_tools()
        await prepare_system(self)  # callable instructions: once per run, with its context
        model_id, steer = self.agent.model.identifier, self.steer
        defined = self.agent.tool_definitions
        tools = steer.tools(defined)  # the agent's tools, and the output tool where one is used
        tool_names = [t.name for t in tools]
        context, window = self.session.context, self.window
        while True:
            await self.agent.resolve_tools()  # each turn: an MCP server's tools may have changed
            if self.agent.tool_definitions is not defined:
                defined = self.agent.tool_definitions
                tools = steer.tools(defined)
                tool_names = [t.name for t in tools]
            limit = self._limit_reached(started)
            if limit is not None:
                return limit
            snapshot = await window.make_room()
            request = steer.prepare(build_request(rendered=window.rendered(),
                                                  history=context.history, tools=tools))
            total, factor = snapshot.total, context.factor
            self.emit("model.request", request_data(self, model_id, tool_names, snapshot))
            response, text, calls = await self._model_turn(request)
            context.calibrate(response.usage.input_tokens, round(total / factor))
            message = response.message
            if text:
                self.output = text
            final = steer.output_call(calls)
            if final is not None:  # the output tool: its arguments are the answer
                if self._final_result(message, final, calls):
                    return "completed"
                continue
            if not calls:
                await self.commit_turn(message)
                if self._interrupts and self._take_interrupts():
                    continue  # the answer is kept; the model now also sees the signal
                stop = self._final_stop(response.stop_reason, text)
                retry = steer.check_text(text) if stop == "completed" else None
                if retry is None:
                    return stop
                self.commit(Message.user(retry))
                if steer.failure is not None:
                    raise steer.failure
                continue
            steer.after_tools()
            results = await self._tool_calls(message, calls)
            if results is None:
                return "needs_approval"
            await self.commit_turn(message, Message(role="tool", parts=tuple(results)))
            if self._stopped_at is not None:
                return self._stopped_at
            if self._interrupts:
                self._take_interrupts()

    def _final_stop(self, stop_reason: str, text: str) -> Stop:
        """How a final answer's stop reason ends the run; the answer is kept in every case."""
        if stop_reason == "max_tokens":
            return "model_max_tokens"
        if stop_reason == "refusal":
            # repr: the model's words may hold control characters, and errors reach terminals
            raise ModelRefusalError(f"The model refused to answer{': ' + repr(text[:300])[1:-1] if text else '.'}")
        if stop_reason == "context_window_exceeded":
            raise ContextWindowExceededError(
                "The model stopped because its context window was full. Give a smaller "
                "context_window= to the model so loom_nb compacts earlier, or lower "
                "ContextProtocol(compact_at=...).")
        return "completed"

    def _final_result(self, message: Message, call: ToolCall, calls: tuple[ToolCall, ...]) -> bool:
        """Commit a turn that calls the output tool; True when its answer is valid."""
        answer, results = self.steer.final_call(call, calls)
        for result in results:
            self.emit("tool.call", {"call_id": result.call_id, "name": result.name,
                                    "args": next(c.args for c in calls if c.id == result.call_id)})
            self.emit("tool.result", {"call_id": result.call_id, "name": result.name,
                                      "content": result.content, "is_error": result.is_error,
                                      "duration_ms": 0.0})
        self.commit(message, Message(role="tool", parts=tuple(results)))
        if self.steer.failure is not None:
            raise self.steer.failure
        if answer is not None:
            self.output = answer
        return answer is not None

    def _take_interrupts(self) -> bool:
        """At a safe point: put interrupting signals into the conversation. True if there were."""
        signals = []
        while self._interrupts:
            signals.append(self._interrupts.popleft())
        for signal in signals:
            self.emit("run.interrupted", {"reason": "signal", "signal": signal.to_dict()})
        if signals:
            self.commit(Message.user("\n".join(f"[Interrupting signal] {s.describe()}" for s in signals)))
        return bool(signals)

    async def _model_turn(self, request: ModelRequest) -> tuple[ModelResponse, str, tuple[ToolCall, ...]]:
        """The model's response to ``request``, with its text and tool calls."""
        response: ModelResponse | None = None
        self._streamed = []
        self.agent.model.check_request(request)
        async for item in self.agent.model.stream(request):
            if isinstance(item, TextDelta):
                self._streamed.append(item.text)
                self.emit("model.delta", {"text": item.text})
                self._partial(item.text)
            elif isinstance(item, ModelResponse):
                response = item
            elif isinstance(item, ToolCallDelta):
                self.emit("model.delta", {"tool_call_id": item.call_id, "name": item.name,
                                          "args_delta": item.args_delta})
                self._partial(None, item.name, item.args_delta)
            elif isinstance(item, RetryNotice):
                self.emit("model.retry", {"attempt": item.attempt, "delay": item.delay,
                                          "error": item.error})
            elif isinstance(item, FallbackNotice):
                self._streamed = []  # the next model answers the whole turn
                self.emit("model.fallback", fallback_data(item))
        if response is None:
            raise ModelError(f"The model {self.agent.model.identifier} ended its stream without a response.")
        self._streamed = []
        self.turns += 1
        usage = priced(response.usage, self.agent.model, response.model_name)
        self.usage = self.usage + usage
        # Before anything keys on them (events, governance, history): ids unique in the run.
        response, renamed = own_call_ids(response, self.turns, self.call_ids)
        message = response.message
        text, calls = message.text, message.tool_calls
        self.emit("model.response", response_data(self, response, usage, call_data(calls, renamed)))
        return response, text, calls

    def _partial(self, text: str | None, name: str = "", args: str = "") -> None:
        if self.steer.spec is not None and (self.subscribers or self.session.watched):
            data = self.steer.partial(text, name=name, args=args)
            if data is not None:
                self.emit("output.partial", data)

    # -- tool calls under governance ---------------------------------------------------------------

    async def _tool_calls(self, message: Message, calls: tuple[ToolCall, ...]) -> list[ToolResult] | None:
        """The results of a turn's calls, in order; None when some wait for approval.

        Governance decides every call first, in the model's order; then the allowed calls run,
        concurrently up to ``Runtime(parallel_tools=...)`` (see :mod:`loom_nb.engine.parallel`).
        """
        results: dict[str, ToolResult] = {}
        pending: list[PendingApproval] = []
        allowed: list[ToolCall] = []
        for call in calls:
            self.emit("tool.call", {"call_id": call.id, "name": call.name, "args": call.args})
            refusal = self._check_call(call)
            if refusal is None and self._interrupts:  # a safe point: the rest of the turn waits
                refusal = self._interrupted(call)
            if refusal is not None:
                results[call.id] = refusal
                continue
            decision = decide_remembering(self, ToolRequest(
                name=call.name, args=call.args, call_id=call.id, tool=self.agent.tools[call.name],
                run_id=self.run_id, session_id=self.session.id, agent=self.agent.name))
            self.emit("governance.decision", {"call_id": call.id, "name": call.name,
                                              "action": decision.action, "reason": decision.reason,
                                              "check": decision.check})
            if decision.action == "deny":
                results[call.id] = self._loop_result(call, "Denied",
                                                f"Denied by the governance policy: {decision.reason}")
            elif decision.action == "ask":
                pending.append(PendingApproval(
                    call_id=call.id, name=call.name, args=call.args, reason=decision.reason,
                    kind="question" if decision.check == "question" else "approval"))
            else:
                over = self._tool_limit(call)
                if over is not None:
                    results[call.id] = over
                else:
                    allowed.append(call)
        nested = await self._run_allowed(allowed, results, pending)
        if pending:
            self._pause_turn(message.to_dict(), in_order(pending, calls), results, nested)
            return None
        return [results[c.id] for c in calls]

    async def _run_allowed(self, allowed: list[ToolCall], results: dict[str, ToolResult],
                           pending: list[PendingApproval], *, approved: bool = False) -> dict[str, Any]:
        """Run the allowed calls (``approved``: by a person, at a resume) into ``results``; a
        paused ``delegate`` call's waiting calls go to ``pending``. Returns the paused sub-runs
        by delegate call id."""
        nested: dict[str, Any] = {}  # delegate call id -> its paused sub-run
        width = parallel.width_of(self.agent.runtime.parallel_tools)
        outcomes: list[parallel.Outcome] = []
        if width > 1 and len(allowed) > 1:
            for call in allowed if approved else ():
                self.emit("tool.started", {"call_id": call.id, "name": call.name})
            self._flush()  # as _run_tool does: stored before any tool can act
            outcomes = await parallel.run_concurrently(self, allowed, width)
        else:
            for index, call in enumerate(allowed):
                # A signal came while an earlier call ran; what a person approved still runs.
                if index and self._interrupts and not approved:
                    self.tool_calls -= 1  # counted when allowed, but never started
                    outcomes.append(self._interrupted(call))
                    continue
                try:
                    outcomes.append(await self._run_tool(call, approved=approved))
                except SubAgentPaused as paused:
                    outcomes.append(paused)
        for call, outcome in zip(allowed, outcomes):
            if isinstance(outcome, SubAgentPaused):  # its waiting calls become this run's
                shown, nested[call.id] = shown_under(outcome, call.id)
                pending.extend(shown)
            else:
                results[call.id] = outcome
        return nested

    def _interrupted(self, call: ToolCall) -> ToolResult:
        return self._loop_result(call, "Interrupted",
                                 "Not run: a signal interrupted the run before this call. "
                                 "Call it again if it is still needed.")

    def _pause_turn(self, message: dict[str, Any], pending: list[PendingApproval],
                    results: dict[str, ToolResult], nested: dict[str, Any]) -> None:
        remember_deps(self)
        self._pause = {"message": message, "pending": [p.to_dict() for p in pending],
                       "results": {k: result_dict(r) for k, r in results.items()}, "nested": nested}

    async def _finish_paused_turn(self, state: dict[str, Any], decisions: Decisions) -> bool:
        """Carry out the decisions and commit the turn; True when it waits again instead."""
        await self.agent.resolve_tools()
        message = message_from_dict(state["message"])
        calls = {c.id: c for c in message.tool_calls}
        results = {k: tool_result_from_dict(v) for k, v in state["results"].items()}
        ran: dict[str, ToolCall] = {}  # the calls as they run: a person may have edited them
        approved: list[ToolCall] = []
        for pending in state["pending"]:
            call_id, decision = pending["call_id"], decisions[pending["call_id"]]
            self.emit("governance.decision", decision_data(pending, decision))
            if pending.get("via") is not None:  # a sub-agent's call: its sub-run carries it out
                continue
            # A result now when rejected, answered or denied on re-check (edited args too).
            result, ran[call_id] = carry_out(self, calls[call_id], decision)
            if result is None:  # approved: it counts against the limits like any allowed call
                result = self._tool_limit(ran[call_id])
                if result is None:
                    approved.append(ran[call_id])
            if result is not None:
                results[call_id] = result
        # The approved calls run as the turn's allowed calls do (at once, up to parallel_tools).
        again: list[PendingApproval] = []
        nested = await self._run_allowed(approved, results, again, approved=True)
        note_edits(results, {c.id: c for c in approved}, calls)  # the edited calls that ran
        answers, again_nested, nested_again = await resume_nested(self, state.get("nested", {}),
                                                                  decisions)
        again += again_nested
        nested.update(nested_again)
        for via, (content, is_error) in answers.items():
            results[via] = self._loop_result(calls[via], "ToolError" if is_error else None, content)
        if again:
            self._pause_turn(edited_message(message, ran).to_dict(),
                             in_order(again, message.tool_calls), results, nested)
            return True
        self.commit(edited_message(message, ran),
                    Message(role="tool", parts=tuple(results[c.id] for c in message.tool_calls)))
        return False

    def _tool_limit(self, call: ToolCall) -> ToolResult | None:
        """Count an allowed call against the limits; a ``LimitReached`` result when it is over."""
        limit = self.limits.before_tool_call(self.tool_calls, self.usage)
        if limit is None:
            self.tool_calls += 1
            return None
        self._stopped_at = limit
        return self._loop_result(call, "LimitReached", "Not run: " + self.limits.message(
            limit, self.turns, self.usage, self._elapsed, self.tool_calls))

    def _check_call(self, call: ToolCall) -> ToolResult | None:
        problem = unrunnable(self.agent.tools, call.name, call.invalid_args)
        return None if problem is None else self._loop_result(call, *problem)

    async def _run_tool(self, call: ToolCall, *, approved: bool = False) -> ToolResult:
        if approved:
            self.emit("tool.started", {"call_id": call.id, "name": call.name})
        # Stored before the tool can act: a process killed while it runs leaves events that say
        # the call was allowed (or approved) and started, and the usage of the turn that asked.
        await self.commit_turn()
        return await run_tool_call(self, call)

    def _loop_result(self, call: ToolCall, error_type: str | None, message: str) -> ToolResult:
        """A result made by the loop, not by the tool: an error of ``error_type``, or (None) an
        answer that arrived later, such as a resumed sub-agent's."""
        data: ToolResultData = {"call_id": call.id, "name": call.name, "content": message,
                                "is_error": error_type is not None, "duration_ms": 0.0}
        if error_type is not None:
            data["error_type"] = error_type
        else:
            data["content"] = message = self.window.fit(message)
        self.emit("tool.result", data)
        return ToolResult(call_id=call.id, name=call.name, content=message, is_error=error_type is not None)

    # -- limits and the end ------------------------------------------------------------------------

    def _limit_reached(self, started: float) -> LimitName | None:
        self._elapsed = time.monotonic() - started
        return self.limits.reached(self.turns, self.usage, self._elapsed)

    @classmethod
    def restore(cls, session: Session, record: RunRecord) -> RunLoop:
        """Rebuild a run paused for approval from its stored record (see loom_nb._approval)."""
        return restore(session, record)

