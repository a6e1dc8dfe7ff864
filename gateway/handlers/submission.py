"""A new request: choose the form, extract and validate the fields, then either create and
dispatch the record or answer once with every problem."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

from config.directory import Person
from config.forms import FormDef
from gateway.bootstrap import Context
from gateway.checks import Problem, Submission, detect_language, validate
from gateway.handlers import Outcome
from gateway.invitations import REQUEST, Invitee, MeetingFacts, invitation, invitation_file
from gateway.office import AttachedForm, attached_forms
from gateway.outbox import Draft, files_to_send, new_message_id, queue_mails
from gateway.refusals import INVALID_REQUEST, Refusal
from gateway.scheduler import first_reminder
from gateway.tokens import reply_address
from gateway.web.links import client_link
from parsers.dates import find_datetime, parse_datetime
from parsers.fields import extract_fields, find_template_hint, normalize_label
from parsers.forwarded import Forwarded, unwrap
from parsers.mime import ParsedMessage, html_tables, parse_message
from parsers.quotes import new_text
from store.models import URGENT, Attachment, InboundMessage, Meeting, Participant, Record
from store.repositories import (
    NewMilestone,
    NewParticipant,
    answered_inbound,
    create_record,
    files_of,
    next_record_ref,
    our_mail,
    save_attachments,
    schedule_meeting,
)

SUBJECT_TAG = re.compile(r"[\[【]\s*([^\]】]{1,20}?)\s*[\]】]")
# What our rejection put before the subject (mail_templates/*/sender/rejection.subject.j2),
# behind the sender's reply prefixes: the resent request keeps its own subject.
SUBJECT_NOISE = re.compile(r"^\s*(?:(?:re|aw|回复|答复|回覆)\s*[:：]\s*)*"
                           r"(?:请修改后重新提交|Please correct and resend)\s*[:：]\s*", re.IGNORECASE)


def choose_form(ctx: Context, msg: ParsedMessage, template_hint: str, *file_hints: str) -> FormDef | None:
    """At the generic address: a subject tag ([项目协作] / [Project]) or a `模板:` line decides;
    else an attached form file's `模板:` line or title (跨部门项目协作需求沟通单)."""
    wanted = [normalize_label(t) for t in SUBJECT_TAG.findall(msg.subject)]
    wanted += [normalize_label(hint) for hint in (template_hint, *file_hints) if hint]
    for word in wanted:
        for form in ctx.forms.values():
            names = (form.key, form.name, form.name_en, form.scenario, form.scenario_en, *form.subject_tags)
            if word in {normalize_label(n) for n in names}:
                return form
    return None


def handle_submission(ctx: Context, row: InboundMessage, msg: ParsedMessage, form: FormDef | None) -> Outcome:
    lang = detect_language(f"{msg.subject}\n{msg.text}")
    tables = html_tables(msg.html) if msg.html else []
    files = attached_forms(ctx.settings.office, msg.attachments)  # a 沟通单 sent as .docx/.xlsx
    if form is None:
        form = choose_form(ctx, msg, find_template_hint(msg.text, tables), *file_titles(files))
    if form is None:
        raise Refusal(INVALID_REQUEST, problems=[Problem("", "no_template")])
    sender = ctx.directory.by_email(msg.from_addr, msg.from_name)
    # A corrected form sent as a reply to our rejection (or a filled blank form as a reply to
    # the template mail) quotes our mail below it: only the new text is the form.
    answered = our_mail([msg.in_reply_to, *reversed(msg.references)])
    own = new_text(msg.text) if answered else ""
    client, correction = forwarded_client(form, msg, sender), ""
    if client is not None and client.sender_addr == ctx.settings.from_address:
        client = None  # our own mail, quoted below a reply to it, is no client's
    if client is None and answered is not None and answered.kind == "rejection":
        # The fix of a rejected forward: the client's mail is in the mail that was rejected,
        # the reply adds what was missing.
        rejected = answered_inbound(answered, msg.from_addr)
        client = forwarded_client(form, parse_message(rejected), sender) if rejected else None
        correction = own
    if client is not None:
        # Staff forwarded a client's mail: what they wrote above it is the form; the client's
        # own words are the request, and the client takes part without an account.
        values = extract_fields(client.above, [], form) | extract_fields(correction, [], form)
        notes: list[Problem] = []
        values.setdefault("client", f"{client.sender_name} <{client.sender_addr}>".strip())
        values.setdefault("progress", client.body)
        subject = client.subject
    else:
        values, notes = form_values(extract_fields(own or msg.text, tables, form), files, form)
        subject = SUBJECT_NOISE.sub("", msg.subject)
    result = validate(form, values, subject, sender, [(a.filename, a.content_type) for a in msg.attachments],
                      lang, ctx.rules, ctx.directory, ctx.local_now())
    if isinstance(result, list):
        raise Refusal(INVALID_REQUEST, problems=[*notes, *result], form=form, fields=values)
    return dispatch(ctx, row, msg, replace(result, warnings=(*notes, *result.warnings)), client)


