"""Delivery status notifications (RFC 3464): which of our mails bounced, for whom, and why.

A bounce comes from a null sender and must never be answered; but when it reports on a mail
we sent, the record should know that a participant is unreachable. Pure: bytes in, facts out.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.header import Header, decode_header
from email.message import Message
from email.policy import compat32

from parsers.mime import decode_bytes, limit_mime_depth


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    status: str  # e.g. 5.1.1
    diagnostic: str  # e.g. "smtp; 550 5.1.1 <x@example.cn>: user unknown"


@dataclass(frozen=True)
class DeliveryReport:
    original_message_id: str  # "<…>" of the mail that bounced, "" when the report omits it
    failed: tuple[FailedRecipient, ...]


def parse_dsn(raw: bytes, content_type: str | None = None) -> DeliveryReport | None:
    """The report in a multipart/report; report-type=delivery-status mail, else None.
    `content_type`, the decoded Content-Type header when the caller has it, spares parsing
    the mail again when it is plainly no report (nearly every mail)."""
    if content_type is not None and "multipart/report" not in content_type.lower():
        return None
    try:
        msg = email.message_from_bytes(limit_mime_depth(raw), policy=compat32)
    except Exception:
        return None
    if msg.get_content_type() != "multipart/report" or \
            str(msg.get_param("report-type") or "").lower() != "delivery-status":
        return None
    failed: list[FailedRecipient] = []
    original = ""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            failed += _failed(part)
        elif kind == "message/rfc822" and not original:
            inner = part.get_payload(0) if part.is_multipart() else None
            original = _message_id(inner) if isinstance(inner, Message) else ""
        elif kind == "text/rfc822-headers" and not original:
            headers = part.get_payload(decode=True)
            original = _message_id(email.message_from_bytes(headers if isinstance(headers, bytes) else b"",
                                                            policy=compat32))
    return DeliveryReport(original, tuple(failed))


def _failed(part: Message) -> list[FailedRecipient]:
    """Per-recipient blocks (after the per-message one) whose Action is failed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [block for block in payload if isinstance(block, Message)]
    else:  # a report the parser could not split into blocks
        blocks = [email.message_from_string(chunk) for chunk in str(payload).split("\n\n")]
    result = []
    for block in blocks:
        if _field(block, "Action").strip().lower() != "failed":
            continue
        recipient = (_field(block, "Final-Recipient") or _field(block, "Original-Recipient")).split(";")[-1].strip()
        result.append(FailedRecipient(recipient.strip("<>").lower(), _field(block, "Status").strip(),
                                      " ".join(_field(block, "Diagnostic-Code").split())))
    return result


def _field(block: Message, name: str) -> str:
    """A field of a report block as text. compat32 hands out raw 8-bit values (a remote
    server's diagnostic in Chinese) as Header objects, not strings."""
    value = block.get(name)
    if isinstance(value, Header):
        return "".join(decode_bytes(chunk, None) if isinstance(chunk, bytes) else chunk
                       for chunk, _ in decode_header(value))
    return value or ""


def _message_id(headers: Message | None) -> str:
    value = _field(headers, "Message-ID") if headers is not None else ""
    found = _MESSAGE_ID.search(value)  # a comment may follow: "<id> (已退信)"
    return "".join((found.group() if found else value).split())


_MESSAGE_ID = re.compile(r"<[^<>]*>")
