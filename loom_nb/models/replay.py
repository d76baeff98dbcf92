"""Record a model's exchanges to a file, and replay them offline, deterministically.

``Model.record(model, path)`` wraps any model: each request it answers is appended to ``path`` as
one JSON line, with the request (system, messages, tools, settings), the streamed chunks and the
final response (or the error it ended with). ``Model.replay(path)`` serves those exchanges back
in order without a network or a key, streaming the same chunks, so a notebook that was run once
against a real model runs again under nbval with the same output.

Each request to a replay model is compared with the recorded one (system, messages and tools;
``settings`` too when ``match`` names it). The first difference fails the request with a
:class:`ReplayMismatchError` that shows where the two differ, e.g.
``messages[3].parts[0].text``. Text that changes from run to run (temporary paths, dates) can be
masked on both sides with ``normalize=``.
"""

from __future__ import annotations

import dataclasses

import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from .. import errors as loom_errors
from ..errors import (  # declared in errors.py; importable from here as documented
    ConfigError,
    ModelError,
    RecordingNotFoundError,
    ReplayError,
    ReplayExhaustedError,
    ReplayMismatchError,
)
from ..messages import Usage, message_from_dict
from . import (
    Model,
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    ToolCallDelta,
)
from ._requests import DEFAULT_KEEP, KeepRequests, RequestLog
from .windows import known_window

__all__ = [
    "FORMAT_VERSION",
    "RecordingModel",
    "RecordingNotFoundError",
    "ReplayError",
    "ReplayExhaustedError",
    "ReplayMismatchError",
    "ReplayModel",
    "first_difference",
    "request_to_dict",
]

FORMAT_VERSION = 1
#: What a replayed request is compared on by default. Settings are recorded but not compared:
#: they tune how the model samples, not what it was asked, and the replayed answer is fixed anyway.
DEFAULT_MATCH = ("system", "messages", "tools")
_MATCHABLE = ("system", "messages", "tools", "settings")
_SHOW = 160  #: characters of each side shown in a mismatch message


# -- the file format -----------------------------------------------------------------------------


def request_to_dict(request: ModelRequest) -> dict[str, Any]:
    """A request as plain JSON data (the form it is recorded and compared in)."""
    return {
        "system": request.system,
        "messages": [m.to_dict() for m in request.messages],
        "tools": [{"name": t.name, "description": t.description, "parameters": t.parameters}
                  for t in request.tools],
        "settings": dict(request.settings),
        # Only when set, so that recordings made before these fields still match.
        **({"output": dataclasses.asdict(request.output)} if request.output is not None else {}),
        **({"tool_choice": request.tool_choice} if request.tool_choice is not None else {}),
    }


def _response_to_dict(response: ModelResponse) -> dict[str, Any]:
    return {"message": response.message.to_dict(), "usage": response.usage.to_dict(),
            "stop_reason": response.stop_reason, "model_name": response.model_name}


def _response_from_dict(data: dict[str, Any]) -> ModelResponse:
    return ModelResponse(message=message_from_dict(data["message"]),
                         usage=Usage.from_dict(data.get("usage")),
                         stop_reason=data.get("stop_reason", "end_turn"),
                         model_name=data.get("model_name", ""))


def _item_to_dict(item: TextDelta | ToolCallDelta) -> dict[str, Any]:
    if isinstance(item, TextDelta):
        return {"text": item.text}
    return {"call_id": item.call_id, "name": item.name, "args_delta": item.args_delta}


def _item_from_dict(data: dict[str, Any]) -> TextDelta | ToolCallDelta:
    if "text" in data:
        return TextDelta(data["text"])
    return ToolCallDelta(data["call_id"], data["name"], data["args_delta"])


# -- recording -----------------------------------------------------------------------------------

_FILE_LOCK = threading.Lock()


def _write_line(path: Path, line: dict[str, Any], *, fresh: bool) -> None:
    text = json.dumps(line, ensure_ascii=False, default=str) + "\n"
    with _FILE_LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One open/write/close per exchange: what was recorded survives a crash or an interrupt.
        with path.open("w" if fresh else "a", encoding="utf-8") as handle:
            handle.write(text)


