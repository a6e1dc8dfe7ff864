"""peewee models: the durable trace of everything the gateway sees and does.

Times are stored as naive UTC and handed out as aware UTC datetimes (``UTCDateTimeField``),
so SQLite and PostgreSQL agree and nobody compares local with UTC by accident.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from peewee import (
    AutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


class UTCDateTimeField(DateTimeField):
    def db_value(self, value: datetime | None) -> Any:
        if value is not None and value.tzinfo is not None:
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            value = value.replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value: Any) -> datetime | None:
        value = super().python_value(value)
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC)
        return value


# One encoder for every value: json.dumps with options builds a new encoder per call.
_encode_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


class JSONField(TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else _encode_json(value)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(Model):
    pass


class SchemaVersion(BaseModel):
    version = IntegerField()


class InboundMessage(BaseModel):
    """Every mail that reached us, raw, with the terminal state it ended in."""

    id = AutoField()
    received_at = UTCDateTimeField()
    source = CharField(max_length=16)  # smtp | ingest | imap
    queue_id = CharField(max_length=64, default="", index=True)  # the id in our SMTP 250 answer
    envelope_from = CharField(max_length=512, null=True)  # None: unknown (e.g. read from a file)
    envelope_to = JSONField(default=list)
    dedupe_key = CharField(max_length=128, unique=True)
    message_id = CharField(max_length=998, default="")
    raw = BlobField()  # type: ignore[assignment]  # the column shadows Model.raw(sql), which we never call
    size = IntegerField()
    state = CharField(max_length=16, default="received", index=True)  # received|processed|rejected|ignored|error
    reason = TextField(default="")
    subject = TextField(default="")
    from_addr = CharField(max_length=512, default="")
    record_id = IntegerField(null=True, index=True)  # a record's mails (its page, its export)
    processed_at = UTCDateTimeField(null=True)
    # A mail that failed in processing ('error') is tried again later, behind new mail.
    attempts = IntegerField(default=0)
    next_attempt_at = UTCDateTimeField(null=True, index=True)
    # Which processor has taken it up, and until when (several gateways on one database).
    claimed_by = CharField(max_length=128, default="")
    lease_until = UTCDateTimeField(null=True)
    # Who sent it, as far as we can tell: the verdict (pass | fail | none) and its evidence
    # (the Authentication-Results we trusted, or our own DKIM/DMARC check).
    auth = JSONField(default=dict)


URGENT = "高"  # the priority code of an urgent record (high priority: 2-hour answers, the head copied)


class Record(BaseModel):
    id = AutoField()
    ref = CharField(max_length=32, unique=True)  # PRJ-2026-0001
    form = CharField(max_length=32)
    subject = TextField()
    status = CharField(max_length=16, default="open", index=True)  # open|confirming|archived
    priority = CharField(max_length=4)
    lang = CharField(max_length=4, default="zh")
    initiator_email = CharField(max_length=512)
    initiator_name = TextField()
    fields = JSONField()
    due_at = UTCDateTimeField(null=True)
    thread_id = CharField(max_length=998)  # Message-ID every mail of the record refers to
    source_inbound = ForeignKeyField(InboundMessage, null=True)
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        source_inbound_id: int | None
    created_at = UTCDateTimeField(index=True)
    updated_at = UTCDateTimeField()
    result = TextField(default="")  # the outcome in the result confirmation form (结果确认表)
    retro = TextField(default="")  # the initiator's retrospective (复盘总结)
    archive_category = CharField(max_length=32, default="")  # 项目档案库 | 客户沟通档案
    archive_key = TextField(default="")  # 主题+日期, e.g. 智能手表项目-硬件方案评审-20240525
    archived_at = UTCDateTimeField(null=True, index=True)  # the archive by month
    next_reminder_at = UTCDateTimeField(null=True, index=True)  # the retrospective reminder


class Participant(BaseModel):
    id = AutoField()
    record = ForeignKeyField(Record, backref="participants", on_delete="CASCADE")
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        record_id: int
    email = CharField(max_length=512, index=True)  # My work, and who sees what
    name = TextField()
    department = TextField(default="", index=True)  # a head sees their department's records
    role = CharField(max_length=16)  # initiator | recipient | head
    responsibility = TextField(default="")
    external = BooleanField(default=False)
    response_due_at = UTCDateTimeField(null=True)
    responded_at = UTCDateTimeField(null=True)
    response = CharField(max_length=32, default="")
    signed_at = UTCDateTimeField(null=True)  # signed the result, or confirmed a notice
    # The reminder chain (answer, or sign-off once a result is out): when its next stage is due.
    chain_due_at = UTCDateTimeField(null=True)  # the deadline the chain counts from
    next_reminder_at = UTCDateTimeField(null=True, index=True)

    class Meta:
        indexes = ((("record", "email", "role"), True),)


class Milestone(BaseModel):
    id = AutoField()
    record = ForeignKeyField(Record, backref="milestones", on_delete="CASCADE")
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        record_id: int
    position = IntegerField()
    name = TextField()
    due_at = UTCDateTimeField()
    owner_email = CharField(max_length=512, default="", index=True)
    delayed_from = UTCDateTimeField(null=True)  # the date before the last announced delay
    next_reminder_at = UTCDateTimeField(null=True, index=True)
    done_at = UTCDateTimeField(null=True)  # marked done (完成) by its owner or the initiator


class Meeting(BaseModel):
    """An online discussion the initiator scheduled with MEETING; minutes are due after it."""

    id = AutoField()
    record = ForeignKeyField(Record, backref="meetings", on_delete="CASCADE")
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        record_id: int
    organiser_email = CharField(max_length=512)
    starts_at = UTCDateTimeField()
    ends_at = UTCDateTimeField()
    link = TextField(default="")
    agenda = TextField(default="")
    minutes = TextField(default="")
    minutes_at = UTCDateTimeField(null=True)
    next_reminder_at = UTCDateTimeField(null=True, index=True)  # minutes due 1 h after the end
    # What calendars know it by (RFC 5545): the UID stays, SEQUENCE rises with every change.
    uid = CharField(max_length=255, default="")
    sequence = IntegerField(default=0)
    cancelled_at = UTCDateTimeField(null=True)


class MeetingAnswer(BaseModel):
    """An attendee's answer to a meeting invitation, from their calendar (iTIP REPLY)."""

    id = AutoField()
    meeting = ForeignKeyField(Meeting, backref="answers", on_delete="CASCADE")
    participant = ForeignKeyField(Participant, on_delete="CASCADE")
    if TYPE_CHECKING:
        meeting_id: int
        participant_id: int
    answer = CharField(max_length=16)  # ACCEPTED | DECLINED | TENTATIVE
    sequence = IntegerField(default=0)  # the version of the invitation answered
    comment = TextField(default="")
    answered_at = UTCDateTimeField()

    class Meta:
        indexes = ((("meeting", "participant"), True),)


