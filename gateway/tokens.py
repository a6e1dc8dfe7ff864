"""Signed reply tokens: `reply+<record>-<participant>-<mac>@domain`.

The token names who a reply address was issued to; the HMAC makes it unforgeable without the
secret. Lower-case base32 survives MTAs and clients that fold local-part case.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

TOKEN_RE = re.compile(r"^(\d+)-(\d+)-([a-z2-7]{16})$")


def _mac(secret: str, record_id: int, participant_id: int) -> str:
    digest = hmac.new(secret.encode(), f"{record_id}:{participant_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()  # 80 bits, 16 characters


def make_token(secret: str, record_id: int, participant_id: int) -> str:
    return f"{record_id}-{participant_id}-{_mac(secret, record_id, participant_id)}"


def parse_token(secret: str, token: str) -> tuple[int, int] | None:
    """(record id, participant id) when the token is genuine, else None."""
    m = TOKEN_RE.match(token.lower())
    if not m:
        return None
    record_id, participant_id = int(m.group(1)), int(m.group(2))
    if not hmac.compare_digest(m.group(3), _mac(secret, record_id, participant_id)):
        return None
    return record_id, participant_id


def reply_address(secret: str, domain: str, record_id: int, participant_id: int) -> str:
    return f"reply+{make_token(secret, record_id, participant_id)}@{domain}"
