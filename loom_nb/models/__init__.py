"""The model seam: one provider-neutral request in, a stream of deltas ending in one response out.

A provider implements :meth:`Model.stream`; everything else (the agent loop, displays, stores)
speaks only the types in this module. Factories are static methods on :class:`Model`:
``Model.scripted``, ``Model.function``, ``Model.anthropic``, ``Model.openai``, and
``Model.from_string("provider:name")``; ``Model.from_env()`` reads ``LOOM_MODEL``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ..errors import ConfigError
from ..messages import Message, Usage
from ._requests import DEFAULT_KEEP

if TYPE_CHECKING:
    from ._requests import KeepRequests
    from .fallback import FallbackModel
    from .function import FunctionModel
    from .replay import RecordingModel, ReplayModel
    from .scripted import ScriptedModel, Turn

__all__ = [
    "FallbackNotice",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "OutputFormat",
    "RetryNotice",
    "StopReason",
    "TextDelta",
    "ToolCallDelta",
    "ToolChoice",
    "ToolDefinition",
    "register_provider",
    "resolve_model",
]

StopReason: TypeAlias = Literal[
    "end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "context_window_exceeded"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolDefinition:
    """A tool as the model sees it: name, description and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


#: ``"auto"`` (the model decides), ``"required"`` (some tool), ``"none"`` (no tool), or a tool name.
ToolChoice: TypeAlias = str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFormat:
    """The structured answer a request asks for (see :mod:`loom_nb.output`).

    ``mode="native"``: the provider's own JSON-schema output; ``"tool"``: the answer comes as the
    arguments of the tool ``tool_name``, which is among the request's tools.
    """

    name: str
    schema: dict[str, Any]
    strict: bool
    mode: Literal["native", "tool"]
    tool_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRequest:
    """Everything one model call needs.

    Attributes:
        system: the rendered system prompt (instructions and the run's working context).
        messages: the conversation so far, oldest first.
        tools: the tools the model may call.
        settings: provider-neutral settings for this call (``max_tokens``, ``temperature``, ...).
        output: the structured answer asked for, if any.
        tool_choice: how the model may use the tools this turn (None: the provider's default,
            or the model's ``tool_choice`` setting).
    """

    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    output: OutputFormat | None = None
    tool_choice: ToolChoice | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponse:
    """One complete assistant turn."""

    message: Message
    usage: Usage = field(default_factory=Usage)
    stop_reason: StopReason = "end_turn"
    model_name: str = ""
    #: The identifier of the model that answered, when a fallback chose it among several.
    model_id: str = ""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of streamed assistant text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call's arguments, as the model writes it."""

    call_id: str
    name: str
    args_delta: str


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """The provider failed in a way worth retrying; the request is tried again after ``delay``."""

    attempt: int
    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class FallbackNotice:
    """A model of a fallback failed (or could not take the request); the next takes the turn."""

    failed: str  #: the identifier of the model that failed
    next: str  #: the identifier of the model that takes the turn
    error: str
    error_type: str
    #: Text or tool-call deltas of the failed model were already streamed: they are dropped.
    discarded: bool = False


StreamItem: TypeAlias = TextDelta | ToolCallDelta | RetryNotice | FallbackNotice | ModelResponse


