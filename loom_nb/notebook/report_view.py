"""The evaluation report as a widget: pick the score, the grouping and the epoch reducer.

``%loom report NAME`` and ``ReportView(frame)`` show :func:`loom_nb.report`'s page under three
dropdowns; a change redraws the page. Like the other views, its output also carries the page as
static HTML and a plain-text summary, so a saved notebook reads on GitHub and nbviewer (with the
choices the person last made).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ..display.common import note_html, printable
from ..errors import ConfigError, LoomError
from ..eval_report import Report, report
from ..metrics import at_least, pass_at

__all__ = ["ReportView"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_NO_GROUP = "(none)"


def _scores(frame: Any) -> list[str]:
    return [c[len("score_"):] for c in frame.columns if c.startswith("score_")
            and not c.endswith(("_answer", "_explanation"))]


def _groups(frame: Any) -> list[str]:
    return [c for c in frame.columns if c.startswith("metadata_")
            and frame[c].nunique(dropna=True) <= 50]  # a free-text column is no grouping


def _reducers(frame: Any) -> dict[str, Any]:
    epochs = int(frame["epoch"].max()) if len(frame) and "epoch" in frame.columns else 1
    found: dict[str, Any] = {"mean": "mean", "mode": "mode", "max": "max", "min": "min"}
    for k in range(2, min(epochs, 5) + 1):
        found[f"pass@{k}"] = pass_at(k)
        found[f"at least {k}"] = at_least(k)
    return found


class ReportView:
    """An evaluation's report (:func:`loom_nb.report`) with controls; ``.report`` is the page
    drawn now (a :class:`~loom_nb.eval_report.Report`)."""

    def __init__(self, evaluation: Any, score: str | None = None, *, by: str | None = None,
                 reducer: str = "mean", failures: int = 20, seed: int = 0) -> None:
        from .._rescore import evaluation_frame

        self.frame = evaluation if hasattr(evaluation, "columns") else evaluation_frame(evaluation)
        self._source = evaluation
        scores = _scores(self.frame)
        if not scores:
            raise ConfigError("The evaluation has no scores to report; run evaluate(..., "
                              "scorers=[...]) or rescore(frame, scorers) first.")
        self._reducers = _reducers(self.frame)
        if reducer not in self._reducers:
            raise ConfigError(f"reducer={reducer!r}: pick one of {list(self._reducers)}.")
        self.failures, self.seed, self.note = failures, seed, ""
        self._score = widgets.Dropdown(description="score", options=scores,
                                       value=(score or scores[0]).removeprefix("score_"))
        self._by = widgets.Dropdown(description="by", options=[_NO_GROUP, *_groups(self.frame)],
                                    value=by or _NO_GROUP)
        self._reducer = widgets.Dropdown(description="epochs", options=list(self._reducers),
                                         value=reducer)
        self._html = widgets.HTML()
        for control in (self._score, self._by, self._reducer):
            control.observe(lambda _: self.refresh(), names=["value"])
        self.widget = widgets.VBox([widgets.HBox([self._score, self._by, self._reducer]),
                                    self._html])
        self.report: Report = self._build()
        self._html.value = self.report.html

    def _build(self) -> Report:
        by = None if self._by.value == _NO_GROUP else self._by.value
        source = self.frame if self._source is self.frame else self._source
        return report(source, self._score.value, by=by,
                      reducer=self._reducers[self._reducer.value], failures=self.failures,
                      seed=self.seed)

    def refresh(self) -> None:
        """Redraw the page for the current choices (a choice that fails says why, in place)."""
        try:
            self.report, self.note = self._build(), ""
        except LoomError as exc:
            self.note = str(exc)
        self._html.value = note_html(self.note, "div") + self.report.html

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = {"text/plain": printable(repr(self.report)),
                                "text/html": self.report.html}
        view = self.widget._repr_mimebundle_()
        if view and WIDGET_MIME in view:
            data[WIDGET_MIME] = view[WIDGET_MIME]
        return data, {}

    def __repr__(self) -> str:
        return repr(self.report)
