"""What an MCP server did during a tool call, as one line under the call in the run card: the
latest progress of a call still running, sampling and elicitation requests, warnings it logged."""

from __future__ import annotations

import html
from collections.abc import Sequence

from ..events import (McpElicitationData, McpLogData, McpProgressData, McpSamplingData, RunEvent,
                      payload)
from .common import MUTED, WARN, short

__all__ = ["MCP_NOTES", "mcp_note"]

MCP_NOTES = frozenset({"mcp.progress", "mcp.sampling", "mcp.elicitation", "mcp.log"})


def mcp_note(events: Sequence[RunEvent], index: int) -> str:
    """The line for ``events[index]`` (an MCP event), or '' when it is not worth a line."""
    event = events[index]
    if event.type == "mcp.progress":
        # Only the latest progress of a call still running: a finished call shows its result.
        if any(e.type in ("mcp.progress", "tool.result") for e in events[index + 1:]):
            return ""
        p = payload(event, McpProgressData)
        done = f"{p['progress']:g}" + (f" of {p['total']:g}" if p["total"] else "")
        return _line(f"⏳ {p['tool']}: {done}" + (f" ({p['message']})" if p["message"] else ""))
    if event.type == "mcp.sampling":
        s = payload(event, McpSamplingData)
        verdict = "answered" if s["action"] == "allow" else f"{s['action']}: {s['reason']}"
        return _line(f"↳ {s['server']} asked the model (sampling): {short(verdict, 160)}")
    if event.type == "mcp.elicitation":
        e = payload(event, McpElicitationData)
        return _line(f"↳ {e['server']} asked for input: {short(e['message'], 80)} → "
                     f"{e['action']} ({e['answered_by']})")
    if event.type == "mcp.log":
        log = payload(event, McpLogData)
        return _line(f"⚠ {log['server']} logged {log['level']}: {short(log['message'], 160)}",
                     WARN)
    return ""


def _line(text: str, color: str = MUTED) -> str:
    return (f"<div style='color:{color};font-size:11px;margin-left:12px;overflow-wrap:anywhere'>"
            f"{html.escape(text)}</div>")
