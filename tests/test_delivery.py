"""Outbox delivery through a real SMTP smarthost (aiosmtpd on loopback): STARTTLS, AUTH,
retry with backoff on 4xx, permanent failure on 5xx reported to the initiator, SMTPUTF8 for
addresses that are not ASCII."""

from __future__ import annotations

import email
import re
import socket
import ssl
import subprocess
import threading
from dataclasses import replace
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from conftest import PROJECT_BODY, free_port, make_mail

from gateway.delivery import SmtpTransport
from gateway.intake import store_raw
from gateway.outbox import Draft, deliver_due, mail_body, queue_mails
from gateway.pipeline import process_inbound
from store.models import Event, OutboundMessage


class Smarthost:
    """Answers DATA with whatever `answers` says for a recipient (default 250) and keeps mail."""

    def __init__(self, pipelining: bool = False):
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920), as Postfix and Exchange do
        self.received: list[tuple[str, list[str], bytes]] = []
        self.answers: dict[str, str] = {}
        self.logins: list[str] = []
        self.smtputf8: list[bool] = []  # per mail: whether the client asked for SMTPUTF8

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [responses[0], "250-PIPELINING", *responses[1:]] if self.pipelining else responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = self.answers.get(address, "250 OK")
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        self.smtputf8.append(envelope.smtp_utf8)
        return "250 OK"


def _authenticator(host: Smarthost):
    def check(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"liuhen" and auth_data.password == b"s3cret"
        if ok:
            host.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)
    return check


@pytest.fixture
def smarthost(request: pytest.FixtureRequest, tmp_path: Path):
    """Parametrize indirectly with Controller options, e.g. {"enable_SMTPUTF8": False}, and
    "pipelining": True for a smarthost that offers PIPELINING."""
    options = dict(getattr(request, "param", {}))
    host = Smarthost(pipelining=options.pop("pipelining", False))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(cert), str(key))
    controller = Controller(host, hostname="127.0.0.1", port=free_port(), tls_context=tls, require_starttls=True,
                            authenticator=_authenticator(host), auth_required=True, **options)
    controller.start()
    host.port, host.ca_file = controller.port, str(cert)
    yield host
    controller.stop()


def _transport(ctx, host: Smarthost, **overrides) -> SmtpTransport:
    options = {"mode": "smtp", "host": "127.0.0.1", "port": host.port, "starttls": True, "ca_file": host.ca_file,
               "user": "liuhen", "password": "s3cret", "timeout_seconds": 5} | overrides
    settings = replace(ctx.settings.delivery, **options)
    return SmtpTransport(settings)


