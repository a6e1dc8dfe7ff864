#!/usr/bin/env python3
"""Web console benchmark: server time of the staff console's pages against a plain SQL read.

    .venv/bin/python bench/web.py [--records 100000] [--open 10000] [--db sqlite|postgresql]
                                  [--repeat 50] [--explain] [--profile] [--dir DIR]

It builds a fresh database (SQLite in a temporary directory, or PostgreSQL in a throw-away
schema of $LIUHEN_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test, dropped at
the end) holding --records records, of which --open are open (status open, a tenth of those
confirming) and the rest archived (项目档案库 for project requests, 客户沟通档案 for the quarter
that are customer requests, archive_key 主题-YYYYMMDD, archived_at set). Each record has a
realistic form (fields JSON), an initiator and two recipients as participants (department
from the directory), two milestones, its trace (record_created, two dispatched, a feedback
event per answer with {"response", "text"}, and for archived ones result, two signed and
archived), the request as one InboundMessage (raw: a small mail) and three OutboundMessages
(the initiator's ack, a request per recipient; raw set on about 70% of them, NULL on the
rest). Everything is bulk-inserted with ``insert_rows`` in one transaction, and every record
is put into the search index (store/search.py ``index_records``, with the parts
store/archive.py ``search_parts`` would give it; checked on a sample). The people come from
the generated directory of bench/sweep.py (2,000 staff in 20 departments, the first of each
heads it); 5% of them are busy and take part six times as often as the others. The text is
Chinese; 硬件 is in ~1% of the records and 续航 in ~20%, and neither word anywhere else.
Build time and database size are printed. On PostgreSQL the tables are ANALYZEd after the
build; SQLite gets no ANALYZE (the gateway never runs one), its WAL is checkpointed.

The app is gateway.web.app.create_app(ctx) with the clock fixed at Friday 2026-11-27 10:00
Asia/Shanghai, driven by Starlette's TestClient; readers are signed in with
``auth.start_session`` (no mail round trip). Server time is measured by a timing middleware
wrapped around the whole ASGI app: from the moment the app is called with the request until
it hands over the last body chunk — session lookup, worker-thread hop, handler, template
rendering and security headers included; the TestClient's own work is not (its round trip is
shown beside it). Pages and readers:

  record    GET /r/{ref}, --repeat requests cycling over up to --repeat of the busiest
            recipient's own records (once its open ones, once its archived ones)
  work      GET /work for the busiest recipient (most open records) and a typical one (median)
  board     GET /board for the head of the busiest recipient's department, and for an admin
            (web.admins; every department, one board row each)
  search    GET /search?q=硬件 and ?q=续航 for the person taking part in most records (the
            visible_record_ids restriction), a department head (every record of the
            department) and an admin (no restriction)

Each request is followed by its baseline: a plain SQL read (sqlite3 / psycopg2 cursor on a
connection of its own, no ORM) of the rows the page needs —
  record    the record row (with the reader's visibility check), its participants,
            milestones and events, its inbound and outbound mails' headers (no raw);
  work      the person's recipient rows on open records joined with the record, and their
            open milestones, action items and disputes;
  board     three statements however many departments (one for a head, all twenty for an
            admin), each walking from the open records outwards: open records per department,
            the members' open answers, sign-offs, milestones, action items and disputes
            (counted due soon / overdue / escalated in Python by the owner's department), and
            who waits for information per department — the numbers checked equal to the page's;
  search    the FTS query (FTS5 MATCH, or tsv @@ phraseto_tsquery) for the newest 30
            matches the reader may see, and those records' search_doc and search_text rows.
The table gives server-time p50 / p95 / max, the baseline's p50 / p95, the ratio of the
p50s, the SQL statements one request sends through peewee, and whether the p95 meets the
target (record, work, search 50 ms; board 200 ms). The machine is shared and noisy: read the
ratio to the same-run baseline beside the absolute numbers. --explain prints the query plans
of every page's statements, --profile a cProfile of the pages that miss their target (the
request run in the event-loop thread instead of a worker, so that one profiler sees it all).
--dir keeps the SQLite database there and reuses it on the next run with the same sizes. A
benchmark, not a test: it prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from base64 import b64encode
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import accumulate
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peewee import Database
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# bench/sweep.py: the directory of 2,000 staff, the settings, the vocabulary and the measuring helpers.
from sweep import (
    BACKGROUND,
    DEPARTMENTS,
    DOMAIN,
    MILESTONES,
    NOW,
    PEOPLE_PER_DEPARTMENT,
    PG_URL,
    PRIORITIES,
    TOPICS,
    TZ,
    Staff,
    bench_settings,
    insert_chunked,
    minute,
    percentile,
    recording,
    write_directory,
)

import gateway.web.app as web_app
from config.settings import Settings
from gateway.bootstrap import Context, build_context
from gateway.clock import FixedClock
from gateway.web import auth
from gateway.web.app import create_app
from store.archive import search_parts
from store.console import board_rows
from store.db import is_postgres
from store.models import Event, InboundMessage, Milestone, OutboundMessage, Participant, Record
from store.search import IndexEntry, index_records, tokenize
from store.worklist import pending_items

SEED = 20261128
BATCH_RECORDS = 2000  # records generated, inserted and indexed per step (all in one transaction)
YEARS_OF_ARCHIVE = 2  # the archived records were created over the two years before NOW
RECENT_OPEN = 0.9  # share of the open records that are the newest ones; the rest are older stragglers
CONFIRMING_SHARE = 0.10  # open records whose result awaits the recipients' sign-off
CUSTOMER_SHARE = 0.25  # customer requests (客户沟通档案); the rest are project requests (项目档案库)
BUSY_SHARE, BUSY_WEIGHT = 0.05, 6  # busy staff take part BUSY_WEIGHT times as often as the others
RAW_SHARE = 0.7  # outbound mails whose raw bytes are kept
RARE_WORD, RARE_SHARE = "硬件", 0.01
COMMON_WORD, COMMON_SHARE = "续航", 0.20
SEARCH_LIMIT = 30  # the search page asks store/search.py for 30 hits
WARMUP = 3
PROFILED = 3  # requests profiled per page with --profile
TARGET_MS = {"record": 50.0, "work": 50.0, "board": 200.0, "search": 50.0}
BASE_URL = "http://127.0.0.1:8080"
ADMIN_INDEX = -1  # the directory's last person is the admin (web.admins); no head

# The vocabulary holds neither 硬 nor 续/航: the two search words are only where put on purpose.
STAGES = ["结构方案评审", "样机测试", "量产计划", "物料清单确认", "供应商评估", "成本核算", "包装设计", "固件升级", "渠道推广", "售后流程"]
RARE_STAGE = "硬件选型评审"
DUTIES = ("完成结构方案评估", "提供竞品价格", "确认物料交期", "输出测试报告", "评估模具费用", "核算BOM成本", "确认包装方案", "准备推广物料", "整理客户反馈", "审核合同条款")
RARE_SENTENCES = ("另需评估硬件改版对交期的影响。", "硬件团队建议增加一轮可靠性测试，请预留时间。")
COMMON_SENTENCES = ("客户关注续航表现，需在方案中说明实测数据。", "续航指标暂按七天设计，低功耗模式另行评估。")
CLIENTS = [h + t for h in ("华星", "东方", "瑞达", "金盛", "宏图", "恒通", "新元", "联创", "正泰", "博远", "天成", "安信") for t in ("科技", "电子", "精密", "通信", "光电", "材料", "物流", "智能")]
CUSTOMER_STAGES = ("需求澄清", "方案报价", "样品确认", "合同评审", "批量交付")
PROGRESS = "客户已确认{topic}的外观方案，正在等待{stage}的反馈；预计下周给出报价，请相关部门配合准备资料。"
FEEDBACK = ("同意，按计划推进。", "同意，本周内提交{duty}的结论。", "同意，需同步更新物料清单。", "同意，已安排专人跟进。")
NEED_INFO = "请补充{topic}的目标成本和首批数量，否则无法评估{duty}。"
RESULTS = ("采用方案B，按计划推进", "方案通过评审，进入下一阶段", "客户确认报价，安排批量交付")
FMT = "%Y-%m-%d %H:%M"


# ------------------------------------------------------------------ the data

@dataclass
class Rows:
    """One batch of generated rows per table, and the search index entries of its records."""

    inbound: list[dict[str, object]] = field(default_factory=list)
    records: list[dict[str, object]] = field(default_factory=list)
    participants: list[dict[str, object]] = field(default_factory=list)
    milestones: list[dict[str, object]] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)
    outbound: list[dict[str, object]] = field(default_factory=list)
    index: list[IndexEntry] = field(default_factory=list)


def _local(dt: datetime) -> str:
    return dt.astimezone(TZ).strftime(FMT)


def _mail(headers: dict[str, str], body: str) -> bytes:
    """A small text/plain mail, written out directly (EmailMessage costs ~0.2 ms a mail)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()


