"""The one path a stored mail takes to its terminal state.

parse → screen (never answer robots, bounces, lists or ourselves) → find what it was sent to
→ handle (submission or reply) → finish. The handling runs in one transaction with the
inbound row locked, so the record, its events, its outbox mails and the inbound state commit
together — or not at all, and the mail is processed again on the next start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.bootstrap import Context
from gateway.budget import OverBudget, time_limit
from gateway.checks import detect_language
from gateway.handlers import Outcome
from gateway.handlers.bounce import handle_bounce
from gateway.handlers.command import COMMANDS, handle_command
from gateway.handlers.meetings import handle_meeting_answer
from gateway.handlers.reply import handle_digest_reply, handle_reply, referenced_record
from gateway.handlers.submission import handle_submission
from gateway.outbox import Draft, queue_mails
from gateway.refusals import Refusal, may_answer
from gateway.refusals import answer as answer_refusal
from gateway.tokens import parse_return_path
from parsers.dsn import parse_dsn
from parsers.keywords import Command, parse_command
from parsers.mime import ParsedMessage, parse_message
from parsers.signals import auto_reply_reason
from store.archive import mark_for_index
from store.models import InboundMessage
from store.repositories import add_events, begin_attempts, fail_inbound, finish_inbound, our_mail

log = logging.getLogger(__name__)

# Local parts that are ours but are not intake addresses: kept, shown to operators, not answered.
OPERATOR_ADDRESSES = ("postmaster", "abuse")
# A mail whose processing fails is tried again after these pauses, then given up (state
# 'error', shown by `liuhen inbox list`). The pauses let a fix or a recovered dependency in.
RETRY_DELAYS = (60, 600, 3600, 6 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
GENERIC_INTAKE = "requests"


@dataclass(frozen=True)
class Target:
    kind: str  # "reply" | "form" | "requests" | "operator" | "none"
    local_part: str = ""
    token: str = ""


def known_local_part(ctx: Context, local: str) -> bool:
    local = local.lower()
    return (local.startswith(("reply+", "bounce+", "meeting+")) or local == GENERIC_INTAKE
            or local in OPERATOR_ADDRESSES or local == ctx.settings.gateway.from_local
            or ctx.form_by_address(local) is not None)


def find_target(ctx: Context, recipients: list[str], msg: ParsedMessage) -> Target:
    """What the mail was sent to. The envelope decides; a piped mail without one falls back to
    the addresses in its headers. A personal reply address wins over an intake address."""
    domain = ctx.settings.gateway.domain.lower()
    candidates = recipients or [a for _, a in (*msg.to, *msg.cc)] + [
        msg.headers.get(h, "") for h in ("delivered-to", "x-original-to")]
    ours = [a.lower().rsplit("@", 1)[0] for a in candidates if a.lower().endswith("@" + domain)]
    for local in ours:
        if local.startswith("reply+"):
            return Target("reply", local, token=local[len("reply+"):])
        if local.startswith("meeting+"):
            return Target("meeting", local)
    for local in ours:
        if ctx.form_by_address(local):
            return Target("form", local)
        if local in (GENERIC_INTAKE, ctx.settings.gateway.from_local):
            return Target("requests", local)
    for local in ours:
        if local in OPERATOR_ADDRESSES:
            return Target("operator", local)
    return Target("none")


_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


def _mailer_daemon(msg: ParsedMessage) -> bool:
    """A plain-text bounce (no RFC 3464 report): from the mail system itself."""
    return msg.from_addr.lower().split("@")[0] in _DAEMONS


def _returned(ctx: Context, recipients: list[str]) -> int | None:
    """The outbound mail whose return path (bounce+…@) this mail was sent to, if any."""
    domain = "@" + ctx.settings.gateway.domain.lower()
    for address in recipients:
        if address.lower().endswith(domain):
            found = parse_return_path(ctx.settings.gateway.secret, address.rsplit("@", 1)[0])
            if found is not None:
                return found
    return None


def process_inbound(ctx: Context, inbound_id: int) -> str:
    """Take one stored mail to its terminal state; returns that state. Safe to call twice."""
    return process_batch(ctx, [inbound_id])[inbound_id]


class _Superseded(Exception):
    """Another worker took the mail to a terminal state first; undo our work on it."""


class _Trace:
    """The events and search-index marks of a batch's mails, written together before the
    commit: two statements per batch instead of two per mail. Event ids still follow the
    order in which the mails were processed."""

    def __init__(self, now: datetime):
        self.now = now
        self.events: list[dict] = []
        self.to_index: set[int] = set()

    def write(self) -> None:
        if self.events:
            add_events(self.events, self.now)
        if self.to_index:
            mark_for_index(self.to_index)  # fields, comments, progress, minutes, results changed
        self.events, self.to_index = [], set()


def process_batch(ctx: Context, inbound_ids: list[int], rows: list[InboundMessage] | None = None) -> dict[int, str]:
    """Process several stored mails in one transaction (one commit, one fsync). Should one
    of them fail, the batch is undone and done again with a savepoint per mail, so that a
    failure undoes only its own mail (savepoints for every mail cost two statements each).
    `rows`, when given, are the rows just imported (not read back: the final conditional
    update still makes sure no mail is processed twice)."""
    states = {i: "missing" for i in inbound_ids}
    if rows is None:
        rows = list(InboundMessage.select().where(InboundMessage.id.in_(inbound_ids)))
    pending, failed = [], []
    for row in rows:
        states[row.id] = row.state
        if row.state != "received":
            continue
        if row.attempts >= MAX_ATTEMPTS:
            failed.append(row.id)  # begun this often and never finished: it takes the process down
        else:
            pending.append(row)
    if pending:
        with ctx.db.atomic():
            begin_attempts([row.id for row in pending])
        for row in pending:
            row.attempts += 1
    now = ctx.clock.now()
    over_budget: dict[int, str] = {}  # mails stopped for their time or memory, and why
    current: InboundMessage | None = None
    try:
        with ctx.db.atomic():
            trace = _Trace(now)
            for current in pending:
                states[current.id] = _process_one(ctx, current, trace)
            trace.write()
        pending = []
    except (OverBudget, MemoryError) as exc:
        # Not tried again in the slow path: it would take as long (or as much) once more.
        if current is not None:
            log.error("inbound %s: %s", current.id, _budget_reason(exc))
            over_budget[current.id] = _budget_reason(exc)
            pending = [row for row in pending if row.id != current.id]
    except Exception:
        pass  # the slow path below finds the culprit
    with ctx.db.atomic():
        for row in pending:
            try:
                with ctx.db.atomic():
                    trace = _Trace(now)
                    states[row.id] = _process_one(ctx, row, trace)
                    trace.write()
            except _Superseded:
                states[row.id] = InboundMessage.get_by_id(row.id).state
            except (OverBudget, MemoryError) as exc:
                log.error("inbound %s: %s", row.id, _budget_reason(exc))
                over_budget[row.id] = _budget_reason(exc)
            except Exception:
                log.exception("inbound %s failed in processing", row.id)
                failed.append(row.id)
    for inbound_id in failed:
        states[inbound_id] = _fail(ctx, inbound_id)
    for inbound_id, why in over_budget.items():
        states[inbound_id] = _fail(ctx, inbound_id, why)
    return states


def _budget_reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "processing needed more memory than the processor may use ([processing] memory_mb)"
    return f"{exc} ([processing] mail_seconds)"


def _process_one(ctx: Context, row: InboundMessage, trace: _Trace) -> str:
    with time_limit(ctx.settings.processing.mail_seconds):
        msg = parse_message(bytes(row.raw))
        command = parse_command(msg.subject)
        if command is not None:
            trace.write()  # a command (状态, 检索) reads the trace: let it see the mails before it
        outcome = route(ctx, row, msg, command)
    if not finish_inbound(row.id, outcome.state, outcome.reason, trace.now, outcome.record_id, msg.subject,
                          msg.from_addr):
        raise _Superseded()
    trace.events += [*outcome.events,
                     dict(inbound_id=row.id, record_id=outcome.record_id, kind=f"inbound_{outcome.state}",
                          actor=msg.from_addr, data={"reason": outcome.reason, "subject": msg.subject,
                                                     "message_id": msg.message_id})]
    if outcome.state == "processed" and outcome.record_id is not None:
        trace.to_index.add(outcome.record_id)
    log.info("inbound %s %s: %s", row.id, outcome.state, outcome.reason,
             extra={"inbound_id": row.id, "record_id": outcome.record_id, "message_id": msg.message_id})
    return outcome.state


def route(ctx: Context, row: InboundMessage, msg: ParsedMessage, command: Command | None) -> Outcome:
    """Where the mail goes; `command` is what its subject asks for (parse_command), if anything.
    A handler that refuses the mail raises Refusal: answered (or not) in one place."""
    try:
        return _route(ctx, row, msg, command)
    except Refusal as refusal:
        return answer_refusal(ctx, row, msg, refusal)


def _route(ctx: Context, row: InboundMessage, msg: ParsedMessage, command: Command | None) -> Outcome:
    s = ctx.settings
    report = parse_dsn(bytes(row.raw), msg.headers.get("content-type", ""))
    bounced = _returned(ctx, row.envelope_to)  # sent to one mail's return path (VERP)
    if report is not None or (bounced is not None and _mailer_daemon(msg)):
        # A bounce: never answered, never a reply — but it tells us who is unreachable.
        return handle_bounce(ctx, report, bounced, msg.subject)
    if bounced is not None:  # RFC 3834: out-of-office answers go to the return path too
        return Outcome("ignored", f"an automatic answer to the return path of outbound {bounced}; not a bounce")
    target = find_target(ctx, row.envelope_to, msg)
    if target.kind == "meeting":
        # A calendar's answer to an invitation: recorded, never answered, so what marks it as
        # sent by a program (some calendars say Auto-Submitted) does not stop it.
        return handle_meeting_answer(ctx, row, msg, target.local_part)
    reason = auto_reply_reason(msg.headers, msg.subject, row.envelope_from, msg.from_addr,
                               own_addresses=(s.from_address,), own_domain=s.gateway.domain)
    if reason:
        return Outcome("ignored", f"auto-generated mail ({reason}); never answered")
    if not msg.from_addr:
        return Outcome("ignored", "no sender address to answer")
    if target.kind == "reply":
        return handle_reply(ctx, row, msg, token=target.token)
    if target.kind in ("form", "requests"):
        if command is not None and command.name in COMMANDS:
            return handle_command(ctx, row, msg, command)
        # A reply that lost its personal address (sent to our From, or a client that
        # ignored Reply-To) still names one of our mails or carries the [ID] tag.
        record = referenced_record(ctx, msg)
        if record is not None:
            return handle_reply(ctx, row, msg, record=record)
        answered = our_mail([msg.in_reply_to, *reversed(msg.references)])
        if answered is not None and answered.kind in ("digest", "digest_head"):
            return handle_digest_reply(ctx, row, msg, answered)
        return handle_submission(ctx, row, msg, ctx.form_by_address(target.local_part))
    if target.kind == "operator":
        return Outcome("ignored", f"addressed to {target.local_part}@; kept for the operators")
    return Outcome("ignored", "not addressed to any intake address of ours")


def _fail(ctx: Context, inbound_id: int, why: str = "internal error while processing") -> str:
    """An internal error, or a mail over its time or memory budget: keep the mail (state
    'error') and try it again later, behind new mail, with growing pauses; after MAX_ATTEMPTS
    only `liuhen inbox retry` takes it up. The sender is told once that it is safe — never
    silence, never a stack trace."""
    row = InboundMessage.get_by_id(inbound_id)
    now = ctx.clock.now()
    tried = max(row.attempts, 1)
    retry_at = now + timedelta(seconds=RETRY_DELAYS[tried - 1]) if tried < MAX_ATTEMPTS else None
    with ctx.db.atomic():
        if not fail_inbound(inbound_id, f"{why} (attempt {tried} of {MAX_ATTEMPTS}"
                                        f"{'' if retry_at else ', given up'}); see the gateway log", now, retry_at):
            return InboundMessage.get_by_id(inbound_id).state
        if tried > 1:
            return "error"
        try:
            with time_limit(ctx.settings.processing.mail_seconds):
                msg = parse_message(bytes(row.raw))
        except (Exception, OverBudget):  # also MemoryError: the mail stays kept, unanswered
            return "error"
        if msg.from_addr and not auto_reply_reason(msg.headers, msg.subject, row.envelope_from,
                                                   msg.from_addr, (ctx.settings.from_address,),
                                                   ctx.settings.gateway.domain) and may_answer(ctx, msg.from_addr):
            lang = detect_language(msg.subject + msg.text)
            queue_mails(ctx, [Draft(kind="error_notice", template="sender/error", lang=lang,
                                    to_addr=msg.from_addr, to_name=msg.from_name, inbound_id=inbound_id,
                                    in_reply_to=msg.message_id, auto_submitted="auto-replied",
                                    context=dict(inbound_id=inbound_id, original_subject=msg.subject))])
    return "error"
