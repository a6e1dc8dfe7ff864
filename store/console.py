"""The web console's reads, named for what a page shows. Every list is limited to what the
reader may see (store/access.py) before it is filtered or paged."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import cast

from peewee import fn

from store.access import Reader, visible_records
from store.db import is_postgres
from store.models import (
    ActionItem,
    Attachment,
    Dispute,
    InboundMessage,
    Milestone,
    OutboundMessage,
    Participant,
    Record,
    UTCDateTimeField,
)
from store.worklist import WorkItem, pending_items

PER_PAGE = 50
PROBLEM_STATES = ("rejected", "ignored", "error")


@dataclass(frozen=True)
class RecordFilter:
    form: str = ""
    status: str = ""  # open | confirming | archived; "" all
    active: bool = False  # not archived (open or confirming)
    department: str = ""  # a participant (the initiator included) in it
    person: str = ""  # an address taking part
    overdue: bool = False  # something on it is late
    created_from: date | None = None
    created_to: date | None = None  # inclusive
    archive: str = ""  # 项目档案库 | 客户沟通档案
    year: int | None = None  # archived in (the archive's browsing)
    month: int | None = None


@dataclass(frozen=True)
class RecordRow:
    id: int
    ref: str
    subject: str
    form: str
    status: str
    priority: str
    initiator_name: str
    created_at: datetime
    archive_key: str
    archived_at: datetime | None


@dataclass(frozen=True)
class Page:
    rows: list = field(default_factory=list)
    total: int = 0
    page: int = 1
    pages: int = 1


def _bounds(day: date, tz) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def record_list(reader: Reader, wanted: RecordFilter, now: datetime, tz, page: int = 1,
                per_page: int = PER_PAGE) -> Page:
    """Records the reader may see, newest first, filtered, one page of them."""
    query = Record.select(Record.id, Record.ref, Record.subject, Record.form, Record.status, Record.priority,
                          Record.initiator_name, Record.created_at, Record.archive_key, Record.archived_at)
    visible = visible_records(reader)
    if visible is not None:
        query = query.where(visible)
    if wanted.form:
        query = query.where(Record.form == wanted.form)
    if wanted.status:
        query = query.where(Record.status == wanted.status)
    if wanted.active:
        query = query.where(Record.status != "archived")
    if wanted.archive:
        query = query.where((Record.archive_category == wanted.archive) & (Record.status == "archived"))
    if wanted.department:
        query = query.where(Record.id.in_(Participant.select(Participant.record)
                                          .where(Participant.department == wanted.department)))
    if wanted.person:
        query = query.where(Record.id.in_(Participant.select(Participant.record)
                                          .where(Participant.email == wanted.person.lower())))
    if wanted.created_from:
        query = query.where(Record.created_at >= _bounds(wanted.created_from, tz))
    if wanted.created_to:
        query = query.where(Record.created_at < _bounds(wanted.created_to, tz) + timedelta(days=1))
    if wanted.year:
        start = datetime(wanted.year, wanted.month or 1, 1, tzinfo=tz)
        end = (datetime(wanted.year + 1, 1, 1, tzinfo=tz) if not wanted.month or wanted.month == 12
               else datetime(wanted.year, wanted.month + 1, 1, tzinfo=tz))
        query = query.where((Record.archived_at >= start) & (Record.archived_at < end))
    if wanted.overdue:
        late = {i.record_id for i in pending_items(now) if i.late}
        query = query.where(Record.id.in_(sorted(late) or [0]))
    total = query.count()
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = []
    for rid, ref, subject, form, status, priority, initiator, created, key, archived in cast(
            Iterable[tuple], query.order_by(Record.id.desc()).paginate(page, per_page).tuples()):
        # .tuples() skips the fields' conversion of times
        rows.append(RecordRow(rid, ref, subject, form, status, priority, initiator, cast(datetime, _time(created)),
                              key, _time(archived)))
    return Page(rows, total, page, pages)


def record_for(reader: Reader, ref: str) -> Record | None:
    """The record named `ref` if the reader may see it — None alike when it does not exist or
    is not theirs, so that guessing IDs learns nothing."""
    query = Record.select().where(Record.ref == ref.upper())
    visible = visible_records(reader)
    if visible is not None:
        query = query.where(visible)
    return query.first()


def my_work(reader: Reader, now: datetime) -> list[WorkItem]:
    return pending_items(now, emails=[reader.email])


def department_work(emails: Iterable[str], now: datetime) -> list[WorkItem]:
    return pending_items(now, emails=[e.lower() for e in emails])


@dataclass(frozen=True)
class BoardRow:
    department: str
    open_records: int
    due_soon: int  # due within the next working day
    overdue: int
    escalated: int  # overdue past the point of escalation
    waiting_info: int  # someone asked for more information and waits
    oldest_overdue: datetime | None


ACTIVE = ("open", "confirming")  # not archived, as the status index can find it


def board_rows(members: dict[str, list[str]], now: datetime, soon: datetime,
               escalate_after: timedelta) -> list[BoardRow]:
    """The board of the departments in `members` (department → its people's addresses), in
    one pass over the open items — read as plain rows from the open records outwards (their
    status index), not as work items: an admin's board of every department counts them all.
    Answers count for the answerer's department, milestones, action items and disputes for
    their owner's; a sign-off is never late (as in store/worklist.py)."""
    department_of = {email.lower(): d for d, emails in members.items() for email in emails}
    tally: dict[str, list] = {d: [0, 0, 0, None] for d in members}  # due soon, overdue, escalated, oldest

    def count(department: str | None, due: datetime | None, late: bool) -> None:
        if department not in tally or due is None:
            return
        entry = tally[department]
        if not late:
            entry[0] += due <= soon
            return
        entry[1] += 1
        entry[2] += due + escalate_after <= now
        entry[3] = due if entry[3] is None or due < entry[3] else entry[3]

    for department, status, signed, answered, answer_due, sign_due in _open_answers():
        if status == "confirming" and signed is None:
            count(department, _time(sign_due), late=False)
        elif answered is None and answer_due is not None:
            due = _time(answer_due)
            count(department, due, late=due is not None and due < now)
    for owner, raw_due in _open_owned():
        due = _time(raw_due)
        count(department_of.get(owner.lower()), due, late=due is not None and due < now)
    names = list(members)
    open_records = dict(_per_department("COUNT(DISTINCT p.\"record_id\")", "", names))
    waiting = dict(_per_department("COUNT(*)", ' AND p."response" = \'need_info\'', names))
    return [BoardRow(d, open_records.get(d, 0), tally[d][0], tally[d][1], tally[d][2], waiting.get(d, 0), tally[d][3])
            for d in names]


_time = UTCDateTimeField().python_value  # raw rows skip the field's conversion


def _open_answers() -> list[tuple]:
    """(department, status, signed, answered, answer due, sign-off due) of every answerer of an
    open record — from the open records (status index) to their participants."""
    p, r = Participant._meta.table_name, Record._meta.table_name
    return _rows(f'SELECT p."department", r."status", p."signed_at", p."responded_at", p."response_due_at", '
                 f'p."chain_due_at" FROM "{r}" AS r {_outwards()} "{p}" AS p ON p."record_id" = r."id" '
                 f'WHERE r."status" IN (\'open\', \'confirming\') AND p."role" IN (\'recipient\', \'external\')')


def _open_owned() -> list[tuple]:
    """(owner, due) of every milestone and action item not done, and dispute not ruled, of an
    open record."""
    r = Record._meta.table_name
    found = []
    for model, owner, pending in ((Milestone, "owner_email", '"done_at" IS NULL'),
                                  (ActionItem, "owner_email", '"done_at" IS NULL'),
                                  (Dispute, "lead_email", '"ruled_at" IS NULL')):
        found += _rows(f'SELECT x."{owner}", x."due_at" FROM "{r}" AS r {_outwards()} "{model._meta.table_name}" AS x '
                       f'ON x."record_id" = r."id" WHERE r."status" IN (\'open\', \'confirming\') AND x.{pending}')
    return found


def _per_department(counted: str, where: str, departments: list[str]) -> list[tuple]:
    """(department, count) over the participants of open records, from the records outwards."""
    if not departments:
        return []
    p, r, param = Participant._meta.table_name, Record._meta.table_name, Record._meta.database.param
    return _rows(f'SELECT p."department", {counted} FROM "{r}" AS r {_outwards()} "{p}" AS p ON p."record_id" = r."id" '
                 f'WHERE r."status" IN (\'open\', \'confirming\') AND p."department" IN '
                 f'({", ".join([param] * len(departments))}){where} GROUP BY p."department"', departments)


def _outwards() -> str:
    """From the open records outwards: SQLite's CROSS JOIN keeps that order (its planner
    otherwise starts from the participants, and reads them all); PostgreSQL plans it itself."""
    return "JOIN" if is_postgres(Record._meta.database) else "CROSS JOIN"


def _rows(sql: str, params: list | None = None) -> list[tuple]:
    return list(Record._meta.database.execute_sql(sql, params or []).fetchall())


def waiting_for_information(department: str) -> list[tuple[Participant, Record]]:
    rows = (Participant.select(Participant, Record).join(Record).where(
        (Record.status != "archived") & (Participant.department == department)
        & (Participant.response == "need_info")).order_by(Participant.responded_at))
    return [(p, p.record) for p in rows]


def archive_months(reader: Reader, category: str) -> list[tuple[int, int, int]]:
    """(year, month, records) of the reader's archived records in `category`, newest first."""
    query = Record.select(Record.archived_at).where((Record.status == "archived")
                                                    & (Record.archive_category == category))
    visible = visible_records(reader)
    if visible is not None:
        query = query.where(visible)
    counts: dict[tuple[int, int], int] = {}
    for row in query:
        if row.archived_at is not None:
            key = (row.archived_at.year, row.archived_at.month)
            counts[key] = counts.get(key, 0) + 1
    return sorted(((y, m, n) for (y, m), n in counts.items()), reverse=True)


def inbox(states: tuple[str, ...] = PROBLEM_STATES, page: int = 1, per_page: int = PER_PAGE) -> Page:
    """Mails that did not become work: rejected, ignored, failed — newest first, without raw."""
    query = (InboundMessage.select(InboundMessage.id, InboundMessage.received_at, InboundMessage.from_addr,
                                   InboundMessage.subject, InboundMessage.state, InboundMessage.reason,
                                   InboundMessage.attempts)
             .where(InboundMessage.state.in_(list(states))))
    total = query.count()
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    return Page(list(query.order_by(InboundMessage.id.desc()).paginate(page, per_page)), total, page, pages)


def inbound_mail(mail_id: int) -> InboundMessage | None:
    return InboundMessage.get_or_none(InboundMessage.id == mail_id)


def record_inbound(record_id: int, mail_id: int) -> InboundMessage | None:
    return InboundMessage.get_or_none((InboundMessage.id == mail_id) & (InboundMessage.record_id == record_id))


def record_outbound(record_id: int, mail_id: int) -> OutboundMessage | None:
    return OutboundMessage.get_or_none((OutboundMessage.id == mail_id) & (OutboundMessage.record_id == record_id))


def record_files(record_id: int) -> list[Attachment]:
    return list(Attachment.select().where(Attachment.record_id == record_id).order_by(Attachment.id))


def record_file(record_id: int, attachment_id: int) -> Attachment | None:
    return Attachment.get_or_none((Attachment.id == attachment_id) & (Attachment.record_id == record_id))


def records_created_on(reader: Reader, day: date, tz, limit: int = 50) -> list[Record]:
    start = _bounds(day, tz)
    query = Record.select().where(((Record.created_at >= start) & (Record.created_at < start + timedelta(days=1)))
                                  | ((Record.archived_at >= start) & (Record.archived_at < start + timedelta(days=1))))
    visible = visible_records(reader)
    if visible is not None:
        query = query.where(visible)
    return list(query.order_by(Record.id.desc()).limit(limit))


def records_with_person(reader: Reader, email: str, limit: int = 50) -> list[Record]:
    query = Record.select().where(Record.id.in_(Participant.select(Participant.record)
                                                .where(Participant.email == email.lower())))
    visible = visible_records(reader)
    if visible is not None:
        query = query.where(visible)
    return list(query.order_by(Record.id.desc()).limit(limit))


def reader_participant(record_id: int, email: str) -> Participant | None:
    """The reader's own participant row on a record (their reply address), key roles first."""
    rows = list(Participant.select().where((Participant.record == record_id) & (Participant.email == email)))
    order = {"recipient": 0, "external": 0, "initiator": 1, "lead": 2, "head": 3}
    return min(rows, key=lambda p: order.get(p.role, 9)) if rows else None


def record_titles(record_ids: list[int]) -> dict[int, tuple[str, str]]:
    """{record id: (subject, form)} — for search hits, which carry neither."""
    if not record_ids:
        return {}
    rows = Record.select(Record.id, Record.subject, Record.form).where(Record.id.in_(record_ids))
    return {r.id: (r.subject, r.form) for r in rows}


def records_by_archive_key(reader: Reader, key: str, limit: int = 20) -> list[Record]:
    query = Record.select().where(fn.LOWER(Record.archive_key).contains(key.lower()))
    visible = visible_records(reader)
    if visible is not None:
        query = query.where(visible)
    return list(query.order_by(Record.id.desc()).limit(limit))
