"""What each reply keyword does to a record. One function per action; each reads the new
text of the reply, changes the record, adds trace events and queues the mails it causes —
or raises ``Refusal`` and nothing happens. They run inside the pipeline's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from config.directory import Person
from config.forms import Keyword
from config.settings import ConfigError
from gateway.authentication import Verdict, sender_verdict
from gateway.bootstrap import Context
from gateway.checks import CJK
from gateway.invitations import CANCEL, REQUEST, Invitee, MeetingFacts, invitation, invitation_file
from gateway.outbox import Draft
from gateway.refusals import Refusal
from gateway.scheduler import first_reminder
from gateway.tokens import reply_address
from gateway.web.links import client_link
from mail_templates import Phrase, said_in
from parsers.dates import find_datetime
from parsers.fields import labelled_values
from parsers.mime import ParsedMessage
from store.archive import archive_record
from store.models import (
    ActionItem,
    Dispute,
    Event,
    InboundMessage,
    Meeting,
    Milestone,
    Participant,
    ProgressRow,
    Record,
)
from store.repositories import (
    forget_meeting_answers,
    held_signoffs,
    open_proposal,
    schedule_meeting,
    signatures_of,
)

URL = re.compile(r"https?://\S+")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
KEY_ROLES = ("recipient", "external")  # who signs the result


@dataclass
class Act:
    """One reply being carried out: who, on which record, with what text — and what it causes."""

    ctx: Context
    record: Record
    participant: Participant
    text: str
    msg: ParsedMessage
    row: InboundMessage
    via: str
    token: str
    events: list[dict] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # told to the sender in the receipt
    said: str = ""  # the whole new text of the mail (`text` is what follows its keyword)
    answered_about: int | None = None  # the participant the answered mail was about (a question's asker)

    @property
    def lang(self) -> str:
        return self.record.lang

    @property
    def now(self) -> datetime:
        return self.ctx.clock.now()

    def local(self, when: datetime) -> str:
        return when.astimezone(self.ctx.tz).strftime("%Y-%m-%d %H:%M")

    def event(self, kind: str, **data: object) -> None:
        self.events.append(dict(record_id=self.record.id, inbound_id=self.row.id, kind=kind,
                                actor=self.participant.email, data=data))

    def participants(self, *roles: str, exclude_sender: bool = True, clients: bool = False) -> list[Participant]:
        """The record's people, once each. External clients only when named by role or asked
        for (`clients`): they receive what is addressed to them — acknowledgements, questions
        to them, the result to confirm, the closing, progress marked for them — never the
        internal traffic."""
        people = Participant.select().where(Participant.record == self.record.id).order_by(Participant.id)
        seen, chosen = set(), []
        for p in people:
            is_sender = exclude_sender and p.email == self.participant.email
            internal_only = not roles and not clients and (p.external or p.role == "external")
            if (roles and p.role not in roles) or p.email in seen or is_sender or internal_only:
                continue
            seen.add(p.email)
            chosen.append(p)
        return chosen

    def update(self, to: Participant, headline: str, text: str = "", lines: tuple[str, ...] = (),
               keywords_for: str = "", kind: str = "update", attachments: tuple[dict, ...] = (),
               about: Participant | None = None, by: Participant | None = None, ask: str = "") -> None:
        """Queue the generic record update mail to one participant, with their reply address;
        `by` wrote the text (the sender, unless said otherwise). `ask` is what the mail asks
        of its reader, by when; without it the mail says it is for their information."""
        s = self.ctx.settings
        by = by or self.participant
        # In the reader's language (theirs in the directory, else the record's): the sentences
        # are said again in it; what people wrote stays as written.
        lang = self.ctx.language_of(to.email, self.lang)
        name = self.ctx.name_in(to.email, to.name, lang)
        self.drafts.append(Draft(
            kind=kind, template="participant/update", lang=lang, to_addr=to.email, to_name=name,
            record_id=self.record.id, references=(self.record.thread_id,),
            reply_to=reply_address(s.gateway.secret, s.gateway.domain, self.record.id, to.id),
            attachments=attachments,
            context=dict(ref=self.record.ref, subject=self.record.subject, name=name,
                         headline=said_in(headline, lang), author=f"{by.name} <{by.email}>", text=said_in(text, lang),
                         lines=[said_in(line, lang) for line in lines], at=self.local(self.now),
                         ask=said_in(ask, lang),
                         # A client reads the state of their request on a page of their own.
                         status_link=client_link(self.ctx, self.record.id, to.id)
                         if (to.external or to.role == "external") and s.web.enabled else "",
                         keywords_for=keywords_for, about_participant=about.id if about else None)))

    def receipt(self, label: str) -> None:
        """After every recorded action the sender gets a short receipt, so nobody wonders."""
        s = self.ctx.settings
        lang = self.sender_lang
        name = self.ctx.name_in(self.participant.email, self.participant.name, lang)
        self.drafts.append(Draft(
            kind="receipt", template="participant/receipt", lang=lang, to_addr=self.participant.email,
            to_name=name, record_id=self.record.id, inbound_id=self.row.id,
            in_reply_to=self.msg.message_id, references=(self.record.thread_id,), auto_submitted="auto-replied",
            reply_to=reply_address(s.gateway.secret, s.gateway.domain, self.record.id, self.participant.id),
            context=dict(ref=self.record.ref, subject=self.record.subject, label=label, name=name,
                         at=self.local(self.now), notes=self.notes, expected=self.expected(),
                         answers_nothing=self.participant.role == "initiator")))

    def expected(self) -> list[dict]:
        """What is still expected of the sender once this mail is recorded, with by when and
        the keywords that give it — for the receipt, so nobody wonders whether they are done."""
        person = Participant.get_by_id(self.participant.id)
        record = Record.get_by_id(self.record.id)
        if record.status == "archived":
            return []
        if person.role == "initiator":
            return self._initiator_expected()
        if person.role not in KEY_ROLES:
            return []
        if record.form == "notice":
            due = person.response_due_at
            return [] if person.signed_at else [self._expectation("confirm_notice", due, "confirm")]
        if record.status == "confirming" and person.signed_at is None:
            return [self._expectation("sign", person.chain_due_at, "confirm", "reject")]
        if record.status == "open" and not person.response:
            return [self._expectation("answer", person.response_due_at, "agree", "need_info", "propose")]
        return []

    def _initiator_expected(self) -> list[dict]:
        """What waits for the initiator: questions to answer, a proposal to decide, a dispute
        to rule, sign-offs held for their confirmation."""
        people = list(Participant.select().where(Participant.record == self.record.id))
        waiting = []
        asking = [p.name for p in people if p.response == "need_info"]
        if asking:
            waiting.append(self._expectation("questions", None, "answer_info", names="、".join(asking)))
        if open_proposal(self.record.id) is not None:
            waiting.append(self._expectation("proposal", None, "accept_change", "decline_change"))
        disputes = list(Dispute.select().where((Dispute.record == self.record.id) & Dispute.ruled_at.is_null()))
        if disputes:
            waiting.append(self._expectation("dispute", disputes[0].due_at, "ruling"))
        held = held_signoffs(self.record.id)
        if held:
            waiting.append(self._expectation("held", None, "accept_signoff", names="、".join(p.name for p in held)))
        return waiting

    def _expectation(self, kind: str, due: datetime | None, *actions: str, names: str = "") -> dict:
        lang = self.sender_lang
        words = [next((k.en[0] if lang == "en" else k.zh[0]) for k in self.ctx.keywords if k.action == action)
                 for action in actions]
        return dict(kind=kind, due=self.local(due) if due else "", words=words, names=names)

    def save(self, **changes: object) -> None:
        Record.update(updated_at=self.now, **changes).where(Record.id == self.record.id).execute()
        for key, value in changes.items():
            setattr(self.record, key, value)

    @property
    def sender_lang(self) -> str:
        """The language the sender wrote in, for what they are told back (the receipt): theirs
        (the directory's, else the record's), unless they wrote a sentence or more in English
        and no Chinese, or some Chinese."""
        said = self.said or self.text
        if not CJK.search(said) and len(LATIN_WORD.findall(said)) >= 3:
            return "en"
        return "zh" if len(CJK.findall(said)) >= 4 else self.ctx.language_of(self.participant.email, self.lang)

    def say(self, key: str, /, **values: object) -> str:
        """A sentence of mail_templates/phrases.toml in the record's language (a Phrase: a mail
        to someone who reads another language says it again in theirs)."""
        return self.ctx.renderer.sentence(self.lang, key, **values)

    def line(self, label: str, value: str) -> str:
        """`label：value` with the record language's label and colon (a Phrase)."""
        return self.ctx.renderer.labelled(self.lang, label, value)

    def name_of(self, person: Participant) -> str:
        """The person's name as the record gives it — and, said again in a reader's language,
        as that language's mails name them (Wang Qiang in English, if the directory says so)."""
        return Phrase(person.name, lambda lang: self.ctx.name_in(person.email, person.name, lang))

    def names(self, people: list[str]) -> str:
        return self.ctx.renderer.joined(self.lang, people)

    def note(self, key: str, /, **values: object) -> None:
        """A sentence for the sender's receipt, in their language."""
        self.notes.append(self.ctx.renderer.phrase(self.sender_lang, f"note.{key}", **values))

    def require_text(self, action: str) -> None:
        """The keyword of `action` needs text after it; the refusal shows an example."""
        if not self.text.strip():
            raise Refusal("need_text", keywords=(action,), example=action)


