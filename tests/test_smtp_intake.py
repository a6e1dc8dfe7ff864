"""SMTP intake over a real loopback connection: relay policy, size limit, durability, 451."""

from __future__ import annotations

import errno
import os
import smtplib
import socket
import threading

import pytest
from conftest import DOMAIN, PROJECT_BODY, crlf, make_mail, smtp_send, spool_mail, wait_idle, wait_processed

from gateway.intake import import_spooled
from gateway.pipeline import process_inbound
from gateway.serve import GatewayThread
from gateway.spool import Spool
from store.models import InboundMessage, Record


def _client(ctx) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", ctx.settings.smtp.port, timeout=10)
    client.ehlo("client.example.cn")
    return client


def test_mail_for_another_domain_is_refused_as_relay(ctx, gateway):
    with _client(ctx) as client:
        client.mail("spammer@example.net")
        code, answer = client.rcpt("victim@example.org")
    assert code == 550
    assert b"5.7.1" in answer
    assert InboundMessage.select().count() == 0


def test_unknown_local_part_is_refused(ctx, gateway):
    with _client(ctx) as client:
        client.mail("someone@example.cn")
        code, answer = client.rcpt(f"nobody@{DOMAIN}")
    assert code == 550
    assert b"5.1.1" in answer


@pytest.mark.parametrize("local", ["project", "customer", "notice", "incident", "requests", "postmaster",
                                   "reply+1-2-abcdefghijklmnop", "PROJECT"])
def test_intake_addresses_are_accepted(ctx, gateway, local):
    with _client(ctx) as client:
        client.mail("someone@example.cn")
        code, _ = client.rcpt(f"{local}@{DOMAIN}")
    assert code == 250


def test_size_limit_is_announced_and_enforced(ctx, gateway):
    limit = ctx.settings.smtp.max_message_bytes
    big = make_mail(PROJECT_BODY + "x" * (limit + 1000))
    with _client(ctx) as client:
        assert int(client.esmtp_features["size"]) == limit
        # Like Postfix or Exchange, smtplib declares SIZE= on MAIL FROM when the server offers it.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("chen.jing@liuhen.localhost", [f"project@{DOMAIN}"], big)
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (552, b"5.3.4")
    assert InboundMessage.select().count() == 0


def test_oversized_data_without_declared_size_is_refused_permanently(ctx, gateway):
    big = make_mail(PROJECT_BODY + "x" * (ctx.settings.smtp.max_message_bytes + 1000))
    with _client(ctx) as client:
        client.mail("chen.jing@liuhen.localhost")
        client.rcpt(f"project@{DOMAIN}")
        code, answer = client.data(crlf(big))
    assert (code, answer[:5]) == (552, b"5.3.4")
    assert InboundMessage.select().count() == 0


def test_250_means_the_raw_message_is_already_durable(ctx, gateway):
    raw = make_mail(PROJECT_BODY)
    queue_id = smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost")
    # Right after the 250 the mail is in the spool or already imported; either way on disk.
    spool = Spool(ctx.settings.data_path / "spool")
    try:
        kept = next(m.raw for name in spool.pending() for m in spool.read(name) if m.queue_id == queue_id)
    except (StopIteration, FileNotFoundError):  # imported already: the file goes only after the commit
        kept = bytes(InboundMessage.get(InboundMessage.queue_id == queue_id).raw)
    trace, _, kept = kept.partition(b"\r\n")  # our own Received line on top (RFC 5321 4.4)
    assert trace.startswith(b"Received: from ") and b"([127.0.0.1]) by liuhen.test (liuhen) with ESMTP;" in trace
    assert kept.replace(b"\r\n", b"\n").rstrip() == raw.replace(b"\r\n", b"\n").rstrip()
    row = wait_processed(queue_id)
    assert row.envelope_from == "chen.jing@liuhen.localhost"
    assert row.envelope_to == [f"project@{DOMAIN}"]
    assert spool.pending() == []  # imported, then removed from the spool


