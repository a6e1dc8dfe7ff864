"""Tests for store.search: bigram full-text search over records, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from peewee import Database

import store.search
from store.db import open_database
from store.search import IndexEntry, ensure_search_schema, index_record, index_records, search, tokenize

HARDWARE_REVIEW = dict(
    record_id=1, ref="PRJ-2026-0001", status="archived", archive_key="智能手表项目-硬件方案评审-20240525",
    parts={
        "subject": "智能手表项目-硬件方案评审",
        "field:背景与目标": "新款智能手表需在Q1量产，需确认硬件方案以锁定BOM成本；上一代产品续航不足，本次目标提升百分之二十。",
        "field:参与部门及职责": "研发部/王强 — 完成硬件方案评估\n市场部/赵磊 — 提供竞品价格",
        "comment": "The supplier quote for the MCU is still pending; lead time is 16 weeks.",
        "minutes": "评审会结论：采用方案B，主控芯片由供应商华星科技提供。",
        "result": "方案B通过评审，样机测试于12月15日开始。",
        "retro": "物料清单冻结较晚，下次提前两周锁定关键器件。",
        "attachment": "产品需求文档V1.0-20240520.docx",
    })
CONTRACT_RENEWAL = dict(
    record_id=2, ref="CUS-2026-0001", status="archived", archive_key="华星科技年度合同续签-20240610",
    parts={
        "subject": "华星科技年度合同续签",
        "progress": "2024-06-03 初步沟通：客户希望把付款条件从60天改为30天。\n"
                    "2024-06-07 Contract renewal draft sent to the client's legal team.",
        "result": "双方签署新合同，付款条件30天。",
        "attachment": "年度供货合同V2.1-20240610.pdf",
    })
TRAVEL_NOTICE = dict(
    record_id=3, ref="NTC-2026-0001", status="archived", archive_key="差旅报销制度调整通知-20240701",
    parts={
        "subject": "差旅报销制度调整通知",
        "field:通知内容": "自7月1日起，差旅报销须在出差结束后10个工作日内提交，逾期不予受理。",
        "comment": "财务部已确认。",
    })
OPEN_CONTRACT_REVIEW = dict(
    record_id=4, ref="PRJ-2026-0002", status="open", archive_key="",
    parts={"subject": "供应商合同审核", "field:背景与目标": "新供应商的框架合同需法务审核条款。"})
CONFIRMING_BATTERY = dict(
    record_id=5, ref="PRJ-2026-0003", status="confirming", archive_key="",
    parts={"subject": "电池续航测试结果确认", "result": "续航测试通过，典型使用场景下达到七天。"})
MONTHLY_TASKS = dict(
    record_id=6, ref="PRJ-2026-0004", status="archived", archive_key="月度任务跟进-20240801",
    parts={"subject": "月度任务跟进", "minutes": "请各部门于周五前完成本月的任务总结。"})

RECORDS = [HARDWARE_REVIEW, CONTRACT_RENEWAL, TRAVEL_NOTICE, OPEN_CONTRACT_REVIEW, CONFIRMING_BATTERY, MONTHLY_TASKS]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    ensure_search_schema(database)
    for record in RECORDS:
        index_record(database, **record)
    yield database
    database.close()


def refs(db: Database, query: str, **options: object) -> list[str]:
    return [hit.ref for hit in search(db, query, **options)]


# --------------------------------------------------------------------------- tokenizer

def test_tokenize_makes_overlapping_bigrams_of_chinese_and_words_of_the_rest() -> None:
    assert tokenize("智能手表") == "智能 能手 手表"
    assert tokenize("锁定BOM成本，续航") == "锁定 bom 成本 续航"
    assert tokenize("表") == "表"  # a lone character stays a unigram
    assert tokenize("产品需求文档V1.0-20240520.docx") == "产品 品需 需求 求文 文档 v1 0 20240520 docx"


def test_tokenize_normalises_width_and_case_and_drops_punctuation() -> None:
    assert tokenize("ＢＯＭ成本（ＭＣＵ）：Ｖ２") == "bom 成本 mcu v2"
    assert tokenize("Straße lead_time  «quoted»") == "strasse lead time quoted"
    assert tokenize("，。！？…—") == ""
    assert tokenize("x" * (store.search.MAX_TOKEN_CHARS + 1) + " ok") == "ok"


# --------------------------------------------------------------------------- matching

@pytest.mark.parametrize("word, expected", [
    ("成本", ["PRJ-2026-0001", "PRJ-2026-0004"]),  # 0004: 完成本月, see the boundary test below
    ("续航", ["PRJ-2026-0001"]),
    ("合同", ["CUS-2026-0001"]),
    ("报销", ["NTC-2026-0001"]),
])
def test_two_character_words(db: Database, word: str, expected: list[str]) -> None:
    assert sorted(refs(db, word)) == expected


@pytest.mark.parametrize("word, expected", [
    ("供应商", ["PRJ-2026-0001"]),  # in the minutes and the English comment's record only
    ("研发部", ["PRJ-2026-0001"]),
    ("智能手表", ["PRJ-2026-0001"]),
    ("付款条件", ["CUS-2026-0001"]),
    ("差旅报销制度", ["NTC-2026-0001"]),
    ("华星科技", ["CUS-2026-0001", "PRJ-2026-0001"]),  # subject beats minutes
])
def test_longer_chinese_words(db: Database, word: str, expected: list[str]) -> None:
    assert refs(db, word) == expected


def test_chinese_words_match_as_phrases_not_as_loose_bigrams(db: Database) -> None:
    # 方案 and 评审 are both in record 1 and 2's text has neither, but "案评" only exists
    # where 方案评审 is written together: the phrase must keep the bigrams adjacent.
    assert refs(db, "方案评审") == ["PRJ-2026-0001"]
    assert refs(db, "评审方案") == []


@pytest.mark.parametrize("word", ["bom", "BOM", "Bom", "ＢＯＭ", "bom成本", "BOM 成本"])
def test_english_is_case_and_width_insensitive(db: Database, word: str) -> None:
    assert refs(db, word) == ["PRJ-2026-0001"]


def test_english_words_and_versions(db: Database) -> None:
    assert refs(db, "CONTRACT") == ["CUS-2026-0001"]
    assert refs(db, "lead time") == ["PRJ-2026-0001"]
    assert refs(db, "V1.0") == ["PRJ-2026-0001"]  # attachment names are searchable
    assert refs(db, "cost") == []  # whole words: no stemming, no prefix


def test_every_word_of_the_query_must_match(db: Database) -> None:
    assert refs(db, "成本 续航") == ["PRJ-2026-0001"]
    assert refs(db, "合同 30天") == ["CUS-2026-0001"]
    assert refs(db, "成本 合同") == []
    assert refs(db, "supplier 华星科技") == ["PRJ-2026-0001"]


def test_words_that_are_not_there_find_nothing(db: Database) -> None:
    assert refs(db, "显示屏") == []
    assert refs(db, "budget") == []
    assert refs(db, "成本控制") == []
    # A single character is a token only where it stands alone (as in Lucene's CJK
    # analyzer), so 表 does not find 手表.
    assert refs(db, "表") == []


def test_two_characters_also_match_across_a_word_boundary(db: Database) -> None:
    # Accepted false positive of bigrams without a dictionary: 完成本月 contains 成本.
    assert refs(db, "成本", visible_record_ids={6}) == ["PRJ-2026-0004"]


def test_queries_with_operators_and_punctuation_are_plain_words(db: Database) -> None:
    assert refs(db, '"成本" AND (续航) OR NOT*') == []  # "and", "or", "not" are words too
    assert refs(db, '"成本" (续航)') == ["PRJ-2026-0001"]
    assert refs(db, "—— ！！") == []
    assert refs(db, "") == []


# --------------------------------------------------------------------------- filters

def test_archived_only_by_default_and_open_records_on_request(db: Database) -> None:
    assert refs(db, "合同") == ["CUS-2026-0001"]
    assert sorted(refs(db, "合同", include_open=True)) == ["CUS-2026-0001", "PRJ-2026-0002"]
    assert refs(db, "续航") == ["PRJ-2026-0001"]
    hits = {hit.ref: hit for hit in search(db, "续航", include_open=True)}
    assert hits.keys() == {"PRJ-2026-0001", "PRJ-2026-0003"}
    assert (hits["PRJ-2026-0003"].status, hits["PRJ-2026-0003"].archive_key) == ("confirming", "")
    assert (hits["PRJ-2026-0001"].status, hits["PRJ-2026-0001"].archive_key) == (
        "archived", "智能手表项目-硬件方案评审-20240525")


def test_visibility_restricts_to_the_given_records(db: Database) -> None:
    assert refs(db, "合同", include_open=True, visible_record_ids={4}) == ["PRJ-2026-0002"]
    assert refs(db, "合同", visible_record_ids={1, 3}) == []
    assert refs(db, "合同", visible_record_ids=set()) == []
    assert refs(db, "合同", visible_record_ids=None) == ["CUS-2026-0001"]


def test_limit(db: Database) -> None:
    assert len(search(db, "成本", include_open=True, limit=1)) == 1
    assert search(db, "成本", limit=0) == []


# --------------------------------------------------------------------------- results

def test_hit_carries_the_record_and_a_snippet_of_the_original_text(db: Database) -> None:
    [hit] = search(db, "bom")
    assert (hit.record_id, hit.ref, hit.status) == (1, "PRJ-2026-0001", "archived")
    assert hit.archive_key == "智能手表项目-硬件方案评审-20240525"
    assert "锁定【BOM】成本" in hit.snippet  # original case, match marked
    assert len(hit.snippet.replace("【", "").replace("】", "")) <= store.search.SNIPPET_CHARS + 2  # + "…" each side


def test_snippet_marks_every_query_word_near_the_first_match(db: Database) -> None:
    [hit] = search(db, "续航 成本")
    assert "锁定BOM【成本】；上一代产品【续航】不足" in hit.snippet
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…")


def test_snippet_maps_folded_text_back_to_the_original(db: Database) -> None:
    index_record(db, 7, "PRJ-2026-0005", "archived", "Straße-20240901",
                 {"subject": "Straße Ａ区改造", "comment": "ＭＣＵ交期确认"})
    assert search(db, "strasse")[0].snippet.startswith("【Straße】")
    assert "【ＭＣＵ】交期" in search(db, "mcu", visible_record_ids={7})[0].snippet


def test_a_subject_match_ranks_above_a_match_in_the_text(db: Database) -> None:
    index_record(db, 8, "PRJ-2026-0006", "archived", "a", {"subject": "样机测试安排", "minutes": "按计划进行。"})
    index_record(db, 9, "PRJ-2026-0007", "archived", "b", {"subject": "季度计划", "minutes": "样机测试按计划进行。"})
    assert refs(db, "样机测试")[0] == "PRJ-2026-0006"


def test_ranking_considers_the_newest_matches(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.search, "RANK_WINDOW", 2)
    index_records(db, [IndexEntry(i, f"PRJ-2026-{i:04d}", "archived", "", {"subject": "蓝牙模块选型"})
                       for i in range(10, 15)])
    assert sorted(refs(db, "蓝牙")) == ["PRJ-2026-0013", "PRJ-2026-0014"]


# --------------------------------------------------------------------------- indexing

def test_reindexing_replaces_the_entry(db: Database) -> None:
    index_record(db, 1, "PRJ-2026-0001", "archived", "智能手表项目-硬件方案评审-20240525",
                 {"subject": "智能手表项目-硬件方案评审", "result": "改用国产主控芯片。"})
    assert refs(db, "续航") == []
    assert refs(db, "国产主控") == ["PRJ-2026-0001"]
    assert refs(db, "智能手表") == ["PRJ-2026-0001"]
    index_record(db, 1, "PRJ-2026-0001", "open", "", {"subject": "智能手表项目-硬件方案评审"})
    assert refs(db, "智能手表") == []
    assert [(h.status, h.archive_key) for h in search(db, "智能手表", include_open=True)] == [("open", "")]


def test_bulk_indexing_keeps_the_last_entry_per_record(db: Database) -> None:
    index_records(db, [IndexEntry(20, "PRJ-2026-0020", "archived", "k", {"subject": "旧主题"}),
                       IndexEntry(20, "PRJ-2026-0020", "archived", "k", {"subject": "新主题"})])
    assert refs(db, "新主题") == ["PRJ-2026-0020"]
    assert refs(db, "旧主题") == []


def test_indexing_follows_the_callers_transaction(db: Database) -> None:
    with db.atomic() as transaction:
        index_record(db, 30, "PRJ-2026-0030", "archived", "k", {"subject": "天线性能复测"})
        assert refs(db, "天线") == ["PRJ-2026-0030"]
        transaction.rollback()
    assert refs(db, "天线") == []


def test_nul_characters_are_dropped(db: Database) -> None:
    index_record(db, 31, "PRJ-2026-0031", "archived", "k", {"subject": "模具\x00费用"})
    assert refs(db, "模具费用") == ["PRJ-2026-0031"]


def test_only_the_first_max_indexed_chars_are_searchable(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.search, "MAX_INDEXED_CHARS", 20)
    parts = {"subject": "长文本", "minutes": "会议开始。" * 4 + "结尾提到天线。"}
    index_record(db, 32, "PRJ-2026-0032", "archived", "k", parts)
    assert refs(db, "会议开始") == ["PRJ-2026-0032"]
    assert refs(db, "天线") == []
    index_record(db, 32, "PRJ-2026-0032", "archived", "k", parts | {"minutes": "天线在前。"})  # replaces cleanly
    assert refs(db, "天线") == ["PRJ-2026-0032"]
    assert refs(db, "会议开始") == []


def test_a_new_tokenizer_version_rebuilds_the_index(db: Database) -> None:
    ensure_search_schema(db)  # idempotent
    db.execute_sql("UPDATE search_meta SET value = 'old' WHERE key = 'tokenizer'")
    ensure_search_schema(db)
    assert db.execute_sql("SELECT value FROM search_meta").fetchall() == [(store.search.TOKENIZER_VERSION,)]
    assert refs(db, "续航") == ["PRJ-2026-0001"]
    index_record(db, **CONTRACT_RENEWAL)  # replacing works on the rebuilt index
    assert refs(db, "合同") == ["CUS-2026-0001"]
