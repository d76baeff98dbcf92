"""Checks of what a person adds to a decision on a paused call (see
:class:`~loom_nb.result.Approved`), made where the decision is given and again by the engine
before the paused run is claimed (:mod:`loom_nb.engine.edits`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, NotSupportedError

if TYPE_CHECKING:
    from .result import PendingApproval
    from .tools import Tool

__all__ = ["MAX_EDIT_CHARS", "check_rememberable", "check_schema", "edited_args"]

#: The largest edited arguments, as JSON: they are stored with the run's events.
MAX_EDIT_CHARS = 1_000_000


def edited_args(tools: Mapping[str, Tool] | None, pending: PendingApproval, args: Any, run_id: str) -> dict[str, Any]:
    """``args`` as a person's edit of ``pending``: a JSON object (a copy), valid for the tool's
    schema when ``tools`` (the agent's, once known) are given; raises ConfigError otherwise."""
    if pending.kind == "question":
        raise ConfigError(f"{pending.call_id!r} in run {run_id} is a question: answer it with "
                          f"answer({pending.call_id!r}, text) instead of editing it.")
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ConfigError(f"approve(args=...) takes the call's arguments as a dict with str keys, "
                          f"e.g. {pending.args!r}; not {type(args).__name__}.")
    try:
        text = json.dumps(args, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"approve(args=...) must be JSON data (they are stored and shown to the "
                          f"model): {exc}.") from None
    if len(text) > MAX_EDIT_CHARS:
        raise ConfigError(f"The edited arguments are {len(text)} characters as JSON; at most "
                          f"{MAX_EDIT_CHARS} are allowed.")
    copied: dict[str, Any] = json.loads(text)  # later changes to the caller's dict change nothing
    if tools is not None and pending.via is None:
        check_schema(tools.get(pending.name), pending, copied, run_id)
    return copied


def check_schema(tool: Tool | None, pending: PendingApproval, args: dict[str, Any],
                  run_id: str) -> None:
    if tool is None:
        raise ConfigError(f"The tool {pending.name!r} of call {pending.call_id!r} is not one of "
                          f"the agent's tools any more; the edit cannot be checked. Run {run_id} "
                          f"still waits: reject the call instead.")
    problems = tool.argument_problems(args)
    if problems:
        raise ConfigError(
            f"The edited arguments for {pending.name} (call {pending.call_id!r}) do not match its "
            f"schema: {'; '.join(problems)}. Nothing was run and run {run_id} still waits; "
            f"approve again with valid arguments.")


def check_rememberable(pending: PendingApproval, run_id: str) -> None:
    if pending.kind == "question":
        raise ConfigError(f"{pending.call_id!r} in run {run_id} is a question; each question is "
                          f"answered on its own, so remember=True does not apply to it.")
    if pending.via is not None:
        raise NotSupportedError(
            f"remember=True on a sub-agent's call ({pending.call_id!r}) is not supported yet: the "
            f"sub-agent runs in a session of its own. Approve it without remember=True.")


