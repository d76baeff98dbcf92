"""OpenAI, or any OpenAI-compatible server, through the official ``openai`` SDK.

``Model.openai("gpt-5.4", api_key=None, base_url=None, api="chat" | "responses",
context_window=None, **settings)``.

* ``api="chat"`` (the default): Chat Completions, streamed with usage. Every compatible server
  (Ollama, vLLM, LM Studio, llama.cpp) implements it; give ``base_url`` with its ``/v1``, e.g.
  ``http://localhost:11434/v1``.
* ``api="responses"``: the Responses API, OpenAI's recommended one.

The key comes from ``api_key=`` or ``OPENAI_API_KEY``, the endpoint from ``base_url=`` or
``OPENAI_BASE_URL``. A compatible server that needs no key works without one (the SDK is given
the placeholder ``"EMPTY"``); api.openai.com without a key is a ConfigError.

Settings: ``max_tokens``, ``temperature``, ``top_p``, ``reasoning_effort``, ``tool_choice``,
and for chat also ``stop`` and ``seed``. ``max_tokens`` is sent as ``max_output_tokens`` to the
Responses API; to Chat Completions as ``max_completion_tokens`` on OpenAI's own API (where
``max_tokens`` is deprecated and refused by reasoning models), and as ``max_tokens`` to a
compatible server (any other ``base_url``; ``compatible=True/False`` overrides), because servers
such as llama-cpp-python understand only that one.

Structured output (``output_type=``, see :mod:`loom_nb.output`) is ``response_format`` with a
``json_schema`` for chat and ``text.format`` for Responses, ``strict`` when the schema allows it.

``vision=False`` declares a text-only model (many on compatible servers): a request with an
image or a PDF then fails with a ConfigError before it is sent.

Client options: ``max_retries``, ``timeout``, ``retry_base_delay``, ``retry_max_delay``,
``max_retry_after``, ``compatible``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..errors import ConfigError
from . import ModelRequest, OutputFormat, ToolChoice
from ._errors import ProviderError
from ._openai_chat import ChatStreamState, chat_tools, to_chat_messages
from ._openai_responses import (
    ResponsesStreamState,
    classify_responses_error,
    response_tools,
    to_response_input,
)
from ._sdk import (
    SDKModel,
    StreamState,
    Validator,
    check_settings,
    integer,
    number,
    positive_int,
    string,
    strings,
)

__all__ = ["OpenAIModel"]

_CHAT_SETTINGS: dict[str, Validator] = {
    "max_tokens": positive_int,
    "temperature": number,
    "top_p": number,
    "stop": strings,
    "reasoning_effort": string,
    "seed": integer,
    "tool_choice": string,
}
_RESPONSES_SETTINGS: dict[str, Validator] = {
    key: _CHAT_SETTINGS[key]
    for key in ("max_tokens", "temperature", "top_p", "reasoning_effort", "tool_choice")
}
#: Placeholder key for compatible servers that need none (the SDK refuses to start without one).
NO_KEY = "EMPTY"


class OpenAIModel(SDKModel):
    """An OpenAI (or OpenAI-compatible) model behind the provider-neutral protocol."""

    provider = "openai"
    sdk_module = "openai"
    key_var = "OPENAI_API_KEY"
    base_url_var = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    label = "OpenAI"
    models_hint = ("list the models the server offers with `await openai.AsyncOpenAI(base_url=...)"
                   ".models.list()`, e.g. 'gpt-5.4' on OpenAI or 'llama3.2' on Ollama")

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        api: Literal["chat", "responses"] = "chat",
        context_window: int | None = None,
        vision: bool = True,
        **settings: Any,
    ) -> None:
        if not isinstance(vision, bool):
            raise ConfigError(f"Model.openai(vision=...) is True or False, got {vision!r}.")
        # A compatible server's model may be text-only: vision=False refuses images before sending.
        self.vision = vision
        if api not in ("chat", "responses"):
            raise ConfigError(f"Model.openai(api=...) is 'chat' or 'responses', got {api!r}.")
        self.api = api
        super().__init__(name, api_key=api_key, base_url=base_url,
                         context_window=context_window, settings=settings)
        self.settings = self._check(settings)
        if not self.api_key:
            if self.base_url == self.default_base_url:
                raise ConfigError(
                    f"No API key for OpenAI: set OPENAI_API_KEY in the environment, or pass "
                    f"api_key=... to Model.openai({self.name!r}). For a local OpenAI-compatible "
                    f"server pass base_url=... (e.g. http://localhost:11434/v1)."
                )
            self.api_key = NO_KEY

    def _check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        allowed = _CHAT_SETTINGS if self.api == "chat" else _RESPONSES_SETTINGS
        where = f"Model.openai({self.name!r}, api={self.api!r})"
        if self.api == "responses":
            unsupported = sorted(set(settings) & (set(_CHAT_SETTINGS) - set(allowed)))
            if unsupported:
                raise ConfigError(f"{where}: the Responses API has no {', '.join(unsupported)}; "
                                  f"use api='chat' for them.")
        return check_settings(settings, allowed, where)

    def _make_client(self) -> Any:
        return self._sdk.AsyncOpenAI(api_key=self.api_key, base_url=self.base_url,
                                     http_client=self._http_client(),
                                     max_retries=0, timeout=self.timeout)

    def _settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.settings, **self._check(overrides)}

    def _classify(self, exc: BaseException) -> ProviderError | None:
        return classify_responses_error(exc, self._sdk, self.info)

    def chat_kwargs(self, request: ModelRequest, settings: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``client.chat.completions.create``."""
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": to_chat_messages(request.system, request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            kwargs["tools"] = chat_tools(request.tools)
        # max_tokens: see the module docstring for which name which server gets.
        tokens_key = "max_tokens" if self.compatible else "max_completion_tokens"
        for key, value in settings.items():
            if key != "tool_choice":
                kwargs[tokens_key if key == "max_tokens" else key] = value
        choice = _choice(request, settings)
        if choice is not None:
            kwargs["tool_choice"] = choice if choice in _MODES else {
                "type": "function", "function": {"name": choice}}
        if request.output is not None and request.output.mode == "native":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": _format(request.output)}
        return kwargs

    def responses_kwargs(self, request: ModelRequest, settings: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``client.responses.create``."""
        kwargs: dict[str, Any] = {
            "model": self.name,
            "input": to_response_input(request.messages),
            "stream": True,
        }
        if request.system:
            kwargs["instructions"] = request.system
        if request.tools:
            kwargs["tools"] = response_tools(request.tools)
        choice = _choice(request, settings)
        if choice is not None:
            kwargs["tool_choice"] = choice if choice in _MODES else {"type": "function", "name": choice}
        if request.output is not None and request.output.mode == "native":
            kwargs["text"] = {"format": {"type": "json_schema", **_format(request.output)}}
        if "max_tokens" in settings:
            kwargs["max_output_tokens"] = settings["max_tokens"]
        for key in ("temperature", "top_p"):
            if key in settings:
                kwargs[key] = settings[key]
        if "reasoning_effort" in settings:
            kwargs["reasoning"] = {"effort": settings["reasoning_effort"]}
            # The API is used statelessly (whole history each call): reasoning can only be sent
            # back in a tool loop if it comes with its encrypted content.
            kwargs["include"] = ["reasoning.encrypted_content"]
        return kwargs

    async def _open_stream(
        self, request: ModelRequest, settings: dict[str, Any]
    ) -> tuple[Any, StreamState]:
        client = self.client()
        if self.api == "chat":
            stream = await client.chat.completions.create(**self.chat_kwargs(request, settings))
            return stream, ChatStreamState()
        stream = await client.responses.create(**self.responses_kwargs(request, settings))
        return stream, ResponsesStreamState()


_MODES = ("auto", "required", "none")


def _choice(request: ModelRequest, settings: Mapping[str, Any]) -> ToolChoice | None:
    """The turn's tool choice (the loop's, else the setting); none without tools, which both
    APIs refuse."""
    choice = request.tool_choice if request.tool_choice is not None else settings.get("tool_choice")
    return choice if request.tools else None


def _format(output: OutputFormat) -> dict[str, Any]:
    return {"name": output.name, "schema": output.schema, "strict": output.strict}
