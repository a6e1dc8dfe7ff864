"""Replies to the gateway's own mails that belong to no record (issue 10): a corrected form
sent back to a rejection, a filled blank form sent back to the template mail, an item acted on
from the daily digest — once all answered with "无法判断使用哪个模板"."""

from __future__ import annotations

from conftest import DOMAIN, MEDIUM_BODY, make_mail
from test_replies import CHEN, WANG, mails_to, participant, text_of

from gateway.scheduler import sweep
from store.models import OutboundMessage, Record


def answer_as_client(send, person: str, name: str, mail: OutboundMessage, body: str):
    """Reply to one of our mails as Outlook does: to its Reply-To (else From), quoting it."""
    to = mail.headers.get("Reply-To") or f"liuhen@{DOMAIN}"  # our From
    quote = (f"\n\n-----邮件原件-----\n发件人: 留痕 liuhen <liuhen@{DOMAIN}>\n主题: {mail.subject}\n\n"
             + "\n".join(f"> {line}" for line in (mail.context.get("text") or "").splitlines()))
    raw = make_mail(body + quote, subject="回复: " + mail.subject, to=to, sender=f"{name} <{person}>",
                    extra_headers={"In-Reply-To": mail.message_id, "References": mail.message_id})
    return send(raw, rcpt=to, mail_from=person)


def test_a_corrected_form_sent_back_to_the_rejection_becomes_the_record(ctx, send):
    incomplete = MEDIUM_BODY.replace("期望完成时间：2026-12-20 18:00\n", "")
    assert send(make_mail(incomplete)).state == "rejected"
    [rejection] = mails_to(CHEN, "rejection")
    assert rejection.headers["Reply-To"] == f"project@{DOMAIN}"  # the form's intake address
    inbound = answer_as_client(send, CHEN, "陈静", rejection, MEDIUM_BODY)
    assert inbound.state == "processed", inbound.reason
    record = Record.get()
    assert record.subject == "智能手表项目-硬件方案评审" and record.form == "project"


def test_a_filled_blank_form_sent_back_to_the_template_mail_is_a_request(ctx, send):
    assert send(make_mail("", subject="模板 项目协作", to=f"project@{DOMAIN}")).state == "processed"
    [template] = mails_to(CHEN, "command_template")
    assert template.headers["Reply-To"] == f"project@{DOMAIN}"
    inbound = answer_as_client(send, CHEN, "陈静", template, MEDIUM_BODY)
    assert inbound.state == "processed", inbound.reason
    assert Record.get().subject == "智能手表项目-硬件方案评审"


def test_an_item_of_the_daily_digest_is_acted_on_by_its_number(ctx, send, clock):
    assert send(make_mail(MEDIUM_BODY)).state == "processed"
    clock.advance(hours=23, minutes=5)  # 09:05 the next morning: the digest goes out (no reminder yet)
    sweep(ctx)
    [digest] = mails_to(WANG, "digest")
    assert "1. [PRJ-2026-0001]" in text_of(ctx, digest)
    unclear = answer_as_client(send, WANG, "王强", digest, "好的，谢谢")
    assert unclear.state == "rejected" and unclear.reason.startswith("digest_which")
    assert "1 确认" in text_of(ctx, mails_to(WANG, "refusal")[-1])
    inbound = answer_as_client(send, WANG, "王强", digest, "1 同意，周五前给评估")
    assert inbound.state == "processed", inbound.reason
    assert participant(WANG).response == "agree"


def test_a_digest_item_quoted_inline_is_the_one_acted_on(ctx, send, clock):
    assert send(make_mail(MEDIUM_BODY)).state == "processed"
    clock.advance(hours=23, minutes=5)
    sweep(ctx)
    [digest] = mails_to(WANG, "digest")
    item = next(line.strip() for line in text_of(ctx, digest).splitlines() if "[PRJ-2026-0001]" in line)
    to = f"liuhen@{DOMAIN}"
    body = f"> {item}\n\n同意，周五前给评估\n"  # Outlook inline style: the item quoted, the answer below
    raw = make_mail(body, subject="回复: " + digest.subject, to=to, sender=f"王强 <{WANG}>",
                    extra_headers={"In-Reply-To": digest.message_id})
    inbound = send(raw, rcpt=to, mail_from=WANG)
    assert inbound.state == "processed", inbound.reason
    assert participant(WANG).response == "agree"
