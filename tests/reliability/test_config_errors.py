"""Configuration mistakes are ConfigErrors at the line that makes them, with the fix in the message."""

from __future__ import annotations

import collections.abc
import threading
import typing
from pathlib import Path

import pytest

from loom_nb import Agent, ConfigError, Model, SessionConfig, tool


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"metadata": "x"}, r"metadata=\.\.\.\) takes a dict of labels such as \{'user': 'ana'\}, not str 'x'"),
    ({"metadata": ["a", "b"]}, r"takes a dict of labels"),
    ({"metadata": {1: "one"}}, r"keys must be str .* Use str\(1\) as the key"),
    ({"id": ["l"]}, r"id=\.\.\.\) takes a non-empty str such as 'notes-2024' .*not list \['l'\]"),
    ({"id": 7}, r"takes a non-empty str"),
    ({"id": "  "}, r"takes a non-empty str"),
    ({"id": "a\x00b"}, r"NUL"),
    ({"store": 42}, r"store=\.\.\.\) takes an SQLite file path such as 'sessions.sqlite'.*not int 42"),
    ({"store": ""}, r"names no file"),
    ({"store": {"path": "x"}}, r"takes an SQLite file path"),
])
def test_every_session_config_field_is_checked(kwargs: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        SessionConfig(**kwargs)


def test_valid_session_configs_still_work(tmp_path: Path) -> None:
    labels = {"user": "ana"}
    config = SessionConfig(id="s1", store=tmp_path / "s.sqlite", metadata=labels)
    labels["user"] = "changed later"  # the frozen config keeps what it was given
    session = Agent(Model.scripted(["hi"])).session(config)
    assert session.metadata == {"user": "ana"}
    assert SessionConfig() == SessionConfig(id=None, store=None, metadata={})
    assert session.run_sync("hello").output == "hi"


def _tool_with(annotation: object) -> typing.Callable[..., object]:
    def f(x, y: int = 1) -> str:  # noqa: ANN001 - the annotation is set below
        """A tool."""
        return "ok"

    f.__annotations__ = {"x": annotation, "y": int, "return": str}
    return f


class _OwnSchemaFails:
    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: object) -> object:
        raise RuntimeError("this type builds no schema")


@pytest.mark.parametrize("annotation", [
    typing.Callable[[int], int],  # validates, but JSON schema cannot express it
    collections.abc.Callable,
    typing.Iterator[int],
    threading.Lock,
    _OwnSchemaFails,  # its own hook raises a plain RuntimeError
])
def test_a_parameter_json_cannot_express_is_a_config_error_at_tool_time(annotation: object) -> None:
    with pytest.raises(ConfigError, match=r"Tool 'f': parameter 'x' is annotated .*which a JSON schema "
                                          r"cannot express.*Annotate it with str, int"):
        tool(_tool_with(annotation))


def test_a_json_friendly_signature_still_builds() -> None:
    built = tool(_tool_with(list[str]))
    assert built.parameters["properties"]["x"] == {"items": {"type": "string"}, "type": "array"}
