#!/usr/bin/env python3
"""Delivery benchmark: SMTP request → record → its mails accepted (250) by the smarthost.

    .venv/bin/python bench/deliver.py [--requests 200] [--rounds 3] [--latency-seconds 10]
                                      [--latency-rate 50] [--burst 10000] [--db sqlite|postgresql] [--keep]

What a user waits for is a mail that has left the gateway, not one that is queued. So every
figure here ends at the sink: an aiosmtpd server in this process (a thread of its own, on
127.0.0.1) standing in for the smarthost. Like Postfix and Exchange it offers PIPELINING
(RFC 2920). It answers 250 to every mail and notes, per mail,
when it arrived (perf_counter, the same clock as our SMTP clients) and which request it
belongs to: every mail of a record carries the Message-ID of the request that opened it in
its References (store/repositories.py record_threads), and our request Message-IDs name the
request (make_msgid idstring "<tag>.<i>"); the record ID ([PRJ-2026-0001]) is read from the
Subject as well. The gateway is the real `liuhen serve` subprocess (`python -m gateway.cli
--config FILE serve`) with [delivery] mode = "smtp" pointing at the sink, [web] enabled = false
and [reminders] business_hours = false, so it measures whichever delivery code is in the tree.
Each request is bench/ingest.py's ~4 KB Chinese project request with 优先级：高 and its dates a
month ahead, which makes 4 mails: the initiator's ack, two requests, the head's copy (checked:
the sink's count per request and the outbox's count per kind are printed).

Phase 1 (throughput), --rounds times, each round pairs back to back:
  bare     the same N request mails, 4 client threads (smtplib, one connection per message),
           to bench/ingest.py's bare aiosmtpd subprocess that only answers 250:
           bare rate = N / (first send → last 250)   [requests accepted per second]
  gateway  the same N mails to a fresh `liuhen serve` with a fresh database:
           delivered rate = N / (first send → the sink holds all 4N mails)
           mail rate      = 4N / the same time
  ratio = delivered rate / bare rate; the verdict is on the median of the rounds' ratios
  (target ≥ 1/3), because a short bare run swings with whatever else the machine does.
  Beside each run, the CPU it cost per request: the server's processes (from /proc) and this
  process's (client threads, and the sink for the gateway); the rounds' medians give the rate
  at which that CPU fills every core of the machine, a ceiling no design beats without
  costing less CPU per request (printed with the ratio it would mean).
Phase 2 (latency): a fresh gateway and database; requests at a steady --latency-rate (50/s) for
  --latency-seconds (10). Latency per request = arrival of its last mail at the sink − the moment
  our client got the 250 for the request. Target: p99 < 1 s.
Phase 3 (burst drain): `serve --no-delivery` takes --burst/4 requests (2,500) and is stopped once
  all --burst (10,000) mails are queued in the outbox; then `serve` is started normally on the
  same data and database. Drain rate = mails / (process start → the sink holds all of them);
  nothing is subtracted (start-up included). Target ≥ 1,000 mails/s.

The database is SQLite in a temporary directory (WAL, synchronous=FULL, as the gateway opens it)
or, with --db postgresql, a throw-away schema of $LIUHEN_BENCH_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test) per gateway, dropped at the end. The sink runs in this
process beside the client threads: on a small machine it competes with them (and the gateway)
for CPU, which makes the gateway figures, if anything, pessimistic. Stock aiosmtpd reads DATA
line by line (~1 ms of CPU per 20 KB mail, a ceiling near the 1,000 mails/s target), so the
sink reads each message in a few reads instead (SinkSMTP); its ceiling is measured first,
from a client process with 4 kept-open sessions, and printed for reference. LIUHEN_* variables are
not passed to the gateway. [reminders] digest_time is 23:59, so no daily digest interferes
unless a run crosses 23:59 Asia/Shanghai (mails the sink cannot attribute are counted apart).
A benchmark, not a test: it prints numbers and exits 0 (1 only if a server cannot be started).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header, decode_header
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ingest.py, also when run as bench.deliver

import ingest
from ingest import CLIENTS, DOMAIN, HOST, RCPT, REPO, SENDER, Sent, blast, free_port, pct, refused, send_one

PG_URL = os.environ.get("LIUHEN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MAILS_PER_REQUEST = 4  # ack, request × 2, the head's copy (优先级：高)
CLIENT_DOMAIN = "bench.client.example.cn"
STALL_SECONDS = 30.0  # no mail reaching the sink for this long: the wait gives up
POLL_SECONDS = 0.1
# The request a mail belongs to: "<tag>.<i>" from the request's Message-ID in its References.
_REQUEST_ID = re.compile(rb"<[^<>\s]*?\.([a-z]+\.\d+)@" + re.escape(CLIENT_DOMAIN.encode()) + rb">")
_SUBJECT = re.compile(rb"^Subject:[ \t]*(.*(?:\r\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)
_RECORD_REF = re.compile(r"\[([A-Z]+-\d{4}-\d+)\]")


# --------------------------------------------------------------------------- messages

def _mail(subject: str, i: int, n_sentences: int, tag: str) -> bytes:
    """bench/ingest.py's request, high priority (so the head gets a copy), dates a month ahead."""
    soon = datetime.now() + timedelta(days=30)
    body = (ingest._body(subject, i, n_sentences).replace("优先级：中", "优先级：高")
            .replace("2027-03-20 18:00", soon.strftime("%Y-%m-%d 18:00"))
            .replace("2027-03-10 14:00", (soon - timedelta(days=5)).strftime("%Y-%m-%d 14:00")))
    msg = MIMEText(body, "plain", "utf-8")
    msg["From"] = f"=?utf-8?b?6ZmI6Z2Z?= <{SENDER}>"  # 陈静
    msg["To"] = RCPT
    msg["Subject"] = Header(subject, "utf-8")  # type: ignore[assignment]  # compat32 takes a Header; typeshed says str
    msg["Message-ID"] = make_msgid(idstring=f"{tag}.{i}", domain=CLIENT_DOMAIN)
    msg["Date"] = formatdate(localtime=True)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def build_messages(count: int, tag: str) -> list[bytes]:
    n_sentences = 1
    while len(_mail("智能手表项目-硬件方案评审 #000000", 0, n_sentences, tag)) < ingest.TARGET_BYTES:
        n_sentences += 1
    return [_mail(f"智能手表项目-硬件方案评审 #{tag}-{i:06d}", i, n_sentences, tag) for i in range(count)]


