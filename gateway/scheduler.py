"""The clock: reminders, escalations and digests, each sent exactly once.

A sweep reads what is due from the store — every reminder-able row carries the time its next
stage is due (``next_reminder_at``, indexed), so a sweep with nothing due is one cheap query
per kind, however many records are open. Each mail has a key (what, which row, which
deadline, which stage) written under a unique constraint in the same transaction as the
outbox mail: a crash, a restart or two gateways sweeping the same database never send it
twice, and a gateway that was down for a day sends one mail for the stage it is in now,
not a burst for every stage it missed.

Chains, counted from a deadline D (repeat r = the priority's response window):
* answer / sign-off: reminders at D, D+r, D+2r …; at D+48 h an escalation to the person's
  department head, the initiator copied; then it stops. Any answer stops it at once.
* milestone / action item: a reminder before (D−24 h), an overdue reminder at D (owner and
  initiator), an escalation at D+48 h.
* minutes: due 1 h after the meeting's end, to the organiser; escalation 48 h later.
* retrospective: one reminder 3 days after the record was archived.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from gateway.bootstrap import Context
from gateway.outbox import Draft, queue_mails
from gateway.tokens import reply_address
from gateway.web.links import unsubscribe_link
from mail_templates import said_in
from store.models import (
    ActionItem,
    DigestPreference,
    Dispute,
    Meeting,
    Milestone,
    Participant,
    Record,
    SentKey,
)
from store.repositories import add_events, claim_sent_key, reminded_since, signers_of
from store.worklist import pending_items

log = logging.getLogger(__name__)

BATCH = 500  # rows of one kind per transaction


@dataclass(frozen=True)
class Stage:
    name: str  # reminder | before | overdue | escalation
    number: int  # which repeat of a reminder
    next_at: datetime | None  # when the chain's next stage is due; None: the chain is over


def answer_stage(due: datetime, now: datetime, repeat: timedelta, escalate: timedelta) -> Stage:
    if now >= due + escalate:
        return Stage("escalation", 0, None)
    number = int((now - due) / repeat)
    return Stage("reminder", number, min(due + (number + 1) * repeat, due + escalate))


def deadline_stage(due: datetime, now: datetime, before: timedelta, escalate: timedelta) -> Stage:
    if now >= due + escalate:
        return Stage("escalation", 0, None)
    if now >= due:
        return Stage("overdue", 0, due + escalate)
    return Stage("before", 0, due)


def first_reminder(due: datetime, before: timedelta, now: datetime) -> datetime:
    """When a deadline chain starts: `before` ahead, or now if that has passed."""
    return max(due - before, now)


def sweep(ctx: Context) -> int:
    """Send everything that is due now; returns how many mails were queued. With working
    time on, nothing goes out outside it: what fell due waits for the next working hour."""
    if not ctx.working_now():
        return 0
    sent = 0
    for kind in (_participants, _milestones, _action_items, _disputes, _minutes, _retros):
        while True:
            with ctx.db.atomic():
                done, queued = kind(ctx)
            sent += queued
            if done < BATCH:
                break
    return sent + digests(ctx)


# ------------------------------------------------------------------ the chains

def _send(ctx: Context, key: str, drafts: list[Draft], event: dict) -> int:
    """Queue the mails under their key, once; 0 if another sweep sent them already."""
    if not claim_sent_key(key, ctx.clock.now()):
        return 0
    queue_mails(ctx, drafts)
    add_events([event], ctx.clock.now())
    return len(drafts)


def _mail(ctx: Context, record: Record, to: Participant, headline: str, lines: list[str], kind: str,
          keywords_for: str = "", with_request: bool = False, about: str = "", ask: str = "",
          offer: str = "") -> Draft:
    """A reminder or an escalation; `ask` says what it asks of the reader and `offer` names
    the buttons ([offers] of config/keywords.toml; an escalation's are its kind's).
    `with_request` shows the request itself (the form), for whom it may be the first mail
    about the record. `about` names the item ("answer", "milestone:方案评审" …), so that the
    day's digest does not repeat it."""
    s = ctx.settings
    lang = ctx.language_of(to.email, record.lang)  # the reader's, else the record's
    name = ctx.name_in(to.email, to.name, lang)
    context: dict[str, object] = dict(ref=record.ref, subject=record.subject, name=name,
                                      headline=said_in(headline, lang), lines=[said_in(x, lang) for x in lines],
                                      keywords_for=keywords_for, about=about, ask=said_in(ask, lang), offer=offer)
    if with_request:
        context["form_rows"] = True
    return Draft(kind=kind, template="participant/reminder", lang=lang, to_addr=to.email, to_name=name,
                 record_id=record.id, references=(record.thread_id,),
                 reply_to=reply_address(s.gateway.secret, s.gateway.domain, record.id, to.id), context=context)


