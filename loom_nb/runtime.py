"""Runtime: the execution mechanism an agent runs under, composed of limits and policies.

Profiles are constructors. ``Runtime.sdk()`` is the default. The other profiles and the policy
slots (attention, context, continuity, harness, quality, delegation, governance, feedback) arrive
with their issues; asking for them before then raises :class:`NotSupportedError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn, TypeAlias

from .attention import AttentionPolicy, AttentionRule, AttentionState
from .context import ContextProtocol
from .continuity import ContinuityPolicy
from .errors import ConfigError, NotSupportedError
from .governance import GovernanceDecision, GovernancePolicy, RateLimit, ToolRequest

__all__ = ["AttentionPolicy", "AttentionRule", "AttentionState", "ContextProtocol", "ContinuityPolicy", "GovernanceDecision", "GovernancePolicy",
           "LimitName", "Limits", "RateLimit", "Runtime", "ToolRequest"]

LimitName: TypeAlias = Literal["max_turns", "max_tokens", "max_seconds"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-run limits. A run that reaches one ends with ``status="limit"`` and what it had so far.

    Attributes:
        max_turns: model responses per run.
        max_tokens: input plus output tokens per run, summed over its model calls.
        max_seconds: wall time per run, checked before each model call.
    """

    max_turns: int | None = 50
    max_tokens: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_tokens", "max_seconds"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"Limits({name}={value!r}): use a positive number, or None for no limit.")


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """The limits and policies a run executes under.

    Attributes:
        profile: the name of the profile this runtime was built from.
        limits: per-run limits (a run's ``RunContext(budget=...)`` replaces them for that run).
        governance: decides allow / deny / ask for every tool call.
        context: partitions, token budget, compaction and renewal.
        continuity: what carries over a compaction, a renewal and a restored session.
        attention: what each signal that reaches a session does.
    """

    profile: str = "sdk"
    limits: Limits = field(default_factory=Limits)
    governance: GovernancePolicy = field(default_factory=GovernancePolicy)
    context: ContextProtocol = field(default_factory=ContextProtocol)
    continuity: ContinuityPolicy = field(default_factory=ContinuityPolicy)
    attention: AttentionPolicy = field(default_factory=AttentionPolicy)

    @classmethod
    def sdk(cls, *, max_turns: int | None = 50, max_tokens: int | None = None,
            max_seconds: float | None = None, limits: Limits | None = None,
            governance: GovernancePolicy | None = None, context: ContextProtocol | None = None,
            continuity: ContinuityPolicy | None = None, attention: AttentionPolicy | None = None,
            **policies: Any) -> Runtime:
        """The default profile: a tool loop with per-run limits and default governance.

        Default governance allows every tool, asks before tools marked ``requires_approval`` or
        ``destructive``, and denies nothing else.
        """
        _reject_policies(policies)
        limits = limits or Limits(max_turns=max_turns, max_tokens=max_tokens,
                                  max_seconds=max_seconds)
        for name, value, kind in (("governance", governance, GovernancePolicy),
                                  ("context", context, ContextProtocol),
                                  ("continuity", continuity, ContinuityPolicy),
                                  ("attention", attention, AttentionPolicy)):
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"Runtime.sdk({name}=...) takes a {kind.__name__}(...).")
        return cls(profile="sdk", limits=limits, governance=governance or GovernancePolicy(),
                   context=context or ContextProtocol(), continuity=continuity or ContinuityPolicy(),
                   attention=attention or AttentionPolicy())

    @classmethod
    def long_running(cls, **options: Any) -> Runtime:
        _profile_not_yet("long_running")

    @classmethod
    def supervised(cls, **options: Any) -> Runtime:
        _profile_not_yet("supervised")

    @classmethod
    def autonomous(cls, **options: Any) -> Runtime:
        _profile_not_yet("autonomous")

    def with_limits(self, **changes: Any) -> Runtime:
        """A copy with some limits changed, e.g. ``runtime.with_limits(max_turns=5)``."""
        return replace(self, limits=replace(self.limits, **changes))


_POLICIES = ("harness", "quality", "delegation", "feedback")


def _reject_policies(policies: dict[str, Any]) -> None:
    for name in policies:
        if name in _POLICIES:
            raise NotSupportedError(
                f"Runtime policy {name!r} is not available in this version of loom_nb yet; "
                f"Runtime.sdk() runs without it."
            )
        raise ConfigError(f"Runtime.sdk() got an unknown option {name!r}.")


def _profile_not_yet(name: str) -> NoReturn:
    raise NotSupportedError(
        f"Runtime.{name}() is not available in this version of loom_nb yet; use Runtime.sdk()."
    )