class Model(ABC):
    """A language model behind the provider-neutral protocol.

    Subclasses implement :meth:`stream`, which yields :class:`TextDelta` /
    :class:`ToolCallDelta` items as they arrive and ends with exactly one :class:`ModelResponse`.
    """

    provider: str = "custom"
    name: str = "model"
    #: The model's context window in tokens, when known or given (``context_window=``).
    context_window: int | None = None
    #: Whether ``output_mode="auto"`` uses the provider's native structured output (True) or
    #: the output tool (False); see :mod:`loom_nb.output`. Test models see the request as is.
    native_output: bool = True
    #: Whether the model takes images and PDFs. A request holding one for a model that does not
    #: fails with a ConfigError before anything is sent (``Model.openai(..., vision=False)``).
    vision: bool = True

    @abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        """Yield deltas, then one final :class:`ModelResponse`."""

    def check_request(self, request: ModelRequest) -> None:
        """Refuse, before sending, what this model cannot take (images and PDFs without vision)."""
        if self.vision:
            return
        for message in request.messages:
            for part in message.media:
                if part.kind == "image" or getattr(part, "is_pdf", False) or part.data is None:
                    raise ConfigError(
                        f"The model {self.identifier} does not take images or PDFs (vision=False), "
                        f"and the conversation holds {part!r}. Use a vision model, or send text: "
                        f"Document.from_text(...) or a description.")

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The complete response, without the deltas."""
        final: ModelResponse | None = None
        async for item in self.stream(request):
            if isinstance(item, ModelResponse):
                final = item
        if final is None:
            raise ConfigError(f"{type(self).__name__}.stream ended without a ModelResponse")
        return final

    async def aclose(self) -> None:  # noqa: B027 - a no-op unless the model holds resources
        """Release what the model holds (connection pools); it can be used again after."""

    @property
    def identifier(self) -> str:
        """``provider:name``: for the built-in providers, the form ``Model.from_string`` accepts."""
        return f"{self.provider}:{self.name}"

    def __repr__(self) -> str:
        return f"<Model {self.identifier}>"

    # -- factories -------------------------------------------------------------------------------

    @staticmethod
    def scripted(
        turns: list[Turn], *, name: str = "scripted", context_window: int | None = None,
        keep_requests: KeepRequests = DEFAULT_KEEP,
    ) -> ScriptedModel:
        """An offline, deterministic model that plays ``turns`` in order, across runs.

        Each turn is a ``str`` (answer with that text), a dict ``{"tool": NAME, "args": {...}}``
        (call that tool), or a list of such dicts (several calls in one turn). ``model.requests``
        keeps the first and the last ``keep_requests`` requests (or ``"all"``) and counts all.
        """
        from .scripted import ScriptedModel

        return ScriptedModel(turns, name=name, context_window=context_window,
                             keep_requests=keep_requests)

    @staticmethod
    def function(
        fn: Callable[..., Any], *, name: str = "function", context_window: int | None = None,
        keep_requests: KeepRequests = DEFAULT_KEEP,
    ) -> FunctionModel:
        """A model whose answers come from a Python function of the :class:`ModelRequest`."""
        from .function import FunctionModel

        return FunctionModel(fn, name=name, context_window=context_window,
                             keep_requests=keep_requests)

    @staticmethod
    def anthropic(
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        context_window: int | None = None,
        **settings: Any,
    ) -> Model:
        """Claude through the official ``anthropic`` SDK (env ``ANTHROPIC_API_KEY``)."""
        factory = _provider("anthropic")
        return factory(
            name, api_key=api_key, base_url=base_url, context_window=context_window, **settings
        )

    @staticmethod
    def openai(
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        api: Literal["chat", "responses"] = "chat",
        context_window: int | None = None,
        **settings: Any,
    ) -> Model:
        """OpenAI or any OpenAI-compatible server through the official ``openai`` SDK."""
        factory = _provider("openai")
        return factory(
            name,
            api_key=api_key,
            base_url=base_url,
            api=api,
            context_window=context_window,
            **settings,
        )

    @staticmethod
    def fallback(primary: Model | str, *others: Model | str,
                 on: tuple[type[BaseException], ...] | type[BaseException] | None = None,
                 ) -> FallbackModel:
        """``primary``, and the next model of ``others`` whenever one fails with an error of
        ``on`` after its own retries (default: ModelUnavailableError, ModelRateLimitError,
        ModelConnectionError)."""
        from .fallback import DEFAULT_FALLBACK_ON, FallbackModel

        return FallbackModel((primary, *others), DEFAULT_FALLBACK_ON if on is None else on)

    @staticmethod
    def from_string(spec: str, **kwargs: Any) -> Model:
        """Build a model from ``"provider:name"``, e.g. ``"anthropic:claude-sonnet-5"``."""
        provider, sep, name = spec.partition(":")
        if not sep or not provider or not name:
            raise ConfigError(
                f"Model string {spec!r} is not of the form 'provider:name'; "
                f"for example 'anthropic:claude-sonnet-5' or 'openai:gpt-5.4'."
            )
        return _provider(provider.strip().lower())(name.strip(), **kwargs)

    @staticmethod
    def from_env(default: Model | str | None = None, *, variable: str = "LOOM_MODEL") -> Model:
        """The model named by ``LOOM_MODEL`` (``provider:name``), else ``default``."""
        spec = os.environ.get(variable, "").strip()
        if spec:
            return Model.from_string(spec)
        if default is None:
            raise ConfigError(
                f"No model: set {variable} to 'provider:name' (e.g. anthropic:claude-sonnet-5) "
                f"or pass a Model to the agent."
            )
        return resolve_model(default)

    @staticmethod
    def record(
        model: Model | str, path: str | os.PathLike[str], *, append: bool = False
    ) -> RecordingModel:
        """Wrap ``model`` so that each request and its answer is written to ``path`` (JSON Lines).

        The file is started afresh at the first exchange, unless ``append=True`` (a second model
        recorded into the same file). Serve it back offline with :meth:`Model.replay`.
        """
        from .replay import RecordingModel

        return RecordingModel(model, path, append=append)

    @staticmethod
    def replay(
        path: str | os.PathLike[str],
        *,
        normalize: Callable[[str], str] | None = None,
        match: tuple[str, ...] = ("system", "messages", "tools"),
        model: str | None = None,
        context_window: int | None = None,
        keep_requests: KeepRequests = DEFAULT_KEEP,
    ) -> ReplayModel:
        """A model that serves the exchanges recorded by :meth:`Model.record`, in order, offline.

        A request that differs from the recorded one (in ``match``, after ``normalize`` on every
        string) fails with ``ReplayMismatchError`` showing the first difference.
        """
        from .replay import ReplayModel

        return ReplayModel(path, normalize=normalize, match=match, model=model,
                           context_window=context_window, keep_requests=keep_requests)


_PROVIDERS: dict[str, Callable[..., Model]] = {}


def register_provider(name: str, factory: Callable[..., Model]) -> None:
    """Make ``"name:model"`` strings build models with ``factory(model_name, **kwargs)``."""
    _PROVIDERS[name] = factory


def _provider(name: str) -> Callable[..., Model]:
    _load_builtin_providers()
    try:
        return _PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS)) or "none"
        raise ConfigError(f"Unknown model provider {name!r}; known providers: {known}.") from None


def _load_builtin_providers() -> None:
    # Imported on first use so that `import loom_nb` does not import the vendor SDK modules.
    if "anthropic" in _PROVIDERS:
        return
    from . import providers  # noqa: F401  (registers the built-in providers)


def resolve_model(model: Model | str | None) -> Model:
    """A :class:`Model` from a Model, a ``"provider:name"`` string, or None (``LOOM_MODEL``)."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        return Model.from_string(model)
    if model is None:
        return Model.from_env()
    raise ConfigError(
        f"Expected a Model or a 'provider:name' string, got {type(model).__name__}; "
        f"use Model.scripted([...]), Model.anthropic(...) or a string like 'openai:gpt-5.4'."
    )
