"""The transactional outbox: every mail the gateway writes is queued here first.

``queue_mails`` runs inside the caller's transaction, so a mail exists exactly when the
change it reports was committed. It stores the subject, the template and its context; the
body is rendered at delivery, outside the transaction that holds the write lock (rendering
was a quarter of the time spent processing a request). ``deliver_due`` composes and sends,
retrying temporary failures with backoff and reporting permanent ones to the initiator.
Every mail is stamped as auto-generated (RFC 3834) so other systems' robots leave it alone.

A mail being sent is claimed by one process (node) for a lease. Only that claim moves it
on from 'sending' — to sent, queued or failed — and a bounce ('bounced') is final: a
report processed before our own 'sent' update is not overwritten by it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from peewee import Expression

from config.forms import keyword_help
from gateway.delivery import Composed, DeliveryError, Transport, compose, dkim_signed
from gateway.form_rows import records_rows
from gateway.nodes import gone_from_this_host, node_id
from gateway.tokens import return_path
from parsers.mime import parse_message
from store.db import DATABASE_ERRORS, drop_connection, is_postgres
from store.models import Attachment, Event, OutboundMessage, Record
from store.repositories import attachment_path, insert_rows, mark_claim_sent, record_threads

if TYPE_CHECKING:
    from gateway.bootstrap import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Draft:
    """A mail to queue: who gets it, which template, and how it threads."""

    kind: str
    template: str  # e.g. "recipient/request"
    lang: str
    to_addr: str
    to_name: str
    context: dict
    record_id: int | None = None
    inbound_id: int | None = None
    reply_to: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    auto_submitted: str = "auto-generated"  # "auto-replied" when answering a person's mail
    cc: tuple[str, ...] = ()
    extra_headers: dict[str, str] = field(default_factory=dict)
    # generated files: {filename, content_type, and text (a calendar) or base64 (a blank form)}
    attachments: tuple[dict, ...] = ()


def _filetime(when: datetime) -> int:
    """100-ns intervals since 1601-01-01 UTC (Windows FILETIME)."""
    return int((when.timestamp() + 11_644_473_600) * 10_000_000)


def thread_index(opened_at: datetime, thread_id: str, now: datetime) -> str:
    """Outlook's Thread-Index ([MS-OXOMSG] 2.2.1.3): a 22-byte header the same for every mail
    of the conversation — the 6 high bytes of the record's FILETIME and a GUID derived from
    its thread id — then one 5-byte child block for this mail: a code bit (0), the time since
    the start in units of 2^18 × 100 ns (31 bits), 4 random bits and a 4-bit sequence."""
    header = _filetime(opened_at).to_bytes(8, "big")[:6] + hashlib.md5(thread_id.encode()).digest()
    delta = (max(0, _filetime(now) - (int.from_bytes(header[:6], "big") << 16)) >> 18) & 0x7FFFFFFF
    child = (delta << 8 | secrets.randbits(4) << 4).to_bytes(5, "big")
    return base64.b64encode(header + child).decode()


def files_to_send(ctx: Context, files: list[Attachment]) -> tuple[tuple[dict, ...], list[str]]:
    """(the attachments of a mail, the names of files left out): files that came in go out
    with the mails they cause up to [delivery] attachments_mb in all; above it, none do and
    the mail names them instead. They are read from the store at delivery."""
    if sum(f.size for f in files) <= ctx.settings.delivery.attachments_mb * 1024 * 1024:
        return tuple({"filename": f.filename, "content_type": f.content_type, "sha256": f.sha256} for f in files), []
    return (), [f.filename for f in files]


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def queue_mails(ctx: Context, drafts: list[Draft]) -> list[str]:
    """Render and insert the drafts in one statement; returns their Message-IDs."""
    now = ctx.clock.now()
    rows, ids = [], []
    threads = record_threads(d.record_id for d in drafts)
    for d in drafts:
        message_id = new_message_id(ctx.settings.gateway.domain)
        headers = {"Auto-Submitted": d.auto_submitted, **d.extra_headers}
        if d.reply_to:
            headers["Reply-To"] = d.reply_to
        if d.in_reply_to:
            headers["In-Reply-To"] = d.in_reply_to
        # One conversation per record (RFC 5322 §3.6.4): every mail of a record refers to the
        # request that opened it and to the record's thread id, then to the mail it answers.
        thread = threads.get(d.record_id)
        references = list(dict.fromkeys([*(thread.roots if thread else ()), *d.references, d.in_reply_to]))
        if any(references):
            headers["References"] = " ".join(r for r in references if r)
        context = d.context
        if thread is not None:
            headers["Thread-Topic"] = thread.topic  # Outlook groups a conversation by these two
            headers["Thread-Index"] = thread_index(thread.opened_at, thread.roots[-1], now)
            # …and one subject for all of them (mail_templates/record.subject.j2): what a mail
            # is about goes in its first line, not in a subject that changes with every mail.
            context = {**context, "thread": {"ref": thread.ref, "subject": thread.topic, "urgent": thread.urgent,
                                             "form": thread.form, "priority": thread.priority,
                                             "status": thread.status}}
        rows.append({"created_at": now, "record_id": d.record_id, "inbound_id": d.inbound_id, "kind": d.kind,
                     "lang": d.lang, "to_addr": d.to_addr, "to_name": d.to_name, "cc": list(d.cc),
                     "subject": ctx.renderer.subject(d.lang, d.template, **context), "template": d.template,
                     "context": context, "headers": headers, "attachments": list(d.attachments),
                     "message_id": message_id, "next_attempt_at": now})
        ids.append(message_id)
    insert_rows(OutboundMessage, rows)
    return ids


# Until when a claim is ours: longer than a delivery can take — every SMTP step may wait up
# to the timeout — plus the retries of its 'sent' update. Another node takes over after that.
_LEASE_STEPS = 10
_LEASE_MARGIN_SECONDS = 60
# Waits between attempts of the 'sent' update of a mail that went out (a locked or full
# database, a connection lost in a restart): short, within the delivery worker.
SENT_UPDATE_RETRY_SECONDS = (0.2, 1.0, 3.0)


def _claimable(now: datetime) -> Expression:
    return (((OutboundMessage.status == "queued") & (OutboundMessage.next_attempt_at <= now)) |
            ((OutboundMessage.status == "sending") & OutboundMessage.lease_until.is_null(False) &
             (OutboundMessage.lease_until < now)))


def claim_due(ctx: Context, limit: int) -> list[OutboundMessage]:
    """Take up to `limit` due mails (or mails whose claimant's lease ran out) for sending, in
    one statement; on PostgreSQL the rows another node is claiming are skipped, not waited
    for. The claim is marked with a token of its own, to find its rows again."""
    now = ctx.clock.now()
    lease = timedelta(seconds=_LEASE_STEPS * ctx.settings.delivery.timeout_seconds + _LEASE_MARGIN_SECONDS)
    claimant = f"{node_id()}/{secrets.token_hex(6)}"
    due = (OutboundMessage.select(OutboundMessage.id).where(_claimable(now))
           .order_by(OutboundMessage.next_attempt_at, OutboundMessage.id).limit(limit))
    if is_postgres(ctx.db):
        due = due.for_update(skip_locked=True)
    with ctx.db.atomic():
        # Read the ids first, then claim them: PostgreSQL may run a LIMIT … FOR UPDATE
        # subquery inside an UPDATE more than once, and claim more than the batch.
        chosen = [r.id for r in due]
        if not chosen or not OutboundMessage.update(status="sending", claimed_by=claimant,
                                                    lease_until=now + lease).where(
                OutboundMessage.id.in_(chosen) & _claimable(now)).execute():
            return []
    return list(OutboundMessage.select().where((OutboundMessage.claimed_by == claimant)
                                               & (OutboundMessage.status == "sending"))
                .order_by(OutboundMessage.next_attempt_at, OutboundMessage.id))


def deliver_due(ctx: Context, transport: Transport, limit: int = 100) -> int:
    """Send up to `limit` mails that are due now, claimed together; returns how many were
    attempted. The mails that went out are marked sent together, in one transaction, after
    the transport made them durable (a maildir's fsync): a crash between a smarthost's 250
    and that commit sends this batch's mails again when their lease ends — at least once,
    never lost (README, Guarantees)."""
    mails = claim_due(ctx, limit)
    went_out: list[tuple[OutboundMessage, Composed]] = []
    rows = batch_rows(ctx, mails)
    for mail in mails:
        composed = _send(ctx, transport, mail, rows)
        if composed is not None:
            went_out.append((mail, composed))
    if went_out:
        try:
            transport.flush()
        except DeliveryError as exc:
            for mail, _ in went_out:
                _failed_attempt(ctx, mail, exc)
            return len(mails)
        _record_sent(ctx, went_out)
    return len(mails)


RowsCache = dict[tuple[int, str], list[tuple[str, str]]]  # (record, language) → its form's rows


def batch_rows(ctx: Context, mails: list[OutboundMessage]) -> RowsCache:
    """The forms the mails of a batch show, read together (a record's mails share one)."""
    wanted = {(m.record_id, m.lang) for m in mails
              if m.record_id is not None and not m.raw and (m.context or {}).get("form_rows")}
    return records_rows(ctx.renderer, ctx.forms, ctx.directory, wanted) if wanted else {}


def mail_body(ctx: Context, mail: OutboundMessage, rows: RowsCache | None = None) -> tuple[str, str]:
    """(text, html) of a queued or sent mail. A sent mail's are read back from the bytes that
    went out (the trace of what it said), not kept a second time beside them. `rows` keeps
    the forms read for a batch: a record's mails show the same form (it never changes)."""
    if mail.text:  # sent by a version that kept the rendered parts as well
        return mail.text, mail.html
    if mail.raw:
        sent = parse_message(bytes(mail.raw))
        return sent.text, sent.html
    return ctx.renderer.body(mail.lang, mail.template, **render_context(ctx, mail, rows))


def render_context(ctx: Context, mail: OutboundMessage, rows: RowsCache | None = None) -> dict:
    """A queued mail's context, with what it only names filled in: the record's form and the
    reply keywords for the reader's role (kept in one place instead of in every mail)."""
    context = dict(mail.context)
    if context.pop("form_rows", False) and mail.record_id is not None:
        key = (mail.record_id, mail.lang)
        if rows is None or key not in rows:
            rows = records_rows(ctx.renderer, ctx.forms, ctx.directory, [key])
        context["rows"] = rows.get(key, [])
    role = ""
    if "keywords_for" in context:
        role = context.pop("keywords_for")
        context["keywords"] = keyword_help(ctx.keywords, role, mail.lang) if role else ()
    if "thread" in context:  # the band of a record's mail names its form in the mail's language
        form = ctx.forms.get(context["thread"].get("form", ""))
        context["thread"] = {**context["thread"], "form_name": form.name_for(mail.lang) if form else ""}
    reply_to = (mail.headers or {}).get("Reply-To", "")
    offer = context.pop("offer", "") or mail.kind  # a reminder offers what it reminds of
    offered = offer in ctx.offers and offer != "also"
    context["buttons"] = _buttons(ctx, mail, offer, reply_to) if reply_to and offered else ()
    if offered and context.get("keywords"):
        # Only the words that fit this mail: its buttons' keywords and those of any stage.
        fitting = {o.action for o in (*ctx.offers[offer], *ctx.offers.get("also", ()))}
        context["keywords"] = tuple(k.listed(mail.lang) for k in ctx.keywords
                                    if k.action in fitting and k.for_role(role))
    return context


def _buttons(ctx: Context, mail: OutboundMessage, offer_kind: str, reply_to: str) -> list[tuple[str, str]]:
    """(label, mailto: link) for what the mail offers its reader: a reply to their own
    address, with the subject and the keyword already written (同意需求, 需补充信息：…)."""
    lang = ctx.renderer.language(mail.lang)
    subject = quote(f"Re: {mail.subject}")
    buttons = []
    for offer in ctx.offers[offer_kind]:
        word = ctx.keyword_label(offer.action, lang)
        if offer.action == "comment":  # a plain reply: no keyword to write
            first_line = ""
        else:
            first_line = word + (ctx.renderer.phrase(lang, "colon") if offer.with_text else "")
        buttons.append((word, f"mailto:{reply_to}?subject={subject}&body={quote(first_line + chr(10))}"))
    return buttons


def _send(ctx: Context, transport: Transport, mail: OutboundMessage, rows: RowsCache) -> Composed | None:
    """Compose and hand over one claimed mail; a failure is recorded (retry or give up)."""
    mail.text, mail.html = mail_body(ctx, mail, rows)
    try:
        composed = _compose(ctx, mail)
        if composed.left_out:
            log.warning("outbound %s: left out Cc that are not addresses: %r", mail.id, composed.left_out)
        # Its own return path (VERP): the bounce says which mail it is about by where it comes.
        s = ctx.settings
        transport.send(composed.raw, return_path(s.gateway.secret, s.gateway.domain, mail.id), composed.recipients)
    except DeliveryError as exc:
        _failed_attempt(ctx, mail, exc)
        return None
    return composed


def _record_sent(ctx: Context, went_out: list[tuple[OutboundMessage, Composed]]) -> None:
    """They went out: from here on, losing the 'sent' update means sending them twice."""
    for delay in (*SENT_UPDATE_RETRY_SECONDS, None):
        try:
            _mark_sent(ctx, went_out)
            return
        except DATABASE_ERRORS as exc:
            ids = ", ".join(str(mail.id) for mail, _ in went_out)
            if delay is None:
                log.error("outbound %s were delivered, but their 'sent' update failed %d times (%s); they stay "
                          "'sending' and go out again when their lease ends", ids,
                          len(SENT_UPDATE_RETRY_SECONDS) + 1, exc)
                raise
            log.warning("outbound %s were delivered; their 'sent' update failed (%s), retrying", ids, exc)
            drop_connection(ctx.db)  # a lost connection is replaced by the next statement
            time.sleep(delay)


def _mark_sent(ctx: Context, went_out: list[tuple[OutboundMessage, Composed]]) -> None:
    now = ctx.clock.now()
    events = []
    claim = went_out[0][0]  # one claim: the same claimant and lease on every mail of the batch
    with ctx.db.atomic():
        marked = mark_claim_sent(claim.claimed_by, claim.lease_until,
                                 {mail.id: composed.raw for mail, composed in went_out}, now)
        for mail, composed in went_out:
            if mail.id not in marked:
                # The mail is no longer ours to mark: its bounce was processed first, or our
                # lease ran out and another claim has it. A bounce stays; it keeps what went
                # out, and the trace does not say "sent" after it said "bounced".
                OutboundMessage.update(raw=composed.raw, sent_at=now).where(
                    (OutboundMessage.id == mail.id) & (OutboundMessage.status == "bounced") &
                    OutboundMessage.raw.is_null()).execute()
                continue
            data: dict = {"outbound_id": mail.id, "to": mail.to_addr, "mail_kind": mail.kind, "subject": mail.subject}
            if composed.left_out:
                data["left_out"] = composed.left_out
            events.append({"at": now, "record_id": mail.record_id, "kind": "mail_sent",
                           "actor": ctx.settings.from_address, "data": data})
            log.info("outbound %s sent to %s", mail.id, mail.to_addr,
                     extra={"outbound_id": mail.id, "record_id": mail.record_id, "message_id": mail.message_id})
        insert_rows(Event, events)


def _by_this_claim(mail: OutboundMessage) -> Expression:
    """The row as long as it is still in the claim this delivery holds: a mail's status
    after 'sending' is written only by its claimant — or by a bounce, which is final."""
    return ((OutboundMessage.id == mail.id) & (OutboundMessage.status == "sending") &
            (OutboundMessage.claimed_by == mail.claimed_by) & (OutboundMessage.lease_until == mail.lease_until))


def _compose(ctx: Context, mail: OutboundMessage) -> Composed:
    s = ctx.settings
    try:
        files = {item["sha256"]: attachment_path(s.data_path, item["sha256"]).read_bytes()
                 for item in mail.attachments or () if "sha256" in item}
        composed = compose(mail, from_name=s.gateway.from_name, from_addr=s.from_address,
                           date=ctx.local_now(), domain=s.gateway.domain, files=files)
        d = s.delivery
        if d.dkim_selector and d.dkim_key_file:
            composed = dataclass_replace(composed, raw=dkim_signed(composed.raw, d.dkim_selector,
                                                                   d.dkim_domain or s.gateway.domain,
                                                                   _dkim_key(d.dkim_key_file)))
        return composed
    except DeliveryError:
        raise
    except Exception as exc:
        # Composing is pure: what failed once fails every time. Ending the mail beats leaving
        # it 'sending', to be picked up and fail again after every lease.
        log.exception("outbound %s could not be composed", mail.id)
        raise DeliveryError(f"the mail could not be composed: {type(exc).__name__}: {exc}", permanent=True) from exc


def _dkim_key(path: str) -> bytes:
    """The signing key; unreadable, the mail waits (an operator's fix, not the mail's fault)."""
    try:
        return _read_key(path)
    except OSError as exc:
        raise DeliveryError(f"the DKIM key {path} cannot be read: {exc}", permanent=False) from exc


@lru_cache(maxsize=4)
def _read_key(path: str) -> bytes:
    return Path(path).read_bytes()


def _failed_attempt(ctx: Context, mail: OutboundMessage, exc: DeliveryError) -> None:
    attempts = mail.attempts + 1
    delays = ctx.settings.delivery.retry_seconds
    give_up = exc.permanent or attempts >= ctx.settings.delivery.max_attempts
    now = ctx.clock.now()
    with ctx.db.atomic():
        if not OutboundMessage.update(
            status="failed" if give_up else "queued", attempts=attempts, last_error=str(exc)[:2000],
            next_attempt_at=now + timedelta(seconds=delays[min(attempts - 1, len(delays) - 1)]), lease_until=None,
        ).where(_by_this_claim(mail)).execute():
            log.warning("delivery of outbound %s failed after its claim was lost (%s); left to the claim that "
                        "has it", mail.id, exc)
            return
        Event.create(at=now, record_id=mail.record_id, kind="mail_failed" if give_up else "mail_deferred",
                     actor=ctx.settings.from_address,
                     data={"outbound_id": mail.id, "to": mail.to_addr, "error": str(exc)[:500],
                           "attempts": attempts})
        if give_up:
            _tell_initiator(ctx, mail, str(exc))
    log.warning("delivery of outbound %s to %s %s: %s", mail.id, mail.to_addr,
                "failed" if give_up else "deferred", exc,
                extra={"outbound_id": mail.id, "record_id": mail.record_id, "message_id": mail.message_id})


def report_undeliverable(ctx: Context, mail: OutboundMessage, error: str) -> None:
    """A mail we delivered came back (a DSN): mark it bounced — whatever its status, and for
    good (see _by_this_claim) — keep the trace, tell the initiator."""
    OutboundMessage.update(status="bounced", last_error=error[:2000]).where(OutboundMessage.id == mail.id).execute()
    Event.create(at=ctx.clock.now(), record_id=mail.record_id, kind="mail_bounced", actor=mail.to_addr,
                 data={"outbound_id": mail.id, "to": mail.to_addr, "error": error[:500]})
    _tell_initiator(ctx, mail, error)


def _tell_initiator(ctx: Context, mail: OutboundMessage, error: str) -> None:
    """A mail of a record that cannot be delivered is reported to the record's initiator —
    unless it was the initiator's own mail or itself such a report (no loops)."""
    if mail.record_id is None or mail.kind == "delivery_failed":
        return
    record = Record.get_or_none(Record.id == mail.record_id)
    if record is None or record.initiator_email == mail.to_addr:
        return
    queue_mails(ctx, [Draft(
        kind="delivery_failed", template="initiator/delivery_failed", lang=record.lang,
        to_addr=record.initiator_email, to_name=record.initiator_name, record_id=record.id,
        references=(record.thread_id,),
        context={"record_ref": record.ref, "to_addr": mail.to_addr, "to_name": mail.to_name,
                 "failed_subject": mail.subject, "error": error[:500]},
    )])


def stuck_sending_reset(now: datetime) -> int:
    """At start: mails left 'sending' by a delivery that can no longer finish go back to the
    queue — those whose lease ran out (or that were claimed before leases existed), and those
    claimed on this host by a process that is gone (the one before a restart). A live lease
    of another node, or of another process here (`liuhen outbox flush`), is left alone.
    (They may have gone out; a duplicate beats a lost mail.)"""
    claimants = {row.claimed_by for row in OutboundMessage.select(OutboundMessage.claimed_by)
                 .where(OutboundMessage.status == "sending").distinct()}
    gone = [claimant for claimant in claimants if gone_from_this_host(claimant)]
    expired = OutboundMessage.lease_until.is_null() | (OutboundMessage.lease_until <= now)
    return OutboundMessage.update(status="queued", next_attempt_at=now, claimed_by="", lease_until=None).where(
        (OutboundMessage.status == "sending") & (expired | OutboundMessage.claimed_by.in_(gone))).execute()
