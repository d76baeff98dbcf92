"""Five-field cron expressions (minute hour day-of-month month day-of-week), without a dependency.

Supported: ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, and
three-letter month and day names. Day 0 and 7 are Sunday. As in Vixie cron, when both
day-of-month and day-of-week are restricted, a day matching either fires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .errors import ConfigError

__all__ = ["CronExpression"]

_NAMES = {
    3: {n: i for i, n in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                     "oct", "nov", "dec"], start=1)},
    4: {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_SEARCH_DAYS = 366 * 5  # enough for any valid expression (a Feb 29 needs up to 8 years at worst)


class CronExpression:
    """A parsed cron expression; :meth:`next_after` finds the next time it fires."""

    def __init__(self, expr: str) -> None:
        fields = expr.split()
        if len(fields) != 5:
            raise ConfigError(f"Cron expression {expr!r} needs 5 fields: minute hour day month weekday, "
                              f"e.g. '*/15 * * * *' or '0 9 * * mon-fri'.")
        self.expr = expr
        parsed = [_field(text, i, expr) for i, text in enumerate(fields)]
        self.minutes, self.hours, self.days, self.months, weekdays = parsed
        self.weekdays = {d % 7 for d in weekdays}
        self._dom_any, self._dow_any = fields[2] == "*", fields[4] == "*"

    def __repr__(self) -> str:
        return f"CronExpression({self.expr!r})"

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self._dom_any or self._dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, moment: datetime) -> datetime:
        """The first time after ``moment`` (to the minute) at which the expression fires."""
        t = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=_SEARCH_DAYS)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ConfigError(f"Cron expression {self.expr!r} never fires.")


def _field(text: str, index: int, expr: str) -> set[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for item in text.lower().split(","):
        body, _, step_text = item.partition("/")
        step = _number(step_text, index, expr) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = _number(a, index, expr), _number(b, index, expr)
        else:
            start = _number(body, index, expr)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end or step < 1:
            raise ConfigError(f"Cron expression {expr!r}: {item!r} is out of range {low}-{high}.")
        values.update(range(start, end + 1, step))
    return values


def _number(text: str, index: int, expr: str) -> int:
    names = _NAMES.get(index, {})
    if text in names:
        return names[text]
    if not text.isdigit():
        raise ConfigError(f"Cron expression {expr!r}: {text!r} is not a number or a known name.")
    return int(text)
