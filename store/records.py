"""One record, read whole, for one reader: the single read behind `liuhen show`, the 状态
answer, the archive export's timeline and the console's record page (gateway/report.py
turns it into what people read)."""

from __future__ import annotations

from dataclasses import dataclass

from store.access import Reader, visible_records
from store.models import (
    ActionItem,
    Dispute,
    Event,
    InboundMessage,
    Meeting,
    Milestone,
    OutboundMessage,
    Participant,
    ProgressRow,
    Record,
)


@dataclass(frozen=True)
class RecordData:
    record: Record
    participants: list[Participant]
    milestones: list[Milestone]
    meetings: list[Meeting]
    action_items: list[ActionItem]
    progress: list[ProgressRow]
    disputes: list[Dispute]
    events: list[Event]  # in order; reminders and escalations among them
    inbound: list[InboundMessage]  # without their bytes
    outbound: list[OutboundMessage]  # without their bytes

    @property
    def reminders(self) -> list[Event]:
        return [e for e in self.events if e.kind in ("reminder", "escalation")]


def record_data(ref: str, reader: Reader | None = None) -> RecordData | None:
    """The record named `ref` with everything that belongs to it — None when there is none or
    `reader` may not see it (None: an operator at the command line, who sees all)."""
    query = Record.select().where(Record.ref == ref.upper())
    condition = visible_records(reader) if reader is not None else None
    record = (query.where(condition) if condition is not None else query).first()
    if record is None:
        return None
    rid = record.id
    return RecordData(
        record=record,
        participants=list(Participant.select().where(Participant.record == rid).order_by(Participant.id)),
        milestones=list(Milestone.select().where(Milestone.record == rid).order_by(Milestone.position)),
        meetings=list(Meeting.select().where(Meeting.record == rid).order_by(Meeting.starts_at)),
        action_items=list(ActionItem.select().where(ActionItem.record == rid).order_by(ActionItem.id)),
        progress=list(ProgressRow.select().where(ProgressRow.record == rid).order_by(ProgressRow.id)),
        disputes=list(Dispute.select().where(Dispute.record == rid).order_by(Dispute.id)),
        events=list(Event.select().where(Event.record_id == rid).order_by(Event.id)),
        inbound=list(InboundMessage.select(InboundMessage.id, InboundMessage.received_at, InboundMessage.from_addr,
                                           InboundMessage.subject, InboundMessage.state, InboundMessage.reason,
                                           InboundMessage.auth)
                     .where(InboundMessage.record_id == rid).order_by(InboundMessage.id)),
        outbound=list(OutboundMessage.select(OutboundMessage.id, OutboundMessage.created_at, OutboundMessage.sent_at,
                                             OutboundMessage.kind, OutboundMessage.to_addr, OutboundMessage.to_name,
                                             OutboundMessage.status, OutboundMessage.subject)
                      .where(OutboundMessage.record_id == rid).order_by(OutboundMessage.id)),
    )
