"""A delivery status notification (RFC 3464) for one of our mails marks that recipient
undeliverable and tells the initiator; it is never treated as a reply and never answered."""

from __future__ import annotations

from conftest import DOMAIN, PROJECT_BODY, make_mail, sent_mails

from gateway.outbox import mail_body
from store.models import Event, OutboundMessage, Participant

MEDIUM = PROJECT_BODY.replace("优先级：高", "优先级：中")


def dsn(original_message_id: str, recipient: str, headers_only: bool = True,
        diagnostic: str = "Recipient address rejected: User unknown") -> bytes:
    original = (f"Message-ID: {original_message_id}\r\nSubject: [PRJ-2026-0001] request\r\n"
                f"To: {recipient}\r\n")
    part = ("Content-Type: text/rfc822-headers\r\n\r\n" + original) if headers_only else \
        ("Content-Type: message/rfc822\r\n\r\n" + original + "\r\n同意\r\n")
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.example.cn>\r\nTo: liuhen@{DOMAIN}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-1@mx.example.cn>\r\n"
            "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nThe mail system could not deliver your message.\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.cn\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: {diagnostic}\r\n\r\n"
            f"--b\r\n{part}--b--\r\n").encode()


def test_a_bounce_marks_the_recipient_undeliverable_and_tells_the_initiator(ctx, send):
    send(make_mail(MEDIUM))
    sent_mails(ctx)
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "zhao.lei@liuhen.localhost"))
    inbound = send(dsn(request.message_id, "zhao.lei@liuhen.localhost"), rcpt=f"liuhen@{DOMAIN}", mail_from="")
    assert inbound.state == "processed" and "5.1.1" in inbound.reason
    bounced = OutboundMessage.get_by_id(request.id)
    assert bounced.status == "bounced" and "User unknown" in bounced.last_error
    notice = OutboundMessage.get(OutboundMessage.kind == "delivery_failed")
    assert notice.to_addr == "chen.jing@liuhen.localhost"
    assert "zhao.lei@liuhen.localhost" in mail_body(ctx, notice)[0]
    assert Event.get(Event.kind == "mail_bounced").data["to"] == "zhao.lei@liuhen.localhost"
    # Never a reply: the quoted 同意 of an attached original changes nothing, nobody answers the robot.
    assert Participant.get(Participant.email == "zhao.lei@liuhen.localhost").response == ""
    assert not OutboundMessage.select().where(OutboundMessage.to_addr.contains("mailer-daemon")).exists()


def test_a_bounce_whose_diagnostic_has_8bit_text_still_marks_the_recipient(ctx, send):
    # issue 9: raw UTF-8 in Diagnostic-Code made the report parser fail; the mail ended in
    # 'error' and the recipient was never marked undeliverable.
    send(make_mail(MEDIUM))
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "zhao.lei@liuhen.localhost"))
    inbound = send(dsn(request.message_id, "zhao.lei@liuhen.localhost", diagnostic="用户不存在 user unknown"),
                   rcpt=f"liuhen@{DOMAIN}", mail_from="")
    assert inbound.state == "processed", inbound.reason
    bounced = OutboundMessage.get_by_id(request.id)
    assert bounced.status == "bounced" and "用户不存在" in bounced.last_error


def test_a_bounce_with_the_original_attached(ctx, send):
    send(make_mail(MEDIUM))
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "wang.qiang@liuhen.localhost"))
    inbound = send(dsn(request.message_id, "wang.qiang@liuhen.localhost", headers_only=False),
                   rcpt=f"liuhen@{DOMAIN}", mail_from="")
    assert inbound.state == "processed"
    assert Participant.get(Participant.email == "wang.qiang@liuhen.localhost").response == ""


def test_a_bounce_for_a_mail_we_did_not_send_is_ignored(ctx, send):
    inbound = send(dsn("<someone-else@example.net>", "x@example.net"), rcpt=f"postmaster@{DOMAIN}", mail_from="")
    assert inbound.state == "ignored" and "did not send" in inbound.reason
    assert OutboundMessage.select().count() == 0


