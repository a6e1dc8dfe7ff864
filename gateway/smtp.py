"""SMTP intake: an aiosmtpd handler that knows addresses, not business.

RCPT: mail for other domains is refused (we are not a relay, 550 5.7.1); unknown local parts
get 550 5.1.1. DATA: the raw bytes are written and fsync'd to the spool (by the group-commit
writer's thread), and only then does the client hear 250; if that fails the answer is 451 (452
for a full disk) so the sender retries.
aiosmtpd enforces the size limit (SIZE in EHLO, 552 on overflow).
"""

from __future__ import annotations

import errno
import logging
from typing import Any, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.bootstrap import Context
from gateway.pipeline import known_local_part
from gateway.spool import SpoolWriter

log = logging.getLogger(__name__)

TEMPFAIL = "451 4.3.0 Temporary local problem, message not accepted; please try again later"
NO_SPACE = "452 4.3.1 Insufficient system storage, message not accepted; please try again later"


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
        raw = envelope.original_content or b""
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


def smtp_factory(ctx: Context, handler: IntakeHandler) -> Callable[[], Any]:
    def make() -> SMTP:
        return SMTP(handler, data_size_limit=ctx.settings.smtp.max_message_bytes, enable_SMTPUTF8=True,
                    decode_data=False, hostname=ctx.settings.gateway.domain, ident="liuhen")
    return make
