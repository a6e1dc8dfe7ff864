"""A delivery status notification for one of our mails: the recipient is marked undeliverable
on the outbox row and the record's initiator is told. Nothing is ever sent back to a bounce."""

from __future__ import annotations

from gateway.bootstrap import Context
from gateway.handlers import Outcome
from gateway.outbox import report_undeliverable
from parsers.dsn import DeliveryReport
from store.models import OutboundMessage


def handle_bounce(ctx: Context, report: DeliveryReport | None, returned_id: int | None = None,
                  subject: str = "") -> Outcome:
    """`report` is the parsed DSN (None when the mail is not one); `returned_id` the outbound
    mail whose return path (VERP) the bounce came to — which names the mail even when the
    report is mangled, or is no RFC 3464 report at all (an old MTA's plain-text bounce)."""
    sent = OutboundMessage.get_or_none(OutboundMessage.id == returned_id) if returned_id is not None else None
    if sent is None and report is not None and report.original_message_id:
        sent = OutboundMessage.get_or_none(OutboundMessage.message_id == report.original_message_id)
    if sent is None:
        return Outcome("ignored", "delivery report about a mail we did not send (or that it does not name)")
    if report is not None and not report.failed:
        return Outcome("ignored", f"delivery report for outbound {sent.id} without a failure (delayed or relayed)",
                       sent.record_id)
    if report is not None:
        failure = report.failed[0]
        error, address = f"{failure.status} {failure.diagnostic}".strip() or "bounced", failure.address
    else:
        error, address = f"returned: {' '.join(subject.split())[:200]}" if subject else "returned", ""
    report_undeliverable(ctx, sent, error)
    return Outcome("processed", f"bounce: outbound {sent.id} to {address or sent.to_addr} failed ({error})",
                   sent.record_id)
