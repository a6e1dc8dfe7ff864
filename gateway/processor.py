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
import multiprocessing.process
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from config.settings import Settings
from gateway.bootstrap import Context, build_context
from gateway.budget import limit_memory
from gateway.couriers import Couriers
from gateway.intake import import_spooled, pending_ids, release_claims_of_the_gone
from gateway.logs import configure as configure_logging
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
_WAKE, _STOP, _READY = b"w", b"q", b"r"  # parent → child, and child → parent once it is ready
_DOWN, _UP = b"d", b"u"  # child → parent: the database went away (+ the error), is back


def processor_loop(ctx: Context, spool: Spool, signals: Connection,
                   after_round: Callable[[], None] | None = None) -> None:
    """Work until a stop signal arrives on `signals`. No failure ends it: the spool or the
    database being unavailable leaves the mails where they are, to be taken up again.
    `after_round` is called after every round that did work (the couriers: new mail)."""
    while True:
        try:
            worked = ctx.db_health.attempt(_round, ctx, spool)
            if worked and after_round is not None:
                after_round()
        except DATABASE_ERRORS:
            # Logged once per outage (db_health). New mail does not bring the next try
            # sooner: under load it would be a connection attempt per mail.
            if _pause(signals, ctx.db_health.retry_delay()):
                break
            continue
        except Exception:
            log.exception("could not import/process mail; it stays spooled or 'received'; retrying in %ss "
                          "or when new mail arrives", RETRY_SECONDS)
            if _wait(signals, RETRY_SECONDS):
                break
            continue
        if not worked:
            if _wait(signals, IDLE_SECONDS):  # idle: sleep until woken
                break
        elif _drain(signals):
            break
    drop_connection(ctx.db)


def _round(ctx: Context, spool: Spool) -> bool:
    """One batch of spooled mail, else of stored mail, else some catching up with the search
    index; False when there was nothing to do."""
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
    return _index(ctx) > 0


INDEX_BATCH = 10  # records indexed per idle moment: new mail never waits long behind indexing


def _index(ctx: Context) -> int:
    try:
        return index_pending(limit=INDEX_BATCH)
    except DATABASE_ERRORS:
        raise  # an outage, not a problem of indexing
    except Exception:
        log.exception("search indexing failed; it is retried when idle again")
        return 0


def _pause(signals: Connection, seconds: float) -> bool:
    """Sleep `seconds`, whatever wake-ups arrive meanwhile; True when told to stop."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if _wait(signals, left):
            return True
    return False


def _wait(signals: Connection, seconds: float) -> bool:
    """Sleep until woken or `seconds` pass; True when told to stop."""
    if signals.poll(seconds):
        return _drain(signals)
    return False


def _drain(signals: Connection) -> bool:
    """Read every pending signal; True if one of them says stop, or if the other end is
    gone (the serving process died: a processor left alone would only hold the database)."""
    stop = False
    try:
        while signals.poll(0):
            stop |= signals.recv_bytes() == _STOP
    except EOFError:
        return True
    return stop


class _Processor:
    def __init__(self) -> None:
        self._receive, self._send = multiprocessing.Pipe(duplex=False)
        self._lock = threading.Lock()  # intake threads wake it concurrently

    def wake(self) -> None:
        with self._lock:
            self._send.send_bytes(_WAKE)

    def _signal_stop(self) -> None:
        with self._lock:
            self._send.send_bytes(_STOP)


class ThreadProcessor(_Processor):
    def __init__(self, ctx: Context, spool: Spool):
        super().__init__()
        self.thread = threading.Thread(target=processor_loop, args=(ctx, spool, self._receive),
                                       name="liuhen-processor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._signal_stop()
        self.thread.join()


class ChildProcessor(_Processor):
    START_SECONDS = 60.0

    def __init__(self, settings: Settings, db_health: DatabaseHealth | None = None, deliver: bool = False):
        super().__init__()
        self._settings = settings
        self._deliver = deliver  # the child also delivers the outbox (gateway/couriers.py)
        self._db_health = db_health  # the parent's: the child's outages are logged there, once with its own
        self._mp = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or connections
        self._life = threading.Lock()  # a restart and a stop do not cross
        self._stopping = False
        self.process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        """Start the child and wait until it can process mail (it takes a few hundred ms to
        import and connect), so that `serve` opens its port only then, and fails at once,
        rather than spooling mail that nothing processes, when the child cannot start."""
        ready, ready_in_child = self._mp.Pipe(duplex=False)
        self.process = self._mp.Process(target=_child_main,
                                        args=(self._settings, self._receive, ready_in_child, self._deliver),
                                        name="liuhen-processor")
        self.process.start()
        ready_in_child.close()  # only the child writes to it: a child that dies early reads as EOF
        try:
            if ready.poll(self.START_SECONDS) and ready.recv_bytes() == _READY:
                threading.Thread(target=self._hear_db_health, args=(ready,), name="liuhen-processor-news",
                                 daemon=True).start()
                return
        except EOFError:  # the child ended before it was ready
            pass
        ready.close()
        self.process.kill()
        self.process.join()
        raise RuntimeError("the mail processor could not start; its error is in the log above")

    def _hear_db_health(self, news: Connection) -> None:
        """What the child finds about the database, until it ends."""
        with news:
            while True:
                try:
                    message = news.recv_bytes()
                except (EOFError, OSError):
                    return
                if self._db_health is None:
                    continue
                if message == _UP:
                    self._db_health.came_back()
                else:
                    self._db_health.went_down(message[len(_DOWN):].decode())

    def ensure_running(self) -> None:
        """Start the child again if it has died (it never ends by itself: a crash or a kill).
        The mails meanwhile wait in the spool; the new child finds them."""
        with self._life:
            if self._stopping or self.process is None or self.process.is_alive():
                return
            log.error("the mail processor exited (code %s); starting it again", self.process.exitcode)
            self.start()

    def stop(self) -> None:
        with self._life:
            self._stopping = True
        self._signal_stop()
        if self.process is not None:
            self.process.join()


def _child_main(settings: Settings, signals: Connection, to_parent: Connection, deliver: bool = False) -> None:
    # The parent owns shutdown: Ctrl-C and SIGTERM reach the whole process group, and the
    # child must finish its batch and leave when the parent says so, not half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(settings)
    try:
        ctx = build_context(settings)
    except DATABASE_ERRORS as exc:  # gone since the parent started: it starts a new child later
        log.error("the mail processor cannot reach the database: %s", " ".join(str(exc).split()))
        raise SystemExit(75) from None  # EX_TEMPFAIL
    spool = Spool(settings.data_path / "spool")
    limit_memory(settings.processing.memory_mb)  # a mail needing more fails alone (pipeline)
    # What a killed child before us had taken up is free again at once, not after its lease.
    ctx.db_health.attempt(release_claims_of_the_gone, ctx.clock.now())

    def tell_parent(error: str | None) -> None:
        try:
            to_parent.send_bytes(_UP if error is None else _DOWN + error.encode())
        except OSError:  # the parent is gone; the signals pipe tells the loop to end
            pass

    ctx.db_health.tell = tell_parent
    couriers = Couriers(ctx) if deliver else None
    if couriers is not None:
        # What a killed child before us left half-sent is requeued now, not after its lease.
        ctx.db_health.attempt(stuck_sending_reset, ctx.clock.now())
        couriers.start()
    to_parent.send_bytes(_READY)
    try:
        processor_loop(ctx, spool, signals, after_round=couriers.wake if couriers else None)
    finally:
        if couriers is not None:
            couriers.stop()  # each finishes the mail it is sending and marks what went out
