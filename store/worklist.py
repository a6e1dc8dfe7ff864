"""What is expected of whom: the one query behind the daily digest, the web console's My
work and board, and the 待办 / TODO answer by mail.

An item is something a person is to do on an open record: answer a request, sign a result,
finish a milestone or an action item, rule a dispute. Rows are read as plain tuples, not
model objects — the digest reads every open item at once (at 100k open records, building
model objects cost ~20 s), the console one person's or one department's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from store.models import ActionItem, Dispute, Milestone, Participant, Record, UTCDateTimeField

KEY_ROLES = ("recipient", "external")  # who answers a request and signs its result


@dataclass(frozen=True)
class WorkItem:
    email: str  # whose it is
    record_id: int
    ref: str
    title: str  # the record's subject
    lang: str  # the record's language
    kind: str  # awaiting | overdue | sign | milestone | action | dispute (+ "_late" for the last three)
    label: str  # the milestone, action item or dispute named; "" for an answer or a sign-off
    due: datetime | None
    participant_id: int | None  # their participant row on the record (their reply address), if any

    @property
    def late(self) -> bool:
        return self.kind == "overdue" or self.kind.endswith("_late")


# A time arrives as the database gives it: a datetime, or text from SQLite's raw tuples.
_RawTime = datetime | str | None


def _aware(value: _RawTime) -> datetime | None:
    """A UTC time read through .tuples(), which skips the field's conversion."""
    return UTCDateTimeField().python_value(value) if value is not None else None


def pending_items(now: datetime, *, emails: Iterable[str] | None = None,
                  items_due_before: datetime | None = None, reply_rows: bool = True) -> list[WorkItem]:
    """Every open item — of `emails` only, when given (lower-case addresses). Milestones and
    action items count only when due before `items_due_before`, when given (the digest
    looks three days ahead; My work shows them all). Without `reply_rows` the owners'
    participant rows (their reply addresses) are not looked up: a board only counts."""
    wanted = None if emails is None else sorted(set(emails))
    if wanted == []:
        return []
    items: list[WorkItem] = []
    open_records = Record.status != "archived"
    answers = (Participant.select(Participant.id, Participant.email, Participant.record, Participant.signed_at,
                                  Participant.responded_at, Participant.response_due_at, Participant.chain_due_at,
                                  Record.ref, Record.status, Record.lang, Record.subject)
               .join(Record).where(open_records & Participant.role.in_(KEY_ROLES)))
    if wanted is not None:
        answers = answers.where(Participant.email.in_(wanted))
    for pid, email, record_id, signed, answered, answer_due, sign_due, ref, status, lang, title in cast(
            Iterable[tuple[int, str, int, _RawTime, _RawTime, _RawTime, _RawTime, str, str, str, str]],
            answers.tuples()):
        if status == "confirming" and signed is None:
            items.append(WorkItem(email, record_id, ref, title, lang, "sign", "", _aware(sign_due), pid))
        elif answered is None and answer_due is not None:
            due = _aware(answer_due)
            assert due is not None
            items.append(WorkItem(email, record_id, ref, title, lang, "overdue" if due < now else "awaiting", "",
                                  due, pid))
    owned: list[tuple[str, int, str, str, str, str, _RawTime, str]] = []  # email, record, ref, title, lang, kind…
    for model, kind, name in ((Milestone, "milestone", Milestone.name), (ActionItem, "action", ActionItem.text)):
        query = (model.select(model.owner_email, Record.id, Record.ref, Record.subject, Record.lang, name,
                              model.due_at)
                 .join(Record).where(open_records & model.done_at.is_null()))
        if items_due_before is not None:
            query = query.where(model.due_at <= items_due_before)
        if wanted is not None:
            query = query.where(model.owner_email.in_(wanted))
        owned += [(owner, rid, ref, title, lang, kind, due, label) for owner, rid, ref, title, lang, label, due
                  in cast(Iterable[tuple[str, int, str, str, str, str, _RawTime]], query.tuples())]
    disputes = (Dispute.select(Dispute.lead_email, Record.id, Record.ref, Record.subject, Record.lang, Dispute.text,
                               Dispute.due_at)
                .join(Record).where(open_records & Dispute.ruled_at.is_null()))
    if wanted is not None:
        disputes = disputes.where(Dispute.lead_email.in_(wanted))
    owned += [(lead, rid, ref, title, lang, "dispute", due, text[:60]) for lead, rid, ref, title, lang, text, due
              in cast(Iterable[tuple[str, int, str, str, str, str, _RawTime]], disputes.tuples())]
    rows = _participant_ids({(email, rid) for email, rid, *_ in owned}) if reply_rows else {}
    for email, record_id, ref, title, lang, kind, raw_due, label in owned:
        due = _aware(raw_due)
        late = due is not None and due < now
        items.append(WorkItem(email, record_id, ref, title, lang, f"{kind}_late" if late else kind, label, due,
                              rows.get((email, record_id))))
    return items


def _participant_ids(pairs: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """(email, record) → the person's participant row there (the reply address of an owner)."""
    if not pairs:
        return {}
    records = sorted({rid for _, rid in pairs})
    found: dict[tuple[str, int], int] = {}
    for start in range(0, len(records), 500):
        for pid, rid, email in cast(Iterable[tuple[int, int, str]], Participant.select(
                Participant.id, Participant.record, Participant.email)
                .where(Participant.record.in_(records[start:start + 500])).tuples()):
            if (email, rid) in pairs:
                found.setdefault((email, rid), pid)
    return found


def by_deadline(items: Iterable[WorkItem]) -> list[WorkItem]:
    """Overdue first, then by deadline; undated last."""
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(items, key=lambda i: (not i.late, i.due or far, i.ref))
