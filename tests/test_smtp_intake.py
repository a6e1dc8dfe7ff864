"""SMTP intake over a real loopback connection: relay policy, size limit, durability, 451."""

from __future__ import annotations

import smtplib

import pytest

from conftest import DOMAIN, PROJECT_BODY, crlf, make_mail, smtp_send, wait_processed
from store.models import InboundMessage


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


def test_250_means_the_raw_message_is_already_stored(ctx, gateway):
    raw = make_mail(PROJECT_BODY)
    inbound_id = smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost")
    # Read right after the 250, before any processing can be waited for.
    row = InboundMessage.get_by_id(inbound_id)
    assert bytes(row.raw).replace(b"\r\n", b"\n").rstrip() == raw.replace(b"\r\n", b"\n").rstrip()
    assert row.envelope_from == "chen.jing@liuhen.localhost"
    assert row.envelope_to == [f"project@{DOMAIN}"]


def test_storage_failure_answers_451_and_a_retry_succeeds(ctx, gateway):
    table = InboundMessage._meta.table_name
    ctx.db.execute_sql(f"ALTER TABLE {table} RENAME TO broken_inbound")
    raw = make_mail(PROJECT_BODY)
    try:
        with _client(ctx) as client:
            client.mail("chen.jing@liuhen.localhost")
            client.rcpt(f"project@{DOMAIN}")
            code, answer = client.data(crlf(raw))
        assert code == 451
        assert b"Traceback" not in answer and b"Error" not in answer
    finally:
        ctx.db.execute_sql(f"ALTER TABLE broken_inbound RENAME TO {table}")
    # The sender's MTA retries: now it is stored and processed.
    row = wait_processed(smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost"))
    assert row.state == "processed"


def test_the_same_message_sent_twice_is_stored_once(ctx, gateway):
    raw = make_mail(PROJECT_BODY)
    first = smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost")
    # A relay retrying after a lost 250 adds its own trace header.
    second = smtp_send(ctx, b"Received: from relay.example.cn by mx; Fri, 27 Nov 2026\r\n" + raw,
                       f"project@{DOMAIN}", "chen.jing@liuhen.localhost")
    assert first == second
    wait_processed(first)
    assert InboundMessage.select().count() == 1
