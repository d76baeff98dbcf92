"""``evaluate(..., executor="ray")``: each sample runs as a Ray task (see docs/evaluation.md).

The driver (the notebook) decides what runs, scores and draws the progress; a Ray task runs one
sample in a worker process and writes its session to the shared store (PostgreSQL, or an SQLite
file when every node is this machine), and its RunResult comes back through Ray. The store is the
truth: a worker that dies leaves a ``running`` run, which the driver settles as ``interrupted``
as soon as Ray reports the worker gone (and resume, on any host, runs it again).

Ray tasks are not retried by Ray (``max_retries=0``): a retry would run the sample again in the
same session behind the driver's back; resume does it, in a fresh session, by the resume rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import pickletools
import socket
import threading
from dataclasses import replace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from ._eval_tasks import EvalTask
    from .agent import Agent
    from .executors import AgentSpec
    from .result import RunResult
    from .store import RunRecord, SessionStore

__all__ = ["INSTALL_HINT", "RayExecutor"]

INSTALL_HINT = "pip install 'loom-nb[ray]'"
#: Seconds a cancelled task gets to record its run as cancelled before its worker is killed.
CANCEL_GRACE = 5.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"evaluate(executor='ray') needs Ray, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return ray


class RayExecutor:
    """Run each sample as a Ray task.

    Args:
        address: the cluster to join (``"ray://head:10001"``, ``"auto"``...), passed to
            ``ray.init``; None starts a local cluster, unless this process already called
            ``ray.init`` (then that cluster is used and ``init`` is ignored).
        init: more ``ray.init`` keyword arguments (``num_cpus=``, ``runtime_env=``,
            ``include_dashboard=``...).
        num_cpus: the CPUs each sample's task reserves (Ray's scheduling unit; 1 by default).
        cancel_grace: seconds a cancelled task has to record its run as cancelled before Ray
            kills its worker process (the run then reads ``interrupted``).

    The Ray runtime stays up after the evaluation (starting one takes seconds to a minute):
    ``ray.shutdown()`` stops it.
    """

    def __init__(self, address: str | None = None, *, init: Mapping[str, Any] | None = None,
                 num_cpus: float = 1, cancel_grace: float = CANCEL_GRACE) -> None:
        if not num_cpus > 0 or not cancel_grace >= 0:
            raise ConfigError(f"RayExecutor(num_cpus=..., cancel_grace=...) must be positive, "
                              f"not {num_cpus!r}, {cancel_grace!r}.")
        self.address, self.init = address, dict(init or {})
        self.num_cpus, self.cancel_grace = num_cpus, cancel_grace
        self._payloads: dict[str, Any] = {}
        self._store: SessionStore | None = None
        self._spec = ""
        self._task: Any = None

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"

    def open(self, agents: Mapping[str, AgentSpec], store: SessionStore) -> None:
        ray = _ray()
        spec, kind = _shared_spec(store)
        payloads = {variant: _payload(variant, agent) for variant, agent in agents.items()}
        if not ray.is_initialized():
            ray.init(**{"address": self.address, **self.init})
        if kind == "sqlite":
            _check_one_machine(ray, spec)
        self._store, self._spec = store, spec
        self._payloads = {variant: ray.put(p) for variant, p in payloads.items()}
        self._task = ray.remote(_run_in_worker).options(
            num_cpus=self.num_cpus, max_retries=0, retry_exceptions=False)

    async def run(self, variant: str, item: EvalTask, session_id: str,
                  identity: Mapping[str, Any]) -> RunResult:
        ray = _ray()
        ref = self._task.remote(self._payloads[variant], self._spec, item, session_id,
                                dict(identity))
        try:
            result: RunResult = await asyncio.wrap_future(ref.future())
            return result
        except asyncio.CancelledError:
            # evaluate cancels each sample more than once (the gather, then each job): the
            # clean-up runs to its end regardless, bounded by cancel_grace.
            cleanup = asyncio.ensure_future(self._cancel(ray, ref, session_id))
            while not cleanup.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(cleanup)
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.LocalRayletDiedError, ray.exceptions.OutOfMemoryError) as exc:
            return self._lost(session_id, exc)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None  # the row reads as it would have locally
            raise

    def close(self) -> None:
        self._payloads, self._task = {}, None

    async def _cancel(self, ray: Any, ref: Any, session_id: str) -> None:
        """Ask the task to stop (the worker's run then records itself cancelled); if its run
        still goes after ``cancel_grace`` (Ray can take seconds to deliver a cancel to a busy
        worker), kill the worker and settle the run as interrupted. Either is resumable."""
        ray.cancel(ref)
        if await self._stopped(ray, ref, session_id, self.cancel_grace):
            return
        ray.cancel(ref, force=True)
        await _wait_ref(ray, ref, 2.0)
        self._settle_lost(session_id)

    async def _stopped(self, ray: Any, ref: Any, session_id: str, timeout: float) -> bool:
        """Whether the sample's run has stopped, or its task ended before starting one, within
        ``timeout`` seconds."""
        assert self._store is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            records = self._store.runs(session_id)
            if records and records[-1].status != "running":
                return True
            if not records and await _wait_ref(ray, ref, 0):
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.1)

    def _lost(self, session_id: str, exc: Exception) -> RunResult:
        """Ray says the worker is gone: its run (if it had started one), settled as
        interrupted, is the sample's result; else the sample fails with Ray's error."""
        from .evaluation import _result_from_store

        record = self._settle_lost(session_id)
        if record is None:
            raise exc
        assert self._store is not None
        return _result_from_store(self._store, record)

    def _settle_lost(self, session_id: str) -> RunRecord | None:
        """Settle the session's latest run as ``interrupted`` when it is still ``running``:
        its worker is known to be dead (Ray said so, or killed it), on whichever host it ran,
        where :func:`~loom_nb._recovery.settle` could only tell for this host."""
        from ._recovery import settle_dead

        assert self._store is not None
        records = self._store.runs(session_id)
        return settle_dead(self._store, records[-1]) if records else None


async def _wait_ref(ray: Any, ref: Any, timeout: float) -> bool:
    """Wait up to ``timeout`` s for a task to end, however it ends (the store says how). Polled:
    a second ``ref.future()`` after the first was cancelled is not reliably resolved."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ready, _ = ray.wait([ref], timeout=0)
        if ready or asyncio.get_running_loop().time() >= deadline:
            return bool(ready)
        await asyncio.sleep(0.05)


def _shared_spec(store: SessionStore) -> tuple[str, str]:
    """How a worker process opens the evaluation's store: a DSN or an SQLite path."""
    from .store import PostgresStore, SQLiteStore

    if isinstance(store, PostgresStore):
        return store.dsn, "postgres"
    if isinstance(store, SQLiteStore):
        return str(store.path), "sqlite"
    raise ConfigError(f"evaluate(executor='ray') writes each sample's session from a Ray worker "
                      f"process, which cannot reach {type(store).__name__}: pass "
                      f"store='postgresql://...' (any cluster) or an SQLite file path (a "
                      f"cluster on this machine only).")


def _check_one_machine(ray: Any, path: str) -> None:
    """SQLite is safe across processes of one machine, not over a network file system."""
    here = socket.gethostname()
    hosts = sorted({str(n.get("NodeManagerHostname")) for n in ray.nodes() if n.get("Alive")})
    if hosts != [here]:
        raise ConfigError(f"evaluate(executor='ray') with the SQLite store {path!r} needs every "
                          f"Ray node on this machine ({here}); the cluster has {hosts}. Use a "
                          f"PostgreSQL store (store='postgresql://...') that every node reaches.")


def _payload(variant: str, spec: AgentSpec) -> tuple[str, str | bytes]:
    """What a worker builds the variant's agent from: its factory reference, or its pickle."""
    if spec.factory is not None:
        return "factory", spec.factory
    hint = (f"evaluate(executor='ray') ships agent {variant!r} to worker processes, and it "
            f"cannot be pickled")
    fix = ("Pass a factory instead: a top-level function of an importable module that builds "
           "and returns the Agent, as 'package.module:function'.")
    try:
        data = pickle.dumps(spec.agent)
    except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same advice
        raise ConfigError(f"{hint} ({type(exc).__name__}: {exc}). {fix}") from None
    if _refers_to_main(data):
        raise ConfigError(f"{hint} for a worker: it refers to code defined in __main__ (the "
                          f"notebook or script), which worker processes do not have. {fix}")
    return "pickle", data


def _refers_to_main(data: bytes) -> bool:
    """Whether a pickle names a global of ``__main__`` (a notebook's function or class)."""
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST") and str(arg).startswith("__main__ "):
            return True  # protocols 0-2: "module name" in one argument
        if arg == "__main__":
            return True  # protocol 4: the module name a STACK_GLOBAL takes off the stack
    return False


# -- in the worker process -----------------------------------------------------------------------

#: The agents this worker process built, by payload: built once and reused by its later tasks,
#: as the driver's one agent serves every local sample.
_AGENTS: dict[tuple[str, str | bytes], Agent] = {}


def _worker_agent(payload: tuple[str, str | bytes]) -> Agent:
    from .executors import load_factory

    agent = _AGENTS.get(payload)
    if agent is None:
        _, value = payload
        agent = (load_factory(str(value)) if isinstance(value, str)
                 else pickle.loads(value))  # noqa: S301 - the driver's own agent
        _AGENTS[payload] = agent
    return agent


def _run_in_worker(payload: tuple[str, str | bytes], store_spec: str, item: EvalTask,
                   session_id: str, identity: dict[str, Any]) -> RunResult:
    """One sample, in a Ray worker: the same :func:`~loom_nb.evaluation.run_sample` as local
    evaluation, on this process's loom_nb loop, against its own connection to the store."""
    from . import _bridge
    from .evaluation import run_sample
    from .store import open_store

    agent = _worker_agent(payload)
    store = open_store(store_spec)
    done = threading.Event()
    future = _bridge.submit(_bridge._signal_when_done(
        run_sample(agent, item, store, session_id, identity), done))
    try:
        result = _bridge._wait(future)
    except BaseException:
        # ray.cancel raises TaskCancelledError (not a KeyboardInterrupt, which is all run_sync
        # handles) in this thread: cancel the run and let it record that before the task ends.
        future.cancel()
        done.wait(_bridge.CANCEL_GRACE_SECONDS)
        raise
    # The worker's closed session stays here (it holds locks and the store's connection): a
    # paused run is approved from the driver by opening its session from the shared store.
    return replace(result, session=None)
