"""Tool results from pandas, numpy and matplotlib: bounded Markdown tables, and a clear refusal
for figures; the kernel imports and serializes plain values without any of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from loom_nb import Agent, Model, tool
from loom_nb.tools import serialize_result

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


def test_a_large_dataframe_is_a_bounded_table_with_its_shape() -> None:
    frame = pd.DataFrame({f"c{i}": range(1000) for i in range(25)})
    frame["c0"] = "a|b\nc"
    text = serialize_result(frame, "t")
    lines = text.splitlines()
    assert lines[0] == "DataFrame: 1,000 rows × 25 columns"
    assert lines[2] == "| " + " | ".join(f"c{i}" for i in range(20)) + " |"
    rows = [line for line in lines[4:] if line.startswith("|")]
    assert len(rows) == 20 and rows[0].startswith("| a\\|b c | 0 |") and rows[-1].endswith("| 19 |")
    assert lines[-2:] == ["... 980 more rows", "... 5 more columns not shown"]
    assert len(text) < 6000


def test_an_index_that_means_something_is_a_column_and_a_series_is_a_table() -> None:
    frame = pd.DataFrame({"temp": [21.5, 19.0]}, index=pd.Index(["Oslo", "Rome"], name="city"))
    assert serialize_result(frame, "t") == (
        "DataFrame: 2 rows × 1 column\n\n| city | temp |\n|---|---|\n| Oslo | 21.5 |\n| Rome | 19.0 |")
    series = pd.Series([3, 4], index=["x", "y"], name="n")
    assert serialize_result(series, "t") == (
        "Series 'n': 2 rows, dtype int64\n\n|  | n |\n|---|---|\n| x | 3 |\n| y | 4 |")


def test_numpy_arrays_and_scalars() -> None:
    assert serialize_result(np.arange(6).reshape(2, 3), "t") == (
        "numpy array: shape (2, 3), dtype int64\n\n|  | 0 | 1 | 2 |\n|---|---|---|---|\n"
        "| 0 | 0 | 1 | 2 |\n| 1 | 3 | 4 | 5 |")
    long = serialize_result(np.zeros(50), "t")
    assert long.startswith("numpy array: shape (50,), dtype float64") and long.endswith("... 30 more rows")
    assert "[[[ 0  1" in serialize_result(np.arange(24).reshape(2, 3, 4), "t")
    assert serialize_result(np.int64(4), "t") == "4"
    assert serialize_result({"mean": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)}, "t") == (
        '{"mean": 0.5, "n": 3, "v": [0, 1]}')


def test_a_figure_goes_back_to_the_model_as_a_png_image() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    @tool
    def plot() -> object:
        figure = Figure(figsize=(2, 1))
        figure.add_subplot().plot([1, 2, 3])
        return figure

    model = Model.scripted([{"tool": "plot", "args": {}}, "A rising line."])
    result = Agent(model, tools=[plot]).run_sync("go")
    (call,) = result.tool_calls
    assert result.status == "completed" and not call.is_error
    assert (call.content or "").startswith("Returned image (image/png, ")
    (tool_message,) = [m for m in result.messages if m.role == "tool"]
    (image,) = tool_message.tool_results[0].media
    assert image.media_type == "image/png" and image.data is not None
    assert image.data.startswith(b"\x89PNG")


def test_the_kernel_serializes_without_pandas_numpy_or_matplotlib() -> None:
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in ("pandas", "numpy", "matplotlib"):
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        from loom_nb import Agent, Model, tool
        from loom_nb.tools import serialize_result

        @tool
        def rows() -> list:
            return [{"a": 1}]

        result = Agent(Model.scripted([{"tool": "rows", "args": {}}, "ok"]), tools=[rows]).run_sync("go")
        assert result.tool_calls[0].content == '[{"a": 1}]', result.tool_calls
        assert serialize_result(type("Opaque", (), {})(), "t") is None
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    # The opaque value must still be refused with the usual ToolError (not an ImportError).
    assert "ToolError" in done.stderr and "returned an object of type Opaque" in done.stderr, done.stderr
    assert "blocked" not in done.stderr