def _tell_initiator(act: Act, headline: str, kind: str = "update", ask: str = "") -> None:
    if act.participant.role != "initiator":
        for initiator in act.participants("initiator"):
            act.update(initiator, headline, act.text, keywords_for="initiator", kind=kind, about=act.participant,
                       ask=ask)


def comment(act: Act) -> None:
    act.event("comment", text=act.text, role=act.participant.role, via=act.via)
    _tell_initiator(act, act.say("update.comment", name=act.name_of(act.participant)))


def _respond(act: Act, response: str) -> None:
    Participant.update(response=response, responded_at=act.now, next_reminder_at=None).where(
        Participant.id == act.participant.id).execute()
    act.event("feedback", response=response, text=act.text, via=act.via)


def agree(act: Act) -> None:
    _respond(act, "agree")
    _tell_initiator(act, act.say("update.agree", name=act.name_of(act.participant)))


def need_info(act: Act) -> None:
    """需补充信息: the question goes to the initiator, whose reply to it is the answer
    (answer_info); the asker's answer waits for it."""
    act.require_text("need_info")
    _respond(act, "need_info")
    _tell_initiator(act, act.say("update.need_info", name=act.name_of(act.participant)),
                    kind="question", ask=act.say("ask.question", name=act.name_of(act.participant)))


