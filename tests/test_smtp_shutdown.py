"""Stopping SMTP intake with sessions open: each hears 421 4.3.2, and a mail being received when
the stop came is still taken (spooled, 250) if it ends within the grace period."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from conftest import DOMAIN, PROJECT_BODY, crlf, free_port, make_mail

from gateway.bootstrap import Context
from gateway.serve import GatewayThread
from gateway.smtp import IntakeHandler, smtp_factory
from gateway.spool import Spool, SpoolWriter


class _Intake:
    """SMTP intake on an event loop of its own, as `liuhen serve` runs it (without processing)."""

    def __init__(self, ctx: Context):
        self.port = free_port()
        self.spool = Spool(ctx.settings.data_path / "spool")
        self.writer = SpoolWriter(self.spool, lambda: None)
        self.sessions = smtp_factory(ctx, IntakeHandler(ctx, self.writer))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            self.loop.create_server(self.sessions, "127.0.0.1", self.port), self.loop).result(10)

    def shut_down(self, grace_seconds: float) -> Future:
        """What serve does on SIGTERM: stop accepting, then close the sessions."""
        async def stop() -> None:
            self.server.close()
            await self.sessions.close_sessions(grace_seconds)
        return asyncio.run_coroutine_threadsafe(stop(), self.loop)

    def client(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        client.ehlo("client.example.cn")
        return client

    def spooled_ids(self) -> list[str]:
        return [m.queue_id for name in self.spool.pending() for m in self.spool.read(name)]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.writer.close()


@pytest.fixture
def intake(ctx: Context) -> Iterator[_Intake]:
    running = _Intake(ctx)
    yield running
    running.close()


def _open_data(client: smtplib.SMTP) -> None:
    client.mail("chen.jing@liuhen.localhost")
    client.rcpt(f"project@{DOMAIN}")
    client.putcmd("data")
    assert client.getreply()[0] == 354


def test_a_session_waiting_for_its_next_command_hears_421(intake):
    client = intake.client()
    client.mail("chen.jing@liuhen.localhost")
    client.rcpt(f"project@{DOMAIN}")  # a transaction open, DATA not yet sent
    intake.shut_down(grace_seconds=10).result(30)
    code, answer = client.getreply()
    assert (code, answer) == (421, b"4.3.2 Service shutting down, please try again later")
    client.close()
    assert intake.spooled_ids() == []


def test_a_mail_being_received_at_the_stop_is_spooled_and_answered_250_then_421(intake):
    idle, sending = intake.client(), intake.client()
    _open_data(sending)
    raw = crlf(make_mail(PROJECT_BODY))
    sending.send(raw[:len(raw) // 2])
    stopped = intake.shut_down(grace_seconds=30)
    assert idle.getreply()[0] == 421  # the stop has begun
    sending.send(raw[len(raw) // 2:] + b".\r\n")
    code, answer = sending.getreply()
    assert code == 250
    assert answer.decode().rsplit("queued as ", 1)[1] in intake.spooled_ids()
    assert sending.getreply() == (421, b"4.3.2 Service shutting down, please try again later")
    stopped.result(30)
    idle.close()
    sending.close()


def test_a_mail_not_finished_within_the_grace_period_is_answered_421_and_not_taken(intake):
    client = intake.client()
    _open_data(client)
    client.send(crlf(make_mail(PROJECT_BODY))[:200])  # and the client stalls
    intake.shut_down(grace_seconds=0.2).result(30)
    assert client.getreply()[0] == 421  # the sender's MTA keeps the mail and retries
    client.close()
    assert intake.spooled_ids() == []


def test_stopping_the_gateway_answers_open_sessions_421(ctx):
    # The same through run_gateway, the code `liuhen serve` runs on SIGTERM: its stop once
    # closed the listening socket and left open sessions without a word.
    gateway = GatewayThread(ctx, transport=None).start()
    client = smtplib.SMTP("127.0.0.1", ctx.settings.smtp.port, timeout=30)
    try:
        client.ehlo("client.example.cn")
        client.mail("chen.jing@liuhen.localhost")
        stopping = threading.Thread(target=gateway.stop)
        stopping.start()
        code, answer = client.getreply()
        stopping.join(30)
        assert (code, answer) == (421, b"4.3.2 Service shutting down, please try again later")
    finally:
        client.close()
