"""Every exception class of loom_nb is declared in loom_nb.errors (issue 16), bar the few private
ones that carry a state between two functions of one module and never leave it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import loom_nb
from loom_nb import errors

#: Module-private carriers, documented in the errors module's docstring.
PRIVATE = {"ConnectFailed", "ServerGone", "CallTimeout", "Outside", "Missing", "Escaped"}


def test_every_exception_class_lives_in_the_errors_module() -> None:
    outside = []
    for info in pkgutil.walk_packages(loom_nb.__path__, "loom_nb."):
        if info.name == "loom_nb.errors" or info.name.startswith("loom_nb.notebook") \
                or info.name.endswith("_reaper"):
            continue  # the notebook layer imports IPython; the reaper is a script
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == info.name and not name.startswith("_")
                    and name not in PRIVATE):
                outside.append(f"{info.name}.{name}")
    assert outside == []


def test_the_notebook_layers_errors_are_the_errors_modules() -> None:
    from loom_nb.notebook import magics
    assert magics.CommandError is errors.CommandError and magics.RunCancelled is errors.RunCancelled
    assert issubclass(errors.CommandError, errors.ConfigError)
    from loom_nb.export import ExportError
    assert ExportError is errors.ExportError and issubclass(ExportError, ValueError)