def _answer_due(act: Act) -> datetime:
    """When an answer asked for now is due: the record's response time (by priority)."""
    return act.ctx.deadline(act.now, act.ctx.rules.response_hours.get(act.record.priority, 24))


def _ask_again(act: Act, person: Participant) -> datetime:
    """Put `person` back to waiting for their answer, with a new deadline and reminders."""
    due = _answer_due(act)
    Participant.update(response="", responded_at=None, response_due_at=due, chain_due_at=None,
                       next_reminder_at=due).where(Participant.id == person.id).execute()
    return due


def answer_info(act: Act) -> None:
    """补充信息 (or any reply to a question mail): the initiator's answer goes to the asker,
    who is asked again for their answer, with a new deadline."""
    act.require_text("answer_info")
    asking = [p for p in act.participants("recipient", "external") if p.response == "need_info"]
    asker = next((p for p in asking if p.id == act.answered_about), None)
    if asker is None and len(asking) == 1:
        asker = asking[0]
    if asker is None:
        if not asking:
            act.note("no_question")
            comment(act)
            return
        raise Refusal("answer_which", detail="、".join(p.name for p in asking))
    due = _ask_again(act, asker)
    act.event("info_answered", to=asker.email, text=act.text)
    act.update(asker, act.say("update.answer_info", name=act.name_of(act.participant)),
               act.text, keywords_for="recipient", kind="request", ask=act.say("ask.answer", due=act.local(due)))
    act.note("passed_on", name=asker.name, due=act.local(due))


def propose(act: Act) -> None:
    """建议调整节点: one line per milestone with its new date; the initiator decides."""
    changes = []
    for line in filter(None, (raw.strip() for raw in act.text.splitlines())):
        found = find_datetime(line, act.ctx.local_now())
        if found:
            changes.append({"line": line, "new_date": found[0].isoformat()})
    if not changes:
        raise Refusal("propose_no_date", example="propose")
    _respond(act, "propose")
    act.event("milestone_proposal", changes=changes, text=act.text)
    for initiator in act.participants("initiator"):
        act.update(initiator, act.say("update.propose", name=act.name_of(act.participant)),
                   act.text, keywords_for="initiator", about=act.participant, ask=act.say("ask.proposal"))


def _proposal(act: Act) -> tuple[Event, Participant]:
    proposal = open_proposal(act.record.id)
    if proposal is None:
        raise Refusal("no_proposal", detail=act.record.ref)
    proposer = Participant.get_or_none((Participant.record == act.record.id) & (Participant.email == proposal.actor)
                                       & Participant.role.in_(KEY_ROLES))
    if proposer is None:
        raise Refusal("no_proposal", detail=act.record.ref)
    return proposal, proposer


def accept_change(act: Act) -> None:
    """接受调整: the milestones of the open proposal move to the proposed dates; everyone hears."""
    proposal, proposer = _proposal(act)
    milestones = list(Milestone.select().where(Milestone.record == act.record.id).order_by(Milestone.position))
    moved, lines = [], []
    before = timedelta(hours=act.ctx.settings.reminders.before_hours)
    for change in proposal.data.get("changes", []):
        named = [m for m in milestones if m.name and m.name in change["line"]]
        target = max(named, key=lambda m: len(m.name)) if named else (milestones[0] if len(milestones) == 1 else None)
        if target is None:
            continue
        new = datetime.fromisoformat(change["new_date"])
        Milestone.update(due_at=new, delayed_from=target.due_at, next_reminder_at=first_reminder(
            new, before, act.now)).where(Milestone.id == target.id).execute()
        moved.append({"milestone": target.name, "old": target.due_at.isoformat(), "new": new.isoformat()})
        lines.append(act.say("line.moved", name=target.name, old=act.local(target.due_at), new=act.local(new)))
    if not moved:
        raise Refusal("proposal_unmatched", detail="、".join(m.name for m in milestones))
    act.event("proposal_accepted", proposal=proposal.id, proposer=proposer.email, moved=moved)
    for person in act.participants():
        act.update(person, act.say("update.milestones_changed"),
                   act.say("line.proposal_accepted", name=act.name_of(act.participant), proposer=act.name_of(proposer)),
                   tuple(lines))
    act.note("changed", changes=act.say("line_separator").join(lines))


def decline_change(act: Act) -> None:
    """不接受调整: the proposer hears why, and is asked again for their answer."""
    act.require_text("decline_change")
    proposal, proposer = _proposal(act)
    due = _ask_again(act, proposer)
    act.event("proposal_declined", proposal=proposal.id, proposer=proposer.email, reason=act.text)
    act.update(proposer, act.say("update.decline_change", name=act.name_of(act.participant)),
               act.text, keywords_for="recipient", kind="request",
               ask=act.say("ask.answer_again", due=act.local(due)))
    act.note("told_to_answer_again", name=proposer.name)