class RecordingModel(Model):
    """Passes every request to ``model`` and appends the exchange to a JSON Lines file.

    It looks like the wrapped model (same ``identifier``, ``context_window``), so events and
    budgets are those of the real run. Retries are not recorded: only what the run finally got.

    The file is started afresh at this recorder's first exchange (re-running a notebook cell
    re-records), unless ``append=True``: for a second model recorded into the same file.
    """

    def __init__(self, model: Model | str, path: str | os.PathLike[str], *,
                 append: bool = False) -> None:
        from . import resolve_model

        self.model = resolve_model(model)
        if isinstance(self.model, ReplayModel):
            raise ConfigError("Model.record wraps a live model; recording a replay model would "
                              "only copy the recording. Copy the file instead.")
        self.path = Path(path).expanduser().resolve()
        self.provider = self.model.provider
        self.name = self.model.name
        self.vision = self.model.vision
        self.exchanges = 0  #: how many exchanges this recorder wrote
        self.append = bool(append)

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return self.model.context_window

    @property
    def native_output(self) -> bool:  # type: ignore[override]
        return self.model.native_output

    @property
    def identifier(self) -> str:
        return self.model.identifier

    async def aclose(self) -> None:
        await self.model.aclose()

    def __repr__(self) -> str:
        return f"<Model record {self.identifier} -> {str(self.path)!r}>"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        chunks: list[dict[str, Any]] = []
        # The window the live run's budget used (given, else known for the model), so that the
        # replay budgets, compacts and therefore asks exactly the same.
        window = self.model.context_window or known_window(self.model.provider, self.model.name)
        line: dict[str, Any] = {
            "loom_recording": FORMAT_VERSION, "model": self.model.identifier,
            "context_window": window, "request": request_to_dict(request), "stream": chunks,
        }
        try:
            async for item in self.model.stream(request):
                if isinstance(item, TextDelta | ToolCallDelta):
                    chunks.append(_item_to_dict(item))
                elif isinstance(item, ModelResponse):
                    line["response"] = _response_to_dict(item)
                yield item
        except ModelError as exc:
            # A failure is part of what the notebook showed; replay raises it again. A
            # cancellation is not recorded: nothing was answered.
            line["error"] = {"type": type(exc).__name__, "message": str(exc)}
            self._write(line)
            raise
        if "response" not in line:
            return  # the consumer stopped early: nothing complete to record
        self._write(line)

    def _write(self, line: dict[str, Any]) -> None:
        _write_line(self.path, line, fresh=not self.append and self.exchanges == 0)
        self.exchanges += 1


# -- replaying -----------------------------------------------------------------------------------


