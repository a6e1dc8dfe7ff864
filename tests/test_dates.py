"""Tests for parsers.dates: written dates and times, resolved against a fixed `now`."""

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from parsers.dates import find_datetime, parse_datetime

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)  # a Friday


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


PARSED = [
    # ISO and numeric dates with a year
    ("2024-05-20 18:00", at(2024, 5, 20, 18, 0)),
    ("2024-05-20 18:00:30", at(2024, 5, 20, 18, 0, 30)),
    ("2024-05-20T18:00", at(2024, 5, 20, 18, 0)),
    ("2024-05-20T18:00+08:00", at(2024, 5, 20, 18, 0)),
    ("2024-05-20T10:00Z", at(2024, 5, 20, 18, 0)),
    ("2024-05-20 18:00+00:00", at(2024, 5, 21, 2, 0)),
    ("2024-05-20T18:00-05:00", at(2024, 5, 21, 7, 0)),
    ("2024/5/20 18:00", at(2024, 5, 20, 18, 0)),
    ("2024.5.20 18:00", at(2024, 5, 20, 18, 0)),
    ("2024-05-20", at(2024, 5, 20, 18, 0)),
    # Chinese, with periods of the day
    ("2024年5月20日 18:00", at(2024, 5, 20, 18, 0)),
    ("2024年5月20日18:00", at(2024, 5, 20, 18, 0)),
    ("2024年5月20日18点", at(2024, 5, 20, 18, 0)),
    ("2024年5月20日 下午6点", at(2024, 5, 20, 18, 0)),
    ("2024年5月20日下午6:30", at(2024, 5, 20, 18, 30)),
    ("2024年5月20日上午9点", at(2024, 5, 20, 9, 0)),
    ("2024年5月20日晚上8点", at(2024, 5, 20, 20, 0)),
    ("2024年5月20日晚上12点", at(2024, 5, 21, 0, 0)),
    ("2024年5月20日中午12点", at(2024, 5, 20, 12, 0)),
    ("2024年5月20日中午1点", at(2024, 5, 20, 13, 0)),
    ("2024年5月20日 18时30分", at(2024, 5, 20, 18, 30)),
    ("2024年5月20号", at(2024, 5, 20, 18, 0)),
    ("2024年5月20日（周一）14:00", at(2024, 5, 20, 14, 0)),
    # Without a year: the occurrence nearest to NOW
    ("5月20日18:00", at(2027, 5, 20, 18, 0)),
    ("5月20日 18:00", at(2027, 5, 20, 18, 0)),
    ("5月20号 9点半", at(2027, 5, 20, 9, 30)),
    ("5/20 18:00", at(2027, 5, 20, 18, 0)),
    ("05-20 18:00", at(2027, 5, 20, 18, 0)),
    ("1月5日", at(2027, 1, 5, 18, 0)),
    ("11月20日", at(2026, 11, 20, 18, 0)),
    # English
    ("May 20, 2024 18:00", at(2024, 5, 20, 18, 0)),
    ("20 May 2024 18:00", at(2024, 5, 20, 18, 0)),
    ("May 20 2024 6pm", at(2024, 5, 20, 18, 0)),
    ("May 20, 2024 6:30 PM", at(2024, 5, 20, 18, 30)),
    ("May 20, 2024 at 12am", at(2024, 5, 20, 0, 0)),
    ("20th May 2024 9 a.m.", at(2024, 5, 20, 9, 0)),
    ("2024-05-20 6pm", at(2024, 5, 20, 18, 0)),
    # Relative
    ("今天 18:00", at(2026, 11, 27, 18, 0)),
    ("明天18:00", at(2026, 11, 28, 18, 0)),
    ("明天下午3点", at(2026, 11, 28, 15, 0)),
    ("明天中午", at(2026, 11, 28, 12, 0)),
    ("后天", at(2026, 11, 29, 18, 0)),
    ("大后天", at(2026, 11, 30, 18, 0)),
    ("tomorrow 18:00", at(2026, 11, 28, 18, 0)),
    ("today 5pm", at(2026, 11, 27, 17, 0)),
    # Full-width characters, trailing punctuation, "前" (due by)
    ("２０２４－０５－２０\u3000１８：００", at(2024, 5, 20, 18, 0)),
    ("  2024年5月20日 18：00。 ", at(2024, 5, 20, 18, 0)),
    ("5月20日前", at(2027, 5, 20, 18, 0)),
    # Nonsense, vague or incomplete
    ("2024-13-01", None),
    ("2024-02-30", None),
    ("2月30日", None),
    ("2月29日", None),  # no leap year next to 2026
    ("25:00", None),
    ("18:00", None),  # a time without a date
    ("2024-05-20 25:00", None),
    ("2024-05-20 18:61", None),
    ("上午13点", None),
    ("明天上午", None),  # a period without an hour is not an explicit time
    ("2024-05-20 18:00-19:00", None),
    ("待定", None),
    ("TBD", None),
    ("尽快", None),
    ("ASAP", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse_datetime(text: str, expected: datetime | None) -> None:
    value = parse_datetime(text, NOW)
    assert value == expected
    if expected is not None:
        assert value.tzinfo is TZ


def test_date_only_uses_default_time() -> None:
    assert parse_datetime("2024-05-20", NOW, default_time=time(9, 30)) == at(2024, 5, 20, 9, 30)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_datetime("2024-05-20", NOW.replace(tzinfo=None))


FOUND = [
    ("需求评审 — 2024-05-20 18:00 — 王强", at(2024, 5, 20, 18, 0), "2024-05-20 18:00"),
    ("上线：２０２４年５月２０日\u3000１８：００，负责人", at(2024, 5, 20, 18, 0), "２０２４年５月２０日\u3000１８：００"),
    ("2024-05-20 18:00-19:00 评审", at(2024, 5, 20, 18, 0), "2024-05-20 18:00"),
    ("截止 5/20 18:00 前提交", at(2027, 5, 20, 18, 0), "5/20 18:00"),
    ("2024-02-30 作废，改为 2024-03-01 10:00", at(2024, 3, 1, 10, 0), "2024-03-01 10:00"),
    ("联调 — 明天下午3点 — 李雷", at(2026, 11, 28, 15, 0), "明天下午3点"),
    ("Kick-off: May 20, 2024 6:30 PM (Beijing)", at(2024, 5, 20, 18, 30), "May 20, 2024 6:30 PM"),
]


@pytest.mark.parametrize(("text", "expected", "matched"), FOUND)
def test_find_datetime(text: str, expected: datetime, matched: str) -> None:
    value, start, end = find_datetime(text, NOW)
    assert value == expected
    assert text[start:end] == matched


@pytest.mark.parametrize(
    "text",
    [
        "第3-4周 完成 5/20 的用例",  # yearless numbers without a time are not dates in prose
        "之后天天加班",
        "产品需求文档V1.0-20240520.docx",
        "时间待定",
    ],
)
def test_find_datetime_ignores_non_dates(text: str) -> None:
    assert find_datetime(text, NOW) is None
