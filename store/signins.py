"""Sign-ins to the web console and its sessions: what gateway/web/auth.py asks of the
database. Secrets are never stored: only SHA-256 hashes (HMACs for the short codes) of the
link token, the code, the browser's nonce and the session cookie."""

from __future__ import annotations

from datetime import datetime, timedelta

from store.models import ClientLink, Participant, SignIn, WebSession


def count_signins_since(since: datetime, *, email: str = "", ip: str = "") -> int:
    query = SignIn.select().where(SignIn.created_at >= since)
    if email:
        query = query.where(SignIn.email == email)
    if ip:
        query = query.where(SignIn.ip == ip)
    return query.count()


def create_signin(email: str, token_hash: str, code_hash: str, nonce_hash: str, ip: str, now: datetime,
                  good_for: timedelta) -> SignIn:
    return SignIn.create(email=email, token_hash=token_hash, code_hash=code_hash, nonce_hash=nonce_hash, ip=ip,
                         created_at=now, expires_at=now + good_for)


def live_signin_by_token(token_hash: str, now: datetime) -> SignIn | None:
    """The unused, unexpired sign-in a link names."""
    return SignIn.get_or_none((SignIn.token_hash == token_hash) & SignIn.used_at.is_null()
                              & (SignIn.expires_at > now))


def live_signin_for_browser(nonce_hash: str, now: datetime) -> SignIn | None:
    """The newest unused, unexpired sign-in this browser asked for (for its code)."""
    return (SignIn.select().where((SignIn.nonce_hash == nonce_hash) & SignIn.used_at.is_null()
                                  & (SignIn.expires_at > now)).order_by(SignIn.id.desc()).first())


def count_wrong_code(signin_id: int) -> int:
    SignIn.update(attempts=SignIn.attempts + 1).where(SignIn.id == signin_id).execute()
    return SignIn.get_by_id(signin_id).attempts


def spend_signin(signin_id: int, now: datetime) -> bool:
    """Mark it used; False if someone (another request) used it first."""
    return SignIn.update(used_at=now).where((SignIn.id == signin_id) & SignIn.used_at.is_null()).execute() == 1


def open_session(email: str, token_hash: str, csrf: str, now: datetime) -> WebSession:
    return WebSession.create(email=email, token_hash=token_hash, csrf=csrf, created_at=now, last_seen_at=now)


def live_session(token_hash: str, now: datetime, idle: timedelta) -> WebSession | None:
    """The session a cookie names, unless ended or idle too long; seen now (at most once a minute)."""
    session = WebSession.get_or_none((WebSession.token_hash == token_hash) & WebSession.ended_at.is_null())
    if session is None:
        return None
    if session.last_seen_at + idle < now:
        end_session(session.id, now)
        return None
    if now - session.last_seen_at > timedelta(minutes=1):
        WebSession.update(last_seen_at=now).where(WebSession.id == session.id).execute()
    return session


def end_session(session_id: int, now: datetime) -> None:
    WebSession.update(ended_at=now).where(WebSession.id == session_id).execute()


def client_link_for(record_id: int, participant_id: int, now: datetime) -> ClientLink:
    """The client link of one external participant on one record, made on first use."""
    ClientLink.insert(record=record_id, participant_id=participant_id, created_at=now).on_conflict_ignore().execute()
    return ClientLink.get((ClientLink.record == record_id) & (ClientLink.participant_id == participant_id))


def live_client_link(link_id: int) -> tuple[ClientLink, Participant] | None:
    link = ClientLink.get_or_none((ClientLink.id == link_id) & ClientLink.revoked_at.is_null())
    if link is None:
        return None
    person = Participant.get_or_none(Participant.id == link.participant_id)
    return (link, person) if person is not None and person.record_id == link.record_id else None


def revoke_client_links(record_id: int, now: datetime) -> int:
    return ClientLink.update(revoked_at=now).where((ClientLink.record == record_id)
                                                   & ClientLink.revoked_at.is_null()).execute()
