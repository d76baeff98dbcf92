"""Images in sessions: what the content-addressed store saves, and what a card costs.

    .venv/bin/python benchmarks/media_store.py

Prints, for one image of about 1 MB sent in every run of a session of N runs (a notebook that
sends the same chart again and again): the SQLite file's size against the bytes sent, the time
per run, the time to restore the session; and the run card's HTML size for a 4 MB image
(thumbnail downscaled) against the image's base64.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

from loom_nb import Agent, Image, Model, SessionConfig, SQLiteStore


def _image(side: int) -> Image:
    from PIL import Image as PILImage

    noise = PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    return Image(buffer.getvalue())


def store_numbers(runs: int, image: Image) -> None:
    folder = Path(tempfile.mkdtemp())
    path = folder / "s.db"
    agent = Agent(Model.scripted(["ok"] * runs))
    session = agent.session(SessionConfig(id="bench", store=str(path)))
    started = time.perf_counter()
    for _ in range(runs):
        session.run_sync(["What changed?", image])
    per_run = (time.perf_counter() - started) / runs * 1000
    started = time.perf_counter()
    restored = Agent(Model.scripted(["x"])).session(SessionConfig(id="bench", store=SQLiteStore(path)))
    restore_ms = (time.perf_counter() - started) * 1000
    held = sum(len(m.media) for m in restored.history)
    sent = runs * image.size
    import sqlite3
    with sqlite3.connect(path) as db:  # fold the write-ahead log into the file before measuring
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("s.db"))
    print(f"{runs:>5} runs · image {image.size / 1e6:.2f} MB · sent {sent / 1e6:8.1f} MB · "
          f"file {size / 1e6:6.2f} MB ({sent / size:5.1f}x smaller) · {per_run:6.2f} ms/run · "
          f"restore {restore_ms:7.1f} ms ({held} images)")


def card_numbers(image: Image) -> None:
    result = Agent(Model.scripted(["ok"])).run_sync(["Look", image])
    times = []
    for _ in range(2):  # the second draw finds the thumbnail made
        started = time.perf_counter()
        html = result._repr_mimebundle_()[0]["text/html"]
        times.append((time.perf_counter() - started) * 1000)
    print(f"card for a {image.size / 1e6:.2f} MB image: {len(html) / 1024:.1f} KB of HTML "
          f"(base64 would be {len(image.data_uri()) / 1e6:.2f} MB), drawn in {times[0]:.1f} ms, "
          f"again in {times[1]:.1f} ms")


def main() -> None:
    one_mb = _image(590)
    for runs in (10, 50):
        store_numbers(runs, one_mb)
    card_numbers(_image(1150))


if __name__ == "__main__":
    main()
