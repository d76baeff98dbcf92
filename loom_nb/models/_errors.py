"""Provider failures as loom errors, and the mapping from vendor SDK exceptions to them.

Every vendor exception is translated here, inside the provider layer, so that no ``anthropic`` or
``openai`` type ever reaches the run loop. Each error says what happened and what to do about it,
and carries ``retryable`` so that the retry policy (``_retry.py``) lives in one place.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ContextWindowExceededError,
    IncompleteStreamError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelRequestError,
    ModelUnavailableError,
    ProviderError,
)

__all__ = [
    "ContextWindowExceededError",
    "IncompleteStreamError",
    "ModelAuthenticationError",
    "ModelConnectionError",
    "ModelNotFoundError",
    "ModelRateLimitError",
    "ModelRequestError",
    "ModelUnavailableError",
    "ProviderError",
    "ProviderInfo",
    "classify_sdk_error",
    "connection_reason",
    "error_from_body",
    "parse_retry_after",
]


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What an error message needs to tell the user what to do."""

    label: str  #: e.g. "Anthropic", or "the OpenAI-compatible server" at another base_url
    model: str
    base_url: str
    key_var: str  #: e.g. "ANTHROPIC_API_KEY"
    models_hint: str  #: how to find a valid model name

    @property
    def title(self) -> str:
        """The label at the start of a sentence."""
        return self.label[:1].upper() + self.label[1:]


_CONTEXT_PATTERNS = re.compile(
    r"prompt is too long|context[ _-]?(length|window)|maximum context|too many tokens|"
    r"exceeds the context|input is too long|context_length_exceeded",
    re.IGNORECASE,
)
_RETRYABLE_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "server_error",
                    "internal_error", "timeout_error"}


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(type, code, message) from an error body, whatever its nesting."""
    err = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", "", str(body) if body else ""
    # FastAPI-style servers (vLLM, llama-cpp-python, LiteLLM) answer {"detail": "..."}.
    message = err.get("message") or err.get("detail") or ""
    return (str(err.get("type") or ""), str(err.get("code") or ""), str(message))


def classify_sdk_error(exc: BaseException, sdk: Any, info: ProviderInfo) -> ProviderError | None:
    """The loom error for a vendor exception, or None when ``exc`` is not a provider failure.

    ``sdk`` is the vendor module (``anthropic`` or ``openai``): both expose the same exception
    hierarchy (APIStatusError, APIConnectionError, APITimeoutError, APIError).
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, sdk.APITimeoutError):
        return ModelConnectionError(
            f"The request to {info.label} at {info.base_url} timed out. Try again, or raise "
            f"timeout= (seconds) on the model if the answers are long."
        )
    if isinstance(exc, sdk.APIConnectionError):
        detail = f": {connection_reason(exc)}"
        return ModelConnectionError(
            f"Could not connect to {info.label} at {info.base_url}{detail}. Check that the server "
            f"is running and that base_url is right."
        )
    if isinstance(exc, sdk.APIStatusError):
        return _from_status(exc, info)
    if isinstance(exc, sdk.APIError):
        return error_from_body(getattr(exc, "body", None), str(exc), None, None, info)
    httpx2 = _httpx2()
    if httpx2 is not None and isinstance(exc, httpx2.TransportError):
        # Raw transport errors escape the anthropic SDK when a stream breaks mid-way.
        return ModelConnectionError(
            f"The connection to {info.label} at {info.base_url} broke: "
            f"{type(exc).__name__}: {exc}."
        )
    if isinstance(exc, getattr(sdk, "AnthropicError", getattr(sdk, "OpenAIError", ()))):
        return ProviderError(f"{info.title} failed: {type(exc).__name__}: {exc}")
    return None


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed, from the exception chain: each distinct message down to the
    socket's (``ConnectError: All connection attempts failed ([Errno 111] Connection
    refused)``), the class names when the messages are empty."""
    chain: list[BaseException] = []
    link: BaseException | None = exc.__cause__ or exc.__context__
    while link is not None and link not in chain and len(chain) < 8:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if not chain:
        return f"{type(exc).__name__} (no reason given)"
    messages: list[str] = []
    for link in chain:
        text = str(link).strip()
        if text and text not in messages:
            messages.append(text)
    head = type(chain[0]).__name__
    if not messages:
        return f"{head} (no reason given)"
    rest = f" ({'; '.join(messages[1:])})" if len(messages) > 1 else ""
    return f"{head}: {messages[0]}{rest}"


def _httpx2() -> Any:
    try:
        import httpx2
    except ImportError:  # pragma: no cover - both SDKs depend on httpx2
        return None
    return httpx2


def _from_status(exc: Any, info: ProviderInfo) -> ProviderError:
    response = getattr(exc, "response", None)
    retry_after = parse_retry_after(getattr(response, "headers", None))
    code = int(getattr(exc, "status_code", 0) or 0)
    # Under 400: an error event inside a 200 stream, whose body's error type says what happened.
    status = code if code >= 400 else None
    body = getattr(exc, "body", None)
    request = getattr(response, "request", None)
    route = f"{request.method} {request.url.path}" if request is not None else None
    return error_from_body(body, getattr(exc, "message", str(exc)), status, retry_after, info,
                           route=route)


def error_from_body(
    body: Any, fallback: str, status: int | None, retry_after: float | None, info: ProviderInfo,
    *, route: str | None = None,
) -> ProviderError:
    """The loom error for an error body; ``route`` (``POST /v1/responses``): what was asked."""
    kind, code, message = _error_fields(body)
    message = message or fallback
    where = f"{info.title} ({status}: {message})" if status else f"{info.title} ({message})"
    if status == 404 and route and not (code == "model_not_found" or "model" in message.lower()):
        # A 404 that does not name a model: the server has no such route (a compatible server
        # without the Responses API, or a base_url without /v1), not an unknown model.
        hint = ("use api='chat' (Chat Completions), which compatible servers implement"
                if route.endswith("/responses") else "check that base_url ends with /v1 or the "
                "path the server documents")
        return ModelRequestError(
            f"{where}: the server at {info.base_url} has no route {route}; {hint}.",
            status_code=status)
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        verb = "rejected the API key" if status != 403 else "refused access with this API key"
        return ModelAuthenticationError(
            f"{where}: {verb}. Set {info.key_var} to a valid key, or pass api_key=.",
            status_code=status)
    if status == 404 or kind == "not_found_error" or code == "model_not_found":
        return ModelNotFoundError(
            f"{where}: the model {info.model!r} was not found at {info.base_url}. "
            f"Check the model name ({info.models_hint}) and that base_url points at the API.",
            status_code=status)
    if _CONTEXT_PATTERNS.search(message) or _CONTEXT_PATTERNS.search(code):
        return ContextWindowExceededError(
            f"{where}: the conversation does not fit in the context window of {info.model!r}. "
            f"Shorten the prompt or the session history, or use a model with a larger window.",
            status_code=status)
    if status == 429 or kind == "rate_limit_error":
        return ModelRateLimitError(
            f"{where}: rate limited. Wait and run again, or lower the request rate.",
            status_code=status, retry_after=retry_after)
    if (status is not None and (status >= 500 or status in (408, 409))) or kind in _RETRYABLE_TYPES:
        return ModelUnavailableError(
            f"{where}: the service is failing or overloaded. Try again in a moment.",
            status_code=status, retry_after=retry_after)
    return ModelRequestError(f"{where}: the request was refused.", status_code=status)
