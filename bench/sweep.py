#!/usr/bin/env python3
"""Scheduler benchmark: what one sweep (gateway.scheduler.sweep) costs with many records open.

    .venv/bin/python bench/sweep.py [--sizes 10000,100000] [--due 1000] [--db sqlite|postgresql]
                                    [--repeat 30] [--due-repeat 5] [--no-digest] [--explain]

For each size N it builds a fresh database (SQLite in a temporary directory, or PostgreSQL in a
throw-away schema of $LIUHEN_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test,
dropped at the end) holding N open records, each with a realistic form (fields JSON), one
initiator and two recipient participants, and two milestones, bulk-inserted with
``insert_rows`` in one transaction (build time printed). 10% of the records await sign-off of
a result (chain counted from ``chain_due_at``), the rest an answer (``response_due_at``). The
people come from a generated directory of 2,000 staff in 20 departments.

Every ``next_reminder_at`` is in the future (initiators and records have none) except for
exactly --due recipients, one per record in --due random records, whose chain fell due
1–600 minutes before the sweep instant: each of them gets one reminder.

The sweep instant is Friday 2026-11-27 10:00 Asia/Shanghai (a FixedClock). ``digest_time`` is
set to 23:00, which that instant has not reached, so ``digests()`` returns at its time check and
the daily digest does not distort the sweep figures; it is measured separately, once per size
(the same instant with digest_time 00:00), unless --no-digest.

Measured at each size, in this order:
  due      --due-repeat timed sweeps with --due chains due. Before each, the due rows are reset
           (next_reminder_at back to their deadline; sentkey, outbox and event tables emptied),
           so every repeat does the same work. One untimed run before them counts statements.
           per due = median / due; net per due = (median − idle p50) / due.
  idle     after those sweeps nothing is due at the same instant: --repeat timed sweeps,
           p50 / p95 / max (one untimed run before them counts statements).
  digest   the daily digest once (mails queued, time).
On PostgreSQL the tables are ANALYZEd after the build (autovacuum would have done it on a live
database); SQLite gets no ANALYZE, as the gateway never runs one. A benchmark, not a test: it
prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peewee import Database, fn

from config.settings import Settings, load_settings
from gateway import scheduler
from gateway.bootstrap import Context, build_context
from gateway.clock import FixedClock
from store.db import is_postgres
from store.models import ActionItem, Event, Meeting, Milestone, OutboundMessage, Participant, Record, SentKey
from store.repositories import insert_rows

PG_URL = os.environ.get("LIUHEN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SEED = 20261127
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)  # a Friday morning
DIGEST_TIME = "23:00"  # not reached at NOW: the sweeps measured skip the digest
DOMAIN = "liuhen.test"
DEPARTMENTS = 20
PEOPLE_PER_DEPARTMENT = 100
BATCH_RECORDS = 2000  # records generated and inserted per step (all in one transaction)
MAX_PARAMS = 30_000  # per INSERT statement: SQLite allows 32,766 variables, PostgreSQL 65,535
SIGNOFF_SHARE = 0.10  # records whose result awaits the recipients' sign-off
PRIORITIES = (("高", 0.2), ("中", 0.6), ("低", 0.2))

SURNAMES = "张王李赵陈刘杨黄周吴徐孙马朱胡郭何林罗高"
GIVEN = "伟强磊静敏丽军杰涛明华芳勇艳娜超秀英平刚"
DEPARTMENT_NAMES = ["研发部", "产品部", "市场部", "财务部", "人力资源部", "客户服务部", "采购部", "质检部", "法务部", "生产部", "物流部", "行政部", "销售部", "设计部", "测试部", "运维部", "数据部", "品牌部", "供应链部", "战略部"]
TOPICS = ["智能手表", "蓝牙耳机", "智能手环", "儿童手表", "运动相机", "智能音箱", "充电底座", "表带配件"]
STAGES = ["硬件方案评审", "样机测试", "量产计划", "物料清单确认", "供应商评估", "成本核算", "包装设计", "固件升级", "渠道推广", "售后流程"]
DUTIES = ("完成硬件方案评估", "提供竞品价格", "确认物料交期", "输出测试报告", "评估模具费用", "核算BOM成本",
          "确认包装方案", "准备推广物料", "整理客户反馈", "审核合同条款")
MILESTONES = ("方案评审", "样机测试", "试产评审", "量产启动", "物料到货", "测试报告", "合同签署", "上市发布")
BACKGROUND = ("新款{topic}需在Q1量产，需确认{stage}以锁定BOM成本和交付节奏；请各部门按职责在截止前给出结论，"
              "如有风险请同时说明原因、影响和建议的对策。")


# ------------------------------------------------------------------ the organisation

@dataclass(frozen=True)
class Staff:
    name: str
    email: str
    department: str


def write_directory(path: Path) -> list[Staff]:
    """A directory of DEPARTMENTS × PEOPLE_PER_DEPARTMENT staff; the first of each department heads it."""
    rng = random.Random(SEED)
    staff, lines = [], []
    for d, department in enumerate(DEPARTMENT_NAMES[:DEPARTMENTS]):
        for i in range(PEOPLE_PER_DEPARTMENT):
            n = d * PEOPLE_PER_DEPARTMENT + i
            staff.append(Staff(rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                               f"staff{n:04d}@liuhen.localhost", department))
        lines += ["[[departments]]", f'name = "{department}"', f'head = "{staff[-PEOPLE_PER_DEPARTMENT].email}"', ""]
    for s in staff:
        lines += ["[[people]]", f'name = "{s.name}"', f'email = "{s.email}"', f'department = "{s.department}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return staff


# ------------------------------------------------------------------ the data

def minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


@dataclass
class Built:
    records: int
    participants: int
    milestones: int
    seconds: float
    due_ids: list[int] = field(default_factory=list)


def generate(rng: random.Random, first: int, last: int, due_records: set[int], staff: list[Staff],
             response_hours: dict[str, float]) -> tuple[list[dict], list[dict], list[dict]]:
    """Rows for records first..last: (records, participants, milestones)."""
    records: list[dict[str, object]] = []
    people: list[dict[str, object]] = []
    milestones: list[dict[str, object]] = []
    priorities = [p for p, _ in PRIORITIES]
    weights = [w for _, w in PRIORITIES]
    fmt = "%Y-%m-%d %H:%M"
    for rid in range(first, last + 1):
        initiator, r1, r2 = rng.sample(staff, 3)
        priority = rng.choices(priorities, weights)[0]
        lang = "en" if rng.random() < 0.1 else "zh"
        signoff = rng.random() < SIGNOFF_SHARE
        created = minute(NOW - timedelta(minutes=rng.randint(60, 30 * 24 * 60)))
        due_at = minute(NOW + timedelta(hours=rng.randint(3 * 24, 90 * 24)))
        topic, stage = rng.choice(TOPICS), rng.choice(STAGES)
        subject = f"{topic}项目-{stage}"
        ms = sorted(minute(NOW + timedelta(hours=rng.randint(2 * 24, 60 * 24))) for _ in range(2))
        ms_names = rng.sample(MILESTONES, 2)
        duties = rng.sample(DUTIES, 2)
        local = lambda dt: dt.astimezone(TZ).strftime(fmt)  # noqa: E731
        fields = {
            "subject": subject,
            "initiator": f"{initiator.department}/{initiator.name}",
            "priority": priority,
            "due": local(due_at),
            "background": BACKGROUND.format(topic=topic, stage=stage),
            "participants": f"{r1.department}/{r1.name} — {duties[0]}\n{r2.department}/{r2.name} — {duties[1]}",
            "milestones": f"{ms_names[0]} — {local(ms[0])}\n{ms_names[1]} — {local(ms[1])} — {r1.name}",
            "resources": f"测试样机{rng.randint(2, 10)}台",
            "attachments": f"产品需求文档V1.{rng.randint(0, 9)}-{created.astimezone(TZ):%Y%m%d}.docx",
        }
        records.append(dict(
            id=rid, ref=f"PRJ-2026-{rid:06d}", form="project", subject=subject,
            status="confirming" if signoff else "open", priority=priority, lang=lang,
            initiator_email=initiator.email, initiator_name=initiator.name, fields=fields, due_at=due_at,
            thread_id=f"<prj-2026-{rid:06d}@{DOMAIN}>", source_inbound=None, created_at=created, updated_at=created,
            result="采用方案B，按计划推进" if signoff else "", retro="", archive_category="", archive_key="",
            archived_at=None, next_reminder_at=None))
        base: dict[str, object] = dict(record=rid, external=False, responded_at=None, response="", signed_at=None,
                                       chain_due_at=None)
        people.append(base | dict(email=initiator.email, name=initiator.name, department=initiator.department,
                                  role="initiator", responsibility="", response_due_at=None, next_reminder_at=None))
        window = timedelta(hours=response_hours.get(priority, 24))
        for n, (person, duty) in enumerate(((r1, duties[0]), (r2, duties[1]))):
            if rid in due_records and n == 0:  # due now: the deadline passed 1–600 minutes ago
                deadline = NOW - timedelta(minutes=rng.randint(1, 600))
            else:  # due later: an hour to two weeks ahead
                deadline = minute(NOW + timedelta(minutes=rng.randint(60, 14 * 24 * 60)))
            row = base | dict(email=person.email, name=person.name, department=person.department, role="recipient",
                              responsibility=duty, next_reminder_at=deadline)
            if signoff:  # answered; now the result waits for the signature
                row |= dict(response_due_at=created + window, responded_at=created + window / 2, response="同意",
                            chain_due_at=deadline)
            else:
                row |= dict(response_due_at=deadline)
            people.append(row)
        for position, (name, when) in enumerate(zip(ms_names, ms)):
            milestones.append(dict(record=rid, position=position, name=name, due_at=when,
                                   owner_email=(r1 if position else initiator).email, delayed_from=None,
                                   next_reminder_at=when - timedelta(hours=24)))
    return records, people, milestones


def insert_chunked(model, rows: list[dict]) -> None:
    if not rows:
        return
    size = max(1, MAX_PARAMS // len(rows[0]))
    for i in range(0, len(rows), size):
        insert_rows(model, rows[i:i + size])


def build(ctx: Context, n: int, due: int, staff: list[Staff]) -> Built:
    """n open records in one transaction; returns counts and the seconds of generation, insert
    and commit (generation is a small part of it)."""
    rng = random.Random(SEED)
    due_records = set(rng.sample(range(1, n + 1), due))
    counts = [0, 0, 0]
    start = time.perf_counter()
    with ctx.db.atomic():
        for first in range(1, n + 1, BATCH_RECORDS):
            rows = generate(rng, first, min(n, first + BATCH_RECORDS - 1), due_records, staff,
                            ctx.rules.response_hours)
            for i, (model, batch) in enumerate(zip((Record, Participant, Milestone), rows)):
                insert_chunked(model, batch)
                counts[i] += len(batch)
        if is_postgres(ctx.db):  # the records were given their ids: move the sequence past them
            ctx.db.execute_sql("SELECT setval(pg_get_serial_sequence('record', 'id'), %s)", (n,))
    seconds = time.perf_counter() - start
    due_ids = [p.id for p in Participant.select(Participant.id).where(Participant.next_reminder_at <= NOW)]
    records, participants, milestones = counts
    return Built(records, participants, milestones, seconds, due_ids)


def due_now() -> dict[str, int]:
    """Rows whose next stage is due at NOW, per kind."""
    return {m.__name__: m.select().where(m.next_reminder_at <= NOW).count()
            for m in (Participant, Milestone, ActionItem, Meeting, Record)}


def reset_due(ctx: Context, due_ids: list[int]) -> None:
    """Put the due chains back to their deadline and forget every mail the last sweep wrote."""
    with ctx.db.atomic():
        for i in range(0, len(due_ids), 500):
            Participant.update(next_reminder_at=fn.COALESCE(Participant.chain_due_at, Participant.response_due_at)
                               ).where(Participant.id.in_(due_ids[i:i + 500])).execute()
        for model in (SentKey, OutboundMessage, Event):
            model.delete().execute()


# ------------------------------------------------------------------ measuring

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


T = TypeVar("T")


def timed(fn_: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn_()
    return (time.perf_counter() - start) * 1000, result


@contextmanager
def recording(db: Database) -> Iterator[list[tuple[str, object]]]:
    """Every statement peewee sends through execute_sql (BEGIN and COMMIT are not among them)."""
    calls: list[tuple[str, object]] = []
    original = db.execute_sql

    def execute_sql(sql, params=None, *args, **kwargs):
        calls.append((sql, params))
        return original(sql, params, *args, **kwargs)

    db.execute_sql = execute_sql  # type: ignore[method-assign]  # on this instance, until the block ends
    try:
        yield calls
    finally:
        del db.execute_sql


def explain(db: Database, statements: list[tuple[str, object]]) -> None:
    for sql, params in statements:
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        print(f"    SELECT … {sql[sql.index(' FROM '):].strip()}")
        prefix = "EXPLAIN " if is_postgres(db) else "EXPLAIN QUERY PLAN "
        for row in db.execute_sql(prefix + sql, params).fetchall():
            print(f"      {row[0] if is_postgres(db) else row[-1]}")


KINDS = ("_participants", "_milestones", "_action_items", "_minutes", "_retros")


def by_kind(ctx: Context, repeat: int) -> dict[str, float]:
    """p50 ms of each of the sweep's per-kind transactions, and of the digest check, nothing due."""
    out: dict[str, float] = {}
    for name in KINDS:
        kind = getattr(scheduler, name, None)
        if kind is None:  # renamed in the scheduler: skip the breakdown, not the benchmark
            continue

        def one(kind: Callable[[Context], object] = kind) -> None:
            with ctx.db.atomic():
                kind(ctx)

        out[name.lstrip("_")] = statistics.median(timed(one)[0] for _ in range(repeat))
    out["digest check"] = statistics.median(timed(lambda: scheduler.digests(ctx))[0] for _ in range(repeat))
    return out


