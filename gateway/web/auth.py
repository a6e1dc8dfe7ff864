"""Sign-in by mail, sessions and CSRF for the web console — no passwords.

1. GET /signin sets a nonce cookie on the browser; the form carries a token derived from it
   (a CSRF token before there is a session).
2. POST /signin with an address: if it is staff in the directory, a mail goes out through
   the outbox with a link and a 6-digit code, good for [web] signin_minutes, once, and only
   in the browser holding that nonce. The page says the same whatever the address was.
   Rate-limited per address and per client IP.
3. GET of the link only shows a confirm button — mail scanners (Safe Links) fetch links, and
   must neither spend nor use the token. POST /signin/confirm, or the code typed on the
   page, opens a session.

Sessions: a random cookie (HttpOnly, SameSite=Lax, Secure when served over HTTPS), its hash
kept; ended by sign-out or [web] session_idle_minutes unused. Every POST carries the
session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from gateway.bootstrap import Context
from gateway.outbox import Draft, queue_mails
from store.access import Reader
from store.models import WebSession
from store.signins import (
    count_signins_since,
    count_wrong_code,
    create_signin,
    live_session,
    live_signin_by_token,
    live_signin_for_browser,
    open_session,
    spend_signin,
)

SESSION_COOKIE = "liuhen_session"
NONCE_COOKIE = "liuhen_signin"
PER_ADDRESS_PER_HOUR = 5
PER_IP_PER_HOUR = 20
WRONG_CODES = 5  # then the code is dead; the link still works in the same browser


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def keyed(ctx: Context, purpose: str, value: str) -> str:
    """An HMAC of `value` under the gateway secret: a 6-digit code's hash must not be
    reversible by trying a million codes against a copied database."""
    return hmac.new(ctx.settings.gateway.secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def form_token(ctx: Context, nonce: str) -> str:
    """The sign-in forms' CSRF token, bound to the browser's nonce cookie."""
    return keyed(ctx, "signin-form", nonce)[:32]


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a, b)


@dataclass(frozen=True)
class Asked:
    """What POST /signin did: "sent" (or pretended to), or "limited" (too many from this IP)."""

    outcome: str


def ask_for_signin(ctx: Context, email: str, nonce: str, ip: str, lang: str) -> Asked:
    now = ctx.clock.now()
    email = email.strip().lower()
    hour_ago = now - timedelta(hours=1)
    if count_signins_since(hour_ago, ip=ip) >= PER_IP_PER_HOUR:
        return Asked("limited")
    person = ctx.directory.by_email(email) if "@" in email else None
    if person is None or person.external or count_signins_since(hour_ago, email=email) >= PER_ADDRESS_PER_HOUR:
        # The same page as for a real sign-in: the form tells nobody who is in the directory.
        # A row is still written (with no mail) so that guessing counts against the IP.
        create_signin("", digest(secrets.token_urlsafe(32)), "", digest(nonce), ip, now, timedelta(0))
        return Asked("sent")
    token = secrets.token_urlsafe(32)  # 256 bits
    code = f"{secrets.randbelow(10 ** 6):06d}"
    minutes = ctx.settings.web.signin_minutes
    row = create_signin(email, digest(token), "", digest(nonce), ip, now, timedelta(minutes=minutes))
    row.code_hash = keyed(ctx, f"code:{row.id}", code)
    row.save(only=["code_hash"])
    link = f"{ctx.settings.web.url}/signin/confirm?t={token}"
    queue_mails(ctx, [Draft(kind="signin", template="sender/signin", lang=lang, to_addr=email,
                            to_name=person.name, auto_submitted="auto-generated",
                            context=dict(name=person.name, link=link, code=code, minutes=minutes, ip=ip))])
    return Asked("sent")


def signin_by_link(ctx: Context, token: str, nonce: str) -> str | None:
    """The address a link signs in, if it is live and this is the browser that asked; spent."""
    row = live_signin_by_token(digest(token), ctx.clock.now()) if token else None
    if row is None or not row.email or not same(row.nonce_hash, digest(nonce)):
        return None
    return row.email if spend_signin(row.id, ctx.clock.now()) else None


def signin_by_code(ctx: Context, code: str, nonce: str) -> str | None:
    """The address the code signs in, for the browser that asked for it; spent."""
    now = ctx.clock.now()
    row = live_signin_for_browser(digest(nonce), now) if nonce else None
    if row is None or not row.email or row.attempts >= WRONG_CODES:
        return None
    if not same(row.code_hash, keyed(ctx, f"code:{row.id}", code.strip())):
        count_wrong_code(row.id)
        return None
    return row.email if spend_signin(row.id, now) else None


def start_session(ctx: Context, email: str) -> tuple[str, WebSession]:
    """(cookie value, session) for a signed-in address."""
    token = secrets.token_urlsafe(32)
    return token, open_session(email, digest(token), secrets.token_urlsafe(24), ctx.clock.now())


def current_session(ctx: Context, cookie: str) -> WebSession | None:
    if not cookie:
        return None
    return live_session(digest(cookie), ctx.clock.now(), timedelta(minutes=ctx.settings.web.session_idle_minutes))


def reader_of(ctx: Context, session: WebSession) -> Reader:
    return ctx.reader(session.email)