# --------------------------------------------------------------------------- the sink (smarthost)

@dataclass
class Arrival:
    at: float  # perf_counter when the DATA was accepted (just before the 250 goes back)
    request: str | None  # "<tag>.<i>" of the request the mail belongs to, None if not found
    ref: str  # the record ID from the Subject, "" if none


class SinkHandler:
    """Answers 250 to every mail and notes when it came and whose it is."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.arrivals: list[Arrival] = []
        self.matched = 0
        self.connections = 0

    def reset(self) -> None:
        with self.cond:
            self.arrivals, self.matched, self.connections = [], 0, 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        with self.cond:
            self.connections += 1  # one EHLO per session (another after STARTTLS, which the sink does not offer)
        # PIPELINING as Postfix and Exchange offer it (aiosmtpd reads pipelined commands in order).
        return [responses[0], "250-PIPELINING", *responses[1:]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.perf_counter()
        raw: bytes = envelope.content
        end = raw.find(b"\r\n\r\n")
        head = raw if end < 0 else raw[:end + 2]
        m = _REQUEST_ID.search(head)
        arrival = Arrival(at, m.group(1).decode() if m else None, _subject_ref(head))
        with self.cond:
            self.arrivals.append(arrival)
            if arrival.request is not None:
                self.matched += 1
            self.cond.notify_all()
        return "250 OK"

    def wait(self, target: int, timeout: float, stall: float = STALL_SECONDS) -> float | None:
        """Until `target` mails of requests have arrived: the perf_counter of the one that
        completed the count, or None after `timeout` or `stall` seconds without any mail."""
        deadline = time.perf_counter() + timeout
        with self.cond:
            while self.matched < target:
                now = time.perf_counter()
                last = self.arrivals[-1].at if self.arrivals else now
                if now >= deadline or (self.arrivals and now - last > stall):
                    return None
                self.cond.wait(min(1.0, deadline - now))
            return [a.at for a in self.arrivals if a.request is not None][target - 1]

    def snapshot(self) -> tuple[list[Arrival], int]:
        with self.cond:
            return list(self.arrivals), self.connections


def _subject_ref(head: bytes) -> str:
    m = _SUBJECT.search(head)
    if not m:
        return ""
    try:
        text = "".join(part.decode(charset or "ascii", "replace") if isinstance(part, bytes) else part
                       for part, charset in decode_header(m.group(1).decode("ascii", "replace")))
    except Exception:
        return ""
    ref = _RECORD_REF.search(text)
    return ref.group(1) if ref else ""


class SinkSMTP(SMTP):
    """aiosmtpd with a cheaper DATA: stock aiosmtpd reads the message line by line (~1 ms of
    CPU for a 20 KB mail — the sink alone would top out near 1,000 mails/s); this reads up to
    each ".<CRLF>" and checks whether it starts a line. The rest of the protocol is aiosmtpd's.
    No size limit (a sink). Uses aiosmtpd 1.4 internals; see FAST_DATA."""

    line_length_limit = 4 * 1024 * 1024  # the StreamReader's limit: a whole mail in one read

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await self._read_until(b"\r\n")
        if data == b".\r\n":
            data.clear()
        else:
            while not data.endswith(b"\r\n.\r\n"):  # data ends with CRLF here: the end is a line "."
                data += await self._read_until(b".\r\n")
            del data[-3:]
        content = bytes(data).replace(b"\r\n..", b"\r\n.")  # RFC 5321 §4.5.2 transparency
        if content.startswith(b".."):
            content = content[1:]
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_until(self, separator: bytes) -> bytearray:
        data = bytearray()
        while True:
            try:
                data += await self._reader.readuntil(separator)
                return data
            except asyncio.LimitOverrunError as exc:  # more than line_length_limit before it
                data += await self._reader.readexactly(exc.consumed)


# The internals SinkSMTP.smtp_DATA relies on; another aiosmtpd falls back to its own DATA.
FAST_DATA = all(hasattr(SMTP, name) for name in ("_call_handler_hook", "_set_post_data_state", "check_helo_needed",
                                                 "check_auth_needed", "line_length_limit"))


class SinkController(Controller):
    def factory(self) -> SMTP:
        return (SinkSMTP if FAST_DATA else SMTP)(self.handler, **self.SMTP_kwargs)


@contextlib.contextmanager
def running_sink() -> Iterator[tuple[SinkHandler, int]]:
    handler = SinkHandler()
    port = free_port()
    controller = SinkController(handler, hostname=HOST, port=port, enable_SMTPUTF8=True, decode_data=False,
                                ident="bench sink")
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def sink_client(port: int, count: int, sessions: int) -> None:
    """The calibration client (a process of its own): `count` ~20 KB mails — the size of the
    gateway's text + HTML mails — over `sessions` SMTP sessions kept open, back to back."""
    text = "".join(ingest.PROSE) * 6
    raw = MIMEText(text, "plain", "utf-8").as_bytes(policy=compat32.clone(linesep="\r\n"))
    per = -(-count // sessions)

    def run() -> None:
        with smtplib.SMTP(HOST, port, timeout=ingest.SMTP_TIMEOUT) as smtp:
            for _ in range(per):
                smtp.sendmail("liuhen@liuhen.test", ["wang.qiang@liuhen.localhost"], raw)

    threads = [threading.Thread(target=run) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def calibrate_sink(sink: SinkHandler, port: int, count: int = 4000, sessions: int = 4) -> float | None:
    """The sink's own ceiling, mails/s: what it accepts from a client that does nothing else."""
    sink.reset()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--sink-client", str(port), str(count),
                           str(sessions)], capture_output=True, timeout=300)
    arrivals, _ = sink.snapshot()
    sink.reset()
    if done.returncode != 0 or len(arrivals) < 2:
        return None
    return (len(arrivals) - 1) / (arrivals[-1].at - arrivals[0].at)