def _encoded(text: str) -> str:
    return f"=?utf-8?b?{b64encode(text.encode()).decode()}?="


@dataclass(frozen=True)
class Basics:
    """What the rows of one record share."""

    rid: int
    ref: str
    form: str
    subject: str
    status: str
    topic: str
    created: datetime
    due_at: datetime
    archived_at: datetime | None
    archive_key: str
    category: str
    result: str
    initiator: Staff
    recipients: tuple[tuple[Staff, str], ...]  # (person, responsibility)

    @property
    def is_open(self) -> bool:
        return self.status != "archived"


class Generator:
    """Deterministic records: the same seed and sizes give the same database."""

    def __init__(self, n: int, n_open: int, staff: list[Staff]):
        self.rng = random.Random(SEED)
        self.n = n
        self.staff = staff
        busy = set(self.rng.sample(range(len(staff)), int(len(staff) * BUSY_SHARE)))
        self.cum_weights = list(accumulate(BUSY_WEIGHT if i in busy else 1 for i in range(len(staff))))
        recent = int(n_open * RECENT_OPEN)
        older = range(1, n - recent + 1)
        self.open_ids = set(range(n - recent + 1, n + 1)) | set(self.rng.sample(older, min(len(older),
                                                                                             n_open - recent)))
        self.span = timedelta(days=365 * YEARS_OF_ARCHIVE)
        self.priorities = [p for p, _ in PRIORITIES]
        self.weights = [w for _, w in PRIORITIES]

    def people(self) -> tuple[Staff, Staff, Staff]:
        while True:
            a, b, c = self.rng.choices(self.staff, cum_weights=self.cum_weights, k=3)
            if len({a.email, b.email, c.email}) == 3:
                return a, b, c

    def batch(self, first: int, last: int) -> Rows:
        rows = Rows()
        for rid in range(first, last + 1):
            b, fields, milestones = self._record(rid, rows)
            events = [dict(at=b.created, record_id=rid, inbound_id=rid, kind="record_created",
                           actor=b.initiator.email, data={"ref": b.ref, "form": b.form, "attachments": []})]
            self._participants(b, rows, events)
            events.sort(key=lambda e: cast(datetime, e["at"]))  # ids in time order, as the trace has them
            rows.events += events
            self._milestones(b, milestones, rows)
            self._mails(b, fields, rows)
            parts = {"subject": b.subject} | {f"field:{k}": v for k, v in fields.items()}
            feedback = [cast(dict, e["data"])["text"] for e in events if e["kind"] == "feedback"]
            if feedback:  # as search_parts() reads them: in event order
                parts["feedback"] = "\n".join(feedback)
            if b.result:
                parts["result"] = b.result
            rows.index.append(IndexEntry(rid, b.ref, b.status, b.archive_key, parts))
        return rows

    def _record(self, rid: int, rows: Rows) -> tuple[Basics, dict[str, str], list[tuple[str, datetime]]]:
        """The record row; its basics, form fields and milestones (name, due) for the other rows."""
        rng = self.rng
        is_open = rid in self.open_ids
        initiator, r1, r2 = self.people()
        priority = rng.choices(self.priorities, self.weights)[0]
        # Ids follow creation time over the archive's span; the newest records are (mostly) the open ones.
        created = minute(NOW - self.span * (1 - rid / (self.n + 1)) - timedelta(minutes=rng.randint(0, 600)))
        if is_open and NOW - created > timedelta(days=60):
            created = minute(NOW - timedelta(minutes=rng.randint(60, 60 * 24 * 60)))  # a straggler, still open
        status = "archived" if not is_open else "confirming" if rng.random() < CONFIRMING_SHARE else "open"
        topic, duties = rng.choice(TOPICS), rng.sample(DUTIES, 2)
        rare, common = rng.random() < RARE_SHARE, rng.random() < COMMON_SHARE
        extra = (rng.choice(RARE_SENTENCES) if rare else "") + (rng.choice(COMMON_SENTENCES) if common else "")
        due_at = minute(created + timedelta(hours=rng.randint(3 * 24, 90 * 24)))
        start, hours = (NOW, (-10 * 24, 60 * 24)) if is_open else (created, (2 * 24, 30 * 24))
        milestones = list(zip(rng.sample(MILESTONES, 2),
                              sorted(minute(start + timedelta(hours=rng.randint(*hours))) for _ in range(2))))
        common_fields = {"initiator": f"{initiator.department}/{initiator.name}", "priority": priority,
                         "due": _local(due_at),
                         "participants": f"{r1.department}/{r1.name} — {duties[0]}\n"
                                         f"{r2.department}/{r2.name} — {duties[1]}"}
        if rng.random() < CUSTOMER_SHARE:
            form, prefix, category = "customer", "CUS", "客户沟通档案"
            client, stage = rng.choice(CLIENTS), rng.choice(CUSTOMER_STAGES)
            subject = f"{client}-{topic}需求沟通"
            fields = {"subject": subject, "client": client, **common_fields,
                      "date": created.astimezone(TZ).strftime("%Y-%m-%d"), "stage": stage,
                      "progress": PROGRESS.format(topic=topic, stage=stage) + extra,
                      "next_step": f"安排{stage}交流会", "risks": "交期紧张，需提前备料"}
        else:
            form, prefix, category = "project", "PRJ", "项目档案库"
            stage = RARE_STAGE if rare and rng.random() < 0.3 else rng.choice(STAGES)
            subject = f"{topic}项目-{stage}"
            (first, first_due), (second, second_due) = milestones
            fields = {"subject": subject, **common_fields,
                      "background": BACKGROUND.format(topic=topic, stage=stage) + extra,
                      "milestones": f"{first} — {_local(first_due)}\n{second} — {_local(second_due)} — {r1.name}",
                      "resources": f"测试样品{rng.randint(2, 10)}台",
                      "attachments": f"产品需求文档V1.{rng.randint(0, 9)}-{created.astimezone(TZ):%Y%m%d}.docx"}
        ref = f"{prefix}-{created.astimezone(TZ).year}-{rid:06d}"
        archived_at = None if is_open else min(NOW - timedelta(hours=1),
                                                milestones[1][1] + timedelta(hours=rng.randint(1, 10 * 24)))
        b = Basics(rid, ref, form, subject, status, topic, created, due_at, archived_at,
                   f"{subject}-{archived_at.astimezone(TZ):%Y%m%d}" if archived_at else "", category,
                   rng.choice(RESULTS) if status != "open" else "", initiator, ((r1, duties[0]), (r2, duties[1])))
        rows.records.append(dict(
            id=rid, ref=ref, form=form, subject=subject, status=status, priority=priority,
            lang="en" if rng.random() < 0.1 else "zh", initiator_email=initiator.email,
            initiator_name=initiator.name, fields=fields, due_at=due_at, thread_id=f"<{ref.lower()}@{DOMAIN}>",
            source_inbound=rid, created_at=created, updated_at=archived_at or created, result=b.result, retro="",
            archive_category="" if is_open else category, archive_key=b.archive_key, archived_at=archived_at,
            next_reminder_at=None))
        return b, fields, milestones

    def _participants(self, b: Basics, rows: Rows, events: list[dict[str, object]]) -> None:
        """The initiator and the two recipients: answered, asking, waiting or overdue; signed when archived."""
        rng = self.rng
        base: dict[str, object] = dict(record=b.rid, external=False, signed_at=None, chain_due_at=None,
                                       responded_at=None, response="", next_reminder_at=None)
        rows.participants.append(base | dict(email=b.initiator.email, name=b.initiator.name,
                                             department=b.initiator.department, role="initiator", responsibility="",
                                             response_due_at=None))
        event = dict(record_id=b.rid, inbound_id=None)
        for person, duty in b.recipients:
            answer_due = minute(b.created + timedelta(hours=rng.choice((2, 24, 48))))
            row = base | dict(email=person.email, name=person.name, department=person.department, role="recipient",
                              responsibility=duty, response_due_at=answer_due)
            events.append(event | dict(at=b.created, kind="dispatched", actor=f"liuhen@{DOMAIN}",
                                       data={"to": person.email, "role": "recipient", "respond_by": str(answer_due)}))
            draw = rng.random()
            answered = min(NOW - timedelta(minutes=5), b.created + timedelta(hours=rng.randint(1, 30)))
            if b.status != "open" or draw < 0.30:  # agreed (every answer is in once a result is out)
                row |= dict(responded_at=answered, response="agree")
                events.append(event | dict(at=answered, kind="feedback", actor=person.email,
                                           data={"response": "agree", "text": rng.choice(FEEDBACK).format(duty=duty)}))
            elif draw < 0.33:  # asked for more information, waits
                row |= dict(responded_at=answered, response="need_info")
                events.append(event | dict(at=answered, kind="feedback", actor=person.email,
                                           data={"response": "need_info",
                                                 "text": NEED_INFO.format(topic=b.topic, duty=duty)}))
            else:  # waiting for the answer: overdue for some, due within two weeks for the rest
                late = rng.random() < 0.15
                deadline = minute(NOW - timedelta(minutes=rng.randint(60, 5 * 24 * 60)) if late
                                  else NOW + timedelta(minutes=rng.randint(60, 14 * 24 * 60)))
                row |= dict(response_due_at=deadline, next_reminder_at=max(deadline, NOW + timedelta(hours=1)))
            if b.status == "confirming":  # the result waits for the signatures
                signature_due = minute(NOW + timedelta(minutes=rng.randint(-24 * 60, 7 * 24 * 60)))
                row |= dict(chain_due_at=signature_due, next_reminder_at=max(signature_due, NOW + timedelta(hours=1)))
            if b.archived_at is not None:
                signed = b.archived_at - timedelta(minutes=rng.randint(1, 120))
                row |= dict(signed_at=signed)
                events.append(event | dict(at=signed, kind="signed", actor=person.email,
                                           data={"signer": person.email, "via": "reply", "token": "", "notice": False,
                                                 "authentication": {"result": "pass", "method": "dkim"}}))
            rows.participants.append(row)
        if b.archived_at is not None:
            events += [event | dict(at=b.archived_at - timedelta(hours=3), kind="result", actor=b.initiator.email,
                                    data={"text": b.result}),
                       event | dict(at=b.archived_at, kind="archived", actor=b.initiator.email,
                                    data={"archive_key": b.archive_key, "category": b.category})]

    def _milestones(self, b: Basics, milestones: list[tuple[str, datetime]], rows: Rows) -> None:
        for position, (name, when) in enumerate(milestones):
            pending = b.is_open and (when > NOW or self.rng.random() < 0.5)
            done = None if pending else min(when, NOW - timedelta(hours=1))
            rows.milestones.append(dict(
                record=b.rid, position=position, name=name, due_at=when, delayed_from=None, done_at=done,
                owner_email=(b.recipients[0][0] if position else b.initiator).email,
                next_reminder_at=when - timedelta(hours=24) if done is None and when > NOW else None))

    def _mails(self, b: Basics, fields: dict[str, str], rows: Rows) -> None:
        """The request in (raw: the form as a small mail); the ack and two requests out, most with raw kept."""
        rng, initiator = self.rng, b.initiator
        message_id = f"<in-{b.rid}@liuhen.localhost>"
        request = _mail({"From": f"{_encoded(initiator.name)} <{initiator.email}>", "To": f"{b.form}@{DOMAIN}",
                         "Subject": _encoded(b.subject), "Date": format_datetime(b.created), "Message-ID": message_id},
                        "\n".join(f"{k}：{v}" for k, v in fields.items()))
        rows.inbound.append(dict(
            id=b.rid, received_at=b.created, source="smtp", queue_id=f"Q{b.rid:08X}", envelope_from=initiator.email,
            envelope_to=[f"{b.form}@{DOMAIN}"], dedupe_key=f"bench-{b.rid}", message_id=message_id, raw=request,
            size=len(request), state="processed", reason=f"record {b.ref} created", subject=b.subject,
            from_addr=initiator.email, record_id=b.rid, processed_at=b.created,
            auth={"result": "pass", "method": "dkim", "evidence": "dkim=pass header.d=liuhen.localhost"}))
        queued = b.is_open and NOW - b.created < timedelta(hours=1)
        subject = f"[{b.ref}] {b.subject}"
        for kind, person in (("ack", initiator), *(("request", p) for p, _ in b.recipients)):
            message_id = f"<{kind}-{b.rid}-{person.email.split('@')[0]}@{DOMAIN}>"
            raw = None if queued or rng.random() >= RAW_SHARE else _mail(
                {"From": f"{_encoded('留痕')} <liuhen@{DOMAIN}>", "To": f"{_encoded(person.name)} <{person.email}>",
                 "Subject": _encoded(subject), "Date": format_datetime(b.created), "Message-ID": message_id},
                f"{person.name}，您好：\n{initiator.name} 发起了 {b.ref}「{b.subject}」。\n"
                f"请在 {_local(b.due_at)} 前回复：同意，或需要补充信息。\n\n—— 留痕")
            rows.outbound.append(dict(
                created_at=b.created, record_id=b.rid, inbound_id=b.rid, kind=kind, to_addr=person.email,
                to_name=person.name, subject=subject, context={}, headers={}, message_id=message_id, raw=raw,
                template="initiator/ack" if kind == "ack" else "recipient/request",
                status="queued" if queued else "sent", next_attempt_at=b.created,
                sent_at=None if queued else b.created + timedelta(seconds=rng.randint(2, 90))))


