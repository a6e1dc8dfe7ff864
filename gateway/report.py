"""A record as people read it: `liuhen show ID` in text or JSON."""

from __future__ import annotations

from typing import Any

from gateway.bootstrap import Context
from gateway.scheduler import reminders_of
from gateway.trace import sentences
from store.models import Event, InboundMessage, Milestone, OutboundMessage, Participant, Record


def record_report(ctx: Context, ref: str, lang: str = "") -> dict[str, Any] | None:
    """The record for a reader in `lang` (the record's own language when not given)."""
    record = Record.get_or_none(Record.ref == ref.upper())
    if record is None:
        return None
    lang = lang or record.lang
    form = ctx.forms.get(record.form)
    local = lambda t: t.astimezone(ctx.tz).isoformat(timespec="minutes") if t else None  # noqa: E731
    labels = {f.key: f.label_for(record.lang) for f in form.fields} if form else {}
    people = list(Participant.select().where(Participant.record == record.id).order_by(Participant.id))
    events = list(Event.select().where(Event.record_id == record.id).order_by(Event.id))
    names = {p.email: p.name for p in people} | {record.initiator_email: record.initiator_name}
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
                       for m in Milestone.select().where(Milestone.record == record.id).order_by(Milestone.position)],
        "events": [{"at": local(e.at), "kind": e.kind, "actor": e.actor, "data": e.data} for e in events],
        # The same events as people read them, in the record's language; deliveries folded.
        "trace": [{"at": at.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M"), "text": text}
                  for at, text in sentences(ctx, lang, events, names)],
        "reminders": [{"at": local(e.at), "kind": e.kind, "chain": e.data.get("chain"), "to": e.data.get("to", ""),
                       "stage": e.data.get("stage", "")} for e in reminders_of(record.id)],
        # Every mail in, with who sent it as far as we can tell (the sender-authentication
        # verdict and what decided it) and what became of it.
        "inbound": [{"id": m.id, "at": local(m.received_at), "from": m.from_addr, "state": m.state,
                     "reason": m.reason, "auth": m.auth.get("result", ""), "auth_method": m.auth.get("method", ""),
                     "auth_evidence": m.auth.get("evidence", "")}
                    for m in InboundMessage.select(InboundMessage.id, InboundMessage.received_at,
                                                   InboundMessage.from_addr, InboundMessage.state,
                                                   InboundMessage.reason, InboundMessage.auth)
                    .where(InboundMessage.record_id == record.id).order_by(InboundMessage.id)],
        "mails": [{"kind": m.kind, "to": m.to_addr, "status": m.status, "subject": m.subject}
                  for m in OutboundMessage.select().where(OutboundMessage.record_id == record.id)
                  .order_by(OutboundMessage.id)],
    }


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
    lines += ["", "Trace:"] + [f"  {e['at']}  {e['text']}" for e in r["trace"]]
    if r["reminders"]:
        lines += ["", "Reminders and escalations:"] + [
            f"  {x['at']}  {x['kind']:<10} {x['chain']:<9} {x['stage'] or ''} {x['to']}" for x in r["reminders"]]
    lines += ["", "Mails in:"] + [f"  IN-{m['id']:<6} {m['at']}  {m['state']:<9} {m['from']}"
                                  + (f"  (sender {m['auth']}, {m['auth_method']})" if m["auth"] else "")
                                  for m in r["inbound"]]
    lines += ["", "Mails out:"] + [f"  {m['status']:<8} {m['kind']:<12} {m['to']}  {m['subject']}" for m in r["mails"]]
    return "\n".join(lines)
