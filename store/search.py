"""Keyword search over records: the index of their text and the ranked queries against it.

Responsibility: keep one search entry per record (subject, fields, comments, progress rows,
minutes, result, retrospective, attachment names — whatever the caller hands in as ``parts``)
and answer keyword queries with ranked hits, each with the record's archive key and a snippet
of the original text.

Why the text is pre-tokenized in Python: Chinese has no spaces between words, and the most
common search terms are two-character words (成本, 续航, 合同). SQLite's FTS5 trigram tokenizer
cannot match terms under three characters, and a ``LIKE '%…%'`` scan is correct but costs
~250 ms at 100k records. So ``tokenize`` does what Lucene's CJK analyzer does: every run of
CJK characters becomes its overlapping bigrams (成本控制 → 成本 本控 控制; a lone character stays a
unigram), and Latin letters and digits become ordinary words, all NFKC-normalised and
case-folded. Both backends index that same token stream, split on spaces only:
SQLite an FTS5 table with the unicode61 tokenizer, PostgreSQL ``to_tsvector('simple', …)`` with
a GIN index. A query word is tokenized the same way and must match as a phrase (its tokens
adjacent and in order); the words of a query must all match (AND).

What this implies, by design:
- A two-character query matches any two adjacent characters, also across a word boundary
  (成本 is found in 完成本月的任务). Bigrams do not know where words end; these false positives
  are the accepted price of needing no dictionary.
- A single Chinese character matches only where it stands alone between non-CJK characters
  (as in Lucene): 表 does not find 手表.
- Latin words match whole tokens: ``cost`` does not find ``costs`` (no stemming).
- Hits are ranked among the newest RANK_WINDOW matching records the caller may see (see there).
- Only the first MAX_INDEXED_CHARS of a record's text are searchable. PostgreSQL also stops
  counting positions at 16,383, so there a multi-token word (3+ Chinese characters, ``V1.0``)
  is not found beyond roughly the first 16,000 characters of a record.

Costs worth knowing (SQLite, 100k records of ~500 characters; bench/search.py measures them):
bm25 needs the number of records matching each query word, which FTS5 counts on every query;
for a single token that is a cheap walk of its list, but for a 3–4 character word in most
records it means checking positions in each of them (~30 ms for a word in 90% of 100k).
With a ``visible_record_ids`` set, a common word costs a pass over all its matches.
PostgreSQL (50k records) rechecks positions for every record holding a 3–4 character word
when the planner expects few of them: ~30 ms for one in a tenth of the records.

Tables (derived data, created by ``ensure_search_schema`` and kept out of ``store.models``):
``search_doc`` (record id, ref, status, archive key) and ``search_text`` (the original subject
and text, for snippets and re-tokenizing); SQLite adds the contentless FTS5 table
``search_fts`` (rowid = record id), PostgreSQL a ``tsv`` column with a GIN index on
``search_doc``; ``search_meta`` remembers which tokenizer version built the index, so a
changed tokenizer triggers a rebuild from the stored text instead of silently mismatching
queries against old tokens.

Every function takes the peewee database handle and works inside or outside the caller's
transaction (writes use ``db.atomic()``, which nests as a savepoint).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from peewee import Database
from psycopg2.extras import execute_values

from store.db import is_postgres

# Bump whenever ``tokenize`` changes its output: ``ensure_search_schema`` then rebuilds the index.
TOKENIZER_VERSION = "1"

SNIPPET_CHARS = 80
# A subject hit counts this many times a hit in the rest of the text.
SUBJECT_WEIGHT = 4.0
# Longer "words" are base64 or hex blobs, not search terms; PostgreSQL would refuse
# lexemes over 2047 bytes anyway, and dropping them keeps both backends identical.
MAX_TOKEN_CHARS = 200
# PostgreSQL refuses a tsvector over 1 MB, which 80k characters of varied Chinese can reach;
# 50k stays clear of it, and both backends index the same prefix.
MAX_INDEXED_CHARS = 50_000
# Ranking reads every candidate's token positions (bm25 3–15 µs a record on SQLite, ts_rank
# ~10 µs on PostgreSQL), so ranking all 100k records that contain a common word would take
# 50 ms and more. Hits are the best-ranked among the newest RANK_WINDOW matching records the
# caller may see: all matches for a word rarer than that, the recent end of the archive for
# the common ones (a user narrows those down with a second word).
RANK_WINDOW = 500

# Han (with extension A, the compatibility block and the supplementary planes), kana and Hangul:
# the scripts written without spaces between words. The katakana middle dot ・ (U+30FB) is
# punctuation and stays out. 々 and 〇 behave as ideographs inside words.
_CJK_CHARS = ("\u3005\u3007\u3041-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
              "\uf900-\ufaff\U00020000-\U0003134f")
_CJK_RUN = re.compile(f"([{_CJK_CHARS}]+)")
_WORD = re.compile(r"[^\W_]+")  # letters and digits; underscores and punctuation separate words
_NON_CJK_WORD_CHAR = f"(?![{_CJK_CHARS}])[^\\W_]"
_WHITESPACE = re.compile(r"\s+")
_FULL_WIDTH_PUNCTUATION = tuple((mark, unicodedata.normalize("NFKC", mark)) for mark in "，；：！？（）\u3000")


@dataclass(frozen=True)
class Hit:
    record_id: int
    ref: str  # e.g. PRJ-2026-0001
    archive_key: str  # e.g. 智能手表项目-硬件方案评审-20240525 ("" for open records)
    status: str  # open | confirming | archived
    snippet: str  # ~80 chars of the original text around the first match, matches marked 【】


@dataclass(frozen=True)
class IndexEntry:
    """One record's searchable text: ``parts`` maps a section ("subject", "field:背景与目标",
    "comment", "minutes", "result", "retro", "attachment", …) to its text. The "subject" part
    ranks higher than the others; section names themselves are not searchable."""

    record_id: int
    ref: str
    status: str
    archive_key: str
    parts: dict[str, str] = field(default_factory=dict)


def tokenize(text: str) -> str:
    """The shared pre-tokenizer: CJK runs as overlapping bigrams, other letters and digits as
    words, NFKC-normalised (full-width Ｂ → b) and case-folded, joined by single spaces."""
    tokens: list[str] = []
    # Splitting on a capturing group alternates: text outside CJK runs, a CJK run, outside, …
    for i, piece in enumerate(_CJK_RUN.split(_fold(text))):
        if i % 2 == 0:
            tokens.extend(w for w in _WORD.findall(piece) if len(w) <= MAX_TOKEN_CHARS)
        elif len(piece) == 1:
            tokens.append(piece)
        else:
            tokens.extend(map(str.__add__, piece[:-1], piece[1:]))
    return " ".join(tokens)


# --------------------------------------------------------------------------- schema

_SQLITE_SCHEMA = (
    # Narrow, so the per-match status check stays in the page cache; the text lives apart.
    "CREATE TABLE IF NOT EXISTS search_doc (record_id INTEGER PRIMARY KEY, ref TEXT NOT NULL, "
    "status TEXT NOT NULL, archive_key TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS search_text (record_id INTEGER PRIMARY KEY, subject TEXT NOT NULL, "
    "body TEXT NOT NULL)",
    # Contentless: the tokens (2–3× the size of Chinese text) are not stored a second time;
    # search_text keeps the original text, from which the tokens can always be rebuilt.
    # remove_diacritics 0: tokenize() is the only normaliser, so SQLite and PostgreSQL agree.
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(subject, body, content='', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TABLE IF NOT EXISTS search_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

_PG_SCHEMA = (
    # The tsvector sits next to the status, so a match is checked and filtered in one row.
    "CREATE TABLE IF NOT EXISTS search_doc (record_id bigint PRIMARY KEY, ref text NOT NULL, "
    "status text NOT NULL, archive_key text NOT NULL, tsv tsvector NOT NULL)",
    "CREATE INDEX IF NOT EXISTS search_doc_tsv ON search_doc USING gin (tsv)",
    "CREATE TABLE IF NOT EXISTS search_text (record_id bigint PRIMARY KEY, subject text NOT NULL, "
    "body text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS search_meta (key text PRIMARY KEY, value text NOT NULL)",
)

# The subject's lexemes get weight A, the rest D; ts_rank's weights are listed {D, C, B, A}.
_PG_TSV = "setweight(to_tsvector('simple', %s), 'A') || to_tsvector('simple', %s)"
_PG_WEIGHTS = f"'{{{1 / SUBJECT_WEIGHT}, 0, 0, 1}}'::real[]"
REBUILD_BATCH = 5000


def ensure_search_schema(db: Database) -> None:
    """Create the search tables if missing; rebuild the index if an older tokenizer built it."""
    with db.atomic():
        if is_postgres(db):
            # Two gateways starting at once would otherwise race on CREATE … IF NOT EXISTS.
            db.execute_sql("SELECT pg_advisory_xact_lock(hashtext('liuhen.search_schema'))")
            fresh = db.execute_sql("SELECT to_regclass('search_doc') IS NULL").fetchone()[0]
            for statement in _PG_SCHEMA:
                db.execute_sql(statement)
            if fresh:
                # A tsvector is ~4 KB compressed; left out of line, every match check fetches it
                # from the TOAST table (~5× slower). MAIN keeps it in the row.
                db.execute_sql("ALTER TABLE search_doc ALTER COLUMN tsv SET STORAGE MAIN")
        else:
            for statement in _SQLITE_SCHEMA:
                db.execute_sql(statement)
        row = db.execute_sql(_sql(db, "SELECT value FROM search_meta WHERE key = ?"), ("tokenizer",)).fetchone()
        if row is not None and row[0] == TOKENIZER_VERSION:
            return
        if row is not None:
            _rebuild(db)
        db.execute_sql(_sql(db, "DELETE FROM search_meta WHERE key = ?"), ("tokenizer",))
        db.execute_sql(_sql(db, "INSERT INTO search_meta (key, value) VALUES (?, ?)"),
                       ("tokenizer", TOKENIZER_VERSION))


def _rebuild(db: Database) -> None:
    """Re-tokenize every stored text with today's tokenizer, a batch of records at a time."""
    if not is_postgres(db):
        # Contentless FTS5 can only be emptied wholesale once the old tokens are unknown.
        db.execute_sql("INSERT INTO search_fts (search_fts) VALUES ('delete-all')")
    last = 0
    while batch := db.execute_sql(_sql(db, "SELECT record_id, subject, body FROM search_text WHERE record_id > ? "
                                           "ORDER BY record_id LIMIT ?"), (last, REBUILD_BATCH)).fetchall():
        last = batch[-1][0]
        tokens = [(rid, *_index_tokens(subject, body)) for rid, subject, body in batch]
        if is_postgres(db):
            execute_values(db.cursor(), "UPDATE search_doc d SET tsv = v.tsv FROM (VALUES %s) AS v(record_id, tsv) "
                                        "WHERE d.record_id = v.record_id", tokens,
                           template=f"(%s, {_PG_TSV})", page_size=500)
        else:
            db.cursor().executemany("INSERT INTO search_fts (rowid, subject, body) VALUES (?, ?, ?)", tokens)