BODY_FORM_FIELDS = 2  # a body with this many of the form's labels is a form (one may be a passing word)


def form_values(body: dict[str, str], files: list[AttachedForm],
                form: FormDef) -> tuple[dict[str, str], list[Problem]]:
    """The form's values: from the body when it holds the form, else from the first attached
    file that does — with notes for the sender saying which was read. A mail whose only form
    is in a file that cannot be read is refused for that reason alone, not for every field."""
    read = [(f.filename, extract_fields(f.text, f.tables, form)) for f in files if not f.problem]
    with_form = [(name, values) for name, values in read if values]
    if len(body) >= BODY_FORM_FIELDS or (body and not with_form):
        return body, [Problem("", "form_file_ignored", name, severity="warning") for name, _ in with_form]
    if with_form:
        name, values = with_form[0]
        return values, [Problem("", "form_from_file", name, severity="warning")]
    unread = [Problem("", f"file_{f.problem}", f.filename) for f in files if f.problem]
    if unread:
        raise Refusal(INVALID_REQUEST, problems=unread, form=form, fields={})
    return body, [Problem("", "form_file_empty", name) for name, _ in read]


def file_titles(files: list[AttachedForm]) -> list[str]:
    """What names the form in each readable office file: a `模板:` line, else its first line."""
    hints = []
    for f in files:
        first_line = next((line.strip() for line in f.text.splitlines() if line.strip()), "")
        hints += [hint for hint in (find_template_hint(f.text, f.tables), first_line) if hint]
    return hints


def forwarded_client(form: FormDef, msg: ParsedMessage, sender: Person) -> Forwarded | None:
    """A client's mail forwarded by a member of staff to the customer intake."""
    if form.key != "customer" or sender.external:
        return None
    forward = unwrap(msg)
    if forward is None or not forward.sender_addr or forward.sender_addr == sender.email:
        return None
    return forward


