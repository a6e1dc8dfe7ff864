"""The SMTP spool: where a mail is made durable before the client hears 250.

A spool file is written, fsync'd and renamed into `new/` (and the folder fsync'd), which
needs no database lock, so intake never waits for the processor's transaction. The
processor moves spooled mails into the database in batches and removes the files after the
commit. A crash between the two leaves a file whose mails are already in the database: their
dedupe keys make the second import a no-op.

Group commit: the fsyncs, not the bytes, are what a spool write costs (half the SMTP
process's CPU per mail). ``SpoolWriter`` writes every mail that arrived while the previous
write was on its way to disk into one file, so under load several mails share one pair of
fsyncs; a lone mail is written at once, as before.

File format: one JSON line listing the mails (queue id, envelope, size), then their raw
bytes one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.metrics import SPOOL_FSYNC

log = logging.getLogger(__name__)

MAX_MAILS_PER_FILE = 32
STALE_TMP_SECONDS = 600  # a file in tmp/ this old belongs to no write in progress, whatever its pid


@dataclass(frozen=True)
class SpooledMail:
    queue_id: str
    raw: bytes
    envelope_from: str | None
    envelope_to: list[str]
    received_at: datetime


def new_queue_id() -> str:
    """Unique, and sorting by it sorts by arrival."""
    return f"{time.time_ns():x}{uuid.uuid4().hex[:8]}".upper()


class Spool:
    def __init__(self, folder: Path):
        self.new = folder / "new"
        self.tmp = folder / "tmp"
        self.new.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.clean_tmp()

    def clean_tmp(self) -> None:
        """Remove what writes cut short (a crash, a kill) left in `tmp/`. The processor child,
        which opens the spool too, and other processes may be writing now: a file goes only
        when the process named in it has ended, or when it is stale. Should a live write lose
        its file all the same (a reused pid, a stalled disk), its rename fails and the sender
        hears 451 and retries."""
        stale_before = time.time() - STALE_TMP_SECONDS
        with os.scandir(self.tmp) as entries:
            for entry in entries:
                _, _, pid = entry.name.rpartition(".")
                with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
                    if (pid.isdigit() and not _process_exists(int(pid))) or entry.stat().st_mtime < stale_before:
                        os.unlink(entry.path)
                        log.info("removed %s, left in the spool by an interrupted write", entry.path)

    def write_file(self, mails: list[SpooledMail]) -> str:
        """Store mails durably in one file (named after the first queue id) and return its
        name; raises OSError when that is not possible."""
        head = json.dumps({"mails": [{"id": m.queue_id, "from": m.envelope_from, "to": m.envelope_to,
                                      "at": m.received_at.isoformat(), "size": len(m.raw)} for m in mails]})
        name = mails[0].queue_id
        tmp_path = self.tmp / f"{name}.{os.getpid()}"  # the writer's pid: see clean_tmp
        started = time.perf_counter()
        try:
            with open(tmp_path, "wb") as fh:
                fh.write(b"".join([head.encode(), b"\n", *(m.raw for m in mails)]))
                fh.flush()
                os.fsync(fh.fileno())
            # Appear complete or not at all (maildir's tmp → new), and make the rename durable.
            os.rename(tmp_path, self.new / name)
        except BaseException:
            # A full disk fails the write or the fsync: the empty or partial file must not stay.
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.new, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        SPOOL_FSYNC.observe(time.perf_counter() - started)
        return name

    def read(self, name: str) -> list[SpooledMail]:
        # Read a mail at a time, straight into its own bytes: slicing the whole file held a
        # large mail three times over.
        with open(self.new / name, "rb") as fh:
            header = json.loads(fh.readline())
            if "mails" not in header:  # a file from a version that spooled one mail per file
                body = fh.read()
                return [SpooledMail(name, body, header["from"], header["to"], datetime.fromisoformat(header["at"]))]
            mails = []
            for m in header["mails"]:
                raw = fh.read(m["size"])
                if len(raw) != m["size"]:
                    raise ValueError(f"spool file {name} is damaged: it ends inside mail {m['id']}")
                mails.append(SpooledMail(m["id"], raw, m["from"], m["to"], datetime.fromisoformat(m["at"])))
            if fh.read(1):
                raise ValueError(f"spool file {name} is damaged: it holds more bytes than it lists")
        return mails

    def set_aside(self, name: str) -> Path:
        """Move an unreadable file to `damaged/`, where an operator can look at it."""
        damaged = self.new.parent / "damaged"
        damaged.mkdir(exist_ok=True)
        target = damaged / name
        os.replace(self.new / name, target)
        return target

    def remove(self, names: list[str]) -> None:
        for name in names:
            (self.new / name).unlink(missing_ok=True)

    def pending(self) -> list[str]:
        """Names of files waiting to be imported, oldest first (names sort by time)."""
        return sorted(os.listdir(self.new))  # names, not Path objects: a backlog can be thousands


class SpoolWriter:
    """Group commit for SMTP intake: one thread writes whatever has queued up into one file.

    ``store`` is awaited by an SMTP session and returns the queue id once the mail is on
    disk, or raises what the write raised (the session then answers 451)."""

    def __init__(self, spool: Spool, on_stored: Callable[[], None]):
        self.spool = spool
        self.on_stored = on_stored
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="liuhen-spool", daemon=True)
        self._thread.start()

    async def store(self, raw: bytes, envelope_from: str | None, envelope_to: list[str],
                    received_at: datetime) -> str:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        mail = SpooledMail(new_queue_id(), raw, envelope_from, envelope_to, received_at)
        self._queue.put((mail, loop, done))
        await done
        return mail.queue_id

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping, failing = False, False
        while not stopping:
            batch = [self._queue.get()]
            while batch[-1] is not None and len(batch) < MAX_MAILS_PER_FILE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                stopping = True
                batch.pop()
            if not batch:
                continue
            error: Exception | None = None
            try:
                self.spool.write_file([mail for mail, _, _ in batch])
            except Exception as exc:  # the sessions answer 4xx; the thread goes on
                if not failing:  # once per outage: a full disk fails every write until it has space
                    log.error("could not spool mail (%s); answering 4xx until a write succeeds", exc,
                              exc_info=not isinstance(exc, OSError))
                failing, error = True, exc
            else:
                if failing:
                    log.info("spool writes succeed again")
                failing = False
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
            for _, loop, done in batch:
                by_loop.setdefault(loop, []).append(done)
            for loop, futures in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, futures, error)
                except RuntimeError:  # that loop has ended: nobody waits for the answer any more
                    pass
            if error is None:
                try:
                    self.on_stored()
                except Exception:  # the mails are safe on disk; the processor finds them on its next look
                    log.exception("could not wake the processor")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _settle(futures: list[asyncio.Future], error: Exception | None) -> None:
    for done in futures:
        if done.done():  # the session went away meanwhile; its sender will retry
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
