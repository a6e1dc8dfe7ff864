"""A delivery status notification for one of our mails: the recipient is marked undeliverable
on the outbox row and the record's initiator is told. Nothing is ever sent back to a bounce."""

from __future__ import annotations

from gateway.bootstrap import Context
from gateway.handlers import Outcome
from gateway.outbox import report_undeliverable
from parsers.dsn import DeliveryReport
from store.models import OutboundMessage


def handle_bounce(ctx: Context, report: DeliveryReport) -> Outcome:
    sent = OutboundMessage.get_or_none(OutboundMessage.message_id == report.original_message_id) \
        if report.original_message_id else None
    if sent is None:
        return Outcome("ignored", "delivery report about a mail we did not send (or that it does not name)")
    if not report.failed:
        return Outcome("ignored", f"delivery report for outbound {sent.id} without a failure (delayed or relayed)",
                       sent.record_id)
    failure = report.failed[0]
    error = f"{failure.status} {failure.diagnostic}".strip() or "bounced"
    report_undeliverable(ctx, sent, error)
    return Outcome("processed", f"bounce: outbound {sent.id} to {failure.address or sent.to_addr} failed ({error})",
                   sent.record_id)
