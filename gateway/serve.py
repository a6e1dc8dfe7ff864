"""`liuhen serve`: SMTP and IMAP intake, the processor, the outbox and the clock.

Intake threads only spool and wake the processor (gateway/processor.py), which imports
spooled mails into the database and takes them through the pipeline in arrival order; the
outbox loop delivers what is due. Whatever the last process left spooled or unprocessed is
found by the processor's first look; mails left half-sent are requeued at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.bootstrap import Context
from gateway.children import Child
from gateway.couriers import DeliveryChild, new_bell, session_shares
from gateway.delivery import Transport
from gateway.health import start_probe
from gateway.imap import Poller
from gateway.outbox import deliver_due, stuck_sending_reset
from gateway.processor import ChildProcessor, ThreadProcessor
from gateway.scheduler import sweep
from gateway.smtp import IntakeHandler, IntakeSessions, smtp_factory
from gateway.spool import Spool, SpoolWriter
from store.db import DATABASE_ERRORS, RETRY_MAX_SECONDS, DatabaseHealth, node_lock, single_node

log = logging.getLogger(__name__)

OUTBOX_POLL_SECONDS = 0.5
WATCH_SECONDS = 2.0  # how soon a dead processor child is replaced


async def run_gateway(ctx: Context, transport: Transport | None, stop: asyncio.Event,
                      on_ready: Callable[[], None] | None = None, separate_process: bool = False,
                      sweeps: bool = True) -> None:
    """Serve until `stop` is set; `on_ready` is called once mail is being accepted and
    processed. With transport None, mail is queued but not delivered.

    With `separate_process`, mails are processed in a child process, so SMTP intake and
    processing each have a CPU core instead of sharing one interpreter lock (2-3x the
    throughput under load). In-process processing follows the context's clock — what
    tests need. With `sweeps` off (tests), reminders run only when `sweep` is called.
    """
    loop = asyncio.get_running_loop()
    # Whatever has started is stopped again, in reverse order, however serving ends — also
    # when a later step fails (a port already taken must not leave the processor running).
    async with contextlib.AsyncExitStack() as started:
        if separate_process:  # `liuhen serve`: on SQLite, the only one on its database
            lock = single_node(ctx.db)
            if lock is not None:
                started.callback(lock.close)
        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="liuhen-work")  # outbox and sweeps
        started.callback(executor.shutdown, wait=True)
        spool = Spool(ctx.settings.data_path / "spool")
        stuck_sending_reset(ctx.clock.now())
        processor: ChildProcessor | ThreadProcessor
        if separate_process:
            # Under `serve` the processor child and the delivery processes deliver
            # (gateway/couriers.py); in-process (tests, demo) the outbox loop below does.
            d = ctx.settings.delivery
            shares = session_shares(d.sessions, d.processes) if transport is not None else [0]
            bells = tuple(new_bell() for _ in shares[1:])
            processor = ChildProcessor(ctx.settings, ctx.db_health, deliver_sessions=shares[0], bells=bells)
            children: list[Child] = [processor, *(DeliveryChild(ctx.settings, n, sessions, bell, ctx.db_health)
                                                  for n, (sessions, bell) in enumerate(zip(shares[1:], bells), 1))]
            for child in children:
                child.start()
                started.push_async_callback(loop.run_in_executor, None, child.stop)
            started.push_async_callback(_cancel, asyncio.create_task(_watch(children, ctx.db_health)))
        else:
            processor = ThreadProcessor(ctx, spool)
            processor.start()
            started.push_async_callback(loop.run_in_executor, None, processor.stop)
        writer = SpoolWriter(spool, processor.wake)
        started.push_async_callback(loop.run_in_executor, None, writer.close)
        for box in ctx.settings.imap:
            poller = Poller(ctx, box, processor.wake).start()
            started.push_async_callback(loop.run_in_executor, None, poller.stop)
        s = ctx.settings.smtp
        sessions = smtp_factory(ctx, IntakeHandler(ctx, writer))
        server = await loop.create_server(sessions, host=s.host, port=s.port)
        started.push_async_callback(_close_server, server, sessions)
        log.info("liuhen listening on %s:%s for @%s", s.host, s.port, ctx.settings.gateway.domain)
        probe = ctx.settings.probe
        if probe.port:
            # In the outbox's worker threads: they hold connections of their own (peewee's
            # are per thread), and a probe must not wait behind the event loop's work.
            probes = await start_probe(ctx, probe.host, probe.port,
                                       lambda read: loop.run_in_executor(executor, read))
            started.push_async_callback(_close_probe, probes)
            log.info("probes on http://%s:%s/readyz and /healthz", probe.host, probe.port)
        if transport is not None and not separate_process:
            outbox_task = asyncio.create_task(_outbox_loop(ctx, transport, executor))
            started.push_async_callback(_cancel, outbox_task)
        clock = AsyncIOScheduler(event_loop=loop)
        if sweeps:
            clock.add_job(_sweep, "interval", args=(ctx, executor), seconds=ctx.settings.reminders.sweep_seconds,
                          next_run_time=datetime.now(UTC), max_instances=1, coalesce=True)
        clock.start()
        started.callback(clock.shutdown, wait=False)
        if on_ready is not None:
            on_ready()
        await stop.wait()
    log.info("liuhen stopped")


async def _watch(children: list[Child], db_health: DatabaseHealth) -> None:
    """Bring a child back should it die (killed, out of memory): intake goes on spooling
    meanwhile, and nothing would process (or deliver) the mail until a restart otherwise."""
    loop = asyncio.get_running_loop()
    delay = WATCH_SECONDS
    while True:
        await asyncio.sleep(delay)
        if not db_health.available and not await _database_answers(loop, db_health):
            continue  # a new child could not connect either: it is started once the database is back
        try:
            for child in children:
                await loop.run_in_executor(None, child.ensure_running)
            delay = WATCH_SECONDS
        except RuntimeError as exc:  # the child's own error is in the log
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            log.error("%s; trying again in %.0f s", exc, delay)
            await _database_answers(loop, db_health)  # perhaps why: the outage is logged once, here
        except Exception:
            log.exception("a child process could not be started again; retrying")


async def _database_answers(loop: asyncio.AbstractEventLoop, db_health: DatabaseHealth) -> bool:
    """Whether the database answers (db_health logs an outage and its end once)."""
    try:
        await loop.run_in_executor(None, db_health.attempt, db_health.db.execute_sql, "SELECT 1")
    except DATABASE_ERRORS:
        return False
    return True


async def _close_server(server: asyncio.Server, sessions: IntakeSessions) -> None:
    """Accept no more connections, answer 421 to the open sessions (a mail being received
    may finish first), then wait for the server. Before the spool writer closes: a mail
    finishing within the grace period is still written."""
    server.close()
    await sessions.close_sessions()
    await server.wait_closed()


async def _close_probe(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _outbox_loop(ctx: Context, transport: Transport, executor: ThreadPoolExecutor) -> None:
    """Deliver what is due, then look again shortly (the queue lives in the database, so the
    child processor's mails are found the same way as our own)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            # In the worker thread: the connection a failure drops is that thread's own.
            while await loop.run_in_executor(executor, ctx.db_health.attempt, deliver_due, ctx, transport):
                pass
        except DATABASE_ERRORS:
            await asyncio.sleep(ctx.db_health.retry_delay())  # logged once per outage
            continue
        except Exception:
            log.exception("outbox delivery round failed; retrying")
        await asyncio.sleep(OUTBOX_POLL_SECONDS)


async def _sweep(ctx: Context, executor: ThreadPoolExecutor) -> None:
    """Reminders, escalations and digests: what is due is read from the store, so a missed
    or doubled run changes nothing (each mail has its key)."""
    if not ctx.working_now():
        # Outside working time nothing goes out; and a run that reads nothing must not tell
        # the database health that the database answered.
        return
    try:
        await asyncio.get_running_loop().run_in_executor(executor, ctx.db_health.attempt, _sweep_here, ctx)
    except DATABASE_ERRORS:
        pass  # logged once per outage; the next sweep catches up
    except Exception:
        log.exception("reminder sweep failed; the next one catches up")


def _sweep_here(ctx: Context) -> int:
    """One sweep, on one node at a time: another gateway on the same PostgreSQL sweeping now
    is left to it (the keys would stop doubles anyway; this saves the work)."""
    with node_lock(ctx.db, "liuhen:sweep") as ours:
        return sweep(ctx) if ours else 0


class GatewayThread:
    """Runs the gateway on a background event loop — for tests and `liuhen demo`."""

    def __init__(self, ctx: Context, transport: Transport | None):
        self.ctx = ctx
        self.transport = transport
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="liuhen-gateway", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_gateway(self.ctx, self.transport, self._stop, self._ready.set, sweeps=False)
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    def start(self) -> GatewayThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
