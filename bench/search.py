#!/usr/bin/env python3
"""Search benchmark: the bigram full-text index (store/search.py) against a LIKE scan.

    .venv/bin/python bench/search.py [-n 100000] [--db sqlite|postgresql] [--repeat 25]

Builds N archived records of mixed Chinese/English text (~500 characters each: subject,
background, comments, minutes, result, retrospective, attachment names), generated
deterministically from the word lists below with a Zipf-like word frequency, so some query
terms are in most records and others in a few. They are bulk-loaded with ``index_records`` in
one transaction (build time printed), on SQLite in a temporary directory or PostgreSQL in a
throw-away schema of $LIUHEN_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test).

Then, for 2-, 3- and 4-character Chinese words and English words (8 terms each, spread from
frequent to rare), it times ``search()`` — the ranked first page of 20 hits with snippets, as
the archive UI asks for it — --repeat times per term, unrestricted (admin) and for a user who
may see 1,000 random records; and a ``LIKE '%term%'`` scan of the same stored text (ILIKE on
PostgreSQL) that collects every matching archived record, which is what a scan must do before
it can rank. Prints a row per term, then p50/p95 per category and the scan's median and p95
divided by the index's. A benchmark, not a test: it prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peewee import Database

from store.db import open_database
from store.search import RANK_WINDOW, IndexEntry, ensure_search_schema, index_records, search

PG_URL = os.environ.get("LIUHEN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SEED = 20240525
BATCH = 5000
TERMS_PER_CATEGORY = 8
# At 100k records a word of this frequency rank is in about a hundred of them.
RAREST_RANK = 8000
VISIBLE_RECORDS = 1000

# Domain vocabulary of a hardware company's project, customer and notice records.
ZH2 = ["成本", "续航", "合同", "进度", "风险", "质量", "方案", "评审", "测试", "样机", "供应", "物料", "采购", "交期", "模具", "良率", "功耗", "芯片", "主板", "天线", "屏幕", "电池", "外观", "结构", "软件", "固件", "版本", "需求", "客户", "市场", "竞品", "价格", "预算", "报价", "发票", "付款", "审批", "会议", "纪要", "结论", "复盘", "问题", "原因", "对策", "责任", "节点", "延期", "计划", "目标", "资源", "人力", "法务", "条款", "签字", "确认", "归档", "培训", "通知", "制度", "流程", "规范", "安全", "事故", "故障", "投诉", "升级", "部署", "服务", "运维", "数据", "接口", "协议", "认证", "专利", "包装", "物流", "仓储", "库存", "订单", "发货", "验收", "交付", "售后", "维修", "退货", "渠道", "门店", "推广", "品牌", "设计", "工艺", "材料", "表壳", "表带", "心率", "血氧", "睡眠", "运动", "蓝牙", "充电", "防水", "散热", "噪声", "性能", "兼容", "稳定", "效率", "优化", "调整", "变更", "评估", "分析", "汇总", "反馈", "沟通", "协调", "支持", "配合", "跟进", "落实", "检查", "整改", "考核", "绩效", "招聘", "财务", "审计", "税务", "报销", "差旅", "行政", "采集", "标注", "模型", "算法", "平台", "系统", "账号", "权限", "日志", "备份", "迁移", "上线", "灰度", "回滚", "样品", "试产", "量产", "排期", "器件", "选型"]
ZH3 = ["供应商", "时间表", "负责人", "可行性", "里程碑", "说明书", "合格率", "路线图", "工作量", "成本价", "主控板", "显示屏", "充电器", "数据库", "服务器", "小程序", "生产线", "试产线", "物料单", "竞争力", "满意度", "知识库", "电路板", "传感器", "产品线", "研发部", "市场部", "财务部", "法务部", "采购部", "质检部", "项目组", "委员会", "说明会", "发布会", "协议书", "报价单", "验收单", "不锈钢", "铝合金", "硅胶带", "扬声器", "麦克风", "陀螺仪", "加速度", "气压计", "指南针", "表盘页"]
ZH4 = ["智能手表", "硬件方案", "样机测试", "量产计划", "物料清单", "供应链路", "用户体验", "产品需求", "关键器件", "风险评估", "成本控制", "质量管理", "进度安排", "资源协调", "结果确认", "复盘总结", "会议纪要", "技术评审", "市场调研", "竞品分析", "售后服务", "客户满意", "合同审核", "付款条件", "交付周期", "验收标准", "模具费用", "良率提升", "功耗测算", "天线性能", "续航能力", "防水等级", "整机厚度", "结构设计", "软件升级", "固件版本", "数据迁移", "系统上线", "安全事故", "应急预案", "检测报告", "操作系统", "佩戴舒适", "主板布局", "试产排期", "专题会议", "书面材料"]
EN = ["BOM", "cost", "schedule", "review", "prototype", "supplier", "deadline", "milestone", "risk", "budget", "firmware", "battery", "sensor", "display", "antenna", "PCB", "MCU", "Bluetooth", "launch", "sample", "quality", "yield", "test", "report", "contract", "invoice", "payment", "delivery", "shipment", "forecast", "roadmap", "feature", "release", "bug", "issue", "fix", "update", "version", "design", "meeting", "minutes", "action", "owner", "approval", "EVT", "DVT", "PVT", "NPI", "ECN", "KPI", "SLA", "API", "SDK", "iOS", "Android", "OTA", "GPS", "NFC", "Wi-Fi", "USB-C", "lead-time", "tooling", "mold"]
FILLER = ["的", "了", "和", "在", "对", "将", "需", "已", "与", "及", "由", "为", "按", "请", "本次", "目前", "尚未", "需要", "已经", "进一步", "根据", "关于", "如果", "因为", "所以", "同时", "以及", "并且", "但是", "完成", "提供", "明确", "确定", "要求", "相关", "主要", "重点", "预计", "建议", "各方", "双方", "本周", "下周", "本月", "今天", "明天"]
ENGLISH_FILLER = ["the", "and", "of", "to", "for", "in", "on", "with", "is", "are", "be", "will", "we", "please"]


SURNAMES = "张王李赵陈刘杨黄周吴徐孙马朱胡郭何林罗高"
GIVEN = "伟强磊静敏丽军杰涛明华芳勇艳娜超秀英平刚"
COMPANY_HEADS = ["华星", "东方", "瑞达", "金盛", "宏图", "恒通", "新元", "联创", "正泰", "博远", "天成", "安信"]
COMPANY_TAILS = ["科技", "电子", "精密", "通信", "光电", "材料", "物流", "智能"]


class Corpus:
    """Deterministic mixed Chinese/English records; the same seed gives the same text.

    Word frequency follows Zipf's law over a vocabulary of ~30k words: the hand-written lists
    above (in random order) are the frequent end, and generated person names, company names,
    4-character compounds and part numbers the long tail, so query terms range from words in
    nearly every record to words in a few dozen."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        head = ZH2 + ZH3 + ZH4 + EN
        self.rng.shuffle(head)
        names = [s + g1 + g2 for s in SURNAMES for g1 in GIVEN for g2 in GIVEN if g1 != g2]
        companies = [h + t for h in COMPANY_HEADS for t in COMPANY_TAILS]
        compounds = [a + b for a in ZH2 for b in ZH2 if a != b]
        parts = [f"{p}{n}" for p in ("WT", "PCB", "MCU", "BAT", "ANT") for n in range(100, 1100)]
        tail = names + companies + compounds + parts
        self.rng.shuffle(tail)
        self.words = head + tail
        self.categories = {"zh 2-char": ZH2, "zh 3-char": ZH3 + names, "zh 4-char": ZH4 + companies + compounds,
                           "English": EN + parts}
        self.cum_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(self.words))))
        self.rank = {word: rank for rank, word in enumerate(self.words)}

    def sentence(self) -> str:
        rng = self.rng
        out: list[str] = []
        for word in rng.choices(self.words, cum_weights=self.cum_weights, k=rng.randint(6, 14)):
            if rng.random() < 0.45:
                out.append(rng.choice(FILLER))
            # English inside Chinese text sits directly against the characters or between spaces.
            out.append(f" {word} " if word.isascii() and rng.random() < 0.5 else word)
        if rng.random() < 0.15:
            out.append(" " + " ".join(rng.choices(ENGLISH_FILLER + EN, k=rng.randint(4, 9))) + " ")
        return "".join(out).strip() + rng.choice("。。。，；！")

    def text(self, chars: int) -> str:
        out = ""
        while len(out) < chars:
            out += self.sentence()
        return out

    def record(self, record_id: int) -> IndexEntry:
        rng = self.rng
        a, b = rng.choices(self.words, cum_weights=self.cum_weights, k=2)
        subject = f"{a}项目-{b}评审"
        date = f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        parts = {
            "subject": subject,
            "field:背景与目标": self.text(110),
            "comment": self.text(60),
            "minutes": self.text(80),
            "result": self.text(35),
            "retro": self.text(30),
            "attachment": f"{rng.choice(ZH4)}V{rng.randint(1, 3)}.{rng.randint(0, 9)}-{date}.docx",
        }
        return IndexEntry(record_id, f"PRJ-2024-{record_id:06d}", "archived", f"{subject}-{date}", parts)


