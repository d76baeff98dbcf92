"""@tool: schema from type hints and docstrings, validation, errors back to the model."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import date
from typing import Literal

import pydantic
import pytest

from loom_nb import Agent, Capability, ConfigError, Model, Tool, tool
from loom_nb.tools import parse_docstring, serialize_result


@tool
def forecast(city: str, days: int = 3, unit: Literal["C", "F"] = "C") -> dict:
    """Forecast for a city.

    Args:
        city: The city name.
        days: How many days ahead,
            at most 7.
        unit: Temperature unit.
    """
    return {"city": city, "days": days, "unit": unit}


def test_schema_from_hints_and_google_docstring() -> None:
    assert isinstance(forecast, Tool)
    assert forecast.name == "forecast"
    assert forecast.description == "Forecast for a city."
    assert forecast.parameters == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": "The city name."},
            "days": {"type": "integer", "default": 3, "description": "How many days ahead, at most 7."},
            "unit": {"type": "string", "enum": ["C", "F"], "default": "C",
                     "description": "Temperature unit."},
        },
        "required": ["city"],
    }


def test_decorated_tool_stays_callable() -> None:
    assert forecast("Oslo", days=1) == {"city": "Oslo", "days": 1, "unit": "C"}


class Point(pydantic.BaseModel):
    x: float
    y: float


def test_options_and_nested_types() -> None:
    @tool(name="plot", description="Plot points.", read_only=True, destructive=False,
          requires_approval=True)
    def draw(points: list[Point], title: str | None = None) -> str:
        return f"{len(points)} points"

    assert (draw.name, draw.description, draw.read_only, draw.requires_approval) == (
        "plot", "Plot points.", True, True)
    props = draw.parameters["properties"]
    assert props["points"]["type"] == "array"
    assert "Point" in str(draw.parameters["$defs"])
    assert draw.definition.name == "plot"


def test_sphinx_and_numpy_docstrings() -> None:
    assert parse_docstring("Add.\n\n:param a: first\n    more\n:param int b: second\n:returns: sum") == (
        "Add.", {"a": "first more", "b": "second"})
    numpy = "Scale.\n\nParameters\n----------\nx : float\n    The value.\nk : int\n    Factor.\n"
    assert parse_docstring(numpy) == ("Scale.", {"x": "The value.", "k": "Factor."})


def test_bad_tool_definitions_are_clear() -> None:
    def variadic(*args: int) -> None: ...

    with pytest.raises(ConfigError, match=r"takes \*args"):
        tool(variadic)

    class Local:
        pass

    def uses_local(x: Local) -> None: ...

    with pytest.raises(ConfigError, match="name 'Local' is not defined.*importable"):
        tool(uses_local)
    with pytest.raises(ConfigError, match="not a valid tool name"):
        tool(name="has space")(lambda: None)
    with pytest.raises(ConfigError, match="Two tools are named 'forecast'"):
        Agent(Model.scripted([]), tools=[forecast, forecast])
    with pytest.raises(ConfigError, match="list of tools"):
        Agent(Model.scripted([]), tools=forecast)


@pytest.mark.anyio
async def test_invoke_validates_and_reports_errors() -> None:
    ok = await forecast.invoke({"city": "Oslo", "days": "2"})
    assert (ok.is_error, ok.content) == (False, '{"city": "Oslo", "days": 2, "unit": "C"}')
    bad = await forecast.invoke({"days": "many", "color": "red"})
    assert bad.is_error and bad.error_type == "ValidationError"
    assert "city: Field required" in bad.content
    assert "days: Input should be a valid integer" in bad.content
    assert "color: Extra inputs are not permitted" in bad.content


@pytest.mark.anyio
async def test_tool_exception_becomes_error_result_with_traceback() -> None:
    @tool
    def explode(n: int) -> int:
        raise KeyError(f"no row {n}")

    out = await explode.invoke({"n": 4})
    assert out.is_error and out.error_type == "KeyError"
    assert out.content == "Tool 'explode' raised KeyError: 'no row 4'"
    assert "explode" in (out.traceback or "")


@pytest.mark.anyio
async def test_sync_tools_run_off_the_event_loop_and_async_tools_on_it() -> None:
    loop_thread = threading.get_ident()

    @tool
    def sync_where() -> bool:
        return threading.get_ident() != loop_thread

    @tool
    async def async_where() -> bool:
        await asyncio.sleep(0)
        return threading.get_ident() == loop_thread

    assert (await sync_where.invoke({})).content == "true"
    assert (await async_where.invoke({})).content == "true"


def test_serialization_rules() -> None:
    @dataclasses.dataclass
    class Row:
        day: date
        tags: set[str]

    assert serialize_result("plain text", "t") == "plain text"
    assert serialize_result(None, "t") == "null"
    assert serialize_result(Row(date(2026, 1, 2), {"a"}), "t") == '{"day": "2026-01-02", "tags": ["a"]}'
    with pytest.raises(Exception, match=r"returned an object of type Opaque.*return a str"):
        serialize_result(type("Opaque", (), {})(), "t")


def test_non_serializable_result_goes_back_as_error_and_the_run_goes_on() -> None:
    @tool
    def handle() -> object:
        return threading.Lock()

    model = Model.scripted([{"tool": "handle", "args": {}}, "Could not read it."])
    result = Agent(model, tools=[handle]).run_sync("go")
    assert result.status == "completed" and result.output == "Could not read it."
    (call,) = result.tool_calls
    assert call.is_error and "cannot be sent to the model as JSON" in (call.content or "")
    assert "Make the tool return a str" in (call.content or "")
    # the model saw the error as the tool result
    seen = model.requests[1].messages[-1].tool_results[0]
    assert seen.is_error and "cannot be sent" in seen.content


def test_capability_tools_bundle() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    cap = Capability.tools(add, forecast, name="math", instructions="Use add for sums.")
    assert [t.name for t in cap.toolset] == ["add", "forecast"]
    agent = Agent(Model.scripted([]), "Be exact.", capabilities=[cap])
    assert set(agent.tools) == {"add", "forecast"}
    assert agent.system_prompt == "Be exact.\n\nUse add for sums."


class _CountingSource:
    """A tool source like an MCP server: tools known after connecting, a connection to close."""

    def __init__(self, *tools: Tool) -> None:
        self._tools = tools
        self.listed = 0
        self.closed = 0

    async def list_tools(self) -> list[Tool]:
        self.listed += 1
        return list(self._tools)

    async def aclose(self) -> None:
        self.closed += 1


def test_tool_sources_join_on_first_run_and_close_with_the_agent() -> None:
    def remote_add(a: int, b: int) -> int:
        """Add on the server."""
        return a + b

    source = _CountingSource(tool(remote_add))
    cap = Capability(name="server", source=source)
    model = Model.scripted([{"tool": "remote_add", "args": {"a": 1, "b": 2}}, "3", "again"])
    agent = Agent(model, capabilities=[cap])
    assert "remote_add" not in agent.tools  # not connected yet
    assert agent.run_sync("1+2").tool_calls[0].content == "3"
    assert [t.name for t in model.requests[0].tools] == ["remote_add"]
    agent.run_sync("again")
    assert source.listed == 1
    agent.close()
    assert source.closed == 1 and "remote_add" not in agent.tools


def test_tool_source_name_clash_fails_the_run_clearly() -> None:
    source = _CountingSource(forecast)
    agent = Agent(Model.scripted(["x"]), tools=[forecast], capabilities=[Capability(name="srv", source=source)])
    result = agent.run_sync("x")
    assert result.status == "failed" and "Two tools are named 'forecast'" in (result.error or "")


def test_sync_tools_run_on_workers_with_the_callers_context() -> None:
    import contextvars

    from loom_nb._workers import run_in_worker

    var: contextvars.ContextVar[str] = contextvars.ContextVar("cell", default="none")
    first_started, release = threading.Event(), threading.Event()

    def waits_for_the_other() -> str:
        first_started.set()
        assert release.wait(5), "the second tool never ran: the pool serialized them"
        return var.get()

    def releases() -> str:
        release.set()
        return "released"

    def fails() -> None:
        raise LookupError("inside the worker")

    async def main() -> tuple[str, str]:
        var.set("cell-3")
        first = asyncio.ensure_future(run_in_worker(waits_for_the_other))
        await asyncio.to_thread(first_started.wait, 5)
        second = await run_in_worker(releases)  # must not queue behind the blocked first tool
        with pytest.raises(LookupError, match="inside the worker"):
            await run_in_worker(fails)
        cancelled = asyncio.ensure_future(run_in_worker(lambda: threading.Event().wait(0.2)))
        await asyncio.sleep(0)
        cancelled.cancel()
        return await first, second

    assert asyncio.run(main()) == ("cell-3", "released")


def test_sync_tools_always_run_on_a_worker_thread_and_thread_false_is_refused() -> None:
    where: list[bool] = []

    def record() -> None:
        where.append(threading.current_thread().name.startswith("loom-nb-tool"))

    async def calls(t: Tool, n: int) -> list[bool]:
        where.clear()
        for _ in range(n):
            assert not (await t.invoke({})).is_error
        return list(where)

    # Quick or not, a sync tool never moves onto the loop (it used to after one quick call).
    assert asyncio.run(calls(tool(record), 5)) == [True] * 5
    assert asyncio.run(calls(tool(thread=True)(record), 2)) == [True, True]
    with pytest.raises(ConfigError, match="thread=False is no longer supported"):
        tool(thread=False)(record)
