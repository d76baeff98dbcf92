"""The exceptions loom_nb raises.

One base class, a few branches, each message saying what to do next::

    LoomError
    ├── ConfigError          the agent, tool, model or session was set up wrongly (fix the code)
    │   └── NotSupportedError   a documented feature that this version does not do yet
    ├── ModelError           the model could not answer (provider failure, script exhausted)
    │   └── ScriptExhaustedError
    ├── ToolError            a tool failed in a way the model cannot fix (e.g. a result that is not JSON)
    └── StoreError           a session store could not be opened, read or written

Errors inside a run do not escape ``agent.run``: they end the run with ``status="failed"`` and
``RunResult.error`` holds the message, so nothing the run did is lost. ``RunResult.raise_for_status``
re-raises them for code that prefers exceptions.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LoomError",
    "ModelError",
    "NotSupportedError",
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


class ModelError(LoomError):
    """The model could not produce an answer."""


class ScriptExhaustedError(ModelError):
    """A scripted model was asked for more turns than it was given."""


class ToolError(LoomError):
    """A tool failed in a way that the model cannot correct."""


class StoreError(LoomError):
    """A session store could not be opened, read or written."""