@dataclass
class Built:
    counts: dict[str, int]
    rows_seconds: float
    index_seconds: float
    total_seconds: float


def build(ctx: Context, n: int, n_open: int, staff: list[Staff]) -> Built:
    """n records, n_open of them open, inserted and indexed in one transaction."""
    gen = Generator(n, n_open, staff)
    tables = ((InboundMessage, "inbound"), (Record, "records"), (Participant, "participants"),
              (Milestone, "milestones"), (Event, "events"), (OutboundMessage, "outbound"))
    counts = dict.fromkeys([name for _, name in tables] + ["indexed"], 0)
    rows_seconds = index_seconds = 0.0
    start = time.perf_counter()
    with ctx.db.atomic():
        for first in range(1, n + 1, BATCH_RECORDS):
            t0 = time.perf_counter()
            rows = gen.batch(first, min(n, first + BATCH_RECORDS - 1))
            for model, name in tables:
                batch = getattr(rows, name)
                insert_chunked(model, batch)
                counts[name] += len(batch)
            t1 = time.perf_counter()
            index_records(ctx.db, rows.index)
            counts["indexed"] += len(rows.index)
            rows_seconds += t1 - t0
            index_seconds += time.perf_counter() - t1
        if is_postgres(ctx.db):  # the records and the requests were given their ids: move the sequences past them
            for table in ("record", "inboundmessage"):
                ctx.db.execute_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", (n,))
    return Built(counts, rows_seconds, index_seconds, time.perf_counter() - start)