def _dispatch(ctx) -> None:
    stored = store_raw(ctx.db, make_mail(PROJECT_BODY.replace("优先级：高", "优先级：中")), source="ingest",
                       envelope_from="chen.jing@liuhen.localhost", envelope_to=["project@liuhen.test"],
                       now=ctx.clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "processed"


@pytest.mark.parametrize("smarthost", [{"pipelining": False}, {"pipelining": True}], indirect=True,
                         ids=["lockstep", "pipelining"])
def test_mail_is_relayed_with_starttls_and_auth(ctx, smarthost):
    _dispatch(ctx)
    assert deliver_due(ctx, _transport(ctx, smarthost)) == 3
    assert smarthost.logins == ["liuhen"]  # one session, one TLS handshake and login, for all three
    recipients = sorted(r[0] for _, r, _ in smarthost.received)
    assert recipients == ["chen.jing@liuhen.localhost", "wang.qiang@liuhen.localhost", "zhao.lei@liuhen.localhost"]
    assert {m.status for m in OutboundMessage.select()} == {"sent"}
    kept = OutboundMessage.get(OutboundMessage.to_addr == "wang.qiang@liuhen.localhost")
    relayed = next(raw for _, r, raw in smarthost.received if r == ["wang.qiang@liuhen.localhost"])
    assert email.message_from_bytes(relayed)["Message-ID"] == kept.message_id
    assert bytes(kept.raw).replace(b"\r\n", b"\n").strip() == relayed.replace(b"\r\n", b"\n").strip()
    assert Event.select().where(Event.kind == "mail_sent").count() == 3
    # The bytes that went out are the record of what the mail said; its body reads back from them.
    assert kept.text == "" and kept.html == ""
    sent = email.message_from_bytes(relayed)
    text_part = next(p for p in sent.walk() if p.get_content_type() == "text/plain")
    assert mail_body(ctx, kept)[0].strip() == text_part.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n").strip()
    assert "您的职责" in mail_body(ctx, kept)[0] and "<table" in mail_body(ctx, kept)[1]


def test_wrong_password_is_a_temporary_failure_that_is_retried(ctx, smarthost):
    _dispatch(ctx)
    # (smtplib falls back from PLAIN to LOGIN, which aiosmtpd leaves hanging: a short timeout.)
    deliver_due(ctx, _transport(ctx, smarthost, password="wrong", timeout_seconds=1), limit=1)
    tried = OutboundMessage.get(OutboundMessage.attempts > 0)
    assert (tried.status, tried.attempts) == ("queued", 1)
    assert smarthost.received == []


@pytest.mark.parametrize("smarthost", [{"pipelining": False}, {"pipelining": True}], indirect=True,
                         ids=["lockstep", "pipelining"])
def test_a_temporary_failure_is_retried_with_backoff(ctx, smarthost, clock):
    _dispatch(ctx)
    smarthost.answers["wang.qiang@liuhen.localhost"] = "451 4.3.0 mailbox busy"
    transport = _transport(ctx, smarthost)
    deliver_due(ctx, transport)
    deferred = OutboundMessage.get(OutboundMessage.to_addr == "wang.qiang@liuhen.localhost")
    assert (deferred.status, deferred.attempts) == ("queued", 1)
    assert "451" in deferred.last_error
    assert (deferred.next_attempt_at - clock.now()).total_seconds() == 60
    assert deliver_due(ctx, transport) == 0  # not due yet
    smarthost.answers.clear()
    clock.advance(seconds=61)
    assert deliver_due(ctx, transport) == 1
    assert OutboundMessage.get_by_id(deferred.id).status == "sent"


@pytest.mark.parametrize("smarthost", [{"pipelining": False}, {"pipelining": True}], indirect=True,
                         ids=["lockstep", "pipelining"])
def test_a_permanent_failure_is_recorded_and_the_initiator_told(ctx, smarthost):
    _dispatch(ctx)
    smarthost.answers["zhao.lei@liuhen.localhost"] = "550 5.1.1 no such user"
    transport = _transport(ctx, smarthost)
    deliver_due(ctx, transport)
    failed = OutboundMessage.get(OutboundMessage.to_addr == "zhao.lei@liuhen.localhost")
    assert failed.status == "failed" and "550" in failed.last_error
    notice = OutboundMessage.get(OutboundMessage.kind == "delivery_failed")
    assert notice.to_addr == "chen.jing@liuhen.localhost"
    assert "zhao.lei@liuhen.localhost" in mail_body(ctx, notice)[0] and "550 5.1.1 no such user" in mail_body(ctx, notice)[0]
    deliver_due(ctx, transport)
    assert OutboundMessage.get_by_id(notice.id).status == "sent"


def test_delivery_gives_up_after_the_configured_attempts(ctx, smarthost, clock):
    ctx = replace(ctx, settings=replace(ctx.settings, delivery=replace(ctx.settings.delivery, max_attempts=2)))
    _dispatch(ctx)
    transport = _transport(ctx, smarthost, port=free_port())  # nobody listens there
    deliver_due(ctx, transport)
    clock.advance(hours=1)
    deliver_due(ctx, transport)
    statuses = {m.to_addr: m.status for m in OutboundMessage.select()}
    assert statuses["wang.qiang@liuhen.localhost"] == "failed"
    assert OutboundMessage.select().where(OutboundMessage.kind == "delivery_failed").count() == 2


# --- RFC 6531/6532: addresses that are not ASCII --------------------------------------------

NO_SMTPUTF8 = pytest.mark.parametrize("smarthost", [{"enable_SMTPUTF8": False}], indirect=True)


def _queue_to(ctx, addr: str) -> None:
    queue_mails(ctx, [Draft(kind="error_notice", template="sender/error", lang="zh", to_addr=addr, to_name="李娜",
                            context={"inbound_id": 1, "original_subject": "智能手表项目"})])


def test_a_non_ascii_address_goes_out_with_smtputf8_when_the_smarthost_offers_it(ctx, smarthost):
    # issue 9: formataddr raised on the address, and the mail stayed 'sending'.
    _queue_to(ctx, "jdöe@mächine.example")
    deliver_due(ctx, _transport(ctx, smarthost))
    assert OutboundMessage.get().status == "sent"
    [(_, rcpts, raw)] = smarthost.received
    assert rcpts == ["jdöe@mächine.example"] and smarthost.smtputf8 == [True]
    sent = email.message_from_string(raw.decode("utf-8"), policy=policy.default)  # RFC 6532: UTF-8 headers
    [to] = sent["To"].addresses
    assert (to.display_name, to.addr_spec) == ("李娜", "jdöe@mächine.example")


@NO_SMTPUTF8
def test_a_non_ascii_address_fails_clearly_when_the_smarthost_has_no_smtputf8(ctx, smarthost):
    _queue_to(ctx, "jdöe@mächine.example")
    deliver_due(ctx, _transport(ctx, smarthost))
    failed = OutboundMessage.get()
    assert failed.status == "failed"
    assert failed.last_error == "the recipient's address needs SMTPUTF8, which the smarthost does not offer"
    assert smarthost.received == []
    assert Event.get(Event.kind == "mail_failed").data["to"] == "jdöe@mächine.example"


@NO_SMTPUTF8
def test_a_non_ascii_domain_alone_is_written_in_idna(ctx, smarthost):
    _queue_to(ctx, "wang@mächine.example")
    deliver_due(ctx, _transport(ctx, smarthost))
    assert OutboundMessage.get().status == "sent"
    [(_, rcpts, raw)] = smarthost.received
    assert rcpts == ["wang@xn--mchine-bua.example"] and smarthost.smtputf8 == [False]
    assert email.message_from_bytes(raw, policy=policy.default)["To"].addresses[0].domain == "xn--mchine-bua.example"


@pytest.mark.parametrize("smarthost", [{"pipelining": False}, {"pipelining": True}], indirect=True,
                         ids=["lockstep", "pipelining"])
def test_one_session_carries_many_mails_past_a_refused_one_and_a_dropped_connection(ctx, smarthost):
    _dispatch(ctx)
    smarthost.answers["wang.qiang@liuhen.localhost"] = "550 5.1.1 no such user"
    transport = _transport(ctx, smarthost)
    deliver_due(ctx, transport)
    assert {(m.kind, m.to_addr): m.status for m in OutboundMessage.select()} == {
        ("ack", "chen.jing@liuhen.localhost"): "sent", ("request", "wang.qiang@liuhen.localhost"): "failed",
        ("request", "zhao.lei@liuhen.localhost"): "sent",  # the session went on after the refusal (RSET)
        ("delivery_failed", "chen.jing@liuhen.localhost"): "queued"}  # the initiator is told, next round
    assert smarthost.logins == ["liuhen"]
    # The server closes the idle session (its timeout, a restart): the next mail opens a new one.
    transport._smtp.sock.shutdown(socket.SHUT_RDWR)
    smarthost.answers.clear()
    _dispatch(ctx)
    deliver_due(ctx, transport)
    assert OutboundMessage.select().where(OutboundMessage.status == "sent").count() == 6  # + the report, 3 new
    assert smarthost.logins == ["liuhen", "liuhen"]
    assert not Event.select().where(Event.kind == "mail_deferred").exists()  # nothing was put off for it
    transport.close()


@pytest.mark.parametrize("text, html", [("", ""), ("王强，您好：\n" * 300, "<p>王强</p>\n" * 500),
                                        ("a" * 5000, "<b>\r\n</b>"), ("--===============1==\n", "=?utf-8?b?x?=")])
def test_the_two_part_body_reads_back_as_the_standard_library_would_write_it(text, html):
    from email import policy
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.policy import compat32

    from gateway.delivery import _alternative

    ours = email.message_from_bytes(_alternative(text, html), policy=policy.default)
    standard = MIMEMultipart("alternative")
    standard.attach(MIMEText(text, "plain", "utf-8"))
    standard.attach(MIMEText(html, "html", "utf-8"))
    theirs = email.message_from_bytes(standard.as_bytes(policy=compat32.clone(linesep="\r\n")), policy=policy.default)
    assert ours.get_content_type() == theirs.get_content_type() == "multipart/alternative"
    for mine, reference in zip(ours.iter_parts(), theirs.iter_parts(), strict=True):
        assert (mine.get_content_type(), mine["Content-Transfer-Encoding"]) == (
            reference.get_content_type(), reference["Content-Transfer-Encoding"])
        assert mine.get_payload(decode=True) == reference.get_payload(decode=True)
    assert [p.get_payload(decode=True) for p in ours.iter_parts()] == [text.encode(), html.encode()]


def test_outbound_mail_is_dkim_signed_with_a_key_from_keygen_and_verifies(ctx, tmp_path, capsys):
    import argparse

    import dkim

    from gateway.cli import cmd_dkim_keygen
    from gateway.delivery import MaildirTransport

    key = tmp_path / "dkim.pem"
    assert cmd_dkim_keygen(argparse.Namespace(selector="s2026", out=str(key)), ctx.settings) == 0
    printed = capsys.readouterr().out
    record = re.search(r'IN TXT "(v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+)"', printed).group(1)
    assert f"s2026._domainkey.{ctx.settings.gateway.domain}." in printed and oct(key.stat().st_mode)[-3:] == "600"
    signing = replace(ctx, settings=replace(ctx.settings, delivery=replace(
        ctx.settings.delivery, dkim_selector="s2026", dkim_key_file=str(key))))
    _dispatch(signing)
    deliver_due(signing, MaildirTransport(ctx.settings.maildir_path))
    raw = bytes(OutboundMessage.get(OutboundMessage.kind == "request").raw)
    assert raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=liuhen.test;")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record.encode() if name == b"s2026._domainkey.liuhen.test." else b""

    assert dkim.verify(raw, dnsfunc=dns)
    signed = email.message_from_bytes(raw)["DKIM-Signature"]
    for header in ("from", "to", "subject", "message-id", "references", "reply-to"):
        assert header in signed.lower().split("h=")[1].split(";")[0]
    assert not dkim.verify(raw.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dns)  # what it covers


def test_a_relayed_text_file_of_unknown_charset_goes_as_text_when_utf8_and_as_bytes_otherwise():
    from datetime import UTC, datetime

    from gateway.delivery import compose
    from store.models import OutboundMessage

    utf8, latin1 = "备注：第二版".encode(), "café crème".encode("latin-1")
    mail = OutboundMessage(to_addr="a@example.cn", to_name="", cc=[], subject="s", message_id="<m@x>", headers={},
                           text="t", html="<p>t</p>", attachments=[
                               {"sha256": "1" * 64, "filename": "note.txt", "content_type": "text/plain"},
                               {"sha256": "2" * 64, "filename": "old.txt", "content_type": "text/plain"}])
    raw = compose(mail, from_name="liuhen", from_addr="liuhen@liuhen.test", date=datetime.now(UTC),
                  domain="liuhen.test", files={"1" * 64: utf8, "2" * 64: latin1}).raw
    parts = {p.get_filename(): p for p in email.message_from_bytes(raw).walk() if p.get_filename()}
    assert parts["note.txt"].get_content_type() == "text/plain" and parts["note.txt"].get_content_charset() == "utf-8"
    assert parts["note.txt"].get_payload(decode=True).decode("utf-8") == "备注：第二版"
    assert parts["old.txt"].get_content_type() == "application/octet-stream"  # no charset to claim for it
    assert parts["old.txt"].get_payload(decode=True) == latin1


def test_where_the_smarthost_offers_pipelining_the_envelope_goes_in_one_round_trip(ctx):
    """A server that answers nothing until DATA has arrived: a client waiting for each answer
    (RFC 5321 lock step) would hang here until its timeout; a pipelining one goes through."""
    listener = socket.create_server(("127.0.0.1", 0))
    heard: list = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 relay.example ESMTP\r\n")
            lines.readline()  # EHLO
            conn.sendall(b"250-relay.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            envelope = [lines.readline()]
            while envelope[-1] not in (b"DATA\r\n", b""):
                envelope.append(lines.readline())
            conn.sendall(b"250 2.1.0 ok\r\n" + b"250 2.1.5 ok\r\n" * (len(envelope) - 2) + b"354 go ahead\r\n")
            message = b""
            while not message.endswith(b"\r\n.\r\n") and (line := lines.readline()):
                message += line
            conn.sendall(b"250 2.0.0 queued as 1\r\n")
            heard.extend([envelope, message])
            lines.readline()  # QUIT
            conn.sendall(b"221 bye\r\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    settings = replace(ctx.settings.delivery, mode="smtp", host="127.0.0.1", port=listener.getsockname()[1],
                       timeout_seconds=5)
    transport = SmtpTransport(settings)
    raw = b"Subject: x\r\n\r\nfirst line\r\n.a line that starts with a dot\r\n"
    transport.send(raw, "bounce+1@liuhen.test", ["wang@liuhen.test", "zhao@liuhen.test"])
    transport.close()
    server.join(5)
    listener.close()
    envelope, message = heard
    assert envelope == [b"MAIL FROM:<bounce+1@liuhen.test>\r\n", b"RCPT TO:<wang@liuhen.test>\r\n",
                        b"RCPT TO:<zhao@liuhen.test>\r\n", b"DATA\r\n"]
    assert message == b"Subject: x\r\n\r\nfirst line\r\n..a line that starts with a dot\r\n.\r\n"  # dot-stuffed
