"""Working time: deadlines in business hours on Chinese working days."""

from __future__ import annotations

from datetime import datetime, time

from conftest import TZ

from gateway.worktime import WorkingTime

WORK = WorkingTime(TZ, time(9, 0), time(18, 0))


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


def test_hours_within_a_working_day():
    assert WORK.add(local(2026, 11, 27, 10, 0), 2) == local(2026, 11, 27, 12, 0)


def test_friday_evening_carries_over_the_weekend():
    # Fri 2026-11-27 17:00 + 2 working hours: one hour Friday, one hour Monday.
    assert WORK.add(local(2026, 11, 27, 17, 0), 2) == local(2026, 11, 30, 10, 0)


def test_before_opening_starts_at_nine():
    assert WORK.add(local(2026, 11, 30, 6, 30), 1) == local(2026, 11, 30, 10, 0)


def test_national_day_holidays_are_skipped():
    # 2026-09-30 (Wed) 17:00 + 2 h: 国庆 runs 1-7 October 2026; work resumes on the 8th.
    assert WORK.add(local(2026, 9, 30, 17, 0), 2) == local(2026, 10, 8, 10, 0)


def test_an_adjusted_working_weekend_counts():
    # 2026-10-10 is a Saturday worked in exchange (调休) for the National Day holiday.
    assert WORK.is_workday(local(2026, 10, 10, 0, 0).date())
    assert WORK.add(local(2026, 10, 9, 17, 0), 2) == local(2026, 10, 10, 10, 0)


def test_years_without_data_fall_back_to_weekdays():
    assert WORK.is_workday(local(2027, 3, 1, 0, 0).date())  # a Monday
    assert not WORK.is_workday(local(2027, 3, 6, 0, 0).date())  # a Saturday


def test_company_days_off_and_extra_working_days_win_over_the_calendar():
    work = WorkingTime(TZ, time(9, 0), time(18, 0), days_off=frozenset({local(2026, 11, 30, 0, 0).date()}),
                       working_days=frozenset({local(2026, 11, 28, 0, 0).date()}))
    # Fri 17:00 + 2 h: one hour Friday, one on Saturday (worked), Monday is off anyway.
    assert work.add(local(2026, 11, 27, 17, 0), 2) == local(2026, 11, 28, 10, 0)
    # Sat 17:00 + 2 h: one hour Saturday; Monday the 30th is a company day off.
    assert work.add(local(2026, 11, 28, 17, 0), 2) == local(2026, 12, 1, 10, 0)


def test_deadlines_use_the_configured_days(ctx):
    from dataclasses import replace

    reminders = replace(ctx.settings.reminders, business_hours=True, days_off=("2026-11-30",))
    company = replace(ctx, settings=replace(ctx.settings, reminders=reminders))
    # Fri 2026-11-27 17:00 + 2 working hours, Monday off: Tuesday 10:00.
    assert company.deadline(local(2026, 11, 27, 17, 0), 2) == local(2026, 12, 1, 10, 0)


def test_working_time_is_on_by_default_and_nothing_goes_out_outside_it(ctx, clock):
    # issue 10: deadlines fell at 23:42 and escalations went out on Saturday at 00:01.
    from dataclasses import replace

    from conftest import DOMAIN, MEDIUM_BODY, make_mail

    from config.settings import load_settings
    from gateway.intake import store_raw
    from gateway.pipeline import process_inbound
    from gateway.scheduler import sweep
    from store.models import Event, Participant

    defaults = load_settings(None, env={}).reminders
    assert defaults.business_hours is True
    ctx = replace(ctx, settings=replace(ctx.settings, reminders=defaults))
    clock.instant = local(2026, 11, 27, 17, 42)  # Friday, 17:42
    stored = store_raw(ctx.db, make_mail(MEDIUM_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "processed"
    wang = Participant.get((Participant.email == "wang.qiang@liuhen.localhost") & (Participant.role == "recipient"))
    # 24 working hours (9:00–18:00) from Friday 17:42: 18 min, Monday 9 h, Tuesday 9 h,
    # Wednesday 5 h 42 min → Wednesday 2 Dec 14:42 — never 23:42 on a Saturday.
    assert wang.response_due_at.astimezone(TZ) == local(2026, 12, 2, 14, 42)
    clock.instant = local(2026, 12, 5, 0, 1)  # Saturday 00:01, long overdue
    assert sweep(ctx) == 0 and not Event.select().where(Event.kind.in_(("reminder", "escalation"))).exists()
    clock.instant = local(2026, 12, 7, 9, 0)  # Monday 09:00: now it goes out
    assert sweep(ctx) > 0
    assert Event.select().where(Event.kind.in_(("reminder", "escalation"))).exists()