def check_index_parts(ctx: Context, n: int) -> list[str]:
    """The generated index entries against what store/archive.py search_parts gives the stored record."""
    problems = []
    for rid in sorted(random.Random(SEED).sample(range(1, n + 1), min(n, 20))):
        record = Record.get_by_id(rid)
        stored = ctx.db.execute_sql(_sql(ctx.db, "SELECT subject, body FROM search_text WHERE record_id = ?"),
                                    (rid,)).fetchone()
        parts = search_parts(record)
        body = "\n".join(text for name, text in parts.items() if name != "subject" and text)
        if stored is None or (stored[0], stored[1]) != (parts.get("subject", ""), body):
            problems.append(record.ref)
    return problems


# ------------------------------------------------------------------ databases

@dataclass
class Place:
    url: str
    kind: str
    schema: str = ""  # PostgreSQL
    path: Path | None = None  # SQLite


@contextmanager
def database(kind: str, folder: Path) -> Iterator[Place]:
    """A SQLite file in `folder`, or a fresh PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        path = folder / "web.db"
        yield Place(f"sqlite:///{path}", kind, path=path)
        return
    import psycopg2

    schema = f"bench_web_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_URL else "?"
        yield Place(f"{PG_URL}{sep}options=-csearch_path%3D{schema}", kind, schema=schema)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def size_mb(ctx: Context, where: Place) -> float:
    if where.path is not None:
        return sum(p.stat().st_size for p in where.path.parent.glob(where.path.name + "*")) / 1e6
    return float(ctx.db.execute_sql("SELECT sum(pg_total_relation_size(format('%%I.%%I', schemaname, tablename)"
                                    "::regclass)) FROM pg_tables WHERE schemaname = %s",
                                    (where.schema,)).fetchone()[0]) / 1e6


def _sql(db: Database, sql: str) -> str:
    return sql.replace("?", db.param)


class Raw:
    """A plain DB-API connection of its own: the baseline reads, no ORM."""

    def __init__(self, where: Place):
        self.postgres = where.kind == "postgresql"
        self.conn: Any
        if self.postgres:
            import psycopg2

            self.conn = psycopg2.connect(where.url)
            self.conn.autocommit = True
        else:
            self.conn = sqlite3.connect(str(where.path), check_same_thread=False)

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(sql.replace("?", "%s") if self.postgres else sql, tuple(params))
        rows = cur.fetchall()
        cur.close()
        return rows

    def time(self, when: datetime) -> object:
        """A time as the tables hold it: naive UTC (SQLite: its ISO text, as sqlite3 stored the datetime)."""
        naive = when.astimezone(UTC).replace(tzinfo=None)
        return naive if self.postgres else naive.isoformat(" ")

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------ measuring

class ServerTime:
    """ASGI middleware: the time from the app being called with a request to its last body chunk."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.last_ms = (time.perf_counter() - start) * 1000
            await send(message)

        await self.app(scope, receive, timed)


