"""What MCP costs a run: connecting, a tool call, and a call during which the server samples the
run's model, against the project's Python test server over stdio (tests/mcp_servers/toolbox.py).

    .venv/bin/python benchmarks/mcp_round_trips.py            # about 30 s
    .venv/bin/python benchmarks/mcp_round_trips.py --calls 50

Prints medians and p90 in milliseconds. Wall times on a shared 2-core machine swing by ±30 %:
compare numbers taken together. The connection is made once per agent (the first run pays it);
a call with sampling adds the input-required round trip (the server asks, the client's model
answers, the call is sent again) to a plain call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom_nb import Agent, Capability, Model  # noqa: E402

TOOLBOX = [sys.executable, str(ROOT / "tests" / "mcp_servers" / "toolbox.py")]


def _turns(tool: str, args: dict[str, Any], calls: int) -> list[Any]:
    turns: list[Any] = []
    for _ in range(calls):
        turns += [{"tool": tool, "args": args}, "ok"]
    return turns


def _timed_runs(tool: str, args: dict[str, Any], calls: int, **options: Any) -> tuple[float, list[float]]:
    """(first run incl. connecting, the later runs) in milliseconds."""
    model = Model.scripted(_turns(tool, args, calls + 1))
    agent = Agent(model, capabilities=[Capability.mcp("box", command=TOOLBOX, **options)])
    times = []
    try:
        for _ in range(calls + 1):
            started = time.perf_counter()
            result = agent.run_sync("go")
            assert result.status == "completed" and not result.tool_calls[0].is_error, result
            times.append((time.perf_counter() - started) * 1000)
    finally:
        agent.close()
    return times[0], times[1:]


def _line(label: str, values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"{label:<44} median {statistics.median(values):8.2f} ms   p90 {p90:8.2f} ms   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    calls = parser.parse_args().calls
    first, plain = _timed_runs("box__echo", {"text": "hi"}, calls)
    _, sampled = _timed_runs("box__ask_model", {"prompt": "hi"}, calls,
                             sampling=Model.scripted(["answer"] * (calls + 1)))
    _, progress = _timed_runs("box__steps", {"count": 10}, calls)
    print(f"{'first run (imports, server start, handshake)':<44} {first:8.2f} ms")
    print(_line("run with one tool call", plain))
    print(_line("run with one call that samples the model", sampled))
    print(_line("run with one call and 10 progress events", progress))


if __name__ == "__main__":
    main()
