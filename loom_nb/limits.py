"""Limits: how far one run may go (turns, requests, tokens, cost, tool calls, wall time, one tool
call's time).

Its own module, below everything that uses it, so that tasks, results and the engine name
``Limits`` without importing the runtime and its policies. ``from loom_nb.runtime import Limits``
stays the documented path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .errors import ConfigError, CostUnknownError

if TYPE_CHECKING:
    from .events import LimitsData
    from .messages import Usage

__all__ = ["LimitName", "Limits", "Stop"]

#: Which limit ended a run: a runtime limit, or the model's own output cap (``model_max_tokens``).
LimitName: TypeAlias = Literal["max_turns", "max_requests", "max_tokens", "max_cost_usd",
                               "max_tool_calls", "max_seconds", "model_max_tokens"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-run limits. A run that reaches one ends with ``status="limit"`` and what it had so far.

    Attributes:
        max_turns: model responses per run.
        max_requests: model requests per run, counting those of its sub-agents, best-of
            candidates and quality judges (``usage.requests``); checked before each request and
            each tool call.
        max_tokens: input plus output tokens per run, summed over its model calls.
        max_cost_usd: what the run may cost in USD (``usage.cost``, priced by ``genai-prices``),
            checked before each request and each tool call. A run whose model has no known
            price fails with a ``CostUnknownError`` rather than run unbounded.
        max_tool_calls: tool calls per run. A call beyond it is not run (the model gets a
            ``LimitReached`` result) and the run ends at this limit after that turn.
        max_seconds: wall time per run, checked before each model call and bounding each tool
            call (a call still running when the time is up ends as a ``ToolTimeout`` error, and
            the run stops at the limit).
        tool_seconds: how long one tool call may take unless the tool sets its own
            ``@tool(timeout=...)``; past it, the call is a ``ToolTimeout`` error result for the
            model and the run goes on. None: no default bound (``max_seconds`` still applies).
    """

    max_turns: int | None = 50
    max_requests: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_tool_calls: int | None = None
    max_seconds: float | None = None
    tool_seconds: float | None = 600.0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"Limits({name}={value!r}): use a positive number, or None for no limit.")

    def __repr__(self) -> str:
        # The usage limits (requests, cost, tool calls) are off by default: shown once set.
        shown = [f for f in _FIELDS if f in _ALWAYS_SHOWN or getattr(self, f) is not None]
        return f"Limits({', '.join(f'{f}={getattr(self, f)!r}' for f in shown)})"

    def reached(self, turns: int, usage: Usage, seconds: float) -> LimitName | None:
        """The first limit a run with these counts has reached before its next request, if any."""
        if self.max_turns is not None and turns >= self.max_turns:
            return "max_turns"
        if self.max_requests is not None and usage.requests >= self.max_requests:
            return "max_requests"
        if self.max_tokens is not None and usage.total_tokens >= self.max_tokens:
            return "max_tokens"
        if self._cost_reached(usage):
            return "max_cost_usd"
        if self.max_seconds is not None and seconds >= self.max_seconds:
            return "max_seconds"
        return None

    def before_tool_call(self, tool_calls: int, usage: Usage) -> LimitName | None:
        """The limit that keeps a run that has made ``tool_calls`` calls from making another."""
        if self.max_tool_calls is not None and tool_calls >= self.max_tool_calls:
            return "max_tool_calls"
        if self.max_requests is not None and usage.requests >= self.max_requests:
            return "max_requests"
        if self._cost_reached(usage):
            return "max_cost_usd"
        return None

    def _cost_reached(self, usage: Usage) -> bool:
        if self.max_cost_usd is None or usage.empty:
            return False
        if usage.cost is None:
            raise CostUnknownError(
                f"Limits(max_cost_usd={self.max_cost_usd}) is set, but the cost of this run is "
                f"unknown: the model's price is not in genai-prices, or the package is missing "
                f"(pip install 'loom-nb[cost]'). Use max_tokens= or max_requests= for this model.")
        return usage.cost >= self.max_cost_usd

    def message(self, limit: LimitName, turns: int, usage: Usage, seconds: float,
                tool_calls: int = 0) -> str:
        """Why a run stopped at ``limit``, and how to raise it."""
        if limit == "model_max_tokens":
            return ("The answer was cut off at the model's output limit (stop reason max_tokens). "
                    "Raise it with the model's max_tokens setting, e.g. "
                    "Model.anthropic(name, max_tokens=8192) or Model.openai(name, max_tokens=8192).")
        used = {"max_turns": f"{turns} model turns", "max_tokens": f"{usage.total_tokens} tokens",
                "max_requests": f"{usage.requests} model requests",
                "max_cost_usd": f"${usage.cost or 0:.6f}",
                "max_tool_calls": f"{tool_calls} tool calls",
                "max_seconds": f"{seconds:.2f} seconds"}[limit]
        where = (f"Runtime.sdk({limit}=...)" if limit in _ALWAYS_SHOWN
                 else f"Runtime.sdk(limits=Limits({limit}=...))")
        return (f"The run stopped at its limit {limit}={getattr(self, limit)} after {used}. "
                f"Raise it with {where} or for one run with "
                f"RunContext(budget=Limits({limit}=...)).")

    def to_dict(self) -> LimitsData:
        return {"max_turns": self.max_turns, "max_requests": self.max_requests,
                "max_tokens": self.max_tokens, "max_cost_usd": self.max_cost_usd,
                "max_tool_calls": self.max_tool_calls, "max_seconds": self.max_seconds,
                "tool_seconds": self.tool_seconds}

    def tool_deadline(self, tool_timeout: float | None, elapsed: float) -> tuple[float | None, bool]:
        """How long a tool call may take now (None: unbounded), and whether it is the run's
        ``max_seconds`` (rather than the tool's timeout or ``tool_seconds``) that bounds it."""
        own = tool_timeout if tool_timeout is not None else self.tool_seconds
        if self.max_seconds is None:
            return own, False
        left = self.max_seconds - elapsed
        return (left, True) if own is None or left < own else (own, False)


_FIELDS = ("max_turns", "max_requests", "max_tokens", "max_cost_usd", "max_tool_calls",
           "max_seconds", "tool_seconds")
_ALWAYS_SHOWN = frozenset({"max_turns", "max_tokens", "max_seconds", "tool_seconds"})

#: How one pass of a run (an attempt) ended: an answer, a pause for approval, or a limit.
Stop: TypeAlias = Literal["completed", "needs_approval"] | LimitName