@dataclass
class Case:
    page: str  # record | work | board | search
    label: str
    cookie: str
    paths: list[str]
    baseline: Callable[[int], object]  # the i-th request's plain read
    check: Callable[[object], str] | None = None  # compares a baseline result with the page's; "" when equal


@dataclass
class Measured:
    case: Case
    server_ms: list[float]
    client_ms: list[float]
    base_ms: list[float]
    statements: list[tuple[str, object]]
    problems: list[str]

    @property
    def target(self) -> float:
        return TARGET_MS[self.case.page]

    @property
    def met(self) -> bool:
        return percentile(self.server_ms, 0.95) < self.target


def measure(ctx: Context, client: TestClient, timer: ServerTime, case: Case, repeat: int) -> Measured:
    headers = {"cookie": f"{auth.SESSION_COOKIE}={case.cookie}", "accept-language": "zh-CN,zh;q=0.9"}
    problems: list[str] = []

    def get(path: str) -> float:
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200 and len(problems) < 3:
            problems.append(f"{path} answered {response.status_code}")
        return elapsed

    for i in range(WARMUP):  # templates compiled, worker thread connections open
        get(case.paths[i % len(case.paths)])
        case.baseline(i)
    with recording(ctx.db) as statements:
        get(case.paths[0])
    if case.check is not None and (problem := case.check(case.baseline(0))):
        problems.append(problem)
    server, client_side, base = [], [], []
    for i in range(repeat):
        client_side.append(get(case.paths[i % len(case.paths)]))
        server.append(timer.last_ms)
        start = time.perf_counter()
        case.baseline(i)
        base.append((time.perf_counter() - start) * 1000)
    return Measured(case, server, client_side, base, statements[:], problems)


PLACEHOLDER_RUN = re.compile(r"(?:(?:\?|%s), ){2,}(?:\?|%s)")


def explain(db: Database, statements: list[tuple[str, object]]) -> None:
    """The query plan of each SELECT, once per statement shape (IN lists folded), with how often it ran."""
    shapes: dict[str, list] = {}
    for sql, params in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            shapes.setdefault(PLACEHOLDER_RUN.sub("?, …", sql), [sql, params, 0])[2] += 1
    prefix = "EXPLAIN " if is_postgres(db) else "EXPLAIN QUERY PLAN "
    for shape, (sql, params, n) in shapes.items():
        print(f"    {f'{n}× ' if n > 1 else ''}SELECT … {shape[shape.index(' FROM '):].strip()}")
        for row in db.execute_sql(prefix + sql, params).fetchall():
            print(f"      {row[0] if is_postgres(db) else row[-1]}")


def profile(client: TestClient, case: Case, top: int = 25) -> str:
    """cProfile of one request, run in the event-loop thread so that the profiler sees all of it."""
    headers = {"cookie": f"{auth.SESSION_COOKIE}={case.cookie}"}
    profiler = cProfile.Profile()

    async def in_loop_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        profiler.enable()
        try:
            return func(*args, **kwargs)
        finally:
            profiler.disable()

    original = web_app.run_in_threadpool
    web_app.run_in_threadpool = in_loop_thread  # in this benchmark's process only
    try:
        client.get(case.paths[0], headers=headers)  # this thread's connection opened
        profiler = cProfile.Profile()
        for i in range(PROFILED):
            client.get(case.paths[i % len(case.paths)], headers=headers)
    finally:
        web_app.run_in_threadpool = original
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ------------------------------------------------------------------ the pages and their baselines

@dataclass
class Readers:
    busy: str  # the recipient with the most open records
    typical: str  # the median recipient
    head: str  # heads the busy recipient's department
    department: str
    searcher: str  # takes part in most records
    admin: str
    open_refs: list[str]
    archived_refs: list[str]


