"""The couriers: `serve`'s delivery workers, in the processor child — out of the interpreter
that answers SMTP, beside the processing that queues most mails.

[delivery] sessions threads each hold a transport of their own (a smarthost session kept
open for many mails) and take batches of due mails (gateway/outbox.py `deliver_due`: claimed
in one statement, marked sent in one transaction). The processor wakes them when it has
committed new mail; otherwise they look every POLL_SECONDS (mails queued by the sweeps, the
web console's sign-ins, retries coming due). A database outage is waited out like the
processor's; an idle session is let go after IDLE_CLOSE_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time

from gateway.bootstrap import Context
from gateway.delivery import Transport, make_transport
from gateway.outbox import deliver_due
from store.db import DATABASE_ERRORS, drop_connection

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
IDLE_CLOSE_SECONDS = 20.0
RETRY_SECONDS = 10.0  # after an error that is not the database's


class Couriers:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._woken = 0  # wake-ups so far: a courier that missed one finds the count moved
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        s = self.ctx.settings.delivery
        for n in range(max(1, s.sessions)):
            transport = make_transport(s, self.ctx.settings.maildir_path)
            thread = threading.Thread(target=self._run, args=(transport,), name=f"liuhen-courier-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        with self._wake:
            self._woken += 1
            self._wake.notify_all()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join()

    def _run(self, transport: Transport) -> None:
        ctx, batch = self.ctx, self.ctx.settings.delivery.batch
        idle_since: float | None = None
        while not self._stop.is_set():
            seen = self._woken
            try:
                worked = ctx.db_health.attempt(deliver_due, ctx, transport, batch)
            except DATABASE_ERRORS:
                self._pause(ctx.db_health.retry_delay(), seen)  # logged once per outage (db_health)
                continue
            except Exception:
                log.exception("delivery failed; the mails stay queued; retrying in %ss", RETRY_SECONDS)
                transport.close()
                self._pause(RETRY_SECONDS, seen)
                continue
            if worked:
                idle_since = None
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            if now - idle_since > IDLE_CLOSE_SECONDS:
                transport.close()
            self._pause(POLL_SECONDS, seen)
        transport.close()
        drop_connection(ctx.db)

    def _pause(self, seconds: float, seen: int) -> None:
        """Wait `seconds`, or less when woken (or stopped) since `seen`."""
        with self._wake:
            self._wake.wait_for(lambda: self._woken != seen or self._stop.is_set(), timeout=seconds)
