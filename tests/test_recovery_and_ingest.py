"""Nothing is lost: restart recovery, exactly-once processing, and the MTA pipe (`liuhen ingest`)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from conftest import DOMAIN, NOW, PROJECT_BODY, make_mail, smtp_send, wait_processed

from gateway.cli import cmd_inbox_retry
from gateway.intake import store_raw
from gateway.outbox import mail_body
from gateway.pipeline import process_inbound
from gateway.serve import GatewayThread
from store.models import InboundMessage, OutboundMessage, Record

ROOT = Path(__file__).resolve().parent.parent


def test_a_mail_stored_before_a_crash_is_processed_on_the_next_start_exactly_once(ctx):
    # The process stored the mail and died before processing it.
    stored = store_raw(ctx.db, make_mail(PROJECT_BODY), source="smtp", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=NOW)
    assert InboundMessage.get_by_id(stored.inbound_id).state == "received"
    for _ in range(2):  # two restarts
        gateway = GatewayThread(ctx, transport=None).start()
        try:
            row = wait_processed(stored.inbound_id)
        finally:
            gateway.stop()
    assert row.state == "processed"
    assert Record.select().count() == 1
    assert OutboundMessage.select().where(OutboundMessage.kind == "request").count() == 2


def test_processing_the_same_mail_twice_changes_nothing(ctx):
    stored = store_raw(ctx.db, make_mail(PROJECT_BODY), source="ingest", envelope_from=None,
                       envelope_to=[f"project@{DOMAIN}"], now=NOW)
    assert process_inbound(ctx, stored.inbound_id) == "processed"
    assert process_inbound(ctx, stored.inbound_id) == "processed"
    assert Record.select().count() == 1 and OutboundMessage.select().count() == 4


def test_an_internal_error_keeps_the_mail_and_tells_the_sender(ctx, monkeypatch):
    import gateway.pipeline as pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(pipeline, "handle_submission", broken)
    stored = store_raw(ctx.db, make_mail(PROJECT_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=NOW)
    assert process_inbound(ctx, stored.inbound_id) == "error"
    assert Record.select().count() == 0  # the failed transaction left nothing behind
    notice = OutboundMessage.get()
    assert notice.kind == "error_notice" and f"IN-{stored.inbound_id}" in mail_body(ctx, notice)[0]
    assert "simulated bug" not in mail_body(ctx, notice)[0] and "Traceback" not in mail_body(ctx, notice)[0]
    # Fixed and retried by the operator: processed once.
    monkeypatch.undo()
    InboundMessage.update(state="received").where(InboundMessage.id == stored.inbound_id).execute()
    assert process_inbound(ctx, stored.inbound_id) == "processed"


def test_a_failing_mail_is_retried_later_behind_new_mail_and_then_given_up(ctx, clock, monkeypatch):
    # issue 9: a mail whose processing raised stayed first in line; now it waits, with pauses.
    import gateway.pipeline as pipeline
    from gateway.intake import pending_ids

    real = pipeline.handle_submission

    def broken_for_one(ctx, row, msg, form):
        if "坏" in msg.subject:
            raise RuntimeError("simulated bug")
        return real(ctx, row, msg, form)

    monkeypatch.setattr(pipeline, "handle_submission", broken_for_one)
    bad = store_raw(ctx.db, make_mail(PROJECT_BODY, subject="坏邮件-硬件方案评审"), source="ingest",
                    envelope_from="chen.jing@liuhen.localhost", envelope_to=[f"project@{DOMAIN}"], now=NOW)
    assert process_inbound(ctx, bad.inbound_id) == "error"
    failed = InboundMessage.get_by_id(bad.inbound_id)
    assert failed.attempts == 1 and failed.next_attempt_at > NOW and "attempt 1 of" in failed.reason
    good = store_raw(ctx.db, make_mail(PROJECT_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                     envelope_to=[f"project@{DOMAIN}"], now=NOW)
    assert pending_ids(ctx.db, clock.now(), limit=16) == [good.inbound_id]  # not due yet: not in line
    assert process_inbound(ctx, good.inbound_id) == "processed"
    for _attempt in range(2, pipeline.MAX_ATTEMPTS + 1):
        clock.advance(hours=7)
        assert pending_ids(ctx.db, clock.now(), limit=16) == [bad.inbound_id]
        assert process_inbound(ctx, bad.inbound_id) == "error"
    given_up = InboundMessage.get_by_id(bad.inbound_id)
    assert given_up.next_attempt_at is None and "given up" in given_up.reason
    clock.advance(days=30)
    assert pending_ids(ctx.db, clock.now(), limit=16) == []
    assert OutboundMessage.select().where(OutboundMessage.kind == "error_notice").count() == 1  # told once
    # Once the bug is fixed, an operator's retry takes it up again with fresh attempts.
    monkeypatch.undo()
    assert cmd_inbox_retry(argparse.Namespace(id=bad.inbound_id), ctx) == 0
    retried = InboundMessage.get_by_id(bad.inbound_id)
    # Handled this time (a month later its dates lie in the past: rejected, with the reasons).
    assert (retried.state, retried.attempts) == ("rejected", 1), retried.reason


def test_a_mail_that_took_the_process_down_waits_behind_new_mail_and_is_given_up(ctx):
    from gateway.intake import pending_ids
    from gateway.pipeline import MAX_ATTEMPTS

    crashed = store_raw(ctx.db, make_mail(PROJECT_BODY, subject="第一封-硬件方案评审"), source="ingest",
                        envelope_from="chen.jing@liuhen.localhost", envelope_to=[f"project@{DOMAIN}"], now=NOW)
    InboundMessage.update(attempts=1).where(InboundMessage.id == crashed.inbound_id).execute()  # begun, never ended
    new = store_raw(ctx.db, make_mail(PROJECT_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                    envelope_to=[f"project@{DOMAIN}"], now=NOW)
    assert pending_ids(ctx.db, NOW, limit=16) == [new.inbound_id, crashed.inbound_id]
    InboundMessage.update(attempts=MAX_ATTEMPTS).where(InboundMessage.id == crashed.inbound_id).execute()
    assert process_inbound(ctx, crashed.inbound_id) == "error"
    assert Record.select().count() == 0 and "given up" in InboundMessage.get_by_id(crashed.inbound_id).reason


def _liuhen(tmp_path: Path, ctx, *args: str, stdin: bytes | None = None, db_url: str | None = None):
    config = tmp_path / "liuhen.toml"
    config.write_text(f"""