def done(act: Act) -> None:
    """完成: a milestone or action item is done — marked by its owner or the initiator; its
    reminders stop. The text names it; with one open item of the sender's, it may be left out."""
    initiator = act.participant.role == "initiator" or act.participant.email == act.record.initiator_email
    open_items: list[Milestone | ActionItem] = [
        *Milestone.select().where((Milestone.record == act.record.id) & Milestone.done_at.is_null()),
        *ActionItem.select().where((ActionItem.record == act.record.id) & ActionItem.done_at.is_null())]
    mine = [i for i in open_items if initiator or i.owner_email == act.participant.email]
    named = [i for i in mine if _item_name(i) and _item_name(i) in act.text]
    if named:
        item = max(named, key=lambda i: len(_item_name(i)))
    elif len(mine) == 1 and not act.text.strip():
        item = mine[0]
    else:
        raise Refusal("done_which", value=act.text[:60], detail="、".join(_item_name(i) for i in mine) or "—")
    type(item).update(done_at=act.now, next_reminder_at=None).where(type(item).id == item.id).execute()
    kind = "milestone" if isinstance(item, Milestone) else "action_item"
    act.event("item_done", item=_item_name(item), item_kind=kind, owner=item.owner_email, text=act.text)
    _tell_initiator(act, act.say("update.done", name=act.name_of(act.participant), item=_item_name(item)))
    act.note("marked_done", item=_item_name(item))


def _item_name(item: Milestone | ActionItem) -> str:
    return item.name if isinstance(item, Milestone) else item.text


def reopen(act: Act) -> None:
    """重新打开: an archived record is open again (the initiator, with a reason): signatures
    are undone, everyone hears, and the result must be signed anew."""
    if act.record.status != "archived":
        raise Refusal("reopen_not_archived", detail=act.record.ref)
    act.require_text("reopen")
    Participant.update(signed_at=None, chain_due_at=None, next_reminder_at=None).where(
        (Participant.record == act.record.id) & Participant.role.in_(KEY_ROLES)).execute()
    act.save(status="open", archived_at=None, next_reminder_at=None)
    act.event("reopened", reason=act.text, archive_key=act.record.archive_key)
    for person in act.participants():
        act.update(person, act.say("update.reopen", name=act.name_of(act.participant)), act.text)


def progress(act: Act) -> None:
    """进度: a row of the progress table; every other participant is kept in sync."""
    act.require_text("progress")
    marked = CLIENT_VISIBLE.match(act.text)
    text = act.text[marked.end():] if marked else act.text
    values = labelled_values(text, act.ctx.reply_labels["progress"])
    row = dict(stage=values.get("stage", ""), progress=values.get("progress") or text,
               people=values.get("people", act.participant.name), next_step=values.get("next_step", ""),
               risks=values.get("risks", ""))
    ProgressRow.create(record=act.record.id, at=act.now, author_email=act.participant.email,
                       client_visible=bool(marked), **row)
    act.event("progress", client_visible=bool(marked), **row)
    lines = {key: act.line(key, row[key]) for key in ("stage", "next_step", "risks") if row[key]}
    for person in act.participants(clients=bool(marked)):
        client = person.external or person.role == "external"
        # A client sees the progress and the next step; stage names and risks stay inside.
        act.update(person, act.say("update.progress", name=act.name_of(act.participant)), row["progress"],
                   tuple(line for key, line in lines.items() if not client or key == "next_step"))


def delay(act: Act) -> None:
    """延期: the owner announces it with a reason and a new plan with a new date; the milestone
    moves (the old date is kept) and everyone is told."""
    values = labelled_values(act.text, act.ctx.reply_labels["delay"])
    new_date = find_datetime(values.get("plan", ""), act.ctx.local_now())
    if not values.get("reason") or new_date is None:
        raise Refusal("delay_incomplete", example="delay")
    milestone = _owned_milestone(act, values.get("milestone", ""))
    old = milestone.due_at
    Milestone.update(due_at=new_date[0], delayed_from=old, next_reminder_at=first_reminder(
        new_date[0], timedelta(hours=act.ctx.settings.reminders.before_hours), act.now)).where(
        Milestone.id == milestone.id).execute()
    late = old < act.now
    act.event("delay", milestone=milestone.name, old=old.isoformat(), new=new_date[0].isoformat(),
              reason=values["reason"], plan=values["plan"], announced_after_deadline=late)
    if late:
        act.note("delay_late")
    lines = (act.line("milestone", milestone.name),
             act.say("line.delayed", old=act.local(old), new=act.local(new_date[0])),
             act.line("reason", values["reason"]), act.line("plan", values["plan"]))
    for person in act.participants():
        act.update(person, act.say("update.delay", item=milestone.name), "", lines)


def _owned_milestone(act: Act, named: str) -> Milestone:
    milestones = list(Milestone.select().where(Milestone.record == act.record.id).order_by(Milestone.position))
    if named:
        milestones = [m for m in milestones if named in m.name or m.name in named]
    if act.participant.role != "initiator":
        milestones = [m for m in milestones if m.owner_email == act.participant.email]
    if len(milestones) != 1:
        names = "、".join(m.name for m in Milestone.select().where(Milestone.record == act.record.id))
        raise Refusal("delay_which", value=named, detail=names or "—")
    return milestones[0]


def meeting(act: Act) -> None:
    """会议: an online discussion with time and link; everyone gets a calendar invitation
    whose answers come back to the gateway (gateway/invitations.py)."""
    values = labelled_values(act.text, act.ctx.reply_labels["meeting"])
    start = find_datetime(values.get("time", act.text), act.ctx.local_now())
    link = URL.search(act.text)
    if start is None or link is None or start[0] < act.now:
        raise Refusal("meeting_incomplete", example="meeting")
    ends = start[0] + timedelta(minutes=_minutes_of(values.get("duration", "")))
    item = schedule_meeting(act.record.id, act.participant.email, start[0], ends, link.group(0),
                            values.get("agenda", ""), act.ctx.settings.gateway.domain,
                            minutes_due=ends + timedelta(hours=act.ctx.settings.reminders.minutes_due_hours))
    act.event("meeting", meeting_id=item.id, starts=start[0].isoformat(), ends=ends.isoformat(), link=link.group(0))
    _invite(act, item, REQUEST, act.say("update.meeting"))


