#!/usr/bin/env python3
"""IMAP intake benchmark: a Dovecot mailbox → stored → record committed → dispatch queued,
beside the SMTP intake rate of bench/ingest.py measured in the same run.

    .venv/bin/python bench/imap.py [-n 1000]

IMAP phase: a private Dovecot (tests/dovecot.py) on a loopback port; N distinct ~4 KB Chinese
request mails (bench/ingest.py's, unique subjects and Message-IDs) are appended to INBOX over
one IMAP connection *before* the gateway starts. Then `liuhen serve --no-delivery` starts with
an [[imap]] table for that mailbox (processed_folder = "liuhen-done"), and the database is
polled read-only every 20 ms.
  IMAP rate = N / (gateway's SMTP port accepts → every record exists with its outbox rows)
  (also shown from process start, and the time at which all N mails were stored)
SMTP phase: a fresh gateway and database, the same N mails sent by 4 client threads, one
connection per message, exactly as bench/ingest.py does.
  SMTP rate = N / (first send → every record exists with its outbox rows)
IMAP floor: afterwards, the same per-message loop the gateway runs (UID FETCH BODY.PEEK[], UID
MOVE), without a database, over the N mails now in liuhen-done — what the round trips alone cost.

Everything runs on 127.0.0.1 in temporary directories, removed at exit (Dovecot's needs to be
world-traversable: its unprivileged processes read it). A benchmark, not a test: it prints
numbers and exits 0 (1 only if Dovecot or a server cannot be started).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH)]
sys.path.append(str(REPO / "tests"))  # dovecot.py (imports conftest.free_port; needs pytest)

import ingest  # noqa: E402  (bench/ingest.py: mails, Server, SMTP clients, read-only DB queries)
from ingest import (  # noqa: E402
    CLIENTS,
    DOMAIN,
    HOST,
    POLL_SECONDS,
    RCPT,
    Server,
    blast,
    build_messages,
    count_dispatched,
    count_records,
    count_terminal,
    db_summary,
    free_port,
    open_ro,
    refused,
    sample_reasons,
)

IMAP_USER, IMAP_PASSWORD = "intake", "s3cret"
DONE_FOLDER = "liuhen-done"


# --------------------------------------------------------------------------- gateway

def start_gateway(workdir: Path, name: str, imap_port: int | None) -> tuple[Server, Path]:
    """`liuhen serve --no-delivery` on a fresh SQLite database, with one [[imap]] mailbox when
    `imap_port` is given (the config bench/ingest.py writes, plus that table)."""
    data = workdir / name
    data.mkdir(parents=True)
    db_path = data / "liuhen.db"
    port = free_port()
    config = workdir / f"{name}.toml"
    text = ("[gateway]\n"
            f'domain = "{DOMAIN}"\n'
            f'data_dir = "{data}"\n'
            'secret = "bench"\n'
            "[smtp]\n"
            f'host = "{HOST}"\n'
            f"port = {port}\n"
            "[database]\n"
            f'url = "sqlite:///{db_path}"\n')
    if imap_port is not None:
        text += ("[[imap]]\n"
                 f'address = "{RCPT}"\n'
                 f'host = "{HOST}"\n'
                 f"port = {imap_port}\n"
                 'security = "none"\n'
                 f'user = "{IMAP_USER}"\n'
                 f'password = "{IMAP_PASSWORD}"\n'
                 f'processed_folder = "{DONE_FOLDER}"\n')
    config.write_text(text, encoding="utf-8")
    server = Server(f"gateway ({name})", [sys.executable, "-m", "gateway.cli", "--config", str(config),
                                          "serve", "--no-delivery"], port, workdir / f"{name}.log")
    return server, db_path


def wait_db(db_path: Path, server: Server, timeout: float = 30.0) -> sqlite3.Connection:
    """The database file exists once the gateway has built its schema."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db_path.exists():
            try:
                conn = open_ro(db_path)
                conn.execute("SELECT count(*) FROM record").fetchone()
                conn.execute("SELECT count(*) FROM outboundmessage").fetchone()
                return conn
            except sqlite3.Error:
                pass
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{server.name}: no database at {db_path} within {timeout:.0f}s:\n{server.log_tail()}")


# --------------------------------------------------------------------------- IMAP

def imap_client(port: int):
    from imapclient import IMAPClient

    client = IMAPClient(HOST, port=port, ssl=False, timeout=30)
    client.login(IMAP_USER, IMAP_PASSWORD)
    return client


def append_all(port: int, messages: list[bytes]) -> float:
    """APPEND every message to INBOX over one connection; returns the seconds it took."""
    client = imap_client(port)
    try:
        t0 = time.perf_counter()
        for raw in messages:
            client.append("INBOX", raw)
        return time.perf_counter() - t0
    finally:
        client.logout()


