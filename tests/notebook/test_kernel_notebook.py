"""%loom in a real Jupyter kernel (ipykernel via nbclient): where the outputs of a run land.

The run happens on loom_nb's background loop thread; sync tools run in a worker thread of that
loop. Their prints and the live display updates must land in the cell that started the run, not
in whichever cell executes later.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

SETUP = '''\
%load_ext loom_nb
import asyncio
import time
from loom_nb import Agent, Model

# Each tool works longer than the display's throttle interval (0.15 s), so each step is redrawn.
def shout(word: str) -> str:
    """Shout a word (a sync tool: runs in a worker thread)."""
    time.sleep(0.3)
    print("sync tool says", word)
    return word.upper()

async def whisper(word: str) -> str:
    """Whisper a word (an async tool: runs on the loop thread)."""
    await asyncio.sleep(0.3)
    print("async tool says", word)
    return word.lower()

agent = Agent(Model.scripted([
    {"tool": "shout", "args": {"word": "hi"}},
    {"tool": "whisper", "args": {"word": "HO"}},
    "Done: HI ho",
]), tools=[shout, whisper])
'''

CELLS = [
    SETUP,
    "%loom run -a agent -o r Shout hi, then whisper HO",
    'print("next cell")',
    "import json\nprint(r.to_text())\nprint(json.dumps(r.provenance()))",
]


class RecordingClient(NotebookClient):
    """Records which cell each kernel message was attributed to (by its parent header)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, str]] = []

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.seen.append((cell_index, msg["msg_type"]))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, RecordingClient]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    workdir = tmp_path_factory.mktemp("nb")
    # IPC (not TCP) avoids ipykernel's unencrypted-TCP warning; an absolute socket path because
    # the kernel runs in ``workdir``, not in the test's cwd.
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(workdir / "kernel"))
    client = RecordingClient(nb, km=km, timeout=120, allow_errors=False,
                             resources={"metadata": {"path": str(workdir)}})
    # Live updates on, as in JupyterLab (the kernel's default); no real model.
    env = {k: v for k, v in os.environ.items() if k not in {"LOOM_LIVE", "LOOM_MODEL"}}
    client.execute(env=env)
    return nb, client


def _texts(outputs: list[Any], kind: str) -> str:
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == kind)


def test_tool_prints_land_in_the_cell_of_the_run(executed: tuple[Any, RecordingClient]) -> None:
    nb, _ = executed
    run_cell, next_cell = nb.cells[1].outputs, nb.cells[2].outputs
    printed = _texts(run_cell, "stdout")
    assert "sync tool says hi" in printed
    assert "async tool says HO" in printed
    assert _texts(next_cell, "stdout") == "next cell\n"


def test_the_run_cell_holds_one_final_deterministic_render(
        executed: tuple[Any, RecordingClient]) -> None:
    nb, _ = executed
    shown = [o for o in nb.cells[1].outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1  # live updates replaced the placeholder in place
    assert not any(o["output_type"] == "execute_result" for o in nb.cells[1].outputs)
    text, provenance = _texts(nb.cells[3].outputs, "stdout").rstrip("\n").rsplit("\n", 1)
    assert shown[0]["data"]["text/plain"] == text
    summary, transcript = text.split("\n", 1)
    assert re.fullmatch(r"Run completed · 3 turns · 2 tool calls · \d+ tokens "
                        r"\(\d+ in, \d+ out\) · scripted:scripted", summary)
    assert transcript == '→ shout(word="hi")\n  ← HI\n→ whisper(word="HO")\n  ← ho\nDone: HI ho'
    assert "class='loom-run'" in shown[0]["data"]["text/html"]
    loom = shown[0]["metadata"]["loom"]
    assert loom == json.loads(provenance)
    assert loom["run_id"].startswith("run_") and loom["status"] == "completed"
    assert loom["model"] == "scripted:scripted" and loom["usage"]["requests"] == 3


def test_live_updates_from_the_loop_thread_belong_to_the_run_cell(
        executed: tuple[Any, RecordingClient]) -> None:
    _, client = executed
    updates = [cell for cell, kind in client.seen if kind == "update_display_data"]
    # At least one redraw from the loop thread while each tool works (they outlast the
    # throttle's interval), plus the final render from the cell's thread; every one is
    # attributed to the run's cell.
    assert len(updates) >= 3
    assert set(updates) == {1}
