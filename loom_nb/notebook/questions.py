"""Prompts that end in a question mark: ``%loom run ... Paris?`` runs the prompt.

IPython reads a line that ends in ``?`` as a help request (``obj?``) before any magic sees it, and
prompts often end in a question mark. Once the extension is loaded, an input transform turns a
``%loom`` line with arguments into the magic call first (:func:`keep_question_marks`).

A cell that loads the extension and asks in the same breath (``%load_ext loom_nb`` then
``%loom run Why?``) is transformed as a whole before ``%load_ext`` runs, so IPython has already
replaced the ``%loom`` line by a help request on its last word (``pinfo('Why')``). For that cell,
the extension wraps the help magics: a help request whose target ends a ``%loom`` line of the
cell being run, with the question mark, runs that line instead.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["keep_question_marks", "install", "uninstall"]

_LOOM_LINE = re.compile(r"^(\s*)%loom\s+(.*?)\s*$", re.DOTALL)
_HELP_MAGICS = ("pinfo", "pinfo2")


def keep_question_marks(lines: list[str]) -> list[str]:
    """An input transform: ``%loom run ... Paris?`` runs the prompt instead of asking for help.

    ``%loom?`` (help on the magic) is left alone.
    """
    out = []
    for line in lines:
        match = _LOOM_LINE.match(line)
        if match is None or not match.group(2).endswith("?"):
            out.append(line)
            continue
        newline = "\n" if line.endswith("\n") else ""
        call = f"get_ipython().run_line_magic('loom', {match.group(2)!r})"
        out.append(f"{match.group(1)}{call}{newline}")
    return out


class _HelpOrLoom:
    """A help magic that first checks whether it stands for a ``%loom ...?`` line of the cell."""

    def __init__(self, shell: Any, original: Any) -> None:
        self.shell, self.original = shell, original
        self.__doc__ = getattr(original, "__doc__", None)
        self._taken: tuple[int, set[int]] = (-1, set())  # lines already run, per cell

    def __call__(self, parameter_s: str = "", *args: Any, **kwargs: Any) -> Any:
        line = self._loom_line(parameter_s.strip())
        if line is None:
            return self.original(parameter_s, *args, **kwargs)
        return self.shell.run_line_magic("loom", line)

    def _loom_line(self, target: str) -> str | None:
        raw = _current_cell(self.shell)
        count = self.shell.execution_count
        if self._taken[0] != count:
            self._taken = (count, set())
        for number, text in enumerate(raw.splitlines()):
            match = _LOOM_LINE.match(text)
            if match is None or number in self._taken[1]:
                continue
            args = match.group(2)
            if args.endswith("?") and target and args.rstrip("?").rstrip().endswith(target):
                self._taken[1].add(number)
                return args
        return None


def _current_cell(shell: Any) -> str:
    """The source of the cell being run: IPython hands its result to the display hook first."""
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    raw = getattr(getattr(result, "info", None), "raw_cell", None)
    return raw if isinstance(raw, str) else ""


def install(shell: Any) -> None:
    transforms = shell.input_transformer_manager.line_transforms
    if keep_question_marks not in transforms:
        transforms.append(keep_question_marks)
    manager = shell.magics_manager
    for name in _HELP_MAGICS:
        # IPython 9 declares its magics lazily: load the real one, or the wrapper would find
        # itself when the stand-in resolves.
        magic = manager.find("line", name) if hasattr(manager, "find") else None
        magic = magic or manager.magics["line"].get(name)
        if magic is not None and not isinstance(magic, _HelpOrLoom):
            manager.magics["line"][name] = _HelpOrLoom(shell, magic)


def uninstall(shell: Any) -> None:
    transforms = shell.input_transformer_manager.line_transforms
    if keep_question_marks in transforms:
        transforms.remove(keep_question_marks)
    line_magics = shell.magics_manager.magics["line"]
    for name in _HELP_MAGICS:
        magic = line_magics.get(name)
        if isinstance(magic, _HelpOrLoom):
            line_magics[name] = magic.original
