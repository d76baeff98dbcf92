"""The spans reach a real OTLP receiver nobody here wrote: an MLflow tracking server on loopback.

The server runs from its own virtualenv (``make receiver``: MLflow's dependencies are many and
stay out of the project's lock); the spans go over OTLP/HTTP with the official exporter, and
MLflow's own client (``mlflow.search_traces``, in that virtualenv) reads back what it stored.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from loom_nb import Agent, Model, SessionConfig, tool
from loom_nb.runtime import DelegationPolicy, Runtime
from loom_nb.tracing import Tracing, export_session

ROOT = Path(__file__).resolve().parents[1]
RECEIVER = Path(os.environ.get("LOOM_OTEL_RECEIVER_PYTHON", ROOT / ".venv-receiver" / "bin" / "python"))
INSTALL = ("make receiver   (or: python3 -m uv venv .venv-receiver && python3 -m uv pip install "
           "-p .venv-receiver/bin/python -r tests/otel_receiver/requirements.txt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not RECEIVER.exists():
        pytest.skip(f"the MLflow receiver is not installed; install it with: {INSTALL}")
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow = RECEIVER.parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--default-artifact-root",
         str(work / "artifacts")],
        stdout=(work / "server.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # the first start creates its database: ~40 s here
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start:\n" +
                                       (work / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, 15)  # its own process group: the server and its worker
        server.wait(timeout=30)


def stored_spans(url: str, experiment_id: str) -> list[dict[str, Any]]:
    """The traces MLflow stored, read with MLflow's client: one dict per span."""
    script = textwrap.dedent(f"""
        import json, mlflow
        mlflow.set_tracking_uri({url!r})
        rows = []
        for t in mlflow.search_traces(locations=[{experiment_id!r}], return_type="list"):
            for s in t.data.spans:
                rows.append({{"trace": t.info.trace_id, "name": s.name, "id": s.span_id,
                              "parent": s.parent_id, "type": s.span_type,
                              "status": str(s.status.status_code), "attributes": s.attributes}})
        print(json.dumps(rows, default=str))
    """)
    out = subprocess.run([str(RECEIVER), "-c", script], capture_output=True, text=True, timeout=120,
                         check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"


@tool
def explode() -> str:
    """Always fails."""
    raise RuntimeError("boom")


def exporter_to(url: str, experiment_id: str) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers={"x-mlflow-experiment-id": experiment_id})


def test_mlflow_stores_the_tree_of_a_run_with_delegation_and_an_approval(
        mlflow_server: str, tmp_path: Path) -> None:
    live_id = post(f"{mlflow_server}/api/2.0/mlflow/experiments/create", {"name": "live"})["experiment_id"]
    later_id = post(f"{mlflow_server}/api/2.0/mlflow/experiments/create", {"name": "later"})["experiment_id"]
    provider = TracerProvider(resource=Resource.create({"service.name": "loom-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter_to(mlflow_server, live_id)))
    sub = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, {"tool": "explode", "args": {}},
                                "Wiped /x."]), tools=[wipe, explode], name="cleaner")
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "cleaner", "task": "wipe /x"}},
                                 "The cleaner is done."]), name="lead",
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"cleaner": sub}),
                                     tracing=Tracing(provider)))
    session = lead.session(SessionConfig(store=str(tmp_path / "s.db")))
    paused = session.run_sync("Clean up.")
    done = paused.approve().resume_sync()
    assert done.status == "completed"
    provider.shutdown()

    spans = stored_spans(mlflow_server, live_id)
    assert len({s["trace"] for s in spans}) == 1  # pause, resume and the sub-agent: one trace
    by_id = {s["id"]: s for s in spans}
    assert [s["name"] for s in spans if s["parent"] is None] == ["invoke_agent lead"]
    assert all(s["parent"] in by_id for s in spans if s["parent"] is not None)

    def parent(span: dict[str, Any]) -> str:
        return str(by_id[span["parent"]]["name"])

    names = sorted((s["name"], parent(s) if s["parent"] else "") for s in spans)
    assert names == sorted([
        ("invoke_agent lead", ""), ("chat scripted", "invoke_agent lead"),
        ("execute_tool delegate", "invoke_agent lead"),
        ("invoke_agent cleaner", "execute_tool delegate"), ("chat scripted", "invoke_agent cleaner"),
        ("execute_tool wipe", "invoke_agent cleaner"),
        ("invoke_agent lead", "invoke_agent lead"),  # the resumed segment
        ("invoke_agent cleaner", "invoke_agent cleaner"),
        ("execute_tool wipe", "invoke_agent cleaner"), ("chat scripted", "invoke_agent cleaner"),
        ("execute_tool explode", "invoke_agent cleaner"), ("chat scripted", "invoke_agent cleaner"),
        ("execute_tool delegate", "invoke_agent lead"), ("chat scripted", "invoke_agent lead"),
    ])
    # MLflow reads the GenAI operation names into its own span types.
    assert {s["type"] for s in spans} == {"AGENT", "CHAT_MODEL", "TOOL"}
    root = next(s for s in spans if s["parent"] is None)["attributes"]
    assert (root["gen_ai.operation.name"], root["gen_ai.agent.name"], root["loom.run.id"],
            root["loom.run.status"]) == ("invoke_agent", "lead", done.run_id, "needs_approval")
    [failed] = [s for s in spans if s["name"] == "execute_tool explode"]
    assert failed["status"].endswith("ERROR") and failed["attributes"]["error.type"] == "RuntimeError"
    chats = [s["attributes"] for s in spans if s["name"] == "chat scripted"]
    assert sum(int(c["gen_ai.usage.input_tokens"]) for c in chats) == (
        done.usage.input_tokens)  # the resumed run's usage counts the whole run, sub-agent included

    # The same tree again, from the stored session, into another experiment.
    assert export_session(session, exporter_to(mlflow_server, later_id)) == len(spans)
    again = stored_spans(mlflow_server, later_id)
    assert sorted((s["name"], s["type"], s["status"]) for s in again) == sorted(
        (s["name"], s["type"], s["status"]) for s in spans)
