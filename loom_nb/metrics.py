"""Metrics of an evaluation frame: means with standard errors and bootstrap intervals, per
variant and group, over epochs reduced per task, and paired comparisons of two variants.

The unit of analysis is the task: each (variant, task) first gets one value from its epochs
with a reducer (``"mean"``, ``"mode"``, ``"max"``, :func:`pass_at` ``(k)``, :func:`at_least`
``(k)``), then the values of a group's tasks are averaged. The standard error is the sample
standard deviation over the tasks (``ddof=1``) divided by the square root of their number; the
interval is a percentile bootstrap over the tasks (``n_boot`` resamples, ``seed`` fixed, so the
same frame gives the same interval). For a binary score the mean is the accuracy.

Samples without a score (crashed, cancelled or interrupted runs, or a scorer that raised) are
left out and counted as ``n_missing``; superseded attempts are never in an evaluation frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Reducer", "at_least", "compare", "pass_at", "reduce_epochs", "summary"]


@dataclass(frozen=True)
class Reducer:
    """How one task's epoch values become its value."""

    name: str
    fn: Callable[[list[float]], float]


def _mode(values: list[float]) -> float:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    top = max(counts.values())
    return min(v for v, n in counts.items() if n == top)  # a tie goes to the lower value


_REDUCERS = {"mean": Reducer("mean", lambda v: sum(v) / len(v)), "mode": Reducer("mode", _mode),
             "max": Reducer("max", max), "min": Reducer("min", min)}


def pass_at(k: int) -> Reducer:
    """The unbiased pass@k estimator (Chen et al. 2021): the chance that at least one of ``k``
    epochs drawn without replacement from the ``n`` run is correct (value 1), i.e.
    ``1 - C(n-c, k) / C(n, k)`` with ``c`` correct epochs. Needs ``n >= k`` epochs."""
    _check_k(k, "pass_at")

    def fn(values: list[float]) -> float:
        n, c = len(values), sum(v >= 1 for v in values)
        if n < k:
            raise ConfigError(f"pass_at({k}) needs at least {k} scored epochs per task; a task "
                              f"has {n}. Run evaluate(..., epochs={k}) or more.")
        if n - c < k:
            return 1.0
        return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
    return Reducer(f"pass_at_{k}", fn)


def at_least(k: int) -> Reducer:
    """1 when at least ``k`` epochs of the task are correct (value 1), else 0."""
    _check_k(k, "at_least")
    return Reducer(f"at_least_{k}", lambda values: float(sum(v >= 1 for v in values) >= k))


def _check_k(k: int, name: str) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{name}(k) takes a positive int, not {k!r}.")


def _reducer(reducer: str | Reducer) -> Reducer:
    if isinstance(reducer, Reducer):
        return reducer
    found = _REDUCERS.get(reducer) if isinstance(reducer, str) else None
    if found is None:
        raise ConfigError(f"reducer={reducer!r} is not known; use one of {sorted(_REDUCERS)}, "
                          f"loom_nb.metrics.pass_at(k) or at_least(k).")
    return found


def score_column(frame: pd.DataFrame, score: str | None) -> str:
    """The ``score_{name}`` column meant by ``score`` (the only scorer when None)."""
    names = [c[len("score_"):] for c in frame.columns if c.startswith("score_")
             and not c.endswith(("_answer", "_explanation"))]
    if score is None:
        if len(names) != 1:
            raise ConfigError(f"The frame has the scores {names}; say which one with score=.")
        score = names[0]
    score = score[len("score_"):] if score.startswith("score_") else score
    if score not in names:
        raise ConfigError(f"The frame has no score {score!r}; it has {names}.")
    return f"score_{score}"


def _group_columns(frame: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    wanted = [by] if isinstance(by, str) else list(by or [])
    out = ["variant"] if "variant" in frame.columns else []
    for name in wanted:
        column = name if name in frame.columns else f"metadata_{name}"
        if column not in frame.columns:
            raise ConfigError(f"by={name!r}: the frame has no column {name!r} or "
                              f"'metadata_{name}'.")
        if column not in out:
            out.append(column)
    return out


def reduce_epochs(frame: pd.DataFrame, score: str | None = None, *,
                  reducer: str | Reducer = "mean", by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (variant, task): ``value`` from its scored epochs, ``epochs`` scored and
    ``missing`` unscored, with the ``by`` columns (which must not vary across a task's epochs)."""
    import pandas as pd

    column, how, groups = score_column(frame, score), _reducer(reducer), _group_columns(frame, by)
    rows = []
    for key, part in frame.groupby([*groups, "task_id"], sort=True, dropna=False):
        values = [float(v) for v in part[column].dropna()]
        keys = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip([*groups, "task_id"], keys, strict=True)),
                     "value": how.fn(values) if values else math.nan,
                     "epochs": len(values), "missing": int(part[column].isna().sum())})
    reduced = pd.DataFrame(rows, columns=[*groups, "task_id", "value", "epochs", "missing"])
    per_task = frame.groupby(["variant", "task_id"] if "variant" in frame else ["task_id"],
                             dropna=False)[groups].nunique(dropna=False) if groups else None
    if per_task is not None and (per_task > 1).to_numpy().any():
        raise ConfigError(f"by={by!r} varies across the epochs of a task; group by task "
                          f"metadata (columns that are the same for every epoch).")
    reduced.attrs["reducer"] = how.name
    return reduced


