"""The couriers: `serve`'s delivery workers — out of the interpreter that answers SMTP, in
the processor child (beside the processing that queues most mails) and in [delivery]
processes − 1 delivery processes of their own, so that composing mails, the CPU-heavy part
of delivering them, has more than one core.

[delivery] sessions threads in all, spread over those processes, each hold a transport of
their own (a smarthost session kept open for many mails) and take batches of due mails
(gateway/outbox.py `deliver_due`: claimed in one statement, marked sent in one transaction).
The processor wakes its own when it has committed new mail, and rings the bell of each
delivery process (a semaphore: ringing never blocks, whatever state the process is in);
otherwise they look every POLL_SECONDS (mails queued by the sweeps, the web console's
sign-ins, retries coming due). A database outage is waited out like the processor's; an
idle session is let go after IDLE_CLOSE_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Semaphore

from config.settings import Settings
from gateway.bootstrap import Context
from gateway.children import READY, SPAWN, Child, child_context, wait
from gateway.delivery import Transport, make_transport
from gateway.outbox import deliver_due, stuck_sending_reset
from store.db import DATABASE_ERRORS, DatabaseHealth, drop_connection

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
IDLE_CLOSE_SECONDS = 20.0
RETRY_SECONDS = 10.0  # after an error that is not the database's
BUSY_SECONDS = 1.0  # mail sent this recently counts as delivery going on (the processor defers indexing)


def session_shares(sessions: int, processes: int) -> list[int]:
    """How many smarthost sessions each delivery process holds: `sessions` in all, at
    least one each (the first share is the processor child's)."""
    processes = max(1, processes)
    return [max(1, sessions // processes + (n < sessions % processes)) for n in range(processes)]


def new_bell() -> Semaphore:
    return SPAWN.Semaphore(0)


def ring(bells: Iterable[Semaphore]) -> None:
    """Tell the delivery processes there is new mail; never waits."""
    for bell in bells:
        try:
            bell.release()
        except (OSError, ValueError):  # at the semaphore's maximum: rung often enough
            pass


class DeliveryChild(Child):
    def __init__(self, settings: Settings, number: int, sessions: int, bell: Semaphore,
                 db_health: DatabaseHealth | None = None):
        super().__init__(f"delivery process {number}", f"lh-delivery-{number}", _delivery_main,
                         (settings, sessions, bell), db_health)


def _delivery_main(settings: Settings, sessions: int, bell: Semaphore, signals: Connection,
                   to_parent: Connection) -> None:
    ctx = child_context(settings, to_parent, "a delivery process")
    # What a killed process before us left half-sent is requeued now, not after its lease.
    ctx.db_health.attempt(stuck_sending_reset, ctx.clock.now())
    couriers = Couriers(ctx, sessions)
    couriers.start()
    threading.Thread(target=_hear_bell, args=(bell, couriers), name="liuhen-bell", daemon=True).start()
    to_parent.send_bytes(READY)
    try:
        while not wait(signals, None):  # only a stop (or the parent's end) ends it
            pass
    finally:
        couriers.stop()  # each finishes the mail it is sending and marks what went out


def _hear_bell(bell: Semaphore, couriers: Couriers) -> None:
    while True:
        bell.acquire()
        while bell.acquire(block=False):  # rung several times meanwhile: one wake-up
            pass
        couriers.wake()


class Couriers:
    def __init__(self, ctx: Context, sessions: int):
        self.ctx = ctx
        self._sessions = sessions
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._woken = 0  # wake-ups so far: a courier that missed one finds the count moved
        self._last_delivery = -BUSY_SECONDS  # time.monotonic() when a courier last sent mail
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        s = self.ctx.settings.delivery
        for n in range(max(1, self._sessions)):
            transport = make_transport(s, self.ctx.settings.maildir_path)
            thread = threading.Thread(target=self._run, args=(transport,), name=f"liuhen-courier-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def busy(self) -> bool:
        """Whether mail went out in the last BUSY_SECONDS."""
        return time.monotonic() - self._last_delivery < BUSY_SECONDS

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
                self._last_delivery = time.monotonic()
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
