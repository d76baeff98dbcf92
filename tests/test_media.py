"""Image and Document parts: construction and its checks, JSON round trips, prompts as lists,
tools returning images, stores keeping each binary once, messages_df and the run card."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest

from loom_nb import (Agent, ConfigError, Document, Image, Message, Model, RuntimeTask,
                     SessionConfig, SQLiteStore, StoreError, tool)
from loom_nb.media import MAX_IMAGE_BYTES, MAX_TEXT_BYTES
from loom_nb.messages import TextPart, message_from_dict

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAfbLI3wAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n%%EOF\n"


# -- construction --------------------------------------------------------------------------------


def test_bytes_are_typed_by_their_signature() -> None:
    image = Image(PNG)
    assert (image.media_type, image.size, image.url) == ("image/png", len(PNG), None)
    assert image.sha256 == __import__("hashlib").sha256(PNG).hexdigest()
    assert Image(b"\xff\xd8\xff\xe0rest").media_type == "image/jpeg"
    assert Image(b"RIFF\x00\x00\x00\x00WEBPVP8 ").media_type == "image/webp"
    assert Document(PDF).is_pdf and Document(b"plain words").media_type == "text/plain"


def test_a_contradicting_or_unknown_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="the data is image/png .* media_type='image/jpeg'"):
        Image(PNG, media_type="image/jpeg")
    with pytest.raises(ConfigError, match="unknown data is not a type loom_nb sends as image"):
        Image(b"no signature here")
    with pytest.raises(ConfigError, match="'image/svg\\+xml' is not a type"):
        Image(b"<svg/>", media_type="image/svg+xml")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        Document(b"\xff\xfe\x00bad", media_type="text/plain")
    with pytest.raises(ConfigError, match="takes bytes, a path, an http\\(s\\) or data: URL, a PIL"):
        Image(12)


def test_sizes_are_bounded_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    with open(big, "wb") as handle:  # sparse: the test writes no gigabytes
        handle.write(PNG)
        handle.seek(4 * 1024 ** 3)
        handle.write(b"\0")
    with pytest.raises(ConfigError, match="over the 5.0 MB limit"):
        Image(big)
    with pytest.raises(ConfigError, match="over the 5.0 MB limit for image/png"):
        Image(PNG + bytes(MAX_IMAGE_BYTES))
    with pytest.raises(ConfigError, match="over the 2.0 MB limit for text/plain"):
        Document.from_text("x" * (MAX_TEXT_BYTES + 1))
    with pytest.raises(ConfigError, match="cannot read the file"):
        Image(tmp_path / "missing.png")
    with pytest.raises(ConfigError, match="not a regular file"):
        Image(tmp_path)


def test_paths_urls_and_data_uris(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(PNG)
    assert Image(path) == Image(str(path)) and Image(path).name == "chart.png"
    (tmp_path / "notes.md").write_text("# Notes", encoding="utf-8")
    notes = Document(tmp_path / "notes.md")
    assert (notes.media_type, notes.text, notes.name) == ("text/markdown", "# Notes", "notes.md")
    url = Image("https://example.com/a.jpg?size=2")
    assert (url.data, url.url, url.media_type) == (None, "https://example.com/a.jpg?size=2",
                                                   "image/jpeg")
    assert Document("https://example.com/paper.pdf").media_type == "application/pdf"
    with pytest.raises(ConfigError, match="only a PDF can be sent as a URL"):
        Document("https://example.com/notes.txt")
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert Image(uri) == Image(PNG) and Image(PNG).data_uri() == uri
    with pytest.raises(ConfigError, match="not valid base64"):
        Image("data:image/png;base64,@@@")


def test_pil_images_and_matplotlib_figures_become_png() -> None:
    pil = pytest.importorskip("PIL.Image")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    assert Image(pil.new("RGB", (4, 3), "red")).media_type == "image/png"
    assert Image(pil.new("CMYK", (2, 2))).data[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[index]
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    assert Image(figure).media_type == "image/png"
    with pytest.raises(ConfigError, match="Wrap it: loom_nb.Image"):
        Agent(Model.scripted(["x"])).run_sync(["Look", figure])


def test_json_round_trip_inline_and_by_reference() -> None:
    message = Message(role="user", parts=(TextPart(text="see"), Image(PNG),
                                          Document(PDF, name="a.pdf"), Image("https://x.org/y.gif")))
    inline = json.loads(json.dumps(message.to_dict()))
    assert message_from_dict(inline) == message
    blobs: dict[str, bytes] = {}
    referenced = json.loads(json.dumps(message.to_dict(blobs)))
    assert "data" not in json.dumps(referenced) and len(blobs) == 2
    assert message_from_dict(referenced, blobs).media[0].data == PNG
    with pytest.raises(StoreError, match="missing from the store's blobs"):
        message_from_dict(referenced, {})
    inline["parts"][1]["data"] = base64.b64encode(b"other").decode()
    with pytest.raises(StoreError, match="does not match its sha256"):
        message_from_dict(inline)


# -- runs ----------------------------------------------------------------------------------------


def test_a_list_prompt_sends_text_and_parts_in_order() -> None:
    seen = []

    def answer(request):  # type: ignore[no-untyped-def]
        seen.append(request.messages[-1])
        return "a red dot"

    result = Agent(Model.function(answer)).run_sync(["What is this?", Image(PNG), "Be short."])
    assert result.status == "completed" and result.output == "a red dot"
    (message,) = seen
    assert [type(p).__name__ for p in message.parts] == ["TextPart", "Image", "TextPart"]
    started = result.events[0].data
    assert started["prompt"] == "What is this?\n\nBe short."
    (ref,) = started["task"]["attachments"]
    assert ref["label"] == "image (image/png, 70 B)" and "data" not in ref
    assert RuntimeTask("Look", attachments=[Image(PNG)]).attachments == (Image(PNG),)
    with pytest.raises(ConfigError, match="prompt list is empty"):
        Agent(Model.scripted(["x"])).run_sync([])
    with pytest.raises(ConfigError, match="Prompt part 1 is int"):
        Agent(Model.scripted(["x"])).run_sync(["a", 3])


def test_an_image_alone_is_a_prompt() -> None:
    result = Agent(Model.scripted(["ok"])).run_sync(Image(PNG))
    assert result.status == "completed"
    assert result.events[0].data["prompt"] == "(see the attached image (image/png, 70 B))"


def test_a_tool_returns_an_image_with_text() -> None:
    @tool
    def snapshot() -> list[object]:
        return ["one red pixel", Image(PNG)]

    result = Agent(Model.scripted([{"tool": "snapshot", "args": {}}, "done"]),
                   tools=[snapshot]).run_sync("go")
    (call,) = result.tool_calls
    assert call.content == "one red pixel"
    (tool_message,) = [m for m in result.messages if m.role == "tool"]
    assert tool_message.tool_results[0].media == (Image(PNG),)
    (event,) = [e for e in result.events if e.type == "tool.result"]
    assert event.data["media"][0]["sha256"] == Image(PNG).sha256 and "data" not in event.data["media"][0]


def test_sqlite_keeps_each_binary_once_and_restores_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    agent = Agent(Model.scripted(["one", "two", "three"]))
    for session_id in ("a", "b"):
        session = agent.session(SessionConfig(id=session_id, store=str(path)))
        session.run_sync(["Look", Image(PNG)])
    agent.session(SessionConfig(id="a", store=str(path))).run_sync(["Again", Image(PNG)])
    store = SQLiteStore(path)
    assert store.blob_count() == 1
    import sqlite3
    with sqlite3.connect(path) as db:
        texts = [row[0] for row in db.execute("SELECT data FROM messages")]
    assert all(base64.b64encode(PNG).decode() not in text for text in texts)
    restored = Agent(Model.scripted(["x"])).session(SessionConfig(id="a", store=SQLiteStore(path)))
    images = [m for message in restored.history for m in message.media]
    assert [i.data for i in images] == [PNG, PNG]
    assert images[0].data is images[1].data  # one copy in memory too
    with sqlite3.connect(path) as db:  # a damaged blob is found when read, not sent on
        db.execute("UPDATE blobs SET data = ?", (b"not the image",))
    with pytest.raises(StoreError, match="does not match its sha256; the store file is damaged"):
        Agent(Model.scripted(["x"])).session(SessionConfig(id="b", store=SQLiteStore(path)))


def test_memory_store_shares_one_copy() -> None:
    from loom_nb import InMemoryStore

    store = InMemoryStore()
    agent = Agent(Model.scripted(["a", "b"]))
    session = agent.session(SessionConfig(store=store))
    session.run_sync(["x", Image(PNG)])
    session.run_sync(["y", Image(bytes(PNG))])  # equal bytes, another object
    first, second = [m for msg in session.history for m in msg.media]
    stored = [m for s in store.stored_messages(session.id) for m in s.message.media]
    assert stored[0].data is stored[1].data and store.blob_count() == 1
    assert first == second


def test_messages_df_shows_a_reference_and_the_size() -> None:
    pytest.importorskip("pandas")
    from loom_nb.export import messages_df

    result = Agent(Model.scripted(["ok"])).run_sync(["Read", Document(PDF, name="a.pdf")])
    frame = messages_df(result)
    row = frame[frame["kind"] == "document"].iloc[0]
    assert row["media_type"] == "application/pdf" and row["media_size"] == len(PDF)
    assert row["media_ref"] == f"sha256:{Document(PDF).sha256}"
    assert base64.b64encode(PDF).decode() not in frame.to_json()


def test_the_run_card_shows_bounded_escaped_thumbnails() -> None:
    result = Agent(Model.scripted(["ok"])).run_sync(
        ["Look", Image(PNG), Document.from_text("t", name="<b>x</b>.txt"), Image("https://e.com/a.png")])
    markup = result._repr_mimebundle_()[0]["text/html"]
    assert f"src='data:image/png;base64,{base64.b64encode(PNG).decode()}'" in markup
    assert "&lt;b&gt;x&lt;/b&gt;.txt" in markup and "<b>x</b>" not in markup
    assert "https://e.com/a.png" in markup and "src='https://e.com" not in markup  # never fetched
    text = result._repr_mimebundle_()[0]["text/plain"]
    assert "[image (image/png, 70 B)]" in text and "data:image" not in text


def test_a_large_image_thumbnail_is_downscaled_or_a_chip() -> None:
    pil = pytest.importorskip("PIL.Image")
    from loom_nb.display.media import THUMBNAIL_BYTES, media_html

    buffer = io.BytesIO()
    pil.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3)).save(buffer, format="PNG")
    image = Image(buffer.getvalue())
    assert image.size > THUMBNAIL_BYTES
    markup = media_html([{"sha256": image.sha256, "label": "big", "kind": "image"}],
                        {image.sha256: image})
    assert len(markup) < THUMBNAIL_BYTES * 1.4 + 1000


def test_counts_of_images_are_bounded() -> None:
    from loom_nb.media import MAX_RESULT_MEDIA
    from loom_nb.task import MAX_PROMPT_MEDIA

    @tool
    def flood() -> list[Image]:
        return [Image(PNG)] * (MAX_RESULT_MEDIA + 1)

    result = Agent(Model.scripted([{"tool": "flood", "args": {}}, "ok"]), tools=[flood]).run_sync("go")
    (call,) = result.tool_calls
    assert call.is_error and call.error_type == "ToolError"
    assert f"returned {MAX_RESULT_MEDIA + 1} images and documents; at most {MAX_RESULT_MEDIA}" in (
        call.content or "")
    with pytest.raises(ConfigError, match=f"at most {MAX_PROMPT_MEDIA} go in one prompt"):
        Agent(Model.scripted(["x"])).run_sync(["many", *[Image(PNG)] * (MAX_PROMPT_MEDIA + 1)])


def test_a_tool_returning_axes_sends_its_figure_once() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from loom_nb.media import split_media

    renders = []
    figure = Figure(figsize=(1, 1))
    axes = figure.add_subplot()
    original = figure.savefig
    figure.savefig = lambda *a, **k: (renders.append(1), original(*a, **k))[1]  # type: ignore[method-assign]
    rest, media = split_media(["caption", axes])
    assert rest == "caption" and len(media) == 1 and media[0].media_type == "image/png"
    assert renders == [1]


def test_a_dropped_session_releases_its_blobs_only() -> None:
    from loom_nb import InMemoryStore

    store = InMemoryStore()
    agent = Agent(Model.scripted(["a", "b"]))
    one = agent.session(SessionConfig(id="one", store=store))
    two = agent.session(SessionConfig(id="two", store=store))
    one.run_sync(["x", Image(PNG)])
    two.run_sync(["y", Image(PNG), Document(PDF)])
    assert store.blob_count() == 2
    with store._lock:
        store._drop("two")
    assert store.blob_count() == 1  # the PNG is still one's


def test_store_copy_keeps_images_as_blobs(tmp_path: Path) -> None:
    from loom_nb import InMemoryStore
    from loom_nb.runtime import ContextProtocol, Runtime
    from loom_nb.store import copy

    source = tmp_path / "a.db"
    # A small window: the second run compacts, so a checkpoint holds the image too.
    runtime = Runtime.sdk(context=ContextProtocol(window=2_000, output_reserve=200,
                                                  summarizer="extractive"))
    agent = Agent(Model.scripted(["word " * 400] * 3 + ["two"]), runtime=runtime)
    session = agent.session(SessionConfig(id="s", store=str(source)))
    session.run_sync(["Look", Image(PNG)])
    session.run_sync("more")
    session.run_sync("more")
    session.run_sync(["Again", Image(PNG)])  # compacts first: the checkpoint keeps this turn
    import sqlite3
    with sqlite3.connect(source) as db:
        (checkpoints,) = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()
    assert checkpoints >= 1
    for target in (SQLiteStore(tmp_path / "b.db"), InMemoryStore()):
        assert copy(str(source), target).copied == ["s"]
        held = [m for s in target.stored_messages("s") for m in s.message.media]
        assert [m.data for m in held] == [PNG, PNG]
        restored = Agent(Model.scripted(["x"])).session(SessionConfig(id="s", store=target))
        assert [m.data for msg in restored.history for m in msg.media] == [PNG]
        assert target.blob_count() == 1
    again = copy(str(source), str(tmp_path / "b.db"))
    assert again.unchanged == ["s"]


def test_concurrent_runs_on_one_sqlite_file_keep_each_image_once(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "busy.db"
    store = SQLiteStore(path)  # several runs at once: turns go through the store's writer thread

    async def both() -> None:
        agents = [Agent(Model.scripted(["ok"] * 3)) for _ in range(3)]
        sessions = [a.session(SessionConfig(id=f"s{i}", store=store)) for i, a in enumerate(agents)]
        await asyncio.gather(*[s.run(["Look", Image(PNG)]) for s in sessions])

    asyncio.run(both())
    assert store.blob_count() == 1
    for i in range(3):
        restored = Agent(Model.scripted(["x"])).session(SessionConfig(id=f"s{i}", store=SQLiteStore(path)))
        assert [m.data for msg in restored.history for m in msg.media] == [PNG]
