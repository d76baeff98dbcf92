"""RunResult renders as static HTML and as deterministic plain text."""

from __future__ import annotations

from loom_nb import Agent, Model, tool


@tool
def fetch(name: str) -> str:
    """Fetch a document."""
    return "<script>alert(1)</script>" + "x" * 400


def _result():
    model = Model.scripted([{"tool": "fetch", "args": {"name": "a&b"}}, "Done <b>now</b>."])
    return Agent(model, tools=[fetch]).run_sync("Get a&b")


def test_plain_text_is_deterministic_and_id_free() -> None:
    first, second = _result(), _result()
    assert first.run_id != second.run_id
    assert first.to_text() == second.to_text()
    assert first.run_id not in first.to_text()
    lines = first.to_text().splitlines()
    assert lines[0].startswith("Run completed · 2 turns · 1 tool call · ")
    assert lines[0].endswith(" · scripted:scripted")
    assert lines[1] == '→ fetch(name="a&b")'
    assert lines[2].startswith("  ← <script>") and lines[2].endswith("(425 characters)")
    assert lines[3] == "Done <b>now</b>."


def test_html_escapes_and_collapses_long_results() -> None:
    html = _result()._repr_mimebundle_()[0]["text/html"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<details" in html and "425 characters" in html
    assert "Done &lt;b&gt;now&lt;/b&gt;." in html


def test_failed_run_shows_its_error() -> None:
    result = Agent(Model.scripted([])).run_sync("x")
    assert result.to_text().splitlines()[-1].startswith("failed: The scripted model has no turn left")
    assert "no turn left" in result._repr_mimebundle_()[0]["text/html"]


def test_mimebundle_carries_provenance_metadata() -> None:
    result = _result()
    data, metadata = result._repr_mimebundle_()
    assert set(data) == {"text/plain", "text/html"}
    assert metadata["loom"]["run_id"] == result.run_id
    assert metadata["loom"]["model"] == "scripted:scripted"
    assert metadata["loom"]["usage"]["input_tokens"] == result.usage.input_tokens
