"""`serve`'s worker processes: the mail processor (gateway/processor.py) and the extra
delivery processes (gateway/couriers.py), each in an interpreter of its own, so that SMTP
intake, processing and delivery do not take turns at one interpreter lock.

The parent (`Child`) starts one, waits until it says it is ready, hears what it finds about
the database (so an outage is logged once, however many processes notice it), starts it
again when it has died, and stops it by a byte on a pipe. The pipe's other end also carries
wake-ups ("look again"). A child ignores SIGINT/SIGTERM: the parent owns shutdown, and a
child finishes its batch and leaves when told to, not half-way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
from gateway.logs import configure as configure_logging
from store.db import DATABASE_ERRORS, DatabaseHealth

log = logging.getLogger(__name__)

WAKE, STOP, READY = b"w", b"q", b"r"  # parent → child, and child → parent once it is ready
DOWN, UP = b"d", b"u"  # child → parent: the database went away (+ the error), is back
SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or connections

# The child's main function: called with its own arguments, then the signals pipe (read end)
# and the pipe to the parent (write end).
ChildMain = Callable[..., None]


class Child:
    START_SECONDS = 60.0

    def __init__(self, name: str, title: str, main: ChildMain, args: tuple, db_health: DatabaseHealth | None = None):
        self.name = name  # what the log calls it: "the mail processor", "delivery process 1"
        self.title = title  # what ps and top call it (at most 15 characters): "lh-processor"
        self._main, self._args = main, args
        self._receive, self._send = multiprocessing.Pipe(duplex=False)  # kept across restarts
        self._lock = threading.Lock()  # intake threads wake it concurrently
        self._db_health = db_health  # the parent's: the child's outages are logged there, once with its own
        self._life = threading.Lock()  # a restart and a stop do not cross
        self._stopping = False
        self.process: multiprocessing.process.BaseProcess | None = None

    def wake(self) -> None:
        with self._lock:
            self._send.send_bytes(WAKE)

    def start(self) -> None:
        """Start the child and wait until it can work (it takes a few hundred ms to import
        and connect), so that `serve` opens its port only then, and fails at once, rather
        than spooling mail that nothing processes, when the child cannot start."""
        ready, ready_in_child = SPAWN.Pipe(duplex=False)
        self.process = SPAWN.Process(target=self._main, args=(*self._args, self._receive, ready_in_child),
                                     name=self.title)
        self.process.start()
        ready_in_child.close()  # only the child writes to it: a child that dies early reads as EOF
        try:
            if ready.poll(self.START_SECONDS) and ready.recv_bytes() == READY:
                threading.Thread(target=self._hear_db_health, args=(ready,), name=f"{self.process.name}-news",
                                 daemon=True).start()
                return
        except EOFError:  # the child ended before it was ready
            pass
        ready.close()
        self.process.kill()
        self.process.join()
        raise RuntimeError(f"{self.name} could not start; its error is in the log above")

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
                if message == UP:
                    self._db_health.came_back()
                else:
                    self._db_health.went_down(message[len(DOWN):].decode())

    def ensure_running(self) -> None:
        """Start the child again if it has died (it never ends by itself: a crash or a kill).
        Its work meanwhile waits (in the spool, in the outbox); the new child finds it."""
        with self._life:
            if self._stopping or self.process is None or self.process.is_alive():
                return
            log.error("%s exited (code %s); starting it again", self.name, self.process.exitcode)
            self.start()

    def stop(self) -> None:
        with self._life:
            self._stopping = True
        with self._lock:
            self._send.send_bytes(STOP)
        if self.process is not None:
            self.process.join()


def child_context(settings: Settings, to_parent: Connection, what: str) -> Context:
    """The child's side of starting: signals left to the parent, logging, the database, and
    its findings about the database told to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _set_title(multiprocessing.current_process().name)
    configure_logging(settings)
    try:
        ctx = build_context(settings)
    except DATABASE_ERRORS as exc:  # gone since the parent started: it starts a new child later
        log.error("%s cannot reach the database: %s", what, " ".join(str(exc).split()))
        raise SystemExit(75) from None  # EX_TEMPFAIL

    def tell_parent(error: str | None) -> None:
        try:
            to_parent.send_bytes(UP if error is None else DOWN + error.encode())
        except OSError:  # the parent is gone; the signals pipe tells the child to end
            pass

    ctx.db_health.tell = tell_parent
    return ctx


def _set_title(title: str) -> None:
    """The name `ps -o comm`, top and /proc/PID/comm show (Linux; elsewhere nothing): every
    child's command line is Python's `spawn_main`, the same for all."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, title.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


_PR_SET_NAME = 15


def wait(signals: Connection, seconds: float | None) -> bool:
    """Sleep until woken or `seconds` pass (None: for ever); True when told to stop."""
    if signals.poll(seconds):
        return drain(signals)
    return False


def pause(signals: Connection, seconds: float) -> bool:
    """Sleep `seconds`, whatever wake-ups arrive meanwhile; True when told to stop."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if wait(signals, left):
            return True
    return False


def drain(signals: Connection) -> bool:
    """Read every pending signal; True if one of them says stop, or if the other end is
    gone (the serving process died: a child left alone would only hold the database)."""
    stop = False
    try:
        while signals.poll(0):
            stop |= signals.recv_bytes() == STOP
    except EOFError:
        return True
    return stop