def pick_readers(ctx: Context, raw: Raw, staff: list[Staff], repeat: int) -> Readers:
    heads = {d.head.lower() for d in ctx.directory.departments}
    admin = staff[ADMIN_INDEX].email
    plain = lambda rows: [r for r in rows if r[0] not in heads and r[0] != admin]  # noqa: E731
    by_open = plain(raw.rows("SELECT p.email, count(*) FROM participant p JOIN record r ON r.id = p.record_id "
                             "WHERE r.status != 'archived' AND p.role = 'recipient' GROUP BY p.email "
                             "ORDER BY count(*) DESC, p.email"))
    by_all = plain(raw.rows("SELECT email, count(*) FROM participant GROUP BY email ORDER BY count(*) DESC, email"))
    busy = by_open[0][0]
    department = ctx.directory.by_email(busy).department
    theirs = raw.rows("SELECT ref, status FROM record WHERE id IN (SELECT record_id FROM participant WHERE email = ?) "
                      "ORDER BY id DESC", (busy,))
    dept = ctx.directory.department(department)
    assert dept is not None
    return Readers(busy, by_open[len(by_open) // 2][0], dept.head.lower(), department, by_all[0][0], admin,
                   [ref for ref, status in theirs if status != "archived"][:repeat],
                   [ref for ref, status in theirs if status == "archived"][:repeat])


def record_baseline(raw: Raw, reader: str, refs: list[str]) -> Callable[[int], object]:
    def read(i: int) -> object:
        found = raw.rows("SELECT * FROM record WHERE ref = ? AND id IN "
                         "(SELECT record_id FROM participant WHERE email = ?)", (refs[i % len(refs)], reader))
        rid = found[0][0]
        return (found,
                raw.rows("SELECT * FROM participant WHERE record_id = ? ORDER BY id", (rid,)),
                raw.rows("SELECT * FROM milestone WHERE record_id = ? ORDER BY position", (rid,)),
                raw.rows("SELECT * FROM event WHERE record_id = ? ORDER BY id", (rid,)),
                raw.rows("SELECT id, received_at, from_addr, subject, state, auth FROM inboundmessage "
                         "WHERE record_id = ? ORDER BY id", (rid,)),
                raw.rows("SELECT id, created_at, sent_at, kind, to_addr, to_name, subject, status FROM outboundmessage "
                         "WHERE record_id = ? ORDER BY id", (rid,)))
    return read


def work_baseline(raw: Raw, email: str) -> Callable[[int], object]:
    def read(i: int) -> object:
        answers = raw.rows(
            "SELECT p.id, p.email, p.record_id, p.signed_at, p.responded_at, p.response_due_at, p.chain_due_at, "
            "r.ref, r.status, r.lang, r.subject FROM participant p JOIN record r ON r.id = p.record_id "
            "WHERE r.status != 'archived' AND p.role IN ('recipient', 'external') AND p.email = ?", (email,))
        owned = [raw.rows(f"SELECT x.{owner}, r.id, r.ref, r.subject, r.lang, x.{label}, x.due_at FROM {table} x "
                          f"JOIN record r ON r.id = x.record_id WHERE r.status != 'archived' AND x.{done} IS NULL "
                          f"AND x.{owner} = ?", (email,))
                 for table, label, done, owner in (("milestone", "name", "done_at", "owner_email"),
                                                   ("actionitem", "text", "done_at", "owner_email"),
                                                   ("dispute", "text", "ruled_at", "lead_email"))]
        return answers, owned
    return read


def board_baseline(ctx: Context, raw: Raw, departments: list[str]) -> Callable[[int], object]:
    """(open records, due soon, overdue, escalated, waiting for information) per department: three
    statements for any number of departments, the items counted in Python by their owner's department."""
    now = ctx.clock.now()
    r = ctx.settings.reminders
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (r.work_start, r.work_end))
    soon = ctx.deadline(now, (end - start) / 60 if r.business_hours else 24)  # as pages._next_working_day
    t_now, t_soon = raw.time(now), raw.time(soon)
    t_escalated = raw.time(now - timedelta(hours=r.escalate_after_hours))
    department_of = {p.email: p.department for p in ctx.directory.people if p.department in departments}
    emails = sorted(department_of)
    marks, names = ", ".join("?" * len(emails)), ", ".join("?" * len(departments))
    # From the open records outwards (the status index): SQLite takes a CROSS JOIN's tables in that order, and
    # a unary + keeps it from probing (record, email, role) once per listed address and open record.
    opened = f"FROM record r {'JOIN' if raw.postgres else 'CROSS JOIN'}"
    plus = "" if raw.postgres else "+"
    is_open = "r.status IN ('open', 'confirming')"
    per_department = (f"SELECT p.department, count(DISTINCT r.id) {opened} participant p ON p.record_id = r.id "
                      f"WHERE {is_open} AND p.department IN ({names}) GROUP BY p.department")
    waiting = (f"SELECT p.department, count(*) {opened} participant p ON p.record_id = r.id "
               f"WHERE {is_open} AND p.department IN ({names}) AND p.response = 'need_info' GROUP BY p.department")
    sign = "r.status = 'confirming' AND p.signed_at IS NULL"
    items = (f"SELECT p.email, CASE WHEN {sign} THEN p.chain_due_at ELSE p.response_due_at END, "
             f"CASE WHEN {sign} THEN 0 WHEN p.response_due_at < ? THEN 1 ELSE 0 END "
             f"{opened} participant p ON p.record_id = r.id WHERE {is_open} AND p.role IN ('recipient', 'external') "
             f"AND {plus}p.email IN ({marks}) "
             f"AND (({sign}) OR (p.responded_at IS NULL AND p.response_due_at IS NOT NULL))"
             + "".join(f" UNION ALL SELECT x.{owner}, x.due_at, CASE WHEN x.due_at < ? THEN 1 ELSE 0 END "
                       f"{opened} {table} x ON x.record_id = r.id WHERE {is_open} AND x.{done} IS NULL "
                       f"AND {plus}x.{owner} IN ({marks})"
                       for table, done, owner in (("milestone", "done_at", "owner_email"),
                                                  ("actionitem", "done_at", "owner_email"),
                                                  ("dispute", "ruled_at", "lead_email"))))
    item_params = [v for _ in range(4) for v in (t_now, *emails)]

    def read(i: int) -> list[tuple[int, ...]]:
        counts = {d: [0, 0, 0] for d in departments}  # due soon, overdue, escalated
        for email, due, late in raw.rows(items, item_params):
            c = counts[department_of[email]]
            if late:
                c[1] += 1
                if due <= t_escalated:
                    c[2] += 1
            elif due is not None and due <= t_soon:
                c[0] += 1
        opens, asking = dict(raw.rows(per_department, departments)), dict(raw.rows(waiting, departments))
        return [(opens.get(d, 0), *counts[d], asking.get(d, 0)) for d in departments]

    return read