def per_request(arrivals: list[Arrival]) -> dict[str, list[float]]:
    by: dict[str, list[float]] = {}
    for a in arrivals:
        if a.request is not None:
            by.setdefault(a.request, []).append(a.at)
    return by


def sink_summary(arrivals: list[Arrival], connections: int, requests: int) -> str:
    by = per_request(arrivals)
    counts = Counter(len(v) for v in by.values())
    if len(by) < requests:
        counts[0] += requests - len(by)
    other = sum(a.request is None for a in arrivals)
    refs = len({a.ref for a in arrivals if a.ref})
    return (f"sink: {len(arrivals)} mails over {connections} SMTP session(s); mails per request "
            f"{dict(sorted(counts.items()))}; {refs} record IDs in subjects"
            + (f"; !! {other} mail(s) of no request" if other else ""))


# --------------------------------------------------------------------------- gateway and database

class Process(ingest.Server):
    """ingest.Server (SIGTERM, then SIGKILL; log to a file) without the LIUHEN_* environment,
    which would override the config file (LIUHEN_DATABASE_URL)."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path):
        self.name, self.port, self.log_path = name, port, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)


class Db:
    """Read-only looks at the gateway's database."""

    def __init__(self, url: str):
        self.url = url
        self.conn: Any
        if url.startswith("sqlite:///"):
            self.conn = ingest.open_ro(Path(url.removeprefix("sqlite:///")))
            self.pg = False
        else:
            import psycopg2

            self.conn = psycopg2.connect(url)
            self.conn.autocommit = True
            self.pg = True

    def rows(self, sql: str) -> list[tuple]:
        if not self.pg:
            return self.conn.execute(sql).fetchall()
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def scalar(self, sql: str) -> int:
        return self.rows(sql)[0][0]

    def queued(self) -> int:
        return self.scalar("SELECT count(*) FROM outboundmessage WHERE status = 'queued'")

    def settle(self, timeout: float = 10.0) -> None:
        """Give the gateway a moment to mark what the sink holds as sent (not timed)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and self.scalar(
                "SELECT count(*) FROM outboundmessage WHERE status IN ('queued', 'sending')"):
            time.sleep(POLL_SECONDS)

    def summary(self) -> str:
        states = dict(self.rows("SELECT state, count(*) FROM inboundmessage GROUP BY state"))
        kinds = dict(self.rows("SELECT kind, count(*) FROM outboundmessage GROUP BY kind"))
        status = dict(self.rows("SELECT status, count(*) FROM outboundmessage GROUP BY status"))
        records = self.scalar("SELECT count(*) FROM record")
        return (f"db: inbound {dict(sorted(states.items()))}, records {records}, "
                f"outbox {dict(sorted(kinds.items()))} {dict(sorted(status.items()))}")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Databases:
    """Fresh databases: SQLite files in the work directory, or PostgreSQL schemas dropped at the end."""

    kind: str
    workdir: Path
    schemas: list[str] = field(default_factory=list)

    def new(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / name / 'liuhen.db'}"
        import psycopg2

        schema = f"bench_deliver_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            admin.close()
        self.schemas.append(schema)
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    def drop_all(self) -> None:
        if not self.schemas:
            return
        import psycopg2

        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                for schema in self.schemas:
                    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            admin.close()
        self.schemas.clear()


@dataclass
class Gateway:
    config: Path
    port: int
    url: str

    def start(self, name: str, log_name: str, *options: str) -> Process:
        return Process(name, [sys.executable, "-m", "gateway.cli", "--config", str(self.config), "serve", *options],
                       self.port, self.config.parent / f"{log_name}.log")


DELIVERY_SETTINGS: list[str] = []  # --delivery KEY=VALUE: more [delivery] lines for every gateway


def make_gateway(workdir: Path, name: str, url: str, sink_port: int) -> Gateway:
    data = workdir / name
    data.mkdir(parents=True)
    port = free_port()
    config = workdir / f"{name}.toml"
    config.write_text(
        "[gateway]\n"
        f'domain = "{DOMAIN}"\n'
        f'data_dir = "{data}"\n'
        'secret = "bench"\n'
        "[smtp]\n"
        f'host = "{HOST}"\n'
        f"port = {port}\n"
        "[database]\n"
        f'url = "{url}"\n'
        "[delivery]\n"
        'mode = "smtp"\n'
        f'host = "{HOST}"\n'
        f"port = {sink_port}\n"
        "timeout_seconds = 30.0\n"
        + "".join(f"{setting}\n" for setting in DELIVERY_SETTINGS) +
        "[web]\n"
        "enabled = false\n"
        "[reminders]\n"
        "business_hours = false\n"
        'digest_time = "23:59"\n', encoding="utf-8")
    return Gateway(config, port, url)


def process_notes(server: Process, rc: int | None) -> list[str]:
    notes = []
    if problems := server.log_problems():
        notes.append(f"  !! {server.name} log has {problems} error line(s): {server.log_path}")
    if rc not in (0, None):
        notes.append(f"  !! {server.name} exited with {rc}")
    return notes


# --------------------------------------------------------------------------- CPU used

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) so far of a process and all its descendants alive now
    (Linux /proc; 0 elsewhere). A child started by a thread is that thread's child: every
    task's children are read."""
    total, todo = 0.0, [pid]
    while todo:
        proc = Path(f"/proc/{todo.pop()}")
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
            for task in (proc / "task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


@dataclass
class Cpu:
    """Where the CPU went while a run was timed, per request."""

    server_ms: float  # the server under test (the gateway's processes, or the bare aiosmtpd)
    bench_ms: float  # this process: the client threads and, for the gateway, the sink
    busy: float  # of all the machine's cores, the share these two used

    @classmethod
    def measure(cls, server_cpu: float, bench_cpu: float, wall: float, requests: int) -> Cpu:
        cores = os.cpu_count() or 1
        return cls(1000 * server_cpu / max(requests, 1), 1000 * bench_cpu / max(requests, 1),
                   (server_cpu + bench_cpu) / max(wall * cores, 1e-9))

    def line(self, server: str) -> str:
        return (f"  cpu: {server} {self.server_ms:.2f} ms/request, client threads"
                f"{' + sink' if server == 'gateway' else ''} {self.bench_ms:.2f} ms/request; "
                f"{self.busy:.0%} of {os.cpu_count()} cores busy")


# --------------------------------------------------------------------------- phases

@dataclass
class Round:
    bare_rate: float
    delivered_rate: float | None  # requests fully delivered per second
    mail_rate: float | None
    bare_cpu: Cpu | None = None
    gateway_cpu: Cpu | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.delivered_rate is None else self.delivered_rate / self.bare_rate


def phase_throughput(workdir: Path, dbs: Databases, sink: SinkHandler, sink_port: int, messages: list[bytes],
                     report: list[str], name: str) -> Round:
    n = len(messages)
    bare = ingest.start_bare(workdir)
    try:
        bare.wait_ready()
        server_cpu, bench_cpu = tree_cpu(bare.proc.pid), time.process_time()
        results, t0 = blast(bare.port, messages)
        last = max((r.done for r in results if r.code == 250), default=t0)
        server_cpu, bench_cpu = tree_cpu(bare.proc.pid) - server_cpu, time.process_time() - bench_cpu
    finally:
        bare.stop()
    ok = sum(r.code == 250 for r in results)
    bare_rate = ok / (last - t0) if last > t0 else float("nan")
    bare_cpu = Cpu.measure(server_cpu, bench_cpu, last - t0, ok)
    report.append(f"bare aiosmtpd (250 only)       : {bare_rate:8.1f} req/s  ({ok}/{n} accepted in {last - t0:.2f} s)")
    report.append(bare_cpu.line("aiosmtpd"))
    if msg := refused(results):
        report.append(msg)

    gw = make_gateway(workdir, name, dbs.new(name), sink_port)
    server = gw.start(f"gateway ({name})", name)
    try:
        server.wait_ready()
        sink.reset()
        server_cpu, bench_cpu = tree_cpu(server.proc.pid), time.process_time()
        g_results, t0 = blast(gw.port, messages)
        accepted = sum(r.code == 250 for r in g_results)
        last_250 = max((r.done for r in g_results if r.code == 250), default=t0)
        done = sink.wait(MAILS_PER_REQUEST * accepted, timeout=120 + accepted)
        server_cpu, bench_cpu = tree_cpu(server.proc.pid) - server_cpu, time.process_time() - bench_cpu
        arrivals, connections = sink.snapshot()
        db = Db(gw.url)
        db.settle()
        summary = db.summary()
        db.close()
    finally:
        rc = server.stop()
    report.append(f"gateway intake (last 250)      : {accepted / max(last_250 - t0, 1e-9):8.1f} req/s  "
                  f"({accepted}/{n} accepted in {last_250 - t0:.2f} s)")
    if msg := refused(g_results):
        report.append(msg)
    delivered_rate = mail_rate = None
    if done is None:
        report.append(f"gateway fully delivered        :      n/a  (the sink got "
                      f"{sum(a.request is not None for a in arrivals)} of {MAILS_PER_REQUEST * accepted} mails)")
    else:
        delivered_rate = accepted / (done - t0)
        mail_rate = MAILS_PER_REQUEST * accepted / (done - t0)
        report.append(f"gateway fully delivered        : {delivered_rate:8.1f} req/s  {mail_rate:8.1f} mails/s  "
                      f"(all {MAILS_PER_REQUEST * accepted} mails at the sink {done - t0:.2f} s after the first "
                      f"send; {done - last_250:.2f} s after the last 250)")
        report.append(f"ratio delivered/bare           : {delivered_rate / bare_rate:8.3f}")
    gateway_cpu = Cpu.measure(server_cpu, bench_cpu, (done or time.perf_counter()) - t0, accepted)
    report.append(gateway_cpu.line("gateway"))
    report.append(f"  {sink_summary(arrivals, connections, accepted)}")
    report.append(f"  {summary}")
    report.extend(process_notes(server, rc))
    return Round(bare_rate, delivered_rate, mail_rate, bare_cpu, gateway_cpu)


def phase_latency(workdir: Path, dbs: Databases, sink: SinkHandler, sink_port: int, messages: list[bytes],
                  rate: float, report: list[str]) -> float | None:
    """Returns the p99 of 250 → last mail at the sink, in ms (None if unmeasured)."""
    total = len(messages)
    results = [Sent() for _ in messages]
    scheduled = [0.0] * total
    work: queue.Queue[int | None] = queue.Queue()

    gw = make_gateway(workdir, "latency", dbs.new("latency"), sink_port)
    server = gw.start("gateway (latency)", "latency")
    try:
        server.wait_ready()
        sink.reset()

        def scheduler() -> None:
            start = time.perf_counter() + 0.1
            for i in range(total):
                at = start + i / rate
                delay = at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                scheduled[i] = at
                work.put(i)
            for _ in range(CLIENTS):
                work.put(None)

        def client() -> None:
            while (i := work.get()) is not None:
                send_one(gw.port, messages[i], results[i])

        threads = [threading.Thread(target=scheduler, daemon=True)]
        threads += [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(total / rate + 120)
        accepted = sum(r.code == 250 for r in results)
        done = sink.wait(MAILS_PER_REQUEST * accepted, timeout=120)
        arrivals, connections = sink.snapshot()
        db = Db(gw.url)
        db.settle()
        summary = db.summary()
        db.close()
    finally:
        rc = server.stop()

    by = per_request(arrivals)
    sent = [r for r in results if r.started]
    span = max(r.started for r in sent) - min(r.started for r in sent) if len(sent) > 1 else 0.0
    lag = [(r.started - scheduled[i]) * 1000 for i, r in enumerate(results) if r.started]
    rtt = [(r.done - r.started) * 1000 for r in results if r.code == 250]
    complete = {i: by[f"lat.{i}"] for i, r in enumerate(results)
                if r.code == 250 and len(by.get(f"lat.{i}", ())) >= MAILS_PER_REQUEST}
    first = [(min(times) - results[i].done) * 1000 for i, times in complete.items()]
    lat = [(max(times) - results[i].done) * 1000 for i, times in complete.items()]
    report.append(f"sent {len(sent)} requests at {(len(sent) - 1) / span if span else float('nan'):.1f}/s "
                  f"(target {rate:g}/s); send start behind schedule p99 {pct(lag, 0.99):.1f} ms, "
                  f"max {max(lag):.1f} ms")
    if msg := refused(results):
        report.append(msg)
    if rtt:
        report.append(f"SMTP connect → 250             : p50 {pct(rtt, 0.5):7.1f} ms   p99 {pct(rtt, 0.99):7.1f} ms   "
                      f"max {max(rtt):7.1f} ms")
    p99 = None
    if lat:
        p99 = pct(lat, 0.99)
        report.append(f"250 → first mail at the sink   : p50 {pct(first, 0.5):7.1f} ms   p95 {pct(first, 0.95):7.1f} ms   "
                      f"p99 {pct(first, 0.99):7.1f} ms")
        report.append(f"250 → last mail at the sink    : p50 {pct(lat, 0.5):7.1f} ms   p95 {pct(lat, 0.95):7.1f} ms   "
                      f"p99 {p99:7.1f} ms   max {max(lat):7.1f} ms   (n={len(lat)})")
    else:
        report.append("250 → last mail at the sink    : n/a (no request had all its mails delivered)")
    if done is None or len(lat) < accepted:
        report.append(f"  !! {accepted - len(lat)} accepted request(s) without all {MAILS_PER_REQUEST} mails at the sink")
    report.append(f"  {sink_summary(arrivals, connections, accepted)}")
    report.append(f"  {summary}")
    report.extend(process_notes(server, rc))
    return p99


def phase_burst(workdir: Path, dbs: Databases, sink: SinkHandler, sink_port: int, messages: list[bytes],
                report: list[str]) -> float | None:
    """Returns mails/s from the start of `serve` to the last of the queued mails at the sink."""
    gw = make_gateway(workdir, "burst", dbs.new("burst"), sink_port)
    filler = gw.start("gateway (burst, --no-delivery)", "burst-fill", "--no-delivery")
    try:
        filler.wait_ready()
        results, t0 = blast(gw.port, messages)
        accepted = sum(r.code == 250 for r in results)
        expected = MAILS_PER_REQUEST * accepted
        db = Db(gw.url)
        deadline = time.perf_counter() + 120 + accepted
        while (queued := db.queued()) < expected and time.perf_counter() < deadline and filler.proc.poll() is None:
            time.sleep(POLL_SECONDS)
        filled = time.perf_counter()
        db.close()
    finally:
        rc = filler.stop()
    report.append(f"filled: {accepted}/{len(messages)} requests accepted, {queued} mails queued in "
                  f"{filled - t0:.1f} s (serve --no-delivery, then stopped)")
    if msg := refused(results):
        report.append(msg)
    report.extend(process_notes(filler, rc))

    sink.reset()
    t0 = time.perf_counter()
    server = gw.start("gateway (burst drain)", "burst-drain")
    try:
        server.wait_ready()
        ready = time.perf_counter()
        server_cpu, bench_cpu = tree_cpu(server.proc.pid), time.process_time()
        done = sink.wait(queued, timeout=120 + queued / 10)
        server_cpu, bench_cpu = tree_cpu(server.proc.pid) - server_cpu, time.process_time() - bench_cpu
        arrivals, connections = sink.snapshot()
        db = Db(gw.url)
        db.settle()
        summary = db.summary()
        db.close()
    finally:
        rc = server.stop()
    rate = None
    if done is None:
        report.append(f"drain                          :      n/a  (the sink got "
                      f"{sum(a.request is not None for a in arrivals)} of {queued} mails)")
    else:
        rate = queued / (done - t0)
        first = min(a.at for a in arrivals)
        report.append(f"drain (process start → last)   : {rate:8.1f} mails/s  ({queued} mails in {done - t0:.2f} s; "
                      f"port open after {ready - t0:.2f} s, first mail after {first - t0:.2f} s, "
                      f"first → last {queued / max(done - first, 1e-9):.1f} mails/s)")
    cpu = Cpu.measure(server_cpu, bench_cpu, (done or time.perf_counter()) - ready, queued)
    report.append(f"  cpu from the port opening: gateway {cpu.server_ms:.2f} ms/mail, sink {cpu.bench_ms:.2f} ms/mail; "
                  f"{cpu.busy:.0%} of {os.cpu_count()} cores busy")
    report.append(f"  {sink_summary(arrivals, connections, accepted)}")
    report.append(f"  {summary}")
    report.extend(process_notes(server, rc))
    return rate


# --------------------------------------------------------------------------- main

def _verdict(value: float | None, met: Callable[[float], bool]) -> str:
    if value is None or value != value:  # unmeasured or NaN
        return "n/a"
    return "met" if met(value) else "NOT MET"


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def cpu_ceiling(rounds: list[Round]) -> tuple[float, float, float] | None:
    """(gateway ms, bench ms, requests/s): the rate at which the CPU one request costs the
    gateway and this process (its client and the sink) would fill every core of this machine
    — what no delivery design can beat here without costing less CPU."""
    measured = [r.gateway_cpu for r in rounds if r.gateway_cpu is not None]
    if not measured:
        return None
    gateway_ms = statistics.median(c.server_ms for c in measured)
    bench_ms = statistics.median(c.bench_ms for c in measured)
    return gateway_ms, bench_ms, 1000 * (os.cpu_count() or 1) / max(gateway_ms + bench_ms, 1e-9)


def _median(values: list[float | None]) -> float | None:
    measured = [v for v in values if v is not None]
    return statistics.median(measured) if measured and len(measured) == len(values) else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200, help="requests per throughput round (default 200)")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds, bare then gateway each (default 3)")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="length of the latency phase (default 10)")
    p.add_argument("--latency-rate", type=float, default=50.0, help="requests/s in the latency phase (default 50)")
    p.add_argument("--burst", type=int, default=10_000, help="mails queued, then drained (default 10000)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (databases, logs, configs)")
    p.add_argument("--delivery", action="append", default=[], metavar="KEY=VALUE",
                   help="a [delivery] setting for the gateways, e.g. sessions=8 (repeatable)")
    p.add_argument("--only", choices=("throughput", "latency", "burst"), help="run one phase (and the calibration)")
    p.add_argument("--sink-client", type=int, nargs=3, metavar=("PORT", "COUNT", "SESSIONS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    DELIVERY_SETTINGS.extend(args.delivery)

    def runs(phase: str) -> bool:
        return args.only in (None, phase)
    if args.sink_client:
        sink_client(*args.sink_client)
        return 0
    if args.requests < 1 or args.rounds < 1 or args.latency_seconds <= 0 or args.latency_rate <= 0 or args.burst < 0:
        p.error("--requests, --rounds, --latency-seconds and --latency-rate must be positive, --burst not negative")

    latency_total = max(1, round(args.latency_seconds * args.latency_rate))
    burst_requests = -(-args.burst // MAILS_PER_REQUEST)
    messages = build_messages(args.requests, "tp")
    steady = build_messages(latency_total, "lat")
    burst = build_messages(burst_requests, "burst") if burst_requests else []
    avg = sum(map(len, messages)) / len(messages)
    workdir = Path(tempfile.mkdtemp(prefix="liuhen-bench-deliver-"))
    dbs = Databases(args.db, workdir)
    report = [
        "== liuhen delivery benchmark: request → its mails accepted by the smarthost ==",
        f"params: N={args.requests} requests × {args.rounds} rounds, {CLIENTS} client threads, one connection per "
        f"request, ~{avg / 1024:.1f} KB each, {MAILS_PER_REQUEST} mails per request; latency "
        f"{args.latency_rate:g}/s × {args.latency_seconds:g} s = {latency_total} requests; burst {args.burst} mails "
        f"({burst_requests} requests); database {args.db}"
        + (f" ({PG_URL}, throw-away schemas)" if args.db == "postgresql" else " (WAL, synchronous=FULL)"),
        f"host: {ingest._versions()}",
        f"dir: {workdir}{'' if args.keep else ' (removed at exit)'}",
    ]
    rows: list[tuple[str, str, str, str]] = []
    status = 0
    try:
        with running_sink() as (sink, sink_port):
            ceiling = calibrate_sink(sink, sink_port)
            report.append(f"sink: aiosmtpd on {HOST}:{sink_port} in this process"
                          f"{' (DATA read per message, not per line)' if FAST_DATA else ' (stock DATA)'}; its ceiling "
                          f"{_fmt(ceiling, '.0f')} mails/s (~20 KB mails from 4 sessions of a client process)")
            rows.append(("sink ceiling, mails/s (calibration, for reference)", _fmt(ceiling, ".0f"), "", ""))
            if runs("throughput"):
                rounds = []
                for k in range(1, args.rounds + 1):
                    report.append(f"-- throughput, round {k}/{args.rounds} --")
                    rounds.append(phase_throughput(workdir, dbs, sink, sink_port, messages, report, f"throughput-{k}"))
                ratio = _median([r.ratio for r in rounds])
                bare = statistics.median(r.bare_rate for r in rounds)
                delivered = _median([r.delivered_rate for r in rounds])
                mails = _median([r.mail_rate for r in rounds])
                report.append(f"== ratio delivered/bare per round: "
                              f"{', '.join(_fmt(r.ratio, '.3f') for r in rounds)}; median {_fmt(ratio, '.3f')}")
                cpu = cpu_ceiling(rounds)
                if cpu is not None:
                    report.append(f"== CPU per request (medians): gateway {cpu[0]:.2f} ms, this process (client "
                                  f"threads + sink) {cpu[1]:.2f} ms: with every core busy, at most "
                                  f"{cpu[2]:.0f} requests/s could be delivered here, a ratio of "
                                  f"{cpu[2] / statistics.median(r.bare_rate for r in rounds):.3f}")
                rows += [("bare aiosmtpd, requests accepted/s (median)", f"{bare:.1f}", "", ""),
                         ("gateway, requests fully delivered/s (median)", _fmt(delivered, ".1f"), "", ""),
                         ("gateway, mails delivered/s (median)", _fmt(mails, ".1f"), "", ""),
                         ("ratio delivered/bare (median of rounds)", _fmt(ratio, ".3f"), "≥ 0.333",
                          _verdict(ratio, lambda v: v >= 1 / 3))]

            if runs("latency"):
                report.append(f"-- latency at a steady {args.latency_rate:g} requests/s (fresh gateway and database) --")
                p99 = phase_latency(workdir, dbs, sink, sink_port, steady, args.latency_rate, report)
                rows.append((f"250 → last mail p99 at {args.latency_rate:g} req/s (ms)", _fmt(p99, ".1f"), "< 1000",
                             _verdict(p99, lambda v: v < 1000)))

            if burst and runs("burst"):
                report.append(f"-- burst: {args.burst} queued mails drained (fresh gateway and database) --")
                drain = phase_burst(workdir, dbs, sink, sink_port, burst, report)
                rows.append((f"burst drain of {burst_requests * MAILS_PER_REQUEST} mails, mails/s", _fmt(drain, ".1f"),
                             "≥ 1000", _verdict(drain, lambda v: v >= 1000)))
    except RuntimeError as exc:  # a server could not be started
        report.append(f"!! {exc}")
        status = 1
    finally:
        try:
            dbs.drop_all()
        except Exception as exc:
            report.append(f"!! could not drop the PostgreSQL schemas {dbs.schemas}: {exc}")
        if rows:
            width = max(len(r[0]) for r in rows)
            report.append("== summary ==")
            report.append(f"{'measure':<{width}}  {'value':>10}  {'target':>8}  result")
            report.extend(f"{m:<{width}}  {v:>10}  {t:>8}  {r}" for m, v, t, r in rows)
        print("\n".join(report), flush=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
