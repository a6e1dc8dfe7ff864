"""The processor: imports spooled mails into the database and takes stored mails through the
pipeline, in arrival order, a batch per transaction.

It runs as a thread beside SMTP intake (tests, `liuhen demo`) or, under `liuhen serve`, as
a child process with its own interpreter and database connection, so that parsing and
processing do not compete with the SMTP server for one interpreter lock.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
from typing import Callable, Protocol

from config.settings import Settings
from gateway.bootstrap import Context, build_context
from gateway.intake import import_spooled
from gateway.pipeline import process_batch
from gateway.spool import Spool

log = logging.getLogger(__name__)

BATCH = 16  # mails per transaction at most
RETRY_SECONDS = 30.0


class WorkQueue(Protocol):
    def get(self) -> str | int | None: ...
    def get_nowait(self) -> str | int | None: ...
    def put(self, item: str | int | None) -> None: ...
    def empty(self) -> bool: ...


def processor_loop(ctx: Context, spool: Spool, work: WorkQueue, on_processed: Callable[[], None]) -> None:
    """Process what arrives on `work` — spool queue ids (str) or stored inbound ids (int) —
    until it yields None."""
    stopping = False
    while not stopping:
        batch = [work.get()]
        # Under load, take what else is waiting (up to a bound) into the same commit.
        while len(batch) < BATCH and not work.empty():
            try:
                batch.append(work.get_nowait())
            except queue.Empty:
                break
        if None in batch:
            stopping = True
            batch = [i for i in batch if i is not None]
        if batch:
            _process(ctx, spool, work, batch)
            on_processed()
    ctx.db.close()


def _process(ctx: Context, spool: Spool, work: WorkQueue, batch: list[str | int]) -> None:
    spooled = [i for i in batch if isinstance(i, str)]
    inbound_ids = [i for i in batch if isinstance(i, int)]
    try:
        if spooled:
            inbound_ids += [s.inbound_id for s in import_spooled(ctx.db, spool, spooled) if not s.duplicate]
            spool.remove(spooled)
        process_batch(ctx, inbound_ids)
    except Exception:
        # The database is unreachable or broken: the mails stay spooled or 'received';
        # try them again in a while (and in any case on the next start).
        log.exception("could not import/process %d mail(s); retrying in %ss", len(batch), RETRY_SECONDS)
        retry = threading.Timer(RETRY_SECONDS, lambda: [work.put(i) for i in batch])
        retry.daemon = True
        retry.start()


class ThreadProcessor:
    def __init__(self, ctx: Context, spool: Spool, on_processed: Callable[[], None] = lambda: None):
        self.work: queue.Queue[str | int | None] = queue.Queue()
        self.thread = threading.Thread(target=processor_loop, args=(ctx, spool, self.work, on_processed),
                                       name="liuhen-processor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, item: str | int) -> None:
        self.work.put(item)

    def stop(self) -> None:
        self.work.put(None)
        self.thread.join()


class ChildProcessor:
    def __init__(self, settings: Settings, spool: Spool):
        mp = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or connections
        self.work = mp.Queue()
        self.process = mp.Process(target=_child_main, args=(settings, self.work), name="liuhen-processor")

    def start(self) -> None:
        self.process.start()

    def submit(self, item: str | int) -> None:
        self.work.put(item)

    def stop(self) -> None:
        self.work.put(None)
        self.process.join()


def _child_main(settings: Settings, work: WorkQueue) -> None:
    # The parent owns shutdown: Ctrl-C and SIGTERM reach the whole process group, and the
    # child must finish its batch and leave when the parent says so, not half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = build_context(settings)
    processor_loop(ctx, Spool(settings.data_path / "spool"), work, lambda: None)
