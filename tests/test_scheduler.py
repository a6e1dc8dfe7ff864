"""The clock: walk records through days of reminders, escalations and digests — exactly once."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import timedelta

from conftest import DOMAIN, ENGLISH_BODY, NOW, make_mail
from test_replies import CHEN, MEDIUM, WANG, ZHAO, reply, text_of

from gateway.checks import CJK
from gateway.cli import cmd_tick
from gateway.scheduler import answer_stage, deadline_stage, sweep
from store.models import DigestPreference, Event, OutboundMessage, Participant

HOUR = timedelta(hours=1)


def at(ctx, clock, delta: timedelta) -> int:
    """Move the clock to NOW + delta and sweep; returns how many mails were queued."""
    clock.instant = NOW + delta
    return sweep(ctx)


def mails(kind: str, to: str | None = None) -> list[OutboundMessage]:
    query = OutboundMessage.select().where(OutboundMessage.kind == kind)
    if to:
        query = query.where(OutboundMessage.to_addr == to)
    return list(query.order_by(OutboundMessage.id))


def test_stages_are_computed_from_the_deadline():
    due, repeat, escalate = NOW, timedelta(hours=24), timedelta(hours=48)
    assert answer_stage(due, due, repeat, escalate).name == "reminder"
    assert answer_stage(due, due + 25 * HOUR, repeat, escalate).number == 1
    assert answer_stage(due, due + 30 * HOUR, repeat, escalate).next_at == due + 48 * HOUR
    assert answer_stage(due, due + 49 * HOUR, repeat, escalate).name == "escalation"
    assert deadline_stage(due, due - HOUR, 24 * HOUR, escalate).name == "before"
    assert deadline_stage(due, due + HOUR, 24 * HOUR, escalate).name == "overdue"


def test_an_unanswered_request_is_reminded_then_escalated_once(ctx, send, clock):
    send(make_mail(MEDIUM))  # 中: 24 h to answer, dispatched at NOW
    assert at(ctx, clock, 22 * HOUR) == 0  # 08:00 the next day: nothing due yet
    at(ctx, clock, 24 * HOUR + timedelta(minutes=1))
    assert {m.to_addr for m in mails("reminder")} == {WANG, ZHAO}
    assert at(ctx, clock, 24 * HOUR + timedelta(minutes=2)) == 0  # exactly once
    reply(send, ZHAO, "同意")  # an answer stops the chain at once
    at(ctx, clock, 48 * HOUR + timedelta(minutes=1))
    assert [m.to_addr for m in mails("reminder") if m.to_addr in (WANG, ZHAO)] == [WANG, ZHAO, WANG]
    at(ctx, clock, 72 * HOUR + timedelta(minutes=1))  # 48 h overdue: escalation
    escalations = mails("escalation")
    assert {m.to_addr for m in escalations} == {"zhou.ming@liuhen.localhost", CHEN}  # 王强's head + initiator
    assert "王强 逾期未回复" in text_of(ctx, escalations[0])
    assert at(ctx, clock, 200 * HOUR) >= 0 and len(mails("escalation")) == 2  # the chain is over


def test_a_gateway_down_for_days_catches_up_with_one_mail_per_stage(ctx, send, clock):
    send(make_mail(MEDIUM))
    at(ctx, clock, 60 * HOUR)  # first sweep since dispatch, 36 h overdue
    assert len(mails("reminder", WANG)) == 1  # the current stage only, not a burst


def test_milestones_before_overdue_and_escalation(ctx, send, clock):
    send(make_mail(MEDIUM))
    reply(send, WANG, "同意")
    reply(send, ZHAO, "同意")
    review = Participant  # 方案评审 2026-12-10 14:00, owned by 陈静 (the initiator)
    del review
    from datetime import datetime

    due = datetime(2026, 12, 10, 14, 0, tzinfo=ctx.tz)
    at(ctx, clock, due - NOW - 23 * HOUR)
    before = [m for m in mails("reminder", CHEN) if "即将到期" in text_of(ctx, m)]
    assert len(before) == 1 and "方案评审" in text_of(ctx, before[0])
    at(ctx, clock, due - NOW + HOUR)
    assert any("已逾期" in text_of(ctx, m) for m in mails("reminder", CHEN))
    at(ctx, clock, due - NOW + 49 * HOUR)
    assert any("逾期升级" in text_of(ctx, m) and m.to_addr == "li.na@liuhen.localhost" for m in mails("escalation"))


def test_sign_off_reminders_stop_with_the_signature(ctx, send, clock):
    send(make_mail(MEDIUM))
    reply(send, CHEN, "结果：采用方案B")
    reply(send, WANG, "确认")
    at(ctx, clock, 25 * HOUR)
    signoffs = [m for m in mails("reminder") if "签字" in text_of(ctx, m)]
    assert [m.to_addr for m in signoffs] == [ZHAO]
    text = text_of(ctx, signoffs[0])  # the result again, who has signed and who not yet
    assert "结果：采用方案B" in text and "签字：王强 2026-11-27 10:00" in text and "待签字：赵磊" in text


def test_retrospective_reminder_after_the_archive(ctx, send, clock):
    send(make_mail(MEDIUM))
    reply(send, CHEN, "结果：采用方案B")
    reply(send, WANG, "确认")
    reply(send, ZHAO, "确认")
    at(ctx, clock, 3 * 24 * HOUR + HOUR)
    assert [m.to_addr for m in mails("reminder") if "复盘" in text_of(ctx, m)] == [CHEN]
    assert not any("请尽快回复" in text_of(ctx, m) for m in mails("reminder"))  # archived: no more chains


def test_minutes_are_due_an_hour_after_the_meeting(ctx, send, clock):
    send(make_mail(MEDIUM))
    reply(send, CHEN, "会议：\n时间：2026-11-28 14:00\n链接：https://meeting.example.cn/j/1")
    from datetime import datetime

    end = datetime(2026, 11, 28, 15, 0, tzinfo=ctx.tz)
    at(ctx, clock, end - NOW + 30 * timedelta(minutes=1))
    assert not any("纪要" in text_of(ctx, m) for m in mails("reminder", CHEN))
    at(ctx, clock, end - NOW + 61 * timedelta(minutes=1))
    assert [m.subject for m in mails("reminder", CHEN) if "纪要" in text_of(ctx, m)]


def test_daily_digest_once_at_nine_and_digest_off(ctx, send, clock):
    send(make_mail(MEDIUM))
    at(ctx, clock, timedelta(hours=22, minutes=30))  # 08:30 the next day: not yet
    assert mails("digest") == []
    at(ctx, clock, timedelta(hours=23, minutes=5))  # 09:05
    digests = {m.to_addr: m for m in mails("digest")}
    assert set(digests) >= {WANG, ZHAO}
    assert digests[WANG].headers["List-Unsubscribe"] == f"<mailto:requests@{DOMAIN}?subject=DIGEST%20OFF>"
    at(ctx, clock, timedelta(hours=23, minutes=30))
    assert len(mails("digest", WANG)) == 1
    at(ctx, clock, 24 * HOUR + timedelta(minutes=1))  # the day's reminders (the next are due at 10:00 tomorrow)
    send(make_mail("", subject="退订", to=f"requests@{DOMAIN}", sender=WANG), rcpt=f"requests@{DOMAIN}", mail_from=WANG)
    assert DigestPreference.get_by_id(WANG).enabled is False
    at(ctx, clock, timedelta(hours=47, minutes=5))
    assert len(mails("digest", WANG)) == 1 and len(mails("digest", ZHAO)) == 2


def test_tick_command_at_a_given_instant(ctx, send, capsys):
    send(make_mail(MEDIUM))
    cmd_tick(argparse.Namespace(now="2026-11-28T10:01"), ctx)  # local time: 24 h + 1 min after dispatch
    assert "mail(s) queued at 2026-11-28T10:01+08:00" in capsys.readouterr().out
    assert {m.to_addr for m in mails("reminder")} == {WANG, ZHAO}
    from gateway.report import record_report

    report = record_report(ctx, "PRJ-2026-0001")
    assert {(r["kind"], r["to"]) for r in report["reminders"]} == {("reminder", WANG), ("reminder", ZHAO)}


def test_two_gateways_sweeping_at_once_send_each_reminder_once(ctx, send, tmp_path):
    """Two `liuhen tick` processes on the same database at the same instant."""
    import subprocess
    import sys

    from test_recovery_and_ingest import ROOT

    send(make_mail(MEDIUM))
    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndomain = "{DOMAIN}"\ndata_dir = "{ctx.settings.gateway.data_dir}"\n'
                      'secret = "test-secret"\n[reminders]\ndigest_time = "23:59"\n', encoding="utf-8")
    ctx.db.close()
    env = {"LIUHEN_DATABASE_URL": ctx.settings.database_url, "PATH": "/usr/bin:/bin"}
    when = (NOW + 72 * HOUR + timedelta(minutes=1)).isoformat()  # escalations due for both recipients
    runs = [subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "tick", "--now", when],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    keys = [e.data["key"] for e in Event.select().where(Event.kind.in_(("reminder", "escalation")))]
    assert keys and len(keys) == len(set(keys))
    assert len(mails("escalation")) == 4  # (head + initiator) × two recipients, once each


def test_business_hours_put_friday_evening_deadlines_on_monday(ctx, send, clock):
    object.__setattr__(ctx, "settings", replace(ctx.settings, reminders=replace(
        ctx.settings.reminders, business_hours=True)))
    clock.instant = NOW.replace(hour=17)  # Friday 17:00; 高 gives 2 working hours
    send(make_mail(MEDIUM.replace("优先级：中", "优先级：高")))
    wang = Participant.get((Participant.email == WANG) & (Participant.role == "recipient"))
    assert wang.response_due_at.astimezone(ctx.tz).strftime("%a %m-%d %H:%M") == "Mon 11-30 10:00"
    request = mails("request", WANG)[0]
    assert "2026-11-30 10:00" in text_of(ctx, request)


def test_a_digest_lists_each_item_with_its_deadline_and_reply_address(ctx, send, clock):
    from gateway.outbox import mail_body

    send(make_mail(MEDIUM))
    at(ctx, clock, timedelta(hours=23, minutes=5))
    text, html = mail_body(ctx, mails("digest", WANG)[0])
    assert "[PRJ-2026-0001] 智能手表项目-硬件方案评审\n     等待您回复（截止 2026-11-28 10:00）\n" in text  # title, what, by when
    assert f"回复：{participant_reply(WANG)}" in text and "mailto:reply+" in html


def participant_reply(email: str) -> str:
    return OutboundMessage.get((OutboundMessage.to_addr == email) & (OutboundMessage.kind == "request")).headers["Reply-To"]


def test_notice_reminders_come_before_the_effective_date_and_escalate_after_48_hours(ctx, send, clock):
    body = "通知内容：研发部试行弹性考勤\n生效日期：2026-11-28 09:00\n需确认人员：王强\n"
    send(make_mail(body, subject="关于推行弹性考勤制度的通知", to=f"notice@{DOMAIN}"), rcpt=f"notice@{DOMAIN}")
    at(ctx, clock, timedelta(hours=1))  # takes effect tomorrow 09:00: remind now, a day before
    assert [m.to_addr for m in mails("reminder")] == [WANG]
    at(ctx, clock, timedelta(hours=48, minutes=1))  # 48 h without confirmation
    assert {m.to_addr for m in mails("escalation")} == {"zhou.ming@liuhen.localhost", CHEN}


def test_someone_with_only_english_records_gets_the_digest_in_english(ctx, send, clock):
    from gateway.outbox import mail_body

    emily = "emily.carter@liuhen.localhost"
    send(make_mail(ENGLISH_BODY, subject="Overseas launch event", sender=emily), mail_from=emily)
    at(ctx, clock, timedelta(hours=23, minutes=5))
    [digest] = mails("digest", WANG)
    text = mail_body(ctx, digest)[0]
    assert digest.subject.startswith("Your pending items 2026-11-28")
    assert "[PRJ-2026-0001] Overseas launch event for the Q1 smartwatch\n" in text
    assert "waiting for your answer (due 2026-11-28 10:00)" in text
    assert "milestone: Venue booked (due 2026-11-29 18:00)" in text
    # With a Chinese record as well, the digest is Chinese and says the English items in Chinese.
    at(ctx, clock, 24 * HOUR + timedelta(minutes=1))  # the English record's reminders; the next at 10:00
    send(make_mail(MEDIUM))
    at(ctx, clock, timedelta(hours=47))  # 09:00, before any reminder is due
    latest = mails("digest", WANG)[-1]
    assert latest.subject.startswith("今日待办") and "逾期未回复" in mail_body(ctx, latest)[0]


def test_a_reminder_repeats_the_task_and_the_deadline_not_a_vague_asap(ctx, send, clock):
    send(make_mail(MEDIUM))
    at(ctx, clock, 24 * HOUR + timedelta(minutes=1))
    reminder = mails("reminder", WANG)[0]
    text = text_of(ctx, reminder)
    assert "尽快" not in reminder.subject + text  # the rules reject it as vague; so do we
    assert "请答复（截止 2026-11-28 10:00）" in text.split("\n\n")[1]  # its first line after the greeting
    assert "职责：完成硬件方案评估" in text  # what he is to do …
    assert "背景与目标：新款智能手表需在Q1量产" in text  # … and the request itself, again


def test_an_escalation_tells_the_head_who_is_late_on_what_since_when_and_what_to_do(ctx, send, clock):
    send(make_mail(MEDIUM))
    at(ctx, clock, 72 * HOUR + timedelta(minutes=1))
    to_head = mails("escalation", "zhou.ming@liuhen.localhost")[0]  # the head's first mail on the record
    text = text_of(ctx, to_head)
    assert "逾期人：王强 <wang.qiang@liuhen.localhost>" in text
    assert "职责：完成硬件方案评估" in text and "逾期自：2026-11-28 10:00" in text
    assert "期望完成时间：2026-12-20 18:00" in text  # the request itself
    assert "转交" in text  # what the head can do about it


def test_an_english_record_is_reminded_in_english_throughout(ctx, send, clock):
    send(make_mail(ENGLISH_BODY, subject="Overseas launch event", sender="emily.carter@liuhen.localhost"),
         mail_from="emily.carter@liuhen.localhost")
    at(ctx, clock, 24 * HOUR + timedelta(minutes=1))
    reminder = mails("reminder")[0]
    text = text_of(ctx, reminder)
    assert "Your answer is due (2026-" in text
    assert not CJK.search(reminder.subject.replace("王强", "")) and "Book a venue and agree the budget" in text
    assert "Your part: demo units for the event" in text


def test_a_head_who_initiated_the_record_gets_one_escalation_not_two(ctx, send, clock):
    body = MEDIUM.replace("产品部/陈静", "研发部/周明")
    assert send(make_mail(body, sender="zhou.ming@liuhen.localhost"),
                mail_from="zhou.ming@liuhen.localhost").state == "processed"
    at(ctx, clock, 72 * HOUR + timedelta(minutes=1))
    about_wang = [m for m in mails("escalation") if "王强 逾期未回复" in text_of(ctx, m)]
    assert [m.to_addr for m in about_wang] == ["zhou.ming@liuhen.localhost"]  # his head, who is the initiator


def test_one_mail_per_person_per_moment_a_reminded_item_is_not_repeated_in_the_digest(ctx, send, clock):
    send(make_mail(MEDIUM))  # answers due 2026-11-28 10:00
    at(ctx, clock, 24 * HOUR + timedelta(minutes=1))  # 10:01: the reminder and the day's digest, one sweep
    assert len(mails("reminder", WANG)) == 1
    assert mails("digest", WANG) == []  # the reminder said it; the digest would only repeat it
    at(ctx, clock, 47 * HOUR)  # 09:00 the next day: no reminder due yet, so the digest has it
    [digest] = mails("digest", WANG)
    assert "PRJ-2026-0001" in text_of(ctx, digest)


def _buttons(ctx, mail: OutboundMessage) -> list[str]:
    """The first lines the mail's buttons write into a reply (同意需求, 完成：…)."""
    import re
    from urllib.parse import parse_qs, unquote, urlsplit

    from gateway.outbox import mail_body

    links = re.findall(r'href="(mailto:[^"]+)"', mail_body(ctx, mail)[1])
    parts = [urlsplit(link.replace("&amp;", "&")) for link in links]
    assert {unquote(p.path) for p in parts} <= {mail.headers["Reply-To"]}  # the reader's own address
    return [parse_qs(p.query, keep_blank_values=True)["body"][0].strip() for p in parts]


