"""Metrics in the Prometheus text format (prometheus_client), served by `serve`'s probe
listener as GET /metrics beside /healthz and /readyz.

What happens in this process is counted as it happens: SMTP answers by code, spool fsync
time. What the database knows is read at each scrape, so it is the same whichever process or
gateway did the work: inbound mail by state and how long processing took, the outbox by
status and the age of its oldest queued mail, deliveries by result, reminders and
escalations sent, overdue items.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

from peewee import fn
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.bootstrap import Context
from store.models import Event, InboundMessage, OutboundMessage, UTCDateTimeField
from store.worklist import pending_items

REGISTRY = CollectorRegistry(auto_describe=True)
SMTP_ANSWERS = Counter("liuhen_smtp_answers", "SMTP answers given, by reply code", ["code"], registry=REGISTRY)
SPOOL_FSYNC = Histogram("liuhen_spool_fsync_seconds", "Writing and fsyncing one spool file (a group commit)",
                        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0), registry=REGISTRY)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT = 1000  # processing times are taken over this many of the latest processed mails

_DELIVERY_EVENTS = {"mail_sent": "sent", "mail_deferred": "deferred", "mail_failed": "failed",
                    "mail_bounced": "bounced"}


class StoreCollector(Collector):
    """The database's side, read at scrape time."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        now = ctx.clock.now()
        inbound = GaugeMetricFamily("liuhen_inbound_mails", "Stored inbound mails, by state", labels=["state"])
        for state, count in cast(Iterable[tuple[str, int]], InboundMessage.select(
                InboundMessage.state, fn.COUNT(InboundMessage.id)).group_by(InboundMessage.state).tuples()):
            inbound.add_metric([state], count)
        yield inbound
        took = sorted(_seconds(processed, received) for received, processed in cast(
            Iterable[tuple[object, object]], InboundMessage.select(InboundMessage.received_at,
                                                                   InboundMessage.processed_at)
            .where(InboundMessage.processed_at.is_null(False)).order_by(InboundMessage.id.desc())
            .limit(RECENT).tuples()))
        processing = GaugeMetricFamily("liuhen_processing_seconds",
                                       f"From storing a mail to its terminal state, over the last {RECENT} mails",
                                       labels=["quantile"])
        for q in (0.5, 0.95, 0.99):
            processing.add_metric([str(q)], took[min(len(took) - 1, int(q * len(took)))] if took else 0.0)
        yield processing
        outbox = GaugeMetricFamily("liuhen_outbox_mails", "Outbound mails, by status", labels=["status"])
        for status, count in cast(Iterable[tuple[str, int]], OutboundMessage.select(
                OutboundMessage.status, fn.COUNT(OutboundMessage.id)).group_by(OutboundMessage.status).tuples()):
            outbox.add_metric([status], count)
        yield outbox
        oldest = OutboundMessage.select(fn.MIN(OutboundMessage.created_at)).where(
            OutboundMessage.status == "queued").scalar()
        age = _seconds(now, oldest) if oldest is not None else 0.0
        yield GaugeMetricFamily("liuhen_outbox_oldest_queued_seconds", "Age of the oldest queued outbound mail",
                                value=age)
        deliveries = CounterMetricFamily("liuhen_deliveries", "Delivery attempts, by result", labels=["result"])
        reminders = CounterMetricFamily("liuhen_reminders_sent", "Reminders and escalations sent", labels=["kind"])
        counts = dict(cast(Iterable[tuple[str, int]], Event.select(Event.kind, fn.COUNT(Event.id)).where(
            Event.kind.in_([*_DELIVERY_EVENTS, "reminder", "escalation"])).group_by(Event.kind).tuples()))
        for kind, result in _DELIVERY_EVENTS.items():
            deliveries.add_metric([result], counts.get(kind, 0))
        for kind in ("reminder", "escalation"):
            reminders.add_metric([kind], counts.get(kind, 0))
        yield deliveries
        yield reminders
        overdue = GaugeMetricFamily("liuhen_overdue_items", "Open items past their deadline, by kind",
                                    labels=["kind"])
        late: dict[str, int] = {}
        for item in pending_items(now):
            if item.late:
                kind = item.kind.removesuffix("_late").replace("overdue", "answer")
                late[kind] = late.get(kind, 0) + 1
        for kind in ("answer", "milestone", "action", "dispute"):
            overdue.add_metric([kind], late.get(kind, 0))
        yield overdue


def _seconds(later: object, earlier: object) -> float:
    convert = UTCDateTimeField().python_value  # .tuples() and scalar() skip the conversion
    end, start = convert(later), convert(earlier)
    if end is None or start is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def metrics_text(ctx: Context) -> bytes:
    """The exposition of this process's counters and the database's figures."""
    registry = CollectorRegistry()
    registry.register(_Own())
    registry.register(StoreCollector(ctx))
    return generate_latest(registry)


class _Own(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
