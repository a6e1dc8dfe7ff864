"""Replies over SMTP drive a record through its life: keywords, trust, sign-off, archive."""

from __future__ import annotations

import json

import pytest
from conftest import DOMAIN, PROJECT_BODY, make_mail, sent_mails

from gateway.outbox import mail_body
from store.models import (
    ActionItem,
    Dispute,
    Event,
    InboundMessage,
    Meeting,
    Milestone,
    OutboundMessage,
    Participant,
    ProgressRow,
    Record,
)

WANG, ZHAO, CHEN = "wang.qiang@liuhen.localhost", "zhao.lei@liuhen.localhost", "chen.jing@liuhen.localhost"
NAMES = {WANG: "王强", ZHAO: "赵磊", CHEN: "陈静", "li.na@liuhen.localhost": "李娜"}
MEDIUM = PROJECT_BODY.replace("优先级：高", "优先级：中")


@pytest.fixture
def record(ctx, send) -> Record:
    assert send(make_mail(MEDIUM)).state == "processed"
    return Record.get()


def reply_address(person: str) -> str:
    """The personal Reply-To the gateway gave this person (their latest mail)."""
    mails = OutboundMessage.select().where(OutboundMessage.to_addr == person).order_by(OutboundMessage.id.desc())
    return next(m.headers["Reply-To"] for m in mails if "Reply-To" in m.headers)


def reply(send, person: str, body: str, to: str | None = None, subject: str = "Re: [PRJ-2026-0001] 智能手表项目-硬件方案评审",
          headers: dict[str, str] | None = None) -> InboundMessage:
    to = to or reply_address(person)
    return send(make_mail(body, subject=subject, to=to, sender=f"{NAMES.get(person, 'X')} <{person}>",
                          extra_headers=headers), rcpt=to, mail_from=person)


def mails_to(person: str, kind: str | None = None) -> list[OutboundMessage]:
    query = OutboundMessage.select().where(OutboundMessage.to_addr == person)
    if kind:
        query = query.where(OutboundMessage.kind == kind)
    return list(query.order_by(OutboundMessage.id))


def text_of(ctx, mail: OutboundMessage) -> str:
    return mail_body(ctx, mail)[0]


def participant(email: str, role: str = "recipient") -> Participant:
    return Participant.get((Participant.email == email) & (Participant.role == role))


OUTLOOK_ZH_QUOTE = """

-----邮件原件-----
发件人: 留痕 liuhen <liuhen@liuhen.test>
发送时间: 2026年11月27日 10:00
收件人: 王强 <wang.qiang@liuhen.localhost>
主题: [PRJ-2026-0001] 请2026-11-28 10:00前响应：智能手表项目-硬件方案评审

同意 / 同意需求 / AGREE / APPROVE — 同意需求
"""


def test_agree_is_recorded_with_a_receipt_and_the_initiator_told(ctx, send, record):
    inbound = reply(send, WANG, "同意，周五前给出评估。" + OUTLOOK_ZH_QUOTE)
    assert inbound.state == "processed", inbound.reason
    wang = participant(WANG)
    assert wang.response == "agree" and wang.responded_at is not None
    [receipt] = mails_to(WANG, "receipt")
    assert text_of(ctx, receipt).startswith("已记录：同意需求 — PRJ-2026-0001 — 王强 — 2026-11-27 10:00")
    assert receipt.headers["Auto-Submitted"] == "auto-replied"
    [update] = mails_to(CHEN, "update")
    assert "王强 同意需求" in text_of(ctx, update) and "周五前给出评估" in text_of(ctx, update)
    assert Event.get(Event.kind == "feedback").data["text"] == "周五前给出评估。"


def test_only_the_new_text_counts(ctx, send, record):
    # The quoted request lists every keyword; the person wrote NEED INFO above it.
    inbound = reply(send, WANG, "您好，\n需补充信息：请提供BOM成本明细\n\n发自我的iPhone" + OUTLOOK_ZH_QUOTE)
    assert inbound.state == "processed", inbound.reason
    assert participant(WANG).response == "need_info"
    assert "请提供BOM成本明细" in text_of(ctx, mails_to(CHEN, "question")[0])
    assert "发自我的iPhone" not in text_of(ctx, mails_to(CHEN, "question")[0])


