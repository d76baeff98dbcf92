"""``%loom mcp NAME prompts|resources`` through a real IPython shell, against a real MCP server
(the project's Python toolbox server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from loom_nb import Agent, Capability, Model

TOOLBOX = [sys.executable, str(Path(__file__).parents[1] / "mcp_servers" / "toolbox.py")]


@pytest.fixture
def agent(ip: InteractiveShell) -> Agent:
    agent = Agent(Model.scripted(["ok"]), capabilities=[Capability.mcp("box", command=TOOLBOX)])
    ip.user_ns["agent"] = agent
    yield agent
    agent.close()


def test_prompts_and_resources_listings(ip: InteractiveShell, agent: Agent) -> None:
    with capture_output() as captured:
        ip.run_line_magic("loom", "mcp -a agent -o listed box prompts")
    listing = ip.user_ns["listed"]
    assert listing.kind == "prompts" and listing.rows == [
        ["greet", "name*, style", "Greet someone by name."]]
    data = captured.outputs[0].data
    assert "MCP prompts of &#x27;box&#x27; (1)" in data["text/html"] and "name*, style" in data["text/html"]
    assert data["text/plain"].splitlines()[0] == "MCP prompts of 'box' (1)"
    with capture_output() as captured:
        ip.run_line_magic("loom", "mcp -a agent box resources")
    html = captured.outputs[0].data["text/html"]
    assert "box://notes/&lt;b&gt;today&lt;/b&gt;" in html  # escaped, never HTML
    assert "box://notes/{day} (template)" in html


def test_mistakes_are_usage_errors(ip: InteractiveShell, agent: Agent) -> None:
    for line, message in (("mcp -a agent box", "prompts|resources"),
                          ("mcp -a agent box tools", "prompts|resources"),
                          ("mcp -a agent nope prompts", "no MCP capability named 'nope'")):
        with pytest.raises(UsageError, match=message.replace("|", r"\|")):
            ip.run_line_magic("loom", line)