# --------------------------------------------------------------------------- indexing

def index_record(db: Database, record_id: int, ref: str, status: str, archive_key: str,
                 parts: dict[str, str]) -> None:
    """(Re)index one record, replacing any earlier entry for it."""
    index_records(db, [IndexEntry(record_id, ref, status, archive_key, parts)])


def index_records(db: Database, entries: Iterable[IndexEntry]) -> None:
    """(Re)index many records with a handful of statements (backfill, bulk loads)."""
    # The last entry for a record wins, as if they had been indexed one after the other.
    entries = list({entry.record_id: entry for entry in entries}.values())
    if not entries:
        return
    docs = [(e.record_id, e.ref, e.status, e.archive_key) for e in entries]
    texts = [(e.record_id, *_texts(e.parts)) for e in entries]
    with db.atomic():
        cursor = db.cursor()
        if is_postgres(db):
            # Upserts, so a concurrent indexer of the same record cannot make this fail; paged
            # multi-row VALUES because psycopg2's executemany costs a round trip per row.
            execute_values(cursor, "INSERT INTO search_doc (record_id, ref, status, archive_key, tsv) VALUES %s "
                                   "ON CONFLICT (record_id) DO UPDATE SET ref = EXCLUDED.ref, "
                                   "status = EXCLUDED.status, archive_key = EXCLUDED.archive_key, tsv = EXCLUDED.tsv",
                           [(*doc, *_index_tokens(subject, body)) for doc, (_, subject, body) in zip(docs, texts)],
                           template=f"(%s, %s, %s, %s, {_PG_TSV})", page_size=500)
            execute_values(cursor, "INSERT INTO search_text (record_id, subject, body) VALUES %s "
                                   "ON CONFLICT (record_id) DO UPDATE SET subject = EXCLUDED.subject, "
                                   "body = EXCLUDED.body", texts, page_size=500)
            return
        # A contentless FTS5 row is removed by handing back the tokens it was indexed with;
        # the stored original text re-tokenizes to exactly those (same TOKENIZER_VERSION).
        old = db.execute_sql("SELECT record_id, subject, body FROM search_text "
                             "WHERE record_id IN (SELECT value FROM json_each(?))",
                             (json.dumps([rid for rid, _, _ in texts]),)).fetchall()
        cursor.executemany("INSERT INTO search_fts (search_fts, rowid, subject, body) VALUES ('delete', ?, ?, ?)",
                           [(rid, *_index_tokens(subject, body)) for rid, subject, body in old])
        cursor.executemany("INSERT OR REPLACE INTO search_doc (record_id, ref, status, archive_key) "
                           "VALUES (?, ?, ?, ?)", docs)
        cursor.executemany("INSERT OR REPLACE INTO search_text (record_id, subject, body) VALUES (?, ?, ?)", texts)
        cursor.executemany("INSERT INTO search_fts (rowid, subject, body) VALUES (?, ?, ?)",
                           [(rid, *_index_tokens(subject, body)) for rid, subject, body in texts])