def folder_counts(port: int) -> dict[str, int]:
    client = imap_client(port)
    try:
        return {f: client.folder_status(f, [b"MESSAGES"])[b"MESSAGES"] for _, _, f in client.list_folders()}
    finally:
        client.logout()


def bare_fetch_move(port: int, source: str, target: str) -> tuple[int, float]:
    """The gateway's per-message loop (gateway/imap.py fetch_new) without the database: SEARCH,
    then for each UID a FETCH BODY.PEEK[] and a MOVE. Returns (moved, seconds)."""
    client = imap_client(port)
    try:
        client.select_folder(source)
        if not client.folder_exists(target):
            client.create_folder(target)
        t0 = time.perf_counter()
        moved = 0
        for uid in sorted(client.search(["UID", "1:*"])):
            data = client.fetch([uid], [b"BODY.PEEK[]"]).get(uid)
            if data and data[b"BODY[]"]:
                client.move([uid], target)
                moved += 1
        return moved, time.perf_counter() - t0
    finally:
        client.logout()


def count_stored(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM inboundmessage WHERE source = 'imap'").fetchone()[0]


def dovecot_problems(folder: Path) -> list[str]:
    try:
        text = (folder / "dovecot.log").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if "Error:" in line or "Fatal:" in line or "Panic:" in line]


# --------------------------------------------------------------------------- phases

def phase_imap(workdir: Path, dovecot_dir: Path, messages: list[bytes], report: list[str]) -> float | None:
    from dovecot import Dovecot  # type: ignore[import-not-found]  # tests/dovecot.py, on sys.path at run time

    n = len(messages)
    dovecot = Dovecot(dovecot_dir)
    gateway = None
    try:
        try:
            dovecot.start()
        except AssertionError as exc:
            raise RuntimeError(str(exc)) from exc
        append_seconds = append_all(dovecot.port, messages)
        before = folder_counts(dovecot.port)
        report.append(f"appended {n} mails to INBOX in {append_seconds:.2f} s ({n / append_seconds:.0f}/s, one "
                      f"connection); folders before: {before}")

        t_start = time.perf_counter()
        gateway, db_path = start_gateway(workdir, "imap", dovecot.port)
        gateway.wait_ready()
        t_ready = time.perf_counter()
        conn = wait_db(db_path, gateway)
        t_first = t_all_stored = t_first_record = t_done = None
        deadline = t_ready + 120 + n / 10
        while time.perf_counter() < deadline:
            stored = count_stored(conn)
            now = time.perf_counter()
            if stored and t_first is None:
                t_first = now
            if stored >= n and t_all_stored is None:
                t_all_stored = now
            records = count_records(conn)  # cheap; the full check only once the count is reached
            if records and t_first_record is None:
                t_first_record = time.perf_counter()
            if records >= n and count_dispatched(conn) >= n:
                t_done = time.perf_counter()
                break
            if stored >= n and count_terminal(conn) >= n:
                break  # everything settled, but some mails did not become records
            if gateway.proc.poll() is not None:
                break
            time.sleep(POLL_SECONDS)
        summary = db_summary(conn)
        reasons = sample_reasons(conn)
        stored = count_stored(conn)
        conn.close()
    finally:
        rc = gateway.stop() if gateway is not None else None

    try:
        after = folder_counts(dovecot.port)
        floor = bare_fetch_move(dovecot.port, DONE_FOLDER, "bench-bare") if after.get(DONE_FOLDER) else None
    finally:
        dovecot.stop()

    report.append(f"gateway start → port accepts : {t_ready - t_start:8.2f} s")
    if t_first is not None:
        report.append(f"port accepts → first stored  : {t_first - t_ready:8.2f} s")
    if t_all_stored is not None and t_first is not None:  # t_first is set first, unless n is 0
        report.append(f"IMAP store rate (fetch+move) : {n / (t_all_stored - t_first):8.1f} msg/s  "
                      f"(all {n} stored {t_all_stored - t_ready:.2f} s after the port accepted)")
    else:
        report.append(f"IMAP store rate              :      n/a  (only {stored}/{n} stored)")
    if t_first_record is not None:
        report.append(f"port accepts → first record  : {t_first_record - t_ready:8.2f} s  (the processor is woken "
                      "when a fetch round ends, or by its idle timer)")
    rate = None
    if t_done is not None:
        rate = n / (t_done - t_ready)
        report.append(f"IMAP end-to-end (queued)     : {rate:8.1f} msg/s  (all {n} records + outbox "
                      f"{t_done - t_ready:.2f} s after the port accepted; {n / (t_done - t_start):.1f} msg/s "
                      f"from process start)")
    else:
        report.append(f"IMAP end-to-end (queued)     :      n/a  (never saw all {n} records dispatched)")
        report.extend(f"  {r}" for r in reasons)
    report.append(f"  db: {summary}")
    report.append(f"  folders after: {after}")
    if after.get(DONE_FOLDER) != n or after.get("INBOX"):
        report.append(f"  !! expected INBOX 0 and {DONE_FOLDER} {n}")
    if floor is not None:
        moved, seconds = floor
        report.append(f"IMAP floor (FETCH+MOVE, no db): {moved / seconds:8.1f} msg/s  ({moved} in {seconds:.2f} s, "
                      f"{seconds / moved * 1000:.2f} ms per message)")
    if error_lines := gateway.log_problems():
        report.append(f"  !! gateway log has {error_lines} error line(s): {gateway.log_path}")
    if problems := dovecot_problems(dovecot_dir):
        report.append(f"  !! dovecot log has {len(problems)} error line(s), e.g. {problems[0]}")
    if rc not in (0, None):
        report.append(f"  !! gateway exited with {rc}")
    return rate


