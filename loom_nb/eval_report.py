"""``loom_nb.report(evaluation)``: one HTML page across an evaluation.

Pass rates by variant and by group with their intervals (an inline SVG chart and the numbers),
paired differences between variants, token / cost / latency distributions, and the failing
samples, each with its transcript one click away (``<details>``). The page is static HTML with
inline styles and SVG, so it reads the same in JupyterLab, on GitHub and on nbviewer, and
``report.save("report.html")`` writes it as a file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .metrics import Reducer, compare, score_column, summary

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Report", "report"]

_FONT = "font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px"
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


@dataclass(frozen=True)
class Report:
    """The report: ``html`` (a full fragment), ``summary`` and ``comparisons`` frames."""

    html: str
    summary: pd.DataFrame
    comparisons: pd.DataFrame | None

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"Report(\n{self.summary.to_string(index=False)}\n)"

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"<!doctype html><meta charset='utf-8'><title>loom_nb report</title>{self.html}")


def report(evaluation: Any, score: str | None = None, *, by: str | Sequence[str] | None = None,
           reducer: str | Reducer = "mean", failures: int = 20, seed: int = 0) -> Report:
    """The report of an evaluation frame (from :func:`loom_nb.evaluate` or
    :func:`loom_nb.rescore`) or of a store holding one; ``failures`` failing samples at most."""
    from ._rescore import evaluation_frame
    from .evaluation import store_of

    frame = evaluation if hasattr(evaluation, "columns") else evaluation_frame(evaluation)
    if "task_id" not in frame.columns:
        raise ConfigError("report() takes the frame evaluate() returned, or its store.")
    column = score_column(frame, score)
    overall = summary(frame, column, reducer=reducer, seed=seed)
    grouped = summary(frame, column, by=by, reducer=reducer, seed=seed) if by else None
    variants = sorted(set(frame["variant"].dropna()))
    comparisons = None
    if len(variants) > 1:
        import pandas as pd

        comparisons = pd.concat([compare(frame, v, variants[0], column, reducer=reducer, seed=seed)
                                 for v in variants[1:]], ignore_index=True)
    store = store_of(frame) if hasattr(evaluation, "columns") else _open(evaluation)
    parts = [
        _header(frame, column, overall),
        "<h4>Pass rate by variant</h4>", _chart(overall, ["variant"]), _table(overall),
    ]
    if grouped is not None:
        keys = [c for c in grouped.columns if c not in _STAT_COLUMNS]
        parts += [f"<h4>By {html.escape(', '.join(keys[1:]))}</h4>", _chart(grouped, keys),
                  _table(grouped)]
    if comparisons is not None:
        parts += [f"<h4>Paired differences (vs {html.escape(variants[0])})</h4>",
                  _table(comparisons)]
    parts += ["<h4>Cost of the runs</h4>", _distributions(frame),
              _failing(frame, column, store, failures)]
    body = "\n".join(parts)
    return Report(f'<div class="loom-report" style="{_FONT}">{body}</div>', overall, comparisons)


def _open(source: Any) -> Any:
    from .store import open_store

    try:
        return open_store(source)
    except Exception:  # noqa: BLE001 - a report without transcripts is still a report
        return None


_STAT_COLUMNS = ("n", "mean", "stderr", "ci_low", "ci_high", "ci_level", "n_missing")


def _header(frame: pd.DataFrame, column: str, overall: pd.DataFrame) -> str:
    samples, epochs = len(frame), int(frame["epoch"].max()) if len(frame) else 0
    superseded = "superseded attempts are left out"
    return (f"<h3 style='margin:4px 0'>Evaluation: {html.escape(column[len('score_'):])}</h3>"
            f"<div style='color:#555'>{samples} samples · {frame['task_id'].nunique()} tasks · "
            f"{epochs} epoch(s) · reducer {html.escape(str(overall.attrs.get('reducer')))} · "
            f"95% percentile bootstrap over tasks ({overall.attrs.get('n_boot')} resamples, seed "
            f"{overall.attrs.get('seed')}) · {superseded}</div>")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        # Three decimals, or three significant digits for a small value such as a run's cost.
        return f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:.3f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(str(c))}</th>"
                   for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{_fmt(v)}</td>" for v in row)
                   + "</tr>" for row in frame.itertuples(index=False))
    return f"<table style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"


def _chart(stats: pd.DataFrame, keys: list[str]) -> str:
    """Horizontal bars (the mean) with interval whiskers, 0..1, as inline SVG."""
    width, row_h, left = 620, 22, 170
    height = row_h * len(stats) + 24
    variants = sorted(set(stats["variant"])) if "variant" in stats else []
    scale = width - left - 60  # room for the value after the bar
    items = []
    for i, row in enumerate(stats.to_dict("records")):
        y = 4 + i * row_h
        label = " · ".join(str(row[k]) for k in keys)
        colour = _COLOURS[variants.index(row["variant"]) % len(_COLOURS)] if variants else _COLOURS[0]
        mean = row["mean"] if not _nan(row["mean"]) else 0.0
        items.append(f"<text x='{left - 6}' y='{y + 14}' text-anchor='end'>"
                     f"{html.escape(label[:28])}</text>"
                     f"<rect x='{left}' y='{y + 3}' width='{max(mean, 0) * scale:.1f}' "
                     f"height='{row_h - 8}' fill='{colour}' opacity='0.75'/>")
        if not _nan(row["ci_low"]):
            lo, hi = left + row["ci_low"] * scale, left + row["ci_high"] * scale
            mid = y + row_h / 2
            items.append(f"<line x1='{lo:.1f}' x2='{hi:.1f}' y1='{mid}' y2='{mid}' "
                         f"stroke='#222'/><line x1='{lo:.1f}' x2='{lo:.1f}' y1='{mid - 4}' "
                         f"y2='{mid + 4}' stroke='#222'/><line x1='{hi:.1f}' x2='{hi:.1f}' "
                         f"y1='{mid - 4}' y2='{mid + 4}' stroke='#222'/>")
        items.append(f"<text x='{left + scale + 4}' y='{y + 14}' font-size='11'>"
                     f"{_fmt(row['mean'])}</text>")
    axis = "".join(f"<text x='{left + t * scale:.1f}' y='{height - 4}' font-size='10' "
                   f"text-anchor='middle'>{t:g}</text>" for t in (0, 0.25, 0.5, 0.75, 1))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"font-family='sans-serif' font-size='12'>{''.join(items)}{axis}</svg>")


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _distributions(frame: pd.DataFrame) -> str:
    import pandas as pd

    rows = []
    for column, label in (("total_tokens", "tokens"), ("cost_usd", "cost (USD)"),
                          ("latency_ms", "latency (ms)")):
        for variant, part in frame.groupby("variant", sort=True):
            every = pd.to_numeric(part[column], errors="coerce")
            values = every.dropna()
            if values.empty:
                continue
            # A total over runs of which some have no known price would understate it: missing.
            total = float(values.sum()) if len(values) == len(every) else math.nan
            rows.append({"metric": label, "variant": variant, "n": len(values),
                         "mean": float(values.mean()), "p50": float(values.quantile(0.5)),
                         "p90": float(values.quantile(0.9)), "max": float(values.max()),
                         "sum": total})
    if not rows:
        return "<p>No usage recorded.</p>"
    return _table(pd.DataFrame(rows)) + _outcomes(frame)


def _outcomes(frame: pd.DataFrame) -> str:
    counts = frame.groupby(["variant", "outcome"], dropna=False).size().unstack(fill_value=0)
    counts = counts.reset_index()
    counts.columns = [str(c) for c in counts.columns]
    return "<div style='margin-top:6px'>Outcomes</div>" + _table(counts)


def _failing(frame: pd.DataFrame, column: str, store: Any, limit: int) -> str:
    bad = frame[(frame[column].fillna(-1) < 1)]
    if bad.empty:
        return "<h4>Failing samples</h4><p>None: every sample scored 1.</p>"
    shown = bad.head(limit)
    items = [_sample(row, column, store) for row in shown.to_dict("records")]
    more = f"<p>… and {len(bad) - limit} more.</p>" if len(bad) > limit else ""
    return (f"<h4>Failing samples ({len(bad)} of {len(frame)})</h4>" + "".join(items) + more)


def _sample(row: dict[str, Any], column: str, store: Any) -> str:
    value = row.get(column)
    why = row.get(f"{column}_explanation") or row.get("error") or ""
    head = (f"{html.escape(str(row.get('variant')))} · {html.escape(str(row.get('task_id')))} · "
            f"epoch {row.get('epoch')} · {html.escape(str(row.get('outcome')))} · score "
            f"{_fmt(value) if not _nan(value) else 'missing'}")
    lines = [f"<div><b>input</b> {html.escape(str(row.get('goal'))[:2000])}</div>",
             f"<div><b>target</b> {html.escape(str(row.get('target'))[:2000])}</div>",
             f"<div><b>output</b> {html.escape(str(row.get('output'))[:2000])}</div>"]
    if why and not _nan(why):
        lines.append(f"<div><b>why</b> {html.escape(str(why)[:2000])}</div>")
    lines.append(_transcript(store, row.get("session_id")))
    return (f"<details style='margin:2px 0'><summary>{head}</summary>"
            f"<div style='margin-left:16px'>{''.join(lines)}</div></details>")


def _transcript(store: Any, session_id: Any) -> str:
    if store is None or not isinstance(session_id, str):
        return "<div style='color:#777'>(no transcript: the store is not at hand)</div>"
    try:
        messages = store.stored_messages(session_id)
    except Exception:  # noqa: BLE001 - a store that cannot be read: the rest of the report stands
        return "<div style='color:#777'>(the transcript could not be read)</div>"
    out = []
    for stored in messages[-40:]:
        message = stored.message
        for part in message.parts:
            text = getattr(part, "text", None) or getattr(part, "content", None)
            if text is None and getattr(part, "name", None):
                text = f"{part.name}({getattr(part, 'args', '')})"
            out.append(f"<div><span style='color:#555'>{html.escape(message.role)}:</span> "
                       f"<span style='white-space:pre-wrap'>{html.escape(str(text)[:1500])}"
                       f"</span></div>")
    return "<div style='border-left:2px solid #ddd;padding-left:6px'>" + "".join(out) + "</div>"