def pick_terms(corpus: Corpus, words: list[str]) -> list[str]:
    """TERMS_PER_CATEGORY words of the category, spread evenly over the log of their rank:
    from the most frequent to ones in a few dozen records."""
    by_rank = sorted(words, key=corpus.rank.__getitem__)
    lowest = math.log(corpus.rank[by_rank[0]] + 1)
    highest = math.log(min(corpus.rank[by_rank[-1]] + 1, RAREST_RANK))
    picked: list[str] = []
    for i in range(TERMS_PER_CATEGORY):
        target = math.exp(lowest + (highest - lowest) * i / (TERMS_PER_CATEGORY - 1))
        picked.append(min((w for w in by_rank if w not in picked), key=lambda w: abs(corpus.rank[w] + 1 - target)))
    return picked


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def open_bench_database(kind: str, workdir: Path) -> tuple[Database, Callable[[], object]]:
    if kind == "sqlite":
        db = open_database(f"sqlite:///{workdir / 'search.db'}")
        return db, db.close
    import psycopg2

    schema = f"bench_search_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    db = open_database(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")

    def drop() -> None:
        db.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()

    return db, drop


def build(db: Database, corpus: Corpus, n: int) -> float:
    """Index n records in one transaction; returns the seconds of indexing and commit,
    without the time spent generating the text."""
    generating = 0.0
    start = time.perf_counter()
    with db.atomic():
        for first in range(1, n + 1, BATCH):
            generated = time.perf_counter()
            batch = [corpus.record(i) for i in range(first, min(n, first + BATCH - 1) + 1)]
            generating += time.perf_counter() - generated
            index_records(db, batch)
    return time.perf_counter() - start - generating