def phase_smtp(workdir: Path, messages: list[bytes], report: list[str]) -> float | None:
    """bench/ingest.py's throughput measurement against a fresh gateway (no bare baseline)."""
    n = len(messages)
    gateway, db_path = start_gateway(workdir, "smtp", None)
    try:
        gateway.wait_ready()
        conn = wait_db(db_path, gateway)
        box: list[tuple[list[ingest.Sent], float]] = []
        sender = threading.Thread(target=lambda: box.append(blast(gateway.port, messages)), daemon=True)
        sender.start()
        while sender.is_alive():
            count_records(conn)  # the same read load as the IMAP phase and bench/ingest.py
            sender.join(POLL_SECONDS)
        results, t0 = box[0]
        accepted = sum(r.code == 250 for r in results)
        last_250 = max((r.done for r in results if r.code == 250), default=t0)
        done = ingest.wait_until(conn, accepted, timeout=120 + accepted / 10)
        summary = db_summary(conn)
        reasons = sample_reasons(conn)
        conn.close()
    finally:
        rc = gateway.stop()
    report.append(f"SMTP last 250 (intake)       : {accepted / max(last_250 - t0, 1e-9):8.1f} msg/s  "
                  f"({accepted}/{n} accepted in {last_250 - t0:.2f} s)")
    if msg := refused(results):
        report.append(msg)
    rate = None
    if done is None:
        report.append(f"SMTP end-to-end (queued)     :      n/a  (never saw all {accepted} records dispatched)")
        report.extend(f"  {r}" for r in reasons)
    else:
        rate = accepted / (done - t0)
        report.append(f"SMTP end-to-end (queued)     : {rate:8.1f} msg/s  (all {accepted} records + outbox in "
                      f"{done - t0:.2f} s; {done - last_250:.2f} s after the last 250)")
    report.append(f"  db: {summary}")
    if problems := gateway.log_problems():
        report.append(f"  !! gateway log has {problems} error line(s): {gateway.log_path}")
    if rc not in (0, None):
        report.append(f"  !! gateway exited with {rc}")
    return rate


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=1000, help="mails in each phase (default 1000)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories (databases, logs)")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("-n must be positive")

    from dovecot import DOVECOT

    messages = build_messages(args.n, "imap")
    avg = sum(map(len, messages)) / len(messages)
    workdir = Path(tempfile.mkdtemp(prefix="liuhen-bench-imap-"))
    dovecot_dir = Path(tempfile.mkdtemp(prefix="liuhen-bench-dovecot-"))
    dovecot_dir.chmod(0o755)
    report = [
        "== liuhen IMAP intake benchmark ==",
        f"params: N={args.n}, mail ~{avg / 1024:.1f} KB (UTF-8 base64, Chinese), same mails in both phases; "
        f"IMAP: one mailbox, security none, processed_folder {DONE_FOLDER}, mails in INBOX before the gateway "
        f"starts; SMTP: {CLIENTS} client threads, one connection per message; SQLite WAL synchronous=FULL; "
        "--no-delivery",
        f"host: {ingest._versions()}, {DOVECOT}",
        f"dirs: {workdir}, {dovecot_dir}{'' if args.keep else ' (removed at exit)'}",
    ]
    status = 0
    try:
        if not Path(DOVECOT).exists():
            raise RuntimeError(f"Dovecot is not installed ({DOVECOT}; apt-get install dovecot-imapd)")
        report.append("-- IMAP: Dovecot INBOX → liuhen serve --no-delivery --")
        imap_rate = phase_imap(workdir, dovecot_dir, messages, report)
        report.append("-- SMTP: bench/ingest.py's intake on a fresh gateway --")
        smtp_rate = phase_smtp(workdir, messages, report)
        if imap_rate and smtp_rate:
            report.append(f"ratio IMAP/SMTP (end-to-end) : {imap_rate / smtp_rate:8.3f}")
        else:
            report.append("ratio IMAP/SMTP (end-to-end) :      n/a")
    except RuntimeError as exc:  # Dovecot or a gateway could not be started
        report.append(f"!! {exc}")
        status = 1
    finally:
        print("\n".join(report), flush=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(dovecot_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
