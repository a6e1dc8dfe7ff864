"""SMTP intake over a real loopback connection: relay policy, size limit, durability, 451."""

from __future__ import annotations

import errno
import os
import smtplib
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
    assert refused.value.smtp_code == 552
    assert InboundMessage.select().count() == 0


def test_oversized_data_without_declared_size_is_refused_permanently(ctx, gateway):
    big = make_mail(PROJECT_BODY + "x" * (ctx.settings.smtp.max_message_bytes + 1000))
    with _client(ctx) as client:
        client.mail("chen.jing@liuhen.localhost")
        client.rcpt(f"project@{DOMAIN}")
        code, _ = client.data(crlf(big))
    assert code == 552
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