def _index_tokens(subject: str, body: str) -> tuple[str, str]:
    """What the index holds for a stored subject and text: always derived from them this way,
    so replacing an entry and rebuilding the index hand FTS5 back exactly the same tokens."""
    return tokenize(subject[:MAX_INDEXED_CHARS]), tokenize(body[:MAX_INDEXED_CHARS])


def _texts(parts: dict[str, str]) -> tuple[str, str]:
    """The subject and the other parts' text joined by newlines, as stored and indexed."""
    # PostgreSQL text cannot hold NUL; drop it on both backends so they store the same text.
    subject = parts.get("subject", "").replace("\x00", "")
    body = "\n".join(text.replace("\x00", "") for name, text in parts.items() if name != "subject" and text)
    return subject, body


# --------------------------------------------------------------------------- searching

def search(db: Database, query: str, *, include_open: bool = False,
           visible_record_ids: set[int] | None = None, limit: int = 20) -> list[Hit]:
    """Records matching every word of ``query``, best first (bm25 on SQLite, ts_rank on
    PostgreSQL) among the newest RANK_WINDOW matches. Archived records only unless
    ``include_open``; ``visible_record_ids`` None means no restriction (admin), otherwise only
    those records can be returned."""
    phrases = [tokens for tokens in map(tokenize, query.split()) if tokens]
    if not phrases or limit <= 0 or visible_record_ids == set():
        return []
    pattern = _match_pattern(query.split())
    if is_postgres(db):
        sql, params = _pg_query(phrases, include_open, visible_record_ids)
        ranked = [row[0] for row in db.execute_sql(_sql(db, sql), [*params, limit]).fetchall()]
        docs = _docs(db, ranked)
    elif all(" " not in tokens for tokens in phrases):
        # Single tokens (English words, 2-character Chinese words): FTS5 knows their document
        # frequency, so bm25 is cheap.
        sql, params = _sqlite_query(phrases, include_open, visible_record_ids, bm25=True)
        ranked = [row[0] for row in db.execute_sql(sql, [*params, limit]).fetchall()]
        docs = _docs(db, ranked)
    else:
        sql, params = _sqlite_query(phrases, include_open, visible_record_ids, bm25=False)
        window = [row[0] for row in db.execute_sql(sql, [*params, RANK_WINDOW]).fetchall()]
        docs = _docs(db, window)
        ranked = sorted(window, key=lambda rid: (-_score(docs[rid][3], docs[rid][4], pattern), -rid))[:limit]
    if not ranked:
        return []
    hits = []
    for record_id in ranked:
        ref, archive_key, status, subject, body = docs[record_id]
        text = f"{subject}\n{body}" if subject and body else subject or body
        hits.append(Hit(record_id, ref, archive_key, status, _snippet(text, pattern)))
    return hits