def _say(ctx: Context, record: Record, key: str, **values: object) -> str:
    """A sentence of mail_templates/phrases.toml in the record's language (a Phrase, said
    again in the reader's language by _mail)."""
    return ctx.renderer.sentence(record.lang, key, **values)


def _line(ctx: Context, record: Record, label: str, value: str) -> str:
    """`label：value` with the record language's label and colon (a Phrase)."""
    return ctx.renderer.labelled(record.lang, label, value)


def _signature_lines(ctx: Context, record: Record) -> list[str]:
    """Who has signed the result (with when) and who has not yet."""
    people = signers_of(record.id, ("recipient", "external"))
    signed = [f"{p.name} {_local(ctx, p.signed_at)}" for p in people if p.signed_at]
    waiting = [p.name for p in people if not p.signed_at]
    lines = [_line(ctx, record, "signed", ctx.renderer.joined(record.lang, signed))] if signed else []
    return lines + ([_line(ctx, record, "unsigned", ctx.renderer.joined(record.lang, waiting))] if waiting else [])


def _local(ctx: Context, when: datetime) -> str:
    return when.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M")


def _participant_row(record: Record, email: str, name: str = "") -> Participant:
    """The participant to write to; a department head who is not yet one joins as 'head'."""
    where = (Participant.record == record.id) & (Participant.email == email)
    row = Participant.get_or_none(where)
    if row is None:
        # Another gateway may add the same head at the same moment: let the unique key decide.
        Participant.insert(record=record.id, email=email, name=name or email,
                           role="head").on_conflict_ignore().execute()
        row = Participant.get(where)
    return row


def _escalation_targets(ctx: Context, record: Record, person_email: str) -> list[Participant]:
    """The overdue person's department head (the initiator's, for outsiders), and the initiator."""
    person = ctx.directory.by_email(person_email)
    head = ctx.directory.head_of(person) or ctx.directory.head_of(ctx.directory.by_email(record.initiator_email))
    targets = []
    if head is not None and head.email != person_email:
        targets.append(_participant_row(record, head.email, head.name))
    if record.initiator_email not in (person_email, *(t.email for t in targets)):  # a head who initiated: once
        targets.append(_participant_row(record, record.initiator_email, record.initiator_name))
    return targets


def _participants(ctx: Context) -> tuple[int, int]:
    """Answers and sign-offs that are late."""
    now, r = ctx.clock.now(), ctx.settings.reminders
    rows = list(Participant.select(Participant, Record).join(Record).where(
        Participant.next_reminder_at <= now).order_by(Participant.next_reminder_at).limit(BATCH))
    queued = 0
    for p in rows:
        record = p.record
        signoff = record.status == "confirming" and p.signed_at is None
        repeat = timedelta(hours=ctx.rules.response_hours.get(record.priority, 24))
        stage = answer_stage(p.chain_due_at or p.response_due_at, now, repeat,
                             timedelta(hours=r.escalate_after_hours))
        what = "signoff" if signoff else "answer"
        key = f"{what}:{p.id}:{(p.chain_due_at or p.response_due_at):%Y%m%d%H%M}:{stage.name}{stage.number}"
        due = _local(ctx, p.chain_due_at or p.response_due_at)
        # The task again: the person's part, the result to sign, and the request itself.
        task = [_line(ctx, record, "duty", p.responsibility)] if p.responsibility else []
        if signoff and record.result:
            task += [_line(ctx, record, "result", record.result), *_signature_lines(ctx, record)]
        if stage.name == "reminder":
            headline = _say(ctx, record, "reminder.signoff" if signoff else "reminder.answer", due=due)
            drafts = [_mail(ctx, record, p, headline, task, "reminder", "recipient", with_request=True,
                            about="answer", ask=_say(ctx, record, "ask.sign" if signoff else "ask.answer", due=due),
                            offer="signoff" if signoff else "request")]
        else:
            headline = _say(ctx, record, "reminder.signoff_escalation" if signoff else "reminder.answer_escalation",
                            name=p.name)
            lines = [_line(ctx, record, "late_person", f"{p.name} <{p.email}>"), *task,
                     _line(ctx, record, "overdue_since", due),
                     _say(ctx, record, "reminder.escalation_overdue", hours=f"{r.escalate_after_hours:g}")]
            drafts = [_mail(ctx, record, t, headline, lines, "escalation", with_request=True, about="answer",
                            ask=_say(ctx, record, "reminder.head_can"))
                      for t in _escalation_targets(ctx, record, p.email)]
        queued += _send(ctx, key, drafts, dict(record_id=record.id, kind=stage.name, actor=ctx.settings.from_address,
                                               data={"chain": what, "to": p.email, "key": key, "due": due}))
        Participant.update(next_reminder_at=stage.next_at).where(Participant.id == p.id).execute()
    return len(rows), queued