@pytest.mark.parametrize("body", ["不同意，成本太高", "未确认", "I don't agree with the budget"])
def test_negations_are_comments_not_approvals(ctx, send, record, body):
    inbound = reply(send, WANG, body)
    assert inbound.state == "processed" and inbound.reason.startswith("comment")
    assert participant(WANG).response == ""
    assert Event.get(Event.kind == "comment").data["text"] == body


def test_two_keywords_on_the_first_line_record_nothing(ctx, send, record):
    inbound = reply(send, WANG, "同意/驳回")
    assert inbound.state == "rejected" and inbound.reason.startswith("reply_ambiguous")
    assert participant(WANG).response == ""
    [answer] = mails_to(WANG, "refusal")
    assert "同时出现了多个关键词" in text_of(ctx, answer)


def test_a_forged_token_changes_nothing_and_is_answered_once(ctx, send, record):
    forged = f"reply+{record.id}-{participant(WANG).id}-aaaaaaaaaaaaaaaa@{DOMAIN}"
    first = reply(send, WANG, "同意", to=forged)
    second = reply(send, WANG, "同意！", to=forged)
    assert first.state == second.state == "rejected"
    assert "reply_forged" in first.reason and "not repeated" in second.reason
    assert participant(WANG).response == ""
    assert len(mails_to(WANG, "refusal")) == 1


def test_someone_else_using_a_reply_address_changes_nothing(ctx, send, record):
    inbound = reply(send, ZHAO, "同意", to=reply_address(WANG))
    assert inbound.state == "rejected" and "reply_foreign" in inbound.reason
    assert participant(WANG).response == "" and participant(ZHAO).response == ""
    # The refusal names nobody: the owner's address would only tell a forger whom to forge.
    [answer] = mails_to(ZHAO, "refusal")
    body = text_of(ctx, answer)
    assert WANG not in body and WANG not in inbound.reason
    assert "未做任何记录" in body


def test_a_reply_without_token_is_matched_by_references_but_records_no_progress(ctx, send, record, dns_zone):
    # Matched to the record by In-Reply-To; without the token it may only be a comment (issue 9),
    # and only because the sender's domain signed it.
    from conftest import dkim_signed
    dns_zone.publish_dkim("liuhen.localhost")
    ack = mails_to(CHEN, "ack")[0]
    raw = dkim_signed(make_mail("进度：\n阶段：方案设计\n进展：硬件选型完成", to=f"liuhen@{DOMAIN}",
                                sender=f"陈静 <{CHEN}>", extra_headers={"In-Reply-To": ack.message_id}),
                      "liuhen.localhost")
    inbound = send(raw, rcpt=f"liuhen@{DOMAIN}", mail_from=CHEN)
    assert inbound.state == "processed", inbound.reason
    assert ProgressRow.select().count() == 0
    comment = Event.get(Event.kind == "comment")
    assert comment.data["keyword"] == "progress" and comment.data["via"] == "references"
    assert "硬件选型完成" in comment.data["text"]


def test_a_stranger_quoting_the_subject_tag_changes_nothing(ctx, send, record):
    inbound = reply(send, "mallory@example.net", "同意", to=f"project@{DOMAIN}")
    assert inbound.state == "rejected" and "reply_not_participant" in inbound.reason
    assert Event.select().where(Event.kind == "feedback").count() == 0


def test_keywords_are_limited_to_roles(ctx, send, record):
    inbound = reply(send, WANG, "结果：采用方案B")
    assert inbound.state == "rejected" and inbound.reason.startswith("reply_role")
    assert Record.get().status == "open"
    [answer] = mails_to(WANG, "refusal")
    assert "「结果」只能由发起人使用" in text_of(ctx, answer)  # the keyword and the role, in his language


