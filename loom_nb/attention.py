"""AttentionPolicy: what each signal that reaches a session does.

The decision is one of

* ``ignore``: drop it (duplicates by ``dedupe_key`` are ignored);
* ``observe``: put it into the working partition of the next run;
* ``queue``: start a run for it when the session is idle (in urgency order, then arrival);
* ``interrupt``: stop the active run at its next safe point and continue with the signal in
  context; when the session is idle, run it now, ahead of the queue.

Checks run in order, the first that decides wins:

1. a ``dedupe_key`` seen before in this session                        -> ignore
2. the custom ``decide`` function, when it returns a decision          -> that
3. the first matching rule (source, type and urgency patterns)         -> its action
4. the default by urgency: low -> observe, normal -> queue, high and critical -> interrupt
5. a decision that would start or interrupt a run while the ``rate_limit`` on such runs is
   used up becomes ``observe`` (the signal is kept, not lost)
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .ratelimit import RateLimit, RateWindow
from .signals import RuntimeSignal, SignalAction, SignalDecision, Urgency

__all__ = ["AttentionPolicy", "AttentionRule", "AttentionState"]

_ACTIONS = ("ignore", "observe", "queue", "interrupt")
_DEFAULTS: dict[str, SignalAction] = {"low": "observe", "normal": "queue", "high": "interrupt",
                                      "critical": "interrupt"}


@dataclass(frozen=True, kw_only=True)
class AttentionState:
    """What a custom attention function may look at."""

    session_id: str
    active_run_id: str | None
    queued: int
    observed: int

    @property
    def idle(self) -> bool:
        return self.active_run_id is None


@dataclass(frozen=True, kw_only=True)
class AttentionRule:
    """``action`` for signals whose source, type and urgency match (None matches anything).

    ``source`` and ``type`` are fnmatch patterns, e.g. ``source="cron*"``.
    """

    action: SignalAction
    source: str | None = None
    type: str | None = None
    urgency: Urgency | Sequence[Urgency] | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ConfigError(f"AttentionRule(action={self.action!r}): use one of {', '.join(_ACTIONS)}.")

    def matches(self, signal: RuntimeSignal) -> bool:
        urgencies = (self.urgency,) if isinstance(self.urgency, str) else self.urgency
        return ((self.source is None or fnmatch.fnmatchcase(signal.source, self.source))
                and (self.type is None or fnmatch.fnmatchcase(signal.type, self.type))
                and (urgencies is None or signal.urgency in urgencies))


Decide = Callable[[RuntimeSignal, AttentionState], "SignalDecision | SignalAction | None"]


@dataclass(eq=False, kw_only=True)
class AttentionPolicy:
    """Decides ignore / observe / queue / interrupt for each signal (see the module docstring).

    Args:
        rules: checked in order before the defaults.
        defaults: the action for each urgency when no rule matches.
        decide: a function ``(signal, state) -> action | SignalDecision | None`` checked before
            the rules; None falls through.
        rate_limit: at most this many signal-started (or interrupted) runs, e.g. ``"10/h"``.
        dedupe: ignore a signal whose ``dedupe_key`` this policy has already seen.
        dedupe_memory: how many keys to remember.
    """

    rules: Sequence[AttentionRule] = ()
    defaults: dict[str, SignalAction] = field(default_factory=lambda: dict(_DEFAULTS))
    decide: Decide | None = None
    rate_limit: RateLimit | str | int | None = None
    dedupe: bool = True
    dedupe_memory: int = 10_000
    clock: Callable[[], float] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for urgency, action in self.defaults.items():
            if action not in _ACTIONS:
                raise ConfigError(f"AttentionPolicy(defaults={{{urgency!r}: {action!r}}}): use one of {_ACTIONS}.")
        import time

        self._window = (RateWindow(RateLimit.parse(self.rate_limit), self.clock or time.monotonic)
                        if self.rate_limit is not None else None)
        # (session id, dedupe key): a key counts as seen in the session that received it.
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def evaluate(self, signal: RuntimeSignal, state: AttentionState) -> SignalDecision:
        """The decision for ``signal``; a decision that starts a run counts against the limit."""
        decision = self._decide(signal, state)
        if decision.action in ("queue", "interrupt") and self._window is not None:
            if self._window.full():
                limit = self._window.limit
                decision = SignalDecision(
                    action="observe", signal=signal,
                    reason=(f"rate limit: at most {limit.calls} signal runs per "
                            f"{limit.per_seconds:g} s; kept for the next run instead "
                            f"(was {decision.action}: {decision.reason})"))
            else:
                self._window.record()
        if signal.dedupe_key is not None and decision.action != "ignore":
            self._remember((state.session_id, signal.dedupe_key))
        return decision

    def _decide(self, signal: RuntimeSignal, state: AttentionState) -> SignalDecision:
        if (self.dedupe and signal.dedupe_key is not None
                and (state.session_id, signal.dedupe_key) in self._seen):
            return SignalDecision(action="ignore", signal=signal,
                                  reason=f"duplicate: dedupe_key {signal.dedupe_key!r} was seen before")
        if self.decide is not None:
            custom = _custom_decision(self.decide, signal, state)
            if custom is not None:
                return custom
        for rule in self.rules:
            if rule.matches(signal):
                return SignalDecision(action=rule.action, signal=signal,
                                      reason=rule.reason or f"rule: {_describe(rule)}")
        action = self.defaults.get(signal.urgency, "queue")
        reason = f"urgency {signal.urgency}"
        if action == "interrupt":
            reason += ": interrupt the active run" if not state.idle else ": idle, run now"
        return SignalDecision(action=action, signal=signal, reason=reason)

    def _remember(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.dedupe_memory:
            self._seen.popitem(last=False)


def _describe(rule: AttentionRule) -> str:
    parts = [f"{name}={getattr(rule, name)!r}" for name in ("source", "type", "urgency")
             if getattr(rule, name) is not None]
    return f"{', '.join(parts) or 'any signal'} -> {rule.action}"


def _custom_decision(decide: Decide, signal: RuntimeSignal, state: AttentionState) -> SignalDecision | None:
    verdict: Any = decide(signal, state)
    if verdict is None:
        return None
    if isinstance(verdict, SignalDecision):
        return verdict
    if verdict in _ACTIONS:
        return SignalDecision(action=verdict, signal=signal,
                              reason=f"custom policy {getattr(decide, '__name__', 'decide')}")
    raise ConfigError(
        f"Attention function {getattr(decide, '__name__', decide)!r} returned {verdict!r}: return "
        f"None, one of {', '.join(_ACTIONS)}, or a SignalDecision."
    )
