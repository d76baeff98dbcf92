"""``Model.fallback(primary, *others, on=...)``: the next model takes the turn when one fails.

Each model keeps its own retries: a model "fails" once its retries are used up and it raises.
When that error is one of ``on`` (by default unavailable, rate-limited, unreachable), the next
model is asked the same request; other errors (a bad request, a wrong key, a refusal) end the
turn as they would without a fallback, since another model would most likely fail the same way
or hide a mistake. A model that cannot take the request at all (images for a ``vision=False``
model) is passed over before anything is sent to it.

A turn that had streamed text before its model failed is not resumed by the next model: the
next model answers the whole turn, and the :class:`FallbackNotice` says the text so far was
dropped (``discarded``), so displays start the turn again. Every response says which model
gave it (``ModelResponse.model_id``), which the run records in ``model.response``
(``answered_by``) and ``runs_df`` shows per turn (``turn_models``).

The context budget is the smallest window of the models, so that any of them can take the
request the context was fitted for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

from ..errors import (
    ConfigError,
    ModelConnectionError,
    ModelError,
    ModelRateLimitError,
    ModelUnavailableError,
)
from . import (FallbackNotice, Model, ModelRequest, ModelResponse, StreamItem, TextDelta,
               ToolCallDelta)
from .windows import DEFAULT_WINDOW, known_window

__all__ = ["DEFAULT_FALLBACK_ON", "FallbackModel"]

#: The errors after which the next model takes the turn, unless ``on=`` says otherwise.
DEFAULT_FALLBACK_ON: tuple[type[ModelError], ...] = (
    ModelUnavailableError, ModelRateLimitError, ModelConnectionError)


class FallbackModel(Model):
    """Several models in order; see the module docstring."""

    provider = "fallback"

    def __init__(self, models: Sequence[Model | str],
                 on: Sequence[type[BaseException]] | type[BaseException] = DEFAULT_FALLBACK_ON) -> None:
        from . import resolve_model

        self.models: tuple[Model, ...] = tuple(resolve_model(m) for m in models)
        if len(self.models) < 2:
            raise ConfigError("Model.fallback(primary, *others) needs at least two models.")
        classes: tuple[object, ...] = tuple(on) if isinstance(on, (list, tuple)) else (on,)
        if not classes or not all(isinstance(c, type) and issubclass(c, Exception) for c in classes):
            raise ConfigError("Model.fallback(on=...) takes exception classes, e.g. "
                              "on=(ModelUnavailableError, ModelRateLimitError).")
        self.on: tuple[type[BaseException], ...] = classes  # type: ignore[assignment]
        self.name = ",".join(m.identifier for m in self.models)
        self.vision = any(m.vision for m in self.models)
        self.context_window = min(
            m.context_window or known_window(m.provider, m.name) or DEFAULT_WINDOW
            for m in self.models)

    @property
    def identifier(self) -> str:
        """``fallback:`` and the models' identifiers (not a form ``Model.from_string`` reads)."""
        return f"fallback:{self.name}"

    def check_request(self, request: ModelRequest) -> None:
        """Refuse only what no model of the chain can take."""
        first: ConfigError | None = None
        for model in self.models:
            try:
                model.check_request(request)
                return
            except ConfigError as exc:
                first = first or exc
        assert first is not None
        raise first

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        last = len(self.models) - 1
        for index, model in enumerate(self.models):
            try:
                model.check_request(request)
            except ConfigError as exc:
                if index == last:
                    raise
                yield self._notice(index, exc, False)
                continue
            streamed = False
            try:
                async for item in model.stream(request):
                    if isinstance(item, ModelResponse):
                        yield dataclasses.replace(item, model_id=model.identifier)
                        return
                    streamed = streamed or isinstance(item, (TextDelta, ToolCallDelta))
                    yield item
                return  # a stream without a response: the run reports it as it would anyway
            except self.on as exc:
                if index == last:
                    raise
                yield self._notice(index, exc, streamed)

    def _notice(self, index: int, exc: BaseException, streamed: bool) -> FallbackNotice:
        return FallbackNotice(failed=self.models[index].identifier,
                              next=self.models[index + 1].identifier, error=str(exc),
                              error_type=type(exc).__name__, discarded=streamed)

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()