def _bootstrap(values: Any, stat: Callable[[Any], Any], n_boot: int, seed: int,
               confidence: float) -> tuple[float, float]:
    import numpy as np

    if len(values) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = stat(values[picks])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def _describe(values: Any, n_boot: int, seed: int, confidence: float) -> dict[str, float]:
    import numpy as np

    n = len(values)
    mean = float(values.mean()) if n else math.nan
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    low, high = _bootstrap(values, lambda a: a.mean(axis=1), n_boot, seed, confidence)
    return {"n": n, "mean": mean, "stderr": stderr, "ci_low": low, "ci_high": high,
            "ci_level": confidence} if n else {"n": 0, "mean": np.nan, "stderr": np.nan,
                                              "ci_low": np.nan, "ci_high": np.nan,
                                              "ci_level": confidence}


def _check_boot(n_boot: int, confidence: float) -> None:
    if not isinstance(n_boot, int) or n_boot < 100:
        raise ConfigError(f"n_boot must be an int >= 100, not {n_boot!r}.")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1 (e.g. 0.95), not {confidence!r}.")


def summary(frame: pd.DataFrame, score: str | None = None, *, by: str | Sequence[str] | None = None,
            reducer: str | Reducer = "mean", confidence: float = 0.95, n_boot: int = 2000,
            seed: int = 0) -> pd.DataFrame:
    """Per variant (and ``by`` group): tasks ``n``, ``mean`` (the accuracy for a binary score),
    ``stderr``, bootstrap ``ci_low``/``ci_high``, and ``n_missing`` samples without a score."""
    import numpy as np
    import pandas as pd

    _check_boot(n_boot, confidence)
    reduced = reduce_epochs(frame, score, reducer=reducer, by=by)
    groups = [c for c in reduced.columns if c not in ("task_id", "value", "epochs", "missing")]
    rows = []
    parts = reduced.groupby(groups, sort=True, dropna=False) if groups else [((), reduced)]
    for key, part in parts:
        keys = key if isinstance(key, tuple) else (key,)
        values = part["value"].dropna().to_numpy(dtype=float)
        rows.append({**dict(zip(groups, keys, strict=True)),
                     **_describe(values, n_boot, seed, confidence),
                     "n_missing": int(part["missing"].sum())})
    out = pd.DataFrame(rows)
    out.attrs.update(score=score_column(frame, score), reducer=reduced.attrs["reducer"],
                     n_boot=n_boot, seed=seed)
    return out if len(out) else pd.DataFrame(columns=[*groups, "n", "mean", "stderr", "ci_low",
                                                      "ci_high", "ci_level", "n_missing"]).astype(
        {"n": np.int64})


def compare(frame: pd.DataFrame, a: str, b: str, score: str | None = None, *,
            by: str | Sequence[str] | None = None, reducer: str | Reducer = "mean",
            confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Variant ``a`` minus variant ``b`` on the tasks both have a value for: ``mean_a``,
    ``mean_b``, ``diff``, its paired ``stderr`` and paired bootstrap interval (the same task
    resampled for both), per ``by`` group."""
    import pandas as pd

    _check_boot(n_boot, confidence)
    reduced = reduce_epochs(frame, score, reducer=reducer, by=by)
    known = set(reduced["variant"]) if "variant" in reduced else set()
    for name in (a, b):
        if name not in known:
            raise ConfigError(f"compare(): no variant {name!r}; the frame has {sorted(known)}.")
    groups = [c for c in reduced.columns if c not in ("variant", "task_id", "value", "epochs",
                                                        "missing")]
    wide = reduced.pivot_table(index=[*groups, "task_id"], columns="variant", values="value",
                               dropna=False).reset_index()
    rows = []
    parts = wide.groupby(groups, sort=True, dropna=False) if groups else [((), wide)]
    for key, part in parts:
        keys = key if isinstance(key, tuple) else (key,)
        paired = part[[a, b]].dropna()
        diffs = (paired[a] - paired[b]).to_numpy(dtype=float)
        stats = _describe(diffs, n_boot, seed, confidence)
        rows.append({**dict(zip(groups, keys, strict=True)), "a": a, "b": b, "n": stats["n"],
                     "mean_a": float(paired[a].mean()) if len(paired) else math.nan,
                     "mean_b": float(paired[b].mean()) if len(paired) else math.nan,
                     "diff": stats["mean"], "stderr": stats["stderr"], "ci_low": stats["ci_low"],
                     "ci_high": stats["ci_high"], "ci_level": confidence})
    out = pd.DataFrame(rows)
    out.attrs.update(score=score_column(frame, score), reducer=reduced.attrs["reducer"],
                     n_boot=n_boot, seed=seed)
    return out
