"""The RunEvent stream: the single record of what a run did.

Displays, widgets, stores and DataFrames all subscribe to this one stream and never reach into
the loop. The vocabulary of ``type`` (documented in docs/events.md):

======================  ==========================================================================
``run.started``         a run begins: prompt, task, context inputs, agent and model, the signal
                        that started it and the signals observed since the last run
``model.request``       a request goes to the model: turn, tools, context snapshot (partitions)
``model.delta``         streamed text as it arrives (live only, see below)
``model.response``      the complete model turn: text, tool calls, usage, stop reason
``model.retry``         the provider failed in a retryable way; attempt, delay and error
``model.fallback``      a fallback's model failed; the next one takes the turn (which, and why)
``output.partial``      the structured answer parsed so far, as it streams (live only)
``tool.call``           the model asks for a tool, with its arguments
``governance.decision`` allow / deny / ask for a tool call, the reason and the check that decided
``tool.started``        a call a person approved starts (stored before it runs)
``tool.result``         the tool's result or error, with its duration
``context.compacted``   history was shrunk or summarized: tokens before and after, what went
``context.renewed``     memory and history were replaced by a handoff note
``harness.attempt``     an attempt begins (in the run, or as a nested candidate run)
``quality.verdict``     a quality gate's PASS/FAIL on an attempt, with the critique
``delegation.started``  a sub-agent run begins (its run id, session, depth)
``delegation.finished`` it ended: status, output, usage
``run.interrupted``     the run stopped at a safe point: cancelled, or a signal interrupted it
``run.resumed``         a run paused for approval continues: which calls were approved/rejected
``mcp.sampling``        an MCP server asked the run's model for a completion (sampling/createMessage):
                        allowed or denied, by which check, the model, its usage and answer
``mcp.elicitation``     an MCP server asked the person for input (elicitation/create): accept,
                        decline or cancel, and who answered (the callback, or nobody)
``mcp.progress``        a progress notification of an MCP tool call in flight
``mcp.log``             an MCP server's log message at warning level or above
``run.finished``        a run ends, whatever its status: output, usage, error, turns, verdict
                        (a run paused for approval finishes with ``needs_approval``; a run
                        whose process died gets one with ``interrupted`` when it is found)
======================  ==========================================================================

``signal.decision`` events belong to the session, not to a run: they reach session
subscribers and are stored in the ``signals`` table (``run_id`` names the run a decision
affects, when there is one). Every type's data keys are listed in docs/events.md.

Each type's ``data`` is declared once below as a ``TypedDict`` (:data:`PAYLOADS` maps the type to
it); at run time ``data`` stays a plain dict, so stored JSON is what the kernel always wrote.
Readers take the typed view with :func:`payload`, and :func:`tool_calls` pairs each
``tool.call`` with its ``tool.result`` and governance decisions, for every reader that needs both.

``model.delta`` and ``output.partial`` events are *live only*: :meth:`Agent.stream` yields them and displays draw them,
but they are not stored and not part of ``RunResult.events``; the following ``model.response``
carries the whole text. A delta's ``seq`` is the ``seq`` of that ``model.response``, so the stored
events of a run are numbered 0, 1, 2, ... without gaps.
"""

# No ``from __future__ import annotations``: with it, TypedDict could not see ``NotRequired``
# at run time, and ``__required_keys__`` (which tests and readers may introspect) would be wrong.
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

__all__ = ["LIVE_ONLY", "PAYLOADS", "SESSION_SUBSCRIBERS", "EventLike", "EventPayload", "EventType", "PartitionName",
           "RunEvent", "ToolCallTrace", "payload", "tool_calls", "utcnow"]

EventType: TypeAlias = Literal[
    "run.started",
    "run.finished",
    "run.resumed",
    "model.request",
    "model.delta",
    "model.response",
    "model.retry",
    "model.fallback",
    "output.partial",
    "tool.call",
    "tool.started",
    "tool.result",
    "governance.decision",
    "signal.decision",
    "run.interrupted",
    "context.compacted",
    "context.renewed",
    "quality.verdict",
    "quality.judge",
    "harness.attempt",
    "delegation.started",
    "delegation.finished",
    "mcp.sampling",
    "mcp.elicitation",
    "mcp.progress",
    "mcp.log",
]


# -- payloads: the keys of each type's data ------------------------------------------------------
# One TypedDict per event type; docs/events.md describes the same keys for users. ``NotRequired``
# marks keys the kernel writes only in some cases. Data read back from a store written by an
# older version may lack keys, which is why readers of stored events still use ``.get``.
# Vocabularies that belong to a policy (governance actions and checks, run statuses, limit names)
# are plain ``str`` here: this module is the bottom layer and imports no policy.


