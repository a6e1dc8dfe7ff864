#!/usr/bin/env python3
"""Scale-out benchmark: one `liuhen serve` versus two on one PostgreSQL database — throughput and duplicates.

    .venv/bin/python bench/scaleout.py [--requests 400] [--rounds 1] [--keep]

Two gateways may share one PostgreSQL schema: stored mails and outbound mails are claimed
with leases (SELECT … FOR UPDATE SKIP LOCKED), and the reminder sweep runs under an advisory
lock, so each piece of work is done by one node (on SQLite a second serve is refused). This
benchmark runs both set-ups against the same sink and checks that nothing is done twice.

Each round, in this order:
  one gateway   `liuhen serve` on a fresh throw-away schema of $LIUHEN_BENCH_POSTGRES (default
                postgresql://postgres@127.0.0.1:5432/test), its own data dir and SMTP port,
                [web] enabled = false, [delivery] mode = "smtp" to the sink (bench/deliver.py's
                make_gateway). N requests (bench/deliver.py's ~4 KB high-priority request:
                4 mails each — the ack, two requests, the head's copy) from 4 client threads,
                one SMTP connection per request.
  two gateways  two `liuhen serve` processes on ONE fresh schema, each with its own data dir
                (each node owns its spool) and SMTP port, the same sink. The second is started
                once the first accepts connections (the first creates the schema). The same N
                requests, request i to gateway i mod 2, from the same 4 client threads.
Clock, both: first send → the sink holds all 4N mails of the requests (as bench/deliver.py
waits); rate = requests fully delivered per second; the ratio two/one is printed per round
(and its median). Untimed, after the clock: the outbox is let settle (nothing queued or
sending) and the sink gets 2 more seconds, so a late duplicate would still be seen.

Duplicate checks after each set-up, printed per run (a line starting with "!! DUPLICATE" if any):
  - records: as many as requests accepted, every record ID (record.ref) once, and at the sink
    every request's mails carry one record ID ([PRJ-…] in the Subject) that no other request's do;
  - inbound: one row per request, all processed, each begun once (attempts = 1: no second
    processor took up a mail another was on — that would be double work, not a double outcome);
  - outbox: 4 mails per record (ack 1, request 2, head_copy 1), all 'sent';
  - sink: every outbound Message-ID exactly once (duplicates, missing and unknown ones counted),
    every request's 4 mails and no more;
  - reminders: event rows of kind 'reminder' / 'escalation' (expected 0 in a short run: the
    dates are a month ahead) and the sentkey rows (unique by its primary key).
Who did the work is printed too: stored mails processed and mails delivered per gateway (the
claimant pid in claimed_by, mapped to the serve process or its processor child).

The machine this was written on has 2 CPU cores, on which the gateways, PostgreSQL, the sink and
the SMTP clients all compete: two gateways need not be faster than one there. The point is that
they work together without doing anything twice; the throughput ratio is printed, not judged.
A benchmark, not a test: it never asserts timings and exits 0 (1 only if a server cannot be
started). The serve processes are stopped with SIGTERM (and waited for) at the end and on
errors; the schemas are dropped and the temporary directory removed unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/deliver.py and bench/ingest.py

import deliver
import ingest
from deliver import MAILS_PER_REQUEST, PG_URL, Arrival, Databases, Db, Process, SinkHandler, make_gateway
from ingest import CLIENTS, HOST, Sent, free_port, refused, send_one

GRACE_SECONDS = 2.0  # after the outbox settled: time for a late duplicate to reach the sink
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^<>\r\n]*>)", re.MULTILINE | re.IGNORECASE)
EXPECTED_KINDS = {"ack": 1, "request": 2, "head_copy": 1}  # per record of a high-priority request


# --------------------------------------------------------------------------- the sink, with Message-IDs

class IdSink(SinkHandler):
    """bench/deliver.py's sink, noting each mail's Message-ID as well."""

    def __init__(self) -> None:
        super().__init__()
        self.message_ids: list[str] = []

    def reset(self) -> None:
        with self.cond:
            super().reset()
            self.message_ids = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.content
        end = raw.find(b"\r\n\r\n")
        m = _MESSAGE_ID.search(raw if end < 0 else raw[:end + 2])
        with self.cond:
            self.message_ids.append(m.group(1).decode("ascii", "replace") if m else "")
        return await super().handle_DATA(server, session, envelope)

    def ids(self) -> list[str]:
        with self.cond:
            return list(self.message_ids)


@contextlib.contextmanager
def running_sink() -> Iterator[tuple[IdSink, int]]:
    handler = IdSink()
    port = free_port()
    controller = deliver.SinkController(handler, hostname=HOST, port=port, enable_SMTPUTF8=True, decode_data=False,
                                        ident="bench sink")
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


# --------------------------------------------------------------------------- clients

def send_split(ports: list[int], messages: list[bytes]) -> tuple[list[Sent], float]:
    """ingest.blast over several gateways: CLIENTS threads as fast as they go, request i to
    ports[i % len(ports)]; returns the results and t0 (just before the first thread starts)."""
    results = [Sent() for _ in messages]
    lock = threading.Lock()
    todo = iter(range(len(messages)))

    def client() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            send_one(ports[i % len(ports)], messages[i], results[i])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, t0


# --------------------------------------------------------------------------- processes

def process_tree(pid: int) -> set[int]:
    """pid and its descendants (Linux /proc), e.g. serve and its processor child."""
    seen, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except (OSError, ValueError):
                pass
    return seen


def log_notes(server: Process, rc: int | None, samples: int = 3) -> list[str]:
    """What the serve log (its stdout and stderr) says beyond silence: warnings, errors, tracebacks."""
    try:
        lines = server.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return [f"  !! {server.name}: cannot read its log {server.log_path}: {exc}"]
    bad = [line for line in lines if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL"))
           or line.startswith("Traceback")]
    notes = []
    if bad:
        notes.append(f"  !! {server.name}: {len(bad)} warning/error line(s) in {server.log_path}, e.g.:")
        notes += [f"       {line[:200]}" for line in bad[:samples]]
    if rc not in (0, None):
        notes.append(f"  !! {server.name} exited with {rc}")
    if not bad and rc in (0, None):
        notes.append(f"  {server.name}: log clean ({len(lines)} line(s)), exit {rc}")
    return notes


# --------------------------------------------------------------------------- checks

@dataclass
class Run:
    label: str
    gateways: int
    requests: int
    accepted: int = 0
    seconds: float | None = None  # first send → all mails at the sink
    intake_seconds: float = 0.0  # first send → last 250
    records: int = 0
    outbound: int = 0
    sent: int = 0
    sink_dups: int = 0
    missing: int = 0
    begun_twice: int = 0  # stored mails whose processing was begun more than once (attempts > 1)
    reminders: int = 0
    escalations: int = 0
    duplicates: list[str] = field(default_factory=list)  # what was done twice, one line each
    problems: list[str] = field(default_factory=list)  # anything else off
    processed_by: str = ""
    delivered_by: str = ""

    @property
    def rate(self) -> float | None:
        return None if self.seconds is None else self.accepted / self.seconds


def _pid(claimant: str) -> int | None:
    pid = claimant.split("/")[0].rpartition(":")[2]
    return int(pid) if pid.isdigit() else None


def _split(rows: list[tuple], trees: list[set[int]]) -> str:
    """'a 210 / b 190' from (claimed_by, count) rows: which gateway's processes claimed how much."""
    counts: Counter[str] = Counter()
    for claimant, n in rows:
        counts[_gateway_of(claimant or "", trees)] += n
    return " / ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def _processed_by(rows: list[tuple], trees: list[set[int]]) -> str:
    """'a 200 / b 200 (0 by claim)': a mail the processor imports from its own spool is processed
    at once, unclaimed (claimed_by ''), by the gateway that received it — request i went to
    gateway i mod len(trees), its index read from the Message-ID; a mail taken up from the
    database (pending_ids) names its claimant."""
    counts: Counter[str] = Counter()
    claimed = 0
    for message_id, claimant in rows:
        if claimant:
            claimed += 1
            counts[_gateway_of(claimant, trees)] += 1
            continue
        m = deliver._REQUEST_ID.search(message_id.encode())
        counts[chr(ord("a") + int(m.group(1).rpartition(b".")[2]) % len(trees)) if m else "?"] += 1
    return " / ".join(f"{name} {n}" for name, n in sorted(counts.items())) + f" ({claimed} by claim)"


