"""The database goes away under load and comes back: every database user (processor, outbox,
sweeps, IMAP) reconnects by itself, the log says so once per outage, and nothing waits for a
restart of `serve`.

A PostgreSQL restart is played by a TCP relay between the gateway and the test PostgreSQL:
cutting it kills every open connection (as the server's shutdown does) and refuses new ones
until it is restored. The machine's PostgreSQL itself keeps running for the other tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import (
    DOMAIN,
    MEDIUM_BODY,
    PROJECT_BODY,
    free_port,
    make_mail,
    smtp_send,
    spool_mail,
    test_settings,
    wait_processed,
)
from dovecot import Dovecot
from test_serve_command import _env, _request_due_ahead, _wait_port

import store.db
from config.settings import ImapSettings
from gateway.bootstrap import Context, build_context
from gateway.cli import cmd_status
from gateway.clock import FixedClock
from gateway.delivery import MaildirTransport
from gateway.health import health
from gateway.intake import store_raw
from gateway.pipeline import process_inbound
from gateway.serve import GatewayThread
from store.models import OutboundMessage

ROOT = Path(__file__).resolve().parent.parent
postgres_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


class CuttableRelay:
    """A TCP relay to a server that a test can cut — every relayed connection dies and new
    ones are refused, as while PostgreSQL restarts — and restore on the same port."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()  # a connection is relayed entirely, or not at all, around a cut
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            assert self._listener is not None
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(): new connections are refused
            self._listener.close()
            self._listener = None
            for s in self._sockets:
                _close(s)
            self._sockets = []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(server)
                    continue
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def _through(relay: CuttableRelay, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))


@pytest.fixture
def relay(db_url: str) -> CuttableRelay:
    parts = urlsplit(db_url)
    return CuttableRelay((parts.hostname or "127.0.0.1", parts.port or 5432))


@pytest.fixture
def relayed_ctx(tmp_path: Path, db_url: str, relay: CuttableRelay, clock: FixedClock) -> Iterator[Context]:
    context = build_context(test_settings(tmp_path, _through(relay, db_url)), clock=clock)
    yield context
    context.db.close()


def _outage_lines(records: list[logging.LogRecord]) -> tuple[list[str], list[str]]:
    messages = [r.getMessage() for r in records]
    return ([m for m in messages if "database unavailable" in m],
            [m for m in messages if "database available again" in m])


@postgres_only
def test_mail_arriving_while_postgres_restarts_is_processed_and_answered_once_it_is_back(
        relayed_ctx: Context, relay: CuttableRelay, caplog: pytest.LogCaptureFixture):
    ctx = relayed_ctx
    caplog.set_level(logging.INFO)
    gateway = GatewayThread(ctx, MaildirTransport(ctx.settings.maildir_path)).start()
    try:
        before = wait_processed(smtp_send(ctx, make_mail(PROJECT_BODY), f"project@{DOMAIN}"))
        assert before.state == "processed"
        ctx.db.close()  # this test's own connection: it would die with the others
        relay.cut()
        # SMTP keeps answering 250: the spool holds the mail.
        during = [smtp_send(ctx, make_mail(PROJECT_BODY.replace("硬件方案评审", f"硬件方案评审{i}")),
                            f"project@{DOMAIN}") for i in range(3)]
        time.sleep(3)  # the processor and the outbox try, and fail, several times
        relay.restore()
        states = [wait_processed(queue_id, timeout=60).state for queue_id in during]
        assert states == ["processed"] * 3
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and OutboundMessage.select().where(
                OutboundMessage.status != "sent").exists():
            time.sleep(0.1)
        assert OutboundMessage.select().where(OutboundMessage.status != "sent").count() == 0
        assert OutboundMessage.select().count() == 4 * 4  # ack, two requests, the head's copy for each
    finally:
        gateway.stop()
    down, up = _outage_lines(caplog.records)
    assert len(down) == 1 and len(up) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info], "a traceback per failed attempt"


