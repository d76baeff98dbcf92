"""What the SDK-backed providers share: options, settings checks, per-loop clients, retries.

A vendor SDK's async client holds a connection pool bound to the event loop it first ran on. The
same Model object is used from a notebook's own loop (``await agent.run()``) and from loom_nb's
background loop (``run_sync``), so the client is created lazily, once per running loop, and never
at import or construction.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import weakref
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from ..errors import ConfigError
from ..messages import ToolCall
from . import Model, ModelRequest, ModelResponse, StreamItem
from ._errors import (IncompleteStreamError, ModelConnectionError, ProviderError, ProviderInfo,
                      _httpx2)
from ._retry import RetryPolicy, retrying

__all__ = ["CLIENT_OPTIONS", "SDKModel", "StreamState", "Validator", "check_settings", "import_sdk",
           "tool_call"]

Validator = Callable[[str, Any], Any]

#: Options every SDK-backed model takes next to its settings.
CLIENT_OPTIONS = ("max_retries", "timeout", "retry_base_delay", "retry_max_delay",
                  "max_retry_after", "compatible")


def import_sdk(module: str, extra: str) -> Any:
    """Import a vendor SDK, or fail with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"The {module!r} package is needed for this model and is not installed; "
            f'install it with: pip install "loom-nb[{extra}]"'
        ) from exc


def check_settings(
    settings: Mapping[str, Any], allowed: Mapping[str, Validator], where: str
) -> dict[str, Any]:
    """Validated settings; an unknown name is a ConfigError that lists the allowed ones."""
    checked: dict[str, Any] = {}
    for key, value in settings.items():
        validator = allowed.get(key)
        if validator is None:
            names = ", ".join(sorted(allowed))
            raise ConfigError(
                f"{where} does not take the setting {key!r}. Allowed settings: {names}; "
                f"client options: {', '.join(CLIENT_OPTIONS)}."
            )
        if value is not None:
            checked[key] = validator(key, value)
    return checked


def positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"The setting {key} must be a positive int, got {value!r}.")
    return value


def number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"The setting {key} must be a number, got {value!r}.")
    return value


def integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"The setting {key} must be an int, got {value!r}.")
    return value


def string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"The setting {key} must be a non-empty str, got {value!r}.")
    return value


def strings(key: str, value: Any) -> list[str]:
    """A str or a list of str, as a list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"The setting {key} must be a str or a list of str, got {value!r}.")
    return list(items)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}.")
    return float(value)


class StreamState(Protocol):
    """What a provider folds its stream's events into: items as they come, then the response."""

    def feed(self, event: Any) -> Sequence[StreamItem]: ...

    def response(self, model_name: str) -> ModelResponse: ...