def _gateway_of(claimant: str, trees: list[set[int]]) -> str:
    """The letter of the gateway whose process (serve or its processor child) is the claimant."""
    pid = _pid(claimant)
    return next((chr(ord("a") + k) for k, tree in enumerate(trees) if pid in tree), "?")


def check(run: Run, db: Db, arrivals: list[Arrival], sink_ids: list[str], trees: list[set[int]]) -> None:
    n = run.accepted
    # Records and their IDs.
    refs = [r[0] for r in db.rows("SELECT ref FROM record")]
    run.records = len(refs)
    twice = [ref for ref, c in Counter(refs).items() if c > 1]
    if twice:
        run.duplicates.append(f"record ID(s) twice in the database: {twice[:5]}")
    if len(refs) != n:
        (run.duplicates if len(refs) > n else run.problems).append(f"{len(refs)} records for {n} accepted requests")
    inbound = db.rows("SELECT state, count(*), count(DISTINCT message_id) FROM inboundmessage GROUP BY state")
    total_in = sum(r[1] for r in inbound)
    if total_in != n or any(state != "processed" for state, _, _ in inbound):
        run.problems.append(f"inbound {total_in} rows for {n} requests, states {dict((s, c) for s, c, _ in inbound)}")
    run.begun_twice = db.scalar("SELECT count(*) FROM inboundmessage WHERE attempts > 1")
    if run.begun_twice:
        run.problems.append(f"{run.begun_twice} stored mail(s) begun more than once (attempts > 1): a second "
                            f"processor took them up (pending_ids) while the one that imported them from its spool "
                            f"was on them; one outcome kept, the work done twice")
    # Record IDs at the sink: one per request, none shared.
    refs_of: dict[str, set[str]] = {}
    for a in arrivals:
        if a.request is not None and a.ref:
            refs_of.setdefault(a.request, set()).add(a.ref)
    several = {req: sorted(r) for req, r in refs_of.items() if len(r) > 1}
    if several:
        run.problems.append(f"{len(several)} request(s) whose mails name several record IDs, e.g. "
                            f"{next(iter(several.items()))}")
    owners = Counter(ref for r in refs_of.values() for ref in r)
    shared = [ref for ref, c in owners.items() if c > 1]
    if shared:
        run.duplicates.append(f"record ID(s) in the subjects of several requests: {shared[:5]}")
    # The outbox.
    out = db.rows("SELECT message_id, status, record_id, kind FROM outboundmessage")
    run.outbound = len(out)
    run.sent = sum(status == "sent" for _, status, _, _ in out)
    if run.sent != len(out):
        run.problems.append(f"outbox not all sent: {dict(Counter(status for _, status, _, _ in out))}")
    per_record = Counter((record_id, kind) for _, _, record_id, kind in out)
    wrong = {}
    for record_id in {record_id for _, _, record_id, _ in out}:
        kinds = {kind: c for (r, kind), c in per_record.items() if r == record_id}
        if kinds != EXPECTED_KINDS:
            wrong[record_id] = kinds
    if wrong:
        more = any(c > EXPECTED_KINDS.get(k, 0) for kinds in wrong.values() for k, c in kinds.items())
        (run.duplicates if more else run.problems).append(
            f"{len(wrong)} record(s) whose outbox is not {EXPECTED_KINDS}, e.g. {next(iter(wrong.items()))}")
    if len(out) != MAILS_PER_REQUEST * n:
        run.problems.append(f"outbox holds {len(out)} mails, expected {MAILS_PER_REQUEST * n}")
    # The sink: each outbound Message-ID exactly once.
    ours = {message_id for message_id, _, _, _ in out}
    at_sink = Counter(sink_ids)
    dups = {mid: c for mid, c in at_sink.items() if c > 1}
    run.sink_dups = sum(c - 1 for c in dups.values())
    if dups:
        run.duplicates.append(f"{len(dups)} Message-ID(s) delivered more than once ({run.sink_dups} extra "
                              f"deliveries), e.g. {next(iter(dups.items()))}")
    run.missing = len(ours - at_sink.keys())
    if run.missing:
        run.problems.append(f"{run.missing} outbound mail(s) never reached the sink")
    unknown = [mid for mid in at_sink if mid not in ours]
    if unknown:
        run.problems.append(f"{len(unknown)} mail(s) at the sink not in the outbox, e.g. {unknown[:3]}")
    per_request = Counter(a.request for a in arrivals if a.request is not None)
    extra = {req: c for req, c in per_request.items() if c > MAILS_PER_REQUEST}
    if extra:
        run.duplicates.append(f"{len(extra)} request(s) with more than {MAILS_PER_REQUEST} mails at the sink, "
                              f"e.g. {next(iter(extra.items()))}")
    short = n - sum(c >= MAILS_PER_REQUEST for c in per_request.values())
    if short > 0:
        run.problems.append(f"{short} request(s) with fewer than {MAILS_PER_REQUEST} mails at the sink")
    # Reminders: none due in a short run; the sentkey table is unique by its primary key.
    events = dict(db.rows("SELECT kind, count(*) FROM event WHERE kind IN ('reminder', 'escalation') GROUP BY kind"))
    run.reminders, run.escalations = events.get("reminder", 0), events.get("escalation", 0)
    keys, distinct = db.rows("SELECT count(*), count(DISTINCT key) FROM sentkey")[0]
    if keys != distinct:
        run.duplicates.append(f"sentkey: {keys} rows, {distinct} distinct keys")
    if run.reminders or run.escalations or keys:
        run.problems.append(f"reminder events {run.reminders}, escalation events {run.escalations}, "
                            f"sentkey rows {keys} (expected none in a short run)")
    # Who did the work.
    run.processed_by = _processed_by(db.rows("SELECT message_id, claimed_by FROM inboundmessage "
                                             "WHERE state = 'processed'"), trees)
    run.delivered_by = _split(db.rows("SELECT claimed_by, count(*) FROM outboundmessage WHERE status = 'sent' "
                                      "GROUP BY claimed_by"), trees)