def test_storage_failure_answers_451_and_a_retry_succeeds(ctx, gateway):
    spool_new = ctx.settings.data_path / "spool" / "new"
    spool_new.rename(spool_new.with_name("moved"))
    spool_new.write_text("a file where the spool folder should be")  # the disk says no
    raw = make_mail(PROJECT_BODY)
    try:
        with _client(ctx) as client:
            client.mail("chen.jing@liuhen.localhost")
            client.rcpt(f"project@{DOMAIN}")
            code, answer = client.data(crlf(raw))
        assert code == 451
        assert b"Traceback" not in answer and b"Error" not in answer
    finally:
        spool_new.unlink()
        spool_new.with_name("moved").rename(spool_new)
    assert InboundMessage.select().count() == 0
    # The sender's MTA retries: now it is stored and processed.
    row = wait_processed(smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost"))
    assert row.state == "processed"


def test_the_same_message_sent_twice_is_stored_once(ctx, gateway):
    raw = make_mail(PROJECT_BODY)
    smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost")
    # A relay retrying after a lost 250 adds its own trace header.
    smtp_send(ctx, b"Received: from relay.example.cn by mx; Fri, 27 Nov 2026\r\n" + raw,
              f"project@{DOMAIN}", "chen.jing@liuhen.localhost")
    wait_idle(ctx)
    assert InboundMessage.select().count() == 1
    assert Record.select().count() == 1


def test_a_mail_spooled_before_a_crash_is_processed_on_the_next_start(ctx):
    # The server answered 250 (the mail is in the spool) and died before importing it.
    spool = Spool(ctx.settings.data_path / "spool")
    queue_id = spool_mail(ctx, crlf(make_mail(PROJECT_BODY)), "chen.jing@liuhen.localhost", [f"project@{DOMAIN}"])
    running = GatewayThread(ctx, transport=None).start()
    try:
        assert wait_processed(queue_id).state == "processed"
    finally:
        running.stop()
    assert spool.pending() == [] and Record.select().count() == 1


def test_a_spool_file_left_after_import_does_not_process_twice(ctx):
    # Imported and committed, then the process died before removing the file.
    spool = Spool(ctx.settings.data_path / "spool")
    queue_id = spool_mail(ctx, crlf(make_mail(PROJECT_BODY)), "chen.jing@liuhen.localhost", [f"project@{DOMAIN}"])
    [stored] = import_spooled(ctx.db, spool, [queue_id])
    process_inbound(ctx, stored.inbound_id)
    running = GatewayThread(ctx, transport=None).start()
    try:
        wait_idle(ctx)
    finally:
        running.stop()
    assert spool.pending() == []
    assert InboundMessage.select().count() == 1 and Record.select().count() == 1


def test_a_full_disk_answers_452_leaves_no_partial_file_and_mail_is_accepted_once_there_is_space(
        ctx, gateway, monkeypatch):
    disk_full = True
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # The data is written but cannot reach the disk: what ext4 or XFS report on a full disk.
        if disk_full and threading.current_thread().name == "liuhen-spool":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    raw = make_mail(PROJECT_BODY)
    for _ in range(3):
        with _client(ctx) as client:
            client.mail("chen.jing@liuhen.localhost")
            client.rcpt(f"project@{DOMAIN}")
            code, answer = client.data(crlf(raw))
        assert (code, answer[:5]) == (452, b"4.3.1")
    spool_tmp = ctx.settings.data_path / "spool" / "tmp"
    assert list(spool_tmp.iterdir()) == []
    assert InboundMessage.select().count() == 0
    disk_full = False  # space again: the sender's MTA retries
    assert wait_processed(smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost")).state == "processed"
    assert list(spool_tmp.iterdir()) == []


def _raw_smtp_send(ctx, data: bytes) -> tuple[int, bytes]:
    """One mail over a plain socket, its bytes sent exactly as given (smtplib would rewrite
    them); the answer to DATA."""
    with socket.create_connection(("127.0.0.1", ctx.settings.smtp.port), timeout=10) as sock:
        replies = sock.makefile("rb")

        def answer() -> tuple[int, bytes]:
            while (line := replies.readline())[3:4] == b"-":
                pass
            return int(line[:3]), line[4:].rstrip()

        answer()
        for command in (b"EHLO client.example.cn", b"MAIL FROM:<chen.jing@liuhen.localhost>",
                        f"RCPT TO:<project@{DOMAIN}>".encode(), b"DATA"):
            sock.sendall(command + b"\r\n")
            assert answer()[0] in (250, 354)
        sock.sendall(data + b"\r\n.\r\n")
        return answer()


def _8bit_mail(body: str) -> bytes:
    """A request mail whose body is sent as written (8bit), so its lines stay as they are."""
    headers = make_mail("x").split(b"\n\n", 1)[0].replace(b"base64", b"8bit")
    return headers + b"\n\n" + body.encode()


def test_lines_longer_than_rfc_5322s_998_bytes_are_accepted_and_kept(ctx, gateway):
    # HTML generators and 8-bit mail often exceed 998; Postfix passes up to 2,048 and splits longer.
    long_line, longer_line = "长" * 500, "x" * 20_000  # 1,500 and 20,000 bytes
    raw = _8bit_mail(PROJECT_BODY + long_line + "\n" + longer_line + "\n")
    row = wait_processed(smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost"))
    assert row.state == "processed"
    stored = bytes(row.raw)
    assert long_line.encode() + b"\r\n" in stored and longer_line.encode() + b"\r\n" in stored


def test_a_mail_with_bare_lf_line_ends_is_accepted_and_kept(ctx, gateway):
    # Written by a script and sent as it is: LF line ends, only the final <CRLF>.<CRLF> is SMTP's.
    padding = "".join(f"第{i}行：这一行只是为了让邮件变长。\n" for i in range(1200))
    raw = _8bit_mail(PROJECT_BODY + ".点开头的一行\n" + padding)
    assert b"\r" not in raw and len(raw) > 50_000
    code, answer = _raw_smtp_send(ctx, raw.replace(b"\n.", b"\n.."))  # dot-stuffed, as clients do
    assert code == 250, answer
    row = wait_processed(answer.decode().rsplit("queued as ", 1)[1])
    assert row.state == "processed"
    assert bytes(row.raw).partition(b"\r\n")[2] == raw + b"\r\n"  # below our Received line; the CRLF
    # before the final dot belongs to the mail


def test_an_absurdly_long_line_is_refused_saying_why(ctx, gateway):
    raw = crlf(_8bit_mail("A" * 100_000 + "\n"))
    with _client(ctx) as client:
        client.mail("chen.jing@liuhen.localhost")
        client.rcpt(f"project@{DOMAIN}")
        code, answer = client.data(raw)
    assert code == 500
    assert answer.startswith(b"5.5.2 ") and b"line" in answer.lower()
    assert InboundMessage.select().count() == 0


def test_a_dot_after_a_bare_lf_does_not_end_the_mail(ctx, gateway):
    # SMTP smuggling: a receiver that ends DATA at <LF>.<CR><LF> would take what follows as a
    # second mail, with an envelope of the attacker's choosing.
    smuggled = (b"\n.\r\nMAIL FROM:<wang.qiang@liuhen.localhost>\r\nRCPT TO:<project@" + DOMAIN.encode()
                + b">\r\nDATA\r\nSubject: smuggled\r\n\r\nx")
    code, answer = _raw_smtp_send(ctx, crlf(make_mail(PROJECT_BODY)) + b"hello" + smuggled)
    assert code == 250, answer
    wait_idle(ctx)
    [row] = InboundMessage.select()
    assert bytes(row.raw).endswith(smuggled + b"\r\n")


def test_a_mail_without_message_id_sent_twice_is_stored_once_despite_our_trace_line(ctx, gateway, clock):
    # Our Received line carries the time, so it differs on a retry; the duplicate check skips it.
    raw = b"\n".join(line for line in make_mail(PROJECT_BODY).split(b"\n") if not line.startswith(b"Message-ID"))
    first = wait_processed(smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost"))
    clock.advance(minutes=5)  # a retry, later: the Received line's date differs
    smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost")
    wait_idle(ctx)
    assert [r.id for r in InboundMessage.select()] == [first.id]