def test_every_reminder_offers_as_buttons_what_it_reminds_of(ctx, send, clock):
    from datetime import datetime

    send(make_mail(MEDIUM))
    at(ctx, clock, 24 * HOUR + timedelta(minutes=1))
    reminder = mails("reminder", WANG)[0]
    assert _buttons(ctx, reminder) == ["同意需求", "需补充信息：", "建议调整节点："]
    assert "» 请在 2026-11-28 10:00 前答复：同意需求 / 需补充信息 / 建议调整节点" in text_of(ctx, reminder)
    at(ctx, clock, 72 * HOUR + timedelta(minutes=1))
    to_head = mails("escalation", "zhou.ming@liuhen.localhost")[0]
    assert _buttons(ctx, to_head) == [""]  # a plain reply, passed on to the initiator as a comment
    assert "» 您可以：回复本邮件催办或留言" in text_of(ctx, to_head)
    reply(send, WANG, "同意")
    reply(send, ZHAO, "同意")
    due = datetime(2026, 12, 10, 14, 0, tzinfo=ctx.tz)  # 方案评审, owned by 陈静
    at(ctx, clock, due - NOW - 23 * HOUR)
    [before] = [m for m in mails("reminder", CHEN) if "即将到期" in text_of(ctx, m)]
    assert _buttons(ctx, before) == ["完成：", "进度：", "延期："]
    reply(send, CHEN, "结果：采用方案B")
    at(ctx, clock, due - NOW + 2 * HOUR)
    signoff = [m for m in mails("reminder", WANG) if "签字" in text_of(ctx, m)][-1]
    assert _buttons(ctx, signoff) == ["确认", "驳回："]


def test_a_mail_that_asks_nothing_says_so(ctx, send, clock):
    send(make_mail(MEDIUM))
    reply(send, WANG, "进度：样机已到，周五前测完")
    [told] = [m for m in mails("update", CHEN) if "同步进度" in text_of(ctx, m)]
    from gateway.outbox import mail_body

    text, html = mail_body(ctx, told)
    assert "» 仅供知悉，无需回复。" in text and "仅供知悉，无需回复。" in html
    assert _buttons(ctx, told) == []
    reply(send, ZHAO, "需补充信息：请提供BOM成本明细")
    [question] = mails("question", CHEN)
    assert "» 请直接回复本邮件回答 赵磊 的问题" in text_of(ctx, question)
    assert _buttons(ctx, question) == ["补充信息："]