def test_a_refusal_names_keywords_and_roles_in_the_language_it_is_answered_in(ctx):
    from gateway.refusals import Refusal

    refusal = Refusal("reply_role", keywords=("result",), roles=("initiator", "lead"))
    assert ctx.renderer.problem_text("en", "reply_role", **refusal.values(ctx, "en")) == (
        "“RESULT” can only be used by the initiator, the lead who rules disputes. Nothing was recorded.")
    assert ctx.renderer.problem_text("zh", "reply_role", **refusal.values(ctx, "zh")) == (
        "「结果」只能由发起人、裁定人使用，未做任何记录。")


def test_result_sign_off_closure_gate_and_archive(ctx, send, record):
    assert reply(send, CHEN, "关闭").reason.startswith("close_no_result")
    assert reply(send, CHEN, "结果：采用方案B，BOM成本控制在320元以内").state == "processed"
    assert Record.get().status == "confirming" and Record.get().result.startswith("采用方案B")
    assert len(mails_to(WANG, "signoff")) == 1 and len(mails_to(ZHAO, "signoff")) == 1
    to_sign = text_of(ctx, mails_to(WANG, "signoff")[0])  # the result, by when, and who signs
    assert "采用方案B，BOM成本控制在320元以内" in to_sign and "请在 2026-" in to_sign and "待签字：王强、赵磊" in to_sign
    signed = reply(send, WANG, "确认")
    assert signed.state == "processed"
    assert "还待签字：赵磊" in text_of(ctx, mails_to(WANG, "receipt")[-1])
    refused = reply(send, CHEN, "关闭")
    assert refused.state == "rejected" and "赵磊" in refused.reason
    assert reply(send, ZHAO, "驳回：成本测算缺少模具费用").state == "processed"
    assert Record.get().status == "open" and participant(WANG).signed_at is None
    assert "驳回了结果" in text_of(ctx, mails_to(CHEN, "update")[-1])
    reply(send, CHEN, "结果：采用方案B，含模具费用，BOM成本330元")
    reply(send, WANG, "签字确认")
    last = reply(send, ZHAO, "CONFIRM")
    assert last.state == "processed", last.reason
    archived = Record.get()
    assert archived.status == "archived"
    assert archived.archive_key == "智能手表项目-硬件方案评审-20261127"
    assert archived.archive_category == "项目档案库"
    evidence = Event.select().where(Event.kind == "signed").order_by(Event.id.desc()).first().data
    assert evidence["inbound_id"] == last.id and evidence["token"] and evidence["via"] == "token"
    closing = mails_to(CHEN, "closed")
    assert closing and "复盘" in text_of(ctx, closing[0])
    # The closing mail is the record of the sign-off: the result as its author wrote it, and
    # who signed when — not "from" the last signer above the initiator's text.
    told = text_of(ctx, mails_to(WANG, "closed")[0])
    assert "来自：陈静 <chen.jing@liuhen.localhost>" in told and "含模具费用，BOM成本330元" in told
    assert "签字：王强 2026-11-27 10:00、赵磊 2026-11-27 10:00" in told
    # After the archive: a retrospective is welcome, anything else is answered as closed.
    assert reply(send, CHEN, "复盘：评审提前完成；下次提前备料").state == "processed"
    assert Record.get().retro == "评审提前完成；下次提前备料"
    late = reply(send, WANG, "同意")
    assert late.state == "rejected" and late.reason.startswith("reply_closed")


def test_a_notice_archives_when_everyone_confirmed(ctx, send):
    body = "通知内容：自2027年1月1日起研发部试行弹性考勤\n需确认人员：王强、张喆\n"
    send(make_mail(body, subject="关于推行弹性考勤制度的通知", to=f"notice@{DOMAIN}"), rcpt=f"notice@{DOMAIN}")
    reply(send, WANG, "已确认", subject="Re: 关于推行弹性考勤制度的通知")
    assert Record.get().status == "open"
    NAMES["zhang.zhe@liuhen.localhost"] = "张喆"
    assert reply(send, "zhang.zhe@liuhen.localhost", "确认").state == "processed"
    notice = Record.get()
    assert notice.status == "archived" and notice.archive_key.startswith("关于推行弹性考勤制度的通知-")
    assert {p.response for p in Participant.select().where(Participant.role == "recipient")} == {"confirmed"}


