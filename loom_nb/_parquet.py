"""Parquet files of the export frames (pyarrow, the ``parquet`` extra, imported when used)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import ExportError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_parquet", "to_parquet"]


def _need_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ExportError(
            "Parquet needs pyarrow, which is not installed. Install it with "
            "`pip install 'loom-nb[parquet]'` (or `pip install pyarrow`)."
        ) from None


def to_parquet(frames: pd.DataFrame | dict[str, pd.DataFrame], path: str | os.PathLike[str]) -> None:
    """Write a frame to a Parquet file, or a dict of frames to a folder of ``{name}.parquet``.

    ``read_parquet`` gives back identical frames (dtypes, time zones and missing values).
    """
    _need_pyarrow()
    if isinstance(frames, dict):
        os.makedirs(path, exist_ok=True)
        for name, frame in frames.items():
            frame.to_parquet(os.path.join(path, f"{name}.parquet"), engine="pyarrow")
        return
    frames.to_parquet(path, engine="pyarrow")


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """A frame written by :func:`to_parquet` (a dict of frames for a folder)."""
    _need_pyarrow()
    import pandas as pd

    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".parquet"))
        return {n[: -len(".parquet")]: pd.read_parquet(os.path.join(path, n), engine="pyarrow")
                for n in names}
    return pd.read_parquet(path, engine="pyarrow")