def _docs(db: Database, ids: list[int]) -> dict[int, tuple]:
    if not ids:
        return {}
    rows = db.execute_sql(_sql(db, "SELECT d.record_id, d.ref, d.archive_key, d.status, t.subject, t.body "
                                   "FROM search_doc d JOIN search_text t ON t.record_id = d.record_id "
                                   f"WHERE d.record_id IN ({', '.join('?' * len(ids))})"), ids).fetchall()
    return {row[0]: row[1:] for row in rows}


def _score(subject: str, body: str, pattern: re.Pattern[str]) -> float:
    """Matches, a subject match counting SUBJECT_WEIGHT times, damped by the text's length
    (like PostgreSQL's ts_rank normalisation 1) so long minutes do not win by size alone."""
    # casefold only, no NFKC: the window holds hundreds of texts, and width variants are rare.
    hits = SUBJECT_WEIGHT * len(pattern.findall(subject.casefold())) + len(pattern.findall(body.casefold()))
    return hits / (1 + math.log(1 + len(subject) + len(body)))


def _sqlite_query(phrases: list[str], include_open: bool, visible_record_ids: set[int] | None,
                  bm25: bool) -> tuple[str, list[object]]:
    # Tokens are letters and digits only, so quoting each phrase needs no escaping.
    params: list[object] = [" AND ".join(f'"{tokens}"' for tokens in phrases)]
    join = where = ""
    if not include_open:
        # CROSS JOIN keeps the FTS index as the outer loop, walking matches newest first.
        join = " CROSS JOIN search_doc d ON d.record_id = search_fts.rowid"
        where += " AND d.status = 'archived'"
    if visible_record_ids is not None:
        # The unary + keeps SQLite from turning the list into one FTS lookup per listed id.
        where += " AND +search_fts.rowid IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(sorted(visible_record_ids)))
    if bm25:
        sql = (f"SELECT id FROM (SELECT search_fts.rowid AS id, bm25(search_fts, {SUBJECT_WEIGHT}, 1.0) AS score "
               f"FROM search_fts{join} WHERE search_fts MATCH ?{where} "
               f"ORDER BY search_fts.rowid DESC LIMIT {RANK_WINDOW}) ORDER BY score, id DESC LIMIT ?")
        return sql, params
    # No bm25 for phrases: FTS5 counts every record containing a phrase to weigh it, which
    # made common 3- and 4-character words cost 30-50 ms; the caller ranks the window's text.
    sql = (f"SELECT search_fts.rowid FROM search_fts{join} WHERE search_fts MATCH ?{where} "
           f"ORDER BY search_fts.rowid DESC LIMIT ?")
    return sql, params