def test_delay_needs_reason_and_new_plan_then_moves_the_milestone(ctx, send, record):
    incomplete = reply(send, CHEN, "延期：样机没到")
    assert incomplete.state == "rejected" and incomplete.reason.startswith("delay_incomplete")
    ok = reply(send, CHEN, "延期：\n节点：方案评审\n原因：样机未到\n新计划：2026-12-12 14:00 评审")
    assert ok.state == "processed", ok.reason
    moved = Milestone.get(Milestone.name == "方案评审")
    assert moved.due_at.astimezone(ctx.tz).strftime("%m-%d %H:%M") == "12-12 14:00"
    assert moved.delayed_from.astimezone(ctx.tz).strftime("%m-%d %H:%M") == "12-10 14:00"
    assert "原定：2026-12-10 14:00 → 新时间：2026-12-12 14:00" in text_of(ctx, mails_to(WANG, "update")[-1])


def test_meeting_invitation_carries_an_ics_and_minutes_assign_action_items(ctx, send, record):
    import icalendar

    assert reply(send, CHEN, "会议：\n时间：2026-12-01 14:00\n时长：90分钟\n链接：https://meeting.example.cn/j/42\n"
                             "议程：方案评审").state == "processed"
    meeting = Meeting.get()
    assert (meeting.ends_at - meeting.starts_at).total_seconds() == 90 * 60
    invitation = next(m for m in sent_mails(ctx) if m["To"].endswith(f"<{WANG}>") and m.get_content_type() == "multipart/mixed")
    shown, attached = [p for p in invitation.walk() if p.get_content_type() == "text/calendar"]
    calendar = shown.get_payload(decode=True).decode()
    assert "DTSTART;TZID=Asia/Shanghai:20261201T140000" in calendar and "METHOD:REQUEST" in calendar
    [event] = icalendar.Calendar.from_ical(calendar).walk("VEVENT")
    assert f"mailto:{WANG}" in [str(a) for a in event["ATTENDEE"]]
    assert attached.get_filename() == "invite.ics" and attached.get_payload(decode=True).decode() == calendar
    bad = reply(send, CHEN, "纪要：\n行动项：\n完成BOM核算 / 王小明 / 2026-12-05 18:00")
    assert bad.state == "rejected" and bad.reason.startswith("minutes_problems")
    good = reply(send, CHEN, "纪要：\n结论：采用方案B\n行动项：\n完成BOM核算 / 王强 / 2026-12-05 18:00")
    assert good.state == "processed", good.reason
    item = ActionItem.get()
    assert (item.text, item.owner_email) == ("完成BOM核算", WANG)
    assert Meeting.get().minutes_at is not None
    assert "含您的行动项" in text_of(ctx, mails_to(WANG, "update")[-1])


def test_a_dispute_goes_to_the_lead_who_rules(ctx, send, record):
    assert reply(send, WANG, "争议：研发与市场对上市时间意见不一致").state == "processed"
    lead = Participant.get((Participant.role == "lead") & (Participant.email == "li.na@liuhen.localhost"))
    assert Dispute.get().lead_email == lead.email  # 陈静's department head is reminded first
    assert "争议待您裁定" in text_of(ctx, mails_to(lead.email)[-1])
    assert reply(send, WANG, "裁定：按研发意见").reason.startswith("reply_role")  # a party, not a superior
    assert reply(send, lead.email, "裁定：按研发意见，上市推迟两周").state == "processed"
    settled = Dispute.get()
    assert settled.ruled_by == lead.email and settled.ruling == "按研发意见，上市推迟两周"
    assert "争议已裁定" in text_of(ctx, mails_to(WANG, "update")[-1])


