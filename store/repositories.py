"""Store operations named after what the gateway does with them.

They run inside the caller's transaction (``db.atomic()``) and keep the number of
statements per mail small: peewee costs ~0.6 ms per call, more than the SQL itself.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from peewee import (
    JOIN,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    IntegerField,
    IntegrityError,
    Model,
    TextField,
)

from store.models import (
    URGENT,
    Attachment,
    Event,
    InboundMessage,
    Meeting,
    MeetingAnswer,
    Milestone,
    OutboundMessage,
    Participant,
    Record,
    SentKey,
    UTCDateTimeField,
)


@dataclass(frozen=True)
class NewParticipant:
    email: str
    name: str
    department: str
    role: str
    responsibility: str = ""
    external: bool = False
    response_due_at: datetime | None = None  # also when the first reminder is due (unless below)
    chain_due_at: datetime | None = None  # reminders count from here instead of response_due_at
    first_reminder_at: datetime | None = None


@dataclass(frozen=True)
class NewMilestone:
    name: str
    due_at: datetime
    owner_email: str
    first_reminder_at: datetime | None = None


def finish_inbound(inbound_id: int, state: str, reason: str, now: datetime, record_id: int | None = None,
                   subject: str = "", from_addr: str = "") -> bool:
    """Move a mail from 'received' to its terminal state. False when it was no longer
    'received' (another gateway process finished it first): the caller must undo its work.
    (Plain SQL: it runs once per mail and peewee's UPDATE building cost more than the query.)"""
    cursor = _execute('UPDATE "inboundmessage" SET "state" = ?, "reason" = ?, "processed_at" = ?, "record_id" = ?, '
                      '"subject" = ?, "from_addr" = ? WHERE "id" = ? AND "state" = ?',
                      state, reason[:4000], InboundMessage.processed_at.db_value(now), record_id,
                      subject[:2000].replace("\x00", ""),  # PostgreSQL text cannot hold NUL
                      from_addr, inbound_id, "received")
    return cursor.rowcount == 1


def begin_attempts(inbound_ids: list[int]) -> None:
    """Count a processing attempt before it starts, in its own commit: a mail that kills the
    process (memory, a hang) is then known to have been tried, and waits behind new mail."""
    InboundMessage.update(attempts=InboundMessage.attempts + 1).where(
        InboundMessage.id.in_(inbound_ids) & (InboundMessage.state == "received")).execute()


def rearm_failed(now: datetime, limit: int | None) -> list[int]:
    """Failed mails whose next attempt is due go back to 'received'; returns their ids."""
    due = [r.id for r in InboundMessage.select(InboundMessage.id).where(
        (InboundMessage.state == "error") & InboundMessage.next_attempt_at.is_null(False)
        & (InboundMessage.next_attempt_at <= now)).order_by(InboundMessage.next_attempt_at).limit(limit)]
    if not due:
        return []
    InboundMessage.update(state="received", next_attempt_at=None, lease_until=None).where(
        InboundMessage.id.in_(due) & (InboundMessage.state == "error")).execute()
    return due


def retry_inbound(inbound_id: int, states: tuple[str, ...] = ("error",)) -> bool:
    """An operator's retry of a failed mail (or, from the console, a rejected or ignored one
    after a fix): back in line with a fresh count of attempts (a given-up mail has used them
    all); False when the mail is in none of `states`."""
    return bool(InboundMessage.update(state="received", attempts=0, next_attempt_at=None, lease_until=None).where(
        (InboundMessage.id == inbound_id) & InboundMessage.state.in_(list(states))).execute())


def fail_inbound(inbound_id: int, reason: str, now: datetime, retry_at: datetime | None) -> bool:
    """A mail that could not be processed: 'error', kept, tried again at `retry_at` (None:
    given up — only an operator's `liuhen inbox retry` takes it up again)."""
    return InboundMessage.update(state="error", reason=reason[:4000], processed_at=now, next_attempt_at=retry_at).where(
        (InboundMessage.id == inbound_id) & (InboundMessage.state == "received")).execute() == 1


def record_authentication(inbound_id: int, verdict: dict) -> None:
    """Keep who sent a mail, as far as we could tell, with the mail (its `auth` column)."""
    InboundMessage.update(auth=verdict).where(InboundMessage.id == inbound_id).execute()


@dataclass(frozen=True)
class Thread:
    roots: tuple[str, ...]  # the request that opened the record (when it had one), its thread id
    topic: str  # the record's subject
    ref: str
    urgent: bool
    opened_at: datetime  # when the record was created: the conversation's start (Thread-Index)
    form: str
    status: str
    priority: str


def record_threads(record_ids: Iterable[int | None]) -> dict[int | None, Thread]:
    """What every mail of a record refers to, so that mail clients show one conversation."""
    ids = {i for i in record_ids if i is not None}
    if not ids:
        return {}
    rows = cast(Iterable[tuple[int, str, str, str, str, str, datetime | str, str, str]],
                Record.select(Record.id, Record.thread_id, Record.subject, InboundMessage.message_id, Record.ref,
                              Record.priority, Record.created_at, Record.form, Record.status)
                # A record need not come from a stored mail (imported, or built by a benchmark).
                .join(InboundMessage, JOIN.LEFT_OUTER, on=(Record.source_inbound == InboundMessage.id))
                .where(Record.id.in_(ids))
                .tuples())  # peewee's stubs type rows as models
    return {rid: Thread(tuple(i for i in (request_id, thread_id) if i), subject, ref, priority == URGENT,
                        cast(datetime, UTCDateTimeField().python_value(created)),  # .tuples() skips conversion
                        form, status, priority)
            for rid, thread_id, subject, request_id, ref, priority, created, form, status in rows}


def our_mail(message_ids: Iterable[str], record_id: int | None = None) -> OutboundMessage | None:
    """The mail of ours that a reply answers: the first of `message_ids` (In-Reply-To, then
    References from the newest) that we sent — of the record `record_id`, when given."""
    ids = [i for i in message_ids if i]
    if not ids:
        return None
    query = OutboundMessage.select(OutboundMessage.message_id, OutboundMessage.kind, OutboundMessage.context,
                                   OutboundMessage.to_addr, OutboundMessage.inbound_id).where(
        OutboundMessage.message_id.in_(ids))
    if record_id is not None:
        query = query.where(OutboundMessage.record_id == record_id)
    found = {m.message_id: m for m in query}
    return next((found[i] for i in ids if i in found), None)


def answered_inbound(mail: OutboundMessage, sender: str) -> bytes | None:
    """The raw mail of `sender` that our `mail` answered (a rejection's request), or None."""
    if mail.inbound_id is None:
        return None
    row = InboundMessage.get_or_none((InboundMessage.id == mail.inbound_id) & (InboundMessage.from_addr == sender))
    return bytes(row.raw) if row is not None else None


def record_directory_sync(source: str, changes: dict, now: datetime) -> None:
    """The trace of a directory sync: who came, went and changed (gateway/directory_sync.py)."""
    Event.create(at=now, kind="directory_synced", actor=source, data=changes)


def directory_history(limit: int = 20) -> list[Event]:
    """The latest directory syncs, newest first."""
    return list(Event.select().where(Event.kind == "directory_synced").order_by(Event.id.desc()).limit(limit))


def schedule_meeting(record_id: int, organiser_email: str, starts_at: datetime, ends_at: datetime, link: str,
                     agenda: str, domain: str, minutes_due: datetime | None) -> Meeting:
    """A new meeting of a record, with the UID calendars will know it by; `minutes_due`: when
    its organiser is first reminded of the minutes (None: no minutes are asked for)."""
    return Meeting.create(record=record_id, organiser_email=organiser_email, starts_at=starts_at, ends_at=ends_at,
                          link=link, agenda=agenda, uid=f"{uuid.uuid4()}@{domain}", sequence=0,
                          next_reminder_at=minutes_due)


def meeting_attendee(meeting_id: int, participant_id: int) -> tuple[Meeting, Participant, Record] | None:
    """The meeting, the participant invited to it and their record — None unless the
    participant takes part in the meeting's record."""
    meeting = Meeting.get_or_none(Meeting.id == meeting_id)
    participant = Participant.get_or_none(Participant.id == participant_id)
    if meeting is None or participant is None or participant.record_id != meeting.record_id:
        return None
    return meeting, participant, Record.get_by_id(meeting.record_id)


def record_meeting_answer(meeting_id: int, participant_id: int, answer: str, sequence: int, comment: str,
                          now: datetime) -> None:
    """An attendee's latest answer to a meeting replaces their earlier one."""
    MeetingAnswer.insert(meeting=meeting_id, participant=participant_id, answer=answer, sequence=sequence,
                         comment=comment, answered_at=now).on_conflict(
        conflict_target=[MeetingAnswer.meeting, MeetingAnswer.participant],
        update={MeetingAnswer.answer: answer, MeetingAnswer.sequence: sequence, MeetingAnswer.comment: comment,
                MeetingAnswer.answered_at: now}).execute()


def forget_meeting_answers(meeting_id: int) -> None:
    """A meeting moved: the answers were to the old time."""
    MeetingAnswer.delete().where(MeetingAnswer.meeting == meeting_id).execute()


def open_proposal(record_id: int) -> Event | None:
    """The newest milestone proposal (建议调整节点) of the record the initiator has not decided."""
    decided = {e.data.get("proposal") for e in Event.select(Event.data).where(
        (Event.record_id == record_id) & Event.kind.in_(("proposal_accepted", "proposal_declined")))}
    return next((e for e in Event.select().where((Event.record_id == record_id) & (Event.kind == "milestone_proposal"))
                 .order_by(Event.id.desc()) if e.id not in decided), None)


def held_signoffs(record_id: int) -> list[Participant]:
    """Key recipients whose sign-off was held (it failed sender authentication) and who have
    not signed since."""
    held = {e.data.get("participant_id") for e in Event.select(Event.data).where(
        (Event.record_id == record_id) & (Event.kind == "signoff_held"))}
    return [p for p in Participant.select().where((Participant.record == record_id) & Participant.id.in_(list(held)))
            .order_by(Participant.id) if p.signed_at is None] if held else []


def next_record_ref(prefix: str, year: int) -> str:
    """PRJ-2026-0001: a sequence per prefix and year. The UPDATE locks the counter row until
    commit, so concurrent gateways on PostgreSQL hand out distinct numbers."""
    name = f"{prefix}-{year}"
    bump = 'UPDATE "counter" SET "value" = "value" + 1 WHERE "name" = ? RETURNING "value"'
    row = _execute(bump, name).fetchone()
    if row is None:  # the first record of this prefix and year
        _execute('INSERT INTO "counter" ("name", "value") VALUES (?, 0) ON CONFLICT DO NOTHING', name)
        row = _execute(bump, name).fetchone()
    return f"{name}-{row[0]:04d}"


def _execute(sql: str, *params: object):
    """Run a hand-written statement; `?` stands for the database's placeholder."""
    db = InboundMessage._meta.database
    return db.execute_sql(sql.replace("?", db.param), params)


# Fields whose db_value hands a value of this type over unchanged: skip the call (two per value).
_PLAIN_TYPES: dict[type, type] = {CharField: str, TextField: str, IntegerField: int, BigIntegerField: int,
                                  AutoField: int, BooleanField: bool}


def insert_rows(model: type[Model], rows: list[dict], returning: tuple[str, ...] = (),
                skip_conflicts: bool = False) -> list[tuple]:
    """INSERT many rows in one statement, skipping peewee's per-value SQL building.

    This is the per-mail hot path: peewee's generic INSERT generation cost ~0.2 ms per row
    and made up 40% of processing a request. Values still go through each field's
    ``db_value`` (JSON, UTC times, foreign keys), so the rows read back exactly as if peewee
    had written them; fields left out get their model defaults. Every row must have the same keys.
    With ``skip_conflicts`` a row that violates a unique constraint is left out. ``returning``
    names columns to read back from the inserted rows — in no guaranteed order, so include
    what identifies a row.
    """
    if not rows:
        return []
    meta = model._meta
    defaults = {f.name: f.default for f in meta.sorted_fields if f.default is not None and f.name not in rows[0]}
    if defaults:
        rows = [{k: v() if callable(v) else v for k, v in defaults.items()} | row for row in rows]
    fields = [meta.fields[name] for name in rows[0]]
    sql = _insert_sql(model, meta.database.param, tuple(rows[0]), len(rows), returning, skip_conflicts)
    plain = [_PLAIN_TYPES.get(type(f)) for f in fields]
    params = [v if v is None or type(v) is t else f.db_value(v)
              for row in rows for f, t in zip(fields, plain) for v in (row[f.name],)]
    cursor = meta.database.execute_sql(sql, params)
    return [tuple(r) for r in cursor.fetchall()] if returning else []


@lru_cache(maxsize=256)
def _insert_sql(model: type[Model], param: str, names: tuple[str, ...], count: int, returning: tuple[str, ...],
                skip_conflicts: bool) -> str:
    """The INSERT statement for `count` rows of these fields (the same few shapes recur per
    mail). `param` is the database's placeholder: the models may be bound to another database."""
    meta = model._meta
    placeholders = "(" + ", ".join([param] * len(names)) + ")"
    sql = (f'INSERT INTO "{meta.table_name}" ({", ".join(_quoted(meta.fields[n].column_name) for n in names)}) '
           f"VALUES {', '.join([placeholders] * count)}")
    if skip_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(_quoted(meta.fields[n].column_name) for n in returning)
    return sql


def _quoted(name: str) -> str:
    return f'"{name}"'


# Rows per statement in mark_claim_sent: two parameters a row, far below SQLite's 32,766.
_SENT_CHUNK = 500


def mark_claim_sent(claimed_by: str, lease_until: datetime, raw_by_id: dict[int, bytes], now: datetime) -> set[int]:
    """Mark mails of one delivery claim sent, each with the bytes that went out, in one
    statement per few hundred mails instead of one UPDATE each (peewee built each UPDATE in
    ~0.5 ms: a fifth of delivering a mail). Only rows still in that claim are touched — a
    bounce processed first, or a lease that ran out and was claimed again, keeps its row;
    the ids returned are the rows that were marked."""
    t = OutboundMessage
    db = t._meta.database
    marked: set[int] = set()
    items = list(raw_by_id.items())
    for start in range(0, len(items), _SENT_CHUNK):
        chunk = items[start:start + _SENT_CHUNK]
        # A VALUES list names its columns column1, column2 on SQLite and PostgreSQL alike.
        sql = (f'UPDATE "{t._meta.table_name}" AS o SET "status" = \'sent\', "raw" = v.column2, "sent_at" = ?, '
               '"attempts" = o."attempts" + 1, "last_error" = \'\', "lease_until" = NULL '
               f'FROM (VALUES {", ".join(["(?, ?)"] * len(chunk))}) AS v '
               'WHERE o."id" = v.column1 AND o."status" = \'sending\' AND o."claimed_by" = ? '
               'AND o."lease_until" = ? RETURNING "id"')  # unqualified: SQLite's RETURNING takes no alias
        params: list[object] = [t.sent_at.db_value(now)]
        for mail_id, raw in chunk:
            params += [mail_id, t.raw.db_value(raw)]
        params += [claimed_by, t.lease_until.db_value(lease_until)]
        marked.update(row[0] for row in db.execute_sql(sql.replace("?", db.param), params).fetchall())
    return marked


def create_record(*, ref: str, form: str, subject: str, priority: str, lang: str, initiator_email: str,
                  initiator_name: str, fields: dict, due_at: datetime | None, thread_id: str,
                  inbound_id: int, participants: list[NewParticipant], milestones: list[NewMilestone],
                  now: datetime) -> tuple[Record, list[Participant]]:
    values = dict(ref=ref, form=form, subject=subject, priority=priority, lang=lang,
                  initiator_email=initiator_email, initiator_name=initiator_name, fields=fields, due_at=due_at,
                  thread_id=thread_id, source_inbound=inbound_id, created_at=now, updated_at=now)
    [(record_id,)] = insert_rows(Record, [values], returning=("id",))
    people = [dict(record=record_id, email=p.email, name=p.name, department=p.department, role=p.role,
                   responsibility=p.responsibility, external=p.external, response_due_at=p.response_due_at,
                   chain_due_at=p.chain_due_at, next_reminder_at=p.first_reminder_at or p.response_due_at)
              for p in participants]
    inserted = insert_rows(Participant, people, returning=("id", "email", "role"))
    ids = {(email, role): pid for pid, email, role in inserted}
    insert_rows(Milestone, [dict(record=record_id, position=i, name=m.name, due_at=m.due_at,
                                 owner_email=m.owner_email, next_reminder_at=m.first_reminder_at)
                            for i, m in enumerate(milestones)])
    return Record(id=record_id, **values), [Participant(id=ids[(p["email"], p["role"])], **p) for p in people]


def add_events(events: Iterable[dict], now: datetime) -> None:
    insert_rows(Event, [dict(at=now, data={}, actor="", record_id=None, inbound_id=None) | e for e in events])


def bump_daily_count(key: str, day: date) -> int:
    """Count one more of something per day (answers to an address); returns the new count.
    The row is locked until commit, so concurrent gateways count right."""
    name = hashlib.sha1(f"{key}:{day.isoformat()}".encode()).hexdigest()[:32]  # Counter names hold 32
    bump = 'UPDATE "counter" SET "value" = "value" + 1 WHERE "name" = ? RETURNING "value"'
    row = _execute(bump, name).fetchone()
    if row is None:
        _execute('INSERT INTO "counter" ("name", "value") VALUES (?, 0) ON CONFLICT DO NOTHING', name)
        row = _execute(bump, name).fetchone()
    return int(row[0])


def is_participant(address: str, record_id: int | None = None) -> bool:
    """Whether `address` takes part in the record (in any record, when None)."""
    query = Participant.select(Participant.id).where(Participant.email == address.lower())
    if record_id is not None:
        query = query.where(Participant.record == record_id)
    return query.exists()


def claim_sent_key(key: str, now: datetime) -> bool:
    """True the first time a key is claimed; False when a mail with this key already went out
    (or is queued). The unique key makes this hold across processes and restarts."""
    try:
        with SentKey._meta.database.atomic():  # a savepoint: a clash must not abort the caller
            SentKey.create(key=key[:255], created_at=now)
        return True
    except IntegrityError:
        return False


def save_attachments(data_dir: Path, inbound_id: int, record_id: int | None,
                     files: Iterable[tuple[str, str, Iterable[bytes]]]) -> list[str]:
    """Write each file once under attachments/<sha256[:2]>/<sha256> and index it; returns names.
    A file's content comes in pieces and goes to disk as it comes: a 50 MB attachment is
    never held whole in memory."""
    rows, names = [], []
    folder = data_dir / "attachments"
    folder.mkdir(parents=True, exist_ok=True)
    for filename, content_type, chunks in files:
        digest, size = hashlib.sha256(), 0
        # The name is known only at the end: written under a name of its own, then moved.
        fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    digest.update(chunk)
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            path = attachment_path(data_dir, digest.hexdigest())
            if path.exists():
                tmp.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        rows.append(dict(inbound=inbound_id, record_id=record_id, filename=filename,
                         content_type=content_type, size=size, sha256=digest.hexdigest()))
        names.append(filename)
    if rows:
        Attachment.insert_many(rows).execute()
    return names


def signers_of(record_id: int, roles: Iterable[str]) -> list[Participant]:
    """Everyone of `roles` who signs the record (not those who handed their part on), in the
    order they joined."""
    return list(Participant.select().where((Participant.record == record_id) & Participant.role.in_(tuple(roles)) &
                                           (Participant.response != "delegated")).order_by(Participant.id))


def signatures_of(record_id: int, roles: Iterable[str]) -> list[Participant]:
    """The people of `roles` who signed the record, in the order they signed."""
    return list(Participant.select().where((Participant.record == record_id) & Participant.role.in_(tuple(roles)) &
                                           Participant.signed_at.is_null(False)).order_by(Participant.signed_at))


def reminded_since(since: datetime) -> set[tuple[str, str, str]]:
    """(address, record ref, item) of every reminder and escalation queued since `since`."""
    rows = (OutboundMessage.select(OutboundMessage.to_addr, Record.ref, OutboundMessage.context)
            .join(Record, on=(OutboundMessage.record_id == Record.id))
            .where(OutboundMessage.kind.in_(("reminder", "escalation")) & (OutboundMessage.created_at >= since))
            .objects())  # the columns as attributes of one object: to_addr, ref, context
    return {(m.to_addr, m.ref, m.context.get("about", "")) for m in cast(Iterable[Any], rows)}


def files_of(inbound_id: int) -> list[Attachment]:
    """The files that came with one mail, in the order they came."""
    return list(Attachment.select().where(Attachment.inbound == inbound_id).order_by(Attachment.id))


def attachment_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "attachments" / sha256[:2] / sha256
