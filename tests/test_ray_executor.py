"""evaluate(..., executor="ray") (loom_nb/_ray_executor.py, loom_nb/executors.py): samples as Ray
tasks on a local cluster of 2 workers, sessions in the shared store, the same frames as local.

Starting Ray takes 20-40 s on a loaded 2-core machine, so the cluster is started once for this
module; every test that uses it runs under a watchdog, so a hang fails the test instead of the
suite. The cluster starts no dashboard and reports no usage statistics; its processes talk to
each other only. (Ray binds its servers to this host's own address, not to 127.0.0.1: ray.init
turns a loopback node address into the host's address on purpose.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import loom_nb
from loom_nb import Agent, ConfigError, Model, Score
from loom_nb.evaluation import evaluation_frame
from loom_nb.executors import Executor, LocalExecutor, RayExecutor, resolve_executor
from loom_nb.export import runs_df, tool_calls_df
from loom_nb.store import open_store

ray = pytest.importorskip("ray", reason="the ray extra: pip install 'loom-nb[ray]'")

pytestmark = pytest.mark.ray
BUDGET_S = 300  # per test using the cluster
VARYING = ["run_id", "resumed", "latency_ms", "started_at", "finished_at"]
BY_RUN = ["run_id", "started_at", "finished_at", "duration_ms", "order"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    with pytest.MonkeyPatch.context() as env:
        # Ray's usage statistics would be reported over the internet: off, before Ray starts.
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


@pytest.fixture
def watchdog(cluster: None) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"a Ray test ran longer than {BUDGET_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(BUDGET_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def exact(result: Any, task: Any) -> Score:
    """Right when the answer is the target."""
    return Score(value=float(result.text == task.target), answer=result.text)


def _tasks(count: int) -> pd.DataFrame:
    rows = [{"id": f"t{i}", "input": f"q{i} tool" if i % 4 == 0 else f"q{i}",
             "target": f"done: Q{i} TOOL" if i % 4 == 0 else f"answer: q{i}",
             "group": f"g{i % 3}"} for i in range(count)]
    return pd.DataFrame(rows)


def test_200_tasks_on_ray_give_the_frames_of_the_same_evaluation_run_locally(
        watchdog: None, postgres_dsn: str, tmp_path: Path) -> None:
    tasks = _tasks(200)
    # Scorers run on the driver and are never pickled: a lambda is fine.
    scorers = {"exact": exact, "zero": lambda result, task: Score(value=0.0)}
    df = loom_nb.evaluate("tests.ray_agents:make_agent", tasks, scorers=scorers,
                          store=postgres_dsn, executor="ray", concurrency=8, progress=False)
    assert df.outcome.eq("answered").all() and df.score_exact.eq(1.0).all()
    store = open_store(postgres_dsn)
    owners = {store.runs(s)[0].owner.pid for s in df.session_id}  # type: ignore[union-attr]
    assert os.getpid() not in owners and len(owners) >= 2  # the two Ray workers ran them

    local = str(tmp_path / "local.sqlite")
    here = loom_nb.evaluate("tests.ray_agents:make_agent", tasks, scorers=scorers,
                            store=local, progress=False)
    pd.testing.assert_frame_equal(df.drop(columns=VARYING), here.drop(columns=VARYING))
    for frame in (runs_df, tool_calls_df):
        shared = frame(postgres_dsn).sort_values(["session_id", "run_id"]).reset_index(drop=True)
        mine = frame(local).sort_values(["session_id", "run_id"]).reset_index(drop=True)
        drop = [c for c in [*BY_RUN, "event_id", "tool_call_id", "tool_duration_ms", "ts",
                            "result_ts"] if c in shared.columns]
        pd.testing.assert_frame_equal(shared.drop(columns=drop), mine.drop(columns=drop))

    # Resume on Ray reads every sample back from the store and starts no task.
    again = loom_nb.evaluate("tests.ray_agents:make_agent", tasks, scorers=[exact],
                             store=postgres_dsn, executor="ray", concurrency=8, progress=False)
    assert again.resumed.all() and len(runs_df(postgres_dsn)) == 200
    report = loom_nb.report(df, "exact")
    assert "200" in report.html


def test_a_killed_worker_leaves_an_interrupted_run_that_resume_runs_again(
        watchdog: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker, store = tmp_path / "died", str(tmp_path / "eval.sqlite")  # SQLite: one machine
    tasks = [{"id": "a", "input": "first"}, {"id": "kill", "input": f"die {marker}"},
             {"id": "b", "input": "last"}]
    df = loom_nb.evaluate("tests.ray_agents:make_dying_agent", tasks, store=store,
                          executor="ray", concurrency=3, progress=True).set_index("task_id")
    # The progress display of local evaluation, fed by the rows as Ray tasks end.
    progress = capsys.readouterr().err
    assert "evaluate: 3/3 samples done (0 from the store, 1 not completed)" in progress
    assert marker.exists() and int(marker.read_text()) != os.getpid()
    assert df.loc["kill", "outcome"] == "interrupted" and df.loc["kill", "status"] == "interrupted"
    assert "ended before the run did" in df.loc["kill", "error"]
    assert list(df.loc[["a", "b"], "outcome"]) == ["answered", "answered"]
    stored = runs_df(store).set_index("session_id")
    assert stored.loc["eval-dying-kill", "status"] == "interrupted"

    again = loom_nb.evaluate("tests.ray_agents:make_dying_agent", tasks, store=store,
                             executor="ray", progress=False).set_index("task_id")
    assert again.loc["kill", "outcome"] == "answered" and again.loc["kill", "attempt"] == 2
    assert again.loc["kill", "session_id"] == "eval-dying-kill.2"
    assert list(again.loc[["a", "b"], "resumed"]) == [True, True]
    frame = evaluation_frame(store).set_index("task_id")
    assert frame.loc["kill", "output"] == f"answer: die {marker}"


def test_variants_on_ray_and_a_factory_that_fails_in_the_workers_only(
        watchdog: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEST_DRIVER_PID", str(os.getpid()))  # the workers started earlier
    variants = {"ok": "tests.ray_agents:make_agent",
                "broken": "tests.ray_agents:make_agent_only_on_the_driver"}
    df = loom_nb.evaluate(variants, ["q1", "q2 tool"], store=str(tmp_path / "e.sqlite"),
                          executor="ray", progress=False)
    ok, broken = df[df.variant == "ok"], df[df.variant == "broken"]
    assert list(ok.output) == ["answer: q1", "done: Q2 TOOL"]
    assert set(broken.outcome) == {"error"} and set(broken.error_type) == {"RuntimeError"}
    assert broken.error.str.contains("the model key is not set on this worker").all()
    assert list(broken.session_id) == ["eval-broken-" + t for t in broken.task_id]


def test_an_interrupt_in_the_driver_cancels_the_ray_tasks_and_resume_goes_on(
        watchdog: None, tmp_path: Path) -> None:
    store = str(tmp_path / "eval.sqlite")
    tasks = [{"id": f"h{i}", "input": f"hang {i}"} for i in range(4)]
    the_store = open_store(store)

    def interrupt_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = [r for i in range(4) for r in the_store.runs(f"cut-h{i}")]
            if sum(r.status == "running" for r in runs) >= 2:
                break
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        loom_nb.evaluate("tests.ray_agents:make_hanging_agent", tasks, store=store,
                         executor=RayExecutor(cancel_grace=3), concurrency=4, name="cut",
                         progress=False)
    assert time.monotonic() - started < 120
    statuses = {r.status for i in range(4) for r in the_store.runs(f"cut-h{i}")}
    # Each run recorded its cancellation, or (Ray slow to deliver the cancel) its worker was
    # killed and the run settled as interrupted: never left running.
    assert statuses and statuses <= {"cancelled", "interrupted"}

    # The cancelled samples run again (new attempts), the agent now answering at once.
    df = loom_nb.evaluate("tests.ray_agents:make_agent", tasks, store=store, executor="ray",
                          name="cut", progress=False)
    assert df.outcome.eq("answered").all() and list(df.output) == [
        f"answer: hang {i}" for i in range(4)]


# -- what cannot be shipped to a worker: clear errors before any task starts ------------------

def _closure_agent() -> Agent:
    suffix = "!"
    return Agent(Model.function(lambda request: "hi" + suffix), name="closure")


@pytest.mark.parametrize(("agent", "message"), [
    (_closure_agent(), "cannot be pickled.*Pass a factory instead.*'package.module:function'"),
    (lambda: _closure_agent(), "a lambda, a closure.*'package.module:function'"),
    ("tests.ray_agents:not_an_agent", "returned str, not an Agent"),
    ("tests.no_such_module:make", "cannot import the factory.*every worker"),
    ("make_agent", "not a factory reference.*'package.module:function'"),
])
def test_an_agent_that_cannot_reach_a_worker_says_to_use_a_factory(
        agent: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        loom_nb.evaluate(agent, ["x"], store=str(tmp_path / "e.sqlite"), executor="ray",
                         progress=False)


def test_an_in_memory_store_cannot_be_shared_with_workers() -> None:
    with pytest.raises(ConfigError, match="postgresql://.*SQLite file path"):
        loom_nb.evaluate("tests.ray_agents:make_agent", ["x"], executor="ray", progress=False)


def test_a_factory_reference_runs_locally_too_and_executors_resolve() -> None:
    df = loom_nb.evaluate("tests.ray_agents:make_agent", ["q tool", "q"], progress=False)
    assert list(df.output) == ["done: Q TOOL", "answer: q"] and set(df.variant) == {"shared"}
    assert isinstance(resolve_executor(None), LocalExecutor)
    assert isinstance(resolve_executor("ray"), RayExecutor)
    assert isinstance(LocalExecutor(), Executor)
    with pytest.raises(ConfigError, match="'local', 'ray' or an object"):
        resolve_executor("dask")  # type: ignore[arg-type]


def test_a_custom_executor_gets_every_sample(tmp_path: Path) -> None:
    class Counting(LocalExecutor):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []
            self.closed = False

        async def run(self, variant, item, session_id, identity):  # noqa: ANN001, ANN202
            self.seen.append(session_id)
            return await super().run(variant, item, session_id, identity)

        def close(self) -> None:
            self.closed = True

    runner = Counting()
    df = loom_nb.evaluate({"A": "tests.ray_agents:make_agent"}, ["x", "y"], executor=runner,
                          progress=False)
    assert sorted(runner.seen) == sorted(df.session_id) and runner.closed


def test_code_from_main_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle
    import sys

    from loom_nb._ray_executor import _refers_to_main

    def helper() -> Agent:
        return Agent(Model.function(lambda request: "hi"))

    helper.__module__, helper.__qualname__ = "__main__", "helper"
    monkeypatch.setattr(sys.modules["__main__"], "helper", helper, raising=False)
    with pytest.raises(ConfigError, match="defined in __main__.*'package.module:helper'"):
        loom_nb.evaluate(helper, ["x"], executor="ray", progress=False)
    assert _refers_to_main(pickle.dumps(helper))
    assert not _refers_to_main(pickle.dumps(("__main__ is a word", exact)))


def test_sqlite_is_refused_when_a_ray_node_is_another_machine() -> None:
    import socket

    from loom_nb._ray_executor import _check_one_machine

    class Cluster:  # what ray.nodes() says about a cluster of this host and another
        def __init__(self, hosts: list[str]) -> None:
            self.hosts = hosts

        def nodes(self) -> list[dict[str, Any]]:
            return [{"NodeManagerHostname": h, "Alive": True} for h in self.hosts]

    _check_one_machine(Cluster([socket.gethostname()] * 2), "/tmp/e.sqlite")
    with pytest.raises(ConfigError, match="every Ray node on this machine.*postgresql://"):
        _check_one_machine(Cluster([socket.gethostname(), "gpu-node-7"]), "/tmp/e.sqlite")