def _deadline_chain(ctx: Context, model, kind: str, hint: str = "reminder.delay_hint") -> tuple[int, int]:
    """Milestones, action items and disputes: before, overdue, escalation."""
    now, r = ctx.clock.now(), ctx.settings.reminders
    rows = list(model.select(model, Record).join(Record).where(
        (model.next_reminder_at <= now) & (Record.status != "archived")).order_by(model.next_reminder_at).limit(BATCH))
    queued = 0
    for item in rows:
        record = item.record
        stage = deadline_stage(item.due_at, now, timedelta(hours=r.before_hours),
                               timedelta(hours=r.escalate_after_hours))
        name = (getattr(item, "name", None) or item.text)[:60]
        owner = _participant_row(record, item.owner_email)
        due = _local(ctx, item.due_at)
        key = f"{kind}:{item.id}:{item.due_at:%Y%m%d%H%M}:{stage.name}"
        headline = _say(ctx, record, f"reminder.{stage.name}", label=_say(ctx, record, f"chain.{kind}"), name=name)
        lines = [_line(ctx, record, "item", name), _line(ctx, record, "due", due)]
        offer = "ruling" if kind == "dispute" else "item"
        if stage.name == "before":
            drafts = [_mail(ctx, record, owner, headline, lines, "reminder", about=f"{kind}:{name}",
                            ask=_say(ctx, record, hint), offer=offer)]
        elif stage.name == "overdue":
            initiator = _participant_row(record, record.initiator_email, record.initiator_name)
            targets = [owner] + ([initiator] if initiator.email != owner.email else [])
            drafts = [_mail(ctx, record, t, headline, lines, "reminder", about=f"{kind}:{name}",
                            ask=_say(ctx, record, hint), offer=offer) for t in targets]
        else:
            lines = [_line(ctx, record, "person", f"{owner.name} <{owner.email}>"), *lines]
            drafts = [_mail(ctx, record, t, headline, lines, "escalation", with_request=True, about=f"{kind}:{name}",
                            ask=_say(ctx, record, "reminder.head_can"))
                      for t in _escalation_targets(ctx, record, owner.email)]
        queued += _send(ctx, key, drafts, dict(record_id=record.id, kind=stage.name if stage.name == "escalation"
                                               else "reminder", actor=ctx.settings.from_address,
                                               data={"chain": kind, "item": name, "stage": stage.name, "key": key}))
        model.update(next_reminder_at=stage.next_at).where(model.id == item.id).execute()
    return len(rows), queued


def _disputes(ctx: Context) -> tuple[int, int]:
    return _deadline_chain(ctx, Dispute, "dispute", "reminder.ruling_hint")


def _milestones(ctx: Context) -> tuple[int, int]:
    return _deadline_chain(ctx, Milestone, "milestone")


def _action_items(ctx: Context) -> tuple[int, int]:
    return _deadline_chain(ctx, ActionItem, "action")