class ReplayModel(Model):
    """Serves the exchanges of a recording back, in order, offline.

    Args:
        path: the JSON Lines file written by :class:`RecordingModel`.
        normalize: ``fn(text) -> text`` applied to every string of both the recorded and the
            actual request before they are compared, to mask volatile text.
        match: the request fields compared (``"system"``, ``"messages"``, ``"tools"``,
            ``"settings"``).
        model: serve only the exchanges recorded from this model identifier (for a file that
            several models were recorded into).
        context_window: overrides the recorded model's window.
        keep_requests: ``requests`` keeps the first and the last this many requests (or "all").
    """

    provider = "replay"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        normalize: Callable[[str], str] | None = None,
        match: Iterable[str] = DEFAULT_MATCH,
        model: str | None = None,
        context_window: int | None = None,
        keep_requests: KeepRequests = DEFAULT_KEEP,
    ) -> None:
        self.path = Path(path).expanduser()
        self.match = tuple(match)
        unknown = [m for m in self.match if m not in _MATCHABLE]
        if unknown or not self.match:
            raise ConfigError(f"Model.replay(match=...) takes some of {', '.join(_MATCHABLE)}; "
                              f"got {list(self.match)!r}.")
        if normalize is not None and not callable(normalize):
            raise ConfigError("Model.replay(normalize=...) takes a function text -> text.")
        self.normalize = normalize
        self.only = model
        self._window = context_window
        self._exchanges: list[dict[str, Any]] | None = None
        self._served: set[int] = set()
        self._lock = threading.Lock()
        self.requests = RequestLog(keep_requests)
        # Loaded now when the file is there; a missing file fails at the first request, so that
        # Model.from_env(default=Model.replay(...)) works with LOOM_MODEL set and no recording.
        if self.path.exists():
            self._load()

    # -- what the recording says about the model ------------------------------------------------

    @property
    def recorded_model(self) -> str:
        """The identifier of the model the recording was made with ("" when not known yet)."""
        exchanges = self._exchanges or []
        return str(exchanges[0].get("model", "")) if exchanges else (self.only or "")

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.recorded_model.partition(":")[2] or self.path.name

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        if self._window is not None:
            return self._window
        exchanges = self._exchanges or []
        window = exchanges[0].get("context_window") if exchanges else None
        return window if isinstance(window, int) and window > 0 else None

    @property
    def native_output(self) -> bool:  # type: ignore[override]
        """As recorded: a recording made with the output tool replays with it (output_mode=auto)."""
        return not any((e.get("request") or {}).get("output", {}).get("mode") == "tool"
                       for e in self._exchanges or [])

    @property
    def identifier(self) -> str:
        return f"replay:{self.recorded_model or self.path.name}"

    @property
    def remaining(self) -> int:
        """How many recorded exchanges have not been served yet."""
        return len(self._exchanges or []) - len(self._served)

    def __repr__(self) -> str:
        return f"<Model {self.identifier} from {str(self.path)!r}>"

    def _load(self) -> list[dict[str, Any]]:
        if self._exchanges is not None:
            return self._exchanges
        if not self.path.exists():
            raise RecordingNotFoundError(
                f"The recording {str(self.path)!r} does not exist. Record it once with a real "
                f"model, e.g. Model.record(Model.anthropic('claude-sonnet-5'), "
                f"{str(self.path)!r}), or set LOOM_MODEL to run against a live model instead.")
        exchanges = []
        with self.path.open(encoding="utf-8") as handle:
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    exchanges.append(self._parse(raw, number))
        if self.only is not None:
            exchanges = [e for e in exchanges if e.get("model") == self.only]
        self._exchanges = exchanges
        return exchanges

    def _parse(self, raw: str, number: int) -> dict[str, Any]:
        where = f"Line {number} of the recording {str(self.path)!r}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{where} is not JSON ({exc}); re-record it with Model.record."
                              ) from None
        if not isinstance(data, dict) or data.get("loom_recording") != FORMAT_VERSION:
            raise ConfigError(f"{where} is not a loom_nb recording of format {FORMAT_VERSION}; "
                              f"re-record it with Model.record.")
        if "request" not in data or ("response" not in data and "error" not in data):
            raise ConfigError(f"{where} has no request or no response; re-record it.")
        return data

    # -- serving ---------------------------------------------------------------------------------

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        exchange = self._take(request)
        self.requests.append(request)
        for chunk in exchange.get("stream", []):
            yield _item_from_dict(chunk)
        if "error" in exchange:
            raise _recorded_error(exchange["error"], self.path)
        yield _response_from_dict(exchange["response"])

    def _take(self, request: ModelRequest) -> dict[str, Any]:
        """The exchange for ``request``: the next one in order when it matches.

        A later unserved exchange that matches exactly is taken too, so that requests made
        concurrently (parallel sub-agents) may arrive in another order than they were recorded.
        """
        exchanges = self._load()
        # Through JSON, as the recorded side went: tuples become lists, keys strings.
        actual = self._comparable(json.loads(json.dumps(request_to_dict(request),
                                                        ensure_ascii=False, default=str)))
        with self._lock:
            pending = [i for i in range(len(exchanges)) if i not in self._served]
            if not pending:
                raise ReplayExhaustedError(
                    f"The recording {str(self.path)!r} has no exchange left: all "
                    f"{len(exchanges)} were served, and another request came "
                    f"({_last_user_text(request)}). The notebook now makes more model requests "
                    f"than when it was recorded: re-record with Model.record(model, "
                    f"{str(self.path)!r}), or fix the notebook.")
            for index in pending:
                if self._comparable(exchanges[index]["request"]) == actual:
                    self._served.add(index)
                    return exchanges[index]
            first = pending[0]
        self._mismatch(first, exchanges[first]["request"], actual)
        raise AssertionError("unreachable")  # pragma: no cover

    def _comparable(self, data: dict[str, Any]) -> dict[str, Any]:
        picked = {key: data.get(key, {} if key == "settings" else None) for key in self.match}
        return _normalized(picked, self.normalize) if self.normalize else picked

    def _mismatch(self, index: int, recorded: dict[str, Any], actual: dict[str, Any]) -> None:
        path, old, new = first_difference(self._comparable(recorded), actual)
        shown_old, shown_new, where = _clip_pair(old, new)
        raise ReplayMismatchError(
            f"Request {index + 1} of the recording {str(self.path)!r} does not match: they "
            f"first differ at {path or 'the top level'}{where}.\n"
            f"  recorded: {shown_old}\n"
            f"  actual:   {shown_new}\n"
            f"The notebook no longer asks the model what it asked when it was recorded. "
            f"Re-record with Model.record(model, {str(self.path)!r}), or fix the notebook; "
            f"for text that changes on every run, pass normalize= to Model.replay.",
            path=path, recorded=old, actual=new)


