"""GovernancePolicy: every tool call passes through it before it runs.

The decision is ``allow``, ``deny`` (the model receives the reason as the tool's error result and
the run goes on) or ``ask`` (the run pauses with ``status="needs_approval"`` until a person
approves or rejects the call). Each decision is a ``governance.decision`` event.

Checks run in a fixed order, and the first that decides wins:

1. ``deny`` patterns (fnmatch over tool names)              -> deny
2. ``allow`` patterns, when given, and the tool not matched  -> deny
3. ``read_only`` mode, for a tool not marked read-only       -> deny
4. custom ``vetoes`` (functions of the request)               -> their decision
5. rate limits, per tool and global                         -> deny
6. a question of the model (``Capability.ask_user()``)       -> ask (``check="question"``)
7. a tool a person allowed for the session (``remember=True``) -> allow (``check="remembered"``)
8. a tool marked ``requires_approval``                       -> ask
9. a tool marked ``destructive``                             -> ``destructive`` (ask by default)
10. otherwise                                                -> allow

A call a person approved is decided again when the paused run resumes, with
``ToolRequest.approved`` set: the approval satisfies every ``ask`` (from checks 4, 6, 8 and 9),
and any ``deny`` still wins, so a deny rule or veto added while the run was paused, or a rate limit
filled meanwhile, stops the call. An approved call that is allowed counts against the rate limits
like any allowed call; an ``ask`` alone never counts, as the person may reject it. A tool the
person allowed for the session (``ToolRequest.remembered``) is treated the same way: it satisfies
the asks of checks 4, 8 and 9, never a question, and every ``deny`` still wins over it.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .errors import ConfigError
from .ratelimit import RateLimit, RateWindow

if TYPE_CHECKING:
    from .tools import Tool

__all__ = ["GovernanceAction", "GovernanceDecision", "GovernancePolicy", "RateLimit", "ToolRequest"]

GovernanceAction: TypeAlias = Literal["allow", "deny", "ask"]
GovernanceCheck: TypeAlias = Literal[
    "deny_list", "allow_list", "read_only", "veto", "rate_limit", "requires_approval",
    "destructive", "default", "approval", "remembered", "question",
]


# Not frozen: one is made per tool call (or model request), and frozen construction is slow.
@dataclass(slots=True, kw_only=True)
class ToolRequest:
    """What governance sees of one tool call."""

    name: str
    args: dict[str, Any]
    call_id: str
    tool: Tool | None
    run_id: str
    session_id: str
    agent: str
    #: True when a person approved this call and the paused run resumes: an ask is satisfied.
    approved: bool = False
    #: True when a person allowed this tool for the session (``approve(..., remember=True)``).
    remembered: bool = False

    @property
    def read_only(self) -> bool:
        return bool(self.tool and self.tool.read_only)

    @property
    def destructive(self) -> bool:
        return bool(self.tool and self.tool.destructive)


@dataclass(frozen=True, kw_only=True)
class GovernanceDecision:
    """allow / deny / ask for one tool call, with the reason and the check that decided."""

    action: GovernanceAction
    reason: str
    check: GovernanceCheck = "default"

    @classmethod
    def allow(cls, reason: str = "allowed") -> GovernanceDecision:
        return cls(action="allow", reason=reason, check="veto")

    @classmethod
    def deny(cls, reason: str) -> GovernanceDecision:
        return cls(action="deny", reason=reason, check="veto")

    @classmethod
    def ask(cls, reason: str) -> GovernanceDecision:
        return cls(action="ask", reason=reason, check="veto")


Veto: TypeAlias = Callable[[ToolRequest], "GovernanceDecision | str | None"]


#: The decision when no check objects; shared, as decisions are immutable.
_ALLOWED = GovernanceDecision(action="allow", check="default", reason="allowed")
_APPROVED = GovernanceDecision(action="allow", check="approval", reason="approved by a person")
_REMEMBERED = GovernanceDecision(action="allow", check="remembered",
                                 reason="allowed for this session by a person (remember=True)")


@dataclass(eq=False)
class GovernancePolicy:
    """Decides allow / deny / ask for every tool call (see the module docstring for the order).

    Args:
        allow: tool-name patterns that may run; None allows every tool not denied.
        deny: tool-name patterns that never run.
        read_only: only tools marked ``read_only`` may run.
        destructive: what to do with tools marked ``destructive``: ask (default), allow or deny.
        rate_limits: per-tool-pattern limits, e.g. ``{"web__*": "10/min"}``.
        rate_limit: a limit on all tool calls together.
        vetoes: functions of a :class:`ToolRequest` returning None (no objection), a str (deny
            with that reason) or a :class:`GovernanceDecision`.
    """

    allow: Sequence[str] | None = None
    deny: Sequence[str] = ()
    read_only: bool = False
    destructive: GovernanceAction = "ask"
    rate_limits: dict[str, RateLimit | str | int] = field(default_factory=dict)
    rate_limit: RateLimit | str | int | None = None
    vetoes: Sequence[Veto] = ()
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        for name in ("allow", "deny"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigError(f"GovernancePolicy({name}=...) takes a list of patterns, e.g. [{value!r}].")
        if self.destructive not in ("allow", "deny", "ask"):
            raise ConfigError("GovernancePolicy(destructive=...) takes 'ask', 'allow' or 'deny'.")
        self._tool_windows = {pattern: RateWindow(RateLimit.parse(spec), self.clock)
                              for pattern, spec in self.rate_limits.items()}
        self._global_window = (RateWindow(RateLimit.parse(self.rate_limit), self.clock)
                               if self.rate_limit is not None else None)
        # Checking the windows and counting an allowed call are one step: runs in other threads
        # that share the policy must not both see room for the last call and both take it.
        self._counting = threading.Lock()

    def decide(self, request: ToolRequest) -> GovernanceDecision:
        """The decision for one call. An allowed call counts against the rate limits."""
        decision = self._decide_rules(request)  # outside the lock: a veto may take its time
        if decision is not None:
            return decision
        windows = self._windows_for(request.name)
        if not windows:
            return self._decide_asks(request)
        with self._counting:
            for window in windows:
                if window.full():
                    limit = window.limit
                    return GovernanceDecision(
                        action="deny", check="rate_limit",
                        reason=(f"Rate limit reached for {request.name!r}: at most {limit.calls} "
                                f"calls per {limit.per_seconds:g} s. Wait before calling it again."))
            decision = self._decide_asks(request)
            if decision.action == "allow":
                for window in windows:
                    window.record()
        return decision

    def _decide_rules(self, request: ToolRequest) -> GovernanceDecision | None:
        """Checks 1 to 4; None when none of them decides."""
        name = request.name
        if self.deny and _matches(name, self.deny):
            return GovernanceDecision(action="deny", check="deny_list",
                                      reason=f"Tool {name!r} is on the deny list.")
        if self.allow is not None and not _matches(name, self.allow):
            return GovernanceDecision(action="deny", check="allow_list",
                                      reason=f"Tool {name!r} is not on the allow list.")
        if self.read_only and not request.read_only:
            return GovernanceDecision(action="deny", check="read_only",
                                      reason=f"Read-only mode: tool {name!r} may change things.")
        for veto in self.vetoes:
            verdict = _veto_decision(veto, request)
            # An ask is satisfied by the person's approval (or remembered allow); for a question
            # it is the question's own ask (check 6), which a person answers, never remembers.
            asks_person = request.tool is not None and request.tool.asks_person
            if verdict is not None and verdict.action != "allow" and not (
                    verdict.action == "ask" and (request.approved or asks_person
                                                 or request.remembered)):
                return verdict
        return None

    def _decide_asks(self, request: ToolRequest) -> GovernanceDecision:
        """Checks 6 to 10, after the rate limits."""
        name = request.name
        if request.tool is not None and request.tool.asks_person:
            return _APPROVED if request.approved else _question(request)
        if request.approved or request.remembered:  # what is left can only ask, and it is answered
            if request.destructive and self.destructive == "deny":
                return GovernanceDecision(action="deny", check="destructive",
                                          reason=f"Tool {name!r} is destructive.")
            return _APPROVED if request.approved else _REMEMBERED
        if request.tool is not None and request.tool.requires_approval:
            return GovernanceDecision(action="ask", check="requires_approval",
                                      reason=f"Tool {name!r} requires approval.")
        if request.destructive and self.destructive != "allow":
            return GovernanceDecision(action=self.destructive, check="destructive",
                                      reason=f"Tool {name!r} is destructive.")
        return _ALLOWED

    def _windows_for(self, name: str) -> list[RateWindow]:
        if not self._tool_windows and self._global_window is None:
            return []
        windows = [w for pattern, w in self._tool_windows.items() if fnmatch.fnmatchcase(name, pattern)]
        return windows + ([self._global_window] if self._global_window else [])


def _question(request: ToolRequest) -> GovernanceDecision:
    """A question of the model waits for the person, unless it is malformed: then the model is
    told how to ask (a paused run must show the person a question that makes sense)."""
    assert request.tool is not None
    problems = request.tool.argument_problems(request.args)
    if problems:
        return GovernanceDecision(
            action="deny", check="question",
            reason=(f"The question could not be asked: {'; '.join(problems)}. Call "
                    f"{request.name} again with {{\"question\": \"...\"}}."))
    question = str(request.args.get("question", ""))
    shown = question if len(question) <= 200 else question[:197] + "..."
    return GovernanceDecision(action="ask", check="question", reason=f"The model asks: {shown}")


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _veto_decision(veto: Veto, request: ToolRequest) -> GovernanceDecision | None:
    verdict = veto(request)
    if verdict is None:
        return None
    if isinstance(verdict, str):
        return GovernanceDecision(action="deny", reason=verdict, check="veto")
    if isinstance(verdict, GovernanceDecision):
        return GovernanceDecision(action=verdict.action, reason=verdict.reason, check="veto")
    raise ConfigError(
        f"Governance veto {getattr(veto, '__name__', veto)!r} returned {verdict!r}: return None, "
        f"a str (deny with that reason) or a GovernanceDecision."
    )
