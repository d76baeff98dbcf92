"""The public names: the contract outside code relies on (DESIGN.md section 1)."""

from __future__ import annotations

import subprocess
import sys

import loom_nb

CONTRACT = ["Agent", "Capability", "Document", "Image", "Model", "Runtime", "RuntimeSignal", "RuntimeTask",
            "SessionConfig", "SignalAdapter", "RunContext", "tool"]


def test_contract_names_import() -> None:
    namespace: dict[str, object] = {}
    exec(f"from loom_nb import {', '.join(CONTRACT)}", namespace)
    assert all(namespace[name] is getattr(loom_nb, name) for name in CONTRACT)


def test_all_is_sorted_complete_and_resolvable() -> None:
    assert loom_nb.__all__ == sorted(loom_nb.__all__)
    assert set(CONTRACT) <= set(loom_nb.__all__)
    for name in loom_nb.__all__:
        assert hasattr(loom_nb, name), name
    public = {n for n in vars(loom_nb) if not n.startswith("_") and not isinstance(
        getattr(loom_nb, n), type(sys)) and n not in {"annotations", "Any"}}
    public -= {"load_ipython_extension", "unload_ipython_extension"}
    assert public == set(loom_nb.__all__) - {"__version__"}


def test_import_loads_no_notebook_or_dataframe_library() -> None:
    code = ("import sys, loom_nb; "
            "from loom_nb import Agent, Model, tool; "
            "Agent(Model.scripted(['hi'])).run_sync('x'); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('IPython', 'ipywidgets', 'pandas', 'anthropic', 'openai', 'mcp', 'ipykernel', "
            "'psycopg', 'psycopg_pool', 'genai_prices', 'ray')); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_contract_signatures() -> None:
    from loom_nb import RunContext, RuntimeSignal, RuntimeTask, SessionConfig

    task = RuntimeTask("goal", {"a": 1}, ["c"], {"m": 2})
    assert (task.goal, task.inputs, task.criteria, task.metadata) == ("goal", {"a": 1}, ["c"], {"m": 2})
    assert SessionConfig() == SessionConfig(id=None, store=None, metadata={})
    ctx = RunContext(inputs={"x": 1})
    assert ctx.inputs == {"x": 1} and ctx.metadata == {} and ctx.budget is None
    sig = RuntimeSignal(source="cron", type="tick")
    assert sig.urgency == "normal" and sig.summary == "" and sig.payload == {} and sig.dedupe_key is None


def test_structured_output_and_tool_choice_signatures() -> None:
    import inspect

    from loom_nb import Agent, OutputValidationError
    from loom_nb.output import RunOptions

    assert issubclass(OutputValidationError, loom_nb.ModelError)
    params = inspect.signature(Agent).parameters
    assert {"output_type", "output_mode", "output_retries", "deps_type"} <= set(params)
    assert set(RunOptions.__annotations__) == {"output_type", "output_mode", "output_retries",
                                               "tool_choice", "deps"}