# --------------------------------------------------------------------------- one set-up

def run_setup(workdir: Path, dbs: Databases, sink: IdSink, sink_port: int, messages: list[bytes], gateways: int,
              label: str, report: list[str]) -> Run:
    run = Run(label, gateways, len(messages))
    url = dbs.new(label)
    gws = [make_gateway(workdir, f"{label}-{chr(ord('a') + k)}", url, sink_port) for k in range(gateways)]
    servers: list[Process] = []
    rcs: list[int | None] = []
    try:
        for gw in gws:  # one after the other: the first creates the schema
            servers.append(gw.start(f"gateway {gw.config.stem}", gw.config.stem))
            servers[-1].wait_ready()
        sink.reset()
        results, t0 = send_split([gw.port for gw in gws], messages)
        run.accepted = sum(r.code == 250 for r in results)
        run.intake_seconds = max((r.done for r in results if r.code == 250), default=t0) - t0
        if msg := refused(results):
            run.problems.append(msg.strip())
        done = sink.wait(MAILS_PER_REQUEST * run.accepted, timeout=120 + run.accepted)
        if done is not None:
            run.seconds = done - t0
        db = Db(url)
        try:
            db.settle()
            time.sleep(GRACE_SECONDS)  # a late duplicate would arrive now
            arrivals, connections = sink.snapshot()
            trees = [process_tree(s.proc.pid) for s in servers]
            check(run, db, arrivals, sink.ids(), trees)
            summary = db.summary()
        finally:
            db.close()
    finally:
        for s in servers:
            try:
                rcs.append(s.stop())
            except Exception as exc:  # keep stopping the others
                report.append(f"  !! could not stop {s.name}: {exc}")
                rcs.append(None)
    rate = run.rate
    report.append(f"-- {label}: {gateways} gateway(s) on schema {dbs.schemas[-1]} --")
    report.append(f"  accepted {run.accepted}/{run.requests} in {run.intake_seconds:.2f} s; "
                  + (f"all {MAILS_PER_REQUEST * run.accepted} mails at the sink after {run.seconds:.2f} s: "
                     f"{rate:.1f} requests fully delivered/s" if rate is not None and run.seconds is not None
                     else f"the sink did not get all {MAILS_PER_REQUEST * run.accepted} mails"))
    report.append(f"  {deliver.sink_summary(arrivals, connections, run.accepted)}")
    report.append(f"  {summary}")
    report.append(f"  processed by: {run.processed_by or '-'}; delivered by: {run.delivered_by or '-'}")
    for line in run.duplicates:
        report.append(f"  !! DUPLICATE: {line}")
    for line in run.problems:
        report.append(f"  !! {line}")
    if not run.duplicates:
        report.append(f"  no duplicates: {run.records} record IDs unique, {len(set(sink.ids()))} Message-IDs "
                      f"each once at the sink")
    for s, rc in zip(servers, rcs):
        report.extend(log_notes(s, rc))
    return run


