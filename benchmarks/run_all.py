"""loom_nb beside its peers, in one command: writes benchmarks/RESULTS.md.

    python3 benchmarks/run_all.py            # full run (about 6 minutes on 2 cores)
    python3 benchmarks/run_all.py --quick    # one repetition of everything, smaller sizes (smoke test)

What it does:
1. Creates one virtual environment per framework with uv (benchmarks/.venvs/<name>, or
   $LOOM_BENCH_VENVS/<name>), from the pins in benchmarks/requirements-*.txt; loom_nb's own venv
   gets this checkout (editable, with the notebook extra) under the repo's requirements.lock.
   A venv is rebuilt only when its pins change.
2. Runs every workload as a subprocess in the framework's own venv (benchmarks/peers/*.py, each
   prints JSON), ALTERNATELY: repetition r of a workload runs each framework once, in an order
   rotated every repetition, before repetition r+1 starts; so machine noise hits all alike.
3. Profiles loom_nb's run loop once with cProfile (not a comparison: where its time goes).
4. Writes benchmarks/RESULTS.md (medians, p10-p90, ratios against the peers, targets) and the
   raw JSON to benchmarks/.results/latest.json (git-ignored).

Standard library only; any Python 3.11 runs it (the venvs use the same interpreter).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / "peers"
VENVS = Path(os.environ.get("LOOM_BENCH_VENVS", HERE / ".venvs"))
RESULTS = HERE / "RESULTS.md"
RAW = HERE / ".results" / "latest.json"
FINDINGS = HERE / "findings.md"

# name -> (script, requirements file or None for loom_nb, import name)
FRAMEWORKS: dict[str, tuple[str, str | None, str]] = {
    "loom_nb": ("loom_nb_bench.py", None, "loom_nb"),
    "pydantic-ai": ("pydantic_ai_bench.py", "requirements-pydantic-ai.txt", "pydantic_ai"),
    "openai-agents": ("openai_agents_bench.py", "requirements-openai-agents.txt", "agents"),
    "loom-agent": ("loom_agent_bench.py", "requirements-loom-agent.txt", "loom"),
}
PEER_NAMES = [n for n in FRAMEWORKS if n != "loom_nb"]

# (key, workload, args, frameworks, repetitions full / quick)
PLAN: list[tuple[str, str, list[str], list[str], int, int]] = [
    ("import", "import", [], list(FRAMEWORKS), 7, 1),
    ("load_ext", "load_ext", [], ["loom_nb"], 7, 1),
    ("turns", "turns", ["ns=10,50,100", "inner=3"], list(FRAMEWORKS), 7, 1),
    ("turns_dict", "turns", ["ns=10,50,100", "inner=3", "style=dict"], ["loom_nb"], 5, 1),
    ("session", "session", ["runs=200", "reopens=5"], list(FRAMEWORKS), 5, 1),
    ("session_dict", "session", ["runs=200", "reopens=2", "style=dict"], ["loom_nb"], 3, 1),
    ("stream", "stream", ["tokens=2000"], list(FRAMEWORKS), 5, 1),
    ("stream_paced", "stream", ["tokens=2000", "pace_ms=1"], list(FRAMEWORKS), 3, 1),
    ("store", "store", [], ["loom_nb", "openai-agents"], 3, 1),
]
QUICK_ARGS = {"session": ["runs=200", "reopens=2"], "turns": ["ns=10,50,100", "inner=1"],
              "turns_dict": ["ns=10,50,100", "inner=1", "style=dict"]}
DICT_LABEL = "loom_nb, dict turns †"


# -- environments ---------------------------------------------------------------------------------

def uv(*args: str, cwd: Path | None = None) -> None:
    cmd = [sys.executable, "-m", "uv", *args]
    subprocess.run(cmd, check=True, cwd=cwd)


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def pins_digest(name: str) -> str:
    req = FRAMEWORKS[name][1]
    files = [HERE / req] if req else [REPO / "requirements.lock", REPO / "pyproject.toml"]
    h = hashlib.sha256(sys.version.encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def ensure_venv(name: str) -> None:
    py, stamp = venv_python(name), VENVS / name / ".bench-stamp"
    digest = pins_digest(name)
    if py.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    print(f"[setup] creating the {name} venv in {VENVS / name}", flush=True)
    uv("venv", "-q", "--clear", "-p", sys.executable, str(VENVS / name))
    req = FRAMEWORKS[name][1]
    if req:
        uv("pip", "install", "-q", "--compile-bytecode", "-p", str(py), "-r", str(HERE / req))
    else:
        uv("pip", "install", "-q", "--compile-bytecode", "-p", str(py), "-c",
           str(REPO / "requirements.lock"), "-e", f"{REPO}[notebook]")
    stamp.write_text(digest)


def job_env() -> dict[str, str]:
    # No API keys or loom settings from the caller's shell; bytecode may be written (a user's
    # installation has .pyc files: an import benchmark without them measures the compiler).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOOM_", "OPENAI_", "ANTHROPIC_", "PYTHONDONTWRITEBYTECODE"))}
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def warm_bytecode(name: str) -> None:
    """Import once, untimed, so that a timed import finds compiled .pyc files (loom_nb is an
    editable install whose sources others may be editing: this runs before every import sample)."""
    subprocess.run([str(venv_python(name)), "-c", f"import {FRAMEWORKS[name][2]}"], check=True,
                   capture_output=True, env=job_env())


# -- running ---------------------------------------------------------------------------------------

def run_job(name: str, workload: str, args: list[str], timeout: float = 600) -> dict[str, Any]:
    script = PEERS / FRAMEWORKS[name][0]
    env = job_env()
    if workload in ("import", "load_ext"):
        warm_bytecode(name)
    t0 = time.perf_counter()
    proc = subprocess.run([str(venv_python(name)), str(script), workload, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {workload} {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["_elapsed_s"] = elapsed
    return data


def run_plan(quick: bool, only: set[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    plan = [(k, w, QUICK_ARGS.get(k, a) if quick else a, [f for f in fws if f in only],
             q if quick else r) for k, w, a, fws, r, q in PLAN]
    total = sum(len(fws) * reps for _k, _w, _a, fws, reps in plan)
    done, start = 0, time.perf_counter()
    for rep in range(max(reps for *_x, reps in plan)):
        for key, workload, args, fws, reps in plan:
            if rep >= reps or not fws:
                continue
            order = fws[rep % len(fws):] + fws[:rep % len(fws)]  # rotated every repetition
            for name in order:
                data = run_job(name, workload, args)
                results.setdefault(key, {}).setdefault(name, []).append(data)
                done += 1
                print(f"[{done}/{total} {time.perf_counter() - start:6.0f}s] rep {rep + 1}/{reps} "
                      f"{key:12s} {name:14s} {data['_elapsed_s']:6.1f}s", flush=True)
    return results


# -- statistics -------------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (p in 0..100)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], digits: int = 0) -> str:
    if len(values) < 2:
        return "n=1"
    return f"{pct(values, 10):,.{digits}f}–{pct(values, 90):,.{digits}f}"


def fmt(x: float, digits: int = 0) -> str:
    if x != x:  # nan
        return "–"
    return f"{x:,.{digits}f}"


def ratio(peer: float, ours: float) -> str:
    if not ours or peer != peer or ours != ours:
        return "–"
    r = peer / ours
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def pooled(runs: list[dict[str, Any]], *path: str) -> list[float]:
    out: list[float] = []
    for r in runs:
        v: Any = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, list):
            out.extend(v)
        elif isinstance(v, int | float):
            out.append(v)
    return out


# -- machine ------------------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    info = {"python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
            "cores": str(os.cpu_count())}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpu.splitlines()
                           if line.startswith("model name"))
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory"] = f"{int(mem) / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "loom_nb"], cwd=REPO, text=True,
                               capture_output=True).stdout.strip()
        info["loom_nb_commit"] = commit + (" (loom_nb/ has uncommitted changes)" if dirty else "")
    except OSError:
        pass
    return info


# -- report --------------------------------------------------------------------------------------------

def report(results: dict[str, Any], info: dict[str, str], meta: dict[str, Any]) -> str:
    L: list[str] = []
    add = L.append
    versions = {}
    for per_fw in results.values():
        for name, runs in per_fw.items():
            versions[name] = runs[0]["version"]
    names = [n for n in FRAMEWORKS if n in versions]

    add("# Benchmarks: loom_nb beside pydantic-ai, the OpenAI Agents SDK and loom-agent 0.8.2")
    add("")
    add(f"Written by `python3 benchmarks/run_all.py{' --quick' if meta['quick'] else ''}` on "
        f"{meta['date']} in {meta['minutes']:.1f} minutes. Do not edit by hand: run it again.")
    if meta["quick"]:
        add("")
        add("**QUICK RUN**: one repetition per workload; the spreads mean nothing.")
    add("")
    add("## Machine and versions")
    add("")
    add(f"- CPU: {info.get('cpu')} · {info.get('cores')} cores · memory {info.get('memory')} · "
        f"{info.get('os')}")
    add(f"- Python {info['python']} in every venv (one uv venv per framework, created from "
        f"`benchmarks/requirements-*.txt`; loom_nb from this checkout, commit "
        f"{info.get('loom_nb_commit', '?')})")
    add("- Frameworks: " + ", ".join(f"{n} {versions[n]}" for n in names))
    add(f"- Load average before / after: {meta['load_before']} / {meta['load_after']}")
    add("")
    add("How it ran: every workload is a fresh subprocess in its framework's own venv. The "
        "repetitions are interleaved: repetition *r* of a workload runs each framework once, in an "
        "order rotated each repetition, before repetition *r+1*; so noise on this shared machine "
        "hits all frameworks alike. Medians, with p10–p90 over all samples. Ratios are "
        "*peer ÷ loom_nb*: above 1× loom_nb is faster (or smaller), below 1× it is slower.")
    add("")
    add("Limits raised so that the workloads run (defaults would stop them): pydantic-ai "
        "`UsageLimits(request_limit=None)` (default 50 requests); OpenAI Agents SDK "
        "`max_turns=1000` (default 10), tracing disabled (`set_tracing_disabled(True)`: its "
        "default exporter uploads to OpenAI); loom-agent `Runtime.sdk(max_iterations=100000, "
        "max_context_tokens=10**9, extensions={'provider_health_check': False})` (defaults: 32 "
        "iterations, i.e. ~8 tool rounds, 64,000 context tokens, and a 'ping' model call before the "
        "first run) and `ToolRateLimitPolicy(max_calls_per_minute=10**9)` (default 60); loom_nb "
        "`Runtime.sdk(max_turns=None)` (default 50 turns). Every model is an in-process fake with "
        "zero latency that reports token usage; the tool is a dict lookup.")
    add("")

    # targets
    tgt = targets(results)
    add("## Targets (issue 11)")
    add("")
    add("| target | loom_nb | reference | met? |")
    add("| --- | --- | --- | --- |")
    for row in tgt:
        add(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} |")
    add("")

    # 1. turns
    if "turns" in results:
        t = results["turns"]
        add("## 1. Overhead per model turn")
        add("")
        add("One run of *n* tool-call turns: the model asks for the tool *n* times, then answers "
            "(*n*+1 model calls). Wall time of the run ÷ (*n*+1), µs. "
            f"{len(t.get('loom_nb', []))} processes × 3 runs per framework and *n*, after one warm-up run.")
        add("")
        add("| framework | n=10 | n=50 | n=100 | p10–p90 at n=50 | CPU µs/turn at n=50 | "
            "turns 1-10 of a 100-turn run | turns 91-100 | growth | per-turn at n=50 vs loom_nb |")
        add("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        ours50 = med(pooled(t.get("loom_nb", []), "per_turn_us", "50"))
        rows = [(n, t.get(n, [])) for n in names]
        if results.get("turns_dict", {}).get("loom_nb"):
            rows.insert(1, (DICT_LABEL, results["turns_dict"]["loom_nb"]))
        for n, runs in rows:
            m = {k: med(pooled(runs, "per_turn_us", k)) for k in ("10", "50", "100")}
            first, last = med(pooled(runs, "gap_first10_us")), med(pooled(runs, "gap_last10_us"))
            add(f"| {n} | {fmt(m['10'])} | {fmt(m['50'])} | {fmt(m['100'])} | "
                f"{spread(pooled(runs, 'per_turn_us', '50'))} | "
                f"{fmt(med(pooled(runs, 'cpu_per_turn_us', '50')))} | {fmt(first)} | {fmt(last)} | "
                f"{fmt(last / first, 2)}× | {'—' if n == 'loom_nb' else ratio(m['50'], ours50)} |")
        add("")
        add("loom_nb's model function returns a `ModelResponse` with its usage, as every peer's "
            "fake does. † The same with the plain turns `Model.function` documents "
            "(`{'tool': ..., 'args': ...}` and a str): its test double then estimates the "
            "request's tokens itself (`loom_nb/models/scripted.py:_request_tokens`, one dict "
            "look-up per message per turn), a cost a real provider does not have.")
        add("")
        add("*turns 1-10 / 91-100*: median time between consecutive model calls (µs) inside the "
            "100-turn runs, i.e. what one more turn costs early and late in a run. *growth* = late ÷ early.")
        add("")

    # 2. session
    if "session" in results:
        s = results["session"]
        add("## 2. A long session: 200 runs (prompt → one tool call → answer)")
        add("")
        add("loom_nb: one `Session` on an `SQLiteStore` file. pydantic-ai: `message_history=` "
            "of the previous result's `all_messages()`. OpenAI Agents SDK: one `SQLiteSession` "
            "file. loom-agent: one `agent.session(SessionConfig(id=...))` (in-process engine, no "
            "store: its default). Milliseconds per run; per process the median of runs 1-10 and "
            "of runs 191-200, then the median over processes.")
        add("")
        add("| framework | runs 1-10 (ms) | runs 191-200 (ms) | late ÷ early | spread of late ÷ early | "
            "runs 191-200 vs loom_nb |")
        add("| --- | ---: | ---: | ---: | --- | ---: |")
        late_ours = med([med(r["run_ms"][-10:]) for r in s.get("loom_nb", [])])
        srows = [(n, s.get(n, [])) for n in names]
        if results.get("session_dict", {}).get("loom_nb"):
            srows.insert(1, (DICT_LABEL, results["session_dict"]["loom_nb"]))
        for n, runs in srows:
            early = [med(r["run_ms"][:10]) for r in runs]
            late = [med(r["run_ms"][-10:]) for r in runs]
            growth = [b / a for a, b in zip(early, late)]
            add(f"| {n} | {fmt(med(early), 2)} | {fmt(med(late), 2)} | {fmt(med(growth), 2)}× | "
                f"{spread(growth, 2)} | {'—' if n == 'loom_nb' else ratio(med(late), late_ours)} |")
        la = s.get("loom-agent", [])
        if la and "stored_run_ms" in la[0]:
            early = [med(r["stored_run_ms"][:10]) for r in la]
            late = [med(r["stored_run_ms"][-10:]) for r in la]
            add(f"| loom-agent + FileSessionStore | {fmt(med(early), 2)} | {fmt(med(late), 2)} | "
                f"{fmt(med([b / a for a, b in zip(early, late)]), 2)}× | "
                f"{spread([b / a for a, b in zip(early, late)], 2)} | {ratio(med(late), late_ours)} |")
        add("")
        add("Runs 1-200 in steps (median ms over processes of runs k..k+9):")
        add("")
        steps = [0, 50, 100, 150, 190]
        add("| framework | " + " | ".join(f"{k + 1}-{k + 10}" for k in steps) + " |")
        add("| --- |" + " ---: |" * len(steps))
        for n, runs in srows:
            add(f"| {n} | " + " | ".join(fmt(med([med(r['run_ms'][k:k + 10]) for r in runs]), 2)
                                           for k in steps) + " |")
        add("")

    # 3. import
    if "import" in results:
        im = results["import"]
        add("## 3. Cold import and `%load_ext loom_nb`")
        add("")
        add("A fresh process per sample; bytecode already compiled (one untimed import per venv "
            "first); the process has only the benchmark helper loaded (json, tempfile, resource). "
            "RSS growth = resident memory after − before the import; peak RSS = `ru_maxrss` of "
            "the whole process.")
        add("")
        add("| what | import ms (median) | p10–p90 | CPU ms | RSS growth MiB | peak RSS MiB | "
            "modules loaded | import time vs loom_nb |")
        add("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        ours = med(pooled(im.get("loom_nb", []), "import_ms"))
        labels = {"loom_nb": "`import loom_nb`", "pydantic-ai": "`import pydantic_ai`",
                  "openai-agents": "`import agents`", "loom-agent": "`import loom`"}
        for n in names:
            runs = im.get(n, [])
            growth = [r["rss_mb_after"] - r["rss_mb_before"] for r in runs]
            add(f"| {labels[n]} | {fmt(med(pooled(runs, 'import_ms')), 1)} | "
                f"{spread(pooled(runs, 'import_ms'), 1)} | {fmt(med(pooled(runs, 'import_cpu_ms')), 1)} | "
                f"{fmt(med(growth), 1)} | {fmt(med(pooled(runs, 'peak_rss_mb')), 1)} | "
                f"{fmt(med(pooled(runs, 'modules')))} | {'—' if n == 'loom_nb' else ratio(med(pooled(runs, 'import_ms')), ours)} |")
        le = results.get("load_ext", {}).get("loom_nb", [])
        if le:
            growth = [r["rss_mb_after"] - r["rss_mb_before"] for r in le]
            add(f"| `%load_ext loom_nb` in a fresh `InteractiveShell` (includes the cold "
                f"`import loom_nb`; IPython already loaded) | {fmt(med(pooled(le, 'load_ext_ms')), 1)} | "
                f"{spread(pooled(le, 'load_ext_ms'), 1)} | {fmt(med(pooled(le, 'load_ext_cpu_ms')), 1)} | "
                f"{fmt(med(growth), 1)} | {fmt(med(pooled(le, 'peak_rss_mb')), 1)} | – | – |")
        add("")

    # 4. streaming
    if "stream" in results:
        add("## 4. Streaming a 2,000-token answer")
        add("")
        add("loom_nb: the `%loom run -a agent …` magic in a real IPython `InteractiveShell` with "
            "`LOOM_LIVE=1` (live updates forced on) and a display publisher that counts "
            "`display_data` / `update_display_data` messages; the model is an async generator "
            "function yielding 2,000 text chunks. CPU = process CPU time (all threads: the run "
            "executes on loom_nb's background loop thread) ÷ 2,000. *raw* = the same answer "
            "consumed as events with no display (loom_nb `agent.stream()`; pydantic-ai "
            "`run_stream()` + `stream_text(delta=True, debounce_by=None)`; OpenAI Agents SDK "
            "`Runner.run_streamed()` + `stream_events()`; loom-agent `agent.run_streaming()`). "
            "**The peers have no notebook display**: only their raw streaming overhead is measured.")
        add("")
        add("| framework | pacing | CPU µs/token, magic + live display | display updates | "
            "published KiB | raw CPU µs/token | raw p10–p90 | raw vs loom_nb |")
        add("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
        for key, label in (("stream", "none (zero latency)"), ("stream_paced", "1 ms per token")):
            st = results.get(key, {})
            ours = med(pooled(st.get("loom_nb", []), "raw_cpu_per_token_us"))
            for n in names:
                runs = st.get(n, [])
                if not runs:
                    continue
                raw = pooled(runs, "raw_cpu_per_token_us")
                if n == "loom_nb":
                    add(f"| {n} | {label} | {fmt(med(pooled(runs, 'cpu_per_token_us')), 1)} | "
                        f"{fmt(med(pooled(runs, 'display_updates')))} (+{fmt(med(pooled(runs, 'display_data')))} display) | "
                        f"{fmt(med(pooled(runs, 'published_kb')), 0)} | {fmt(med(raw), 1)} | {spread(raw, 1)} | — |")
                else:
                    add(f"| {n} | {label} | no display | – | – | {fmt(med(raw), 1)} | {spread(raw, 1)} | "
                        f"{ratio(med(raw), ours)} |")
        add("")
        add("The display is throttled (`loom_nb.notebook.live.UPDATE_INTERVAL` = 0.15 s between "
            "redraws caused by text; tool steps redraw at once), so the number of updates follows "
            "the answer's duration, not its token count: a zero-latency answer gets ~1 redraw, a "
            "2-second answer ~15. With paced tokens most CPU is the event loop waking up for each "
            "`asyncio.sleep`, for every framework alike.")
        add("")

    # 5. store
    if "store" in results or "session" in results:
        add("## 5. The store")
        add("")
        st = results.get("store", {})
        if st:
            add("Raw write throughput through the store API, on a file in /tmp. loom_nb: "
                "`SQLiteStore.append_events` (WAL, synchronous=NORMAL) of `RunEvent`s; OpenAI "
                "Agents SDK: `SQLiteSession.add_items` of conversation items (its unit of storage; "
                "it stores no events). Batch 10 = ten per call/transaction (the run loop flushes "
                "a step's events together); batch 1 = one per transaction.")
            add("")
            add("| framework | events/s, batch 10 | p10–p90 | events/s, batch 1 | vs loom_nb (batch 10) |")
            add("| --- | ---: | --- | ---: | ---: |")
            ours = med(pooled(st.get("loom_nb", []), "events_per_s_batch10"))
            for n in names:
                runs = st.get(n, [])
                if not runs:
                    continue
                b10 = pooled(runs, "events_per_s_batch10")
                add(f"| {n} | {fmt(med(b10))} | {spread(b10)} | {fmt(med(pooled(runs, 'events_per_s_batch1')))} | "
                    f"{'—' if n == 'loom_nb' else ratio(ours, med(b10))} |")
            add("")
            add("(*vs loom_nb* here is loom_nb ÷ peer throughput: above 1× loom_nb writes faster.)")
            add("")
        s = results.get("session", {})
        if s:
            add("Reopening the 200-run session of §2 (800 messages) from a new store object, "
                "then one more run. loom_nb: `agent.session(SessionConfig(id=..., "
                "store=SQLiteStore(path)))`, which loads the history; OpenAI Agents SDK: a new "
                "`SQLiteSession` + `get_items()` (it reads lazily, so the read is counted); "
                "pydantic-ai (no store): `ModelMessagesTypeAdapter.validate_json` of the saved "
                "history; loom-agent: a new agent with `FileSessionStore` and `agent.session(...)` "
                "(its default restore keeps only the last 8 transcripts).")
            add("")
            add("| framework | reopen ms | p10–p90 | first run after reopen ms | reopen + first run vs loom_nb | "
                "events/s written during the session |")
            add("| --- | ---: | --- | ---: | ---: | ---: |")
            ours_tot = med([a + b for r in s.get("loom_nb", [])
                            for a, b in zip(r.get("reopen_ms", []), r.get("reopen_first_run_ms", []))])
            for n in names:
                runs = s.get(n, [])
                re = pooled(runs, "reopen_ms")
                if not re:
                    continue
                tot = [a + b for r in runs for a, b in zip(r["reopen_ms"], r["reopen_first_run_ms"])]
                rate = pooled(runs, "build_events_per_s") or pooled(runs, "build_items_per_s")
                unit = "events" if pooled(runs, "build_events_per_s") else "items"
                add(f"| {n} | {fmt(med(re), 2)} | {spread(re, 2)} | "
                    f"{fmt(med(pooled(runs, 'reopen_first_run_ms')), 2)} | "
                    f"{'—' if n == 'loom_nb' else ratio(med(tot), ours_tot)} | "
                    f"{fmt(med(rate)) + ' ' + unit if rate else '–'} |")
            add("")

    # 6. export
    export = (results.get("export") or {}).get("loom_nb", [{}])[0].get("frames") or []
    if export:
        add("## 6. Export frames over 100,000 stored events")
        add("")
        add("`benchmarks/export_frames.py`: a store generated by `benchmarks/export_store.py` (a "
            "kernel-made template copied with SQL: 100,080 events, 8,340 runs, 33,360 messages), "
            "each frame built in a fresh process; seconds exclude importing pandas (timed apart); "
            "peak RSS is the whole process, pandas and pyarrow included (RSS before the frame in "
            "the next column). `default` is `engine=\"auto\"`; `rows` the reference row path.")
        add("")
        add("| frame | engine | rows × cols | seconds | CPU s | peak RSS MiB | RSS before MiB | import pandas s |")
        add("|---|---|---|---:|---:|---:|---:|---:|")
        for r in export:
            add(f"| {r['frame']} | {r['engine']} | {r['rows']:,} × {r['columns']} | "
                f"{r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['peak_mib']:.0f} | {r['rss_before_mib']:.0f} | "
                f"{r['import_pandas']:.2f} |")
        add("")

    # profile
    add("## What the numbers reveal")
    add("")
    prof = results.get("profile", {}).get("loom_nb", [])
    if FINDINGS.exists():
        add(FINDINGS.read_text().strip())
        add("")
    if prof:
        p = prof[0]
        add("### cProfile of loom_nb's run loop (this run)")
        add("")
        add("cProfile adds per-call overhead, so absolute times are inflated ~2×; the shares are "
            "what matters. Own time = time in the function itself.")
        for key, title in (("turns", "five 100-turn runs (`agent.run`)"),
                           ("session_first10", "runs 1-10 of a 200-run SQLite session"),
                           ("session_last10", "runs 191-200 of the same session")):
            block = p[key]
            total = block["total_s"]
            add("")
            add(f"**{title}** — total {total * 1e3:,.0f} ms profiled")
            add("")
            add("| own time by file | share |")
            add("| --- | ---: |")
            for f, t in block["by_file"][:10]:
                add(f"| `{f}` | {100 * t / total:.1f} % |")
            add("")
            add("| function (own time) | calls | share |")
            add("| --- | ---: | ---: |")
            for r in block["own"][:15]:
                add(f"| `{r['where']}` | {r['calls']:,} | {100 * r['own_s'] / total:.1f} % |")
            if key == "turns":
                add("")
                add("| loom_nb function (cumulative: itself + what it calls) | calls | share |")
                add("| --- | ---: | ---: |")
                for r in block["cum_loom"][:18]:
                    add(f"| `{r['where']}` | {r['calls']:,} | {100 * r['cum_s'] / total:.1f} % |")
    add("")
    add("## Reproduce")
    add("")
    add("`python3 benchmarks/run_all.py` (creates the venvs on first use; `--quick` for a smoke "
        "test; `--only loom_nb,loom-agent` for a subset). Raw samples: `benchmarks/.results/latest.json`.")
    add("")
    return "\n".join(L)


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    t = results.get("turns", {})
    if t.get("loom_nb"):
        ours = {k: med(pooled(t["loom_nb"], "per_turn_us", k)) for k in ("10", "50", "100")}
        peers = {n: med(pooled(t[n], "per_turn_us", "50")) for n in PEER_NAMES if t.get(n)}
        if peers:
            best = min(peers, key=peers.get)  # type: ignore[arg-type]
            goal = peers[best] / 3
            rows.append(("per-turn overhead ≤ ⅓ of the fastest peer (n=50)",
                         f"{ours['50']:,.0f} µs", f"{best} {peers[best]:,.0f} µs → goal ≤ {goal:,.0f} µs",
                         "yes" if ours["50"] <= goal else f"**no** ({ours['50'] / goal:.1f}× over)"))
        first, last = med(pooled(t["loom_nb"], "gap_first10_us")), med(pooled(t["loom_nb"], "gap_last10_us"))
        growth = max(last / first, ours["100"] / ours["10"])
        rows.append(("per-turn cost does not grow with the run's length",
                     f"turns 91-100 ÷ turns 1-10 = {last / first:.2f}×; per-turn n=100 ÷ n=10 = "
                     f"{ours['100'] / ours['10']:.2f}×", "≤ 1.25× counted as flat",
                     "yes" if growth <= 1.25 else "**no**"))
    s = results.get("session", {})
    if s.get("loom_nb"):
        growth = med([med(r["run_ms"][-10:]) / med(r["run_ms"][:10]) for r in s["loom_nb"]])
        peer_g = {n: med([med(r["run_ms"][-10:]) / med(r["run_ms"][:10]) for r in s[n]])
                  for n in PEER_NAMES if s.get(n)}
        rows.append(("runs 191-200 within 1.5× of runs 1-10", f"{growth:.2f}×",
                     "peers: " + ", ".join(f"{n} {g:.1f}×" for n, g in peer_g.items()),
                     "yes" if growth <= 1.5 else "**no**"))
    im = results.get("import", {})
    if im.get("loom_nb"):
        ours = med(pooled(im["loom_nb"], "import_ms"))
        peers = {n: med(pooled(im[n], "import_ms")) for n in PEER_NAMES if im.get(n)}
        if peers:
            best = min(peers, key=peers.get)  # type: ignore[arg-type]
            rows.append(("import ≥ 2× faster than the fastest peer's", f"{ours:,.0f} ms",
                         f"{best} {peers[best]:,.0f} ms → goal ≤ {peers[best] / 2:,.0f} ms",
                         "yes" if ours <= peers[best] / 2 else f"**no** ({ours / (peers[best] / 2):.1f}× over)"))
    return rows


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repetition, smaller sizes (smoke test)")
    ap.add_argument("--only", default="", help="comma-separated frameworks (default: all)")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile of loom_nb")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite RESULTS.md from benchmarks/.results/latest.json")
    args = ap.parse_args()
    if args.report_only:
        saved = json.loads(RAW.read_text())
        RESULTS.write_text(report(saved["results"], saved["machine"], saved["meta"]))
        print(f"wrote {RESULTS}")
        return
    only = set(args.only.split(",")) if args.only else set(FRAMEWORKS)
    unknown = only - set(FRAMEWORKS)
    if unknown:
        raise SystemExit(f"unknown frameworks {sorted(unknown)}; choose from {list(FRAMEWORKS)}")
    start = time.perf_counter()
    load_before = loadavg()
    for name in FRAMEWORKS:
        if name in only:
            ensure_venv(name)
            warm_bytecode(name)
    results = run_plan(args.quick, only)
    if "loom_nb" in only:
        print("[export] frames over a generated 100,000-event store", flush=True)
        out = subprocess.run([str(venv_python("loom_nb")), str(HERE / "export_frames.py"), "--json",
                              "--repeat", "1" if args.quick else "3"], check=True,
                             capture_output=True, text=True, cwd=REPO, env=job_env())
        version = next((runs[0]["version"] for per_fw in results.values()
                        for name, runs in per_fw.items() if name == "loom_nb"), "")
        results["export"] = {"loom_nb": [{"version": version, "frames": json.loads(
            out.stdout.strip().splitlines()[-1])}]}
    if "loom_nb" in only and not args.no_profile:
        print("[profile] cProfile of loom_nb's run loop", flush=True)
        results["profile"] = {"loom_nb": [run_job("loom_nb", "profile", [])]}
    info = machine()
    meta = {"quick": args.quick, "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "minutes": (time.perf_counter() - start) / 60, "load_before": load_before,
            "load_after": loadavg()}
    RAW.parent.mkdir(exist_ok=True)
    RAW.write_text(json.dumps({"results": results, "machine": info, "meta": meta}))
    RESULTS.write_text(report(results, info, meta))
    print(f"wrote {RESULTS} ({meta['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
