"""Cron expressions of ``[schedule]``, read as cron reads them.

APScheduler 3 (the daemon's scheduler) differs from cron in two ways that would run a job on the
wrong days, so expressions are not handed to ``CronTrigger.from_crontab`` as they are:

- **Day-of-week numbers.** Cron counts 0 (and 7) as Sunday, 1 as Monday; APScheduler 3 counts 0
  as Monday and refuses 7. ``0 3 * * 1-5`` (weekdays in cron) would run Tuesday to Saturday. A
  day-of-week field other than ``*`` is turned into the names of the days it selects.
- **Day of month *or* day of week.** When both fields are restricted (neither starts with
  ``*``), cron runs on the days that match either; APScheduler only on days that match both
  (``0 3 1 * mon``: the 1st *and* a Monday). Such an expression becomes two triggers, one per
  field, and the job fires on whichever comes first.

A sixth field in front is read as seconds (``*/10 * * * * *``), as Quartz and Spring read it.

Pure: this module only reads the text; ``daemon/scheduler.py`` builds the triggers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

# (name, lowest, highest, names for lowest.. in order); day of week: 0-7, 0 and 7 are Sunday.
_FIELDS: dict[str, tuple[str, int, int, tuple[str, ...]]] = {
    "second": ("second", 0, 59, ()),
    "minute": ("minute", 0, 59, ()),
    "hour": ("hour", 0, 23, ()),
    "day": ("day of month", 1, 31, ()),
    "month": ("month", 1, 12, MONTH_NAMES),
    "day_of_week": ("day of week", 0, 7, DAY_NAMES),
}
_ITEM = re.compile(r"^(?P<base>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """An expression's fields in APScheduler's terms (``second`` is None for 5 fields: left at
    APScheduler's default, 0). ``either_day``: fire on a day that matches day of month *or* day
    of week (cron's rule when both are restricted)."""

    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str
    second: str | None = None
    either_day: bool = False

    def trigger_fields(self) -> list[dict[str, str]]:
        """The keyword arguments of one ``CronTrigger`` each; two when ``either_day``."""
        common = {"minute": self.minute, "hour": self.hour, "month": self.month}
        if self.second is not None:
            common = {"second": self.second, **common}
        if self.either_day:
            return [
                {**common, "day": self.day, "day_of_week": "*"},
                {**common, "day": "*", "day_of_week": self.day_of_week},
            ]
        return [{**common, "day": self.day, "day_of_week": self.day_of_week}]


def parse_cron(expression: str) -> CronSchedule:
    """Read a 5-field (minute hour day month weekday) or 6-field (seconds first) expression.

    Raises ValueError naming the field and what is wrong with it.
    """
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ValueError(
            f"must have 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), "
            f"got {len(parts)} in {expression!r}"
        )
    second = parts.pop(0) if len(parts) == 6 else None
    minute, hour, day, month, weekday = (p.lower() for p in parts)
    if second is not None:
        _values("second", second)
    for key, text in (("minute", minute), ("hour", hour), ("day", day), ("month", month)):
        _values(key, text)
    days = _values("day_of_week", weekday)
    return CronSchedule(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekday_field(weekday, days),
        either_day=not day.startswith("*") and not weekday.startswith("*"),
    )


def _weekday_field(text: str, days: set[int]) -> str:
    # Only '*' means the same to APScheduler. Numbers, steps and even name ranges do not (its
    # week starts on Monday, so 'sun-wed' runs backwards there): spell out the names of the days
    # selected (cron's 7 is Sunday, as 0 is).
    if text == "*":
        return text
    return ",".join(DAY_NAMES[d] for d in sorted({d % 7 for d in days}))


def _values(key: str, text: str) -> set[int]:
    """The values a field selects; ValueError if it is not cron syntax or out of range."""
    label, low, high, names = _FIELDS[key]
    selected: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{label}: {item!r} is not a cron value, range, list or step")
        base, step = match["base"], match["step"]
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-")
            first, last = _value(label, a, low, high, names), _value(label, b, low, high, names)
            if first > last:
                raise ValueError(f"{label}: the range {base!r} runs backwards")
        else:
            first = _value(label, base, low, high, names)
            # 'n/step' is n to the end of the field, as in cron implementations that take it.
            last = high if step else first
        stride = int(step) if step else 1
        if stride < 1:
            raise ValueError(f"{label}: the step in {item!r} must be at least 1")
        selected.update(range(first, last + 1, stride))
    return selected


def _value(label: str, text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.isdigit():
        number = int(text)
    elif text in names:
        number = names.index(text) + low
    else:
        known = f" (or a name: {', '.join(names)})" if names else ""
        raise ValueError(f"{label}: {text!r} is not a number from {low} to {high}{known}")
    if not low <= number <= high:
        raise ValueError(f"{label}: {number} is out of range {low}-{high}")
    return number