# --------------------------------------------------------------------------- main

def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped, schemas dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=400, help="requests per set-up (default 400)")
    p.add_argument("--rounds", type=int, default=1, help="rounds, one gateway then two each (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, data dirs, logs)")
    args = p.parse_args(argv)
    if args.requests < 1 or args.rounds < 1:
        p.error("--requests and --rounds must be positive")
    signal.signal(signal.SIGTERM, _terminated)

    workdir = Path(tempfile.mkdtemp(prefix="liuhen-bench-scaleout-"))
    dbs = Databases("postgresql", workdir)
    probe = deliver.build_messages(1, "one")
    report = [
        "== liuhen scale-out benchmark: one gateway vs two on one PostgreSQL database ==",
        f"params: N={args.requests} requests × {args.rounds} round(s), {CLIENTS} client threads, one connection per "
        f"request, ~{len(probe[0]) / 1024:.1f} KB each, {MAILS_PER_REQUEST} mails per request; "
        f"database {PG_URL} (a throw-away schema per set-up)",
        f"host: {ingest._versions()}",
        f"dir: {workdir}{'' if args.keep else ' (removed at exit)'}",
    ]
    runs: list[tuple[Run, Run | None]] = []
    status = 0
    try:
        with running_sink() as (sink, sink_port):
            report.append(f"sink: aiosmtpd on {HOST}:{sink_port} in this process")
            for k in range(1, args.rounds + 1):
                one = run_setup(workdir, dbs, sink, sink_port, deliver.build_messages(args.requests, "one"), 1,
                                f"r{k}-one", report)
                runs.append((one, None))
                two = run_setup(workdir, dbs, sink, sink_port, deliver.build_messages(args.requests, "two"), 2,
                                f"r{k}-two", report)
                runs[-1] = (one, two)
    except RuntimeError as exc:  # a server could not be started
        report.append(f"!! {exc}")
        status = 1
    except (KeyboardInterrupt, SystemExit):
        report.append("!! interrupted: the serve processes were stopped, the run in progress is not in the table")
        raise
    finally:
        try:
            dbs.drop_all()
        except Exception as exc:
            report.append(f"!! could not drop the PostgreSQL schemas {dbs.schemas}: {exc}")
        if runs:
            report.extend(table(runs))
        print("\n".join(report), flush=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


def table(runs: list[tuple[Run, Run | None]]) -> list[str]:
    head = ("round", "gateways", "accepted", "intake req/s", "delivered req/s", "records", "dup IDs", "outbox sent",
            "sink dup M-IDs", "missing", "begun 2x", "remind/escal", "processed by", "delivered by")
    rows = []
    for k, pair in enumerate(runs, 1):
        for run in pair:
            if run is None:
                continue
            dup_ids = sum("record ID" in d for d in run.duplicates)
            rows.append((str(k), str(run.gateways), f"{run.accepted}/{run.requests}",
                         f"{run.accepted / max(run.intake_seconds, 1e-9):.1f}", _fmt(run.rate, ".1f"),
                         f"{run.records}/{run.accepted}", str(dup_ids), f"{run.sent}/{run.outbound}",
                         str(run.sink_dups), str(run.missing), str(run.begun_twice),
                         f"{run.reminders}/{run.escalations}",
                         run.processed_by or "-", run.delivered_by or "-"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["== summary =="]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    ratios = [two.rate / one.rate for one, two in runs
              if two is not None and one.rate is not None and two.rate is not None and one.rate > 0]
    if ratios:
        lines.append(f"ratio two/one (requests fully delivered/s): {', '.join(f'{r:.3f}' for r in ratios)}"
                     + (f"; median {statistics.median(ratios):.3f}" if len(ratios) > 1 else ""))
    else:
        lines.append("ratio two/one: n/a")
    found = [(run.label, d) for pair in runs for run in pair if run is not None for d in run.duplicates]
    if found:
        lines.append(f"!! DUPLICATES FOUND in {len({label for label, _ in found})} run(s):")
        lines += [f"!!   {label}: {d}" for label, d in found]
    else:
        lines.append("duplicates: none (record IDs, inbound, outbox per record, Message-IDs at the sink, sentkey)")
    off = sum(len(run.problems) for pair in runs for run in pair if run is not None)
    if off:
        lines.append(f"other problems: {off} (the '!!' lines above)")
    lines.append("note: 2 CPU cores are shared by the gateways, PostgreSQL, the sink and the clients; the ratio is "
                 "for the record, the point is the two working together without duplicates")
    return lines


if __name__ == "__main__":
    sys.exit(main())