class UsageData(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    requests: int
    cost: NotRequired[float | None]  #: USD; None when the model or its price is unknown


class SignalData(TypedDict):
    """A :class:`~loom_nb.signals.RuntimeSignal` as ``to_dict`` writes it."""

    id: str
    source: str
    type: str
    summary: str
    payload: dict[str, Any]
    urgency: str
    dedupe_key: str | None
    observed_at: str  #: ISO 8601


class TaskData(TypedDict):
    goal: str
    inputs: dict[str, Any]
    criteria: list[str]
    metadata: dict[str, Any]
    #: References (kind, media_type, sha256, size, url, name, label) of the prompt's images and
    #: documents; never their bytes.
    attachments: NotRequired[list[dict[str, Any]]]


class RunContextData(TypedDict):
    inputs: dict[str, Any]
    metadata: dict[str, Any]


class LimitsData(TypedDict):
    max_turns: int | None
    max_requests: NotRequired[int | None]
    max_tokens: int | None
    max_cost_usd: NotRequired[float | None]
    max_tool_calls: NotRequired[int | None]
    max_seconds: float | None
    tool_seconds: float | None


#: The context partitions, in the order the system prompt renders them (context.py builds them).
PartitionName: TypeAlias = Literal["system", "skill", "memory", "working", "history"]


class ContextData(TypedDict):
    """The context snapshot of a request (``ContextSnapshot.to_dict``)."""

    partitions: dict[PartitionName, int]  #: tokens of system, skill, memory, working, history
    total_tokens: int
    budget: int
    window: int
    output_reserve: int
    window_source: str
    used: float
    messages: int


class VerdictData(TypedDict):
    passed: bool
    critique: str
    gate: str
    parts: NotRequired[list["VerdictData"]]


class PendingData(TypedDict):
    """A call waiting for approval (``PendingApproval.to_dict``)."""

    call_id: str
    name: str
    args: dict[str, Any]
    reason: str
    via: str | None


class ResponseCallData(TypedDict):
    """One tool call as ``model.response`` lists it."""

    id: str
    name: str
    args: dict[str, Any]
    provider_id: NotRequired[str]  #: the id the provider sent, when the run rewrote it


class RunStartedData(TypedDict):
    prompt: str
    task: TaskData
    context: RunContextData
    agent: str
    model: str
    limits: LimitsData
    signal: SignalData | None
    observed_signals: list[SignalData]


class RunFinishedData(TypedDict):
    status: str
    output: str
    turns: int
    usage: UsageData
    error: str | None
    error_type: str | None
    limit: str | None
    attempts: int
    winner: int | None
    verdict: VerdictData | None
    traceback: NotRequired[str]  #: after an unexpected exception
    pending: NotRequired[list[PendingData]]  #: for ``needs_approval``
    output_type: NotRequired[str]  #: with ``output_type=``: the type's name
    parsed: NotRequired[Any]  #: with ``output_type=``: the validated output as JSON (or None)


class RunResumedData(TypedDict):
    approved: list[str]
    rejected: dict[str, str]  #: call id -> the reason


class RunInterruptedData(TypedDict):
    reason: Literal["signal", "cancelled"]
    signal: NotRequired[SignalData]  #: for ``signal``
    by: NotRequired[str]  #: for ``cancelled``: CancelledError, KeyboardInterrupt or cancel
    partial_text: NotRequired[bool]


class ModelRequestData(TypedDict):
    turn: int
    model: str
    tools: list[str]
    context: ContextData
    content: dict[PartitionName, str]  #: partition texts that changed since the run's previous request
    #: With the system partition's content: each of its parts (``label``, ``tokens``).
    system_parts: NotRequired[list[dict[str, Any]]]


class ModelDeltaData(TypedDict, total=False):
    """Either ``text``, or a tool call's ``tool_call_id``, ``name`` and ``args_delta``."""

    text: str
    tool_call_id: str
    name: str
    args_delta: str


class ModelResponseData(TypedDict):
    turn: int
    text: str
    stop_reason: str
    tool_calls: list[ResponseCallData]
    usage: UsageData
    model: str
    #: With ``Model.fallback``: the identifier of the model that answered.
    answered_by: NotRequired[str]


class OutputPartialData(TypedDict):
    """A structured answer as streamed so far (``output_type=``): the JSON value parsed from it,
    the last string or item possibly cut, and whether that already validates."""

    output: Any
    valid: bool


class ModelRetryData(TypedDict):
    attempt: int
    delay: float
    error: str


class ModelFallbackData(TypedDict):
    failed: str  #: the model that failed (its identifier)
    next: str  #: the model that takes the turn
    error: str
    error_type: str
    discarded: bool  #: the failed model had streamed text, which is dropped


class ToolCallData(TypedDict):
    call_id: str
    name: str
    args: dict[str, Any]


class ToolStartedData(TypedDict):
    call_id: str
    name: str


class ToolResultData(TypedDict):
    call_id: str
    name: str
    content: str  #: the text the model gets
    is_error: bool
    duration_ms: float
    error_type: NotRequired[str]  #: when ``is_error``
    traceback: NotRequired[str]  #: when the tool raised
    truncated_from: NotRequired[int]  #: the length before the result was cut to the budget
    cancelled: NotRequired[bool]  #: the run was cancelled while the call ran
    timeout: NotRequired[float | None]  #: the bound a ``ToolTimeout`` hit (seconds)
    limit: NotRequired[str]  #: ``max_seconds`` when the run's time limit was that bound
    #: References of the images and documents the tool returned (never their bytes).
    media: NotRequired[list[dict[str, Any]]]


class GovernanceDecisionData(TypedDict):
    call_id: str
    name: str
    action: str  #: allow, deny or ask (governance.GovernanceAction)
    reason: str
    check: str  #: which rule decided (governance.GovernanceCheck), or ``approval``
    via: NotRequired[str]  #: a person's decision on a sub-agent's call: the ``delegate`` call
    #: with ``via``: that call's arguments; with ``original_args``: the arguments a person edited
    args: NotRequired[dict[str, Any]]
    original_args: NotRequired[dict[str, Any]]  #: an edited call: the model's arguments
    remember: NotRequired[bool]  #: the person allowed the tool for the rest of the session
    answered: NotRequired[bool]  #: the call was a question (``ask_user``) and this is its answer


class SignalDecisionData(TypedDict):
    action: str  #: ignore, observe, queue or interrupt
    reason: str
    signal: SignalData


class CompactedData(TypedDict):
    before_tokens: int
    after_tokens: int
    budget: int
    shrunk_results: int
    shrunk_characters: int
    summarized_messages: int
    kept_messages: int
    memory_entries: int
    summary_tokens: NotRequired[int]  #: when it summarized
    summary_method: NotRequired[str]
    summary_usage: NotRequired[UsageData]


class RenewedData(TypedDict):
    before_tokens: int
    after_tokens: int
    budget: int
    handoff_tokens: int
    handoff_method: str
    handoff_usage: UsageData
    kept_messages: int
    open_tasks: list[str]


class QualityVerdictData(VerdictData):
    attempt: int


class QualityJudgeData(TypedDict):
    """One judge model call: a quality gate's (``purpose="gate"``) during a run, or a
    model-graded scorer's (``purpose="score"``) appended to the run it scored."""

    purpose: Literal["gate", "score"]
    model: str
    system: str
    prompt: str
    reply: str
    usage: UsageData
    duration_ms: float
    attempt: NotRequired[int]  #: for a gate: the harness attempt judged
    gate: NotRequired[str]  #: for a gate: its name
    scorer: NotRequired[str]  #: for a scorer: its name


class HarnessAttemptData(TypedDict):
    attempt: int
    mode: Literal["in_run", "candidate"]
    note: NotRequired[str | None]  #: for ``in_run``
    run_id: NotRequired[str]  #: for ``candidate``: the nested run
    session_id: NotRequired[str]


class DelegationStartedData(TypedDict):
    agent: str
    task: str
    run_id: str
    session_id: str
    depth: int


class DelegationFinishedData(TypedDict):
    agent: str
    run_id: str
    status: str
    output: str
    usage: UsageData
    error: str | None


class McpSamplingData(TypedDict):
    """A server's ``sampling/createMessage`` request during an MCP tool call, and its answer."""

    server: str  #: the Capability.mcp name
    tool: str  #: the tool call (``{server}__{tool}``) during which the server asked
    action: str  #: ``allow`` (answered) / ``deny`` / ``error`` (the model failed)
    reason: str
    check: str  #: the governance check that decided (or ``approval`` / ``sampling``)
    messages: int  #: how many messages the server sent
    max_tokens: int
    model: NotRequired[str]
    usage: NotRequired[UsageData]
    text: NotRequired[str]  #: the answer's text (cut to 2000 characters)


class McpElicitationData(TypedDict):
    """A server's ``elicitation/create`` request, and what was answered."""

    server: str
    tool: str
    mode: str  #: ``form`` or ``url``
    message: str
    action: str  #: ``accept`` / ``decline`` / ``cancel``
    answered_by: str  #: ``callback``, or ``nobody`` (no elicitation= callback: declined)
    fields: list[str]  #: the requested schema's property names (values are not recorded)
    reason: NotRequired[str]


class McpProgressData(TypedDict):
    server: str
    tool: str
    progress: float
    total: float | None
    message: str | None


class McpLogData(TypedDict):
    server: str
    level: str  #: warning, error, critical, alert or emergency
    logger: str | None
    message: str


#: The payload of any event: what the recorder (``RunLoop.emit``) takes, so that mypy checks every
#: payload the engine writes against one of the TypedDicts above (tests check the type matches).
EventPayload: TypeAlias = (
    RunStartedData | RunFinishedData | RunResumedData | RunInterruptedData | ModelRequestData
    | ModelDeltaData | ModelResponseData | ModelRetryData | ModelFallbackData | OutputPartialData
    | ToolCallData | ToolStartedData | ToolResultData | GovernanceDecisionData | SignalDecisionData
    | CompactedData | RenewedData | QualityVerdictData | QualityJudgeData | HarnessAttemptData
    | DelegationStartedData | DelegationFinishedData | McpSamplingData | McpElicitationData
    | McpProgressData | McpLogData)


#: The types given to live subscribers only, never stored (see the module docstring).
LIVE_ONLY: frozenset[EventType] = frozenset({"model.delta", "output.partial"})


#: Each event type's payload TypedDict.
PAYLOADS: Mapping[EventType, type[Mapping[str, Any]]] = {
    "run.started": RunStartedData, "run.finished": RunFinishedData,
    "run.resumed": RunResumedData, "run.interrupted": RunInterruptedData,
    "model.request": ModelRequestData, "model.delta": ModelDeltaData,
    "model.response": ModelResponseData, "model.retry": ModelRetryData,
    "model.fallback": ModelFallbackData,
    "output.partial": OutputPartialData,
    "tool.call": ToolCallData, "tool.started": ToolStartedData, "tool.result": ToolResultData,
    "governance.decision": GovernanceDecisionData, "signal.decision": SignalDecisionData,
    "context.compacted": CompactedData, "context.renewed": RenewedData,
    "quality.verdict": QualityVerdictData, "quality.judge": QualityJudgeData,
    "harness.attempt": HarnessAttemptData,
    "delegation.started": DelegationStartedData, "delegation.finished": DelegationFinishedData,
    "mcp.sampling": McpSamplingData, "mcp.elicitation": McpElicitationData,
    "mcp.progress": McpProgressData, "mcp.log": McpLogData,
}


#: The current time in UTC. A partial, not a function: events are made several times per model
#: turn, and a partial calls datetime.now without a Python frame.
utcnow: Callable[[], datetime] = functools.partial(datetime.now, timezone.utc)


# Not frozen: a frozen dataclass pays a setattr per field on every construction, and events are
# made several times per model turn. Treat events as read-only all the same.
@dataclass(slots=True, kw_only=True)
class RunEvent:
    """One step of a run.

    Attributes:
        type: what happened (see the module docstring for the vocabulary).
        run_id: the run it belongs to.
        session_id: the session of that run.
        seq: position in the run, from 0, without gaps among stored events.
        ts: when it happened (UTC).
        data: the details, JSON-serializable.
        parent_run_id: the run that started this one, for sub-runs.
    """

    type: EventType
    run_id: str
    session_id: str
    seq: int
    ts: datetime = field(default_factory=utcnow)
    data: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None

    @property
    def event_id(self) -> str:
        """A stable id: the run id and the sequence number."""
        return f"{self.run_id}:{self.seq}"

    @property
    def live_only(self) -> bool:
        return self.type in LIVE_ONLY

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "run_id": self.run_id,
            "session_id": self.session_id,
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "data": self.data,
            "parent_run_id": self.parent_run_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunEvent":
        return cls(
            type=data["type"],
            run_id=data["run_id"],
            session_id=data["session_id"],
            seq=int(data["seq"]),
            ts=datetime.fromisoformat(data["ts"]),
            data=data.get("data") or {},
            parent_run_id=data.get("parent_run_id"),
        )


_new = object.__new__


def make_event(type: EventType, run_id: str, session_id: str, seq: int, data: dict[str, Any],
               parent_run_id: str | None) -> RunEvent:
    """``RunEvent(...)`` for the run loop, which makes several per model turn: positional
    arguments and plain attribute stores cost half of the keyword-only constructor."""
    event: RunEvent = _new(RunEvent)
    event.type, event.run_id, event.session_id, event.seq = type, run_id, session_id, seq
    event.ts, event.data, event.parent_run_id = utcnow(), data, parent_run_id
    return event


#: Subscribers every Session starts with, process-wide: ``loom_nb.tracing.instrument()`` adds
#: one. Empty by default, so a run pays nothing for it.
SESSION_SUBSCRIBERS: list[Callable[[RunEvent], None]] = []


# Reading events (payload, tool_calls) lives in its own module; these names stay importable here.
from ._event_reading import EventLike, ToolCallTrace, payload, tool_calls  # noqa: E402
