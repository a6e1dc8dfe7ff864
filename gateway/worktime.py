"""Working time: response deadlines counted in business hours (e.g. 09:00–18:00) on Chinese
working days — statutory holidays off, adjusted working weekends (调休) on — from the
maintained `chinesecalendar` data rather than a hand-typed list. A company's own days off and
extra working days (or a year the package does not know yet) come from [reminders] days_off
and working_days, which win over the package."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar  # type: ignore[import-untyped]  # ships no type information

log = logging.getLogger(__name__)


_warned_years: set[int] = set()


@dataclass(frozen=True)
class WorkingTime:
    tz: ZoneInfo
    start: time
    end: time
    days_off: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()

    def is_workday(self, day: date) -> bool:
        if day in self.days_off:
            return False
        if day in self.working_days:
            return True
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            # The official schedule for a year is published each November; until the package
            # has it, count Monday to Friday (and say so once: update chinesecalendar, or list
            # the year's holidays in [reminders] days_off and working_days).
            if day.year not in _warned_years:
                _warned_years.add(day.year)
                log.warning("no Chinese holiday data for %s; counting Monday-Friday as working days "
                            "(list the holidays in [reminders] days_off / working_days)", day.year)
            return day.weekday() < 5

    def is_working(self, moment: datetime) -> bool:
        """Whether `moment` lies in working time (a working day, between start and end)."""
        local = moment.astimezone(self.tz)
        return self.is_workday(local.date()) and self.start <= local.time() < self.end

    def add(self, start: datetime, hours: float) -> datetime:
        """The instant `hours` of working time after `start`."""
        remaining = timedelta(hours=hours)
        cursor = start.astimezone(self.tz)
        for _ in range(3660):  # ten years of days: a bound, not a limit anyone reaches
            day_start = datetime.combine(cursor.date(), self.start, self.tz)
            day_end = datetime.combine(cursor.date(), self.end, self.tz)
            if self.is_workday(cursor.date()) and cursor < day_end:
                cursor = max(cursor, day_start)
                if cursor + remaining <= day_end:
                    return cursor + remaining
                remaining -= day_end - cursor
            cursor = datetime.combine(cursor.date() + timedelta(days=1), self.start, self.tz)
        raise ValueError(f"{hours} working hours do not fit in ten years")


def parse_clock(text: str) -> time:
    hour, minute = map(int, text.split(":"))
    return time(hour, minute)
