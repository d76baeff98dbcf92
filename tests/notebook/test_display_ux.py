"""The run card and the panel as a daily JupyterLab user reads them (issue 17): Markdown answers,
the reason a run failed, long runs folded, theme-aware colours."""

from __future__ import annotations

import re
from typing import Any

import pytest

from loom_nb import Agent, Model, ModelRequest
from loom_nb.display import common
from loom_nb.display.markdown import markdown_html
from loom_nb.display.run import events_html, panel_html, panel_text, status_sentence
from loom_nb.notebook import SessionPanel, TraceView

ANSWER = """## Weather

It is **21 C** in `Oslo`.

| city | temp |
|------|------|
| Oslo | 21   |

```python
def f(x):
    return x  # same
```

<script>alert(1)</script> [click](javascript:alert(1))
"""


def test_an_answer_is_rendered_as_markdown_and_its_plain_text_stays_as_written() -> None:
    result = Agent(Model.scripted([ANSWER])).run_sync("weather?")
    data, _ = result._repr_mimebundle_()
    markup = data["text/html"]
    assert re.search(r"<h2[^>]*>Weather</h2>", markup)
    assert "<strong>21 C</strong>" in markup and re.search(r"<code[^>]*>Oslo</code>", markup)
    assert re.search(r"<td[^>]*>Oslo</td>", markup)
    # A fence is highlighted by Pygments, with Lab's editor colours (light fallbacks).
    assert "var(--jp-mirror-editor-keyword-color, #008000)'>def</span>" in markup
    # Raw HTML is escaped and a javascript: link is not made a link.
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert "href" not in markup
    assert ANSWER.strip() in data["text/plain"]  # nbval compares this form: unchanged


def test_streamed_text_is_markdown_too_with_its_cursor_inside() -> None:
    markup = events_html([], "Still **going**")
    assert "<strong>going</strong> ▌</p>" in markup


def test_markdown_falls_back_to_escaped_text_without_markdown_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from loom_nb.display import markdown

    real = builtins.__import__

    def no_markdown_it(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("markdown_it"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    markdown._parser.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_markdown_it)
    try:
        assert markdown_html("**a** <b>") == (
            "<div style='white-space:pre-wrap;overflow-wrap:anywhere'>**a** &lt;b&gt;</div>")
    finally:
        monkeypatch.undo()
        markdown._parser.cache_clear()
    assert "<strong>a</strong>" in markdown_html("**a**")


def failing(request: ModelRequest) -> str:
    raise RuntimeError("the provider is down")


def test_a_failed_run_says_why_in_the_panel_and_the_trace() -> None:
    session = Agent(Model.function(failing)).session()
    result = session.run_sync("hello")
    assert result.status == "failed"
    panel = SessionPanel(session, live=False)
    assert "the provider is down" in panel._transcript.value
    assert "  failed: RuntimeError: the provider is down" in panel.to_text().splitlines()
    assert status_sentence("failed", result.error) == (
        "The run failed: RuntimeError: the provider is down.")
    assert status_sentence("completed") == "The run completed."
    trace = TraceView(session, live=False).to_text()
    assert "run finished: failed, 0 turns, 0 in, 0 out: RuntimeError: the provider is down" in trace


def test_a_long_run_folds_its_earlier_tool_calls_with_a_count() -> None:
    def lookup(n: int) -> str:
        """Look n up."""
        return f"value {n}"

    turns: list[Any] = [{"tool": "lookup", "args": {"n": n}} for n in range(25)] + ["done"]
    agent = Agent(Model.scripted(turns), tools=[lookup])
    result = agent.run_sync("look up 25 values")
    assert result.status == "completed", result.error
    markup = events_html(result.events)
    assert markup.count("<details") == 1
    assert "22 earlier tool calls</summary>" in markup
    head, folded_and_after = markup.split("22 earlier tool calls</summary>")
    folded, after = folded_and_after.split("</details>", 1)
    assert "lookup(n=0)" in folded and "lookup(n=21)" in folded
    assert "lookup(n=22)" in after and "lookup(n=24)" in after and "done" in after
    assert panel_text([result.events]).count("→ lookup") == 25  # the text form keeps them all


def test_colours_follow_lab_themes_with_light_fallbacks() -> None:
    # Boxes that hold text take Lab's editor background and text colour; bar tracks and
    # separators take layout and border colours: nothing stays light in the dark theme.
    assert "background: var(--jp-cell-editor-background, #f6f8fa)" in common.PRE
    assert "color: var(--jp-content-font-color1" in common.PRE
    assert "max-height" in common.PRE and "overflow-wrap: anywhere" in common.PRE
    assert "background:var(--jp-layout-color2, #eaeef2)" in common.bar_html([(0.0, "red", "")])
    assert "var(--jp-border-color2" in panel_html([([], "")]) or "No runs yet" in panel_html([])
    result = Agent(Model.scripted(["hi"])).run_sync("x")
    markup = result._repr_mimebundle_()[0]["text/html"]
    bare = re.findall(r"(?<!, )#[0-9a-fA-F]{6}", markup)
    # Left without a variable: only the status badge (white text on a saturated colour).
    assert bare == [common.STATUS_COLORS["completed"]]


def test_teaching_notebooks_mark_checked_cells_with_tags_not_comments() -> None:
    from pathlib import Path

    import nbformat

    notebooks = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == 8
    for path in notebooks:
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert not [c for c in cells if "NBVAL_" in c.source], path.name
        assert any("nbval-check-output" in c.metadata.get("tags", []) for c in cells), path.name
    docs = [Path(__file__).resolve().parents[2] / "README.md",
            *(Path(__file__).resolve().parents[2] / "docs").glob("*.md")]
    assert not [p.name for p in docs if "NBVAL_CHECK_OUTPUT" in p.read_text()]


def test_control_characters_in_model_output_are_escaped_in_text_forms_only() -> None:
    raw = "red \x1b[31mALERT\x1b[0m\rgone\x07 ok\tend"

    session = Agent(Model.scripted([raw])).session()
    result = session.run_sync("colour?")
    text = result.to_text()
    assert "\\x1b[31mALERT\\x1b[0m\\rgone\\x07 ok\tend" in text
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)
    data, _ = result._repr_mimebundle_()
    assert data["text/plain"] == text and "\\x1b" not in data["text/html"]
    assert "\x1b[31mALERT" in data["text/html"]  # HTML escapes markup; the browser shows no ESC
    view, _ = TraceView(session, live=False)._repr_mimebundle_()
    assert "\\x1b[31m" in view["text/plain"] and "\x1b" not in view["text/plain"]
    panel = panel_text([list(result.events)])
    assert "\\x1b[31mALERT" in panel and "\x1b" not in panel


def test_the_trace_widget_holds_its_run_picker_and_rating_row_inside_one_card() -> None:
    session = Agent(Model.scripted(["one", "two"])).session()
    session.run_sync("first")
    session.run_sync("second")
    view = TraceView(session, live=False)
    box = view.widget
    assert box.layout.border and "1px solid" in box.layout.border
    assert [type(c).__name__ for c in box.children][:2] == ["Dropdown", "HTML"]
    assert "HBox" in [type(c).__name__ for c in box.children]  # the rating row
    # The timeline inside is drawn without a frame of its own; the static form keeps one.
    assert "border: none" in view._html.value
    assert "border: none" not in view.to_html()