def reschedule(act: Act) -> None:
    """会议改期: the meeting moves; calendars get the same UID with a higher SEQUENCE, the
    earlier answers were to the old time, and the minutes are due after the new end."""
    item = _open_meeting(act)
    values = labelled_values(act.text, act.ctx.reply_labels["meeting"])
    start = find_datetime(values.get("time", act.text), act.ctx.local_now())
    if start is None or start[0] < act.now:
        raise Refusal("meeting_incomplete", example="reschedule")
    length = item.ends_at - item.starts_at
    ends = start[0] + (timedelta(minutes=_minutes_of(values["duration"])) if values.get("duration") else length)
    link = URL.search(act.text)
    old = item.starts_at
    item.starts_at, item.ends_at, item.sequence = start[0], ends, item.sequence + 1
    item.link = link.group(0) if link else item.link
    item.next_reminder_at = ends + timedelta(hours=act.ctx.settings.reminders.minutes_due_hours)
    item.save()
    forget_meeting_answers(item.id)
    act.event("meeting_moved", meeting_id=item.id, starts=start[0].isoformat(), ends=ends.isoformat(),
              old=old.isoformat(), sequence=item.sequence)
    _invite(act, item, REQUEST, act.say("update.meeting_moved"),
            (act.say("line.delayed", old=act.local(old), new=act.local(item.starts_at)),))


def cancel_meeting(act: Act) -> None:
    """取消会议: calendars remove it (METHOD:CANCEL); no minutes are asked for."""
    item = _open_meeting(act)
    item.sequence, item.cancelled_at, item.next_reminder_at = item.sequence + 1, act.now, None
    item.save()
    act.event("meeting_cancelled", meeting_id=item.id, starts=item.starts_at.isoformat(), reason=act.text)
    _invite(act, item, CANCEL, act.say("update.meeting_cancelled"),
            (act.line("reason", act.text),) if act.text else ())


def _open_meeting(act: Act) -> Meeting:
    """The record's next meeting that is neither cancelled nor over (else its latest one)."""
    meetings = list(Meeting.select().where((Meeting.record == act.record.id) & Meeting.cancelled_at.is_null()
                                           & Meeting.minutes_at.is_null()).order_by(Meeting.starts_at))
    if not meetings:
        raise Refusal("no_meeting", detail=act.record.ref)
    coming = [m for m in meetings if m.ends_at > act.now]
    return coming[0] if coming else meetings[-1]


def _invite(act: Act, item: Meeting, method: str, headline: str, extra: tuple[str, ...] = ()) -> None:
    """The invitation (or its change, or its cancellation) to everyone taking part, each copy
    with its own organiser address, so that each calendar's answer names its attendee."""
    s = act.ctx.settings
    everyone = act.participants(exclude_sender=False)
    invitees = [Invitee(p.id, p.name, p.email) for p in everyone]
    organiser = Participant.get_or_none((Participant.record == act.record.id)
                                        & (Participant.email == item.organiser_email)) or act.participant
    facts = MeetingFacts.of(item, act.record)
    lines: tuple[str, ...] = (*extra, act.line("when", f"{act.local(item.starts_at)} – {act.local(item.ends_at)[-5:]}"),
                              act.line("link", item.link))
    lines += (act.line("agenda", item.agenda),) if item.agenda else ()
    for person, invitee in zip(everyone, invitees, strict=True):
        ics = invitation(facts, method, organiser.name, invitees, invitee, s.gateway.secret, s.gateway.domain,
                         item.id, act.now, act.ctx.tz)
        act.update(person, headline, "", lines, kind="meeting", attachments=(invitation_file(ics, method),),
                   ask=act.say("ask.meeting") if method == REQUEST else "")


def _minutes_of(text: str) -> int:
    m = re.search(r"(\d+(?:\.\d+)?)\s*(小时|h|hour|hours|分钟|分|min|mins|minutes)?", text, re.IGNORECASE)
    if not m:
        return 60
    value, unit = float(m.group(1)), (m.group(2) or "分钟").lower()
    return int(value * 60) if unit in ("小时", "h", "hour", "hours") else int(value)


ACTION_ITEM = re.compile(r"\s*(?:/|／|\||｜|—|–|；|;)\s*")


