"""Forged decisions (issue 9): only a personal reply token changes a record; a mail without
one is a comment at most, and only from an authenticated sender; sign-offs that fail sender
authentication are held for the initiator; Authentication-Results is read as RFC 8601 says."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from conftest import DOMAIN, dkim_signed, make_mail
from test_replies import CHEN, MEDIUM, WANG, ZHAO, mails_to, participant, reply, reply_address, text_of

from store.models import Event, InboundMessage, OutboundMessage, Record

SUBJECT = "Re: [PRJ-2026-0001] 智能手表项目-硬件方案评审"
COMPANY = "liuhen.localhost"


@pytest.fixture
def record(ctx, send) -> Record:
    assert send(make_mail(MEDIUM)).state == "processed"
    return Record.get()


def forged(send, body: str, as_name: str, as_addr: str, headers: dict[str, str] | None = None,
           envelope: str = "eve@evil.test") -> InboundMessage:
    """What an attacker sends: someone else's From, our intake address, the record's tag."""
    return send(make_mail(body, subject=SUBJECT, to=f"project@{DOMAIN}", sender=f"{as_name} <{as_addr}>",
                          extra_headers=headers), rcpt=f"project@{DOMAIN}", mail_from=envelope)


def trust_mx(ctx, **security) -> None:
    strict = replace(ctx.settings, security=replace(ctx.settings.security, trusted_authserv_id="mx.liuhen.test",
                                                    **security))
    object.__setattr__(ctx, "settings", strict)


def test_a_forged_agreement_without_a_token_changes_nothing_and_the_real_person_hears_once(ctx, send, record):
    before = participant(WANG)
    inbound = forged(send, "同意", "王强", WANG)
    assert inbound.state == "rejected" and inbound.reason.startswith("reply_unverified"), inbound.reason
    after = participant(WANG)
    assert after.response == before.response and after.responded_at is None
    assert after.next_reminder_at == before.next_reminder_at  # the chain goes on
    assert not Event.select().where(Event.kind.in_(("feedback", "comment"))).exists()
    [answer] = mails_to(WANG, "refusal")
    assert answer.headers["Reply-To"].startswith("reply+")  # how to reply so that it counts
    assert "未做任何记录" in text_of(ctx, answer)
    assert not mails_to("eve@evil.test")
    assert forged(send, "同意", "王强", WANG).state == "rejected"
    assert len(mails_to(WANG, "refusal")) == 1  # once per record, not once per forgery


def test_a_forged_result_and_forged_signatures_by_thread_id_cannot_archive(ctx, send, record):
    assert "prj-2026-0001" not in record.thread_id.lower()  # the thread id names nothing guessable
    known = {"In-Reply-To": record.thread_id, "References": record.thread_id}
    assert forged(send, "结果：采用方案B", "陈静", CHEN, headers=known).state == "rejected"
    assert forged(send, "确认", "王强", WANG, headers=known).state == "rejected"
    assert forged(send, "确认", "赵磊", ZHAO, headers=known).state == "rejected"
    fresh = Record.get()
    assert fresh.status == "open" and not fresh.result
    assert not Event.select().where(Event.kind.in_(("result", "signed", "archived"))).exists()


def test_an_authenticated_reply_without_a_token_is_a_comment_only(ctx, send, record, dns_zone):
    dns_zone.publish_dkim(COMPANY)
    before = participant(WANG)
    raw = dkim_signed(make_mail("同意，周五前给出评估。", subject=SUBJECT, to=f"liuhen@{DOMAIN}",
                                sender=f"王强 <{WANG}>"), COMPANY)
    inbound = send(raw, rcpt=f"liuhen@{DOMAIN}", mail_from=WANG)
    assert inbound.state == "processed", inbound.reason
    assert InboundMessage.get_by_id(inbound.id).auth["result"] == "pass"
    comment = Event.get(Event.kind == "comment")
    assert comment.data["text"].startswith("同意，周五前给出评估") and comment.data["keyword"] == "agree"
    after = participant(WANG)
    assert after.response == before.response and after.next_reminder_at == before.next_reminder_at
    [receipt] = mails_to(WANG, "receipt")
    assert "只作为留言记录" in text_of(ctx, receipt) and receipt.headers["Reply-To"].startswith("reply+")
    again = dkim_signed(make_mail("另外，样机下周到。", subject=SUBJECT, to=f"liuhen@{DOMAIN}",
                                  sender=f"王强 <{WANG}>"), COMPANY)
    assert send(again, rcpt=f"liuhen@{DOMAIN}", mail_from=WANG).state == "processed"
    assert len(mails_to(WANG, "receipt")) == 1 and Event.select().where(Event.kind == "comment").count() == 2


def test_a_signature_broken_in_transit_is_not_authenticated(ctx, send, record, dns_zone):
    dns_zone.publish_dkim(COMPANY)
    dns_zone.publish_dmarc(COMPANY)
    raw = dkim_signed(make_mail("同意", subject=SUBJECT, to=f"project@{DOMAIN}", sender=f"王强 <{WANG}>"), COMPANY)
    tampered = raw.replace("同意".encode(), "驳回".encode()) if "同意".encode() in raw else raw + b"x"
    inbound = send(tampered, rcpt=f"project@{DOMAIN}", mail_from=WANG)
    assert inbound.state == "rejected" and InboundMessage.get_by_id(inbound.id).auth["result"] == "fail"


def test_a_sign_off_failing_dmarc_is_held_for_the_initiator_who_may_accept_it(ctx, send, record):
    reply(send, CHEN, "结果：采用方案B")
    trust_mx(ctx)
    held = reply(send, WANG, "确认", headers={
        "Authentication-Results": "mx.liuhen.test; spf=pass smtp.mailfrom=liuhen.localhost; dkim=fail; dmarc=fail"})
    assert held.state == "processed", held.reason
    assert participant(WANG).signed_at is None
    assert Event.get(Event.kind == "signoff_held").data["authentication"]["result"] == "fail"
    assert "已请发起人认可" in text_of(ctx, mails_to(WANG, "receipt")[-1])
    ask = mails_to(CHEN, "held")[-1]
    assert "待您认可" in text_of(ctx, ask) and "» 王强 的签字邮件未通过发件人验证" in text_of(ctx, ask)
    assert "认可签字：王强" in text_of(ctx, ask) and "验证结果：未通过 (trusted-mta)" in text_of(ctx, ask)
    assert reply(send, CHEN, "认可签字：王强").state == "processed"
    wang = participant(WANG)
    assert wang.signed_at is not None
    signed = Event.get(Event.kind == "signed")
    assert signed.data["authentication"] == {"result": "accepted", "method": "initiator", "evidence": CHEN}
    from gateway.report import record_report

    trace = [e["text"] for e in record_report(ctx, "PRJ-2026-0001", "zh")["trace"]]
    assert any("王强 签字确认（发件人验证：未通过，经发起人认可）" in line for line in trace)


def test_a_later_dmarc_pass_token_does_not_override_the_trusted_fail(ctx, send, record):
    reply(send, CHEN, "结果：采用方案B")
    trust_mx(ctx)
    reply(send, WANG, "确认", headers={"Authentication-Results": (
        "mx.liuhen.test; spf=pass smtp.mailfrom=\"dmarc=pass@evil.test\"; dmarc=fail header.from=liuhen.localhost")})
    assert participant(WANG).signed_at is None
    assert Event.get(Event.kind == "signoff_held").data["authentication"]["result"] == "fail"


def test_only_the_topmost_header_of_the_trusted_mx_counts(ctx, send, record):
    # Our MX found no DMARC verdict; the sender had written a "pass" with the MX's id
    # further down, below the hop that brought the mail.
    reply(send, CHEN, "结果：采用方案B")
    trust_mx(ctx)
    to = reply_address(WANG)
    mail = make_mail("确认", subject=SUBJECT, to=to, sender=f"王强 <{WANG}>", extra_headers={
        "Received": "from evil.test (evil.test [203.0.113.9]) by mx.evil.test; Fri, 27 Nov 2026 09:58:00 +0800",
        "Authentication-Results": "mx.liuhen.test; dkim=pass header.d=liuhen.localhost; dmarc=pass"})
    top = (b"Authentication-Results: mx.liuhen.test; spf=pass smtp.mailfrom=liuhen.localhost; dmarc=none\n"
           b"Received: from evil.test ([203.0.113.9]) by mx.liuhen.test; Fri, 27 Nov 2026 09:58:01 +0800\n")
    send(top + mail, rcpt=to, mail_from=WANG)
    assert participant(WANG).signed_at is None
    assert Event.get(Event.kind == "signoff_held").data["authentication"]["result"] == "none"


def test_the_trusted_id_from_a_client_that_is_not_our_mx_is_not_believed(ctx, send, record):
    # Sent straight to the gateway, not through the MX: its Authentication-Results are the sender's.
    reply(send, CHEN, "结果：采用方案B")
    trust_mx(ctx, trusted_relays=("192.0.2.0/24",))
    reply(send, WANG, "确认", headers={"Authentication-Results": "mx.liuhen.test; dkim=pass header.d=liuhen.localhost; dmarc=pass"})
    assert participant(WANG).signed_at is None
    verdict = Event.get(Event.kind == "signoff_held").data["authentication"]
    assert verdict["result"] == "none" and "not received from the trusted MX" in verdict["evidence"]


def test_a_sign_off_passing_the_trusted_mx_counts_and_keeps_its_evidence(ctx, send, record):
    reply(send, CHEN, "结果：采用方案B")
    trust_mx(ctx)
    assert reply(send, WANG, "确认", headers={
        "Authentication-Results": "mx.liuhen.test; dkim=pass header.d=liuhen.localhost; dmarc=pass"}).state == "processed"
    assert participant(WANG).signed_at is not None
    verdict = Event.get(Event.kind == "signed").data["authentication"]
    assert verdict["result"] == "pass" and "dmarc=pass" in verdict["evidence"]
    assert OutboundMessage.select().where(OutboundMessage.kind == "refusal").count() == 0
    # liuhen show tells the same: the mail in, its verdict and what decided it.
    from gateway.report import record_report, render_report

    report = record_report(ctx, record.ref)
    signed = [m for m in report["inbound"] if m["from"] == WANG][-1]
    assert (signed["state"], signed["auth"], signed["auth_method"]) == ("processed", "pass", "trusted-mta")
    assert "dmarc=pass" in signed["auth_evidence"]
    assert f"processed {WANG} (sender pass, trusted-mta)" in " ".join(render_report(report).split())


def test_a_mail_from_several_authors_is_not_authenticated(ctx, send, record, dns_zone):
    # RFC 7489 §6.6.1; authheaders checked every From address in turn (14,000 took 30 s,
    # found by the fuzzer): a From naming more than one address has no one sender to vouch for.
    dns_zone.publish_dkim(COMPANY)
    mail = make_mail("同意，周五前给出评估。", subject=SUBJECT, to=f"liuhen@{DOMAIN}", sender=f"王强 <{WANG}>")
    authors = ", ".join(f"<r{i}@x.test>" for i in range(3000)).encode()
    raw = dkim_signed(re.sub(rb"(?m)^(From: .*<" + re.escape(WANG.encode()) + rb">)", lambda m: m.group(1) + b", " + authors,
                             mail, count=1), COMPANY)
    inbound = send(raw, rcpt=f"liuhen@{DOMAIN}", mail_from=WANG)
    verdict = InboundMessage.get_by_id(inbound.id).auth
    assert verdict["result"] == "fail" and "exactly one address" in verdict["evidence"]
    assert not Event.select().where(Event.kind == "comment").exists()
