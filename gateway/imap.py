"""IMAP intake: for companies whose mail lives on Exchange, Tencent Exmail, Alibaba Mail or a
Dovecot of their own, each intake address can be a mailbox the gateway reads.

Like SMTP intake it knows nothing of the business: it stores each message durably, then —
only then — moves it to the processed folder (or flags it), and wakes the processor. A crash
between the two fetches the message again, and its dedupe key stores it once. The last UID
read is kept per mailbox and UIDVALIDITY, so a restart resumes where it stopped; IDLE is used
where the server offers it, polling otherwise, and a lost server is retried with backoff.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from config.settings import ImapSettings
from gateway.bootstrap import Context
from gateway.intake import store_raw
from store.db import DATABASE_ERRORS, drop_connection, node_lock
from store.models import ImapState

log = logging.getLogger(__name__)

STORED_FLAG = b"$LiuhenStored"  # on servers where we flag instead of moving
IDLE_SECONDS = 60  # re-issue IDLE well inside the 29 minutes RFC 2177 allows
BACKOFF = (1, 2, 5, 10, 30, 60)


class ImapError(Exception):
    """What went wrong with a mailbox, in words an operator can act on."""


def connect(box: ImapSettings, timeout: float = 30) -> IMAPClient:
    """Connected, logged in, folder selected — or ImapError saying which step failed."""
    try:
        socket.getaddrinfo(box.host, box.port)
    except OSError as exc:
        raise ImapError(f"DNS: cannot resolve {box.host}: {exc}") from exc
    context = ssl.create_default_context(cafile=box.ca_file or None) if box.security != "none" else None
    try:
        client = IMAPClient(box.host, port=box.port, ssl=box.security == "ssl", ssl_context=context, timeout=timeout)
    except ssl.SSLError as exc:
        raise ImapError(f"TLS: handshake with {box.host}:{box.port} failed: {exc}") from exc
    except OSError as exc:
        raise ImapError(f"connect: {box.host}:{box.port}: {exc}") from exc
    try:
        if box.security == "starttls":
            client.starttls(context)
        client.login(box.user, box.secret())
    except ssl.SSLError as exc:
        raise ImapError(f"TLS: STARTTLS with {box.host} failed: {exc}") from exc
    except LoginError as exc:
        raise ImapError(f"login: {box.user} was refused by {box.host} (wrong user or password?): {exc}") from exc
    try:
        client.select_folder(box.folder)
        if box.processed_folder and not client.folder_exists(box.processed_folder):
            client.create_folder(box.processed_folder)
    except IMAPClientError as exc:
        raise ImapError(f"folder: {box.folder!r} cannot be opened: {exc}") from exc
    return client


def mailbox_key(box: ImapSettings) -> str:
    return f"{box.user}@{box.host}/{box.folder}"


def fetch_new(ctx: Context, box: ImapSettings, client: IMAPClient, on_stored: Callable[[], None] = lambda: None) -> int:
    """Store every message not yet taken, then mark it; returns how many were stored.
    `on_stored` wakes the processor after each one, so the first mail of a burst does not wait
    for the last."""
    # Bring the session's view up to date first: Dovecot does not show another session's
    # APPEND to a UID SEARCH, and an IDLE begun after it does not report it either.
    client.noop()
    uidvalidity = client.folder_status(box.folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    state = ImapState.get_or_none(ImapState.mailbox == mailbox_key(box))
    if state is None or state.uidvalidity != uidvalidity:
        # New mailbox, or its UIDs were reset: start over (dedupe keeps repeats out).
        ImapState.insert(mailbox=mailbox_key(box), uidvalidity=uidvalidity, last_uid=0).on_conflict(
            conflict_target=[ImapState.mailbox],
            update={ImapState.uidvalidity: uidvalidity, ImapState.last_uid: 0}).execute()
        state = ImapState.get_by_id(mailbox_key(box))
    criteria = ["UID", f"{state.last_uid + 1}:*"]
    if not box.processed_folder:
        criteria += ["UNKEYWORD", STORED_FLAG.decode()]
    uids = [u for u in client.search(criteria) if u > state.last_uid]
    stored = 0
    for uid in sorted(uids):
        raw = (client.fetch([uid], [b"BODY.PEEK[]"]).get(uid) or {}).get(b"BODY[]")
        if not raw:
            # Not readable yet (seen here while a message was still being appended): stop
            # this round without moving past it; the next round fetches it again.
            break
        store_raw(ctx.db, raw, source="imap", envelope_from=None, envelope_to=[box.address], now=ctx.clock.now())
        # Durable now: only from here may the message leave the folder.
        if box.processed_folder:
            client.move([uid], box.processed_folder)
        else:
            client.add_flags([uid], [STORED_FLAG, b"\\Seen"])
        ImapState.update(last_uid=uid).where(ImapState.mailbox == mailbox_key(box)).execute()
        stored += 1
        on_stored()
    return stored


class Poller:
    """One thread per mailbox: fetch, then IDLE (or sleep), reconnecting with backoff."""

    def __init__(self, ctx: Context, box: ImapSettings, on_stored: Callable[[], None]):
        self.ctx, self.box, self.on_stored = ctx, box, on_stored
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"liuhen-imap-{box.address}", daemon=True)
        self._client: IMAPClient | None = None

    def start(self) -> Poller:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(IDLE_SECONDS + 10)

    def _run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                self._client = connect(self.box)
                failures = 0
                self._serve(self._client)
            except Exception as exc:  # a poller must outlive any one failure: log, back off, retry
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                expected = isinstance(exc, (ImapError, IMAPClientError, OSError, ssl.SSLError))
                log.log(logging.WARNING if expected else logging.ERROR, "IMAP %s: %s; retrying in %ss",
                        self.box.address, exc, delay, exc_info=not expected)
                self.stopping.wait(delay)
            finally:
                self._logout()
        drop_connection(self.ctx.db)

    def _fetch_here(self, client: IMAPClient) -> int:
        """Fetch what is new — unless another gateway on the same PostgreSQL is reading this
        mailbox now (it stores what it fetches; we look again after the idle time)."""
        with node_lock(self.ctx.db, f"liuhen:imap:{self.box.address}") as ours:
            return fetch_new(self.ctx, self.box, client, self.on_stored) if ours else 0

    def _serve(self, client: IMAPClient) -> None:
        idle = b"IDLE" in client.capabilities()
        health = self.ctx.db_health
        while not self.stopping.is_set():
            try:
                stored = health.attempt(self._fetch_here, client)
            except DATABASE_ERRORS:
                # Logged once per outage. The mailbox stays open: the messages wait in it,
                # and are fetched when the database is back.
                self.stopping.wait(health.retry_delay())
                continue
            if stored:
                continue  # look again before idling: more may have come while these were stored
            if idle:
                client.idle()
                try:
                    deadline = IDLE_SECONDS
                    while deadline > 0 and not self.stopping.is_set():
                        if client.idle_check(timeout=1):
                            break
                        deadline -= 1
                finally:
                    client.idle_done()
            else:
                self.stopping.wait(self.box.poll_seconds)
                client.noop()

    def _logout(self) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except Exception:  # the connection is gone anyway
                pass
            self._client = None


def check(box: ImapSettings) -> list[str]:
    """`liuhen imap check`: every step that worked, or ImapError at the one that did not."""
    client = connect(box, timeout=15)
    try:
        status = client.folder_status(box.folder, [b"MESSAGES", b"UIDVALIDITY"])
        idle = b"IDLE" in client.capabilities()
        return [f"DNS, connection, {'TLS, ' if box.security != 'none' else ''}login as {box.user}: ok",
                f"folder {box.folder!r}: {status[b'MESSAGES']} message(s)",
                f"new mail: {'IDLE (pushed within seconds)' if idle else f'polled every {box.poll_seconds:g}s'}"]
    finally:
        client.logout()
