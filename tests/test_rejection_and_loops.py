"""Bad requests get one clear answer; robots, bounces, lists and our own mail get none."""

from __future__ import annotations

import pytest
from conftest import DOMAIN, PROJECT_BODY, body_html, body_text, header, make_mail, sent_mails

from gateway.outbox import mail_body
from store.models import InboundMessage, OutboundMessage, Participant, Record

BAD_BODY = """沟通主题：请确认
优先级：特别急
期望完成时间：待定
背景与目标：详见附件
参与部门及职责：
刘洋 — 竞品价格
关键节点与时间：
方案评审 — 2026-11-20 14:00
"""


def test_a_bad_request_gets_one_reply_listing_every_problem(ctx, send):
    inbound = send(make_mail(BAD_BODY, subject="请确认"))
    assert inbound.state == "rejected"
    assert Record.select().count() == 0 and Participant.select().count() == 0  # nothing half-way
    [reply] = sent_mails(ctx)
    assert reply["To"] == "=?utf-8?b?6ZmI6Z2Z?= <chen.jing@liuhen.localhost>"
    assert header(reply, "Subject") == "请修改后重新提交：请确认"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == InboundMessage.get().message_id
    text = body_text(reply)
    assert "共有 6 处需要修改" in text
    assert text.index("主题「请确认」") < text.index("优先级「特别急」") < text.index("「背景与目标」")
    assert "主题「请确认」过于笼统" in text and "正确示例：智能手表项目-硬件方案评审" in text
    assert "优先级「特别急」无法识别" in text
    assert "「期望完成时间」的内容「待定」不明确" in text and "正确示例：2026-12-11 18:00" in text  # two weeks ahead
    assert "「背景与目标」的内容「详见附件」不明确" in text
    assert "「参与部门及职责」中的「刘洋」对应多人" in text and "liu.yang2@liuhen.localhost" in text
    assert "「关键节点与时间」中的时间「方案评审 — 2026-11-20 14:00」已经过去" in text
    assert "我们从您的邮件中读到的内容如下" in text and "背景与目标：详见附件" in text
    assert "Traceback" not in text
    assert "<ol>" in body_html(reply) and "&lt;" not in header(reply, "Subject")


def test_an_english_request_is_refused_in_english(ctx, send):
    body = "Priority: whenever\nDeadline: TBD\n"
    inbound = send(make_mail(body, subject="question", sender="emily.carter@liuhen.localhost"),
                   mail_from="emily.carter@liuhen.localhost")
    assert inbound.state == "rejected"
    reply = OutboundMessage.get()
    assert reply.lang == "en" and reply.subject == "Please correct and resend: question"
    assert "The subject “question” is too vague" in mail_body(ctx, reply)[0]
    assert "Priority “whenever” is not understood" in mail_body(ctx, reply)[0]
    assert "The required field “Participants” is missing." in mail_body(ctx, reply)[0]
    assert "Example of a right value:" in mail_body(ctx, reply)[0]


def test_html_in_a_request_is_escaped_in_the_reply(ctx, send):
    body = BAD_BODY.replace("详见附件", "<script>alert(1)</script>")
    send(make_mail(body, subject="请确认"))
    [reply] = sent_mails(ctx)
    assert "<script>" not in body_html(reply) and "&lt;script&gt;" in body_html(reply)


def test_the_same_bad_mail_is_answered_once_a_day(ctx, send, clock):
    first = send(make_mail(BAD_BODY, subject="请确认"))
    second = send(make_mail(BAD_BODY, subject="请确认"))  # a new Message-ID: a robot resending
    assert (first.state, second.state) == ("rejected", "rejected")
    assert "not repeated" in second.reason
    assert OutboundMessage.select().count() == 1
    # A corrected but still incomplete request is a different answer and is sent.
    send(make_mail(BAD_BODY.replace("优先级：特别急", "优先级：高"), subject="请确认"))
    assert OutboundMessage.select().count() == 2
    clock.advance(days=1)
    send(make_mail(BAD_BODY, subject="请确认"))
    assert OutboundMessage.select().count() == 3


LOOP_CASES = {
    "auto-submitted": {"Auto-Submitted": "auto-replied"},
    "precedence": {"Precedence": "bulk"},
    "x-autoreply": {"X-Autoreply": "yes"},
    "list": {"List-Id": "<staff.example.cn>"},
    "own-mail": {"X-Liuhen-Origin": DOMAIN},
}


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_auto_generated_mail_is_never_answered(ctx, send, case):
    inbound = send(make_mail(BAD_BODY, subject="请确认", extra_headers=LOOP_CASES[case]))
    assert inbound.state == "ignored"
    assert case in inbound.reason
    assert OutboundMessage.select().count() == 0


@pytest.mark.parametrize("subject", ["自动回复：智能手表项目-硬件方案评审", "Automatic reply: 硬件方案评审",
                                     "Out of Office: back on Monday"])
def test_out_of_office_replies_are_never_answered(ctx, send, subject):
    inbound = send(make_mail(BAD_BODY, subject=subject))
    assert inbound.state == "ignored" and "out-of-office" in inbound.reason
    assert OutboundMessage.select().count() == 0


def test_bounces_with_a_null_sender_are_never_answered(ctx, send):
    inbound = send(make_mail(BAD_BODY, subject="Undelivered Mail Returned to Sender"), mail_from="")
    assert inbound.state == "ignored" and "null-sender" in inbound.reason
    assert OutboundMessage.select().count() == 0


def test_mailer_daemon_is_never_answered(ctx, send):
    inbound = send(make_mail(BAD_BODY, subject="Delivery Status Notification",
                             sender="MAILER-DAEMON@mx.example.cn"), mail_from="mailer-daemon@mx.example.cn")
    assert inbound.state == "ignored"
    assert OutboundMessage.select().count() == 0


def test_our_own_mail_coming_back_is_ignored(ctx, send):
    send(make_mail(PROJECT_BODY))
    ours = sent_mails(ctx)[0]
    inbound = send(ours.as_bytes(), rcpt=f"project@{DOMAIN}", mail_from=f"liuhen@{DOMAIN}")
    assert inbound.state == "ignored" and "own-mail" in inbound.reason


def test_mail_to_postmaster_is_kept_not_answered(ctx, send):
    inbound = send(make_mail("hello", subject="hello postmaster"), rcpt=f"postmaster@{DOMAIN}")
    assert inbound.state == "ignored" and "postmaster" in inbound.reason
    assert OutboundMessage.select().count() == 0