def _http_status(port: int, path: str, timeout: float = 20.0) -> int:
    """The status of GET path on the console, waiting for it to listen."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_files(folder: Path, count: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (len(list(folder.glob("*"))) if folder.exists() else 0) < count:
        time.sleep(0.1)
    return len(list(folder.glob("*"))) if folder.exists() else 0


@postgres_only
def test_serve_with_its_processor_child_recovers_from_a_postgres_restart_without_a_restart(
        tmp_path: Path, db_url: str, relay: CuttableRelay):
    port, web_port = free_port(), free_port()
    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndomain = "liuhen.test"\ndata_dir = "var"\n[smtp]\nport = {port}\n'
                      f'[database]\nurl = "{_through(relay, db_url)}"\n[reminders]\nsweep_seconds = 1\n'
                      f'[web]\nport = {web_port}\n', encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"], cwd=ROOT,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    maildir = tmp_path / "var" / "outbox-maildir" / "new"
    try:
        _wait_port(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("chen.jing@liuhen.localhost", [f"project@{DOMAIN}"], _request_due_ahead())
        assert _wait_files(maildir, 4) == 4  # ack, two requests, the head's copy
        relay.cut()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for i in range(3):  # accepted: the spool holds them
                assert client.sendmail("chen.jing@liuhen.localhost", [f"project@{DOMAIN}"], _request_due_ahead(
                    PROJECT_BODY.replace("硬件方案评审", f"硬件方案评审{i}"))) == {}
        time.sleep(3)  # the processor child, the outbox and the sweeps try, and fail, several times
        assert _http_status(web_port, "/readyz") == 503  # the console says so, and stays up
        relay.restore()
        assert _wait_files(maildir, 16) == 16  # every mail processed and answered, nothing restarted
        assert _http_status(web_port, "/readyz") == 200 and _http_status(web_port, "/signin") == 200
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    log = err.decode()
    assert server.returncode == 0, log
    assert "Traceback" not in log
    assert log.count("database unavailable") == 1 and log.count("database available again") == 1, log


def test_status_with_the_database_up_counts_what_waits_where(ctx: Context, capsys: pytest.CaptureFixture[str]):
    stored = store_raw(ctx.db, make_mail(PROJECT_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=ctx.clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "processed"
    spool_mail(ctx, make_mail(PROJECT_BODY), "chen.jing@liuhen.localhost", [f"project@{DOMAIN}"])
    assert cmd_status(argparse.Namespace(json=True), ctx.settings) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["ready"] is True and status["database"]["reachable"] is True
    assert status["spool"]["waiting_files"] == 1
    assert status["inbound"] == {"processed": 1}
    assert status["outbox"]["queued"] == 4 and status["outbox"]["failed"] == 0
    assert status["outbox"]["oldest_queued_seconds"] is not None
    assert cmd_status(argparse.Namespace(json=False), ctx.settings) == 0
    text = capsys.readouterr().out
    assert "database: reachable" in text and "spool: 1 file(s) waiting" in text and "queued 4" in text


def test_status_with_the_database_down_says_so_and_exits_75(tmp_path: Path):
    (tmp_path / "var" / "spool" / "new").mkdir(parents=True)
    (tmp_path / "var" / "spool" / "new" / "0001").write_bytes(b"{}\n")  # a mail SMTP accepted meanwhile
    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "var"}"\n'
                      f'[database]\nurl = "postgresql://liuhen:secret@127.0.0.1:{free_port()}/liuhen"\n',
                      encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), "status"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 75, done.stdout + done.stderr
    assert "database: UNREACHABLE" in done.stdout and "Connection refused" in done.stdout
    assert "secret" not in done.stdout  # the password is not printed
    assert "spool: 1 file(s) waiting" in done.stdout
    assert "Traceback" not in done.stderr


@postgres_only
def test_health_inside_the_gateway_follows_an_outage(relayed_ctx: Context, relay: CuttableRelay):
    assert health(relayed_ctx)["ready"] is True
    relay.cut()
    down = health(relayed_ctx)
    assert down["ready"] is False and down["database"]["unavailable_since"] is not None
    assert down["inbound"] is None
    relay.restore()
    up = health(relayed_ctx)
    assert up["ready"] is True and up["database"]["unavailable_since"] is None and up["inbound"] == {}


@postgres_only
def test_imap_intake_waits_out_a_postgres_restart_and_takes_the_mail_after(
        relayed_ctx: Context, relay: CuttableRelay, dovecot: Dovecot, caplog: pytest.LogCaptureFixture):
    box = ImapSettings(address=f"project@{DOMAIN}", host="127.0.0.1", port=dovecot.port, security="none",
                       user="intake", password="s3cret", processed_folder="liuhen-done", poll_seconds=1)
    ctx = replace(relayed_ctx, settings=replace(relayed_ctx.settings, imap=(box,)))
    caplog.set_level(logging.INFO)
    gateway = GatewayThread(ctx, transport=None).start()  # with its IMAP poller
    try:
        # Idling first: a message appended between the poller's first look and its IDLE
        # waits for the next IDLE (Dovecot does not report it to an IDLE begun after it).
        time.sleep(1)
        dovecot.append(make_mail(MEDIUM_BODY))
        wait_processed(1, timeout=30)
        ctx.db.close()  # this test's own connection: it would die with the others
        relay.cut()
        for i in range(2):
            dovecot.append(make_mail(MEDIUM_BODY.replace("硬件方案评审", f"硬件方案评审{i}")))
        time.sleep(3)  # the poller tries to store them, and fails, several times
        assert dovecot.folder_counts()["INBOX"] == 2  # left where they are meanwhile
        relay.restore()
        assert [wait_processed(i, timeout=60).state for i in (2, 3)] == ["processed"] * 2
    finally:
        gateway.stop()
    assert dovecot.folder_counts() == {"INBOX": 0, "liuhen-done": 3}
    down, up = _outage_lines(caplog.records)
    assert len(down) == 1 and len(up) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info], "a traceback per failed attempt"


def test_sqlite_locked_by_another_program_is_waited_out_the_same_way(
        tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    # A program holding a write transaction (a backup, an sqlite3 shell left open) longer
    # than the busy timeout: 30 s in production, 0.2 s here.
    monkeypatch.setitem(store.db.SQLITE_PRAGMAS, "busy_timeout", 200)
    path = tmp_path / "liuhen.db"
    ctx = build_context(test_settings(tmp_path, f"sqlite:///{path}"), clock=clock)
    caplog.set_level(logging.INFO)
    gateway = GatewayThread(ctx, MaildirTransport(ctx.settings.maildir_path)).start()
    try:
        assert wait_processed(smtp_send(ctx, make_mail(PROJECT_BODY), f"project@{DOMAIN}")).state == "processed"
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        during = [smtp_send(ctx, make_mail(PROJECT_BODY.replace("硬件方案评审", f"硬件方案评审{i}")),
                            f"project@{DOMAIN}") for i in range(2)]
        time.sleep(3)  # the processor and the outbox try, and fail, several times
        other.execute("ROLLBACK")
        other.close()
        assert [wait_processed(queue_id, timeout=60).state for queue_id in during] == ["processed"] * 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and OutboundMessage.select().where(
                OutboundMessage.status != "sent").exists():
            time.sleep(0.1)
        assert OutboundMessage.select().where(OutboundMessage.status == "sent").count() == 3 * 4
    finally:
        gateway.stop()
        ctx.db.close()
    down, up = _outage_lines(caplog.records)
    assert len(down) == 1 and "locked" in down[0] and len(up) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info], "a traceback per failed attempt"


def _children(pid: int) -> list[int]:
    """The processor and the delivery processes of `serve` (pid)."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    children = [int(line.split()[0]) for line in out.splitlines() if line.split()[1].startswith("lh-")]
    assert len(children) == 2, out
    return children


