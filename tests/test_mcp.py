"""Capability.mcp against real MCP server processes: the toolbox server in tests/mcp_servers (stdio and
streamable HTTP) and the ``mcp-server-time`` package from PyPI. No network beyond loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loom_nb import Agent, Capability, ConfigError, Model, Runtime
from loom_nb.runtime import GovernancePolicy

TOOLBOX = str(Path(__file__).parent / "mcp_servers" / "toolbox.py")
STDIO = [sys.executable, TOOLBOX]


def box(**options) -> Capability:
    return Capability.mcp("box", command=STDIO, **options)


def call(tool: str, **args) -> dict:
    return {"tool": tool, "args": args}


def contents(result) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.is_error, c.content) for c in result.tool_calls}


def error_types(result) -> dict[str, str]:
    return {e.data["name"]: e.data.get("error_type") for e in result.events if e.type == "tool.result"}


def process_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited, not yet reaped by its parent
            return True
        time.sleep(0.05)
    return False


# -- stdio: tools, schemas, results, errors, governance ----------------------------------------------


def test_stdio_tools_schemas_results_and_errors() -> None:
    model = Model.scripted([
        [call("box__add", a=2, b=3), call("box__point"), call("box__refuse", reason="not today"),
         call("box__add", a="two"), call("box__echo", text="héllo")],
        "done",
    ])
    agent = Agent(model, capabilities=[box()])
    assert agent.tools == {}  # the server is contacted at the first run, not at construction
    try:
        result = agent.run_sync("use the box")
    finally:
        agent.close()
    assert result.status == "completed", result.error
    sent = {t.name: t for t in model.requests[0].tools}
    assert list(sent) == ["box__add", "box__echo", "box__point", "box__refuse", "box__slow",
                          "box__crash", "box__pid", "box__header", "box__peek", "box__wipe",
                          # the tools of test_mcp_features, then the server's resource tools
                          "box__ask_model", "box__ask_person", "box__warn", "box__steps",
                          "box__grow", "box__where", "box__bad_where",
                          "box__list_resources", "box__read_resource"]
    add = sent["box__add"]
    assert add.description == "Add two integers."
    assert add.parameters["type"] == "object" and add.parameters["required"] == ["a", "b"]
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert contents(result) == {
        "box__add": (True, contents(result)["box__add"][1]),  # the invalid call came last
        "box__point": (False, '{"x": 1, "y": 2}'),
        "box__refuse": (True, "Error executing tool refuse: refused: not today"),
        "box__echo": (False, "héllo"),
    }
    first_add, bad_add = [c for c in result.tool_calls if c.name == "box__add"]
    assert (first_add.is_error, first_add.content) == (False, "5")
    assert bad_add.is_error and "a: 'two' is not of type 'integer'" in bad_add.content
    assert "'b' is a required property" in bad_add.content
    assert error_types(result)["box__refuse"] == "McpError"
    # the model read the errors as error results
    tool_message = model.requests[1].messages[-1]
    assert [r.is_error for r in tool_message.tool_results] == [False, False, True, True, False]


def test_annotations_set_flags_and_a_destructive_tool_waits_for_approval() -> None:
    model = Model.scripted([call("box__wipe", target="logs"), "wiped."])
    agent = Agent(model, capabilities=[box()])
    try:
        paused = agent.session().run_sync("clean up")
        assert (agent.tools["box__wipe"].destructive, agent.tools["box__wipe"].read_only) == (True, False)
        assert (agent.tools["box__peek"].read_only, agent.tools["box__peek"].destructive) == (True, False)
        assert not agent.tools["box__add"].read_only and not agent.tools["box__add"].destructive
        assert paused.status == "needs_approval"
        decision = next(e for e in paused.events if e.type == "governance.decision")
        assert (decision.data["action"], decision.data["check"]) == ("ask", "destructive")
        done = paused.approve().resume_sync()
    finally:
        agent.close()
    assert done.status == "completed"
    assert done.tool_calls[-1].content == "wiped logs"


def test_read_only_governance_uses_read_only_hint_and_requires_approval_option() -> None:
    model = Model.scripted([[call("ro__peek"), call("ro__add", a=1, b=1)], "ok"])
    agent = Agent(model, capabilities=[Capability.mcp("ro", command=STDIO)],
                  runtime=Runtime.sdk(governance=GovernancePolicy(read_only=True)))
    try:
        result = agent.run_sync("look")
    finally:
        agent.close()
    assert contents(result)["ro__peek"] == (False, "all quiet")
    assert contents(result)["ro__add"][0] and "Read-only mode" in contents(result)["ro__add"][1]

    model = Model.scripted([call("ok__peek"), "ok"])
    agent = Agent(model, capabilities=[Capability.mcp("ok", command=STDIO, requires_approval=True)])
    try:
        assert agent.session().run_sync("look").status == "needs_approval"
    finally:
        agent.close()


# -- faults: crash, hang; the session stays usable ---------------------------------------------------


def test_crash_is_reported_and_the_server_is_started_again() -> None:
    model = Model.scripted([call("box__pid"), "ok", [call("box__crash"), call("box__pid")], "hm",
                            call("box__pid"), "ok"])
    # One call after the other: the pid call is to find the server started again after the crash.
    agent = Agent(model, capabilities=[box()], runtime=Runtime.sdk(parallel_tools=False))
    session = agent.session()
    try:
        first = session.run_sync("pid?")
        crashed = session.run_sync("crash")
        after = session.run_sync("pid again?")
    finally:
        agent.close()
    first_pid = int(first.tool_calls[0].content)
    assert crashed.status == "completed"
    crash, restarted = crashed.tool_calls
    assert crash.is_error and error_types(crashed)["box__crash"] == "McpServerCrashed"
    assert "stopped before answering the call to 'box__crash'" in crash.content
    assert "process exited or crashed" in crash.content
    assert "toolbox: crashing on purpose" in crash.content  # the end of the server's stderr
    assert "start the server again" in crash.content
    # the very next call (same run) started a new server process
    assert not restarted.is_error and int(restarted.content) != first_pid
    assert process_gone(first_pid)
    assert after.status == "completed" and after.tool_calls[0].content == restarted.content


def test_hang_is_reported_after_call_timeout_and_the_connection_is_kept() -> None:
    model = Model.scripted([[call("box__slow", seconds=30), call("box__add", a=1, b=1)], "ok",
                            call("box__slow", seconds=0.1), "ok"])
    agent = Agent(model, capabilities=[box(call_timeout=1)])
    try:
        started = time.monotonic()
        result = agent.run_sync("wait")
        assert time.monotonic() - started < 10
        again = agent.run_sync("again")
    finally:
        agent.close()
    slow, add = result.tool_calls
    assert slow.is_error and error_types(result)["box__slow"] == "McpTimeout"
    assert "did not answer the call to 'box__slow' within 1 s" in slow.content
    assert (add.is_error, add.content) == (False, "2")
    assert again.tool_calls[0].content == "slept 0.1"


@pytest.mark.anyio
async def test_cancelling_a_run_during_a_call_leaves_the_connection_usable() -> None:
    model = Model.scripted([call("box__slow", seconds=30), call("box__add", a=2, b=2), "ok"])
    agent = Agent(model, capabilities=[box()])
    try:
        session = agent.session()
        async with session.stream("slow") as stream:  # leaving the block cancels the run
            async for event in stream:
                if event.type == "tool.call":
                    break
            await asyncio.sleep(0.5)  # the call is now waiting on the server
        assert stream.result is not None and stream.result.status == "cancelled"
        after = await session.run("add")
    finally:
        await agent.aclose()
    assert after.status == "completed" and after.tool_calls[0].content == "4"


# -- lifetime: close, reuse, loops -------------------------------------------------------------------


def test_close_ends_the_server_process_and_a_later_run_starts_it_again() -> None:
    model = Model.scripted([call("box__pid"), "ok", call("box__pid"), "ok"])
    agent = Agent(model, capabilities=[box()])
    pid = int(agent.run_sync("pid?").tool_calls[0].content)
    assert not process_gone(pid, within=0.2)
    agent.close()
    assert process_gone(pid)
    assert agent.tools == {}
    pid2 = int(agent.run_sync("pid?").tool_calls[0].content)
    agent.close()
    assert pid2 != pid and process_gone(pid2)


def test_one_connection_serves_asyncio_run_and_run_sync() -> None:
    model = Model.scripted([call("box__pid"), "a", call("box__pid"), "b", call("box__pid"), "c"])
    agent = Agent(model, capabilities=[box()])

    async def in_another_loop() -> str:
        return (await agent.run("pid?")).tool_calls[0].content

    try:
        from_asyncio = asyncio.run(in_another_loop())
        from_sync = agent.run_sync("pid?").tool_calls[0].content
        from_asyncio_again = asyncio.run(in_another_loop())
    finally:
        agent.close()
    assert from_asyncio == from_sync == from_asyncio_again


@pytest.mark.anyio
async def test_async_with_agent_closes_the_server() -> None:
    model = Model.scripted([call("box__pid"), "ok"])
    async with Agent(model, capabilities=[box()]) as agent:
        pid = int((await agent.run("pid?")).tool_calls[0].content)
    assert process_gone(pid)


# -- streamable HTTP -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(http_process) -> tuple[str, subprocess.Popen]:
    port, process = http_process([sys.executable, TOOLBOX, "--http", "{port}"])
    return f"http://127.0.0.1:{port}/mcp", process


def test_streamable_http_calls_errors_and_a_server_that_dies(http_server) -> None:
    url, process = http_server
    model = Model.scripted([
        [call("web__add", a=20, b=22), call("web__refuse", reason="nope"), call("web__pid"),
         call("web__header", name="X-Test")], "ok",
        [call("web__crash"), call("web__add", a=1, b=1)], "gone",
    ])
    agent = Agent(model, capabilities=[Capability.mcp("web", url=url, headers={"X-Test": "loom"})],
                  runtime=Runtime.sdk(parallel_tools=False))  # the add call comes after the crash
    try:
        result = agent.run_sync("add")
        crashed = agent.run_sync("crash")
    finally:
        agent.close()
    assert [t.name for t in model.requests[0].tools][:2] == ["web__add", "web__echo"]
    assert contents(result)["web__add"] == (False, "42")
    assert contents(result)["web__refuse"] == (True, "Error executing tool refuse: refused: nope")
    assert int(contents(result)["web__pid"][1]) == process.pid
    assert contents(result)["web__header"] == (False, "loom")  # headers= reach the server
    crash, add = crashed.tool_calls
    assert crashed.status == "completed"
    assert crash.is_error and "stopped before answering the call to 'web__crash'" in crash.content
    assert "reconnect" in crash.content
    # the server process is gone for good: the next call says it cannot connect
    assert add.is_error and "could not connect to " + url in add.content
    assert error_types(crashed)["web__add"] == "McpConnectionError"


# -- a server published on PyPI ----------------------------------------------------------------------


def test_mcp_server_time_from_pypi() -> None:
    model = Model.scripted([call("time__get_current_time", timezone="Europe/Paris"), "ok"])
    cap = Capability.mcp("time", command=[sys.executable, "-m", "mcp_server_time",
                                          "--local-timezone", "UTC"])
    agent = Agent(model, capabilities=[cap])
    try:
        result = agent.run_sync("What time is it in Paris?")
    finally:
        agent.close()
    assert result.status == "completed", result.error
    names = [t.name for t in model.requests[0].tools]
    assert "time__get_current_time" in names and "time__convert_time" in names
    assert len(names) == 2  # no resources to read: no resource tools
    assert agent.tools == {}  # closed
    schema = next(t for t in model.requests[0].tools if t.name == "time__get_current_time").parameters
    assert schema["properties"]["timezone"]["type"] == "string"
    (answer,) = result.tool_calls
    assert not answer.is_error
    data = json.loads(answer.content)
    assert data["timezone"] == "Europe/Paris" and "datetime" in data


# -- failures to start, and configuration errors -----------------------------------------------------


def test_servers_that_cannot_start_fail_the_run_clearly_and_nothing_is_faked() -> None:
    missing = Agent(Model.scripted(["a", "b"]),
                    capabilities=[Capability.mcp("gone", command=["no-such-mcp-server-xyz"])])
    first = missing.run_sync("hi")
    assert first.status == "failed"
    assert "Could not start the MCP server 'gone'" in first.error
    assert "the program 'no-such-mcp-server-xyz' was not found" in first.error
    assert missing.run_sync("hi").status == "failed"  # tried again, fails again the same way

    dies = Agent(Model.scripted(["a"]), capabilities=[Capability.mcp("bad", command=[
        sys.executable, "-c", "import sys; print('config file missing', file=sys.stderr); sys.exit(2)"])])
    result = dies.run_sync("hi")
    assert result.status == "failed"
    assert "closed the connection before the MCP handshake finished" in result.error
    assert "config file missing" in result.error

    silent = Agent(Model.scripted(["a"]), capabilities=[Capability.mcp("mute", command=[
        sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)])
    result = silent.run_sync("hi")
    assert result.status == "failed" and "did not finish connecting within 0.5 s" in result.error

    nowhere = Agent(Model.scripted(["a"]),
                    capabilities=[Capability.mcp("far", url=f"http://127.0.0.1:{_free_port()}/mcp")])
    result = nowhere.run_sync("hi")
    assert result.status == "failed" and "could not connect to http://127.0.0.1:" in result.error


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one of command="),
    ({"command": ["x"], "url": "http://h/mcp"}, "exactly one of command="),
    ({"command": "uvx mcp-server-time"}, "takes a list"),
    ({"command": []}, "takes a list"),
    ({"url": "ftp://host/mcp"}, "takes an http"),
    ({"command": ["x"], "headers": {"A": "b"}}, "headers=...) is for url= servers"),
    ({"url": "http://h/mcp", "env": {"A": "b"}}, "are for command= servers"),
    ({"command": ["x"], "timeout": 0}, "timeout=...) takes a number of seconds"),
    ({"command": ["x"], "retries": 3}, "unknown option"),
])
def test_configuration_errors(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Capability.mcp("srv", **kwargs)


def test_bad_name_and_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="short label"):
        Capability.mcp("my server", command=["x"])
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ConfigError, match=r'pip install "loom-nb\[mcp\]"'):
        Capability.mcp("srv", command=["x"])


def test_import_loom_nb_does_not_import_mcp() -> None:
    code = ("import sys, loom_nb; from loom_nb import Capability; "
            "assert 'mcp' not in sys.modules and 'mcp_types' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_closing_the_agent_closes_the_server_and_closing_a_session_does_not() -> None:
    # Issue 15: the server is the agent's; a session closing must not close it under the others.
    model = Model.scripted([call("box__pid"), "ok"])
    agent = Agent(model, capabilities=[box()])
    session = agent.session()
    pid = int(session.run_sync("pid?").tool_calls[0].content)
    session.close()
    assert not process_gone(pid, within=0.2)
    agent.close()
    assert process_gone(pid)
