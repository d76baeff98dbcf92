"""Where :func:`loom_nb.evaluate` runs its samples: in this process (the default) or as Ray tasks.

An executor is a small protocol of three methods (:class:`Executor`). ``evaluate`` keeps
everything else on the driver (the notebook's process): which samples to run or resume, the
session ids and attempts, the scorers, the progress display and the frame. The executor only
runs one sample (an agent on one task, in its own session of the shared store) and hands back
the :class:`~loom_nb.result.RunResult`; so resume, the frames and the report are the same
whatever runs the samples.

* ``executor="local"`` (or None): :class:`LocalExecutor`, the samples run on loom_nb's
  background loop in this process, ``concurrency`` at a time.
* ``executor="ray"``: :class:`~loom_nb._ray_executor.RayExecutor` with its defaults (a local
  Ray cluster unless this process already joined one); pass ``RayExecutor(address=...)`` to
  choose the cluster.

Agents can be given by reference, ``"package.module:function"`` naming a factory that takes no
argument and returns the :class:`~loom_nb.agent.Agent` (or the function itself when it is
importable by that name). A worker process builds its agent by importing and calling the
factory once; an agent object is shipped by pickle, which a closure, a lambda tool or a live
client defeats: the error then says to use a factory.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

from .errors import ConfigError

if TYPE_CHECKING:
    from ._eval_tasks import EvalTask
    from .agent import Agent
    from .result import RunResult
    from .store import SessionStore

__all__ = ["AgentSpec", "Executor", "ExecutorName", "LocalExecutor", "RayExecutor",
           "agent_spec", "load_factory", "resolve_executor"]

ExecutorName: TypeAlias = Literal["local", "ray"]


@dataclass(frozen=True)
class AgentSpec:
    """One variant's agent: the object (built on the driver) and, when it was given by
    reference, the ``"module:function"`` factory a worker process builds its own copy from."""

    agent: Agent
    factory: str | None = None


@runtime_checkable
class Executor(Protocol):
    """What runs the samples of one :func:`~loom_nb.evaluate` call.

    ``open`` is called once before any sample, with every variant's agent and the evaluation's
    store (check here what cannot work, and raise ConfigError); ``run`` once per sample that is
    not kept from the store, at most ``concurrency`` at a time, each cancelled (``CancelledError``)
    when the evaluation is interrupted; ``close`` once at the end, even after an error.
    ``run`` writes the sample's session to ``store`` (``session_id``, with ``identity`` as the
    run context's ``loom_eval`` labels) and returns the run's result; an exception becomes the
    sample's ``error`` row, which resume runs again.
    """

    def open(self, agents: Mapping[str, AgentSpec], store: SessionStore) -> None: ...

    async def run(self, variant: str, item: EvalTask, session_id: str,
                  identity: Mapping[str, Any]) -> RunResult: ...

    def close(self) -> None: ...


class LocalExecutor:
    """The default: each sample runs in this process, on loom_nb's background loop."""

    def __init__(self) -> None:
        self._agents: Mapping[str, AgentSpec] = {}
        self._store: SessionStore | None = None

    def open(self, agents: Mapping[str, AgentSpec], store: SessionStore) -> None:
        self._agents, self._store = agents, store

    async def run(self, variant: str, item: EvalTask, session_id: str,
                  identity: Mapping[str, Any]) -> RunResult:
        from .evaluation import run_sample

        assert self._store is not None, "LocalExecutor.run before open"
        return await run_sample(self._agents[variant].agent, item, self._store, session_id,
                                identity)

    def close(self) -> None:
        self._agents, self._store = {}, None


def resolve_executor(executor: Executor | ExecutorName | None) -> Executor:
    """The executor ``evaluate(executor=...)`` names."""
    if executor is None or executor == "local":
        return LocalExecutor()
    if executor == "ray":
        from ._ray_executor import RayExecutor

        return RayExecutor()
    if isinstance(executor, str) or not isinstance(executor, Executor):
        raise ConfigError(f"evaluate(executor=...) takes 'local', 'ray' or an object with "
                          f"open/run/close (loom_nb.executors.Executor), not {executor!r}.")
    return executor


def __getattr__(name: str) -> Any:
    # RayExecutor's module imports nothing of Ray at import time either, but keeping it apart
    # keeps this module small and the Ray-only code in one place.
    if name == "RayExecutor":
        from ._ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)


if TYPE_CHECKING:
    from ._ray_executor import RayExecutor


# -- agents by reference ---------------------------------------------------------------------

def agent_spec(value: Any, where: str) -> AgentSpec:
    """An Agent, a ``"module:function"`` factory reference, or an importable factory function,
    as an :class:`AgentSpec` (the factory is called here, once, to build the driver's copy)."""
    from .agent import Agent

    if isinstance(value, Agent):
        return AgentSpec(value)
    if isinstance(value, str):
        return AgentSpec(load_factory(value, where), value)
    if callable(value):
        ref = _reference_of(value, where)
        return AgentSpec(load_factory(ref, where), ref)
    raise ConfigError(f"{where} must be an Agent or a factory reference 'module:function', not "
                      f"{type(value).__name__}.")


def load_factory(ref: str, where: str = "the agent") -> Agent:
    """Import ``"module:function"`` and call it: the Agent it returns."""
    from .agent import Agent

    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{where}: {ref!r} is not a factory reference; write "
                          f"'package.module:function' (a function taking no argument that "
                          f"returns the Agent).")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import the factory {ref!r} ({type(exc).__name__}: "
                          f"{exc}). The module must be importable (on sys.path, or installed) "
                          f"here and in every worker.") from None
    if not callable(target):
        raise ConfigError(f"{where}: {ref!r} is a {type(target).__name__}, not a function.")
    agent = target()
    if not isinstance(agent, Agent):
        raise ConfigError(f"{where}: the factory {ref!r} returned {type(agent).__name__}, not "
                          f"an Agent.")
    return agent


def _reference_of(factory: Callable[..., Any], where: str) -> str:
    """``"module:qualname"`` for a function importable by that name; else a clear error."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    hint = (f"{where}: a factory is shipped to worker processes by its import path, and "
            f"{factory!r} has none that works there")
    if not inspect.isfunction(factory) or "<" in qualname or not module:
        raise ConfigError(f"{hint} (a lambda, a closure or a callable object). Define it at "
                          f"the top level of a module and pass 'package.module:function'.")
    if module == "__main__":
        raise ConfigError(f"{hint} (it is defined in __main__, a notebook or a script, which "
                          f"worker processes do not have). Move it to a module and pass "
                          f"'package.module:{qualname}'.")
    ref = f"{module}:{qualname}"
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        found = None
    if found is not factory:
        raise ConfigError(f"{hint} ({ref!r} does not import it back). Pass a top-level function "
                          f"of a module.")
    return ref
