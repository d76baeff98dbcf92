"""The governance and approvals view as plain text and self-contained HTML: governance decisions
with the calls they were about, the calls and questions waiting for a person, and the tools the
session remembers. (Re-exported by :mod:`loom_nb.display.views`, which holds the other views.)
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any, TypedDict

from ..events import GovernanceDecisionData, RunEvent, payload, tool_calls
from .common import ACCENT, MUTED, badge, call_text, plural, table_html, view_card

__all__ = ["WAITING_HTML", "GovernanceRow", "approvals_html", "approvals_text", "governance_rows",
           "pending_call_html", "pending_line", "question_html", "remembered_text"]



class GovernanceRow(TypedDict):
    call: str  #: the call as one line (call_text)
    action: str
    reason: str
    check: str


def governance_rows(events: Iterable[RunEvent]) -> list[GovernanceRow]:
    """Governance decisions with the call they were about, in order."""
    events = list(events)
    args = {(t.run_id, t.call_id): t.args for t in tool_calls(events)}
    rows: list[GovernanceRow] = []
    for event in events:
        if event.type == "governance.decision":
            data = payload(event, GovernanceDecisionData)
            # A sub-agent's call has its tool.call in the sub-run; the decision carries its args.
            call_args = args.get((event.run_id, data.get("call_id", ""))) or data.get("args", {})
            rows.append({"call": call_text(data.get("name", "?"), call_args),
                         "action": data.get("action", "?"), "reason": data.get("reason", ""),
                         "check": data.get("check") or ""})
    return rows


def pending_call_html(name: str, args: dict[str, Any], reason: str) -> str:
    """A waiting call's label beside its Approve / Reject buttons."""
    return (f"<code>{html.escape(call_text(name, args))}</code> <span style='{MUTED}'>"
            f"{html.escape(reason)}</span>")


def question_html(question: str) -> str:
    """A question of the model beside its Answer / Decline buttons."""
    return f"<b>The model asks:</b> {html.escape(question)}"


def pending_line(p: Any) -> str:
    """A waiting call or question (a PendingApproval) as one line of text."""
    if p.kind == "question":
        return f"{p.call_id}: the model asks: {p.question}"
    return f"{call_text(p.name, p.args)}: {p.reason}"


def remembered_text(remembered: Iterable[str]) -> str:
    tools = sorted(remembered)
    return f"allowed for this session (remember=True): {', '.join(tools)}" if tools else ""


WAITING_HTML = f"<b style='color:{ACCENT}'>Waiting for a decision</b>"


def approvals_text(rows: list[GovernanceRow], pending: list[Any], note: str = "",
                   remembered: Iterable[str] = ()) -> str:
    lines = [f"Approvals · {len(rows)} decision{'s' if len(rows) != 1 else ''} · {len(pending)} waiting"]
    lines += [f"  {r['call']} → {r['action']}: {r['reason']}" + (f" [{r['check']}]" if r["check"] else "")
              for r in rows]
    if pending:
        lines.append("  waiting for a decision:")
        lines += [f"    {pending_line(p)}" for p in pending]
    if remembered_text(remembered):
        lines.append(f"  {remembered_text(remembered)}")
    if note:
        lines.append(f"  {note}")
    return "\n".join(lines)


def approvals_html(rows: list[GovernanceRow], pending: list[Any], note: str = "", *,
                   list_pending: bool = True, remembered: Iterable[str] = ()) -> str:
    """``list_pending=False``: count the waiting calls but leave listing them to the caller
    (the widget draws each with its buttons)."""
    body = (table_html(["tool call", "decision", "reason", "check"], [
        [f"<code>{html.escape(r['call'])}</code>", badge(r["action"]), html.escape(r["reason"]),
         html.escape(r["check"])] for r in rows]) if rows else
        f"<div style='{MUTED}'>No governance decision yet.</div>")
    if pending and list_pending:
        items = "".join(f"<li>{html.escape(pending_line(p))}</li>" if p.kind == "question" else
                        f"<li><code>{html.escape(call_text(p.name, p.args))}</code>: "
                        f"{html.escape(p.reason)}</li>" for p in pending)
        body += (f"<div style='margin-top:6px;color:{ACCENT}'><b>Waiting for a decision</b>"
                 f"<ul style='margin:2px 0'>{items}</ul></div>")
    for line in filter(None, (remembered_text(remembered), note)):
        body += f"<div style='{MUTED};margin-top:4px'>{html.escape(line)}</div>"
    return view_card("approvals", f"Governance · {plural(len(rows), 'decision')} · "
                                  f"{len(pending)} waiting", body)
