"""Intake: keep the raw mail durably before anyone is told it arrived.

`liuhen ingest` (and IMAP) call ``store_raw`` and only then answer their MTA or mark the
message; SMTP answers after the spool write and ``import_spooled`` brings the mail in. A
mail that comes twice (a sender retrying after a lost 250, the same file piped again) is
recognised by Message-ID plus a hash of its content and stored once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import Database

from gateway.nodes import gone_from_this_host, node_id
from gateway.spool import Spool
from store.db import is_postgres
from store.models import InboundMessage
from store.repositories import insert_rows, rearm_failed

log = logging.getLogger(__name__)

OUR_RECEIVED_LINE = re.compile(rb"\AReceived: from \S+ \(\[[^\]]*\]\) by \S+ \(liuhen\)[^\n]*\n")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Stored:
    inbound_id: int
    duplicate: bool
    row: InboundMessage | None = None  # the new row as written, so processing need not read it back


def dedupe_key(raw: bytes) -> tuple[str, str]:
    """(key, Message-ID). Trace headers added by relays on a retry don't change the key:
    it hashes the body, plus the Message-ID that the author's client set. Line ends are
    normalised: SMTP carries CRLF, an MTA pipe hands over LF. The body is hashed a piece at
    a time: a 70 MB mail is not copied."""
    ours = OUR_RECEIVED_LINE.match(raw)  # ours differs on every retry
    start = ours.end() if ours else 0
    body_at = _body_start(raw, start)
    m = _MESSAGE_ID.search(raw, start, body_at)
    message_id = b" ".join(m.group(1).split()).decode("ascii", "replace") if m else ""
    if not message_id:
        return _sha256(raw, start, len(raw)), ""
    digest = hashlib.sha256(message_id.encode() + b"\0")
    end = len(raw)
    while True:  # what .replace(b"\r\n", b"\n").rstrip(b"\n") leaves of the body
        if raw.endswith(b"\r\n", body_at, end):
            end -= 2
        elif raw.endswith(b"\n", body_at, end):
            end -= 1
        else:
            break
    carry = b""
    for at in range(body_at, end, _HASH_CHUNK):
        piece = carry + raw[at:min(at + _HASH_CHUNK, end)]
        carry = b"\r" if piece.endswith(b"\r") else b""  # its \n may start the next piece
        digest.update((piece[:-1] if carry else piece).replace(b"\r\n", b"\n"))
    digest.update(carry)
    return digest.hexdigest(), message_id[:998]


_HASH_CHUNK = 1 << 20


def _body_start(raw: bytes, start: int) -> int:
    """Where the body starts: after the first blank line; len(raw) for a mail of headers only."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep, start)
        if at >= 0:
            return at + len(sep)
    return len(raw)


def _sha256(raw: bytes, start: int, end: int) -> str:
    digest = hashlib.sha256()
    view = memoryview(raw)
    for at in range(start, end, _HASH_CHUNK):
        digest.update(view[at:min(at + _HASH_CHUNK, end)])
    return digest.hexdigest()


def store_raw(db: Database, raw: bytes, *, source: str, envelope_from: str | None,
              envelope_to: list[str], now: datetime, queue_id: str = "") -> Stored:
    """Commit the raw mail (or find its twin); returns once the row is durable."""
    with db.atomic():
        return _insert_inbound([_values(raw, source, envelope_from, envelope_to, now, queue_id)])[0]


def import_spooled(db: Database, spool: Spool, files: list[str]) -> list[Stored]:
    """Move the mails of spool files into the database in one statement and transaction; the
    caller then removes the files. Importing a file twice (a crash before removal) stores its
    mails once."""
    mails = []
    for name in files:
        try:
            mails += spool.read(name)
        except (ValueError, KeyError, TypeError):
            # Only a damaged disk makes one (files appear by rename, whole): keep it for the
            # operator, out of the way of the mail behind it.
            log.error("spool file %s is unreadable; moved to %s", name, spool.set_aside(name))
    # They are this processor's from the start: another gateway's pending_ids must not take
    # them up between this import and their processing, a moment later.
    claimant = f"{node_id()}/{secrets.token_hex(6)}"
    with db.atomic():
        return _insert_inbound([_values(m.raw, "smtp", m.envelope_from, m.envelope_to, m.received_at, m.queue_id)
                                | {"claimed_by": claimant, "lease_until": m.received_at + CLAIM_LEASE}
                                for m in mails])


