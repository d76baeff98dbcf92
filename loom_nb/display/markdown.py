"""Model answers as safe HTML: Markdown rendered by markdown-it-py, code fences highlighted.

Real models answer in Markdown, so the run card and the panel render it instead of showing
``##`` and ``**`` literally. Raw HTML in an answer is escaped (markdown-it's ``html`` option off)
and link targets such as ``javascript:`` are refused by markdown-it's own link check, so an answer
cannot inject markup into the notebook. Styles are inline and use JupyterLab's ``--jp-*``
variables with light fallbacks, so the answer reads in Lab (light or dark), in an ipywidgets HTML
widget (which has none of Lab's Markdown styles) and in static HTML.

markdown-it-py comes with the ``notebook`` extra. The kernel renders run cards too, and a repr
must not raise: without markdown-it-py the answer is shown as escaped plain text, as before.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .common import CODE_BG, MONO, TEXT, theme

__all__ = ["markdown_available", "markdown_html"]

_BLOCK = {
    "heading_open": "margin:8px 0 4px;line-height:1.3;font-weight:600",
    "paragraph_open": "margin:4px 0",
    "bullet_list_open": "margin:4px 0;padding-left:22px",
    "ordered_list_open": "margin:4px 0;padding-left:22px",
    "blockquote_open": (f"margin:4px 0;padding:0 10px;border-left:3px solid "
                        f"{theme('border-color1', '#d0d7de')};"
                        f"color:{theme('ui-font-color1', '#57606a')}"),
    "table_open": "border-collapse:collapse;margin:6px 0;font-size:12px;display:block;"
                  "overflow-x:auto;max-width:100%",
    "th_open": (f"border:1px solid {theme('border-color2', '#d0d7de')};padding:3px 8px;"
                f"font-weight:600;background:{CODE_BG}"),
    "td_open": f"border:1px solid {theme('border-color2', '#d0d7de')};padding:3px 8px",
    "code_inline": f"font-family:{MONO};font-size:12px;background:{CODE_BG};padding:0 3px;"
                   "border-radius:3px;overflow-wrap:anywhere",
    "hr": f"border:none;border-top:1px solid {theme('border-color2', '#d0d7de')};margin:8px 0",
}
_HEADING_SIZES = {"h1": "1.35em", "h2": "1.2em", "h3": "1.08em"}
_PRE = (f"white-space:pre-wrap;overflow-wrap:anywhere;margin:6px 0;font-family:{MONO};"
        f"font-size:12px;background:{CODE_BG};color:{TEXT};padding:6px 8px;border-radius:4px;"
        "max-height:480px;overflow:auto")
# Pygments token kinds → CodeMirror's colour variables in Lab's themes (light defaults).
_TOKEN_COLORS = (
    ("Comment", "comment", "#408080"), ("Keyword", "keyword", "#008000"),
    ("Name.Builtin", "builtin", "#008000"), ("Name.Function", "def", "#0000ff"),
    ("Name.Class", "def", "#0000ff"), ("Literal.String", "string", "#ba2121"),
    ("Literal.Number", "number", "#080"), ("Operator", "operator", "#aa22ff"),
)


def markdown_available() -> bool:
    return _parser() is not None


def markdown_html(text: str) -> str:
    """``text`` (Markdown) as HTML; escaped plain text when markdown-it-py is not installed."""
    parser = _parser()
    if parser is None:
        return f"<div style='white-space:pre-wrap;overflow-wrap:anywhere'>{html.escape(text)}</div>"
    tokens = parser.parse(text)
    for token in tokens:
        style = _BLOCK.get(token.type)
        if token.type == "heading_open":
            style = f"{style};font-size:{_HEADING_SIZES.get(token.tag, '1em')}"
        if style:
            token.attrSet("style", style)
    body = parser.renderer.render(tokens, parser.options, {})
    return f"<div class='loom-md' style='overflow-wrap:anywhere'>{body}</div>"


@lru_cache(maxsize=1)
def _parser() -> Any:
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # the notebook extra is not installed: plain text (see the docstring)
        return None
    parser = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table",
                                                                             "strikethrough"])
    parser.add_render_rule("fence", _fence)
    parser.add_render_rule("code_block", _fence)
    return parser


def _fence(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    return (f"<pre style=\"{_PRE}\"><code>{highlight(token.content, language)}</code></pre>")


def highlight(code: str, language: str) -> str:
    """``code`` as escaped HTML, coloured by Pygments when it knows ``language``."""
    if not language:
        return html.escape(code)
    try:
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:
        return html.escape(code)
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        return html.escape(code)
    out = []
    for kind, value in lexer.get_tokens(code):
        color = _color(str(kind))
        escaped = html.escape(value)
        out.append(f"<span style='color:{color}'>{escaped}</span>" if color and value.strip()
                   else escaped)
    return "".join(out).removesuffix("\n")


def _color(kind: str) -> str:
    name = kind.removeprefix("Token.")
    for prefix, variable, fallback in _TOKEN_COLORS:
        if name == prefix or name.startswith(prefix + "."):
            return theme(f"mirror-editor-{variable}-color", fallback)
    return ""
