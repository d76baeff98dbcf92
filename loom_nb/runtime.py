"""Runtime: the execution mechanism an agent runs under, composed of limits and policies.

Profiles are constructors with documented policy sets; every policy can be replaced on any of
them, e.g. ``Runtime.supervised(quality=QualityGate.criteria([...]))``:

============  =====================================================================================
profile       policies
============  =====================================================================================
sdk           single attempt, no gate, no delegation, default governance (ask before tools marked
              ``requires_approval`` or ``destructive``), ratings-only feedback, 50 turns
long_running  retry(2) when a gate or ``criteria`` is given, eager compaction (at 70%), open tasks
              carried, all feedback kept, 200 turns
supervised    a person approves every tool that is not read-only, retry(2) with a gate, all
              feedback kept, 50 turns
autonomous    no one to ask: destructive tools denied, approval-only tools denied, retry(3) with a
              gate, sub-agents when given, all feedback kept, 100 turns
============  =====================================================================================

The policy classes are importable from here: ``from loom_nb.runtime import GovernancePolicy``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._words import article
from .attention import AttentionPolicy, AttentionRule, AttentionState
from .context import ContextProtocol
from .continuity import ContinuityPolicy
from .delegation import DelegationPolicy
from .errors import ConfigError
from .feedback import FeedbackPolicy, JSONLSink
from .governance import GovernanceDecision, GovernancePolicy, RateLimit, ToolRequest
from .harness import Harness
from .limits import LimitName, Limits
from .quality import QualityGate, Verdict

if TYPE_CHECKING:
    from .agent import Agent
    from .tracing import Tracing

__all__ = [
    "AttentionPolicy", "AttentionRule", "AttentionState", "ContextProtocol", "ContinuityPolicy",
    "DelegationPolicy", "FeedbackPolicy", "GovernanceDecision", "GovernancePolicy", "Harness",
    "JSONLSink", "LimitName", "Limits", "QualityGate", "RateLimit", "Runtime", "ToolRequest", "Verdict",
]

@dataclass(frozen=True, kw_only=True)
class Runtime:
    """The limits and policies a run executes under (see the module docstring for profiles).

    Attributes:
        profile: the name of the profile this runtime was built from.
        limits: per-run limits (a run's ``RunContext(budget=...)`` replaces them for that run).
        governance: allow / deny / ask for every tool call.
        context: partitions, token budget, compaction and renewal.
        continuity: what carries over a compaction, a renewal and a restored session.
        attention: what each signal that reaches a session does.
        harness: how a run is attempted.
        quality: the gate an answer must pass (None: no gate).
        delegation: the sub-agents the model may hand work to.
        feedback: which feedback records are kept and where they go.
        tracing: OpenTelemetry spans of this runtime's runs (``loom_nb.tracing.Tracing``, or True
            for one on the global tracer provider); None: only what ``instrument()`` set up.
        parallel_tools: whether the allowed tool calls of one model turn run concurrently: True
            (at most 8 at once), a positive int (at most that many), or False (one after
            another). Governance decides every call first either way.
    """

    profile: str = "sdk"
    limits: Limits = field(default_factory=Limits)
    governance: GovernancePolicy = field(default_factory=GovernancePolicy)
    context: ContextProtocol = field(default_factory=ContextProtocol)
    continuity: ContinuityPolicy = field(default_factory=ContinuityPolicy)
    attention: AttentionPolicy = field(default_factory=AttentionPolicy)
    harness: Harness = field(default_factory=Harness.single)
    quality: QualityGate | None = None
    delegation: DelegationPolicy = field(default_factory=DelegationPolicy.none)
    feedback: FeedbackPolicy = field(default_factory=FeedbackPolicy.none)
    tracing: Tracing | None = None
    parallel_tools: bool | int = True

    def __post_init__(self) -> None:
        width = self.parallel_tools
        if not isinstance(width, int) or (not isinstance(width, bool) and width < 1):
            raise ConfigError(f"Runtime(parallel_tools={width!r}): use True, False, or the most "
                              f"tool calls of one turn to run at once (a positive int).")
        tracing: Any = self.tracing  # True is accepted too, and replaced here
        if tracing is not None:
            from .tracing import Tracing
            if tracing is True:
                object.__setattr__(self, "tracing", Tracing())  # frozen: set once, here
            elif not isinstance(tracing, Tracing):
                raise ConfigError(f"Runtime(tracing=...) takes a loom_nb.tracing.Tracing or True, "
                                  f"not {type(tracing).__name__}.")
        for name, kind in _POLICY_TYPES.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"Runtime({name}=...) takes {article(kind.__name__)}, not {type(value).__name__}.")

    @classmethod
    def sdk(cls, *, max_turns: int | None = 50, max_tokens: int | None = None,
            max_seconds: float | None = None, limits: Limits | None = None, **policies: Any) -> Runtime:
        """The default profile: a tool loop with per-run limits and default governance."""
        limits = limits or Limits(max_turns=max_turns, max_tokens=max_tokens, max_seconds=max_seconds)
        return cls._build("sdk", limits, {}, policies)

    @classmethod
    def long_running(cls, *, criteria: Sequence[str] = (), max_turns: int | None = 200,
                     limits: Limits | None = None, **policies: Any) -> Runtime:
        """For long sessions: eager compaction, retries against a gate, all feedback kept."""
        base: dict[str, Any] = {"context": ContextProtocol(compact_at=0.7, compact_to=0.4),
                                "continuity": ContinuityPolicy(carry_open_tasks=True),
                                "feedback": FeedbackPolicy.collect()}
        _gate_and_retry(base, criteria, policies, attempts=2)
        return cls._build("long_running", limits or Limits(max_turns=max_turns), base, policies)

    @classmethod
    def supervised(cls, *, criteria: Sequence[str] = (), max_turns: int | None = 50,
                   limits: Limits | None = None, **policies: Any) -> Runtime:
        """A person approves every tool call that is not read-only."""
        base: dict[str, Any] = {"governance": GovernancePolicy(vetoes=[_ask_unless_read_only]),
                                "feedback": FeedbackPolicy.collect()}
        _gate_and_retry(base, criteria, policies, attempts=2)
        return cls._build("supervised", limits or Limits(max_turns=max_turns), base, policies)

    @classmethod
    def autonomous(cls, *, criteria: Sequence[str] = (), subagents: Mapping[str, Agent] | None = None,
                   max_depth: int = 2, max_turns: int | None = 100, limits: Limits | None = None,
                   **policies: Any) -> Runtime:
        """No one to ask: what would need a person is denied; retries and sub-agents allowed."""
        base: dict[str, Any] = {"governance": GovernancePolicy(destructive="deny", vetoes=[_deny_approval_tools]),
                                "feedback": FeedbackPolicy.collect()}
        if subagents:
            base["delegation"] = DelegationPolicy.subagents(subagents, max_depth=max_depth)
        _gate_and_retry(base, criteria, policies, attempts=3)
        return cls._build("autonomous", limits or Limits(max_turns=max_turns), base, policies)

    @classmethod
    def _build(cls, profile: str, limits: Limits, base: dict[str, Any], policies: dict[str, Any]) -> Runtime:
        unknown = set(policies) - set(_POLICY_TYPES) - {"tracing", "parallel_tools"}
        if unknown:
            raise ConfigError(f"Runtime.{profile}() got unknown option(s) {sorted(unknown)}; the policies "
                              f"are {', '.join(_POLICY_TYPES)}.")
        merged = {**base, **{k: v for k, v in policies.items() if v is not None}}
        return cls(profile=profile, limits=limits, **merged)

    def with_limits(self, **changes: Any) -> Runtime:
        """A copy with some limits changed, e.g. ``runtime.with_limits(max_turns=5)``."""
        return replace(self, limits=replace(self.limits, **changes))

    def replace(self, **policies: Any) -> Runtime:
        """A copy with some policies replaced."""
        return replace(self, **policies)

    def describe(self) -> dict[str, str]:
        """The profile and each policy, as text (for displays and traces)."""
        return {"profile": self.profile, "limits": repr(self.limits),
                **{name: repr(getattr(self, name)) for name in _POLICY_TYPES},
                "tracing": repr(self.tracing), "parallel_tools": repr(self.parallel_tools)}


_POLICY_TYPES: dict[str, type] = {
    "governance": GovernancePolicy, "context": ContextProtocol, "continuity": ContinuityPolicy,
    "attention": AttentionPolicy, "harness": Harness, "quality": QualityGate,
    "delegation": DelegationPolicy, "feedback": FeedbackPolicy,
}


def _gate_and_retry(base: dict[str, Any], criteria: Sequence[str], policies: dict[str, Any],
                    *, attempts: int) -> None:
    if criteria:
        base["quality"] = QualityGate.criteria(criteria)
    if criteria or policies.get("quality") is not None:
        base["harness"] = Harness.retry(attempts)


def _ask_unless_read_only(request: ToolRequest) -> GovernanceDecision | None:
    if request.read_only:
        return None
    return GovernanceDecision.ask(f"supervised: a person approves {request.name!r}, which is not read-only")


def _deny_approval_tools(request: ToolRequest) -> GovernanceDecision | None:
    if request.tool is not None and request.tool.requires_approval:
        return GovernanceDecision.deny(f"autonomous: no one is here to approve {request.name!r}")
    return None