def dispatch(ctx: Context, row: InboundMessage, msg: ParsedMessage, sub: Submission,
             client: Forwarded | None = None) -> Outcome:
    """Create the record with its participants and milestones, and queue one mail per person."""
    now = ctx.clock.now()
    local_now = ctx.local_now()
    form, s = sub.form, ctx.settings
    ref = next_record_ref(form.id_prefix, local_now.year)
    respond_by = ctx.deadline(now, ctx.rules.response_hours.get(sub.priority, 24))
    before = timedelta(hours=ctx.settings.reminders.before_hours)
    people = [NewParticipant(sub.initiator.email, sub.initiator.name, sub.initiator.department, "initiator",
                             external=sub.initiator.external)]
    chain_from, first = None, None
    if form.key == "notice":
        # A notice: 48 h without confirmation escalates, counted from now; the first reminder
        # comes at the answer deadline, or a day before the notice takes effect if sooner.
        chain_from, first = now, respond_by
        effective = parse_datetime(sub.values.get("effective", ""), local_now)
        if effective is not None:
            first = max(min(respond_by, effective - before), now)
    people += [NewParticipant(r.person.email, r.person.name, r.person.department, "recipient",
                              r.responsibility, r.person.external, respond_by, chain_from, first)
               for r in sub.recipients]
    head = ctx.directory.head_of(sub.initiator) if sub.priority == URGENT else None
    if head is not None:
        people.append(NewParticipant(head.email, head.name, head.department, "head"))
    if client is not None:
        people.append(NewParticipant(client.sender_addr, client.sender_name or client.sender_addr.split("@")[0], "",
                                     "external", external=True))
    record, participants = create_record(
        ref=ref, form=form.key, subject=sub.subject, priority=sub.priority, lang=sub.lang,
        initiator_email=sub.initiator.email, initiator_name=sub.initiator.name,
        fields=sub.values, due_at=sub.due_at, thread_id=new_message_id(s.gateway.domain),
        inbound_id=row.id, now=now, participants=people,
        milestones=[NewMilestone(m.name, m.due_at, m.owner.email if m.owner else sub.initiator.email,
                                 first_reminder(m.due_at, before, now)) for m in sub.milestones])
    meeting = None
    if form.key == "notice":
        # A notice of a meeting carries its invitation: no minutes are asked for a notice.
        starts, place = announced_meeting(ctx, sub.values, local_now)
        if starts is not None:
            meeting = schedule_meeting(record.id, sub.initiator.email, starts, starts + timedelta(hours=1), place,
                                       sub.values.get("content", ""), s.gateway.domain, minutes_due=None)
    files = save_attachments(s.data_path, row.id, record.id,
                             ((a.filename, a.content_type, a.payload_chunks()) for a in msg.attachments))
    events = [
        dict(record_id=record.id, inbound_id=row.id, kind="record_created", actor=msg.from_addr,
             data={"ref": ref, "form": form.key, "priority": sub.priority, "attachments": files}),
        *[dict(record_id=record.id, kind="dispatched", actor=s.from_address,
               data={"to": p.email, "role": p.role, "respond_by": p.response_due_at})
          for p in participants if p.role != "initiator"],
    ]
    queue_mails(ctx, _drafts(ctx, record, participants, sub, msg, files_of(row.id), meeting))
    return Outcome("processed", f"record {ref} created", record.id, events)


def announced_meeting(ctx: Context, values: dict[str, str], local_now: datetime) -> tuple[datetime | None, str]:
    """(when, where) of the meeting a notice announces: its 会议时间 and 会议地点 lines, else
    what its content says after 改至 … and 地点：… ([meeting_notice] of config/rules.toml)."""
    content = values.get("content", "")
    starts = parse_datetime(values["meeting_time"], local_now) if values.get("meeting_time") else None
    if starts is None:
        for word in ctx.rules.meeting_moved_to:
            at = content.find(word)
            found = find_datetime(content[at + len(word):], local_now) if at >= 0 else None
            if found is not None:
                starts = found[0]
                break
    place = values.get("location", "")
    for label in () if place else ctx.rules.meeting_location:
        m = re.search(re.escape(label) + r"\s*[:：]?\s*([^，,。;；\n]+)", content)
        if m:
            place = m.group(1).strip()
            break
    return starts, place