def _recorded_error(data: dict[str, Any], path: Path) -> ModelError:
    """The recorded failure, as the same loom error class where there is one."""
    cls = getattr(loom_errors, str(data.get("type", "")), None)
    message = str(data.get("message", "the model failed"))
    if isinstance(cls, type) and issubclass(cls, ModelError):
        return cls(message)
    return ModelError(f"{message} (recorded failure replayed from {str(path)!r})")


def _last_user_text(request: ModelRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user" and message.text:
            return f"last user text: {_show(message.text)}"
    return f"{len(request.messages)} messages"


def _normalized(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {key: _normalized(item, fn) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalized(item, fn) for item in value]
    return value


_MISSING = object()


def first_difference(recorded: Any, actual: Any, path: str = "") -> tuple[str, Any, Any]:
    """``(path, recorded, actual)`` at the first place two JSON values differ.

    Values are compared after a JSON round trip (tuples are lists); a side that has no value at
    that path is reported as ``<missing>``. Returns ``("", recorded, actual)`` if they are equal.
    """
    if isinstance(recorded, dict) and isinstance(actual, dict):
        for key in [*recorded, *(k for k in actual if k not in recorded)]:
            sub = f"{path}.{key}" if path else str(key)
            old, new = recorded.get(key, _MISSING), actual.get(key, _MISSING)
            if old is _MISSING or new is _MISSING:
                return sub, old, new
            found = first_difference(old, new, sub)
            if found[0]:
                return found
        return "", recorded, actual
    if isinstance(recorded, list | tuple) and isinstance(actual, list | tuple):
        for i in range(max(len(recorded), len(actual))):
            sub = f"{path}[{i}]"
            if i >= len(recorded) or i >= len(actual):
                return (sub, recorded[i] if i < len(recorded) else _MISSING,
                        actual[i] if i < len(actual) else _MISSING)
            found = first_difference(recorded[i], actual[i], sub)
            if found[0]:
                return found
        return "", recorded, actual
    if recorded == actual and type(recorded) is type(actual):
        return "", recorded, actual
    return path or "<root>", recorded, actual


def _clip_pair(old: Any, new: Any) -> tuple[str, str, str]:
    """Both sides for a message; two long strings are shown from just before they diverge."""
    if not (isinstance(old, str) and isinstance(new, str)):
        return _show(old), _show(new), ""
    at = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
    start = max(0, at - 40)
    lead = "…" if start else ""
    return _show(lead + old[start:]), _show(lead + new[start:]), f" (character {at})"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= _SHOW else text[: _SHOW - 1] + "…"
