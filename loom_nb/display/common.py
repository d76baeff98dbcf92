"""The pieces every rendering shares: card styles, short text, tool calls, bars, tables, badges.

Strings in, strings out: nothing here imports IPython or ipywidgets, so the kernel's objects can
render themselves, and the notebook layer draws the same strings into its widgets.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ACCENT", "BORDER", "CARD", "CODE_BG", "ERROR", "FAINT", "GOOD", "MONO", "MUTED",
           "RULE", "TEXT", "TRACK", "WARN", "PARTITION_COLORS", "PRE", "badge", "bar_html", "call_text",
           "note_html", "plural", "printable", "share", "short", "signal_label", "table_html", "text_table",
           "theme", "view_card"]

TEXT_PREVIEW = 300

# C0 controls but tab and newline, DEL, and C1 controls: a model's "\x1b[2J" in a text form would
# clear the terminal it is printed to (IPython in a terminal, a log, nbval's diff).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\x1b``, ``\\r``), for text forms.

    HTML forms need no such step: html.escape and the browser never interpret them.
    """
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def theme(name: str, fallback: str) -> str:
    """A JupyterLab theme variable (``--jp-NAME``) with the light colour for static HTML.

    Inline styles with ``var()`` follow Lab's light and dark themes live, and fall back to the
    light palette where no Lab stylesheet is loaded (nbconvert HTML, nbviewer, VS Code).
    """
    return f"var(--jp-{name}, {fallback})"


STATUS_COLORS = {"completed": "#1a7f37", "failed": "#cf222e", "cancelled": "#6e7781",
                 "limit": "#9a6700", "needs_approval": "#8250df", "running": "#0969da",
                 "interrupted": "#bc4c00"}
BORDER = theme("border-color1", "#d0d7de")  #: a card's frame
RULE = theme("border-color2", "#eaeef2")  #: a separator inside a card
TRACK = theme("layout-color2", "#eaeef2")  #: the empty part of a bar
CODE_BG = theme("cell-editor-background", "#f6f8fa")
TEXT = theme("content-font-color1", "#1f2328")
FAINT = theme("ui-font-color3", "#8c959f")  #: ids under a card
ERROR = theme("error-color1", "#cf222e")
WARN = theme("warn-color1", "#9a6700")
GOOD = theme("success-color1", "#1a7f37")
ACCENT = "#8250df"  # approvals: a saturated violet reads on light and dark backgrounds
MONO = "ui-monospace, SFMono-Regular, Menlo, monospace"
CARD = ("font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; font-size: 13px; "
        f"border: 1px solid {BORDER}; border-radius: 6px; padding: 8px 12px; margin: 4px 0; "
        "max-width: 900px; overflow-wrap: anywhere; box-sizing: border-box")
# Long tool results and partition contents: wrapped, and capped with their own scroll bar.
PRE = (f"white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; font-family: {MONO}; "
       f"font-size: 12px; background: {CODE_BG}; color: {TEXT}; padding: 6px; "
       "border-radius: 4px; max-height: 320px; overflow: auto")
PARTITION_COLORS = {"system": "#0969da", "skill": "#8250df", "memory": "#bf8700",
                    "working": "#1a7f37", "history": "#6e7781"}
MUTED = f"color:{theme('ui-font-color2', '#57606a')}"
_TH = f"text-align:left;padding:2px 8px;border-bottom:1px solid {BORDER};font-weight:600"
_TD = "padding:2px 8px;vertical-align:top;line-height:1.35"


def short(text: str, limit: int = TEXT_PREVIEW) -> str:
    text = text.strip()
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def call_text(name: str, args: dict[str, Any]) -> str:
    """A tool call as one line: ``name(key=json, ...)``."""
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items())
    return f"{name}({inner})"


