"""Outbox claims and their leases (issue 9, "Faults"): a delivered mail whose 'sent' update
failed (database full, locked, restarting) stayed 'sending' until a restart and then went out
a second time; a restart requeued every 'sending' mail, also one that another gateway node
was delivering at that moment; a bounce processed before the 'sent' update was overwritten
by it."""

from __future__ import annotations

import email
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import DOMAIN, MEDIUM_BODY, make_mail
from peewee import OperationalError
from test_bounces import dsn

from gateway import outbox
from gateway.delivery import DeliveryError
from gateway.intake import store_raw
from gateway.outbox import Draft, deliver_due, queue_mails, stuck_sending_reset
from gateway.pipeline import process_inbound
from store.models import Event, OutboundMessage


class Recording:
    """A transport that keeps what it was given, and how the row looked while sending."""

    def __init__(self):
        self.sent: list[list[str]] = []
        self.claims: list[tuple[str, str, object]] = []

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        row = OutboundMessage.get(OutboundMessage.to_addr == recipients[0])
        self.claims.append((row.status, row.claimed_by, row.lease_until))
        self.sent.append(recipients)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _queue(ctx, *addrs: str) -> None:
    queue_mails(ctx, [Draft(kind="error_notice", template="sender/error", lang="en", to_addr=addr, to_name="",
                            context={"inbound_id": 1, "original_subject": "hello"}) for addr in addrs])


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(outbox, "SENT_UPDATE_RETRY_SECONDS", (0.0, 0.0, 0.0))


def _failing_mark_sent(monkeypatch, failures: int) -> list[int]:
    """The 'sent' update raises as a full disk does, `failures` times, then works."""
    calls: list[int] = []
    real = outbox._mark_sent

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise OperationalError("database or disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(outbox, "_mark_sent", flaky)
    return calls


@pytest.mark.parametrize("failures", [1, 2])
def test_a_failing_sent_update_is_retried_and_the_mail_goes_out_once(ctx, monkeypatch, no_backoff, clock, failures):
    _queue(ctx, "wang.qiang@liuhen.localhost")
    calls = _failing_mark_sent(monkeypatch, failures)
    transport = Recording()
    assert deliver_due(ctx, transport) == 1
    mail = OutboundMessage.get()
    assert mail.status == "sent" and mail.raw is not None and len(calls) == failures + 1
    assert Event.select().where(Event.kind == "mail_sent").count() == 1
    # A restart later finds nothing left to send again.
    clock.advance(hours=2)
    stuck_sending_reset(clock.now())
    deliver_due(ctx, transport)
    assert len(transport.sent) == 1


def test_a_claim_names_this_node_and_holds_a_lease(ctx, clock):
    _queue(ctx, "wang.qiang@liuhen.localhost")
    transport = Recording()
    deliver_due(ctx, transport)
    [(status, claimed_by, lease_until)] = transport.claims
    assert status == "sending" and claimed_by.startswith(f"{socket.gethostname()}:{os.getpid()}/")  # and its token
    assert lease_until > clock.now()


def _sending(addr: str, claimed_by: str, lease_until) -> None:
    OutboundMessage.update(status="sending", claimed_by=claimed_by, lease_until=lease_until).where(
        OutboundMessage.to_addr == addr).execute()


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True,
                           text=True)
    return int(child.stdout)


def test_a_restart_requeues_only_what_nobody_is_delivering(ctx, clock):
    _queue(ctx, "live@other.example", "expired@other.example", "restarted@here.example", "legacy@here.example")
    _sending("live@other.example", "mx2.example:4242", clock.now() + timedelta(minutes=5))
    _sending("expired@other.example", "mx2.example:4242", clock.now() - timedelta(seconds=1))
    # This host's previous gateway process, gone now: its lease is still running.
    _sending("restarted@here.example", f"{socket.gethostname()}:{_dead_pid()}", clock.now() + timedelta(minutes=5))
    _sending("legacy@here.example", "", None)  # claimed before leases existed
    assert stuck_sending_reset(clock.now()) == 3
    statuses = {m.to_addr: m.status for m in OutboundMessage.select()}
    assert statuses == {"live@other.example": "sending", "expired@other.example": "queued",
                        "restarted@here.example": "queued", "legacy@here.example": "queued"}
    transport = Recording()
    deliver_due(ctx, transport)
    assert sorted(r[0] for r in transport.sent) == ["expired@other.example", "legacy@here.example",
                                                     "restarted@here.example"]


def test_a_lease_that_expired_is_taken_over_without_a_restart(ctx, clock):
    _queue(ctx, "stuck@other.example")
    _sending("stuck@other.example", "mx2.example:4242", clock.now() + timedelta(minutes=5))
    transport = Recording()
    deliver_due(ctx, transport)
    assert transport.sent == []  # another node is on it
    clock.advance(minutes=6)
    deliver_due(ctx, transport)
    assert transport.sent == [["stuck@other.example"]]
    assert OutboundMessage.get().status == "sent"


# --- status updates are conditional: a bounce stays a bounce -----------------------------

def _submit_request(ctx) -> None:
    stored = store_raw(ctx.db, make_mail(MEDIUM_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=ctx.clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "processed"


class BouncedWhileSending(Recording):
    """The recipient's server rejects the mail after accepting it, and its report is
    processed before our 'sent' update commits."""

    def __init__(self, ctx, bounced_addr: str):
        super().__init__()
        self.ctx, self.bounced_addr = ctx, bounced_addr

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        super().send(raw, sender, recipients)
        if recipients[0] == self.bounced_addr:
            message_id = email.message_from_bytes(raw)["Message-ID"]
            stored = store_raw(self.ctx.db, dsn(message_id, self.bounced_addr), source="ingest", envelope_from="",
                               envelope_to=[f"liuhen@{DOMAIN}"], now=self.ctx.clock.now())
            assert process_inbound(self.ctx, stored.inbound_id) == "processed"


def test_a_bounce_processed_before_the_sent_update_is_not_overwritten(ctx):
    _submit_request(ctx)
    deliver_due(ctx, BouncedWhileSending(ctx, "zhao.lei@liuhen.localhost"))
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "zhao.lei@liuhen.localhost"))
    assert request.status == "bounced" and "User unknown" in request.last_error
    assert request.raw is not None  # what went out stays in the trace
    assert OutboundMessage.select().where(OutboundMessage.kind == "delivery_failed").count() == 1


def test_a_late_failure_of_a_claim_that_was_taken_over_does_not_requeue_the_mail(ctx, clock):
    _queue(ctx, "wang.qiang@liuhen.localhost")

    class Slow(Recording):
        def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
            # Our lease ran out; another node took the mail over and delivered it meanwhile.
            OutboundMessage.update(status="sent", claimed_by="mx2.example:4242").execute()
            raise DeliveryError("451 4.4.2 timeout", permanent=False)

    deliver_due(ctx, Slow())
    mail = OutboundMessage.get()
    assert mail.status == "sent" and mail.claimed_by == "mx2.example:4242"
    assert not Event.select().where(Event.kind == "mail_deferred").exists()
