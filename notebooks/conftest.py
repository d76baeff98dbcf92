"""pytest settings for the example notebooks, which nbval executes in a Jupyter kernel.

nbval records the first ``display_data`` of an output and ignores ``update_display_data``, while
a saved notebook holds the output as its last update left it. A ``%loom run`` cell with live
updates would therefore be compared by its "running" placeholder. With ``LOOM_LIVE=0`` in the
kernel's environment a run shows only its final render, which is what the saved notebook holds.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    # nbval starts the kernel while the notebook's first cell is set up, with a copy of this
    # process's environment; the variable is restored once that has happened.
    previous = os.environ.get("LOOM_LIVE")
    os.environ["LOOM_LIVE"] = "0"
    try:
        return (yield)
    finally:
        if previous is None:
            os.environ.pop("LOOM_LIVE", None)
        else:
            os.environ["LOOM_LIVE"] = previous
