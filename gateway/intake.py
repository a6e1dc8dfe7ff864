"""Intake: keep the raw mail durably before anyone is told it arrived.

`liuhen ingest` (and IMAP) call ``store_raw`` and only then answer their MTA or mark the
message; SMTP answers after the spool write and ``import_spooled`` brings the mail in. A mail that comes twice (a sender retrying after a lost 250, the same file piped
again) is recognised by Message-ID plus a hash of its content and stored once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from peewee import Database

from gateway.spool import Spool
from store.models import InboundMessage
from store.repositories import insert_rows

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Stored:
    inbound_id: int
    duplicate: bool


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            return head, body
    return raw, b""


def dedupe_key(raw: bytes) -> tuple[str, str]:
    """(key, Message-ID). Trace headers added by relays on a retry don't change the key:
    it hashes the body, plus the Message-ID that the author's client set. Line ends are
    normalised: SMTP carries CRLF, an MTA pipe hands over LF."""
    head, body = split_head(raw)
    body = body.replace(b"\r\n", b"\n").rstrip(b"\n")
    m = _MESSAGE_ID.search(head)
    message_id = b" ".join(m.group(1).split()).decode("ascii", "replace") if m else ""
    if message_id:
        digest = hashlib.sha256(message_id.encode() + b"\0" + body).hexdigest()
    else:
        digest = hashlib.sha256(raw).hexdigest()
    return digest, message_id[:998]


def store_raw(db: Database, raw: bytes, *, source: str, envelope_from: str | None,
              envelope_to: list[str], now: datetime, queue_id: str = "") -> Stored:
    """Commit the raw mail (or find its twin); returns once the row is durable."""
    with db.atomic():
        return _insert_inbound(raw, source, envelope_from, envelope_to, now, queue_id)


def import_spooled(db: Database, spool: Spool, queue_ids: list[str]) -> list[Stored]:
    """Move spooled mails into the database in one transaction; the caller then removes the
    files. Importing the same file twice (a crash before removal) stores it once."""
    with db.atomic():
        stored = []
        for queue_id in queue_ids:
            mail = spool.read(queue_id)
            stored.append(_insert_inbound(mail.raw, "smtp", mail.envelope_from, mail.envelope_to,
                                          mail.received_at, queue_id))
        return stored


def _insert_inbound(raw: bytes, source: str, envelope_from: str | None, envelope_to: list[str],
                    now: datetime, queue_id: str) -> Stored:
    key, message_id = dedupe_key(raw)
    ids = insert_rows(InboundMessage, [dict(
        received_at=now, source=source, queue_id=queue_id, envelope_from=envelope_from,
        envelope_to=[a.lower() for a in envelope_to], dedupe_key=key, message_id=message_id, raw=raw,
        size=len(raw))], returning_ids=True, skip_conflicts=True)
    if ids:
        return Stored(ids[0], duplicate=False)
    return Stored(InboundMessage.get(InboundMessage.dedupe_key == key).id, duplicate=True)


def pending_ids(db: Database, limit: int | None = None) -> list[int]:
    """Mails stored but not yet taken to a terminal state (piped in by `liuhen ingest`
    without a running gateway, or the process died), oldest first."""
    return [r.id for r in InboundMessage.select(InboundMessage.id)
            .where(InboundMessage.state == "received").order_by(InboundMessage.id).limit(limit)]
