"""A record as people read it: `liuhen show ID` in text or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.bootstrap import Context
from gateway.trace import sentences
from store.access import Reader
from store.archive import export_record
from store.models import (
    ProgressRow,
    Record,
)
from store.records import record_data


def record_report(ctx: Context, ref: str, lang: str = "", reader: Reader | None = None) -> dict[str, Any] | None:
    """The record as `reader` reads it in `lang` (the record's own language when not given);
    None when there is none or it is not theirs to see (no reader: an operator, who sees all)."""
    data = record_data(ref, reader)
    if data is None:
        return None
    record, people, events = data.record, data.participants, data.events
    lang = lang or record.lang
    form = ctx.forms.get(record.form)
    local = lambda t: t.astimezone(ctx.tz).isoformat(timespec="minutes") if t else None  # noqa: E731
    labels = {f.key: f.label_for(record.lang) for f in form.fields} if form else {}
    names = {p.email: p.name for p in people} | {record.initiator_email: record.initiator_name}
    by_id = {p.id: p for p in people}
    return {
        "id": record.ref,
        "template": record.form,
        "template_name": form.name_for(record.lang) if form else record.form,
        "subject": record.subject,
        "status": record.status,
        "priority": record.priority,
        "initiator": {"name": record.initiator_name, "email": record.initiator_email},
        "due": local(record.due_at),
        "created_at": local(record.created_at),
        "result": record.result,
        "retro": record.retro,
        "archive": {"category": record.archive_category, "key": record.archive_key,
                    "archived_at": local(record.archived_at)},
        "participants": [
            {"email": p.email, "name": p.name, "department": p.department, "role": p.role,
             "responsibility": p.responsibility, "external": p.external,
             "respond_by": local(p.response_due_at), "responded_at": local(p.responded_at),
             "response": p.response or ("pending" if p.role == "recipient" else ""), "signed_at": local(p.signed_at)}
            for p in people],
        "fields": [{"key": k, "label": labels.get(k, k), "value": v} for k, v in record.fields.items()],
        "milestones": [{"name": m.name, "due": local(m.due_at), "owner": m.owner_email, "done_at": local(m.done_at)}
                       for m in data.milestones],
        "meetings": [{"starts": local(m.starts_at), "ends": local(m.ends_at), "organiser": m.organiser_email,
                      "link": m.link, "agenda": m.agenda, "minutes": m.minutes, "minutes_at": local(m.minutes_at),
                      "cancelled_at": local(m.cancelled_at), "version": m.sequence,
                      "answers": [{"email": by_id[a.participant_id].email, "name": by_id[a.participant_id].name,
                                   "answer": a.answer.lower(), "comment": a.comment}
                                  for a in data.meeting_answers if a.meeting_id == m.id]}
                     for m in data.meetings],
        "action_items": [{"text": a.text, "owner": a.owner_email, "due": local(a.due_at), "done_at": local(a.done_at)}
                         for a in data.action_items],
        "progress": [{"at": local(r.at), "author": r.author_email, "stage": r.stage, "progress": r.progress,
                      "next_step": r.next_step, "risks": r.risks, "client_visible": r.client_visible}
                     for r in data.progress],
        "disputes": [{"opened_at": local(d.opened_at), "by": d.opened_by, "text": d.text, "ruled_by": d.ruled_by,
                      "ruling": d.ruling, "ruled_at": local(d.ruled_at)}
                     for d in data.disputes],
        # Signatures with their evidence: when, and what the sender check said.
        "signatures": [{"signer": e.data.get("signer", e.actor), "at": local(e.at), "via": e.data.get("via", ""),
                        "authentication": e.data.get("authentication", {})}
                       for e in events if e.kind == "signed"],
        "events": [{"at": local(e.at), "kind": e.kind, "actor": e.actor, "data": e.data} for e in events],
        # The same events as people read them, in the record's language; deliveries folded.
        "trace": [{"at": at.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M"), "text": text}
                  for at, text in sentences(ctx, lang, events, names)],
        "reminders": [{"at": local(e.at), "kind": e.kind, "chain": e.data.get("chain"), "to": e.data.get("to", ""),
                       "stage": e.data.get("stage", "")} for e in data.reminders],
        # Every mail in, with who sent it as far as we can tell (the sender-authentication
        # verdict and what decided it) and what became of it.
        "inbound": [{"id": m.id, "at": local(m.received_at), "from": m.from_addr, "subject": m.subject,
                     "state": m.state, "reason": m.reason, "auth": m.auth.get("result", ""),
                     "auth_method": m.auth.get("method", ""), "auth_evidence": m.auth.get("evidence", "")}
                    for m in data.inbound],
        "mails": [{"id": m.id, "at": local(m.sent_at or m.created_at), "kind": m.kind, "to": m.to_addr,
                   "to_name": m.to_name, "status": m.status, "subject": m.subject}
                  for m in data.outbound],
    }


def client_view(ctx: Context, record: Record, lang: str) -> dict[str, Any]:
    """What an external client sees of their own request (the 状态 answer, the client page):
    what they asked, the stage, the latest progress marked for them and its next step —
    never our staff, internal progress rows or the trace."""
    shared = (ProgressRow.select().where((ProgressRow.record == record.id) & ProgressRow.client_visible)
              .order_by(ProgressRow.id.desc()).first())
    return {"ref": record.ref, "subject": record.subject,
            "stage": ctx.renderer.phrase(lang, f"client_status.{record.status}"),
            "request": record.fields.get("progress") or record.fields.get("content") or record.subject,
            "latest": shared.progress if shared else "", "next_step": shared.next_step if shared else "",
            "updated": shared.at.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M") if shared else ""}


def export_bundle(ctx: Context, record: Record, out: Path) -> Path:
    """The record's self-contained folder (record.json, timeline.html, mails, attachments)."""
    report = record_report(ctx, record.ref)
    assert report is not None
    return export_record(record, ctx.settings.data_path, out, ctx.tz,
                         lambda data: ctx.renderer.page(record.lang, "export/timeline.html.j2", record=data,
                                                        trace=report["trace"]))


def render_report(r: dict[str, Any]) -> str:
    lines = [f"{r['id']}  {r['subject']}",
             f"  {r['template_name']} · status {r['status']} · priority {r['priority']} · due {r['due']}",
             f"  initiator: {r['initiator']['name']} <{r['initiator']['email']}>"]
    if r["archive"]["key"]:
        lines.append(f"  archived: {r['archive']['category']} / {r['archive']['key']} at {r['archive']['archived_at']}")
    if r["result"]:
        lines.append("  result: " + r["result"].replace("\n", "\n          "))
    if r["retro"]:
        lines.append("  retrospective: " + r["retro"].replace("\n", "\n                 "))
    lines += ["", "Fields:"]
    lines += [f"  {f['label']}: " + f["value"].replace("\n", "\n      ") for f in r["fields"]]
    lines += ["", "Participants:"]
    lines += [f"  {p['role']:<10} {p['name']} <{p['email']}>"
              + (f" — {p['responsibility']}" if p["responsibility"] else "")
              + (f" · respond by {p['respond_by']} · {p['response']}" if p["role"] == "recipient" else "")
              for p in r["participants"]]
    if r["milestones"]:
        lines += ["", "Milestones:"] + [f"  {m['due']}  {m['name']} ({m['owner']})"
                                        + (f" — done {m['done_at']}" if m["done_at"] else "") for m in r["milestones"]]
    if r["meetings"]:
        lines += ["", "Meetings:"]
        for m in r["meetings"]:
            lines.append(f"  {m['starts']} – {m['ends'][-11:]}  {m['link']}  {m['agenda']}"
                         + (f" — cancelled {m['cancelled_at']}" if m["cancelled_at"] else "")
                         + (f" — minutes {m['minutes_at']}" if m["minutes_at"] else ""))
            lines += [f"    {a['answer']:<9} {a['name']} <{a['email']}>"
                      + (f" — {a['comment']}" if a["comment"] else "") for a in m["answers"]]
    if r["action_items"]:
        lines += ["", "Action items:"] + [f"  {a['due']}  {a['text']} ({a['owner']})"
                                          + (f" — done {a['done_at']}" if a["done_at"] else "")
                                          for a in r["action_items"]]
    if r["progress"]:
        lines += ["", "Progress:"] + [f"  {p['at']}  {p['stage']}: {p['progress']}" + (
            f" — next: {p['next_step']}" if p["next_step"] else "") + (" [client]" if p["client_visible"] else "")
            for p in r["progress"]]
    if r["disputes"]:
        lines += ["", "Disputes:"] + [f"  {d['opened_at']}  {d['by']}: {d['text']}" + (
            f"\n      ruled {d['ruled_at']} by {d['ruled_by']}: {d['ruling']}" if d["ruled_at"] else " — open")
            for d in r["disputes"]]
    if r["signatures"]:
        lines += ["", "Signatures:"] + [
            f"  {x['at']}  {x['signer']} via {x['via']}, sender check {x['authentication'].get('result', '?')} "
            f"({x['authentication'].get('method', '')})" for x in r["signatures"]]
    lines += ["", "Trace:"] + [f"  {e['at']}  {e['text']}" for e in r["trace"]]
    if r["reminders"]:
        lines += ["", "Reminders and escalations:"] + [
            f"  {x['at']}  {x['kind']:<10} {x['chain']:<9} {x['stage'] or ''} {x['to']}" for x in r["reminders"]]
    lines += ["", "Mails in:"] + [f"  IN-{m['id']:<6} {m['at']}  {m['state']:<9} {m['from']}"
                                  + (f"  (sender {m['auth']}, {m['auth_method']})" if m["auth"] else "")
                                  for m in r["inbound"]]
    lines += ["", "Mails out:"] + [f"  {m['status']:<8} {m['kind']:<12} {m['to']}  {m['subject']}" for m in r["mails"]]
    return "\n".join(lines)
