"""The archive: closing a record into 项目档案库 / 客户沟通档案 under its key 主题+日期, keeping
the search index current, and exporting a self-contained bundle of one record."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from store import search
from store.models import (
    Attachment,
    Event,
    InboundMessage,
    OutboundMessage,
    Record,
    SearchPending,
)
from store.repositories import attachment_path, insert_rows


def archive_key(subject: str, when: datetime, tz: ZoneInfo) -> str:
    """主题+日期, e.g. 智能手表项目-硬件方案评审-20240525 (the archive is filed by subject + date)."""
    safe = "".join(ch for ch in subject if ch not in '/\\:*?"<>|').strip()
    return f"{safe}-{when.astimezone(tz).strftime('%Y%m%d')}"


def archive_record(record: Record, category: str, now: datetime, tz: ZoneInfo) -> None:
    key = archive_key(record.subject, now, tz)
    Record.update(status="archived", archive_category=category, archive_key=key, archived_at=now,
                  updated_at=now).where(Record.id == record.id).execute()
    record.status, record.archive_category, record.archive_key, record.archived_at = "archived", category, key, now


def mark_for_index(record_ids: Iterable[int]) -> None:
    """Note that these records' searchable text changed; `index_pending` catches up."""
    insert_rows(SearchPending, [{"record_id": i} for i in sorted(record_ids)], skip_conflicts=True)


def index_pending(limit: int = 200) -> int:
    """Put the searchable text of up to `limit` changed records — subject, every field,
    comments, progress, minutes, result, retrospective, attachment names — into the search
    index; returns how many."""
    db = Record._meta.database
    with db.atomic():
        ids = [p.record_id for p in SearchPending.select().order_by(SearchPending.record_id).limit(limit)]
        if not ids:
            return 0
        records = list(Record.select().where(Record.id.in_(ids)))
        parts = _search_parts_of(records)
        search.index_records(db, [search.IndexEntry(r.id, r.ref, r.status, r.archive_key, parts[r.id])
                                  for r in records])
        SearchPending.delete().where(SearchPending.record_id.in_(ids)).execute()
    return len(ids)


_TEXT_EVENTS = ("comment", "feedback", "progress", "minutes", "dispute", "ruling")


def search_parts(record: Record) -> dict[str, str]:
    """The searchable text of one record, by part (what `index_pending` puts in the index)."""
    return _search_parts_of([record])[record.id]


def _search_parts_of(records: list[Record]) -> dict[int, dict[str, str]]:
    """search_parts for many records in three queries, whatever their number."""
    ids = [r.id for r in records]
    # keyed as the models type their (nullable) record_id; every key is one of `ids`
    texts: dict[int | None, dict[str, list[str]]] = {i: {kind: [] for kind in _TEXT_EVENTS} for i in ids}
    for event in (Event.select(Event.record_id, Event.kind, Event.data)
                  .where(Event.record_id.in_(ids) & Event.kind.in_(list(_TEXT_EVENTS))).order_by(Event.id)):
        texts[event.record_id][event.kind].append(event.data.get("text") or event.data.get("progress") or "")
    names: dict[int | None, list[str]] = {i: [] for i in ids}
    for a in (Attachment.select(Attachment.record_id, Attachment.filename)
              .where(Attachment.record_id.in_(ids)).order_by(Attachment.id)):
        names[a.record_id].append(a.filename)
    out = {}
    for record in records:
        parts = {"subject": record.subject}
        for key, value in (record.fields or {}).items():
            parts[f"field:{key}"] = value
        parts.update({kind: "\n".join(t for t in values if t) for kind, values in texts[record.id].items()
                      if any(values)})
        if record.result:
            parts["result"] = record.result
        if record.retro:
            parts["retro"] = record.retro
        if names[record.id]:
            parts["attachment"] = "\n".join(names[record.id])
        out[record.id] = parts
    return out


def export_record(record: Record, data_dir: Path, out: Path, tz: ZoneInfo, timeline: Callable[[dict], str]) -> Path:
    """Write record.json, timeline.html (`timeline` renders it from the record's data), every
    raw mail in and out (.eml) and the attachments into out/<ref>/; returns that folder. The
    record is read as `show` and the console read it (store/records.py)."""
    from store.records import record_data

    whole = record_data(record.ref)
    assert whole is not None
    folder = out / record.ref
    (folder / "mails").mkdir(parents=True, exist_ok=True)
    (folder / "attachments").mkdir(exist_ok=True)
    local = lambda t: t.astimezone(tz).isoformat(timespec="minutes") if t else None  # noqa: E731
    events = whole.events
    inbound_ids = {e.inbound_id for e in events if e.inbound_id} | {record.source_inbound_id} | {
        m.id for m in whole.inbound}
    data = {
        "id": record.ref, "template": record.form, "subject": record.subject, "status": record.status,
        "priority": record.priority, "initiator": {"name": record.initiator_name, "email": record.initiator_email},
        "fields": record.fields, "result": record.result, "retro": record.retro,
        "archive": {"category": record.archive_category, "key": record.archive_key,
                    "archived_at": local(record.archived_at)},
        "created_at": local(record.created_at), "due": local(record.due_at),
        "participants": [{"name": p.name, "email": p.email, "role": p.role, "responsibility": p.responsibility,
                          "response": p.response, "signed_at": local(p.signed_at)} for p in whole.participants],
        "milestones": [{"name": m.name, "due": local(m.due_at), "owner": m.owner_email,
                        "delayed_from": local(m.delayed_from), "done_at": local(m.done_at)} for m in whole.milestones],
        "meetings": [{"starts": local(m.starts_at), "link": m.link, "minutes": m.minutes} for m in whole.meetings],
        "action_items": [{"text": a.text, "owner": a.owner_email, "due": local(a.due_at), "done_at": local(a.done_at)}
                         for a in whole.action_items],
        "progress": [{"at": local(r.at), "stage": r.stage, "progress": r.progress, "next_step": r.next_step,
                      "risks": r.risks, "author": r.author_email, "client_visible": r.client_visible}
                     for r in whole.progress],
        "disputes": [{"opened_at": local(d.opened_at), "by": d.opened_by, "text": d.text, "ruling": d.ruling,
                      "ruled_by": d.ruled_by, "ruled_at": local(d.ruled_at)} for d in whole.disputes],
        "events": [{"at": local(e.at), "kind": e.kind, "actor": e.actor, "data": e.data} for e in events],
    }
    (folder / "record.json").write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    for inbound in InboundMessage.select().where(InboundMessage.id.in_([i for i in inbound_ids if i])):
        (folder / "mails" / f"in-{inbound.id:06d}.eml").write_bytes(bytes(inbound.raw))
    for outbound in OutboundMessage.select().where((OutboundMessage.record_id == record.id) &
                                                   OutboundMessage.raw.is_null(False)):
        assert outbound.raw is not None  # the query skips mails without raw
        (folder / "mails" / f"out-{outbound.id:06d}.eml").write_bytes(bytes(outbound.raw))
    for item in Attachment.select().where(Attachment.record_id == record.id):
        shutil.copyfile(attachment_path(data_dir, item.sha256), folder / "attachments" / f"{item.id}-{item.filename}")
    (folder / "timeline.html").write_text(timeline(data), encoding="utf-8")
    return folder
