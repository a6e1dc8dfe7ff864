"""Signed reply tokens: `reply+<record>-<participant>-<mac>@domain`; the organiser address of a
meeting invitation, `meeting+<meeting>-<participant>-<mac>@domain`; and the return path of
each outbound mail (VERP), `bounce+<outbound>-<mac>@domain`, so that a bounce names the mail
it belongs to even when the report itself is mangled.

The token names who a reply address was issued to; the HMAC makes it unforgeable without the
secret. Lower-case base32 survives MTAs and clients that fold local-part case.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from functools import partial

TOKEN_RE = re.compile(r"^(\d+)-(\d+)-([a-z2-7]{16})$")


def _sign(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()  # 80 bits, 16 characters


def _mac(secret: str, record_id: int, participant_id: int) -> str:
    return _sign(secret, f"{record_id}:{participant_id}")


def _signed_pair(token: str, mac: Callable[[int, int], str]) -> tuple[int, int] | None:
    """The two numbers of `<a>-<b>-<mac>` when `mac(a, b)` is its mac, else None."""
    m = TOKEN_RE.match(token.lower())
    if not m:
        return None
    first, second = int(m.group(1)), int(m.group(2))
    if not hmac.compare_digest(m.group(3), mac(first, second)):
        return None
    return first, second


def make_token(secret: str, record_id: int, participant_id: int) -> str:
    return f"{record_id}-{participant_id}-{_mac(secret, record_id, participant_id)}"


def parse_token(secret: str, token: str) -> tuple[int, int] | None:
    """(record id, participant id) when the token is genuine, else None."""
    return _signed_pair(token, partial(_mac, secret))


def reply_address(secret: str, domain: str, record_id: int, participant_id: int) -> str:
    return f"reply+{make_token(secret, record_id, participant_id)}@{domain}"


BOUNCE_RE = re.compile(r"^bounce\+(\d+)-([a-z2-7]{16})$")


def _bounce_mac(secret: str, outbound_id: int) -> str:
    return _sign(secret, f"bounce:{outbound_id}")


def return_path(secret: str, domain: str, outbound_id: int) -> str:
    """The envelope sender of one outbound mail: where its bounce comes back to."""
    return f"bounce+{outbound_id}-{_bounce_mac(secret, outbound_id)}@{domain}"


def parse_return_path(secret: str, local_part: str) -> int | None:
    """The outbound mail a bounce address names, when genuine."""
    m = BOUNCE_RE.match(local_part.lower())
    if not m or not hmac.compare_digest(m.group(2), _bounce_mac(secret, int(m.group(1)))):
        return None
    return int(m.group(1))


def _meeting_mac(secret: str, meeting_id: int, participant_id: int) -> str:
    return _sign(secret, f"meeting:{meeting_id}:{participant_id}")


def meeting_address(secret: str, domain: str, meeting_id: int, participant_id: int) -> str:
    """The ORGANIZER of one attendee's copy of a meeting invitation: their calendar sends its
    answers (iTIP REPLY) here, and the token says whose answer to which meeting it is."""
    return f"meeting+{meeting_id}-{participant_id}-{_meeting_mac(secret, meeting_id, participant_id)}@{domain}"


def parse_meeting_address(secret: str, local_part: str) -> tuple[int, int] | None:
    """(meeting id, participant id) when the meeting address is genuine, else None."""
    prefix, plus, token = local_part.partition("+")
    if prefix.lower() != "meeting" or not plus:
        return None
    return _signed_pair(token, partial(_meeting_mac, secret))