def minutes(act: Act) -> None:
    """纪要: minutes with action items `行动项 / 负责人 / 截止时间`; every owner is mailed."""
    act.require_text("minutes")
    items, problems = [], []
    in_items = False
    for line in (raw.strip() for raw in act.text.splitlines()):
        label = re.match(r"^(行动项|待办|action items?)\s*[:：]?\s*(.*)$", line, re.IGNORECASE)
        if label:
            in_items, line = True, label.group(2)
        if not in_items or not line:
            continue
        # 行动项 / 负责人 / 截止时间, read from the time back: the owner may be written 部门/人
        # (市场部/刘洋) and the time with slashes.
        line = line.lstrip("-•·*0123456789.、) ")
        found = find_datetime(line, act.ctx.local_now())
        separator = ACTION_ITEM.search(line, 0, found[1]) if found else None
        if found is None or separator is None:
            problems.append(line)
            continue
        text = line[:separator.start()].strip()
        owner = act.ctx.directory.resolve(line[separator.end():found[1]].strip(" /／|｜—–;；")).person
        if not text or owner is None:
            problems.append(line)
            continue
        items.append((text, owner, found[0]))
    if problems:
        raise Refusal("minutes_problems", detail="；".join(problems))
    open_meeting = Meeting.select().where((Meeting.record == act.record.id) & Meeting.minutes_at.is_null()
                                          & Meeting.cancelled_at.is_null()) \
        .order_by(Meeting.starts_at.desc()).first()
    if open_meeting is not None:
        Meeting.update(minutes=act.text, minutes_at=act.now, next_reminder_at=None).where(
            Meeting.id == open_meeting.id).execute()
    before = timedelta(hours=act.ctx.settings.reminders.before_hours)
    for text, owner, due in items:
        ActionItem.create(record=act.record.id, meeting_id=open_meeting.id if open_meeting else None, text=text,
                          owner_email=owner.email, due_at=due, next_reminder_at=first_reminder(due, before, act.now))
    act.event("minutes", text=act.text, meeting_id=open_meeting.id if open_meeting else None,
              action_items=[{"text": t, "owner": o.email, "due": d.isoformat()} for t, o, d in items])
    # Everyone gets the minutes; an owner's copy lists their own action items first.
    for person in act.participants(exclude_sender=False):
        mine = tuple(f"{t} — {act.local(d)}" for t, o, d in items if o.email == person.email)
        if person.email == act.participant.email and not mine:
            continue  # the author knows what they wrote
        headline = act.say("update.minutes_yours" if mine else "update.minutes")
        act.update(person, headline, act.text, mine)


def result(act: Act) -> None:
    """结果: the result confirmation form goes to every key recipient for sign-off."""
    act.require_text("result")
    Participant.update(signed_at=None).where(Participant.record == act.record.id).execute()
    sign_by = act.ctx.deadline(act.now, act.ctx.settings.reminders.signoff_hours)
    Participant.update(chain_due_at=sign_by, next_reminder_at=sign_by).where(
        (Participant.record == act.record.id) & Participant.role.in_(KEY_ROLES)).execute()
    act.save(result=act.text, status="confirming")
    act.event("result", text=act.text)
    signers = [p for p in act.participants(*KEY_ROLES) if p.response != DELEGATED]
    everyone = act.line("unsigned", act.names([p.name for p in signers]))  # who signs; nobody has yet
    for person in signers:
        act.update(person, act.say("update.result"), act.text, (everyone,),
                   keywords_for="recipient", kind="signoff", ask=act.say("ask.sign", due=act.local(sign_by)))
    act.note("sent_for_signoff", names=act.ctx.renderer.joined(act.sender_lang, [p.name for p in signers]))


def confirm(act: Act) -> None:
    """确认: a key recipient signs the result — or confirms a notice. The last signature closes
    and archives the record."""
    notice = act.record.form == "notice"
    if not notice and act.record.status != "confirming":
        raise Refusal("nothing_to_sign", detail=act.record.ref)
    verdict = sender_verdict(act.ctx, act.row, act.msg)
    if _doubtful(verdict):
        _hold_signoff(act, verdict)
        return
    _sign(act, act.participant, verdict.as_json(), notice)


def _doubtful(verdict: Verdict) -> bool:
    """A signature counts unless the sender's domain says the mail is not theirs (DMARC
    fail), or our own MX, which vouches for every genuine mail, did not vouch for this one."""
    return verdict.result == "fail" or (verdict.result == "none" and verdict.method == "trusted-mta")


def _hold_signoff(act: Act, verdict: Verdict) -> None:
    """The signature is kept aside, not dropped: the initiator, who knows the signer, may
    accept it (认可签字) — a forger cannot, having no token of the initiator."""
    act.event("signoff_held", participant_id=act.participant.id, authentication=verdict.as_json())
    # The verdict in the reader's words, with the check that gave it; the evidence itself
    # (the receiving server's Authentication-Results) is kept in the trace.
    def said(lang: str) -> str:
        return f"{act.ctx.renderer.phrase(lang, f'auth.{verdict.result}')} ({verdict.method})"

    act.notes.append(act.ctx.renderer.problem_text(act.sender_lang, "signoff_held", value=said(act.sender_lang)))
    for initiator in act.participants("initiator"):
        act.update(initiator, act.say("update.signoff_held", name=act.name_of(act.participant)),
                   act.text, keywords_for="initiator", kind="held",
                   ask=act.ctx.renderer.problem_text(act.lang, "signoff_held_initiator", value=act.participant.name,
                                                     detail=said(act.lang)))


def accept_signoff(act: Act) -> None:
    """认可签字: the initiator accepts a sign-off held because its mail failed authentication;
    the text names the signer (name or address) when more than one is held."""
    held = held_signoffs(act.record.id)
    wanted = act.text.strip().lower()
    chosen = [p for p in held if not wanted or wanted in (p.name.lower(), p.email)]
    if len(chosen) != 1:
        raise Refusal("no_held_signoff", value=act.text.strip(), detail="、".join(p.name for p in held) or "—")
    _sign(act, chosen[0], {"result": "accepted", "method": "initiator", "evidence": act.participant.email},
          act.record.form == "notice")


