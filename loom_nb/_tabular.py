"""Data-science values as tool results: pandas and numpy as bounded Markdown tables.

A tool in a notebook often returns a DataFrame, a Series or an array; the model reads them best
as a small Markdown table with the shape said first, never as the whole of a large frame. This
module never imports pandas, numpy or matplotlib: it recognises their values by the module of
their type, so the kernel imports (and serializes plain values) without them installed.
"""

from __future__ import annotations

from typing import Any

from .errors import ToolError

#: The most rows and columns a table shows; past them it says how many more there are.
MAX_ROWS = 20
MAX_COLUMNS = 20
#: The most characters a cell shows (a long text cell would otherwise make the table unreadable).
MAX_CELL = 80

_FIGURES = frozenset({"Figure", "SubFigure", "Axes"})


def _family(value: Any) -> str:
    """The top-level package of ``value``'s type or of a base class ('' for builtins)."""
    for cls in type(value).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in ("pandas", "numpy", "matplotlib"):
            return root
    return ""


def tabular(value: Any, tool_name: str) -> str | None:
    """The text for a pandas/numpy value (None for any other value).

    A matplotlib figure or axes never gets here (it is sent as an image, see
    ``loom_nb.tools.split_media``); a SubFigure is a :class:`ToolError` that says what to return.
    """
    family = _family(value)
    if family == "pandas":
        return _pandas(value)
    if family == "numpy":
        return _numpy(value)
    if family == "matplotlib" and any(c.__name__ in _FIGURES for c in type(value).__mro__):
        raise ToolError(
            f"Tool {tool_name!r} returned a matplotlib {type(value).__name__}, which cannot be "
            f"drawn on its own. Return its parent Figure (sent to the model as an image), or "
            f"loom_nb.Image(figure)."
        )
    return None


def json_fallback(value: Any) -> Any:
    """For JSON: a numpy scalar or array nested in a result as its Python value."""
    if _family(value) == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Unable to serialize unknown type: {type(value)!r}")


def _pandas(value: Any) -> str | None:
    kind = type(value).__name__
    if hasattr(value, "columns") and hasattr(value, "iloc"):  # DataFrame
        rows, cols = value.shape
        title = f"DataFrame: {_count(rows, 'row')} × {_count(cols, 'column')}"
        frame = value
    elif hasattr(value, "to_frame") and hasattr(value, "iloc"):  # Series
        rows, cols = len(value), 1
        name = value.name if value.name is not None else "value"
        title = f"Series {_cell(name)!r}: {_count(rows, 'row')}, dtype {value.dtype}"
        frame = value.to_frame(name=name)
    elif kind == "Index" or hasattr(value, "to_series"):  # an Index: its values as a list
        return _numpy(value.to_numpy())
    else:
        return None
    shown = frame.iloc[:MAX_ROWS, :MAX_COLUMNS]
    show_index = type(frame.index).__name__ != "RangeIndex" or frame.index.name is not None
    header = [str(c) for c in shown.columns]
    body = [[_cell(v) for v in row] for row in shown.itertuples(index=False, name=None)]
    if show_index:
        header.insert(0, str(frame.index.name) if frame.index.name is not None else "")
        for label, row in zip(shown.index, body, strict=True):
            row.insert(0, _cell(label))
    return _table(title, header, body, rows - len(body), cols - min(cols, MAX_COLUMNS))


def _numpy(value: Any) -> str | None:
    ndim = getattr(value, "ndim", None)
    if ndim is None or not hasattr(value, "tolist"):
        return None
    if ndim == 0:  # a scalar (np.int64(3)) or a 0-d array: its Python value, as JSON would say
        import json
        return json.dumps(value.tolist(), ensure_ascii=False, default=str)
    title = f"numpy array: shape {tuple(value.shape)}, dtype {value.dtype}"
    if ndim > 2:  # no table for it: numpy's own summary, bounded by its threshold
        import numpy
        return f"{title}\n\n{numpy.array2string(value, threshold=MAX_ROWS * MAX_COLUMNS)}"
    rows = value.shape[0]
    cols = 1 if ndim == 1 else value.shape[1]
    part = value[:MAX_ROWS] if ndim == 1 else value[:MAX_ROWS, :MAX_COLUMNS]
    lines = [[v] for v in part.tolist()] if ndim == 1 else part.tolist()
    header = [""] + (["value"] if ndim == 1 else [str(i) for i in range(min(cols, MAX_COLUMNS))])
    body = [[str(i)] + [_cell(v) for v in line] for i, line in enumerate(lines)]
    return _table(title, header, body, rows - len(body), cols - min(cols, MAX_COLUMNS))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _cell(value: Any) -> str:
    # A pipe or a line break would end the cell or the row of the Markdown table. Cut before
    # escaping (escaping only lengthens), so that a huge cell costs MAX_CELL characters of work.
    raw = str(value)
    text = raw[:MAX_CELL].replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text if len(raw) <= MAX_CELL and len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def _table(title: str, header: list[str], body: list[list[str]], more_rows: int,
           more_cols: int) -> str:
    lines = [title, ""]
    if header:
        lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
        lines.append("|" + "---|" * len(header))
        lines.extend("| " + " | ".join(row) + " |" for row in body)
    notes = []
    if more_rows > 0:
        notes.append(f"... {_count(more_rows, 'more row')}")
    if more_cols > 0:
        notes.append(f"... {_count(more_cols, 'more column')} not shown")
    return "\n".join(lines + notes)