@dataclass
class Result:
    size: int
    built: Built
    due: int
    due_ms: list[float]
    due_queued: int
    due_statements: int
    idle_ms: list[float]
    idle_queued: int
    idle_statements: int
    kinds: dict[str, float]
    digest_ms: float | None
    digest_mails: int


def measure(ctx: Context, clock: FixedClock, size: int, built: Built, args: argparse.Namespace) -> Result:
    due = len(built.due_ids)
    # (b) due chains: one untimed run to count statements and warm up, then timed repeats.
    clock.instant = NOW
    with recording(ctx.db) as calls:
        queued = scheduler.sweep(ctx)
    due_statements = len(calls)
    due_ms = []
    for _ in range(args.due_repeat):
        reset_due(ctx, built.due_ids)
        pending = due_now()
        if pending["Participant"] != due or sum(pending.values()) != due:
            print(f"  (!) expected {due} due participants, found {pending}")
        ms, queued = timed(lambda: scheduler.sweep(ctx))
        due_ms.append(ms)
        if queued != due:
            print(f"  (!) a sweep with {due} due queued {queued} mails")
    # (a) nothing due at the same instant: the due chains have moved on to their next stage.
    pending = due_now()
    if sum(pending.values()):
        print(f"  (!) still due after the sweeps: {pending}")
    with recording(ctx.db) as calls:
        idle_queued = scheduler.sweep(ctx)
    idle_statements = calls[:]
    idle_ms = []
    for _ in range(args.repeat):
        ms, n = timed(lambda: scheduler.sweep(ctx))
        idle_ms.append(ms)
        idle_queued += n
    kinds = by_kind(ctx, args.repeat)
    if args.explain:
        print(f"  query plans of a sweep with nothing due ({size:,} open):")
        explain(ctx.db, idle_statements)
    digest_ms, digest_mails = None, 0
    if not args.digest_off:
        at_digest = replace(ctx, settings=replace(ctx.settings, reminders=replace(ctx.settings.reminders,
                                                                                   digest_time="00:00")))
        digest_ms, digest_mails = timed(lambda: scheduler.digests(at_digest))
    return Result(size, built, due, due_ms, queued, due_statements, idle_ms, idle_queued, len(idle_statements),
                  kinds, digest_ms, digest_mails)


