"""Replies read in the context of the mail they answer (issue 10).

Each test answers one of the gateway's mails as a mail client does — to its personal Reply-To,
with In-Reply-To and References naming it, the quote below — and checks what the record, the
receipt and the others' mails then say."""

from __future__ import annotations

import pytest
from conftest import DOMAIN, make_mail
from test_replies import CHEN, MEDIUM, NAMES, WANG, ZHAO, mails_to, participant, text_of

from store.models import Event, InboundMessage, OutboundMessage, Participant, Record

ZHANG = "zhang.zhe@liuhen.localhost"
NAMES.setdefault(ZHANG, "张喆")

QUOTE = """

------------------ 原始邮件 ------------------
发件人: "留痕 liuhen" <liuhen@liuhen.localhost>
发送时间: 2026年11月27日(星期五) 上午10:00
主题: [PRJ-2026-0001] 智能手表项目-硬件方案评审

同意 / 同意需求 / AGREE / APPROVE — 同意需求
"""


def answer(send, person: str, body: str, kind: str, quote: str = QUOTE) -> InboundMessage:
    """Reply to the newest mail of `kind` this person got, as their mail client would."""
    mail = (OutboundMessage.select().where((OutboundMessage.to_addr == person) & (OutboundMessage.kind == kind))
            .order_by(OutboundMessage.id.desc()).first())
    assert mail is not None, f"{person} got no {kind} mail"
    to = mail.headers["Reply-To"]
    references = " ".join([*mail.headers.get("References", "").split(), mail.message_id])
    raw = make_mail(body + quote, subject="回复: " + mail.subject, to=to, sender=f"{NAMES[person]} <{person}>",
                    extra_headers={"In-Reply-To": mail.message_id, "References": references})
    return send(raw, rcpt=to, mail_from=person)


@pytest.fixture
def record(ctx, send) -> Record:
    assert send(make_mail(MEDIUM)).state == "processed"
    return Record.get()


@pytest.fixture
def signing(ctx, send, record) -> Record:
    """The result is out for sign-off."""
    assert answer(send, CHEN, "结果：采用方案B，BOM成本控制在320元以内", "ack").state == "processed"
    assert Record.get().status == "confirming"
    return Record.get()


@pytest.mark.parametrize("words", ["同意", "OK", "同意，没有意见", "確認", "好的，同意。"])
def test_an_agreement_to_the_sign_off_request_is_a_signature(ctx, send, signing, words):
    inbound = answer(send, WANG, words, "signoff")
    assert inbound.state == "processed", inbound.reason
    assert participant(WANG).signed_at is not None
    signed = Event.get(Event.kind == "signed")
    assert signed.data["signer"] == WANG
    receipt = text_of(ctx, mails_to(WANG, "receipt")[-1])
    assert receipt.startswith("已记录：确认") and "还待签字：赵磊" in receipt


def test_the_same_word_on_the_request_is_agreement_not_a_signature(ctx, send, record):
    assert answer(send, WANG, "同意", "request").state == "processed"
    wang = participant(WANG)
    assert wang.response == "agree" and wang.signed_at is None


def test_a_phone_ok_answers_the_request(ctx, send, record):
    iphone = "\n\n发自我的iPhone\n\n------------------ Original ------------------\nFrom: 留痕 liuhen\n"
    assert answer(send, WANG, "OK", "request", quote=iphone).state == "processed"
    assert participant(WANG).response == "agree"


def test_the_keyword_on_the_second_line_counts_and_the_first_line_is_kept(ctx, send, record):
    inbound = answer(send, WANG, "收到，马上处理。\n进度：BOM 已完成 80%，周三出功耗对比", "request")
    assert inbound.state == "processed", inbound.reason
    progress = Event.get(Event.kind == "progress")
    assert progress.data["progress"] == "收到，马上处理。\nBOM 已完成 80%，周三出功耗对比"


