"""Dates and times as people write them in mails.

Responsibility: turn a written deadline or milestone time ("2024-05-20 18:00",
"2024年5月20日下午6点", "5月20号", "明天下午3点", "May 20, 2024 6pm") into an aware
datetime in the configured timezone, either for a whole field value (`parse_datetime`)
or for the first date inside a longer line (`find_datetime`).

Pure: the current time is passed in as `now` (aware); its tzinfo is the configured
timezone, and relative words and dates without a year are resolved against it.
A date written without a time gets `default_time`. Anything impossible or vague
("2月30日", "25:00", "待定", "明天上午") yields None so the caller can ask for an
explicit value.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import NamedTuple

__all__ = ["find_datetime", "parse_datetime"]

# Full-width ASCII (U+FF01..U+FF5E) and the ideographic space map one-to-one onto
# ASCII, so offsets in the translated text are offsets in the original text.
_HALF_WIDTH = str.maketrans({0x3000: " ", **{0xFF01 + i: chr(0x21 + i) for i in range(94)}})

# ASCII: \d, \b and \s must not treat Chinese characters as word characters.
_FLAGS = re.ASCII | re.IGNORECASE

_MONTH_NAME = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?"
    r"|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?"
)
_ORDINAL = r"(?:st|nd|rd|th)?\b"
_ENGLISH_YEAR = r"(?:,?[ \t]*(?P<y>\d{4})(?!\d))?"

# Each entry: a date pattern, and whether it only counts inside prose when a time
# follows. A bare "5/20" or "3-4" in running text is too often a ratio or a range.
_DATES: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(r"(?<!\d)(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})(?!\d)", _FLAGS), False),
    # The look-behind keeps "2023年2月29日" from falling back to a yearless 2月29日.
    (
        re.compile(
            r"(?<![\d年])(?:(?P<y>\d{4})[ \t]*年[ \t]*)?(?P<m>\d{1,2})[ \t]*月[ \t]*(?P<d>\d{1,2})[ \t]*[日号]",
            _FLAGS,
        ),
        False,
    ),
    (re.compile(rf"\b{_MONTH_NAME}[ \t]*(?P<d>\d{{1,2}}){_ORDINAL}{_ENGLISH_YEAR}", _FLAGS), False),
    (re.compile(rf"(?<!\d)(?P<d>\d{{1,2}}){_ORDINAL}[ \t]+{_MONTH_NAME}{_ENGLISH_YEAR}", _FLAGS), False),
    # "之后天天…" and "最后天…" contain 后天 without meaning the day after tomorrow.
    (re.compile(r"(?P<rel>大后天|(?<![之以然最落])后天|明天|明日|今天|今日|\btoday\b|\btomorrow\b)", _FLAGS), False),
    (re.compile(r"(?<![\d/.-])(?P<m>\d{1,2})[-/](?P<d>\d{1,2})(?![\d/-])", _FLAGS), True),
)

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_RELATIVE_DAYS = {"今天": 0, "今日": 0, "today": 0, "明天": 1, "明日": 1, "tomorrow": 1, "后天": 2, "大后天": 3}

# Chinese mails often annotate the date: "5月20日（周一）14:00".
_WEEKDAY = re.compile(
    r"[ \t]*(?:\([ \t]*(?:周|星期|礼拜)[一二三四五六日天][ \t]*\)|(?:周|星期|礼拜)[一二三四五六日天])", _FLAGS
)
_JOINER = re.compile(r"[ \t]*(?:(?:,|at(?![a-z])|@|T)[ \t]*)?", _FLAGS)

_PERIOD = r"(?P<period>凌晨|早上|早晨|上午|中午|下午|傍晚|晚上)"
_AMPM = r"(?P<ampm>[ap]\.?m\.?)(?![a-z])"
_CLOCKS: tuple[re.Pattern[str], ...] = (
    re.compile(
        rf"(?:{_PERIOD}[ \t]*)?(?<!\d)(?P<h>\d{{1,2}}):(?P<mi>\d{{2}})(?::(?P<s>\d{{2}}))?(?!\d)"
        rf"(?:[ \t]*{_AMPM})?(?P<tz>Z(?![a-z])|[+-]\d{{2}}:?\d{{2}}(?!\d))?",
        _FLAGS,
    ),
    re.compile(
        rf"(?:{_PERIOD}[ \t]*)?(?<!\d)(?P<h>\d{{1,2}})[ \t]*[点时]"
        r"(?:[ \t]*(?P<half>半)|[ \t]*(?P<mi>\d{1,2}(?=[ \t]*分)|\d{2}(?!\d))(?:[ \t]*分)?)?",
        _FLAGS,
    ),
    re.compile(rf"(?<!\d)(?P<h>\d{{1,2}})[ \t]*{_AMPM}", _FLAGS),
    # A bare period ("明天上午") is matched only to be rejected as too vague, except 中午.
    re.compile(_PERIOD, _FLAGS),
)

_PERIOD_KIND = {
    "am": "am", "凌晨": "am",
    "上午": "morning", "早上": "morning", "早晨": "morning",
    "中午": "noon",
    "pm": "pm", "下午": "pm",
    "晚上": "evening", "傍晚": "evening",
}

# Whole-field values may end in punctuation or "前" ("5月20日前" = due by 5月20日).
_TRAILER = re.compile(r"[\s.,;!?。，、；！？]*(?:之前|以前|前)?[\s.,;!?。，、；！？]*$")


class _Clock(NamedTuple):
    at: time
    days: int  # 1 when the time is midnight at the end of the day ("晚上12点")
    offset: timezone | None
    end: int


def parse_datetime(text: str, now: datetime, default_time: time = time(18, 0)) -> datetime | None:
    """Parse a whole value such as a template field; None unless all of it is a date(-time)."""
    _require_aware(now)
    plain = _TRAILER.sub("", text.translate(_HALF_WIDTH).strip())
    found = _read_at(plain, 0, now, default_time, in_prose=False)
    return found[0] if found and found[1] == len(plain) else None


def find_datetime(
    text: str, now: datetime, default_time: time = time(18, 0)
) -> tuple[datetime, int, int] | None:
    """Find the first date(-time) in a line; returns (value, start, end) offsets into `text`."""
    _require_aware(now)
    plain = text.translate(_HALF_WIDTH)
    pos = 0
    while starts := [m.start() for pattern, _ in _DATES if (m := pattern.search(plain, pos))]:
        start = min(starts)
        found = _read_at(plain, start, now, default_time, in_prose=True)
        if found:
            return found[0], start, found[1]
        pos = start + 1
    return None


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def _read_at(
    text: str, start: int, now: datetime, default_time: time, in_prose: bool
) -> tuple[datetime, int] | None:
    """The longest valid date(-time) starting exactly at `start`, with its end offset."""
    best: tuple[datetime, int] | None = None
    for pattern, needs_time in _DATES:
        match = pattern.match(text, start)
        if match is None:
            continue
        try:
            found = _complete(text, match, now, default_time, needs_time and in_prose)
        except ValueError:
            continue  # impossible date or time, e.g. 2月30日 or 25:00
        if found and (best is None or found[1] > best[1]):
            best = found
    return best


def _complete(
    text: str, match: re.Match[str], now: datetime, default_time: time, time_required: bool
) -> tuple[datetime, int] | None:
    """Attach the time that follows a date match; raises ValueError for impossible values."""
    day = _date_of(match, now.date())
    end = match.end()
    if weekday := _WEEKDAY.match(text, end):
        end = weekday.end()
    joiner = _JOINER.match(text, end)
    assert joiner is not None  # every part of the joiner is optional
    clock = _clock_at(text, joiner.end(), iso=joiner.group().strip().upper() == "T")
    if clock is None:
        if time_required:
            return None
        return datetime.combine(day, default_time, tzinfo=now.tzinfo), end
    local = datetime.combine(day + timedelta(days=clock.days), clock.at)
    if clock.offset is None:
        return local.replace(tzinfo=now.tzinfo), clock.end
    return local.replace(tzinfo=clock.offset).astimezone(now.tzinfo), clock.end


def _date_of(match: re.Match[str], today: date) -> date:
    groups = match.groupdict()
    if groups.get("rel"):
        return today + timedelta(days=_RELATIVE_DAYS[groups["rel"].lower()])
    month = int(groups["m"]) if groups.get("m") else _MONTHS[groups["mon"][:3].lower()]
    day = int(groups["d"])
    if groups.get("y"):
        return date(int(groups["y"]), month, day)
    return _nearest_date(month, day, today)


def _nearest_date(month: int, day: int, today: date) -> date:
    """A yearless date means the occurrence nearest to today: in late November, 1月5日 is next January."""
    candidates = []
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:
            pass  # 2月29日 exists only in leap years
    if not candidates:
        raise ValueError(f"no such date: {month}-{day}")
    # On an exact tie the future occurrence wins: mails mostly talk about what is due.
    return min(candidates, key=lambda c: (abs((c - today).days), c < today))


def _clock_at(text: str, pos: int, iso: bool) -> _Clock | None:
    """The longest time written at `pos`; None if there is none, ValueError if it is impossible."""
    matches = [m for pattern in _CLOCKS if (m := pattern.match(text, pos))]
    if not matches:
        return None
    match = max(matches, key=lambda m: m.end())
    groups = match.groupdict()
    period = (groups.get("ampm") or groups.get("period") or "").lower().replace(".", "")
    if groups.get("h") is None:
        if period != "中午":
            raise ValueError(f"vague time: {period}")
        return _Clock(time(12, 0), 0, None, match.end())
    hour, days = _hour_24(int(groups["h"]), period)
    minute = 30 if groups.get("half") else int(groups.get("mi") or 0)
    at = time(hour, minute, int(groups.get("s") or 0))

    offset, end = None, match.end()
    if zone := groups.get("tz"):
        if zone.startswith("-") and not iso:
            end = match.start("tz")  # "18:00-19:00" is a range, not UTC-19:00
        else:
            offset = _offset(zone)
    return _Clock(at, days, offset, end)


def _hour_24(hour: int, period: str) -> tuple[int, int]:
    """Apply 上午/下午/am/pm to a written hour; returns (hour, days to add)."""
    kind = _PERIOD_KIND.get(period)
    if kind is None:
        return hour, 0
    if kind in ("am", "morning"):
        if hour > 12:
            raise ValueError(f"{hour} with {period}")
        # 12am and 凌晨12点 are midnight; 上午12点 is what people write for noon.
        return (0 if hour == 12 and kind == "am" else hour), 0
    if kind == "noon":
        if hour in (11, 12):
            return hour, 0
        if 1 <= hour <= 3:
            return hour + 12, 0  # 中午1点 is 13:00
        raise ValueError(f"{hour} with {period}")
    if hour == 0:
        raise ValueError(f"{hour} with {period}")
    if hour == 12:
        return (0, 1) if kind == "evening" else (12, 0)  # 晚上12点 is midnight ending the day
    return (hour + 12 if hour < 12 else hour), 0  # "下午18点" is redundant but clear


def _offset(zone: str) -> timezone:
    if zone.upper() == "Z":
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
