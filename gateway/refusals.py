"""Every "no" the gateway says goes one way.

A handler that cannot carry a mail out raises ``Refusal`` (a code of
mail_templates/problems.toml plus its values; a request's refusal lists all its problems).
The pipeline catches it and calls ``answer``, the one place that decides whether the sender
hears about it, in which language and with which template, within the caps, and what the
trace says. Nothing else answers a refused mail.

The caps keep us from feeding loops and from backscatter (mail to people who never wrote):
- a refused *reply* is answered only to people we know — in the directory, or taking part
  in the record — never to a stranger, who learns nothing;
- the same refusal goes to the same person at most once a day (once per record, for some);
- all automatic answers to one address (refusals, rejections, command answers) are capped
  per day, as Mailman caps its autoresponses; a stranger gets fewer, and never more than a
  short help page.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.checks import Problem, detect_language
from gateway.handlers import Outcome
from gateway.outbox import Draft, queue_mails
from gateway.tokens import reply_address
from store.repositories import bump_daily_count, claim_sent_key, is_participant

if TYPE_CHECKING:
    from config.forms import FormDef
    from gateway.bootstrap import Context
    from parsers.mime import ParsedMessage
    from store.models import InboundMessage, Participant, Record

log = logging.getLogger(__name__)

# The problems a request can have; its rejection lists them all (gateway/checks.py).
REQUEST_PROBLEMS = ("missing", "vague_value", "vague_subject", "short_subject", "unknown_person",
                    "ambiguous_person", "bad_priority", "bad_date", "past_date", "bad_milestone",
                    "attachment_name", "no_template", "shared_duty", "date_alternatives")
# A form sent as an attached office file: which file was read, or why none could be
# (gateway/handlers/submission.py form_values; file_<problem> for parsers/office.py's and
# gateway/office.py's problems).
FILE_PROBLEMS = ("form_from_file", "form_file_ignored", "form_file_empty", "file_encrypted", "file_macro",
                 "file_too_large", "file_unreadable", "file_no_converter", "file_too_slow")
# Why a reply changed nothing (gateway/handlers/reply.py and actions.py).
REPLY_REFUSALS = ("reply_forged", "reply_foreign", "reply_not_participant", "reply_unverified", "reply_closed",
                  "reply_role", "reply_ambiguous", "need_text", "propose_no_date", "delay_incomplete",
                  "delay_which", "meeting_incomplete", "no_meeting", "minutes_problems", "nothing_to_sign",
                  "close_no_result",
                  "close_unsigned", "no_dispute", "no_held_signoff", "answer_which", "no_proposal",
                  "proposal_unmatched", "done_which", "reopen_not_archived",
                  "ruling_not_allowed", "close_dispute_open", "digest_which",
                  "delegate_unknown", "delegate_already")
# Sentences the handlers put into other mails (receipts, updates): texts, not refusals.
NOTES = ("reply_comment_only", "signoff_held", "signoff_held_initiator")
INVALID_REQUEST = "invalid_request"  # the code of a request's refusal; its problems say why
CODES = (*REQUEST_PROBLEMS, *FILE_PROBLEMS, *REPLY_REFUSALS, *NOTES)

UNREACHABLE = re.compile(r"[\x00-\x1f\x7f]")  # no deliverable address holds a control character
KNOWN_SENDER_DAILY = 10  # automatic answers a day to someone we know (Mailman's default)
STRANGER_DAILY = 3  # … to an address that is neither in the directory nor in a record
RECEIPTS_PER_RECORD_DAILY = 10  # receipts a day to one person on one record; then recorded silently
SAME_TEXT_DAILY = 2  # the same words from the same person on one record, a day: more is a robot


class Refusal(Exception):
    """The mail cannot be carried out; nothing it asked for is recorded."""

    def __init__(self, code: str, value: str = "", detail: str = "", *, problems: Sequence[Problem] = (),
                 form: FormDef | None = None, fields: dict[str, str] | None = None, record: Record | None = None,
                 participant: Participant | None = None, ref: str = "", once_per_record: bool = False,
                 keywords: Sequence[str] = (), roles: Sequence[str] = (), example: str = ""):
        super().__init__(code)
        # Named by code, spelled in the answer's language: the keywords meant (the value) and
        # the roles that may use them (the detail).
        self.keywords, self.roles = tuple(keywords), tuple(roles)
        self.example = example  # a key of the [example] phrases: a right way to write it (the detail)
        self.code, self.value, self.detail = code, value, detail
        self.problems, self.form, self.fields = list(problems), form, fields or {}
        self.record, self.participant = record, participant
        self.ref = ref or (record.ref if record is not None else "")
        self.once_per_record = once_per_record

    def values(self, ctx: Context, lang: str) -> dict[str, str]:
        value, detail = self.value, self.detail
        if self.keywords:
            value = " / ".join(ctx.keyword_label(action, lang) for action in self.keywords)
        if self.example:
            detail = ctx.renderer.phrase(lang, f"example.{self.example}")
        if self.roles:
            detail = ctx.renderer.joined(lang, [ctx.renderer.phrase(lang, f"role.{r}") for r in self.roles])
        return dict(label="", value=value, detail=detail)

    def about(self, record: Record, participant: Participant | None = None) -> Refusal:
        """The same refusal, now known to concern `record` (and the sender's participation)."""
        if self.record is None:
            self.record, self.ref = record, record.ref
        if self.participant is None:
            self.participant = participant
        return self


def answer(ctx: Context, row: InboundMessage, msg: ParsedMessage, refusal: Refusal) -> Outcome:
    """Record the refusal and answer it if the caps allow; the mail ends 'rejected'."""
    reason = _reason(ctx, refusal)
    record_id = refusal.record.id if refusal.record is not None else None
    known = refusal.participant is not None or _known(ctx, msg.from_addr, record_id)
    if refusal.code != INVALID_REQUEST and not known:
        return Outcome("rejected", reason + " (unknown sender: not answered)", record_id)
    period = "" if refusal.once_per_record else ":" + ctx.local_now().date().isoformat()
    key = f"refuse:{msg.from_addr}:{refusal.code}:{_problem_key(refusal)}:{refusal.ref}{period}"
    if not claim_sent_key(key, ctx.clock.now()):
        return Outcome("rejected", reason + " (same answer already sent; not repeated)", record_id)
    if not may_answer(ctx, msg.from_addr, known):
        return Outcome("rejected", reason + " (daily answer limit for this sender reached: not answered)", record_id)
    lang = detect_language(f"{msg.subject}\n{msg.text}")
    queue_mails(ctx, [_rejection(ctx, row, msg, refusal, lang) if refusal.code == INVALID_REQUEST
                      else _refusal(ctx, row, msg, refusal, lang)])
    return Outcome("rejected", reason, record_id)


def may_answer(ctx: Context, address: str, known: bool | None = None) -> bool:
    """Whether one more automatic answer may go to `address` today (and count it). Never to
    an address no mail can reach (a control character in it: a hostile From)."""
    if not address or UNREACHABLE.search(address):
        return False
    if known is None:
        known = _known(ctx, address, None)
    limit = KNOWN_SENDER_DAILY if known else STRANGER_DAILY
    return bump_daily_count(f"answers:{address}", ctx.local_now().date()) <= limit


def may_acknowledge(ctx: Context, address: str, record_id: int) -> bool:
    """Whether a receipt may go to `address` for one more reply on the record today. A robot
    that answers every receipt (no Auto-Submitted, no 自动回复 subject) stops hearing back."""
    return bump_daily_count(f"receipts:{record_id}:{address}", ctx.local_now().date()) <= RECEIPTS_PER_RECORD_DAILY


def repeated_today(ctx: Context, address: str, record_id: int, text: str) -> int:
    """How many times over the daily allowance `address` has sent these words to the record
    today (0: still within it). People resend a word or two; robots resend forever."""
    digest = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()
    count = bump_daily_count(f"text:{record_id}:{address}:{digest}", ctx.local_now().date())
    return max(0, count - SAME_TEXT_DAILY)


def known_sender(ctx: Context, address: str) -> bool:
    return _known(ctx, address, None)


def _known(ctx: Context, address: str, record_id: int | None) -> bool:
    person = ctx.directory.by_email(address, "")
    return not person.external or is_participant(address, record_id)


def _reason(ctx: Context, refusal: Refusal) -> str:
    if refusal.code == INVALID_REQUEST:
        return "invalid request: " + ",".join(sorted(f"{p.field}:{p.code}" for p in refusal.problems))
    return f"{refusal.code}: {ctx.renderer.problem_text('en', refusal.code, **refusal.values(ctx, 'en'))}"


def _problem_key(refusal: Refusal) -> str:
    codes = "\n".join(sorted(f"{p.field}:{p.code}:{p.value}" for p in refusal.problems))  # the same mail again
    return hashlib.sha1(codes.encode()).hexdigest()[:12] if codes else ""


def _refusal(ctx: Context, row: InboundMessage, msg: ParsedMessage, refusal: Refusal, lang: str) -> Draft:
    """A reply that changed nothing. A participant's answer carries their own reply address,
    so they can simply try again; it never names anyone else."""
    s = ctx.settings
    record, person = refusal.record, refusal.participant
    return Draft(
        kind="refusal", template="sender/refusal", lang=lang, to_addr=msg.from_addr, to_name=msg.from_name,
        inbound_id=row.id, record_id=record.id if record is not None else None, in_reply_to=msg.message_id,
        auto_submitted="auto-replied",
        reply_to=reply_address(s.gateway.secret, s.gateway.domain, record.id, person.id)
        if record is not None and person is not None else "",
        context=dict(ref=refusal.ref, original_subject=msg.subject,
                     text=ctx.renderer.problem_text(lang, refusal.code, **refusal.values(ctx, lang))))


def _rejection(ctx: Context, row: InboundMessage, msg: ParsedMessage, refusal: Refusal, lang: str) -> Draft:
    """A request that could not be accepted: every problem at once, with what we read."""
    form, today = refusal.form, ctx.local_now().date()
    items = []
    for p in refusal.problems:
        f = form.field(p.field) if form and p.field else None
        label = f.label_for(lang) if f else ""
        example = f.example_for(lang, today) if f and p.code != "attachment_name" else ""
        items.append(dict(label=label, example=example,
                          text=ctx.renderer.problem_text(lang, p.code, label=label, value=p.value, detail=p.detail)))
    fields = form.fields if form else ()
    rows = [(f.label_for(lang), refusal.fields[f.key]) for f in fields if refusal.fields.get(f.key)]
    # A reply with the corrected form goes to the form's own intake address.
    intake = form.address if form else "requests"
    return Draft(
        kind="rejection", template="sender/rejection", lang=lang, to_addr=msg.from_addr,
        to_name=msg.from_name, inbound_id=row.id, in_reply_to=msg.message_id,
        references=(msg.message_id,) if msg.message_id else (), auto_submitted="auto-replied",
        reply_to=f"{intake}@{ctx.settings.gateway.domain}",
        context=dict(problems=items, rows=rows, form_name=form.name_for(lang) if form else "",
                     original_subject=msg.subject))
