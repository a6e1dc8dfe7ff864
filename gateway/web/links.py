"""Links that work without signing in, signed with the gateway secret: a client's read-only
status page of their own record (revocable: the signature names a ClientLink row), and the
digest's one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from gateway.bootstrap import Context
from store.models import Participant, Record
from store.signins import client_link_for, live_client_link


def _sign(ctx: Context, purpose: str, value: str) -> str:
    mac = hmac.new(ctx.settings.gateway.secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]  # 128 bits


def client_link(ctx: Context, record_id: int, participant_id: int) -> str:
    """The status page link of an external participant (made on first use)."""
    link = client_link_for(record_id, participant_id, ctx.clock.now())
    return f"{ctx.settings.web.url}/c/{link.id}/{_sign(ctx, 'client', f'{link.id}:{participant_id}')}"


def client_link_valid(ctx: Context, link_id: int, signature: str) -> tuple[Record, Participant] | None:
    found = live_client_link(link_id)
    if found is None:
        return None
    link, person = found
    if not hmac.compare_digest(signature, _sign(ctx, "client", f"{link.id}:{person.id}")):
        return None
    return Record.get_by_id(link.record_id), person


def unsubscribe_link(ctx: Context, email: str) -> str:
    email = email.lower()
    return f"{ctx.settings.web.url}/unsubscribe?e={quote(email)}&s={_sign(ctx, 'unsubscribe', email)}"


def unsubscribe_valid(ctx: Context, email: str, signature: str) -> str | None:
    email = email.lower()
    return email if email and signature and hmac.compare_digest(signature, _sign(ctx, "unsubscribe", email)) else None
