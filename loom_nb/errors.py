"""The exceptions loom_nb raises, in one tree.

Two roots. ``LoomError`` is every error loom_nb raises on purpose, in two families: *user errors*
(the set-up is wrong; fix the code the message names) and *run errors* (something failed while
working; the message says what to try). ``ControlFlow`` is not an error: loom_nb raises it
inside a run to steer the run and catches it itself, so ``except LoomError`` never swallows a
pause::

    LoomError
    │ user errors
    ├── ConfigError          the agent, tool, model or session was set up wrongly (fix the code)
    │   ├── NotSupportedError   a documented feature that this version does not do yet
    │   ├── ApprovalMismatchError  an approved call is not (any more) the call a person saw
    │   ├── RunAlreadyResumedError  a paused run was resumed elsewhere first (two clicks, two
    │   │                           processes): it is not resumed twice
    │   └── CostUnknownError  Limits(max_cost_usd=) on a model genai-prices has no price for
    │ run errors
    ├── ModelError           the model could not answer (provider failure, script exhausted)
    │   ├── ScriptExhaustedError
    │   ├── ProviderError    a provider failed; ``retryable`` says whether trying again may help
    │   │   ├── ModelAuthenticationError   401/403: the key is missing, wrong or not allowed
    │   │   ├── ModelNotFoundError         404: unknown model, or base_url is not the API
    │   │   ├── ContextWindowExceededError the request does not fit the model's window
    │   │   ├── ModelRequestError          other 4xx: the provider refused the request
    │   │   ├── ModelRateLimitError        429, retried with backoff first
    │   │   ├── ModelUnavailableError      5xx / overloaded, retried with backoff first
    │   │   ├── ModelConnectionError       unreachable or broken connection, retried first
    │   │   └── IncompleteStreamError      the stream ended before the turn was complete
    │   ├── ModelRefusalError  the model declined to answer (stop reason "refusal")
    │   ├── OutputValidationError  the answer is not a valid output_type after output_retries
    │   └── ReplayError      a replay model could not serve a request from its recording
    │       ├── RecordingNotFoundError     the recording file does not exist
    │       ├── ReplayExhaustedError       every recorded exchange was served
    │       └── ReplayMismatchError        the request differs from the recorded one
    ├── ToolError            a tool failed in a way the model cannot fix (e.g. a result that is not JSON)
    ├── StoreError           a session store could not be opened, read or written
    └── RunError             RunResult.raise_for_status() on a run that did not complete

    ControlFlow              raised and caught inside a run; never reaches user code
    └── Suspended            a tool's result waits for a person: the calling run pauses
        └── SubAgentPaused   a sub-agent's run paused for approval; the caller pauses with its calls

    RunCancelled             (a KeyboardInterrupt) a ``%loom run`` stopped by an interrupt: the cell
                             already shows the cancelled run, so IPython prints one line

``ExportError`` sits under ``LoomError`` (and ``ValueError``), ``CommandError`` (a mistyped
``%loom`` command) under ``ConfigError``. A few private exceptions carry a state from one
function to its handler inside one module (the MCP connection's ``ServerGone``, the tools'
``_TimedOut``, the worker pool's ``Escaped``) and never leave it.

Errors inside a run do not escape ``agent.run``: they end the run with ``status="failed"``,
``RunResult.error`` holds the message and ``RunResult.error_type`` the class name, so nothing the
run did is lost. ``RunResult.raise_for_status`` raises a :class:`RunError` that is also an
instance of that class, for code that prefers exceptions (see :func:`run_error`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: this module is the bottom layer and imports nothing
    from .result import PendingApproval, RunResult

__all__ = [
    "ApprovalMismatchError",
    "CommandError",
    "ConfigError",
    "ControlFlow",
    "CostUnknownError",
    "ContextWindowExceededError",
    "ExportError",
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
    "OutputValidationError",
    "ProviderError",
    "RecordingNotFoundError",
    "ReplayError",
    "ReplayExhaustedError",
    "ReplayMismatchError",
    "RunAlreadyResumedError",
    "RunCancelled",
    "RunError",
    "ScriptExhaustedError",
    "StoreError",
    "SubAgentPaused",
    "Suspended",
    "ToolError",
    "error_class",
    "run_error",
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


class CostUnknownError(ConfigError):
    """``Limits(max_cost_usd=...)`` is set, but a model response of the run has no known price
    (the model is not in ``genai-prices``, or the package is not installed): the run cannot
    keep to a cost it cannot count, so it fails instead of running unbounded."""


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


class OutputValidationError(ModelError):
    """The model's answer did not validate against ``output_type``, also after its retries.

    ``problems`` holds the last validation errors, as the model was told them.
    """

    def __init__(self, message: str, *, problems: str = "") -> None:
        super().__init__(message)
        self.problems = problems


class ReplayError(ModelError):
    """A replay model could not serve a request from its recording."""


class RecordingNotFoundError(ReplayError):
    """The recording file does not exist."""


class ReplayExhaustedError(ReplayError):
    """Every recorded exchange has been served and another request came."""


class ReplayMismatchError(ReplayError):
    """A request differs from the one recorded at this point."""

    def __init__(self, message: str, *, path: str = "", recorded: Any = None,
                 actual: Any = None) -> None:
        super().__init__(message)
        #: Where the requests first differ, e.g. ``messages[3].parts[0].text``.
        self.path = path
        self.recorded = recorded
        self.actual = actual


class CommandError(ConfigError):
    """A ``%loom`` line that cannot be understood; the message says how to write it."""


class ExportError(LoomError, ValueError):
    """A source cannot be exported, or (with ``strict=True``) one of its records is malformed."""


class ToolError(LoomError):
    """A tool failed in a way that the model cannot correct."""


class StoreError(LoomError):
    """A session store could not be opened, read or written."""


class RunError(LoomError):
    """Raised by :meth:`RunResult.raise_for_status` for a run that did not complete.

    ``result`` is the run's :class:`~loom_nb.result.RunResult`. For a run that failed with an
    error class loom_nb can name (``result.error_type``), the exception raised is also an
    instance of that class (``cause``): ``except StoreError`` and ``except RunError`` both catch
    it, and its class is still named RunError. Only the class is restored, from its name, so
    that a result read back from a store raises the same way as a live one; instance attributes
    such as ``ProviderError.status_code`` are left at their defaults.
    """

    #: The class the run failed with, when it could be named; None for a plain RunError.
    cause: type[Exception] | None = None

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        # The made classes are not importable by name: pickle (multiprocessing, ray) rebuilds.
        return _rebuilt, (self.cause, str(self), self.result)


def run_error(message: str, result: RunResult) -> RunError:
    """The error :meth:`RunResult.raise_for_status` raises: a :class:`RunError` that is also an
    instance of the class the run failed with, when :func:`error_class` finds it."""
    cause = error_class(result.error_type) if result.status == "failed" else None
    return _rebuilt(cause, message, result)


def _rebuilt(cause: type[Exception] | None, message: str, result: RunResult) -> RunError:
    if cause is not None:
        try:
            return _run_error_class(cause)(message, result)
        except TypeError:  # a class that cannot be combined or built from a message alone
            pass
    return RunError(message, result)


_MADE: dict[type[Exception], type[RunError]] = {}


def _run_error_class(cause: type[Exception]) -> type[RunError]:
    """RunError and ``cause`` in one class, made once per class. It keeps the name RunError:
    code that prints ``type(exc).__name__`` reads what it read before; ``cause`` names the
    class the run failed with."""
    made = _MADE.get(cause)
    if made is None:
        made = _MADE.setdefault(cause, type("RunError", (RunError, cause), {
            "__module__": __name__, "__qualname__": "RunError", "cause": cause,
            "__doc__": f"A RunError for a run that failed with {cause.__qualname__}."}))
    return made


def error_class(name: str | None) -> type[Exception] | None:
    """The exception class a run's ``error_type`` names: a :class:`LoomError` subclass (loom_nb's
    own first, then one defined elsewhere when its name is unique) or a built-in exception.
    None for anything else (``QualityGateFailed``, ``CancelledError``, an unknown class)."""
    if not name:
        return None
    found = [cls for cls in _loom_errors() if cls.__name__ == name]
    ours = [cls for cls in found if cls.__module__.startswith("loom_nb.")]
    if len(ours) == 1 or len(found) == 1:
        return (ours or found)[0]
    if found:
        return None  # two classes of that name outside loom_nb: neither is surely the one
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        return builtin
    return None


def _loom_errors(root: type[LoomError] = LoomError) -> Iterator[type[LoomError]]:
    for cls in root.__subclasses__():
        if cls.__dict__.get("cause") is None:  # not one of the made RunError classes
            yield cls
            yield from _loom_errors(cls)


# -- control flow: raised and caught inside a run, never reaching user code ---------------------


class ControlFlow(Exception):
    """Not an error: loom_nb raises it inside a run to change the run's course, and catches it
    itself. Apart from :class:`LoomError` so that ``except LoomError`` never swallows it."""


class Suspended(ControlFlow):
    """Raised by a tool whose result waits for a person (a sub-agent's run paused for approval):
    the calling run pauses too, instead of sending the model an error."""


class SubAgentPaused(Suspended):
    """A sub-run paused for approval; the calling run pauses with the sub-run's waiting calls."""

    def __init__(self, agent: str, session_id: str, run_id: str,
                 pending: Sequence[PendingApproval], usage: dict[str, int]) -> None:
        super().__init__(f"Sub-agent {agent!r} waits for approval of "
                         f"{', '.join(p.name for p in pending)} (run {run_id}).")
        self.agent, self.session_id, self.run_id, self.pending = agent, session_id, run_id, pending
        #: What the sub-run has used so far, already counted towards the calling run.
        self.usage = usage


class RunCancelled(KeyboardInterrupt):
    """A ``%loom run`` stopped by an interrupt; the cell already shows the cancelled run."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback through the magic machinery.
        return [f"KeyboardInterrupt: {self}"]