def _minutes(ctx: Context) -> tuple[int, int]:
    """Minutes are due an hour after the meeting; an organiser who does not send them is
    reminded, and 48 hours later their head is told."""
    now, r = ctx.clock.now(), ctx.settings.reminders
    rows = list(Meeting.select(Meeting, Record).join(Record).where(
        (Meeting.next_reminder_at <= now) & Meeting.minutes_at.is_null()).limit(BATCH))
    queued = 0
    for meeting in rows:
        record = meeting.record
        due = meeting.ends_at + timedelta(hours=r.minutes_due_hours)
        escalate = now >= due + timedelta(hours=r.escalate_after_hours)
        organiser = _participant_row(record, meeting.organiser_email)
        key = f"minutes:{meeting.id}:{'escalation' if escalate else 'reminder'}"
        headline = _say(ctx, record, "reminder.minutes_escalation" if escalate else "reminder.minutes")
        lines = [_line(ctx, record, "meeting", _local(ctx, meeting.starts_at)),
                 _line(ctx, record, "due", _local(ctx, due))]
        if escalate:
            lines.append(_line(ctx, record, "person", f"{organiser.name} <{organiser.email}>"))
            drafts = [_mail(ctx, record, t, headline, lines, "escalation", ask=_say(ctx, record, "reminder.head_can"))
                      for t in _escalation_targets(ctx, record, organiser.email)]
        else:
            drafts = [_mail(ctx, record, organiser, headline, lines, "reminder",
                            ask=_say(ctx, record, "reminder.minutes_hint"), offer="minutes")]
        queued += _send(ctx, key, drafts, dict(record_id=record.id, kind="escalation" if escalate else "reminder",
                                               actor=ctx.settings.from_address, data={"chain": "minutes", "key": key}))
        Meeting.update(next_reminder_at=None if escalate else due + timedelta(hours=r.escalate_after_hours)).where(
            Meeting.id == meeting.id).execute()
    return len(rows), queued


def _retros(ctx: Context) -> tuple[int, int]:
    now = ctx.clock.now()
    rows = list(Record.select().where((Record.next_reminder_at <= now) & (Record.retro == "")).limit(BATCH))
    queued = 0
    for record in rows:
        initiator = _participant_row(record, record.initiator_email, record.initiator_name)
        drafts = [_mail(ctx, record, initiator, _say(ctx, record, "reminder.retro"), [], "reminder",
                        ask=_say(ctx, record, "reminder.retro_hint"), offer="retro")]
        queued += _send(ctx, f"retro:{record.id}", drafts, dict(record_id=record.id, kind="reminder",
                                                                actor=ctx.settings.from_address,
                                                                data={"chain": "retro"}))
        Record.update(next_reminder_at=None).where(Record.id == record.id).execute()
    return len(rows), queued


# ------------------------------------------------------------------ digests

def digests(ctx: Context) -> int:
    """Once a day at the configured local time: each person with something pending gets one
    digest; department heads also get the overdue items of their department.

    The pending items are read without holding the write lock (at 100k open records that
    takes seconds); mails are then queued in small transactions, each person's under their
    own key, so a run that fails half-way is simply completed by the next sweep. The day is
    marked done only at the end."""
    local = ctx.local_now()
    hour, minute = map(int, ctx.settings.reminders.digest_time.split(":"))
    day = local.date().isoformat()
    if local.time() < time(hour, minute) or SentKey.get_or_none(SentKey.key == f"digest-run:{day}"):
        return 0
    queued = 0
    drafts = _digest_drafts(ctx, day)
    for start in range(0, len(drafts), DIGEST_BATCH):
        with ctx.db.atomic():
            batch = [d for key, d in drafts[start:start + DIGEST_BATCH] if claim_sent_key(key, ctx.clock.now())]
            queue_mails(ctx, batch)
            queued += len(batch)
    claim_sent_key(f"digest-run:{day}", ctx.clock.now())
    return queued


DIGEST_BATCH = 200


@dataclass(frozen=True)
class _Pending:
    ref: str
    kind: str  # a key of the [digest] phrases
    label: str
    when: str  # local time, "" when none
    reply: str  # the reader's reply address for the record, "" when none
    lang: str  # the record's language
    title: str  # the record's subject

    @property
    def late(self) -> bool:
        return self.kind == "overdue" or self.kind.endswith("_late")

    @property
    def about(self) -> str:
        """The item as a reminder names it (see _mail)."""
        if self.kind in ("sign", "overdue", "awaiting"):
            return "answer"
        return f"{self.kind.removesuffix('_late')}:{self.label[:60]}"

    def what(self, ctx: Context, lang: str) -> str:
        return ctx.renderer.phrase(lang, f"digest.{self.kind}", label=self.label)


