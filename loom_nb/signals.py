"""RuntimeSignal, SignalAdapter and SignalDecision: external input to a long-lived session.

A session's :class:`~loom_nb.attention.AttentionPolicy` decides what each signal does; the
session's inbox (``loom_nb.session.signals``) carries the decision out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .errors import ConfigError
from .events import utcnow

if TYPE_CHECKING:
    from .events import SignalData

__all__ = ["RuntimeSignal", "SignalAction", "SignalAdapter", "SignalDecision", "Urgency"]

Urgency: TypeAlias = Literal["low", "normal", "high", "critical"]
SignalAction: TypeAlias = Literal["ignore", "observe", "queue", "interrupt"]
_URGENCIES = ("low", "normal", "high", "critical")


@dataclass(frozen=True, kw_only=True)
class RuntimeSignal:
    """External input from a gateway, a timer, a heartbeat, a webhook or an app."""

    source: str
    type: str
    summary: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    urgency: Urgency = "normal"
    dedupe_key: str | None = None
    id: str = field(default_factory=lambda: f"sig_{os.urandom(8).hex()}")
    observed_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if self.urgency not in _URGENCIES:
            raise ConfigError(
                f"Signal urgency {self.urgency!r} is not one of {', '.join(_URGENCIES)}."
            )

    @property
    def rank(self) -> int:
        """0 for critical ... 3 for low: the order queued signals are handled in."""
        return 3 - _URGENCIES.index(self.urgency)

    def describe(self) -> str:
        """One line for the model: where the signal comes from and what it says."""
        text = f"{self.source} / {self.type} (urgency {self.urgency}): {self.summary or '(no summary)'}"
        if self.payload:
            text += f" | payload: {json.dumps(self.payload, ensure_ascii=False, default=str)[:2000]}"
        return text

    def to_dict(self) -> SignalData:
        return {"id": self.id, "source": self.source, "type": self.type, "summary": self.summary,
                "payload": self.payload, "urgency": self.urgency, "dedupe_key": self.dedupe_key,
                "observed_at": self.observed_at.isoformat()}


_SUMMARY_KEYS = ("summary", "content", "text", "message", "name", "id")
Field: TypeAlias = Any | Callable[[Any], Any]


@dataclass(frozen=True, kw_only=True)
class SignalAdapter:
    """Maps any event (a dict or an object) to a :class:`RuntimeSignal`.

    Each field is a constant or a callable applied to the event.
    """

    source: Field = "custom"
    type: Field = "event"
    urgency: Field = "normal"
    summary: Field = None
    payload: Field = None
    dedupe_key: Field = None

    def adapt(self, event: Any) -> RuntimeSignal:
        if isinstance(event, RuntimeSignal):
            return event

        def value(spec: Field) -> Any:
            return spec(event) if callable(spec) else spec

        summary = value(self.summary)
        if summary is None:
            summary = _default_summary(event)
        payload = value(self.payload)
        if payload is None:
            payload = dict(event) if isinstance(event, Mapping) else {"event": event}
        return RuntimeSignal(source=str(value(self.source)), type=str(value(self.type)),
                             urgency=value(self.urgency), summary=str(summary),
                             payload=payload, dedupe_key=value(self.dedupe_key))


def _default_summary(event: Any) -> str:
    if isinstance(event, Mapping):
        for key in _SUMMARY_KEYS:
            if event.get(key):
                return str(event[key])
    for key in _SUMMARY_KEYS:
        if getattr(event, key, None):
            return str(getattr(event, key))
    return str(event)


@dataclass(frozen=True, kw_only=True)
class SignalDecision:
    """What the attention policy decided for a signal, and why."""

    action: SignalAction
    reason: str
    signal: RuntimeSignal
