"""What structured output costs a streamed run: validation, and ``output.partial`` parsing.

A function model streams one JSON answer (a list of N records) in pieces of about 20
characters. The run is timed three ways, printed as a table:

1. text: no ``output_type`` (the baseline).
2. typed: ``output_type=list[Record]``, run without a stream consumer: the answer is validated
   once at the end; no partial parsing (nobody is watching, so none is done).
3. typed stream: the same through ``agent.stream(...)``: every delta parses the answer so far
   (``pydantic_core.from_json(..., allow_partial=...)``) and emits ``output.partial`` when the
   value changed. This is quadratic in the answer's length by nature; the table shows where that
   starts to matter.

Run: .venv/bin/python benchmarks/structured_output.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator

from pydantic import BaseModel

from loom_nb import Agent, Model, ModelRequest


class Record(BaseModel):
    id: int
    name: str
    score: float


def answer(n: int) -> str:
    return json.dumps({"response": [{"id": i, "name": f"item {i}", "score": i / 3} for i in range(n)]})


def model(text: str) -> Model:
    pieces = [text[i:i + 20] for i in range(0, len(text), 20)]

    async def stream(request: ModelRequest) -> AsyncIterator[str]:
        for piece in pieces:
            yield piece

    return Model.function(stream)


async def timed(n: int, mode: str) -> tuple[float, int]:
    text = answer(n)
    agent = Agent(model(text), output_type=None if mode == "text" else list[Record])
    started = time.perf_counter()
    partials = 0
    if mode == "typed stream":
        stream = agent.stream("records")
        async for event in stream:
            partials += event.type == "output.partial"
        assert stream.result is not None and stream.result.ok
    else:
        result = await agent.run("records")
        assert result.ok
    return time.perf_counter() - started, partials


async def main() -> None:
    print(f"{'records':>8} {'chars':>7} {'deltas':>7} | {'text ms':>8} {'typed ms':>9} "
          f"{'stream ms':>10} {'partials':>9}")
    for n in (10, 100, 500, 2000):
        row = {}
        partials = 0
        for mode in ("text", "typed", "typed stream"):
            times = []
            for _ in range(3):
                seconds, partials_here = await timed(n, mode)
                times.append(seconds)
                partials = partials_here or partials
            row[mode] = statistics.median(times) * 1000
        chars = len(answer(n))
        print(f"{n:>8} {chars:>7} {-(-chars // 20):>7} | {row['text']:>8.1f} {row['typed']:>9.1f} "
              f"{row['typed stream']:>10.1f} {partials:>9}")


if __name__ == "__main__":
    asyncio.run(main())