class SDKModel(Model):
    """Base of the models that talk to a provider through its official async SDK client.

    A subclass names its SDK (``sdk_module``, the package and the extra that installs it) and
    supplies the client, the settings, how a request opens its stream, and how a vendor
    exception maps to a loom error; the base does the rest (options, retries, draining).
    """

    #: The vendor package, e.g. "anthropic"; also the name of the extra that installs it.
    sdk_module: str = ""
    #: Environment variables of the key and the base URL, e.g. ANTHROPIC_API_KEY.
    key_var: str = ""
    base_url_var: str = ""
    default_base_url: str = ""
    label: str = ""
    _sdk: Any  #: the vendor module, imported by the subclass
    models_hint: str = ""

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None,
        base_url: str | None,
        context_window: int | None,
        settings: dict[str, Any],
    ) -> None:
        """Import the SDK, check the name, window and client options; the client options are
        taken out of ``settings``, which keeps the model settings for the subclass to check."""
        self._sdk = import_sdk(self.sdk_module, self.sdk_module)
        options = {key: settings.pop(key) for key in CLIENT_OPTIONS if key in settings}
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{self.label} model name must be a non-empty str, got {name!r}.")
        self.name = name.strip()
        if context_window is not None and (
            isinstance(context_window, bool) or not isinstance(context_window, int)
            or context_window <= 0
        ):
            raise ConfigError(
                f"context_window must be a positive int (tokens), got {context_window!r}.")
        self.context_window = context_window
        self.base_url = (base_url or os.environ.get(self.base_url_var) or self.default_base_url)
        self.base_url = self.base_url.rstrip("/")
        compatible = options.pop("compatible", None)
        if compatible is not None and not isinstance(compatible, bool):
            raise ConfigError(f"compatible= is True, False or None (decided by base_url), got "
                              f"{compatible!r}.")
        #: True for a server that speaks the vendor's API but is not the vendor (Ollama, vLLM,
        #: llama-cpp-python, a LiteLLM proxy): by default, any base_url but the vendor's.
        self.compatible = (self.base_url != self.default_base_url.rstrip("/")
                           if compatible is None else compatible)
        # The vendor's own API has structured output; a compatible server implements tools but
        # may ignore or refuse a JSON-schema format (see loom_nb.output).
        self.native_output = not self.compatible
        self.api_key = api_key or os.environ.get(self.key_var) or None
        defaults = RetryPolicy()
        max_retries = options.pop("max_retries", defaults.max_retries)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}.")
        self.retry = RetryPolicy(
            max_retries=max_retries,
            base_delay=_seconds("retry_base_delay",
                                options.pop("retry_base_delay", defaults.base_delay)),
            max_delay=_seconds("retry_max_delay", options.pop("retry_max_delay", defaults.max_delay)),
            max_retry_after=_seconds("max_retry_after",
                                     options.pop("max_retry_after", defaults.max_retry_after)),
        )
        self.timeout = _seconds("timeout", options.pop("timeout", 600.0))
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    @property
    def info(self) -> ProviderInfo:
        # A server at another base_url (Ollama, vLLM, a proxy) is not the vendor: errors say so.
        vendor = self.base_url == self.default_base_url.rstrip("/")
        label = self.label if vendor else f"the {self.label}-compatible server"
        return ProviderInfo(label=label, model=self.name, base_url=self.base_url,
                            key_var=self.key_var, models_hint=self.models_hint)

    def client(self) -> Any:
        """The SDK client of the running event loop, created on first use in that loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            # A client of a closed loop can never be used again; its pool goes with it.
            for dead in [other for other in self._clients if other.is_closed()]:
                del self._clients[dead]
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = self._make_client()
        return client

    async def aclose(self) -> None:
        """Close the running loop's SDK client (a new one is made if the model is used again)."""
        with self._lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        settings = self._settings(request.settings)
        async for item in retrying(lambda: self._attempt(request, settings),
                                   self._classify_failure, self.retry, f"{self.identifier}"):
            yield item

    def _classify_failure(self, exc: BaseException) -> ProviderError | None:
        """The loom error for ``exc``; a timeout names the ``timeout=`` option and its value.

        A read timeout inside a stream escapes the SDKs as a raw httpx2 exception, and one
        before the headers as the SDK's APITimeoutError; both mean the same to the user.
        """
        if _is_timeout(exc, self._sdk):
            return ModelConnectionError(
                f"{self.info.title} at {self.base_url} sent nothing for timeout={self.timeout:g} s "
                f"({type(exc).__name__}). If the answers are long or the server is slow, raise "
                f"timeout= (seconds) on the model, e.g. "
                f"Model.{self.provider}({self.name!r}, timeout=300); else check the server.")
        return self._classify(exc)

    def __repr__(self) -> str:
        return f"<Model {self.identifier} base_url={self.base_url!r}>"

    # -- what each provider supplies -------------------------------------------------------------

    def _http_client(self) -> Any:
        """The SDK's default httpx2 client, without the SDK's finalizer wrapper.

        The SDK's own wrapper closes itself on garbage collection by scheduling ``aclose()`` on
        whatever loop is running then; for a client whose loop has ended that is another loop,
        and the close fails there ("Event loop is closed"). A plain client is just dropped.
        """
        return self._sdk.DefaultAsyncHttpxClient(timeout=self.timeout)

    @abstractmethod
    def _make_client(self) -> Any:
        """A new SDK client (``max_retries=0``: retries are ours)."""

    @abstractmethod
    def _settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The model's settings with a request's overrides, validated."""

    async def _attempt(
        self, request: ModelRequest, settings: dict[str, Any]
    ) -> AsyncGenerator[StreamItem, None]:
        """One request: deltas, then the ModelResponse; raises on any failure."""
        stream, state = await self._open_stream(request, settings)
        received = False
        try:
            await self._check_event_stream(stream)
            async for event in stream:
                received = True
                for item in state.feed(event):
                    yield item
        finally:  # also when the consumer stops early: the connection goes back to the pool
            await stream.close()
        if not received:
            raise _not_retried(IncompleteStreamError(
                f"{self.info.title} at {self.base_url} answered the streamed request with an "
                f"empty event stream (HTTP 200, no events at all). The server (or a proxy in "
                f"between) may not support streaming for this model; check its logs."))
        yield state.response(self.name)

    async def _check_event_stream(self, stream: Any) -> None:
        """A streamed request answered with a plain body (a JSON completion or error from a
        server that ignores ``stream``) fails here, saying so, instead of as a cut stream."""
        response = getattr(stream, "response", None)
        kind = str(getattr(response, "headers", {}).get("content-type", "") or "")
        if response is None or not kind or "event-stream" in kind:
            return
        body = (await response.aread()).decode("utf-8", "replace")
        shown = body if len(body) <= 300 else body[:297] + "..."  # !r below escapes control chars
        raise _not_retried(IncompleteStreamError(
            f"{self.info.title} at {self.base_url} answered the streamed request with a plain "
            f"{kind.split(';')[0]} body instead of an event stream: {shown!r}. The server does not "
            f"stream this route or model (or a proxy buffers it); loom_nb needs streaming."))

    @abstractmethod
    async def _open_stream(
        self, request: ModelRequest, settings: dict[str, Any]
    ) -> tuple[Any, StreamState]:
        """Send one request: the SDK's event stream (with ``close()``) and a fresh state."""

    @abstractmethod
    def _classify(self, exc: BaseException) -> ProviderError | None:
        """The loom error for a vendor exception (None: not a provider failure)."""


def _not_retried(error: ProviderError) -> ProviderError:
    # What the server does every time: trying again would only repeat it.
    error.retryable = False
    return error


def _is_timeout(exc: BaseException, sdk: Any) -> bool:
    if isinstance(exc, sdk.APITimeoutError):
        return True
    httpx2 = _httpx2()
    return httpx2 is not None and isinstance(exc, httpx2.TimeoutException)


def tool_call(call_id: str, name: str, raw_args: str) -> ToolCall:
    """A ToolCall from the argument text the model streamed.

    Malformed JSON (or JSON that is not an object) becomes ``invalid_args`` with empty ``args``,
    so the loop tells the model its mistake instead of the run crashing.
    """
    text = raw_args.strip()
    if not text:
        return ToolCall(id=call_id, name=name, args={})
    try:
        args = json.loads(text)
    except ValueError:
        return ToolCall(id=call_id, name=name, args={}, invalid_args=raw_args)
    if not isinstance(args, dict):
        return ToolCall(id=call_id, name=name, args={}, invalid_args=raw_args)
    return ToolCall(id=call_id, name=name, args=args)
