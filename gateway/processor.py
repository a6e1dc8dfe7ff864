"""The processor: imports spooled mails into the database and takes stored mails through the
pipeline, in arrival order, a batch per transaction.

There is no queue to lose: the work is whatever lies in the spool and whatever stored mail is
still 'received' — after a crash, the same scan simply finds it again. Intake only says
"look again" by writing a byte to a pipe. The processor runs as a thread beside SMTP intake
(tests, `liuhen demo`) or, under `liuhen serve`, as a child process with its own interpreter
and database connection, so that processing does not compete with the SMTP server for one
interpreter lock.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Semaphore

from config.settings import Settings
from gateway.bootstrap import Context
from gateway.budget import limit_memory
from gateway.children import READY, STOP, WAKE, Child, child_context, drain, pause, wait
from gateway.couriers import Couriers, ring
from gateway.intake import import_spooled, pending_ids, release_claims_of_the_gone
from gateway.outbox import stuck_sending_reset
from gateway.pipeline import process_batch
from gateway.spool import Spool
from store.archive import index_pending
from store.db import DATABASE_ERRORS, DatabaseHealth, drop_connection

log = logging.getLogger(__name__)

BATCH = 16  # stored mails per transaction at most
SPOOL_FILES = 8  # spool files per transaction; each holds the mails of one group commit (usually 1–4)
IDLE_SECONDS = 5.0  # look again this often even without a wake-up (mail stored by `liuhen ingest`)
RETRY_SECONDS = 30.0  # after an error that is not the database's
BUSY_SECONDS = 0.5  # while mail is going out, look again this often whether indexing may go on


def processor_loop(ctx: Context, spool: Spool, signals: Connection,
                   after_round: Callable[[], None] | None = None,
                   delivering: Callable[[], bool] = lambda: False) -> None:
    """Work until a stop signal arrives on `signals`. No failure ends it: the spool or the
    database being unavailable leaves the mails where they are, to be taken up again.
    `after_round` is called after every round that did work (the couriers: new mail); while
    `delivering()` says mail is going out, search indexing waits (people wait for mail, not
    for the index)."""
    while True:
        try:
            busy = delivering()
            worked = ctx.db_health.attempt(_round, ctx, spool, not busy)
            if worked and after_round is not None:
                after_round()
        except DATABASE_ERRORS:
            # Logged once per outage (db_health). New mail does not bring the next try
            # sooner: under load it would be a connection attempt per mail.
            if pause(signals, ctx.db_health.retry_delay()):
                break
            continue
        except Exception:
            log.exception("could not import/process mail; it stays spooled or 'received'; retrying in %ss "
                          "or when new mail arrives", RETRY_SECONDS)
            if wait(signals, RETRY_SECONDS):
                break
            continue
        if not worked:
            if wait(signals, BUSY_SECONDS if busy else IDLE_SECONDS):  # idle: sleep until woken
                break
        elif drain(signals):
            break
    drop_connection(ctx.db)


def _round(ctx: Context, spool: Spool, may_index: bool = True) -> bool:
    """One batch of spooled mail, else of stored mail, else (`may_index`) some catching up
    with the search index; False when there was nothing to do."""
    spooled = spool.pending()[:SPOOL_FILES]
    if spooled:
        imported = [s.row for s in import_spooled(ctx.db, spool, spooled) if s.row is not None]
        spool.remove(spooled)
        process_batch(ctx, [row.id for row in imported], imported)
        return True
    stored = pending_ids(ctx.db, ctx.clock.now(), limit=BATCH)
    if stored:
        process_batch(ctx, stored)
        return True
    return may_index and _index(ctx) > 0


INDEX_BATCH = 10  # records indexed per idle moment: new mail never waits long behind indexing


def _index(ctx: Context) -> int:
    try:
        return index_pending(limit=INDEX_BATCH)
    except DATABASE_ERRORS:
        raise  # an outage, not a problem of indexing
    except Exception:
        log.exception("search indexing failed; it is retried when idle again")
        return 0


class ThreadProcessor:
    """The processor as a thread beside intake (tests, `liuhen demo`)."""

    def __init__(self, ctx: Context, spool: Spool):
        self._receive, self._send = multiprocessing.Pipe(duplex=False)
        self._lock = threading.Lock()  # intake threads wake it concurrently
        self.thread = threading.Thread(target=processor_loop, args=(ctx, spool, self._receive),
                                       name="liuhen-processor", daemon=True)

    def wake(self) -> None:
        with self._lock:
            self._send.send_bytes(WAKE)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self._lock:
            self._send.send_bytes(STOP)
        self.thread.join()


class ChildProcessor(Child):
    """The processor as `serve`'s child process. With `deliver_sessions`, it also delivers
    over that many smarthost sessions (gateway/couriers.py), and after every round that
    queued mail it rings `bells`, the delivery processes' (gateway/couriers.py)."""

    def __init__(self, settings: Settings, db_health: DatabaseHealth | None = None, deliver_sessions: int = 0,
                 bells: tuple[Semaphore, ...] = ()):
        super().__init__("the mail processor", "lh-processor", _child_main, (settings, deliver_sessions, bells),
                         db_health)


def _child_main(settings: Settings, deliver_sessions: int, bells: tuple[Semaphore, ...], signals: Connection,
                to_parent: Connection) -> None:
    ctx = child_context(settings, to_parent, "the mail processor")
    spool = Spool(settings.data_path / "spool")
    limit_memory(settings.processing.memory_mb)  # a mail needing more fails alone (pipeline)
    # What a killed child before us had taken up is free again at once, not after its lease.
    ctx.db_health.attempt(release_claims_of_the_gone, ctx.clock.now())
    couriers = Couriers(ctx, deliver_sessions) if deliver_sessions else None
    if couriers is not None:
        # What a killed child before us left half-sent is requeued now, not after its lease.
        ctx.db_health.attempt(stuck_sending_reset, ctx.clock.now())
        couriers.start()

    def new_mail() -> None:
        if couriers is not None:
            couriers.wake()
        ring(bells)

    to_parent.send_bytes(READY)
    try:
        processor_loop(ctx, spool, signals, after_round=new_mail,
                       delivering=couriers.busy if couriers is not None else lambda: False)
    finally:
        if couriers is not None:
            couriers.stop()  # each finishes the mail it is sending and marks what went out