def _digest_drafts(ctx: Context, day: str) -> list[tuple[str, Draft]]:
    """(key, mail) for everyone with something pending (store/worklist.py, the query My work
    and the board read too); milestones and action items three days ahead."""
    now = ctx.clock.now()
    s = ctx.settings
    items: dict[str, list[_Pending]] = {}  # email → what waits for them
    for item in pending_items(now, items_due_before=now + timedelta(days=3)):
        reply = (reply_address(s.gateway.secret, s.gateway.domain, item.record_id, item.participant_id)
                 if item.participant_id else "")
        items.setdefault(item.email, []).append(_Pending(
            item.ref, item.kind, item.label, _local(ctx, item.due) if item.due else "", reply, item.lang, item.title))
    overdue_by_department: dict[str, list[tuple[str, _Pending]]] = {}  # department → (whose, item)
    for email, pending in items.items():
        person = ctx.directory.by_email(email)
        if person.department:
            overdue_by_department.setdefault(person.department, []).extend(
                (person.name, item) for item in pending if item.late)
    off = {d.email for d in DigestPreference.select().where(DigestPreference.enabled == False)}  # noqa: E712
    # One mail per person per moment: what someone was reminded of or escalated about today
    # (this sweep's chains ran first) is not told them again in the digest.
    midnight = ctx.local_now().replace(hour=0, minute=0, second=0, microsecond=0)
    told = reminded_since(midnight)
    drafts = []
    for email, all_pending in items.items():
        pending = [i for i in all_pending if (email, i.ref, i.about) not in told]
        if pending and email not in off:
            lang = ctx.language_of(email, _reader_language(pending))
            entries = [(i.ref, i.what(ctx, lang), i.when, i.reply, i.title) for i in pending]
            drafts.append((f"digest:{email}:{day}", _digest(ctx, email, entries, day, lang, head=False)))
    for department in ctx.directory.departments:
        late = [(whose, i) for whose, i in overdue_by_department.get(department.name, ())
                if (department.head, i.ref, i.about) not in told]
        if late and department.head not in off:
            lang = ctx.language_of(department.head, _reader_language([item for _, item in late]))
            entries = [(i.ref, ctx.renderer.phrase(lang, "digest.whose", whose=whose, what=i.what(ctx, lang)),
                        i.when, "", i.title) for whose, i in late]
            drafts.append((f"digest-head:{department.head}:{day}",
                           _digest(ctx, department.head, entries, day, lang, head=True)))
    return drafts


def _reader_language(pending: list[_Pending]) -> str:
    """For someone the directory gives no language: English when all their pending records
    are English, else Chinese."""
    return "en" if all(item.lang == "en" for item in pending) else "zh"


def _digest(ctx: Context, email: str, entries: list[tuple[str, str, str, str, str]], day: str, lang: str,
            head: bool) -> Draft:
    person = ctx.directory.by_email(email)
    domain = ctx.settings.gateway.domain
    unsubscribe = f"<mailto:requests@{domain}?subject=DIGEST%20OFF>"
    headers = {"List-Unsubscribe": unsubscribe}
    if ctx.settings.web.enabled:  # RFC 8058: one click in the mail client, no mail to write
        headers = {"List-Unsubscribe": f"<{unsubscribe_link(ctx, email)}>, {unsubscribe}",
                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return Draft(kind="digest_head" if head else "digest", template="participant/digest", lang=lang,
                 to_addr=email, to_name=person.name_for(lang), extra_headers=headers,
                 context=dict(name=person.name_for(lang), day=day, head=head, entries=sorted(entries)))


def digest_preference(email: str, enabled: bool, now: datetime) -> None:
    DigestPreference.insert(email=email.lower(), enabled=enabled, changed_at=now).on_conflict(
        conflict_target=[DigestPreference.email],
        update={DigestPreference.enabled: enabled, DigestPreference.changed_at: now}).execute()