def _drafts(ctx: Context, record: Record, participants: list[Participant], sub: Submission,
            msg: ParsedMessage, files: list[Attachment], meeting: Meeting | None) -> list[Draft]:
    s = ctx.settings
    # The request's files go with it to the people who work on it — or, when too big for
    # mail, are named, and kept with the record.
    attached, withheld = files_to_send(ctx, files)
    fmt = "%Y-%m-%d %H:%M"
    recipients = [dict(name=p.name, email=p.email, responsibility=p.responsibility,
                       deadline=p.response_due_at.astimezone(ctx.tz).strftime(fmt))
                  for p in participants if p.role == "recipient"]
    drafts = []
    for p in participants:
        reply_to = reply_address(s.gateway.secret, s.gateway.domain, record.id, p.id)
        # The request's language, or the reader's own where the directory gives one.
        lang = ctx.language_of(p.email, sub.lang)
        summary = dict(ref=record.ref, subject=record.subject, form_name=sub.form.name_for(lang),
                       priority=record.priority, urgent=record.priority == URGENT)
        initiator = dict(name=ctx.name_in(sub.initiator.email, sub.initiator.name, lang), email=sub.initiator.email,
                         department=ctx.directory.department_name(sub.initiator.department, lang))
        # The record's mails share one thread.
        name = ctx.name_in(p.email, p.name, lang)
        record_draft = partial(Draft, record_id=record.id, lang=lang, references=(record.thread_id,), to_name=name)
        if p.role == "initiator":
            warnings = [ctx.renderer.problem_text(lang, w.code, label="", value=w.value, detail=w.detail)
                        for w in sub.warnings]
            sender_is_initiator = msg.from_addr == p.email
            drafts.append(record_draft(
                kind="ack", template="initiator/ack", to_addr=p.email, reply_to=reply_to,
                in_reply_to=msg.message_id if sender_is_initiator else "",
                cc=() if sender_is_initiator else (msg.from_addr,), auto_submitted="auto-replied",
                context=dict(record=summary, form_rows=True, recipients=recipients, warnings=warnings,
                             initiator_name=name, keywords_for="initiator",
                             ask=ctx.renderer.phrase(lang, "ask.initiator_ack"))))
        elif p.role == "recipient":
            deadline = p.response_due_at.astimezone(ctx.tz).strftime(fmt)
            notice = sub.form.key == "notice"  # a notice is confirmed, not agreed to
            invite = (_invitation(ctx, record, meeting, participants, p),) if meeting is not None else ()
            drafts.append(record_draft(
                kind="request", template="recipient/request", to_addr=p.email, reply_to=reply_to,
                attachments=(*attached, *invite),
                context=dict(record=summary, form_rows=True, name=name, responsibility=p.responsibility,
                             deadline=deadline, initiator=initiator, keywords_for="recipient", withheld=withheld,
                             ask=ctx.renderer.phrase(lang, "ask.confirm_notice" if notice else "ask.answer",
                                                     due=deadline),
                             offer="notice" if notice else "")))
        elif p.role == "head":
            drafts.append(record_draft(
                kind="head_copy", template="head/copy", to_addr=p.email, reply_to=reply_to,
                attachments=attached,
                context=dict(record=summary, form_rows=True, name=name, initiator=initiator,
                             recipients=recipients, withheld=withheld,
                             ask=ctx.renderer.phrase(lang, "ask.head_copy"))))
        elif p.role == "external":
            client_lang = detect_language(sub.values.get("progress", ""))
            drafts.append(Draft(
                kind="client_ack", template="external/ack", to_addr=p.email, to_name=p.name, reply_to=reply_to,
                record_id=record.id, lang=client_lang, references=(record.thread_id,),
                context=dict(ref=record.ref, subject=record.subject, name=p.name, owner=initiator,
                             request=sub.values.get("progress", ""),
                             ask=ctx.renderer.phrase(client_lang, "ask.client_ack"),
                             status_link=client_link(ctx, record.id, p.id) if s.web.enabled else "")))
    return drafts


def _invitation(ctx: Context, record: Record, meeting: Meeting, participants: list[Participant],
                copy_for: Participant) -> dict:
    """The calendar invitation of a notice's meeting, in `copy_for`'s copy."""
    invitees = [Invitee(p.id, p.name, p.email) for p in participants if p.role in ("initiator", "recipient")]
    s = ctx.settings
    own = Invitee(copy_for.id, copy_for.name, copy_for.email)
    ics = invitation(MeetingFacts.of(meeting, record), REQUEST, record.initiator_name, invitees, own,
                     s.gateway.secret, s.gateway.domain, meeting.id, ctx.clock.now(), ctx.tz)
    return invitation_file(ics, REQUEST)
