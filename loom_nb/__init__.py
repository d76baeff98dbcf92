"""loom_nb: a notebook-native agent toolkit.

The kernel (everything here but ``loom_nb.notebook``) imports no IPython, ipywidgets or pandas.
``%load_ext loom_nb`` loads the notebook layer.
"""

from __future__ import annotations

from typing import Any

from .agent import Agent
from .capability import Capability
from .errors import (
    ApprovalMismatchError,
    CommandError,
    ConfigError,
    ContextWindowExceededError,
    CostUnknownError,
    ExportError,
    IncompleteStreamError,
    LoomError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelRequestError,
    ModelUnavailableError,
    NotSupportedError,
    OutputValidationError,
    ProviderError,
    RecordingNotFoundError,
    ReplayError,
    ReplayExhaustedError,
    ReplayMismatchError,
    RunAlreadyResumedError,
    RunCancelled,
    RunError,
    ScriptExhaustedError,
    StoreError,
    ToolError,
)
from .events import RunEvent
from .media import Document, Image
from .messages import Message, TextPart, ThinkingPart, ToolCall, ToolResult, Usage
from .models import Model, ModelRequest, ModelResponse
from .result import RunResult
from .runtime import Limits, Runtime
from .scoring import Score
from .session import Run, RunStream, Session, SessionConfig
from .signals import RuntimeSignal, SignalAdapter, SignalDecision
from .store import InMemoryStore, PostgresStore, SQLiteStore
from .task import RunContext, RuntimeTask
from .tools import Tool, tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "ApprovalMismatchError",
    "Capability",
    "CommandError",
    "ConfigError",
    "ContextWindowExceededError",
    "CostUnknownError",
    "Document",
    "ExportError",
    "Image",
    "InMemoryStore",
    "IncompleteStreamError",
    "Limits",
    "LoomError",
    "Message",
    "Model",
    "ModelAuthenticationError",
    "ModelConnectionError",
    "ModelError",
    "ModelNotFoundError",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelRequest",
    "ModelRequestError",
    "ModelResponse",
    "ModelUnavailableError",
    "NotSupportedError",
    "OutputValidationError",
    "PostgresStore",
    "ProviderError",
    "RecordingNotFoundError",
    "ReplayError",
    "ReplayExhaustedError",
    "ReplayMismatchError",
    "Run",
    "RunAlreadyResumedError",
    "RunCancelled",
    "RunContext",
    "RunError",
    "RunEvent",
    "RunResult",
    "RunStream",
    "Runtime",
    "RuntimeSignal",
    "RuntimeTask",
    "SQLiteStore",
    "Score",
    "ScriptExhaustedError",
    "Session",
    "SessionConfig",
    "SignalAdapter",
    "SignalDecision",
    "StoreError",
    "TextPart",
    "ThinkingPart",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolResult",
    "Usage",
    "__version__",
    "aevaluate",
    "evaluate",
    "report",
    "rescore",
    "tool",
]


def evaluate(agent: Any, tasks: Any, **options: Any) -> Any:
    """Run ``agent`` over a table of tasks: one DataFrame row per task.

    Imported when first called (it needs pandas); see :func:`loom_nb.evaluation.evaluate` for
    the options, and :func:`aevaluate` for ``await`` in async code.
    """
    from .evaluation import evaluate as run

    return run(agent, tasks, **options)


async def aevaluate(agent: Any, tasks: Any, **options: Any) -> Any:
    """:func:`evaluate` for async code: ``df = await loom_nb.aevaluate(agent, tasks)``."""
    from .evaluation import aevaluate as run

    return await run(agent, tasks, **options)


def rescore(source: Any, scorers: Any, **options: Any) -> Any:
    """Score an evaluation (its frame or its store) again without calling the agent; see
    :func:`loom_nb._rescore.rescore`."""
    from ._rescore import rescore as run

    return run(source, scorers, **options)


def report(evaluation: Any, score: str | None = None, **options: Any) -> Any:
    """The HTML report of an evaluation (its frame or its store); see
    :func:`loom_nb.eval_report.report`."""
    from .eval_report import report as build

    return build(evaluation, score, **options)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext loom_nb``: imported lazily so that ``import loom_nb`` stays IPython-free."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook import unload_ipython_extension as unload

    unload(ipython)