def _sign(act: Act, signer: Participant, authentication: dict, notice: bool) -> None:
    Participant.update(signed_at=act.now, response="confirmed" if notice else signer.response,
                       responded_at=act.now, next_reminder_at=None).where(Participant.id == signer.id).execute()
    act.event("signed", inbound_id=act.row.id, token=act.token, via=act.via, authentication=authentication,
              notice=notice, signer=signer.email)
    missing = _unsigned(act)
    if missing:
        act.note("still_to_sign", names=act.ctx.renderer.joined(act.sender_lang, [p.name for p in missing]))
        return
    if _open_disputes(act):
        act.note("signed_dispute_open")
        return
    _archive(act)


def _unsigned(act: Act) -> list[Participant]:
    return [p for p in Participant.select().where((Participant.record == act.record.id) &
                                                  Participant.role.in_(KEY_ROLES))
            if p.signed_at is None and p.response != DELEGATED]


# 进度（客户可见）：… / PROGRESS [client]: … — a progress row the client is sent; others stay inside.
CLIENT_VISIBLE = re.compile(r"\s*[（(【\[]\s*(?:客户可见|客戶可見|给客户|給客戶|对客户|client|for (?:the )?client)"
                            r"\s*[)）】\]]\s*[:：]?\s*", re.IGNORECASE)


def _archive(act: Act) -> None:
    form = act.ctx.forms.get(act.record.form)
    archive_record(act.record, form.archive if form else "项目档案库", act.now, act.ctx.tz)
    for model in (Participant, Milestone, ActionItem, Meeting):
        model.update(next_reminder_at=None).where(model.record == act.record.id).execute()
    if not act.record.retro:
        act.save(next_reminder_at=act.now + timedelta(days=act.ctx.settings.reminders.retro_after_days))
    act.event("archived", archive_key=act.record.archive_key, category=act.record.archive_category)
    outcome = act.record.result or act.record.fields.get("content", "")
    everyone = act.participants(exclude_sender=False, clients=True)
    initiator = next((p for p in everyone if p.role == "initiator"), None)
    # Who signed, and when: the closing mail is the record of the sign-off.
    signed = signatures_of(act.record.id, KEY_ROLES)
    signatures = act.line("signed", act.names([f"{p.name} {act.local(p.signed_at)}" for p in signed])) if signed else ""
    for person in everyone:
        retro = person.role == "initiator"
        act.update(person, act.say("update.archived"), outcome,
                   tuple(filter(None, (signatures, act.line(
                       "archive", f"{act.record.archive_category} / {act.record.archive_key}")))),
                   kind="closed", by=initiator, ask=act.say("ask.retro") if retro else "")
    act.note("archived", key=act.record.archive_key)


def reject(act: Act) -> None:
    """驳回: a key recipient refuses the result with a reason; the record goes back to open."""
    if act.record.status != "confirming":
        raise Refusal("nothing_to_sign", detail=act.record.ref)
    act.require_text("reject")
    Participant.update(signed_at=None, chain_due_at=None, next_reminder_at=None).where(
        Participant.record == act.record.id).execute()
    act.save(status="open")
    act.event("result_rejected", text=act.text)
    _tell_initiator(act, act.say("update.reject", name=act.name_of(act.participant)), ask=act.say("ask.revise"))


DELEGATED = "delegated"  # a participant's response once they handed their part on


def delegate(act: Act) -> None:
    """转交 某人: a recipient hands their part to someone else in the directory, who gets the
    duty, the deadline and a reply address of their own; the initiator is told."""
    act.require_text("delegate")
    who, *why = re.split(r"[，,：:；;]|\s+—\s+", act.text.strip(), maxsplit=1)
    who, reason = who.strip(), (why[0].strip() if why else "")
    person = act.ctx.directory.resolve(who).person
    if person is None or person.external:
        raise Refusal("delegate_unknown", value=who)
    if person.email == act.participant.email or Participant.get_or_none(
            (Participant.record == act.record.id) & (Participant.email == person.email)
            & (Participant.role == act.participant.role)) is not None:
        raise Refusal("delegate_already", value=person.name)
    due = act.participant.response_due_at or _answer_due(act)
    heir = Participant.create(record=act.record.id, email=person.email, name=person.name,
                              department=person.department, role=act.participant.role,
                              responsibility=act.participant.responsibility, response_due_at=due,
                              next_reminder_at=due)
    Participant.update(response=DELEGATED, responded_at=act.now, next_reminder_at=None).where(
        Participant.id == act.participant.id).execute()
    act.event("delegated", to=person.email, responsibility=act.participant.responsibility, reason=reason)
    act.update(heir, act.say("update.delegated_to_you", name=act.name_of(act.participant)),
               act.participant.responsibility, (act.line("reason", reason),) if reason else (),
               keywords_for="recipient", kind="request", ask=act.say("ask.answer", due=act.local(due)))
    _tell_initiator(act, act.say("update.delegated", name=act.name_of(act.participant), heir=person.name))
    act.note("delegated", name=person.name)