def board_check(ctx: Context, departments: list[str]) -> Callable[[object], str]:
    """The baseline's numbers against store/console.py board_rows', department by department."""
    def check(baseline: object) -> str:
        now = ctx.clock.now()
        r = ctx.settings.reminders
        start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (r.work_start, r.work_end))
        soon = ctx.deadline(now, (end - start) / 60 if r.business_hours else 24)
        escalate = timedelta(hours=r.escalate_after_hours)
        assert isinstance(baseline, list)
        members = {d: [p.email for p in ctx.directory.people if p.department == d] for d in departments}
        for row, base in zip(board_rows(members, now, soon, escalate), baseline):
            department = row.department
            page = (row.open_records, row.due_soon, row.overdue, row.escalated, row.waiting_info)
            if page != tuple(base[:5]):
                return f"board counts differ for {department}: page {page}, baseline {tuple(base[:5])}"
        return ""
    return check


def search_baseline(raw: Raw, word: str, visible: tuple[str, str] | None) -> Callable[[int], object]:
    """visible: (email, headed department or "") of a restricted reader; None for an admin."""
    # SQLite: the unary + keeps the id list from becoming one FTS lookup per id (as store/search.py does).
    match, key = (("tsv @@ phraseto_tsquery('simple', ?)", "record_id") if raw.postgres
                  else ("search_fts MATCH ?", "+rowid"))
    restriction, params = "", []
    if visible is not None:
        email, department = visible
        restriction = (f" AND {key} IN (SELECT record_id FROM participant WHERE email = ?"
                       + (" OR department = ?)" if department else ")"))
        params = [email, department] if department else [email]
    table = "search_doc" if raw.postgres else "search_fts"
    sql = (f"SELECT {key.lstrip('+')} FROM {table} WHERE {match}{restriction} "
           f"ORDER BY {key.lstrip('+')} DESC LIMIT {SEARCH_LIMIT}")
    first = [tokenize(word) if raw.postgres else f'"{tokenize(word)}"', *params]

    def read(i: int) -> object:
        ids = [row[0] for row in raw.rows(sql, first)]
        if not ids:
            return []
        return raw.rows("SELECT d.record_id, d.ref, d.status, d.archive_key, t.subject, t.body FROM search_doc d "
                        "JOIN search_text t ON t.record_id = d.record_id "
                        f"WHERE d.record_id IN ({', '.join('?' * len(ids))})", ids)
    return read


def cases(ctx: Context, raw: Raw, who: Readers) -> list[Case]:
    sessions: dict[str, str] = {}

    def cookie(email: str) -> str:
        if email not in sessions:
            sessions[email], _ = auth.start_session(ctx, email)
        return sessions[email]

    all_departments = [d.name for d in ctx.directory.departments]
    out = [
        Case("record", "record (open, own)", cookie(who.busy), [f"/r/{ref}" for ref in who.open_refs],
             record_baseline(raw, who.busy, who.open_refs)),
        Case("record", "record (archived, own)", cookie(who.busy), [f"/r/{ref}" for ref in who.archived_refs],
             record_baseline(raw, who.busy, who.archived_refs)),
        Case("work", "work (busiest recipient)", cookie(who.busy), ["/work"], work_baseline(raw, who.busy)),
        Case("work", "work (typical recipient)", cookie(who.typical), ["/work"], work_baseline(raw, who.typical)),
        Case("board", "board (head, 1 dept)", cookie(who.head), ["/board"], board_baseline(ctx, raw, [who.department]),
             board_check(ctx, [who.department])),
        Case("board", f"board (admin, {len(all_departments)} depts)", cookie(who.admin), ["/board"],
             board_baseline(ctx, raw, all_departments), board_check(ctx, all_departments)),
    ]
    for word in (RARE_WORD, COMMON_WORD):
        path = f"/search?q={quote(word)}"
        out += [
            Case("search", f"search {word} (participant)", cookie(who.searcher), [path],
                 search_baseline(raw, word, (who.searcher, ""))),
            Case("search", f"search {word} (head)", cookie(who.head), [path],
                 search_baseline(raw, word, (who.head, who.department))),
            Case("search", f"search {word} (admin)", cookie(who.admin), [path], search_baseline(raw, word, None)),
        ]
    return out


# ------------------------------------------------------------------ running

def settings_for(tmp: Path, url: str, directory: Path, admin: str) -> Settings:
    s = bench_settings(tmp, url, directory)
    return replace(s, web=replace(s.web, enabled=True, admins=(admin,)))


def describe(ctx: Context, raw: Raw, who: Readers) -> list[str]:
    def records_of(email: str) -> int:
        return raw.rows("SELECT count(DISTINCT record_id) FROM participant WHERE email = ?", (email,))[0][0]

    visible_head = raw.rows("SELECT count(DISTINCT record_id) FROM participant WHERE email = ? OR department = ?",
                            (who.head, who.department))[0][0]
    items = {e: len(pending_items(ctx.clock.now(), emails=[e])) for e in (who.busy, who.typical)}
    return [
        f"  busiest recipient {who.busy}: {records_of(who.busy):,} records, {items[who.busy]} open items on My work; "
        f"record pages over {len(who.open_refs)} open and {len(who.archived_refs)} archived ones of theirs",
        f"  typical recipient {who.typical}: {records_of(who.typical):,} records, {items[who.typical]} open items",
        f"  head {who.head} ({who.department}): sees {visible_head:,} records",
        f"  search participant {who.searcher}: takes part in {records_of(who.searcher):,} records",
        f"  admin {who.admin} ([web] admins): sees everything",
    ]


def word_counts(raw: Raw) -> str:
    total = raw.rows("SELECT count(*) FROM search_doc")[0][0]
    out = []
    for word in (RARE_WORD, COMMON_WORD):
        if raw.postgres:
            n = raw.rows("SELECT count(*) FROM search_doc WHERE tsv @@ phraseto_tsquery('simple', ?)",
                         (tokenize(word),))[0][0]
        else:
            n = raw.rows("SELECT count(*) FROM search_fts WHERE search_fts MATCH ?", (f'"{tokenize(word)}"',))[0][0]
        out.append(f"{word} in {n:,} ({n / max(1, total):.1%})")
    return f"search index: {total:,} records; " + ", ".join(out)


def _pad(text: str, width: int) -> str:
    """Left-aligned in `width` columns of a terminal, where a Chinese character takes two."""
    return text + " " * max(0, width - sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text))