def _pg_query(phrases: list[str], include_open: bool,
              visible_record_ids: set[int] | None) -> tuple[str, list[object]]:
    # The tsquery is written out (twice) rather than computed in a CTE: as a constant the
    # planner sees its selectivity and walks the primary key backwards for a common term
    # (stopping after RANK_WINDOW rows) but uses the GIN index for a rare one.
    tsquery = "(" + " && ".join(["phraseto_tsquery('simple', ?)"] * len(phrases)) + ")"
    where = ""
    filters: list[object] = []
    if not include_open:
        where += " AND status = 'archived'"
    if visible_record_ids is not None:
        where += " AND record_id = ANY(?)"
        filters.append(sorted(visible_record_ids))
    # ts_rank (~10 µs a row) runs on the window only: the window's ids come back as an array,
    # which also makes the ranking pass fetch them by primary key instead of a hash join
    # over the whole table. Normalisation 1 divides by 1 + log(length), so long minutes do
    # not win by size alone.
    sql = (f"SELECT record_id FROM search_doc WHERE record_id = ANY(ARRAY("
           f"SELECT record_id FROM search_doc WHERE tsv @@ {tsquery}{where} "
           f"ORDER BY record_id DESC LIMIT {RANK_WINDOW})) "
           f"ORDER BY ts_rank({_PG_WEIGHTS}, tsv, {tsquery}, 1) DESC, record_id DESC LIMIT ?")
    return sql, [*phrases, *filters, *phrases]


def _sql(db: Database, sql: str) -> str:
    """Write statements with `?` and run them with the database's placeholder."""
    return sql.replace("?", db.param)


# --------------------------------------------------------------------------- snippets