@postgres_only
def test_child_processes_killed_while_postgres_is_down_come_back_with_it(
        tmp_path: Path, db_url: str, relay: CuttableRelay):
    port = free_port()
    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndomain = "liuhen.test"\ndata_dir = "var"\n[smtp]\nport = {port}\n'
                      f'[database]\nurl = "{_through(relay, db_url)}"\n[web]\nenabled = false\n', encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"], cwd=ROOT,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    maildir = tmp_path / "var" / "outbox-maildir" / "new"
    try:
        _wait_port(port)
        relay.cut()
        for child in _children(server.pid):  # the processor and the delivery process
            os.kill(child, signal.SIGKILL)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.sendmail("chen.jing@liuhen.localhost", [f"project@{DOMAIN}"], _request_due_ahead()) == {}
        time.sleep(6)  # the children are started again, and cannot connect, more than once
        relay.restore()
        assert _wait_files(maildir, 4) == 4
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    log = err.decode()
    assert server.returncode == 0, log
    assert "Traceback" not in log, log
    # Told once, and once that it is back. (A child started in the instant the relay is cut
    # can connect just before its connections die, and report one short blip more.)
    assert 1 <= log.count("database unavailable") <= 2, log
    assert log.count("database unavailable") == log.count("database available again"), log


def _probe(port: int, path: str) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


@postgres_only
def test_the_readiness_probe_of_serve_follows_a_postgres_restart(relayed_ctx: Context, relay: CuttableRelay):
    from conftest import free_port

    from config.settings import ProbeSettings
    from gateway.serve import GatewayThread

    port = free_port()
    ctx = replace(relayed_ctx, settings=replace(relayed_ctx.settings, probe=ProbeSettings(port=port)))
    gateway = GatewayThread(ctx, transport=None).start()
    try:
        status, body = _probe(port, "/readyz")
        assert status == 200 and body["ready"] is True and body["inbound"] == {}
        relay.cut()
        status, body = _probe(port, "/readyz")
        assert status == 503 and body["database"]["reachable"] is False and body["database"]["error"]
        assert _probe(port, "/healthz") == (200, {"alive": True})  # the process itself is fine
        assert _probe(port, "/metrics")[0] == 503  # figures it cannot read are not made up
        relay.restore()
        assert _probe(port, "/readyz")[0] == 200
    finally:
        gateway.stop()
