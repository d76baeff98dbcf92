"""Instructions per model turn of loom_nb's run loop, counted by valgrind (callgrind).

Wall times on a shared 2-core machine swing by ±30 %; instruction counts repeat to about ±0.5 %
back to back, whatever else runs (up to 2 % an hour apart: compare counts made together), so
they show whether a change to the run loop made a turn cheaper. Runs the
``turns`` workload of ``peers/loom_nb_bench.py`` (one run of 50 tool-call turns, the zero-latency
function model) under callgrind twice, with 2 and with 12 runs, and divides the difference by
the 510 extra turns, so start-up and imports drop out.

    python3 benchmarks/turn_instructions.py                 # sync tool, ModelResponse turns
    python3 benchmarks/turn_instructions.py --tool async --style dict

Needs ``valgrind`` (Debian's package) and the loom_nb benchmark venv (``run_all.py`` makes it) or
any Python with loom_nb importable (``--python``). Takes about 20 s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TURNS = 50

SCRIPT = """
import asyncio, sys
sys.path.insert(0, {peers!r})
import loom_nb_bench as bench
call, answer = bench.replies({style!r})
left = [0]
def model(request):
    left[0] -= 1
    return call(left[0], "1") if left[0] >= 0 else answer()
agent = bench.make_agent(model, {tool!r})
async def main():
    for _ in range({runs}):
        left[0] = {turns}
        result = await agent.run("go")
        assert result.output == bench.ANSWER, result
asyncio.run(main())
"""


def count(python: str, runs: int, tool: str, style: str) -> int:
    code = SCRIPT.format(peers=str(HERE / "peers"), style=style, tool=tool, runs=runs, turns=TURNS)
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-c", code],
        capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"valgrind failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sys.path.insert(0, str(HERE))
    from run_all import venv_python  # honours LOOM_BENCH_VENVS, as run_all does

    default_python = venv_python("loom_nb")
    ap.add_argument("--python", default=str(default_python if default_python.exists() else sys.executable))
    ap.add_argument("--tool", choices=["sync", "async"], default="sync")
    ap.add_argument("--style", choices=["response", "dict"], default="response")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    low, high = (count(args.python, runs, args.tool, args.style) for runs in (2, 12))
    per_turn = (high - low) / (10 * (TURNS + 1))
    print(f"{per_turn:,.0f} instructions per model turn ({args.tool} tool, {args.style} turns)")


if __name__ == "__main__":
    main()