@pytest.mark.parametrize("words", ["收到", "确认收到", "收到，准时参加", "已阅。", "知悉，谢谢"])
def test_an_acknowledgement_of_a_notice_confirms_it(ctx, send, words):
    body = "通知内容：12月5日 14:00 召开季度质量评审会，请准时参加\n需确认人员：王强、张喆\n"
    assert send(make_mail(body, subject="关于召开季度质量评审会的通知", to=f"notice@{DOMAIN}"),
                rcpt=f"notice@{DOMAIN}").state == "processed"
    inbound = answer(send, WANG, words, "request")
    assert inbound.state == "processed", inbound.reason
    wang = participant(WANG)
    assert wang.response == "confirmed" and wang.signed_at is not None
    assert wang.next_reminder_at is None  # nobody will call him 逾期未回复
    assert answer(send, ZHANG, words, "request").state == "processed"
    assert Record.get().status == "archived"


def test_a_comment_does_not_stop_the_reminders_and_the_receipt_says_what_is_still_expected(ctx, send, record):
    before = participant(WANG)
    assert before.next_reminder_at is not None
    assert answer(send, WANG, "收到，我看一下，明天回复。", "request").state == "processed"
    after = participant(WANG)
    assert after.response == "" and after.next_reminder_at == before.next_reminder_at
    receipt = text_of(ctx, mails_to(WANG, "receipt")[-1])
    assert receipt.startswith("已记录：留言")
    assert "仍需您答复" in receipt and "“同意需求”" in receipt and "需补充信息" in receipt
    assert "2026-11-28 10:00" in receipt  # by when


def test_a_negation_is_never_a_decision_in_any_context(ctx, send, signing):
    assert answer(send, WANG, "不同意，模具费用没算进去", "signoff").state == "processed"
    assert participant(WANG).signed_at is None and not Event.select().where(Event.kind == "signed").exists()
    receipt = text_of(ctx, mails_to(WANG, "receipt")[-1])
    assert receipt.startswith("已记录：留言") and "驳回" in receipt  # how to refuse, if that was meant


def test_the_receipt_of_a_signature_says_nothing_more_is_expected(ctx, send, signing):
    answer(send, WANG, "确认", "signoff")
    receipt = text_of(ctx, mails_to(WANG, "receipt")[-1])
    assert "无需再回复" in receipt


def test_an_english_reply_gets_its_receipt_in_english(ctx, send, record):
    assert answer(send, ZHAO, "Thanks, I will check the prices tomorrow.", "request").state == "processed"
    receipt = text_of(ctx, mails_to(ZHAO, "receipt")[-1])
    assert receipt.startswith("Recorded: comment") and "AGREE" in receipt
    assert Participant.get((Participant.email == ZHAO) & (Participant.role == "recipient")).response == ""


CLIENT_QUOTES = {
    "outlook_zh": "\n\n-----邮件原件-----\n发件人: 留痕 liuhen <liuhen@liuhen.test>\n发送时间: 2026年11月27日 10:00\n"
                  "主题: [PRJ-2026-0001] 结果确认表：请签字确认\n\n同意请回复：确认；不同意请回复：驳回：原因\n",
    "iphone": "\n\n发自我的iPhone\n\n> 在 2026年11月27日，10:00，留痕 liuhen <liuhen@liuhen.test> 写道：\n>\n> 同意请回复：确认\n",
    "foxmail": "\n\n\n\nwang.qiang@liuhen.localhost\n \n发件人： 留痕 liuhen\n发送时间： 2026-11-27 10:00\n"
               "收件人： 王强\n主题： [PRJ-2026-0001] 结果确认表：请签字确认\n同意请回复：确认；不同意请回复：驳回：原因\n",
    "gmail_en": "\n\nOn Fri, Nov 27, 2026 at 10:00 AM liuhen <liuhen@liuhen.test> wrote:\n> Reply CONFIRM to sign, "
                "or REJECT: reason\n",
}


@pytest.mark.parametrize("client", CLIENT_QUOTES)
def test_a_short_agreement_signs_whatever_client_it_comes_from(ctx, send, signing, client):
    inbound = answer(send, WANG, "同意", "signoff", quote=CLIENT_QUOTES[client])
    assert inbound.state == "processed", inbound.reason
    assert participant(WANG).signed_at is not None
    assert text_of(ctx, mails_to(WANG, "receipt")[-1]).startswith("已记录：确认")