# ------------------------------------------------------------------ databases

def bench_settings(tmp: Path, url: str, directory: Path) -> Settings:
    s = load_settings(None, env={})
    return replace(
        s,
        gateway=replace(s.gateway, domain=DOMAIN, data_dir=str(tmp / "var"), secret="bench-secret"),
        database=replace(s.database, url=url),
        directory=replace(s.directory, path=str(directory)),
        delivery=replace(s.delivery, maildir=str(tmp / "sent")),
        reminders=replace(s.reminders, digest_time=DIGEST_TIME),
    )


@contextmanager
def database_url(kind: str, tmp: Path, size: int) -> Iterator[str]:
    """A fresh, empty database per size: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'sweep-{size}.db'}"
        return
    import psycopg2

    schema = f"bench_sweep_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def run_size(kind: str, tmp: Path, directory: Path, staff: list[Staff], size: int,
             args: argparse.Namespace) -> Result:
    due = min(args.due, size)
    with database_url(kind, tmp, size) as url:
        clock = FixedClock(NOW)
        ctx = build_context(bench_settings(tmp, url, directory), clock=clock)
        try:
            built = build(ctx, size, due, staff)
            rows = built.records + built.participants + built.milestones
            line = (f"{size:,} open: built {built.records:,} records, {built.participants:,} participants, "
                    f"{built.milestones:,} milestones in {built.seconds:.1f} s ({rows / built.seconds:,.0f} rows/s, "
                    "one transaction)")
            if is_postgres(ctx.db):
                seconds, _ = timed(lambda: ctx.db.execute_sql("ANALYZE"))
                version = ctx.db.execute_sql("SHOW server_version").fetchone()[0]
                line += f"; ANALYZE {seconds / 1000:.1f} s; PostgreSQL {version}"
            else:
                path = Path(url[len("sqlite:///"):])
                line += f"; {sum(p.stat().st_size for p in path.parent.glob(path.name + '*')) / 1e6:,.0f} MB"
            print(line, flush=True)
            if len(built.due_ids) != due:
                print(f"  (!) {len(built.due_ids)} participants due after the build, expected {due}")
            return measure(ctx, clock, size, built, args)
        finally:
            ctx.db.close()


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(f"{'open':>8} {'build':>7} │ {'nothing due':^26} │ {'with N due (' + str(args.due_repeat) + ' runs)':^40} │ "
          f"{'digest once':^17}")
    print(f"{'records':>8} {'s':>7} │ {'p50':>7} {'p95':>7} {'max':>7} {'SQL':>3} │ {'N':>5} {'median':>8} {'min':>8} "
          f"{'max':>8} {'per due':>8} {'net':>7} │ {'ms':>8} {'mails':>6}")
    for r in results:
        med = statistics.median(r.due_ms)
        idle50 = statistics.median(r.idle_ms)
        per = med / r.due if r.due else 0.0
        net = (med - idle50) / r.due if r.due else 0.0
        digest = f"{r.digest_ms:>8.0f} {r.digest_mails:>6,}" if r.digest_ms is not None else f"{'—':>8} {'':>6}"
        print(f"{r.size:>8,} {r.built.seconds:>7.1f} │ {idle50:>5.2f}ms {percentile(r.idle_ms, 0.95):>5.2f}ms "
              f"{max(r.idle_ms):>5.2f}ms {r.idle_statements:>3} │ {r.due:>5,} {med:>6.0f}ms {min(r.due_ms):>6.0f}ms "
              f"{max(r.due_ms):>6.0f}ms {per:>6.2f}ms {net:>5.2f}ms │ {digest}")
    print()
    names = list(results[0].kinds)
    print("nothing due, p50 per step of the sweep (each kind's transaction; the digest's time check):")
    print(f"{'open':>8} │ " + " ".join(f"{n:>13}" for n in names))
    for r in results:
        print(f"{r.size:>8,} │ " + " ".join(f"{r.kinds[n]:>11.2f}ms" for n in names))
    print()
    for r in results:
        print(f"{r.size:,} open: a sweep with {r.due:,} due queued {r.due_queued:,} mails with "
              f"{r.due_statements:,} SQL statements ({r.due_statements / max(1, r.due):.1f} per due chain); "
              f"nothing due: {r.idle_statements} statements, {r.idle_queued} mails over {args.repeat + 1} sweeps")
    print()
    print(f"nothing due = {args.repeat} sweeps at the same instant after the due chains were sent; SQL = statements "
          "per sweep through peewee's execute_sql (BEGIN/COMMIT not counted). with N due = one sweep sending N "
          "reminders (one per due chain), the due rows reset before each run; per due = median / N, net = "
          "(median − nothing-due p50) / N. digest = the daily digest, once, at the same instant with digest_time "
          f"00:00; in the timed sweeps digest_time is {DIGEST_TIME}, not reached at "
          f"{NOW:%Y-%m-%d %H:%M} local, so digests() stops at its time check.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="open records per run (default 10000,100000)")
    parser.add_argument("--due", type=int, default=1000, help="participant chains due at the sweep (default 1000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=30, help="timed sweeps with nothing due (default 30)")
    parser.add_argument("--due-repeat", type=int, default=5, help="timed sweeps with --due due (default 5)")
    parser.add_argument("--no-digest", dest="digest_off", action="store_true", help="skip the digest measurement")
    parser.add_argument("--explain", action="store_true", help="print the query plans of a nothing-due sweep")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    engine = f"SQLite {sqlite3.sqlite_version}" if args.db == "sqlite" else PG_URL
    print(f"sweep benchmark: {args.db}, sizes {', '.join(f'{s:,}' for s in sizes)}, {args.due:,} due, "
          f"Python {platform.python_version()}, {engine}, {os.cpu_count()} CPUs")
    print(f"sweep instant {NOW:%Y-%m-%d %H:%M} {TZ.key} (FixedClock), digest_time {DIGEST_TIME} (not reached), "
          f"{DEPARTMENTS * PEOPLE_PER_DEPARTMENT:,} staff in {DEPARTMENTS} departments", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="liuhen-sweep-bench-") as tmp_name:
        tmp = Path(tmp_name)
        directory = tmp / "directory.toml"
        staff = write_directory(directory)
        for size in sizes:
            results.append(run_size(args.db, tmp, directory, staff, size, args))
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
