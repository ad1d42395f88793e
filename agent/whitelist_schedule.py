"""Weekly schedule windows (``mon-fri 06:00-23:00``, overnight ``22:00-06:00``) and validity instants.

Schedules are wall-clock times in the node's local time zone; validity bounds are instants (a naive
value is read as local time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- schedule windows -----------------------------------------------------------------------------

def _minutes(text: str) -> int:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not match or int(match[1]) > 24 or int(match[2]) > 59 or (int(match[1]) == 24 and int(match[2])):
        raise ValueError(f"{text!r} is not a time of day (HH:MM, 00:00-24:00)")
    return int(match[1]) * 60 + int(match[2])


def _days(text: str) -> frozenset[int]:
    if text in ("daily", "*", "mon-sun"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise ValueError(f"{part!r}: days are mon..sun, ranges like mon-fri, lists like sat,sun, or daily")
        a, b = DAYS.index(first), DAYS.index(last if sep else first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])  # fri-mon wraps
    return frozenset(days)


def _days_text(days: frozenset[int]) -> str:
    """{0,1,2,3,4,6} → ``mon-fri,sun`` (runs of three or more days as a range)."""
    parts, ordered = [], sorted(days)
    while ordered:
        run = [ordered.pop(0)]
        while ordered and ordered[0] == run[-1] + 1:
            run.append(ordered.pop(0))
        parts.append(f"{DAYS[run[0]]}-{DAYS[run[-1]]}" if len(run) >= 3 else ",".join(DAYS[d] for d in run))
    return ",".join(parts)


@dataclass(frozen=True)
class Window:
    """A weekly window such as ``mon-fri 06:00-23:00``. An overnight window (``fri 22:00-06:00``)
    starts on the listed day and ends the next morning. Without days it applies every day."""

    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1440 = 24:00; end < start means overnight

    @classmethod
    def parse(cls, text: str) -> Window:
        parts = text.strip().lower().split()
        if len(parts) == 1:
            parts = ["daily", parts[0]]
        if len(parts) != 2 or parts[1].count("-") != 1:
            raise ValueError(f"{text!r} is not a schedule window: use e.g. 'mon-fri 06:00-23:00' or '22:00-06:00'")
        start_text, end_text = parts[1].split("-")
        start, end = _minutes(start_text), _minutes(end_text)
        if start == end or start == 1440:
            raise ValueError(f"{text!r}: the window is empty (start equals end)")
        return cls(_days(parts[0]), start, end)

    def __str__(self) -> str:
        days = "daily" if self.days == frozenset(range(7)) else _days_text(self.days)
        return f"{days} {self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"

    def contains(self, local: datetime) -> bool:
        minute, weekday = local.hour * 60 + local.minute, local.weekday()
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # overnight: the evening part on a listed day, or the morning part on the day after one
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )


# --- validity --------------------------------------------------------------------------------------

def local_time(value: datetime) -> datetime:
    """Aware, in the node's local zone (a naive value is taken as local time already)."""
    return value.astimezone()


def parse_instant(text: str | datetime | date, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time; a bare date is the start of that day, or its end with ``end_of_day``
    (so ``--valid-until 2025-06-30`` includes the whole of the 30th)."""
    if isinstance(text, datetime):
        return local_time(text)
    if isinstance(text, date):
        day = text
    else:
        text = text.strip()
        if "T" in text or " " in text or len(text) > 10:
            try:
                return local_time(datetime.fromisoformat(text))
            except ValueError:
                raise ValueError(f"{text!r} is not an ISO date-time (2025-06-30T18:00 or 2025-06-30)") from None
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO date (2025-06-30)") from None
    moment = datetime.combine(day, time.min)
    return local_time(moment + timedelta(days=1, microseconds=-1) if end_of_day else moment)
