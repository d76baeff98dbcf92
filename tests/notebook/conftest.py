"""Fixtures for the notebook layer: a real IPython shell with ``%load_ext loom_nb``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# IPython writes a profile and a history database; keep them out of the developer's home.
os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="loom-ipython-"))

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from loom_nb.notebook.magics import LoomMagics


def _shell() -> InteractiveShell:
    if InteractiveShell.initialized():
        return InteractiveShell.instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=config)


@pytest.fixture
def ip(monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """The shell with a freshly loaded extension and the names a test defines removed after it."""
    monkeypatch.delenv("LOOM_LIVE", raising=False)
    shell = _shell()
    manager = shell.extension_manager
    if "loom_nb" in manager.loaded:
        manager.unload_extension("loom_nb")  # a fresh LoomMagics: no defaults left from a test
    assert manager.load_extension("loom_nb") is None
    before = set(shell.user_ns)
    yield shell
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


@pytest.fixture
def magics(ip: InteractiveShell) -> LoomMagics:
    return ip.magics_manager.registry["LoomMagics"]


@pytest.fixture
def live(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live updates on, as in a Jupyter kernel (a bare shell turns them off by default)."""
    monkeypatch.setenv("LOOM_LIVE", "1")