def test_show_prints_the_trace_as_sentences_and_a_multi_line_result_indented(ctx, send, record, capsys):
    import argparse

    from gateway.cli import cmd_show

    reply(send, WANG, "同意")
    reply(send, CHEN, "结果：采用方案B\n成本 320 元")
    cmd_show(argparse.Namespace(ref=record.ref, json=False), ctx)
    shown = capsys.readouterr().out
    assert "陈静 发起了 PRJ-2026-0001" in shown and "王强 同意需求" in shown
    assert "陈静 提交结果：采用方案B 成本 320 元" in shown
    assert "  result: 采用方案B\n          成本 320 元" in shown
    assert "mail_sent" not in shown and "feedback" not in shown
    cmd_show(argparse.Namespace(ref=record.ref, json=True), ctx)
    trace = json.loads(capsys.readouterr().out)["trace"]
    assert {"at": "2026-11-27 10:00", "text": "王强 同意需求"} in trace


def test_files_in_a_reply_go_to_whom_it_is_relayed_and_into_the_export(ctx, send, record, tmp_path):
    import argparse
    import email as email_lib
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    from conftest import sent_mails

    from gateway.cli import cmd_archive_export

    to = reply_address(WANG)
    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = WANG, to, "Re: [PRJ-2026-0001] 智能手表项目-硬件方案评审"
    msg["Message-ID"] = "<reply-with-file@client.example.cn>"
    msg.attach(MIMEText("需补充信息：BOM 成本请按附件模板填写", "plain", "utf-8"))
    part = MIMEApplication(b"%PDF-1.4 template", "pdf")
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "BOM模板V1.0-20261127.pdf"))
    msg.attach(part)
    inbound = send(msg.as_bytes(), rcpt=to, mail_from=WANG)
    assert inbound.state == "processed", inbound.reason
    sent_mails(ctx)
    question = next(m for m in OutboundMessage.select() if m.kind == "question" and m.to_addr == CHEN)
    receipt = next(m for m in OutboundMessage.select() if m.kind == "receipt" and m.to_addr == WANG)
    files = {p.get_filename(): p.get_payload(decode=True)
             for p in email_lib.message_from_bytes(bytes(question.raw)).walk()
             if p.get_content_disposition() == "attachment"}
    assert files == {"BOM模板V1.0-20261127.pdf": b"%PDF-1.4 template"}  # the initiator gets the file
    assert receipt.attachments == []  # the sender is not sent their own file back
    cmd_archive_export(argparse.Namespace(ref=record.ref, out=str(tmp_path / "out")), ctx)
    exported = [p.name for p in (tmp_path / "out" / record.ref / "attachments").iterdir()]
    assert any(name.endswith("BOM模板V1.0-20261127.pdf") for name in exported)


def test_show_has_meetings_action_items_progress_disputes_and_signatures(ctx, send, record, capsys):
    import argparse

    from gateway.cli import cmd_show

    reply(send, CHEN, "会议：\n时间：2026-12-03 14:00\n时长：60分钟\n链接：https://meeting.example.cn/j/1\n议程：方案评审")
    reply(send, CHEN, "纪要：\n结论：采用方案B\n行动项：\n完成BOM核算 / 王强 / 2026-12-05 18:00")
    reply(send, WANG, "进度：\n阶段：样机测试\n进展：已完成跌落测试\n下一步：出报告")
    reply(send, ZHAO, "争议：上市时间意见不一致")
    reply(send, CHEN, "裁定：按研发意见")
    reply(send, CHEN, "结果：采用方案B")
    reply(send, WANG, "确认")
    cmd_show(argparse.Namespace(ref=record.ref, json=True), ctx)
    shown = json.loads(capsys.readouterr().out)
    assert shown["meetings"][0]["link"] == "https://meeting.example.cn/j/1" and shown["meetings"][0]["minutes_at"]
    assert shown["action_items"] == [{"text": "完成BOM核算", "owner": WANG, "due": "2026-12-05T18:00+08:00",
                                      "done_at": None}]
    assert shown["progress"][0]["stage"] == "样机测试" and shown["progress"][0]["next_step"] == "出报告"
    assert shown["disputes"][0]["ruling"] == "按研发意见"
    assert shown["signatures"][0]["signer"] == WANG and shown["signatures"][0]["via"] == "token"
    cmd_show(argparse.Namespace(ref=record.ref, json=False), ctx)
    text = capsys.readouterr().out
    assert "Action items:\n  2026-12-05T18:00+08:00  完成BOM核算" in text and "Signatures:\n" in text