def report(results: list[Measured]) -> None:
    print()
    print(f"{'page':<30} {'SQL':>4} │ {'server p50':>10} {'p95':>8} {'max':>8} │ {'base p50':>8} {'p95':>7} │ "
          f"{'ratio':>6} │ {'client p50':>10} │ {'target':>7} {'met':>4}")
    for m in results:
        p50, b50 = statistics.median(m.server_ms), statistics.median(m.base_ms)
        p95, b95 = percentile(m.server_ms, 0.95), percentile(m.base_ms, 0.95)
        print(f"{_pad(m.case.label, 30)} {len(m.statements):>4} │ {p50:>8.1f}ms {p95:>6.1f}ms "
              f"{max(m.server_ms):>6.1f}ms │ {b50:>6.2f}ms {b95:>5.2f}ms │ "
              f"{p50 / b50 if b50 else 0:>5.1f}× │ {statistics.median(m.client_ms):>8.1f}ms │ "
              f"<{m.target:>4.0f}ms {'yes' if m.met else 'no':>4}")
    print()
    print("server = time inside the ASGI app (timing middleware around create_app(ctx): from the call with the "
          "request to the last body chunk; session, worker thread, handler, template). base = the plain SQL read of "
          "the same rows on a connection of its own, run right after each request. ratio = server p50 / base p50. "
          "client = the TestClient's round trip. SQL = statements one request sends through peewee's execute_sql. "
          "met = server p95 under the target.")
    for m in results:
        for problem in m.problems:
            print(f"  (!) {m.case.label}: {problem}")


def run(args: argparse.Namespace, folder: Path) -> None:
    directory = folder / "directory.toml"
    staff = write_directory(directory)
    with database(args.db, folder) as where:
        marker = folder / "web.built.json"
        wanted = {"records": args.records, "open": args.open, "seed": SEED}
        reuse = where.path is not None and where.path.exists() and marker.exists() and \
            json.loads(marker.read_text()) == wanted
        if where.path is not None and not reuse:
            for stale in where.path.parent.glob(where.path.name + "*"):
                stale.unlink()
        ctx = build_context(settings_for(folder, where.url, directory, staff[ADMIN_INDEX].email), clock=FixedClock(NOW))
        try:
            if reuse:
                print(f"reusing the database in {folder} ({size_mb(ctx, where):,.0f} MB)", flush=True)
            else:
                built = build(ctx, args.records, args.open, staff)
                c = built.counts
                rows = sum(v for k, v in c.items() if k != "indexed")
                line = (f"built {c['records']:,} records ({args.open:,} open), {c['participants']:,} participants, "
                        f"{c['milestones']:,} milestones, {c['events']:,} events, {c['inbound']:,} inbound and "
                        f"{c['outbound']:,} outbound mails in {built.rows_seconds:.1f} s "
                        f"({rows / built.rows_seconds:,.0f} rows/s), search index of {c['indexed']:,} records in "
                        f"{built.index_seconds:.1f} s; "
                        f"{built.total_seconds:.1f} s in all, one transaction")
                if is_postgres(ctx.db):
                    seconds = time.perf_counter()
                    ctx.db.execute_sql("ANALYZE")
                    version = ctx.db.execute_sql("SHOW server_version").fetchone()[0]
                    line += f"; ANALYZE {time.perf_counter() - seconds:.1f} s; PostgreSQL {version}"
                else:
                    ctx.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                line += f"; database {size_mb(ctx, where):,.0f} MB"
                print(line, flush=True)
                if where.path is not None and args.dir:
                    marker.write_text(json.dumps(wanted))
            if problems := check_index_parts(ctx, args.records):
                print(f"  (!) index text differs from search_parts() for {', '.join(problems)}")
            raw = Raw(where)
            try:
                print(word_counts(raw))
                who = pick_readers(ctx, raw, staff, args.repeat)
                print("readers:")
                print("\n".join(describe(ctx, raw, who)), flush=True)
                timer = ServerTime(create_app(ctx))
                results = []
                with TestClient(timer, base_url=BASE_URL, follow_redirects=False) as client:
                    for case in cases(ctx, raw, who):
                        results.append(measure(ctx, client, timer, case, args.repeat))
                    report(results)
                    for m in results:
                        if args.explain:
                            print(f"\nquery plans of {m.case.label} ({len(m.statements)} statements):")
                            explain(ctx.db, m.statements)
                        if args.profile and not m.met:
                            print(f"\nprofile of {m.case.label} ({PROFILED} requests in the event-loop thread):")
                            print(profile(client, m.case))
            finally:
                raw.close()
        finally:
            ctx.db.close()


def revision() -> str:
    """The commit measured, and whether the console's code differs from it (others may be editing it)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %cs"], capture_output=True,
                              text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "gateway", "store",
                                  "config"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "(no git)"
    return head + (f" with {len(changed)} uncommitted changes in gateway/ store/ config/" if changed else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records in all (default 100000)")
    parser.add_argument("--open", type=int, default=10_000, help="of them open, not archived (default 10000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=50, help="timed requests per page and reader (default 50)")
    parser.add_argument("--explain", action="store_true", help="print the query plans of every page's statements")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each page that misses its target")
    parser.add_argument("--dir", help="SQLite: build the database here and keep it; reused when the sizes match")
    args = parser.parse_args()
    args.open = min(args.open, args.records)
    engine = f"SQLite {sqlite3.sqlite_version}" if args.db == "sqlite" else PG_URL
    print(f"web console benchmark: {args.db}, {args.records:,} records ({args.open:,} open), {args.repeat} requests "
          f"per page, Python {platform.python_version()}, {engine}, {os.cpu_count()} CPUs")
    print(f"clock fixed at {NOW:%Y-%m-%d %H:%M} {TZ.key}; {DEPARTMENTS * PEOPLE_PER_DEPARTMENT:,} staff in "
          f"{DEPARTMENTS} departments, {BUSY_SHARE:.0%} of them busy; code {revision()}", flush=True)
    if args.dir and args.db == "sqlite":
        folder = Path(args.dir)
        folder.mkdir(parents=True, exist_ok=True)
        run(args, folder)
    else:
        with tempfile.TemporaryDirectory(prefix="liuhen-web-bench-") as tmp:
            run(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
