"""Tokens billed over a 50-turn session with Claude, with prompt caching and without (issue 19).

The real ``anthropic`` SDK client talks to the project's loopback wire server
(``tests/providers/fake_servers.py``), which bills each request as the Messages API does
(``tests/providers/anthropic_cache.py``: prefix entries at ``cache_control`` breakpoints, a
20-block look-back, a 1,024-token minimum). The session: instructions of about 1,900 tokens and
one tool; 25 runs, each a tool call and an answer, so 50 model turns. Prices: claude-sonnet-5
from genai-prices (``loom_nb.cost``). Run: ``.venv/bin/python benchmarks/prompt_caching.py``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loom_nb import Agent, Model, SessionConfig, tool  # noqa: E402
from loom_nb.messages import Usage  # noqa: E402
from tests.providers.anthropic_cache import PromptCache, cached_turns  # noqa: E402
from tests.providers.fake_servers import FakeServer  # noqa: E402

INSTRUCTIONS = "You look things up. " + "Follow the house style guide closely. " * 200
RUNS = 25  # a tool call and an answer each: 50 model turns


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}: " + "detail " * 40


async def session_usage(cache: bool) -> Usage:
    server = FakeServer()
    try:
        prompt_cache = PromptCache()
        server.add(*[cached_turns(prompt_cache)] * (2 * RUNS))
        model = Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, cache=cache)
        session = Agent(model, INSTRUCTIONS, tools=[lookup]).session(SessionConfig())
        total = Usage()
        for n in range(RUNS):
            result = await session.run(f"Look up key {n}.")
            assert result.status == "completed", result.error
            total = total + result.usage
        return total
    finally:
        server.close()


def main() -> None:
    rows = {label: asyncio.run(session_usage(cache)) for label, cache in
            (("cache=True (default)", True), ("cache=False", False))}
    print(f"50 model turns (25 runs) in one session, claude-sonnet-5 prices")
    print(f"{'':<22} {'input':>9} {'cache read':>11} {'cache write':>12} {'uncached':>9} "
          f"{'output':>7} {'billed-equiv.':>14} {'cost USD':>9}")
    for label, u in rows.items():
        uncached = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens
        # input tokens at the plain input price that cost the same (reads 0.1x, writes 1.25x)
        equivalent = uncached + 0.1 * u.cache_read_tokens + 1.25 * u.cache_write_tokens
        print(f"{label:<22} {u.input_tokens:>9} {u.cache_read_tokens:>11} {u.cache_write_tokens:>12} "
              f"{uncached:>9} {u.output_tokens:>7} {equivalent:>14.0f} {u.cost or 0:>9.4f}")
    on, off = rows["cache=True (default)"], rows["cache=False"]
    print(f"caching bills {100 * (on.cost or 0) / (off.cost or 1):.0f} % of the uncached cost")


if __name__ == "__main__":
    main()