[gateway]
domain = "{DOMAIN}"
data_dir = "{ctx.settings.gateway.data_dir}"
secret = "test-secret"
[delivery]
maildir = "{ctx.settings.maildir_path}"
""", encoding="utf-8")
    env = {**os.environ, "LIUHEN_DATABASE_URL": db_url or ctx.settings.database_url}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
                          input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=60)


def test_ingest_from_stdin_processes_and_exits_0(ctx, tmp_path):
    ctx.db.close()  # the CLI is another process
    result = _liuhen(tmp_path, ctx, "ingest", "--sender", "chen.jing@liuhen.localhost",
                     "--recipient", f"project@{DOMAIN}", stdin=make_mail(PROJECT_BODY))
    assert result.returncode == 0, result.stderr
    assert b"processed" in result.stdout
    assert Record.get().ref == "PRJ-2026-0001"
    # Its mails go out with `liuhen outbox flush`.
    result = _liuhen(tmp_path, ctx, "outbox", "flush")
    assert result.returncode == 0 and b"4 mail(s)" in result.stdout
    assert len(os.listdir(ctx.settings.maildir_path / "new")) == 4


def test_ingest_of_a_file_without_envelope_uses_the_headers(ctx, tmp_path):
    ctx.db.close()
    path = tmp_path / "request.eml"
    path.write_bytes(make_mail(PROJECT_BODY))
    result = _liuhen(tmp_path, ctx, "ingest", str(path))
    assert result.returncode == 0, result.stderr
    assert InboundMessage.get().state == "processed"


def test_ingest_exits_75_when_the_store_is_unavailable(ctx, tmp_path):
    result = _liuhen(tmp_path, ctx, "ingest", stdin=make_mail(PROJECT_BODY),
                     db_url="postgresql://nobody@127.0.0.1:1/nothing")
    assert result.returncode == 75
    assert b"Traceback" not in result.stderr


def test_ingest_of_an_empty_message_is_a_data_error(ctx, tmp_path):
    ctx.db.close()
    assert _liuhen(tmp_path, ctx, "ingest", stdin=b"").returncode == 65


def test_smtp_and_ingest_of_the_same_mail_make_one_record(ctx, gateway, tmp_path):
    raw = make_mail(PROJECT_BODY)
    wait_processed(smtp_send(ctx, raw, f"project@{DOMAIN}", "chen.jing@liuhen.localhost"))
    result = _liuhen(tmp_path, ctx, "ingest", stdin=raw)
    assert result.returncode == 0 and b"duplicate" in result.stdout
    assert Record.select().count() == 1


def test_a_mail_in_a_charset_that_cannot_be_decoded_does_not_hold_up_the_mail_behind_it(ctx):
    hostile = (ROOT / "tests" / "fixtures" / "hostile" / "idna_charset.eml").read_bytes()
    poisoned = [store_raw(ctx.db, hostile.replace(b"\xff", bytes([0xff, n])), source="smtp",
                          envelope_from="a@b.c", envelope_to=[f"project@{DOMAIN}"], now=NOW) for n in range(16)]
    valid = store_raw(ctx.db, make_mail(PROJECT_BODY), source="smtp", envelope_from="chen.jing@liuhen.localhost",
                      envelope_to=[f"project@{DOMAIN}"], now=NOW)
    gateway = GatewayThread(ctx, transport=None).start()
    try:
        assert wait_processed(valid.inbound_id).state == "processed"
    finally:
        gateway.stop()
    states = {InboundMessage.get_by_id(s.inbound_id).state for s in poisoned}
    assert "received" not in states and states <= {"processed", "rejected", "ignored", "error"}


def test_show_into_a_pipe_closed_early_ends_quietly(ctx, tmp_path):
    # `liuhen show … | head` ended in a BrokenPipeError traceback (issue 11). The reader here
    # is gone before the first line: every write fails, as after head has read its lines.
    assert _liuhen(tmp_path, ctx, "ingest", "--sender", "chen.jing@liuhen.localhost", "--recipient",
                   f"project@{DOMAIN}", stdin=make_mail(PROJECT_BODY)).returncode == 0
    config = tmp_path / "liuhen.toml"
    env = {**os.environ, "LIUHEN_DATABASE_URL": ctx.settings.database_url}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        show = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), "show", "PRJ-2026-0001"],
                              stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, env=env, timeout=60)
    finally:
        os.close(write_end)
    assert show.returncode == 0 and b"Traceback" not in show.stderr and b"BrokenPipe" not in show.stderr, show.stderr
