"""How the gateway is doing: whether its database answers, and how much mail waits where.

`liuhen status` prints it; `serve`'s probe listener ([probe] port) serves it as GET /readyz
with ``health(ctx)`` — HTTP 200 when ``ready``, else 503, the dict as JSON.
While the database is away, SMTP still accepts mail (the spool holds it): the spool backlog
is what grows, and what drains when it is back.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from peewee import Database, fn

from config.settings import Settings
from gateway.bootstrap import Context
from gateway.metrics import CONTENT_TYPE, metrics_text
from store.db import DATABASE_ERRORS, DatabaseHealth
from store.models import InboundMessage, OutboundMessage


def health(ctx: Context) -> dict[str, Any]:
    """The report from inside a running gateway: also says since when its loops have found
    the database away (they retry with backoff)."""
    return report(ctx.settings, ctx.db, ctx.db_health, now=ctx.clock.now())


def report(settings: Settings, db: Database | None, db_health: DatabaseHealth | None = None,
           error: str = "", now: datetime | None = None) -> dict[str, Any]:
    """`db` None: it could not be opened (`error` says why)."""
    now = now or datetime.now(UTC)
    database: dict[str, Any] = {"reachable": False, "url": _without_password(settings.database_url),
                                "error": error, "unavailable_since": None}
    inbound = outbox = None
    if db is not None:
        try:
            inbound, outbox = _counts(db, db_health, now)
            database["reachable"] = True
        except DATABASE_ERRORS as exc:
            database["error"] = " ".join(str(exc).split())
    if db_health is not None and not db_health.available:
        database["reachable"] = False
        database["error"] = database["error"] or db_health.error
        database["unavailable_since"] = db_health.unavailable_since.isoformat() if db_health.unavailable_since else None
    return {"ready": database["reachable"], "database": database,
            "spool": _spool(settings.data_path / "spool" / "new", now), "inbound": inbound, "outbox": outbox}


def _counts(db: Database, db_health: DatabaseHealth | None,
            now: datetime) -> tuple[dict[str, int], dict[str, Any]]:
    def read() -> tuple[dict[str, int], dict[str, Any]]:
        with db.atomic():  # one snapshot of both tables
            # (value, count) rows; peewee's stubs type .tuples() as model objects
            inbound = dict(cast(Iterable[tuple[str, int]], InboundMessage.select(
                InboundMessage.state, fn.COUNT(InboundMessage.id)).group_by(InboundMessage.state).tuples()))
            by_status = dict(cast(Iterable[tuple[str, int]], OutboundMessage.select(
                OutboundMessage.status, fn.COUNT(OutboundMessage.id)).group_by(OutboundMessage.status).tuples()))
            first = OutboundMessage.select(OutboundMessage.created_at).where(
                OutboundMessage.status == "queued").order_by(OutboundMessage.created_at).first()
        outbox: dict[str, Any] = {status: by_status.get(status, 0) for status in ("queued", "sending", "failed")}
        outbox |= by_status
        outbox["oldest_queued_seconds"] = _age(now, first.created_at if first else None)
        return inbound, outbox

    return db_health.attempt(read) if db_health is not None else read()


def _spool(folder: Path, now: datetime) -> dict[str, Any]:
    """Mail accepted over SMTP and not yet in the database (files in the spool's `new/`)."""
    try:
        names = sorted(os.listdir(folder))  # names sort by arrival
    except FileNotFoundError:
        return {"waiting_files": 0, "oldest_seconds": None}
    oldest = None
    for name in names:
        try:
            oldest = datetime.fromtimestamp((folder / name).stat().st_mtime, UTC)
            break
        except FileNotFoundError:  # imported meanwhile
            continue
    return {"waiting_files": len(names), "oldest_seconds": _age(now, oldest)}


def _age(now: datetime, then: datetime | None) -> float | None:
    if then is None:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return round(max(0.0, (now - then).total_seconds()), 1)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# ---------------------------------------------------------------------------------------
# Probes over HTTP, for a supervisor (systemd, Kubernetes, a load balancer)

PROBE_TIMEOUT_SECONDS = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def start_probe(ctx: Context, host: str, port: int,
                      run: Callable[[Callable[[], dict[str, Any]]], Awaitable[dict[str, Any]]]) -> asyncio.Server:
    """Answer GET /healthz (this process answers) and GET /readyz (200 when the database
    answers, else 503; the body is `health(ctx)` as JSON). `run` runs the database read off
    the event loop. One request per connection: a probe needs no more."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PROBE_TIMEOUT_SECONDS)
            body: dict[str, Any]
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body = 405, {"error": "GET only"}
            elif path == b"/healthz":
                status, body = 200, {"alive": True}
            elif path == b"/readyz":
                body = await run(lambda: health(ctx))
                status = 200 if body["ready"] else 503
            elif path == b"/metrics":
                try:
                    text = await run(lambda: {"text": metrics_text(ctx)})
                except DATABASE_ERRORS:
                    status, body = 503, {"error": "database unavailable"}
                else:
                    await _answer(writer, method, 200, text["text"], CONTENT_TYPE)
                    return
            else:
                status, body = 404, {"error": "no such probe: /healthz, /readyz, /metrics"}
            await _answer(writer, method, status, json.dumps(body, ensure_ascii=False).encode(), "application/json")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that sent no whole request, or left: nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port, limit=8192)


async def _answer(writer: asyncio.StreamWriter, method: bytes, status: int, data: bytes, content_type: str) -> None:
    writer.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                 + (data if method != b"HEAD" else b""))
    await writer.drain()
