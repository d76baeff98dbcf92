"""The run loop: context -> model -> tool calls -> tool results -> context ... -> RunResult.

Every step emits a :class:`RunEvent` to the run's subscribers (the session's store, a stream
consumer, a display). History is committed to the session at consistent points only: the user
message when the run starts, then each complete model turn, an assistant turn with tool calls
always together with its results. So a run that fails, hits a limit or is cancelled at any point
leaves a session whose history is a valid conversation to continue from.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .context import build_request, render_working
from .errors import LoomError, ModelError
from .events import EventType, RunEvent, utcnow
from .messages import Message, ToolCall, ToolResult, Usage
from .models import ModelResponse, TextDelta, ToolCallDelta
from .result import RunResult, RunStatus
from .runtime import LimitName, Limits
from .store import RunRecord
from .task import RunContext, RuntimeTask

if TYPE_CHECKING:
    from .session import Session

__all__ = ["RunLoop", "new_run_id"]

Subscriber = Callable[[RunEvent], None]


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex[:16]}"


class RunLoop:
    """One run of an agent in a session. Use :meth:`execute` once."""

    def __init__(self, session: Session, task: RuntimeTask, context: RunContext,
                 *, run_id: str | None = None, parent_run_id: str | None = None) -> None:
        self.session = session
        self.agent = session.agent
        self.task = task
        self.context = context
        self.run_id = run_id or new_run_id()
        self.parent_run_id = parent_run_id
        self.limits: Limits = context.budget or self.agent.runtime.limits
        self.subscribers: list[Subscriber] = []
        self.events: list[RunEvent] = []
        self._pending: list[RunEvent] = []  # stored events not yet flushed to the store
        self._seq = 0
        self.usage = Usage()
        self.turns = 0
        self.output = ""
        self.added: list[Message] = []
        self.result: RunResult | None = None
        self._traceback: str | None = None
        self.record = RunRecord(run_id=self.run_id, session_id=session.id, agent=self.agent.name,
                                model=self.agent.model.identifier, prompt=task.goal,
                                parent_run_id=parent_run_id)

    # -- events ------------------------------------------------------------------------------------

    def emit(self, type: EventType, data: dict[str, Any]) -> RunEvent:
        live_only = type == "model.delta"
        # A delta takes the seq of the model.response it belongs to (see events.py).
        event = RunEvent(type=type, run_id=self.run_id, session_id=self.session.id, seq=self._seq,
                         data=data, parent_run_id=self.parent_run_id)
        if not live_only:
            self._seq += 1
            self.events.append(event)
            self._pending.append(event)
        for subscriber in self.subscribers:
            subscriber(event)
        return event

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.session.store.append_events(batch)

    def _commit(self, *messages: Message) -> None:
        self.session.commit(self.run_id, list(messages))
        self.added.extend(messages)
        self._flush()

    # -- the loop ----------------------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end. Never raises for run faults: they become the result's status."""
        self.session.store.save_run(self.record)
        self.emit("run.started", {
            "prompt": self.task.goal, "task": self.task.to_dict(),
            "context": {"inputs": self.context.inputs, "metadata": self.context.metadata},
            "agent": self.agent.name, "model": self.agent.model.identifier,
            "limits": {"max_turns": self.limits.max_turns, "max_tokens": self.limits.max_tokens,
                       "max_seconds": self.limits.max_seconds},
        })
        self._commit(Message.user(self.task.goal))
        started = time.monotonic()
        status: RunStatus = "completed"
        error: str | None = None
        error_type: str | None = None
        limit: LimitName | None = None
        try:
            limit = await self._turns(started)
            if limit is not None:
                status, error = "limit", self._limit_message(limit)
        except asyncio.CancelledError:
            self._finish("cancelled", "The run was cancelled.", "CancelledError", None)
            raise
        except LoomError as exc:
            status, error, error_type = "failed", str(exc), type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - a run never raises for what happened inside it
            status, error, error_type = "failed", f"{type(exc).__name__}: {exc}", type(exc).__name__
            self._traceback = "".join(traceback.format_exception(exc, limit=-5))
        return self._finish(status, error, error_type, limit)

    async def _turns(self, started: float) -> LimitName | None:
        """Model turns until an answer without tool calls; returns the limit that stopped it."""
        working = render_working(self.task, self.context)
        system = self.agent.system_prompt
        tools = self.agent.tool_definitions
        while True:
            limit = self._limit_reached(started)
            if limit is not None:
                return limit
            request, snapshot = build_request(
                system=system, working=working, history=self.session.history,
                history_tokens=self.session.history_tokens, tools=tools)
            self.emit("model.request", {"turn": self.turns + 1, "model": self.agent.model.identifier,
                                        "tools": [t.name for t in tools], "context": snapshot})
            response = await self._model_turn(request)
            calls = response.message.tool_calls
            if response.message.text:
                self.output = response.message.text
            if not calls:
                self._commit(response.message)
                return None
            results = [await self._tool_turn(call) for call in calls]
            self._commit(response.message, Message(role="tool", parts=tuple(results)))

    async def _model_turn(self, request: Any) -> ModelResponse:
        response: ModelResponse | None = None
        async for item in self.agent.model.stream(request):
            if isinstance(item, TextDelta):
                self.emit("model.delta", {"text": item.text})
            elif isinstance(item, ToolCallDelta):
                self.emit("model.delta", {"tool_call_id": item.call_id, "name": item.name,
                                          "args_delta": item.args_delta})
            elif isinstance(item, ModelResponse):
                response = item
        if response is None:
            raise ModelError(f"The model {self.agent.model.identifier} ended its stream without a response.")
        self.turns += 1
        self.usage = self.usage + response.usage
        message = response.message
        self.emit("model.response", {
            "turn": self.turns, "text": message.text, "stop_reason": response.stop_reason,
            "tool_calls": [{"id": c.id, "name": c.name, "args": c.args} for c in message.tool_calls],
            "usage": response.usage.to_dict(), "model": response.model_name or self.agent.model.name,
        })
        return response

    async def _tool_turn(self, call: ToolCall) -> ToolResult:
        self.emit("tool.call", {"call_id": call.id, "name": call.name, "args": call.args})
        tool = self.agent.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.agent.tools)) or "none"
            return self._refuse(call, "UnknownTool",
                                f"There is no tool named {call.name!r}. Available tools: {known}.")
        if call.invalid_args is not None:
            return self._refuse(call, "InvalidJSON",
                                f"The arguments for tool {call.name!r} are not a JSON object: "
                                f"{call.invalid_args[:500]!r}. Call the tool again with a JSON "
                                f"object of arguments that matches its schema.")
        outcome = await tool.invoke(call.args)
        data: dict[str, Any] = {"call_id": call.id, "name": call.name, "content": outcome.content,
                                "is_error": outcome.is_error, "duration_ms": outcome.duration_ms}
        if outcome.is_error:
            data["error_type"] = outcome.error_type
            if outcome.traceback:
                data["traceback"] = outcome.traceback
        self.emit("tool.result", data)
        return ToolResult(call_id=call.id, name=call.name, content=outcome.content,
                          is_error=outcome.is_error)

    def _refuse(self, call: ToolCall, error_type: str, message: str) -> ToolResult:
        self.emit("tool.result", {"call_id": call.id, "name": call.name, "content": message,
                                  "is_error": True, "error_type": error_type, "duration_ms": 0.0})
        return ToolResult(call_id=call.id, name=call.name, content=message, is_error=True)

    # -- limits and the end ------------------------------------------------------------------------

    def _limit_reached(self, started: float) -> LimitName | None:
        limits = self.limits
        if limits.max_turns is not None and self.turns >= limits.max_turns:
            return "max_turns"
        if limits.max_tokens is not None and self.usage.total_tokens >= limits.max_tokens:
            return "max_tokens"
        if limits.max_seconds is not None and time.monotonic() - started >= limits.max_seconds:
            return "max_seconds"
        return None

    def _limit_message(self, limit: LimitName) -> str:
        used = {"max_turns": f"{self.turns} model turns",
                "max_tokens": f"{self.usage.total_tokens} tokens",
                "max_seconds": f"{getattr(self.limits, limit)} seconds"}[limit]
        return (f"The run stopped at its limit {limit}={getattr(self.limits, limit)} after {used}. "
                f"Raise it with Runtime.sdk({limit}=...) or for one run with "
                f"RunContext(budget=Limits({limit}=...)).")

    def _finish(self, status: RunStatus, error: str | None, error_type: str | None,
                limit: LimitName | None) -> RunResult:
        finished = utcnow()
        data: dict[str, Any] = {"status": status, "output": self.output, "turns": self.turns,
                                "usage": self.usage.to_dict(), "error": error,
                                "error_type": error_type, "limit": limit}
        if self._traceback:
            data["traceback"] = self._traceback
        self.emit("run.finished", data)
        self._flush()
        record = self.record
        record.status, record.output, record.error = status, self.output, error
        record.finished_at, record.usage, record.turns = finished, self.usage, self.turns
        self.session.store.save_run(record)
        self.result = RunResult(
            output=self.output, status=status, run_id=self.run_id, session_id=self.session.id,
            events=self.events, usage=self.usage, error=error, error_type=error_type, limit=limit,
            messages=tuple(self.added), agent=self.agent.name, model=self.agent.model.identifier,
            turns=self.turns, started_at=record.started_at, finished_at=finished,
        )
        return self.result