def _match_pattern(words: list[str]) -> re.Pattern[str]:
    """A regex over folded text (see ``_fold``) that finds what the index matched for these words.

    A word's units (CJK runs, Latin/digit words) must follow each other with only separators
    in between, as the phrase query demands. At the edges, a Latin unit must not continue into
    more letters (the index matches whole words) and a lone CJK character must stand alone
    (it is a unigram token only there); a longer CJK run may sit inside a longer run.
    """
    alternatives: list[tuple[int, str]] = []
    for word in words:
        folded = _fold(word)
        units = [(unit, i % 2 == 1) for i, piece in enumerate(_CJK_RUN.split(folded))
                 for unit in ([piece] if i % 2 else _WORD.findall(piece))]
        if not units:
            continue
        regex = re.escape(units[0][0])
        for (unit, cjk), (_, previous_cjk) in zip(units[1:], units):
            # Two Latin words need a separator between them, or they would be one word.
            regex += (r"[\W_]*" if cjk or previous_cjk else r"[\W_]+") + re.escape(unit)
        before, after = _edge_guard(*units[0]), _edge_guard(*units[-1])
        regex = (f"(?<!{before})" if before else "") + regex + (f"(?!{after})" if after else "")
        alternatives.append((len(folded), regex))
    # Longest first, so where two words start at the same place the longer one is marked.
    return re.compile("|".join(regex for _, regex in sorted(alternatives, key=lambda a: -a[0])))


def _edge_guard(unit: str, cjk: bool) -> str:
    """What a unit at a word's edge must not touch, as a one-character regex ('' = anything)."""
    if not cjk:
        return _NON_CJK_WORD_CHAR
    return f"[{_CJK_CHARS}]" if len(unit) == 1 else ""


def _snippet(text: str, pattern: re.Pattern[str]) -> str:
    """~SNIPPET_CHARS of ``text`` around its first match, every match in that window in 【】."""
    spans: list[tuple[int, int]] = []
    window_start, window_end = 0, SNIPPET_CHARS
    for start, end in _match_spans(text, pattern):
        if not spans:
            window_start = max(0, start - SNIPPET_CHARS // 3)
            window_end = max(window_start + SNIPPET_CHARS, end)
        elif end > window_end:
            break
        spans.append((start, end))
    # No span at all happens when the index matched across a separator the tokenizer drops
    # (a phrase running from one section into the next) or the text holds decomposed accents
    # that only fold alike as a whole: show the beginning, unmarked.
    pieces = ["…"] if window_start > 0 else []
    cursor = window_start
    for start, end in spans:
        pieces += [text[cursor:start], "【", text[start:end], "】"]
        cursor = end
    pieces.append(text[cursor:window_end])
    if window_end < len(text):
        pieces.append("…")
    return _WHITESPACE.sub(" ", "".join(pieces)).strip()


def _match_spans(text: str, pattern: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` (original positions) whose folded form the pattern matches, in order.

    Folding the whole text at once is fast, and when its length is unchanged (nearly always)
    positions carry over; each span is checked to fold to exactly what matched. Otherwise the
    text is folded character by character to map folded positions back to original ones."""
    folded = _fold(text)
    resume = 0
    if len(folded) == len(text):
        for m in pattern.finditer(folded):
            start, end = m.span()
            if _fold(text[start:end]) != m.group():
                break
            resume = end
            yield start, end
        else:
            return
    starts: list[int] = []  # original position of each folded character
    pieces: list[str] = []
    for i, char in enumerate(text):
        piece = _fold(char)
        pieces.append(piece)
        starts.extend([i] * len(piece))
    starts.append(len(text))  # where a match resuming at the very end starts
    for m in pattern.finditer("".join(pieces), bisect_left(starts, resume)):
        yield starts[m.start()], starts[m.end() - 1] + 1


def _fold(text: str) -> str:
    """NFKC, then case folding: the normalisation ``tokenize`` applies before splitting.

    Full-width punctuation is in nearly every Chinese sentence and sends NFKC down its slow
    path (~100 µs per 500 characters instead of ~3). Replacing the common marks first with
    exactly what NFKC turns them into leaves the result unchanged."""
    for wide, narrow in _FULL_WIDTH_PUNCTUATION:
        text = text.replace(wide, narrow)
    return unicodedata.normalize("NFKC", text).casefold()
