"""Forms as people write them (issue 10): several people on one duty, the seed's own 部门/人
notation everywhere a person is named, group recipients, and dates offered as alternatives."""

from __future__ import annotations

from conftest import DOMAIN, MEDIUM_BODY, make_mail
from test_replies import CHEN, mails_to, reply, text_of

from store.models import ActionItem, Participant, Record


def test_two_people_on_one_duty_each_get_it_and_the_sender_is_told(ctx, send):
    body = MEDIUM_BODY.replace("研发部/王强 — 完成硬件方案评估", "研发部/王强、张喆 — 完成硬件方案评估")
    assert send(make_mail(body)).state == "processed"
    duties = {p.email: p.responsibility for p in Participant.select().where(Participant.role == "recipient")}
    assert duties["wang.qiang@liuhen.localhost"] == duties["zhang.zhe@liuhen.localhost"] == "完成硬件方案评估"
    ack = text_of(ctx, mails_to(CHEN, "ack")[0])
    assert "一项职责写了多人（王强、张喆）" in ack


def test_the_department_goes_with_every_name_after_it(ctx, send):
    # 刘洋 is in 市场部 and in 财务部: "市场部/赵磊、刘洋" means the one of 市场部.
    body = MEDIUM_BODY.replace("市场部/赵磊 — 提供竞品价格", "市场部/赵磊、刘洋 — 提供竞品价格")
    inbound = send(make_mail(body))
    assert inbound.state == "processed", inbound.reason
    emails = {p.email for p in Participant.select().where(Participant.role == "recipient")}
    assert "liu.yang@liuhen.localhost" in emails and "liu.yang2@liuhen.localhost" not in emails


def test_minutes_name_action_item_owners_as_department_slash_person(ctx, send):
    assert send(make_mail(MEDIUM_BODY)).state == "processed"
    minutes = "纪要：\n结论：采用方案B\n行动项：\n完成竞品调研 / 市场部/刘洋 / 2026/12/05 18:00\n核算BOM / 王强 / 2026-12-06 18:00"
    inbound = reply(send, CHEN, minutes)
    assert inbound.state == "processed", inbound.reason
    items = {a.text: (a.owner_email, a.due_at.astimezone(ctx.tz).strftime("%m-%d %H:%M")) for a in ActionItem.select()}
    assert items == {"完成竞品调研": ("liu.yang@liuhen.localhost", "12-05 18:00"),
                     "核算BOM": ("wang.qiang@liuhen.localhost", "12-06 18:00")}


def test_a_notice_to_every_department_head_reaches_each_of_them(ctx, send):
    # The seed's own example: 需确认人员：各部门负责人.
    body = "通知内容：自2027年1月1日起试行弹性考勤\n需确认人员：各部门负责人\n"
    inbound = send(make_mail(body, subject="关于推行弹性考勤制度的通知", to=f"notice@{DOMAIN}"), rcpt=f"notice@{DOMAIN}")
    assert inbound.state == "processed", inbound.reason
    heads = {d.head for d in ctx.directory.departments}
    recipients = {p.email for p in Participant.select().where(Participant.role == "recipient")}
    assert heads - {Record.get().initiator_email} <= recipients and len(heads) >= 5


def test_dates_offered_as_alternatives_are_named_as_such(ctx, send):
    body = MEDIUM_BODY.replace("方案评审 — 2026-12-10 14:00", "方案评审 — 12月10日或12月11日")
    inbound = send(make_mail(body))
    assert inbound.state == "rejected" and "date_alternatives" in inbound.reason
    assert "unknown_person" not in inbound.reason  # "或12月11日" was looked up as a person
    assert "给了多个时间" in text_of(ctx, mails_to(CHEN, "rejection")[-1])
    due = MEDIUM_BODY.replace("期望完成时间：2026-12-20 18:00", "期望完成时间：2026-12-20 至 2026-12-22")
    again = send(make_mail(due, subject="智能手表项目-外观方案评审"))
    assert again.state == "rejected" and "due:date_alternatives" in again.reason
