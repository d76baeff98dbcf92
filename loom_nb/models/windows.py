"""Known context windows, for the token budget when a model factory is not given context_window=.

Sources (November 2026): Anthropic's context-windows page lists a 1M-token window for Opus 5 and
5.5, Opus 4.6-4.8, Sonnet 5 and 5.5 and Sonnet 4.6, and 200k for other Claude models; OpenAI's
GPT-5.4 model page gives 1,050,000 tokens. A model not listed gets DEFAULT_WINDOW, and the budget
says so (``source="default"``), so pass ``context_window=`` for it.
"""

from __future__ import annotations

import re
from typing import Literal, TypeAlias

__all__ = ["DEFAULT_WINDOW", "WindowSource", "known_window"]

DEFAULT_WINDOW = 128_000
WindowSource: TypeAlias = Literal["given", "known", "default"]

# (provider, pattern over the model name, window); the first match wins.
_KNOWN: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("anthropic", re.compile(r"^claude-(opus|sonnet)-5([-.]5)?\b"), 1_000_000),
    ("anthropic", re.compile(r"^claude-opus-4-[678]\b"), 1_000_000),
    ("anthropic", re.compile(r"^claude-sonnet-4-6\b"), 1_000_000),
    ("anthropic", re.compile(r"^claude-"), 200_000),
    ("openai", re.compile(r"^gpt-5\.4(-\d{4}-\d{2}-\d{2})?$"), 1_050_000),
)


def known_window(provider: str, name: str) -> int | None:
    """The documented context window of ``provider:name``, or None when it is not known."""
    for known_provider, pattern, window in _KNOWN:
        if provider == known_provider and pattern.search(name):
            return window
    return None
