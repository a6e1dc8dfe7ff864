"""A reply to one of our mails: find its record and participant, make sure the sender is who
they must be, then hand the new text to the action its keyword names.

Matching, strongest first: the signed `reply+TOKEN@` address (the sender must be the
participant it was issued to), then In-Reply-To/References naming one of our Message-IDs,
then an `[ID]` tag in the subject (for these two the sender must be a participant of the
record). Only the token decides: a mail without one is trusted by nothing but its From
header, which anyone can write, so it never changes a record's state — at most it adds a
comment, and only when the sender's domain vouches for it (gateway/authentication.py).
`Reply-To` is never trusted for identity. Anything that fails changes nothing, is recorded
as rejected with the reason, and gets at most one polite answer a day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace

from gateway.authentication import sender_verdict
from gateway.bootstrap import Context
from gateway.handlers import Outcome
from gateway.handlers.actions import ACTIONS, KEY_ROLES, Act
from gateway.outbox import files_to_send, queue_mails
from gateway.refusals import SAME_TEXT_DAILY, Refusal, may_acknowledge, repeated_today
from gateway.tokens import parse_token
from parsers.keywords import match_keyword
from parsers.mime import ParsedMessage
from parsers.quotes import new_text
from store.models import InboundMessage, OutboundMessage, Participant, Record
from store.repositories import claim_sent_key, files_of, our_mail, save_attachments

RECORD_TAG = re.compile(r"\[([A-Z]{2,5}-\d{4}-\d{4,})\]")
ROLE_PRECEDENCE = ("initiator", "recipient", "lead", "head", "external")


@dataclass(frozen=True)
class Matched:
    record: Record
    participant: Participant
    via: str  # token | references | subject
    token: str = ""


def referenced_record(ctx: Context, msg: ParsedMessage) -> Record | None:
    """The record a mail refers to without a reply token: one of our Message-IDs in
    In-Reply-To/References, else an [ID] tag in the subject."""
    ids = [i for i in (msg.in_reply_to, *msg.references) if i.endswith(f"@{ctx.settings.gateway.domain}>")]
    if ids:
        sent = OutboundMessage.select(OutboundMessage.record_id).where(
            OutboundMessage.message_id.in_(ids) & OutboundMessage.record_id.is_null(False)).first()
        if sent is not None:
            return Record.get_or_none(Record.id == sent.record_id)
        record = Record.get_or_none(Record.thread_id.in_(ids))
        if record is not None:
            return record
    tag = RECORD_TAG.search(msg.subject)
    return Record.get_or_none(Record.ref == tag.group(1)) if tag else None


def handle_reply(ctx: Context, row: InboundMessage, msg: ParsedMessage, token: str | None = None,
                 record: Record | None = None) -> Outcome:
    """Carry the reply out, or raise Refusal (nothing recorded)."""
    match = _match(ctx, msg, token, record)
    text = new_text(msg.text)
    over = repeated_today(ctx, msg.from_addr, match.record.id, text)
    if over:
        events = [dict(record_id=match.record.id, inbound_id=row.id, kind="repetition_ignored", actor=msg.from_addr,
                       data={"note": "the same text again today; not recorded, not answered"})] if over == 1 else []
        return Outcome("ignored", f"the same text from {msg.from_addr} on {match.record.ref} more than "
                                  f"{SAME_TEXT_DAILY} times today (an auto-responder?); not recorded, not answered",
                       match.record.id, events)
    answered = our_mail([msg.in_reply_to, *reversed(msg.references)], match.record.id)
    context = ctx.reply_contexts.get(reply_context(match, answered))
    keyword = match_keyword(text, ctx.keywords, context.words if context else ())
    if match.via != "token":
        return _without_token(ctx, row, msg, match, text, keyword.action or "comment")
    if keyword.ambiguous:
        raise Refusal("reply_ambiguous", keywords=keyword.ambiguous, record=match.record, participant=match.participant)
    action = keyword.action or (context.default if context and context.default else "comment")
    if match.record.status == "archived" and action not in ("retro", "reopen"):
        raise Refusal("reply_closed", detail=match.record.ref, record=match.record, participant=match.participant)
    participant = _participant_for(match, action, ctx)
    if participant is None:
        allowed = next(k for k in ctx.keywords if k.action == action).roles
        raise Refusal("reply_role", keywords=(action,), roles=allowed, record=match.record,
                      participant=match.participant)
    act = Act(ctx=ctx, record=match.record, participant=participant, text=keyword.text, msg=msg, row=row,
              via=match.via, token=match.token, said=text,
              answered_about=answered.context.get("about_participant") if answered else None)
    try:
        with ctx.db.atomic():  # an action refused half-way leaves nothing behind
            ACTIONS[action](act)
            _relay_files(ctx, act, row, msg)
    except Refusal as refusal:
        raise refusal.about(match.record, participant) from None
    if may_acknowledge(ctx, msg.from_addr, match.record.id):
        act.receipt(ctx.keyword_label(action, act.sender_lang))
    queue_mails(ctx, act.drafts)
    return Outcome("processed", f"{action} by {msg.from_addr} on {match.record.ref}", match.record.id, act.events)


def _relay_files(ctx: Context, act: Act, row: InboundMessage, msg: ParsedMessage) -> None:
    """A reply's files are kept with the record (and its export) and go with the mails the
    reply causes to other people; the sender's receipt does not send them back."""
    if not msg.attachments:
        return
    save_attachments(ctx.settings.data_path, row.id, act.record.id,
                     ((a.filename, a.content_type, a.payload_chunks()) for a in msg.attachments))
    attached, _ = files_to_send(ctx, files_of(row.id))
    act.drafts = [dataclass_replace(d, attachments=d.attachments + attached) if d.kind != "receipt" else d
                  for d in act.drafts]


