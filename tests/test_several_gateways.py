"""Several gateways on one database: on PostgreSQL they share the work without doing it twice;
on SQLite a second `serve` on the same file is refused."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import test_settings

from gateway.bootstrap import build_context
from gateway.outbox import Draft, deliver_due, queue_mails
from store.db import is_postgres, node_lock, open_database
from store.models import OutboundMessage

ROOT = Path(__file__).resolve().parent.parent
postgres_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


class Counting:
    """A transport that keeps the addresses it was given."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        time.sleep(0.001)  # a smarthost's round trip: the two gateways' claims interleave
        self.sent.extend(recipients)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@postgres_only
def test_two_gateways_on_one_postgresql_deliver_every_mail_once(tmp_path, db_url, clock):
    first = build_context(test_settings(tmp_path, db_url), clock=clock)
    second = build_context(test_settings(tmp_path, db_url), clock=clock)
    addresses = [f"person{n}@example.cn" for n in range(300)]
    queue_mails(first, [Draft(kind="error_notice", template="sender/error", lang="en", to_addr=a, to_name="",
                              context={"inbound_id": 1, "original_subject": "hello"}) for a in addresses])
    transports = [Counting(), Counting()]

    def drain(ctx, transport: Counting) -> None:
        while deliver_due(ctx, transport, limit=20):
            pass

    workers = [threading.Thread(target=drain, args=pair) for pair in zip((first, second), transports)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sent = transports[0].sent + transports[1].sent
    assert sorted(sent) == sorted(addresses)  # each once
    assert transports[0].sent and transports[1].sent  # both did their share
    assert OutboundMessage.select().where(OutboundMessage.status != "sent").count() == 0
    first.db.close()
    second.db.close()


@postgres_only
def test_only_one_node_at_a_time_holds_a_named_task(db_url):
    one, other = open_database(db_url), open_database(db_url)
    assert is_postgres(one)
    with node_lock(one, "liuhen:sweep") as first:
        assert first
        with node_lock(other, "liuhen:sweep") as second:
            assert not second  # the other gateway skips its sweep
        with node_lock(other, "liuhen:imap:project@example.cn") as unrelated:
            assert unrelated
    with node_lock(other, "liuhen:sweep") as after:
        assert after  # given back
    one.close()
    other.close()


def test_a_second_serve_on_the_same_sqlite_file_is_refused_with_a_clear_message(tmp_path):
    from conftest import free_port
    from test_serve_command import _env, _serve_argv, _wait_port

    port = free_port()
    first = subprocess.Popen(_serve_argv(tmp_path, port, web=False), cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port)
        second = subprocess.run(_serve_argv(tmp_path, free_port(), web=False), cwd=ROOT, env=_env(),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "another liuhen serve is using" in second.stderr and "PostgreSQL" in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert first.returncode == 0


@postgres_only
def test_two_processors_on_one_postgresql_take_different_mails(tmp_path, db_url, clock):
    from conftest import DOMAIN, PROJECT_BODY, make_mail

    from gateway.intake import pending_ids, store_raw
    from gateway.pipeline import process_batch
    from store.models import InboundMessage, Record

    first = build_context(test_settings(tmp_path, db_url), clock=clock)
    second = build_context(test_settings(tmp_path, db_url), clock=clock)
    for n in range(12):
        body = PROJECT_BODY.replace("硬件方案评审", f"硬件方案评审{n}")
        store_raw(first.db, make_mail(body, subject=f"智能手表项目-硬件方案评审{n}"), source="ingest",
                  envelope_from="chen.jing@liuhen.localhost", envelope_to=[f"project@{DOMAIN}"], now=clock.now())
    mine, theirs = pending_ids(first.db, clock.now(), limit=8), pending_ids(second.db, clock.now(), limit=8)
    assert len(mine) == 8 and len(theirs) == 4 and not set(mine) & set(theirs)  # claimed, not shared
    assert pending_ids(first.db, clock.now(), limit=8) == []  # all taken, for their lease
    worked = [threading.Thread(target=process_batch, args=(ctx, ids)) for ctx, ids in ((first, mine),
                                                                                         (second, theirs))]
    for w in worked:
        w.start()
    for w in worked:
        w.join()
    assert Record.select().count() == 12 and InboundMessage.select().where(
        InboundMessage.state == "processed").count() == 12
    assert len({r.ref for r in Record.select()}) == 12  # no ID twice
    first.db.close()
    second.db.close()


def test_a_claim_of_a_processor_that_died_is_released_when_the_next_one_starts(ctx, clock):
    from conftest import DOMAIN, PROJECT_BODY, make_mail

    from gateway.intake import pending_ids, release_claims_of_the_gone, store_raw
    from store.models import InboundMessage

    stored = store_raw(ctx.db, make_mail(PROJECT_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=clock.now())
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    InboundMessage.update(claimed_by=f"{socket.gethostname()}:{dead}/abc", lease_until=clock.now() + timedelta(
        minutes=10)).where(InboundMessage.id == stored.inbound_id).execute()
    assert pending_ids(ctx.db, clock.now(), limit=8) == []  # its lease still runs
    assert release_claims_of_the_gone(clock.now()) == 1
    assert pending_ids(ctx.db, clock.now(), limit=8) == [stored.inbound_id]


def test_a_claim_takes_no_more_than_its_batch(ctx):
    from gateway.outbox import claim_due

    queue_mails(ctx, [Draft(kind="error_notice", template="sender/error", lang="en", to_addr=f"p{n}@example.cn",
                            to_name="", context={"inbound_id": 1, "original_subject": "hello"}) for n in range(50)])
    assert len(claim_due(ctx, 20)) == 20 and len(claim_due(ctx, 20)) == 20 and len(claim_due(ctx, 20)) == 10


class _SlowSink:
    """A smarthost that takes a while over each mail, and keeps the Message-IDs it got."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        import asyncio
        import email

        await asyncio.sleep(0.03)
        self.ids.append(str(email.message_from_bytes(envelope.original_content)["Message-ID"]))
        return "250 OK"


@postgres_only
def test_a_gateway_killed_mid_delivery_leaves_its_mail_to_the_other_and_loses_none(tmp_path, db_url):
    import os
    import signal
    import smtplib

    import psycopg2
    from aiosmtpd.controller import Controller
    from conftest import DOMAIN, PROJECT_BODY, free_port
    from test_serve_command import _env, _request_due_ahead, _wait_port

    sink = _SlowSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()

    def serve(name: str) -> tuple[subprocess.Popen, int]:
        port, home = free_port(), tmp_path / name
        home.mkdir()
        (home / "liuhen.toml").write_text(
            f'[gateway]\ndomain = "{DOMAIN}"\ndata_dir = "var"\nsecret = "shared-secret"\n[smtp]\nport = {port}\n'
            f'[database]\nurl = "{db_url}"\n[web]\nenabled = false\n[reminders]\nbusiness_hours = false\n'
            f'[delivery]\nmode = "smtp"\nhost = "127.0.0.1"\nport = {controller.port}\ntimeout_seconds = 5\n'
            f'sessions = 2\nbatch = 10\n', encoding="utf-8")
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(home / "liuhen.toml"),
                                    "serve"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        _wait_port(port)
        return process, port

    def rows(sql: str) -> list[tuple]:
        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            found = cur.fetchall()
        conn.close()
        return found

    def count(sql: str) -> int:
        return int(rows(sql)[0][0])

    def ours() -> set[str]:
        return {message_id for (message_id,) in rows("SELECT message_id FROM outboundmessage")}

    first, port = serve("a")
    second = None
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for n in range(30):
                client.sendmail("chen.jing@liuhen.localhost", [f"project@{DOMAIN}"], _request_due_ahead(
                    PROJECT_BODY.replace("硬件方案评审", f"硬件方案评审{n}")))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                count("SELECT count(*) FROM inboundmessage WHERE state = 'processed'") == 30 and len(sink.ids) >= 10):
            time.sleep(0.02)
        assert len(sink.ids) < 120, "it finished before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)  # the gateway and its processor child, mid-delivery
        first.wait(10)
        in_flight = count("SELECT count(*) FROM outboundmessage WHERE status = 'sending'")
        second, _ = serve("b")  # another node on the same database (here the same host)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and count(
                "SELECT count(*) FROM outboundmessage WHERE status <> 'sent'") > 0:
            time.sleep(0.2)
        assert count("SELECT count(*) FROM outboundmessage WHERE status = 'sent'") == 120  # 30 requests × 4
        assert set(sink.ids) == ours()  # every mail arrived, and nothing else
        assert len(sink.ids) - 120 <= in_flight  # at most one extra copy of what was in flight
        assert count("SELECT count(DISTINCT ref) FROM record") == count("SELECT count(*) FROM record") == 30
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.communicate(timeout=60)
        controller.stop()