class ActionItem(BaseModel):
    """行动项 from minutes: who does what by when."""

    id = AutoField()
    record = ForeignKeyField(Record, backref="action_items", on_delete="CASCADE")
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        record_id: int
    meeting_id = IntegerField(null=True)
    text = TextField()
    owner_email = CharField(max_length=512, index=True)
    due_at = UTCDateTimeField()
    done_at = UTCDateTimeField(null=True)
    next_reminder_at = UTCDateTimeField(null=True, index=True)


class ProgressRow(BaseModel):
    """One row of a record's progress table (客户需求沟通进度同步表 for customer records)."""

    id = AutoField()
    record = ForeignKeyField(Record, backref="progress_rows", on_delete="CASCADE")
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        record_id: int
    at = UTCDateTimeField()
    author_email = CharField(max_length=512)
    stage = TextField(default="")
    progress = TextField(default="")
    people = TextField(default="")
    next_step = TextField(default="")
    risks = TextField(default="")
    client_visible = BooleanField(default=False)  # internal unless marked for the client (进度（客户可见）：)


class Dispute(BaseModel):
    """A disagreement moved to the dispute area (争议协调区), ruled by the lead or a superior."""

    id = AutoField()
    record = ForeignKeyField(Record, backref="disputes", on_delete="CASCADE")
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        record_id: int
    opened_by = CharField(max_length=512)
    text = TextField()
    opened_at = UTCDateTimeField()
    lead_email = CharField(max_length=512, index=True)  # who is reminded first: the lead (initiator's head)
    ruled_by = CharField(max_length=512, default="")
    ruling = TextField(default="")
    ruled_at = UTCDateTimeField(null=True)
    # A dispute waits for a ruling like any answer: due, reminded, escalated.
    due_at = UTCDateTimeField(null=True)
    next_reminder_at = UTCDateTimeField(null=True, index=True)

    @property
    def owner_email(self) -> str:  # whose deadline it is, for the scheduler's deadline chains
        return self.lead_email


class Attachment(BaseModel):
    """A file that came with a mail; the bytes live content-addressed under data_dir."""

    id = AutoField()
    inbound = ForeignKeyField(InboundMessage, backref="attachments", on_delete="CASCADE")
    if TYPE_CHECKING:  # peewee adds <fk>_id for each foreign key
        inbound_id: int
    record_id = IntegerField(null=True, index=True)
    filename = TextField()
    content_type = CharField(max_length=255)
    size = IntegerField()
    sha256 = CharField(max_length=64)


class Event(BaseModel):
    """The append-only trace: one row per thing that happened."""

    id = AutoField()
    at = UTCDateTimeField(index=True)
    record_id = IntegerField(null=True, index=True)
    inbound_id = IntegerField(null=True)
    kind = CharField(max_length=48)
    actor = CharField(max_length=512, default="")
    data = JSONField(default=dict)


