"""The exceptions loom_nb raises.

One base class, a few branches, each message saying what to do next::

    LoomError
    ├── ConfigError          the agent, tool, model or session was set up wrongly (fix the code)
    │   ├── NotSupportedError   a documented feature that this version does not do yet
    │   ├── ApprovalMismatchError  an approved call is not (any more) the call a person saw
    │   └── RunAlreadyResumedError  a paused run was resumed elsewhere first (two clicks, two
    │                               processes): it is not resumed twice
    ├── ModelError           the model could not answer (provider failure, script exhausted)
    │   ├── ScriptExhaustedError
    │   └── ProviderError    a provider failed; ``retryable`` says whether trying again may help
    │       ├── ModelAuthenticationError   401/403: the key is missing, wrong or not allowed
    │       ├── ModelNotFoundError         404: unknown model, or base_url is not the API
    │       ├── ContextWindowExceededError the request does not fit the model's window
    │       ├── ModelRequestError          other 4xx: the provider refused the request
    │       ├── ModelRateLimitError        429, retried with backoff first
    │       ├── ModelUnavailableError      5xx / overloaded, retried with backoff first
    │       ├── ModelConnectionError       unreachable or broken connection, retried first
    │       └── IncompleteStreamError      the stream ended before the turn was complete
    │   └── ModelRefusalError  the model declined to answer (stop reason "refusal")
    ├── ToolError            a tool failed in a way the model cannot fix (e.g. a result that is not JSON)
    └── StoreError           a session store could not be opened, read or written

Errors inside a run do not escape ``agent.run``: they end the run with ``status="failed"`` and
``RunResult.error`` holds the message, so nothing the run did is lost. ``RunResult.raise_for_status``
re-raises them for code that prefers exceptions.
"""

from __future__ import annotations

__all__ = [
    "ApprovalMismatchError",
    "ConfigError",
    "ContextWindowExceededError",
    "IncompleteStreamError",
    "LoomError",
    "ModelAuthenticationError",
    "ModelConnectionError",
    "ModelError",
    "ModelNotFoundError",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelRequestError",
    "ModelUnavailableError",
    "NotSupportedError",
    "ProviderError",
    "RunAlreadyResumedError",
    "ScriptExhaustedError",
    "StoreError",
    "ToolError",
]


class LoomError(Exception):
    """Base class of every error loom_nb raises on purpose."""


class ConfigError(LoomError, ValueError):
    """The agent, a tool, a model or a session was configured wrongly."""


class NotSupportedError(ConfigError, NotImplementedError):
    """A documented feature that this version does not implement yet."""


class ApprovalMismatchError(ConfigError):
    """A decision on a paused run does not match the run's stored state: the approved call's
    id, tool or arguments differ from the ones the person saw, or the stored turn is damaged.
    Nothing runs; the run keeps waiting."""


class RunAlreadyResumedError(ConfigError):
    """A run paused for approval was resumed by someone else first (another click, thread,
    session or process): its approved calls run once, there."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        #: The run's status when the resume was refused ("running" while the other side goes on).
        self.status = status


class ModelError(LoomError):
    """The model could not produce an answer."""


class ScriptExhaustedError(ModelError):
    """A scripted model was asked for more turns than it was given."""


class ProviderError(ModelError):
    """A model provider failed. ``retryable`` says whether trying again may help."""

    retryable: bool = False

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class ModelAuthenticationError(ProviderError):
    """The API key was missing, wrong or not allowed (401/403)."""


class ModelNotFoundError(ProviderError):
    """The provider does not know the model, or the base_url is not its API (404)."""


class ContextWindowExceededError(ProviderError):
    """The request does not fit in the model's context window."""


class ModelRequestError(ProviderError):
    """The provider refused the request as invalid (other 4xx)."""


class ModelRateLimitError(ProviderError):
    """Too many requests or tokens (429); retried with backoff."""

    retryable = True


class ModelUnavailableError(ProviderError):
    """The provider failed or is overloaded (5xx, 529); retried with backoff."""

    retryable = True


class ModelConnectionError(ProviderError):
    """The server could not be reached, or the connection broke; retried with backoff."""

    retryable = True


class IncompleteStreamError(ProviderError):
    """The response stream ended before the turn was complete."""

    retryable = True


class ModelRefusalError(ModelError):
    """The model declined to answer (stop reason ``refusal``)."""


class ToolError(LoomError):
    """A tool failed in a way that the model cannot correct."""


class StoreError(LoomError):
    """A session store could not be opened, read or written."""