def scan(db: Database, postgres: bool, term: str) -> int:
    op = "ILIKE" if postgres else "LIKE"
    p = db.param
    sql = (f"SELECT t.record_id FROM search_text t JOIN search_doc d ON d.record_id = t.record_id "
           f"WHERE d.status = 'archived' AND (t.subject {op} {p} OR t.body {op} {p})")
    return len(db.execute_sql(sql, (f"%{term}%", f"%{term}%")).fetchall())


def pad(text: str, width: int) -> str:
    """Left-align for a terminal, where a Chinese character takes two columns."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - columns)


@dataclass
class TermResult:
    category: str
    term: str
    matches: int
    index_ms: list[float]
    visible_ms: list[float]
    scan_ms: list[float]


def measure(db: Database, postgres: bool, corpus: Corpus, n: int, repeat: int, scan_repeat: int) -> list[TermResult]:
    visible = set(random.Random(SEED).sample(range(1, n + 1), min(n, VISIBLE_RECORDS)))
    results = []
    for category, words in corpus.categories.items():
        for term in pick_terms(corpus, words):
            search(db, term)  # warm the pages this term touches, as a live server would have them
            index_ms = [timed(partial(search, db, term))[0] for _ in range(repeat)]
            visible_ms = [timed(partial(search, db, term, visible_record_ids=visible))[0] for _ in range(repeat)]
            scans = [timed(partial(scan, db, postgres, term)) for _ in range(scan_repeat)]
            # The scan's substring matches are a subset of the index's, so hits must exist.
            assert search(db, term) or not scans[0][1], f"the index missed {term!r}"
            results.append(TermResult(category, term, scans[0][1], index_ms, visible_ms, [ms for ms, _ in scans]))
    return results


def report(results: list[TermResult]) -> None:
    print(f"{pad('query', 10)} {pad('term', 10)} {'matches':>8} {'index p50':>10} {'p95':>7} "
          f"{'visible p50':>12} {'p95':>7} {'scan p50':>9}")
    for r in results:
        print(f"{pad(r.category, 10)} {pad(r.term, 10)} {r.matches:>8,} {statistics.median(r.index_ms):>8.2f}ms "
              f"{percentile(r.index_ms, 0.95):>5.1f}ms {statistics.median(r.visible_ms):>10.2f}ms "
              f"{percentile(r.visible_ms, 0.95):>5.1f}ms {statistics.median(r.scan_ms):>7.0f}ms")
    print()
    print(f"{pad('query', 10)} {'index p50':>10} {'index p95':>10} {'visible p50':>12} {'visible p95':>12} "
          f"{'scan p50':>9} {'scan p95':>9} {'speed-up p50':>13} {'at p95':>7}")
    for category in dict.fromkeys(r.category for r in results):
        rows = [r for r in results if r.category == category]
        index_ms = [ms for r in rows for ms in r.index_ms]
        visible_ms = [ms for r in rows for ms in r.visible_ms]
        scan_ms = [ms for r in rows for ms in r.scan_ms]
        i50, i95, s50, s95 = (statistics.median(index_ms), percentile(index_ms, 0.95),
                              statistics.median(scan_ms), percentile(scan_ms, 0.95))
        print(f"{pad(category, 10)} {i50:>8.2f}ms {i95:>8.2f}ms {statistics.median(visible_ms):>10.2f}ms "
              f"{percentile(visible_ms, 0.95):>10.2f}ms {s50:>7.0f}ms {s95:>7.0f}ms {s50 / i50:>12.0f}× "
              f"{s95 / i95:>6.0f}×")
    print()
    print("index = search(): the 20 best of the newest RANK_WINDOW matches, with snippets; visible = the same "
          f"for a user who may see {VISIBLE_RECORDS:,} random records; scan = LIKE '%term%' over the stored text, "
          "collecting every match. matches = the scan's count of archived records containing the term "
          "(the index finds the same, plus 2-character words across word boundaries).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="records to index (default 100000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=25, help="timed searches per term (default 25)")
    parser.add_argument("--scan-repeat", type=int, default=2, help="timed LIKE scans per term (default 2)")
    args = parser.parse_args()

    postgres = args.db == "postgresql"
    print(f"search benchmark: {args.n:,} records, {args.db}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, RANK_WINDOW {RANK_WINDOW}")
    with tempfile.TemporaryDirectory(prefix="liuhen-search-bench-") as tmp:
        db, close = open_bench_database(args.db, Path(tmp))
        try:
            ensure_search_schema(db)
            corpus = Corpus(SEED)
            seconds = build(db, corpus, args.n)
            chars = db.execute_sql("SELECT avg(length(subject) + length(body)) FROM search_text").fetchone()[0]
            print(f"build: {seconds:.1f} s ({args.n / seconds:,.0f} records/s, one transaction), "
                  f"{float(chars):.0f} characters per record")
            if postgres:
                db.execute_sql("ANALYZE search_doc, search_text")
                size = db.execute_sql("SELECT pg_total_relation_size('search_text') + "
                                      "pg_total_relation_size('search_doc')").fetchone()[0]
            else:
                db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                size = sum(f.stat().st_size for f in Path(tmp).iterdir())
            print(f"size on disk: {size / 1e6:,.0f} MB")
            print()
            report(measure(db, postgres, corpus, args.n, args.repeat, args.scan_repeat))
        finally:
            close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