def test_the_report_parser_reads_an_8bit_diagnostic():
    from pathlib import Path

    from parsers.dsn import parse_dsn

    raw = (Path(__file__).parent / "fixtures" / "hostile" / "dsn_8bit_diagnostic.eml").read_bytes()
    report = parse_dsn(raw)
    assert report is not None and report.original_message_id == "<abc@liuhen.localhost>"
    [failed] = report.failed
    assert (failed.address, failed.status) == ("wang.qiang@liuhen.localhost", "5.1.1")
    assert "用户不存在" in failed.diagnostic


def test_each_mail_has_its_own_return_path_and_a_mangled_bounce_to_it_still_finds_the_mail(ctx, send):
    from gateway.delivery import MaildirTransport
    from gateway.outbox import deliver_due
    from gateway.tokens import return_path

    senders: dict[str, str] = {}

    class Envelopes(MaildirTransport):
        def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
            senders[recipients[0]] = sender
            super().send(raw, sender, recipients)

    send(make_mail(MEDIUM))
    deliver_due(ctx, Envelopes(ctx.settings.maildir_path))
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "zhao.lei@liuhen.localhost"))
    verp = return_path(ctx.settings.gateway.secret, DOMAIN, request.id)
    assert senders["zhao.lei@liuhen.localhost"] == verp and verp.startswith(f"bounce+{request.id}-")
    # A bounce that lost the original's Message-ID (a mail system rewrote or cut it) — and an
    # old MTA's plain-text bounce without any report — both come back to that address.
    mangled = dsn("<rewritten@mx.example.cn>", "zhao.lei@liuhen.localhost")
    inbound = send(mangled, rcpt=verp, mail_from="")
    assert inbound.state == "processed", inbound.reason
    assert OutboundMessage.get_by_id(request.id).status == "bounced"
    other = OutboundMessage.get((OutboundMessage.kind == "request") &
                                (OutboundMessage.to_addr == "wang.qiang@liuhen.localhost"))
    plain = (b"From: MAILER-DAEMON@old-mx.example.cn\r\nTo: x@y\r\nSubject: Returned mail: User unknown\r\n"
             b"Message-ID: <plain-bounce@old-mx>\r\n\r\nThe following address had permanent errors.\r\n")
    assert send(plain, rcpt=return_path(ctx.settings.gateway.secret, DOMAIN, other.id), mail_from="").state == "processed"
    assert "Returned mail" in OutboundMessage.get_by_id(other.id).last_error


def test_an_out_of_office_answer_to_a_return_path_is_not_a_bounce_and_a_forged_one_is_refused(ctx, send):
    from gateway.tokens import return_path

    send(make_mail(MEDIUM))
    sent_mails(ctx)
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "zhao.lei@liuhen.localhost"))
    away = (b"From: zhao.lei@liuhen.localhost\r\nTo: x@y\r\nSubject: =?utf-8?b?5LyR5YGH5Lit?=\r\n"
            b"Auto-Submitted: auto-replied\r\nMessage-ID: <ooo-1@liuhen.localhost>\r\n\r\nI am away.\r\n")
    answer = send(away, rcpt=return_path(ctx.settings.gateway.secret, DOMAIN, request.id), mail_from="")
    assert answer.state == "ignored" and "not a bounce" in answer.reason
    assert OutboundMessage.get_by_id(request.id).status == "sent"
    forged = f"bounce+{request.id}-aaaaaaaaaaaaaaaa@{DOMAIN}"  # no valid signature
    inbound = send(dsn("<x@y>", "zhao.lei@liuhen.localhost"), rcpt=forged, mail_from="")
    assert inbound.state == "ignored" and OutboundMessage.get_by_id(request.id).status == "sent"