def _values(raw: bytes, source: str, envelope_from: str | None, envelope_to: list[str], now: datetime,
            queue_id: str) -> dict:
    key, message_id = dedupe_key(raw)
    return dict(received_at=now, source=source, queue_id=queue_id, envelope_from=envelope_from,
                envelope_to=[a.lower() for a in envelope_to], dedupe_key=key, message_id=message_id, raw=raw,
                size=len(raw))


def _insert_inbound(rows: list[dict]) -> list[Stored]:
    inserted = dict((key, rid) for rid, key in insert_rows(InboundMessage, rows, returning=("id", "dedupe_key"),
                                                            skip_conflicts=True))
    stored, seen = [], set()
    for values in rows:
        key = values["dedupe_key"]
        if key in inserted and key not in seen:
            seen.add(key)
            stored.append(Stored(inserted[key], False, InboundMessage(id=inserted[key], state="received", **values)))
        else:  # stored before (a retry, a second import), or twice in this very batch
            stored.append(Stored(InboundMessage.get(InboundMessage.dedupe_key == key).id, duplicate=True))
    return stored


# Longer than a batch of mails can take (16 mails, each stopped after [processing] mail_seconds).
CLAIM_LEASE = timedelta(minutes=10)


def pending_ids(db: Database, now: datetime, limit: int | None = None) -> list[int]:
    """Mails stored but not yet taken to a terminal state (piped in by `liuhen ingest`
    without a running gateway, or the process died), new mail first: a mail whose processing
    was begun before (it failed, or the process died on it) goes behind the rest. Failed
    mails whose next attempt is due rejoin the line here. They are claimed for this process
    for a lease, in one statement (skipping rows another node is claiming, on PostgreSQL):
    another gateway on the same database takes other mails meanwhile."""
    rearm_failed(now, limit)
    claimant = f"{node_id()}/{secrets.token_hex(6)}"
    free = (InboundMessage.state == "received") & (InboundMessage.lease_until.is_null()
                                                   | (InboundMessage.lease_until < now))
    line = (InboundMessage.select(InboundMessage.id).where(free)
            .order_by(InboundMessage.attempts, InboundMessage.id).limit(limit))
    if is_postgres(db):
        line = line.for_update(skip_locked=True)
    with db.atomic():
        # Read the ids first, then claim them: PostgreSQL may run a LIMIT … FOR UPDATE
        # subquery inside an UPDATE more than once, and claim more than the batch.
        chosen = [r.id for r in line]
        if not chosen or not InboundMessage.update(claimed_by=claimant, lease_until=now + CLAIM_LEASE).where(
                InboundMessage.id.in_(chosen) & free).execute():
            return []
    return [r.id for r in InboundMessage.select(InboundMessage.id).where(
        (InboundMessage.claimed_by == claimant) & (InboundMessage.state == "received"))
        .order_by(InboundMessage.attempts, InboundMessage.id)]


def release_claims_of_the_gone(now: datetime) -> int:
    """At a processor's start: mails claimed on this host by a process that is gone (killed
    before it finished them) are free at once, not after their lease."""
    claimants = {r.claimed_by for r in InboundMessage.select(InboundMessage.claimed_by)
                 .where((InboundMessage.state == "received") & InboundMessage.lease_until.is_null(False)).distinct()}
    gone = [c for c in claimants if gone_from_this_host(c)]
    if not gone:
        return 0
    return InboundMessage.update(lease_until=None).where(
        (InboundMessage.state == "received") & InboundMessage.claimed_by.in_(gone)).execute()