DIGEST_ITEM = re.compile(r"\s*(\d{1,3})\s*[.、:：)）]?\s*")
QUOTED_ITEM = re.compile(r"(?m)^[ \t]*>[> \t]*(?:\d{1,3}\.\s*)?\[([A-Z]{2,5}-\d{4}-\d{4,})\]")


def handle_digest_reply(ctx: Context, row: InboundMessage, msg: ParsedMessage, digest: OutboundMessage) -> Outcome:
    """A reply to a daily digest: "3 确认" acts on its item 3 exactly as a reply to that
    record's mail would (the item's personal reply address decides who and which record);
    anything else is answered with how to act."""
    text = new_text(msg.text)
    entries = digest.context.get("entries", [])
    found = DIGEST_ITEM.match(text)
    number = int(found.group(1)) if found else 0
    if found is not None:
        text = text[found.end():]
    else:
        # Or one item quoted inline ("> 2. [PRJ-2026-0001] …" above the answer).
        quoted = {m.group(1) for m in QUOTED_ITEM.finditer(msg.text)}
        numbers = [i for i, entry in enumerate(entries, start=1) if entry[0] in quoted]
        number = numbers[0] if len(numbers) == 1 else 0
    if not 1 <= number <= len(entries) or not entries[number - 1][3]:
        raise Refusal("digest_which", detail=str(len(entries)))
    token = entries[number - 1][3].partition("@")[0].removeprefix("reply+")
    return handle_reply(ctx, row, dataclass_replace(msg, text=text), token=token)


def _without_token(ctx: Context, row: InboundMessage, msg: ParsedMessage, match: Matched, text: str,
                   action: str) -> Outcome:
    """A participant's reply that lost its personal address. Whatever keyword it carries, it
    is a comment at most (the whole text, so nothing of it is lost), recorded only when the
    sender is authenticated; it changes no state and stops no reminder. The sender hears
    once per record, at the address the record knows, how to reply so that it counts."""
    record, person = match.record, match.participant
    if record.status == "archived":
        raise Refusal("reply_closed", detail=record.ref, record=record, participant=person)
    verdict = sender_verdict(ctx, row, msg)
    if not verdict.passed:
        raise Refusal("reply_unverified", detail=record.ref, record=record, participant=person, once_per_record=True)
    act = Act(ctx=ctx, record=record, participant=person, text=text, msg=msg, row=row, via=match.via, token="",
              said=text)
    ACTIONS["comment"](act)
    act.events[-1]["data"].update(authentication=verdict.as_json(), keyword=action)
    if claim_sent_key(f"tokenless:{msg.from_addr}:{record.ref}", ctx.clock.now()):
        lang = act.sender_lang
        act.notes.append(ctx.renderer.problem_text(lang, "reply_comment_only", value=ctx.keyword_label(action, lang)))
        act.receipt(ctx.keyword_label("comment", lang))
    queue_mails(ctx, act.drafts)
    return Outcome("processed", f"comment without a reply token by {msg.from_addr} on {record.ref} "
                                f"(sender authenticated: {verdict.method})", record.id, act.events)


def reply_context(match: Matched, answered: OutboundMessage | None) -> str:
    """What the mail being answered asked of this person: "signoff" (a result to sign),
    "notice" (a notice to confirm), "request" (an answer to the request), "question" (a
    recipient's 需补充信息, to the initiator), or "" (nothing in particular). The answered mail
    (In-Reply-To, References) says it; a reply that names none of ours, or a reminder or an
    update, is read by what is still expected of the person."""
    record, person = match.record, match.participant
    kind = answered.kind if answered else ""
    if kind == "signoff":
        return "signoff"
    if kind == "request":
        return "notice" if record.form == "notice" else "request"
    if kind == "question" and person.role == "initiator":
        return "question"
    if person.role not in KEY_ROLES:
        return ""
    if record.form == "notice":
        return "notice" if person.signed_at is None else ""
    if record.status == "confirming" and person.signed_at is None:
        return "signoff"
    if record.status == "open" and not person.response:
        return "request"
    return ""


def _match(ctx: Context, msg: ParsedMessage, token: str | None, record: Record | None) -> Matched:
    if token is not None:
        ids = parse_token(ctx.settings.gateway.secret, token)
        participant = Participant.get_or_none((Participant.id == ids[1]) & (Participant.record == ids[0])) \
            if ids else None
        if participant is None:
            raise Refusal("reply_forged")
        if participant.email != msg.from_addr:
            # Never name the owner: a forger would only learn whose From to forge.
            raise Refusal("reply_foreign", value=msg.from_addr, ref=participant.record.ref)
        return Matched(participant.record, participant, "token", token)
    assert record is not None
    mine = list(Participant.select().where((Participant.record == record.id) &
                                           (Participant.email == msg.from_addr)))
    if not mine:
        raise Refusal("reply_not_participant", value=msg.from_addr, detail=record.ref, ref=record.ref)
    mine.sort(key=lambda p: ROLE_PRECEDENCE.index(p.role) if p.role in ROLE_PRECEDENCE else 99)
    return Matched(record, mine[0], "references" if msg.in_reply_to or msg.references else "subject")


def _participant_for(match: Matched, action: str, ctx: Context) -> Participant | None:
    """The sender's participation that may use the keyword: a person can be initiator and
    recipient of the same record; the token names one, the keyword may need the other."""
    if action == "comment":
        return match.participant
    keyword = next(k for k in ctx.keywords if k.action == action)
    if keyword.for_role(match.participant.role):
        return match.participant
    return next((p for p in Participant.select().where((Participant.record == match.record.id) &
                                                       (Participant.email == match.participant.email))
                 if keyword.for_role(p.role)), None)