class OutboundMessage(BaseModel):
    """The transactional outbox: written with the change it reports, delivered later."""

    id = AutoField()
    created_at = UTCDateTimeField()
    record_id = IntegerField(null=True, index=True)
    inbound_id = IntegerField(null=True)
    kind = CharField(max_length=48)  # ack | request | head_copy | rejection | delivery_failed …
    lang = CharField(max_length=4, default="zh")
    to_addr = CharField(max_length=512)
    to_name = TextField(default="")
    cc = JSONField(default=list)
    subject = TextField()
    template = CharField(max_length=64)  # mail_templates/<lang>/<template>.*.j2
    context = JSONField(default=dict)  # what the template is rendered with
    text = TextField(default="")  # the rendered parts, as earlier versions kept them after sending;
    html = TextField(default="")  # now a sent mail's parts are read back from raw
    headers = JSONField(default=dict)
    attachments = JSONField(default=list)  # [{filename, content_type, text}] generated files, e.g. an .ics invitation
    message_id = CharField(max_length=998, unique=True)
    status = CharField(max_length=16, default="queued", index=True)  # queued|sending|sent|failed|bounced
    attempts = IntegerField(default=0)
    next_attempt_at = UTCDateTimeField(index=True)
    last_error = TextField(default="")
    raw = BlobField(null=True)  # type: ignore[assignment]  # the bytes as delivered, kept for the trace (shadows Model.raw)
    sent_at = UTCDateTimeField(null=True)
    # The node delivering it and until when: a restart retries only its own expired leases.
    claimed_by = CharField(max_length=128, default="")
    lease_until = UTCDateTimeField(null=True)


class Counter(BaseModel):
    """Sequences for readable record ids (PRJ-2026-0001), one row per prefix and year."""

    name = CharField(max_length=32, primary_key=True)
    value = IntegerField(default=0)


class DigestPreference(BaseModel):
    """Who turned the daily digest off (订阅 / 退订); everyone else gets it."""

    email = CharField(max_length=512, primary_key=True)
    enabled = BooleanField(default=True)
    changed_at = UTCDateTimeField()


class ImapState(BaseModel):
    """Where an IMAP mailbox was read up to: a new UIDVALIDITY means the UIDs start over."""

    mailbox = CharField(max_length=255, primary_key=True)  # user@host/folder
    uidvalidity = BigIntegerField()
    last_uid = BigIntegerField(default=0)


class SearchPending(BaseModel):
    """Records whose search entry is out of date. Indexing a record costs more than the rest
    of processing a request, so it happens when the processor is idle (or before a search)."""

    record_id = IntegerField(primary_key=True)


class SentKey(BaseModel):
    """Keys of mails that must go out at most once (rate-limited rejections, reminders)."""

    key = CharField(max_length=255, primary_key=True)
    created_at = UTCDateTimeField()


class SignIn(BaseModel):
    """A sign-in to the web console asked for by mail: a link and a 6-digit code, good once,
    for a short while, and only in the browser that asked (its nonce cookie). Only hashes of
    the token, the code and the nonce are kept."""

    id = AutoField()
    email = CharField(max_length=512, index=True)
    token_hash = CharField(max_length=64, unique=True)
    code_hash = CharField(max_length=64)
    nonce_hash = CharField(max_length=64, index=True)
    ip = CharField(max_length=64, default="", index=True)
    created_at = UTCDateTimeField(index=True)
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)
    attempts = IntegerField(default=0)  # wrong codes typed


class WebSession(BaseModel):
    """A signed-in browser: the cookie holds the token, we keep its hash."""

    id = AutoField()
    token_hash = CharField(max_length=64, unique=True)
    email = CharField(max_length=512, index=True)
    csrf = CharField(max_length=64)  # sent with every form, compared on every POST
    created_at = UTCDateTimeField()
    last_seen_at = UTCDateTimeField()
    ended_at = UTCDateTimeField(null=True)


class ClientLink(BaseModel):
    """A read-only link to one record's client status page, for one external participant;
    revoked by setting revoked_at (the link's signature names this row)."""

    id = AutoField()
    record = ForeignKeyField(Record, on_delete="CASCADE")
    if TYPE_CHECKING:
        record_id: int
    participant_id = IntegerField()
    created_at = UTCDateTimeField()
    revoked_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("record", "participant_id"), True),)


MODELS: list[type[BaseModel]] = [SchemaVersion, InboundMessage, Record, Participant, Milestone, Meeting,
                                 MeetingAnswer, ActionItem, ProgressRow, Dispute, Attachment, Event, OutboundMessage,
                                 Counter, DigestPreference, ImapState, SearchPending, SentKey, SignIn, WebSession,
                                 ClientLink]
