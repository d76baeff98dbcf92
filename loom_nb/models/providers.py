"""The built-in providers, registered for ``"provider:name"`` strings.

Each factory imports its vendor module only when called, so an unused provider costs nothing and
a missing SDK fails with an install hint at the point of use.
"""

from __future__ import annotations

from typing import Any

from . import Model, register_provider


def _anthropic(name: str, **kwargs: Any) -> Model:
    from .anthropic import AnthropicModel

    return AnthropicModel(name, **kwargs)


def _openai(name: str, **kwargs: Any) -> Model:
    from .openai import OpenAIModel

    return OpenAIModel(name, **kwargs)


register_provider("anthropic", _anthropic)
register_provider("openai", _openai)
