#!/usr/bin/env python3
"""Intake benchmark: SMTP → stored → record committed → dispatch mails queued in the outbox.

    .venv/bin/python bench/ingest.py [-n 2000] [--rounds 3] [--steady-seconds 20]

Phase 1 (throughput), --rounds times: the same N pre-built ~4 KB Chinese request mails are
sent by 4 client threads (smtplib, one connection per message), first to a bare aiosmtpd
server that only answers 250, then to `liuhen serve --no-delivery` (SQLite, WAL,
synchronous=FULL) with a fresh database.
  bare rate    = N / (first send → last 250)
  gateway rate = N / (first send → every record exists with its outbox rows queued),
                 observed by polling the database read-only every 20 ms.
Each round pairs the two back to back; the verdict is on the median of the rounds' ratios,
because a 2-second bare run swings by half with what else the machine is doing.
Phase 2 (latency): a fresh gateway and database; mails at a steady rate (default 50/s) for
--steady-seconds. Latency per mail = max(outbox.created_at of its record) − wall time its 250
came back. Both are this machine's wall clock; created_at is naive UTC, stamped inside the
processing transaction just before its commit.

Both servers are subprocesses started and stopped (SIGTERM) the same way. Everything runs on
127.0.0.1 in a temporary directory. A benchmark, not a test: it prints numbers and exits 0
(1 only if a server cannot be started).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import queue
import re
import shutil
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DOMAIN = "liuhen.test"
RCPT = f"project@{DOMAIN}"
SENDER = "chen.jing@liuhen.localhost"
CLIENTS = 4
POLL_SECONDS = 0.02
TARGET_BYTES = 4096
START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
SMTP_TIMEOUT = 30.0
_QUEUE_ID = re.compile(rb"queued as (\w+)")

PROSE = [
    "新款智能手表计划于明年第一季度量产，目前硬件方案仍有三项关键器件尚未定型，需要尽快锁定物料清单成本。",
    "上一代产品在续航和佩戴舒适度方面收到较多用户反馈，本次改版希望在不增加整机厚度的前提下将续航提升百分之二十。",
    "供应链部门反馈主控芯片的交期已延长至十六周，如果本月内不能确定型号，将直接影响试产排期。",
    "市场部初步调研显示，同价位竞品普遍支持血氧和心率变异性监测，我们需要评估新增传感器对成本和功耗的影响。",
    "研发部需在方案评审前完成两套备选方案的功耗测算，并给出主板布局和天线性能的风险评估。",
    "结构件方面，表壳材质拟由铝合金改为不锈钢，模具费用和良率变化需要与供应商进一步确认。",
    "本次评审的目标是确定最终硬件方案、冻结关键器件选型，并明确样机测试的范围、数量和验收标准。",
    "请各参与部门在评审会前一个工作日提交书面材料，会议将逐项核对成本、进度和质量三方面的风险。",
    "如评审中发现重大分歧，将在三个工作日内组织专题会议，由产品部汇总意见后报项目管理委员会决策。",
    "为避免信息分散，本项目的所有沟通结论请统一通过本邮件线程回复，以便留痕和后续追溯。",
]


# --------------------------------------------------------------------------- messages

def _body(subject: str, i: int, n_sentences: int) -> str:
    sentences = [PROSE[(i + k) % len(PROSE)] for k in range(n_sentences)]
    paragraphs = ["".join(sentences[k:k + 3]) for k in range(0, len(sentences), 3)]
    background = "\n".join(paragraphs)
    return (f"沟通主题：{subject}\n"
            "发起部门/人：产品部/陈静\n"
            "优先级：中\n"
            "期望完成时间：2027-03-20 18:00\n"
            f"背景与目标：{background}\n"
            "参与部门及职责：\n"
            "研发部/王强 — 完成硬件方案评估，输出功耗与成本对比\n"
            "市场部/赵磊 — 提供竞品价格与功能对比\n"
            "关键节点与时间：\n"
            "方案评审 — 2027-03-10 14:00\n"
            "\n谢谢！\n陈静\n")


def _mail(subject: str, i: int, n_sentences: int, tag: str) -> bytes:
    msg = MIMEText(_body(subject, i, n_sentences), "plain", "utf-8")
    msg["From"] = f"=?utf-8?b?6ZmI6Z2Z?= <{SENDER}>"  # 陈静
    msg["To"] = RCPT
    msg["Subject"] = Header(subject, "utf-8")  # type: ignore[assignment]  # compat32 takes a Header; typeshed says str
    msg["Message-ID"] = make_msgid(idstring=f"{tag}.{i}", domain="bench.client.example.cn")
    msg["Date"] = formatdate(localtime=True)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # smtplib sends bytes as they are


def build_messages(count: int, tag: str) -> list[bytes]:
    """`count` distinct request mails of about TARGET_BYTES each (subject and Message-ID vary)."""
    n_sentences = 1
    while len(_mail("智能手表项目-硬件方案评审 #000000", 0, n_sentences, tag)) < TARGET_BYTES:
        n_sentences += 1
    return [_mail(f"智能手表项目-硬件方案评审 #{tag}-{i:06d}", i, n_sentences, tag) for i in range(count)]


# --------------------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A subprocess listening on `port`; always stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path):
        self.name, self.port, self.log_path = name, port, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept connections on {HOST}:{self.port} "
                           f"within {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> int:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback"))


def start_gateway(workdir: Path, name: str) -> tuple[Server, Path]:
    data = workdir / name
    data.mkdir(parents=True)
    db_path = data / "liuhen.db"
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
        f'url = "sqlite:///{db_path}"\n', encoding="utf-8")
    server = Server(f"gateway ({name})", [sys.executable, "-m", "gateway.cli", "--config", str(config),
                                          "serve", "--no-delivery"], port, workdir / f"{name}.log")
    return server, db_path


def start_bare(workdir: Path) -> Server:
    port = free_port()
    return Server("bare aiosmtpd", [sys.executable, str(Path(__file__).resolve()), "--bare-server", str(port)],
                  port, workdir / "bare.log")


def run_bare_server(port: int) -> None:
    """The baseline: aiosmtpd with a handler that answers 250 to DATA and keeps nothing."""
    import asyncio

    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = await loop.create_server(
            lambda: SMTP(Handler(), data_size_limit=25 * 1024 * 1024, enable_SMTPUTF8=True,
                         decode_data=False, hostname="bare.test", ident="bare"), host=HOST, port=port)
        print(f"bare aiosmtpd on {HOST}:{port}", flush=True)
        await stop.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


# --------------------------------------------------------------------------- clients

@dataclass
class Sent:
    code: int = 0
    reply: bytes = b""
    started: float = 0.0  # perf_counter when the connection was opened
    done: float = 0.0  # perf_counter when the DATA reply came back
    wall_250: float = 0.0  # time.time() at the same moment
    queue_id: str | None = None


def send_one(port: int, raw: bytes, out: Sent) -> None:
    """One connection per message: EHLO, MAIL, RCPT, DATA, QUIT."""
    out.started = time.perf_counter()
    try:
        with smtplib.SMTP(HOST, port, timeout=SMTP_TIMEOUT) as s:
            s.ehlo()
            code, reply = s.mail(SENDER)
            if code == 250:
                code, reply = s.rcpt(RCPT)
            if code == 250:
                code, reply = s.data(raw)
                out.done, out.wall_250 = time.perf_counter(), time.time()
            out.code, out.reply = code, reply
    except (OSError, smtplib.SMTPException) as exc:
        out.code, out.reply = -1, repr(exc).encode()
    if out.code == 250 and (m := _QUEUE_ID.search(out.reply)):
        out.queue_id = m.group(1).decode()


def blast(port: int, messages: list[bytes]) -> tuple[list[Sent], float]:
    """Send all messages with CLIENTS threads as fast as they go; returns results and t0."""
    results = [Sent() for _ in messages]
    counter = itertools.count()
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= len(messages):
                return
            send_one(port, messages[i], results[i])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, t0


# --------------------------------------------------------------------------- database (read-only)

def open_ro(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def count_dispatched(conn: sqlite3.Connection) -> int:
    """Records that exist with their dispatch mails (at least one 'request') queued."""
    return conn.execute(
        "SELECT count(*) FROM record r WHERE EXISTS (SELECT 1 FROM outboundmessage o "
        "WHERE o.record_id = r.id AND o.kind = 'request' AND o.status = 'queued')").fetchone()[0]


def count_terminal(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM inboundmessage WHERE state != 'received'").fetchone()[0]


def db_summary(conn: sqlite3.Connection) -> str:
    states = dict(conn.execute("SELECT state, count(*) FROM inboundmessage GROUP BY state").fetchall())
    kinds = dict(conn.execute("SELECT kind, count(*) FROM outboundmessage GROUP BY kind").fetchall())
    records = conn.execute("SELECT count(*) FROM record").fetchone()[0]
    return (f"inbound {dict(sorted(states.items()))}, records {records}, "
            f"outbox {dict(sorted(kinds.items()))}")


def sample_reasons(conn: sqlite3.Connection) -> list[str]:
    return [f"IN-{i} {s}: {r}" for i, s, r in conn.execute(
        "SELECT id, state, reason FROM inboundmessage WHERE state NOT IN ('received', 'processed') "
        "ORDER BY id LIMIT 3")]


def count_records(conn: sqlite3.Connection) -> int:
    """The cheap progress poll: a record and its outbox rows commit in one transaction."""
    return conn.execute("SELECT count(*) FROM record").fetchone()[0]


def wait_until(conn: sqlite3.Connection, accepted: int, timeout: float) -> float | None:
    """Poll every 20 ms until `accepted` records have their dispatch queued; returns the
    perf_counter of that observation, or None if everything settled short of it / timed out.
    Each poll only counts records; the full check (records with queued dispatch mails) runs
    once the count is reached. Running the full check every 20 ms cost this process ~0.5 ms
    CPU per mail — on the same two cores as the gateway it measures."""
    deadline = time.perf_counter() + timeout
    last = -1
    while time.perf_counter() < deadline:
        records = count_records(conn)
        if records >= accepted and count_dispatched(conn) >= accepted:
            return time.perf_counter()
        if records == last and count_terminal(conn) >= accepted:
            return None  # no progress, all taken to a terminal state, but some did not become records
        last = records
        time.sleep(POLL_SECONDS)
    return None


# --------------------------------------------------------------------------- phases

def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def refused(results: list[Sent]) -> str:
    bad = [r for r in results if r.code != 250]
    if not bad:
        return ""
    return f"  !! {len(bad)} not accepted, e.g. {bad[0].code} {bad[0].reply[:120]!r}"


def phase_throughput(workdir: Path, messages: list[bytes], report: list[str], name: str) -> float | None:
    """One round: the bare server, then the gateway; returns gateway/bare (None if unmeasured)."""
    n = len(messages)
    bare = start_bare(workdir)
    try:
        bare.wait_ready()
        results, t0 = blast(bare.port, messages)
        last = max((r.done for r in results if r.code == 250), default=t0)
    finally:
        bare.stop()
    ok = sum(r.code == 250 for r in results)
    bare_rate = ok / (last - t0) if last > t0 else float("nan")
    report.append(f"bare aiosmtpd (250 only)     : {bare_rate:8.1f} msg/s  "
                  f"({ok}/{n} accepted in {last - t0:.2f} s)")
    if msg := refused(results):
        report.append(msg)

    gateway, db_path = start_gateway(workdir, name)
    try:
        gateway.wait_ready()
        conn = open_ro(db_path)
        sender_box: list[tuple[list[Sent], float]] = []
        sender = threading.Thread(target=lambda: sender_box.append(blast(gateway.port, messages)), daemon=True)
        sender.start()
        # Nothing can be complete before the senders finish; poll the database meanwhile
        # anyway (the same read load as afterwards) and stop at the first complete snapshot.
        while sender.is_alive():
            count_records(conn)
            sender.join(POLL_SECONDS)
        g_results, t0 = sender_box[0]
        accepted = sum(r.code == 250 for r in g_results)
        last_250 = max((r.done for r in g_results if r.code == 250), default=t0)
        done = wait_until(conn, accepted, timeout=120 + accepted / 10)
        summary = db_summary(conn)
        reasons = sample_reasons(conn)
        conn.close()
    finally:
        rc = gateway.stop()
    report.append(f"gateway last 250 (intake)    : {accepted / max(last_250 - t0, 1e-9):8.1f} msg/s  "
                  f"({accepted}/{n} accepted in {last_250 - t0:.2f} s)")
    if msg := refused(g_results):
        report.append(msg)
    ratio = None
    if done is None:
        report.append(f"gateway end-to-end           :      n/a  (never saw all {accepted} records dispatched)")
        report.append(f"  db: {summary}")
        report.extend(f"  {r}" for r in reasons)
        report.append("ratio gateway/bare           :      n/a")
    else:
        g_rate = accepted / (done - t0)
        ratio = g_rate / bare_rate
        report.append(f"gateway end-to-end (queued)  : {g_rate:8.1f} msg/s  "
                      f"(all {accepted} records + outbox in {done - t0:.2f} s; "
                      f"{done - last_250:.2f} s after the last 250)")
        report.append(f"  db: {summary}")
        report.append(f"ratio gateway/bare           : {ratio:8.3f}")
    if problems := gateway.log_problems():
        report.append(f"  !! gateway log has {problems} error line(s): {gateway.log_path}")
    if rc not in (0, None):
        report.append(f"  !! gateway exited with {rc}")
    return ratio


def phase_latency(workdir: Path, messages: list[bytes], rate: float, report: list[str]) -> None:
    total = len(messages)
    results = [Sent() for _ in messages]
    scheduled = [0.0] * total
    work: queue.Queue[int | None] = queue.Queue()

    gateway, db_path = start_gateway(workdir, "latency")
    try:
        gateway.wait_ready()

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
                send_one(gateway.port, messages[i], results[i])

        threads = [threading.Thread(target=scheduler, daemon=True)]
        threads += [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(total / rate + 120)
        accepted_results = [r for r in results if r.queue_id is not None]
        conn = open_ro(db_path)
        settled = wait_until(conn, len(accepted_results), timeout=120)
        queued_at: dict[str, float] = {}  # queue id → when its last outbox row was written
        for queue_id, created in conn.execute(
                "SELECT i.queue_id, max(o.created_at) FROM record r JOIN inboundmessage i ON i.id = r.source_inbound_id "
                "JOIN outboundmessage o ON o.record_id = r.id GROUP BY i.queue_id"):
            queued_at[queue_id] = datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
        summary = db_summary(conn)
        reasons = sample_reasons(conn)
        conn.close()
    finally:
        rc = gateway.stop()

    sent = [r for r in results if r.started]
    span = max(r.started for r in sent) - min(r.started for r in sent) if len(sent) > 1 else 0.0
    lag = [(r.started - scheduled[i]) * 1000 for i, r in enumerate(results) if r.started]
    rtt = [(r.done - r.started) * 1000 for r in results if r.code == 250]
    lat = [(queued_at[r.queue_id] - r.wall_250) * 1000 for r in results
           if r.queue_id is not None and r.queue_id in queued_at]
    report.append(f"sent {len(sent)} mails at {(len(sent) - 1) / span if span else float('nan'):.1f}/s "
                  f"(target {rate:g}/s); send start behind schedule p99 {pct(lag, 0.99):.1f} ms, "
                  f"max {max(lag):.1f} ms")
    if msg := refused(results):
        report.append(msg)
    if rtt:
        report.append(f"SMTP connect→250             : p50 {pct(rtt, 0.5):7.1f} ms   p99 {pct(rtt, 0.99):7.1f} ms   "
                      f"max {max(rtt):7.1f} ms")
    if lat:
        p99 = pct(lat, 0.99)
        report.append(f"250 → dispatch queued        : p50 {pct(lat, 0.5):7.1f} ms   p99 {p99:7.1f} ms   "
                      f"max {max(lat):7.1f} ms   min {min(lat):.1f} ms   (n={len(lat)})")
        report.append(f"p99 < 500 ms                 : {'MET' if p99 < 500 else 'NOT MET'}")
    else:
        report.append("250 → dispatch queued        : n/a (no mail became a record)")
    missing = len(accepted_results) - len(lat)
    if missing or settled is None:
        report.append(f"  !! {missing} accepted mail(s) without queued dispatch; db: {summary}")
        report.extend(f"  {r}" for r in reasons)
    else:
        report.append(f"  db: {summary}")
    if problems := gateway.log_problems():
        report.append(f"  !! gateway log has {problems} error line(s): {gateway.log_path}")
    if rc not in (0, None):
        report.append(f"  !! gateway exited with {rc}")


# --------------------------------------------------------------------------- main

def _versions() -> str:
    try:
        from importlib.metadata import version
        aiosmtpd, peewee = version("aiosmtpd"), version("peewee")
    except Exception:
        aiosmtpd = peewee = "?"
    return (f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, aiosmtpd {aiosmtpd}, "
            f"peewee {peewee}, {os.cpu_count()} CPU(s), load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="mails in the throughput phase (default 2000)")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds, bare then gateway each (default 3)")
    p.add_argument("--steady-seconds", type=float, default=20.0, help="length of the latency phase (default 20)")
    p.add_argument("--steady-rate", type=float, default=50.0, help="mails/s in the latency phase (default 50)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (databases, logs)")
    p.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare_server:
        run_bare_server(args.bare_server)
        return 0
    if args.n < 1 or args.rounds < 1 or args.steady_seconds <= 0 or args.steady_rate <= 0:
        p.error("-n, --rounds, --steady-seconds and --steady-rate must be positive")

    steady_total = max(1, round(args.steady_seconds * args.steady_rate))
    messages = build_messages(args.n, "tp")
    steady = build_messages(steady_total, "lat")
    avg = sum(map(len, messages)) / len(messages)
    workdir = Path(tempfile.mkdtemp(prefix="liuhen-bench-"))
    report = [
        "== liuhen intake benchmark ==",
        f"params: N={args.n}, {CLIENTS} client threads, one connection per message, "
        f"mail ~{avg / 1024:.1f} KB (UTF-8 base64, Chinese); steady {args.steady_rate:g}/s × "
        f"{args.steady_seconds:g} s = {steady_total} mails; SQLite WAL synchronous=FULL; --no-delivery",
        f"host: {_versions()}",
        f"dir: {workdir}{'' if args.keep else ' (removed at exit)'}",
    ]
    status = 0
    try:
        ratios = []
        for k in range(1, args.rounds + 1):
            report.append(f"-- throughput, round {k}/{args.rounds} --")
            ratios.append(phase_throughput(workdir, messages, report, f"throughput-{k}"))
        measured = sorted(r for r in ratios if r is not None)
        if len(measured) == len(ratios):
            median = statistics.median(measured)
            report.append(f"== ratio gateway/bare, median of {len(measured)}: {median:.3f} "
                          f"(rounds {', '.join(f'{r:.3f}' for r in ratios)})   target ≥ 0.333: "
                          f"{'MET' if median >= 1 / 3 else 'NOT MET'}")
        else:
            report.append("== ratio gateway/bare: n/a (a round did not complete)")
        report.append(f"-- latency at a steady {args.steady_rate:g} mails/s (fresh gateway and database) --")
        phase_latency(workdir, steady, args.steady_rate, report)
    except RuntimeError as exc:  # a server could not be started
        report.append(f"!! {exc}")
        status = 1
    finally:
        print("\n".join(report), flush=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
