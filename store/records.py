"""One record, read whole, for one reader: the single read behind `liuhen show`, the 状态
answer, the archive export's timeline and the console's record page (gateway/report.py
turns it into what people read)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from peewee import JOIN

from store.access import Reader, visible_records
from store.models import (
    ActionItem,
    Dispute,
    Event,
    InboundMessage,
    Meeting,
    MeetingAnswer,
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
    meeting_answers: list[MeetingAnswer]  # the attendees' latest answers, by meeting
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
        meeting_answers=list(MeetingAnswer.select().join(Meeting).where(Meeting.record == rid)
                             .order_by(MeetingAnswer.meeting, MeetingAnswer.participant)),
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


@dataclass(frozen=True)
class FormSource:
    """What a record's mails show of its form (gateway/form_rows.py)."""
    form: str
    fields: dict
    priority: str
    initiator_name: str
    initiator_email: str
    initiator_department: str  # "" when the initiator has none (a client)


def form_sources(record_ids: Iterable[int]) -> dict[int, FormSource]:
    """The forms of many records in one query: a delivery batch's mails of a few dozen records."""
    initiator = Participant.alias()
    query = (Record.select(Record.id, Record.form, Record.fields, Record.priority, Record.initiator_name,
                           Record.initiator_email, initiator.department)
             .join(initiator, JOIN.LEFT_OUTER,
                   on=(initiator.record == Record.id) & (initiator.role == "initiator"))
             .where(Record.id.in_(list(set(record_ids)))).order_by(Record.id, initiator.id).tuples())
    found: dict[int, FormSource] = {}
    for row in cast(Iterable[tuple], query):
        record_id, form, fields, priority, name, email, department = row
        found.setdefault(record_id, FormSource(form, fields, priority, name, email, department or ""))
    return found
