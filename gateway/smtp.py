"""SMTP intake: an aiosmtpd handler that knows addresses, not business.

RCPT: mail for other domains is refused (we are not a relay, 550 5.7.1); unknown local parts
get 550 5.1.1. DATA: the raw bytes are written and fsync'd to the spool (by the group-commit
writer's thread), and only then does the client hear 250; if that fails the answer is 451 (452
for a full disk) so the sender retries.
aiosmtpd enforces the size limit (SIZE in EHLO, 552 on overflow). Lines may be far longer than
RFC 5322's 998 bytes and end in bare LF; only <CRLF>.<CRLF> ends the data. At a stop, open
sessions hear 421 4.3.2 (`IntakeSessions.close_sessions`) rather than a silent disconnect.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from datetime import datetime
from email.utils import format_datetime
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from gateway.bootstrap import Context
from gateway.metrics import SMTP_ANSWERS
from gateway.pipeline import known_local_part
from gateway.spool import SpoolWriter

log = logging.getLogger(__name__)

TEMPFAIL = "451 4.3.0 Temporary local problem, message not accepted; please try again later"
NO_SPACE = "452 4.3.1 Insufficient system storage, message not accepted; please try again later"
TOO_BIG = "552 5.3.4 Message too big for system"
# Postfix passes lines of up to 2,048 bytes and splits longer ones; RFC 5322 allows 998. Mail
# programs write longer ones (HTML generators, 8-bit text), and parsing a long line costs no
# more than many short ones, so only what no mail program writes is refused — permanently,
# saying why, rather than split or cut.
LINE_LENGTH_LIMIT = 65_536
LINE_TOO_LONG = (f"500 5.5.2 Line too long: a line of the message has more than {LINE_LENGTH_LIMIT} bytes "
                 "(RFC 5322 allows 998)")
STUFFED_AFTER_BARE_LF = re.compile(rb"(?<=[^\r]\n)\.(?=\.)")
SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"
SHUTDOWN_GRACE_SECONDS = 10.0  # how long a mail being received at a stop may take to finish
CLOSE_SECONDS = 2.0  # for a 421 to be written before the connection is cut


class IntakeHandler:
    def __init__(self, ctx: Context, spool: SpoolWriter):
        self.ctx = ctx
        self.spool = spool
        self.domain = ctx.settings.gateway.domain.lower()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.domain:
            return f"550 5.7.1 Relaying denied: this server accepts mail for {self.domain} only"
        if not known_local_part(self.ctx, local):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = _unstuff_after_bare_lf(envelope.original_content or b"")
        if max(map(len, raw.split(b"\n"))) > LINE_LENGTH_LIMIT + 1:  # + 1: the CR of a CRLF
            return LINE_TOO_LONG
        raw = received_line(session, self.ctx.settings.gateway.domain, self.ctx.local_now()) + raw
        try:
            queue_id = await self.spool.store(raw, envelope.mail_from or "", list(envelope.rcpt_tos),
                                              self.ctx.clock.now())
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                log.warning("spool disk full: a message from %s answered 452", envelope.mail_from)
                return NO_SPACE
            log.warning("could not spool a message from %s; answered 451", envelope.mail_from)
            return TEMPFAIL
        return f"250 2.0.0 OK: queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Without this hook aiosmtpd answers "500 Error: (Exc) ...": permanent, and it leaks internals.
        log.exception("SMTP session error", exc_info=error)
        return TEMPFAIL


# aiosmtpd's own refusals, with the enhanced status codes (RFC 3463) that tell a sender's MTA why.
ENHANCED = {
    "552 Error: message size exceeds fixed maximum message size": TOO_BIG,  # SIZE= on MAIL FROM
    "552 Error: Too much mail data": TOO_BIG,
    # A run without CRLF longer than the reader's limit, which is above the size limit.
    "500 Line too long (see RFC5321 4.5.3.1.6)": TOO_BIG,
    "500 Command line too long": "500 5.5.2 Command line too long",
}


def received_line(session: Session, domain: str, now: datetime) -> bytes:
    """Our trace line on top (RFC 5321 §4.4): who connected. It tells sender authentication
    whether the mail came from the trusted MX (gateway/authentication.py reads it back)."""
    peer = session.peer[0] if isinstance(session.peer, tuple) and session.peer else "unknown"
    helo = SAFE_HELO.sub("", str(session.host_name or ""))[:64] or "unknown"
    protocol = "ESMTP" if session.extended_smtp else "SMTP"
    return f"Received: from {helo} ([{peer}]) by {domain} (liuhen) with {protocol}; {format_datetime(now)}\r\n".encode()


SAFE_HELO = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


def _unstuff_after_bare_lf(raw: bytes) -> bytes:
    """aiosmtpd removes the transparency dot (RFC 5321 §4.5.2) after CRLF only, but clients
    that send bare LF line ends (scripts: smtplib, for one) double a leading dot after those
    too, as Postfix expects. Only a doubled dot is taken as stuffed: a client that does not
    stuff there keeps its single dot."""
    return STUFFED_AFTER_BARE_LF.sub(b"", raw) if b"\n.." in raw else raw


class IntakeSMTP(SMTP):
    """An aiosmtpd session that registers with its `IntakeSessions`, so that a shutdown can
    answer it, and that says 421 after its DATA when the shutdown came meanwhile."""

    def __init__(self, sessions: IntakeSessions, handler: IntakeHandler, data_size_limit: int, **options: Any):
        # aiosmtpd reads DATA up to each CRLF and refuses a "line" longer than this with a bare
        # 500. A mail with bare LF line ends is one such line from start to end, so the reader
        # may take a whole mail; the size limit (552) bounds it, and handle_DATA the real lines.
        self.line_length_limit = data_size_limit + 1024
        super().__init__(handler, data_size_limit=data_size_limit, **options)
        self.sessions = sessions
        self.in_data = False
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sessions.live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.sessions.live.discard(self)
        self.closed.set()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self.in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self.in_data = False
        if self.sessions.closing:  # the client has its 250 (or refusal); now the goodbye
            self.say_shutting_down()

    async def push(self, status: AnyStr) -> None:
        answer = ENHANCED.get(status, status) if isinstance(status, str) else status
        code = (answer[:3] if isinstance(answer, str) else answer[:3].decode("ascii", "replace"))
        SMTP_ANSWERS.labels(code=code if code.isdigit() else "other").inc()
        await super().push(answer)

    def say_shutting_down(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport) and not self.transport.is_closing():
            self.transport.write(SHUTTING_DOWN.encode() + b"\r\n")
            self.transport.close()  # after the 421 has been written


class IntakeSessions:
    """The SMTP protocol factory for `loop.create_server`, which knows the sessions it made."""

    def __init__(self, ctx: Context, handler: IntakeHandler):
        self.ctx = ctx
        self.handler = handler
        self.live: set[IntakeSMTP] = set()
        self.closing = False

    def __call__(self) -> IntakeSMTP:
        return IntakeSMTP(self, self.handler, data_size_limit=self.ctx.settings.smtp.max_message_bytes,
                          enable_SMTPUTF8=True, decode_data=False, hostname=self.ctx.settings.gateway.domain,
                          ident="liuhen")

    async def close_sessions(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Answer 421 4.3.2 to every open session, once the server accepts no more connections.
        A session waiting for a command hears it at once; one in DATA may finish its mail within
        `grace_seconds` and hear 250 (after the spool write) first. RFC 5321 §3.8: the sender's
        MTA keeps what was not answered 250 and retries."""
        self.closing = True
        receiving = [session for session in self.live if session.in_data]
        if self.live:
            log.info("closing %d SMTP session(s), %d receiving a mail", len(self.live), len(receiving))
        for session in self.live - set(receiving):
            session.say_shutting_down()
        await _wait_closed(receiving, grace_seconds)
        for session in list(self.live):
            session.say_shutting_down()
        unclosed = await _wait_closed(list(self.live), CLOSE_SECONDS)
        for session in unclosed:  # a peer that reads nothing must not hold up the stop
            if isinstance(session.transport, asyncio.WriteTransport):
                session.transport.abort()


async def _wait_closed(sessions: list[IntakeSMTP], timeout: float) -> list[IntakeSMTP]:
    """Wait until these sessions' connections are closed, at most `timeout`; those still open."""
    waiting = [asyncio.create_task(s.closed.wait()) for s in sessions]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
        for task in waiting:
            task.cancel()
    return [s for s in sessions if not s.closed.is_set()]


def smtp_factory(ctx: Context, handler: IntakeHandler) -> IntakeSessions:
    return IntakeSessions(ctx, handler)