def _rulers(act: Act) -> list[Participant]:
    """Who may rule a dispute (the seed: the project lead or a superior): the initiator, the
    initiator's department head, and the heads of the other departments taking part — made
    participants (role "lead") so that their replies carry a token."""
    directory = act.ctx.directory
    people = list(Participant.select().where(Participant.record == act.record.id))
    heads: list[Person] = []
    parties = [p for p in people if p.role in KEY_ROLES]  # the departments taking part
    for person in [directory.by_email(act.record.initiator_email), *(directory.by_email(p.email) for p in parties)]:
        department = directory.department(person.department) if person.department else None
        head = directory.by_email(department.head) if department else None  # perhaps the person
        if head is not None and head.email not in {h.email for h in heads}:
            heads.append(head)
    rulers = [p for p in people if p.role == "initiator"]
    for head in heads:
        row = next((p for p in people if p.email == head.email and p.role in ("lead", "head")), None)
        if row is None:
            row = Participant.create(record=act.record.id, email=head.email, name=head.name,
                                     department=head.department, role="lead")
            people.append(row)
        rulers.append(row)
    return rulers


def dispute(act: Act) -> None:
    """争议: moved to the dispute area; the project lead (the initiator) or a superior (a head
    of a department taking part) rules. It is due, reminded and escalated like an answer,
    listed in digests, and the record is not archived while it is open."""
    act.require_text("dispute")
    rulers = _rulers(act)
    initiator = act.ctx.directory.by_email(act.record.initiator_email)
    lead = act.ctx.directory.head_of(initiator) or initiator
    due = _answer_due(act)
    item = Dispute.create(record=act.record.id, opened_by=act.participant.email, text=act.text, opened_at=act.now,
                          lead_email=lead.email, due_at=due, next_reminder_at=due)
    names = act.names(list(dict.fromkeys(r.name for r in rulers)))
    act.event("dispute", dispute_id=item.id, text=act.text, lead=lead.email, rulers=[r.email for r in rulers],
              due=due.isoformat())
    told = set()
    for ruler in rulers:
        if ruler.email in told or (ruler.email == act.participant.email and ruler.role != "initiator"):
            continue
        told.add(ruler.email)
        act.update(ruler, act.say("update.dispute_to_rule"), act.text, keywords_for="lead",
                   kind="ruling", ask=act.say("ask.ruling", names=names, due=act.local(due)))
    for person in act.participants():
        if person.email not in told:
            act.update(person, act.say("update.dispute", name=act.name_of(act.participant)),
                       act.text, (act.line("rulers", names),))
    act.note("dispute_filed", names=names, due=act.local(due))


def ruling(act: Act) -> None:
    """裁定: the lead or a superior settles the open dispute; all parties are told. A record
    whose signatures were all in waits for this to be archived."""
    item = Dispute.select().where((Dispute.record == act.record.id) & Dispute.ruled_at.is_null()) \
        .order_by(Dispute.opened_at.desc()).first()
    if item is None:
        raise Refusal("no_dispute", detail=act.record.ref)
    rulers = _rulers(act)
    if act.participant.email not in {r.email for r in rulers}:
        raise Refusal("ruling_not_allowed", detail="、".join(dict.fromkeys(r.name for r in rulers)))
    act.require_text("ruling")
    Dispute.update(ruled_by=act.participant.email, ruling=act.text, ruled_at=act.now, next_reminder_at=None).where(
        Dispute.id == item.id).execute()
    act.event("ruling", dispute_id=item.id, text=act.text)
    for person in act.participants():
        act.update(person, act.say("update.ruling"), act.text,
                   (act.line("dispute", item.text),))
    if act.record.status == "confirming" and not _unsigned(act) and not _open_disputes(act):
        _archive(act)


def _open_disputes(act: Act) -> list[Dispute]:
    return list(Dispute.select().where((Dispute.record == act.record.id) & Dispute.ruled_at.is_null()))


def retro(act: Act) -> None:
    """复盘: the initiator's retrospective, kept on the (usually archived) record."""
    act.require_text("retro")
    act.save(retro=act.text, next_reminder_at=None)
    act.event("retro", text=act.text)


def close(act: Act) -> None:
    """关闭: only with a confirmed result — the gate the seed demands."""
    if act.record.status == "archived":
        act.note("already_archived")
        return
    if act.record.form != "notice" and act.record.status != "confirming":
        raise Refusal("close_no_result", detail=act.record.ref)
    missing = _unsigned(act)
    if missing:
        raise Refusal("close_unsigned", detail="、".join(f"{p.name} <{p.email}>" for p in missing))
    if _open_disputes(act):
        raise Refusal("close_dispute_open", detail="；".join(d.text[:60] for d in _open_disputes(act)))
    _archive(act)


ACTIONS: dict[str, Callable[[Act], None]] = {
    "comment": comment, "agree": agree, "need_info": need_info, "propose": propose, "progress": progress,
    "delay": delay, "meeting": meeting, "reschedule": reschedule, "cancel_meeting": cancel_meeting,
    "minutes": minutes, "result": result, "confirm": confirm,
    "reject": reject, "dispute": dispute, "ruling": ruling, "retro": retro, "close": close,
    "accept_signoff": accept_signoff, "answer_info": answer_info, "accept_change": accept_change,
    "decline_change": decline_change, "done": done, "reopen": reopen, "delegate": delegate,
}


def check_keywords(keywords: tuple[Keyword, ...], source: Path) -> None:
    """Every reply keyword names an action that has a handler: checked when the gateway
    starts, not found as a KeyError in the middle of someone's mail."""
    unknown = sorted({k.action for k in keywords} - ACTIONS.keys())
    if unknown:
        raise ConfigError(f"{source}: no handler for the action(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(ACTIONS))})")