def note_html(note: str, tag: str = "span") -> str:
    """A status line under a widget (empty without a note)."""
    return f"<{tag} style='{MUTED}'>{html.escape(note)}</{tag}>" if note else ""


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def share(part: float, whole: float) -> str:
    """A share as a short percentage that never shows a non-zero part as 0%."""
    if whole <= 0 or part <= 0:
        return "0%"
    value = part / whole
    if value < 0.001:
        return "<0.1%"
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def bar_html(segments: list[tuple[float, str, str]], width: int = 220, height: int = 10) -> str:
    """A horizontal bar; each segment is (fraction of the whole bar, color, tooltip).

    ``width`` is the most it takes: in a narrow place (the panel's tabs) it shrinks with its
    segments (they are percentages) instead of pushing onto a line of its own.
    """
    inner = []
    for fraction, color, title in segments:
        if fraction <= 0:
            continue
        # At least 2px, so that a partition that is there is seen to be there.
        inner.append(f"<span title='{html.escape(title)}' style='display:inline-block;flex:none;"
                     f"width:{min(fraction, 1.0) * 100:.2f}%;min-width:2px;height:{height}px;"
                     f"background:{color}'></span>")
    return (f"<span style='display:inline-flex;width:{width}px;max-width:100%;min-width:40px;"
            f"height:{height}px;background:{TRACK};border-radius:3px;overflow:hidden;"
            f"vertical-align:middle;flex:0 1 auto'>{''.join(inner)}</span>")


def table_html(headers: list[str], rows: list[list[str]], align_right: Iterable[int] = ()) -> str:
    """A small table; cells are HTML already (escape them before)."""
    right = set(align_right)
    # Headers and numbers never wrap, and text wraps between words only (the card's
    # overflow-wrap:anywhere would squeeze a column to one letter in a narrow panel tab); a table
    # wider than its place scrolls sideways inside its own box instead of widening the view.
    numeric = ";text-align:right;white-space:nowrap"
    head = "".join(f"<th style='{_TH};white-space:nowrap{';text-align:right' if i in right else ''}'"
                   f">{h}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td style='{_TD}{numeric if i in right else ''}'>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return (f"<div style='overflow-x:auto;max-width:100%'>"
            f"<table style='border-collapse:collapse;margin:4px 0;font-size:12px;"
            f"overflow-wrap:normal'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"</div>")


def view_card(kind: str, title: str, body: str, framed: bool = True) -> str:
    """The frame of a view's static HTML; ``framed=False`` where a widget draws the frame
    around it and its controls (so they sit inside the card)."""
    # line-height: ipywidgets' HTML widget sets its own (a button's height), which double-spaces.
    style = CARD if framed else CARD + "; border: none; padding: 0; margin: 0"
    return (f"<div class='loom-view loom-{kind}' style=\"{style};line-height:1.4\"><div style='font-weight:600;"
            f"margin-bottom:4px'>{html.escape(title)}</div>{body}</div>")


def text_table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Rows of cells as aligned plain-text lines (numbers right-aligned)."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if c[:1].isdigit() or c[:1] == "<" else c.ljust(w)
                 for c, w in zip(row, widths)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def signal_label(signal: Mapping[str, Any]) -> str:
    return (f"{signal.get('source', '?')}/{signal.get('type', '?')} [{signal.get('urgency', '?')}] "
            f"{json.dumps(signal.get('summary', ''), ensure_ascii=False)}")


_ACTION_COLORS = {"interrupt": "#cf222e", "queue": "#0969da", "observe": "#1a7f37",
                  "ignore": "#6e7781", "allow": "#1a7f37", "deny": "#cf222e", "ask": "#8250df"}


def badge(text: str, color: str | None = None) -> str:
    color = color or _ACTION_COLORS.get(text, "#6e7781")
    return (f"<span style='background:{color};color:white;border-radius:8px;padding:0 6px;"
            f"font-size:11px;font-weight:600'>{html.escape(text)}</span>")



def usd(cost: float) -> str:
    """A cost in US dollars as a person reads it: cents for dollars, three figures below a cent."""
    if cost >= 1:
        return f"${cost:,.2f}"
    if cost >= 0.01:
        return f"${cost:.4f}"
    return f"${cost:.3g}" if cost else "$0"
