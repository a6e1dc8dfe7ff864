"""Database connection, schema versioning, and the unit of work.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed row survives power loss,
which is what lets the SMTP server answer 250 right after the commit. Write transactions
start ``IMMEDIATE`` so two writers queue on the lock instead of failing half-way.

The database may go away under a running gateway (PostgreSQL restarted, SQLite locked or
its disk failing). Each loop that uses it runs its rounds through ``DatabaseHealth.attempt``,
which drops the dead connection so that the next round opens a new one; the loop then waits
``retry_delay()`` and tries again, and the log says once that the database went away and
once that it is back.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, ParamSpec, TypeVar
from urllib.parse import urlparse

from peewee import (
    Database,
    InterfaceError,
    OperationalError,
    PeeweeException,
    PostgresqlDatabase,
    SqliteDatabase,
    Value,
)
from playhouse.db_url import connect
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
from playhouse.migrate import migrate as migrate_schema

from store.models import MODELS, Milestone, SchemaVersion

log = logging.getLogger(__name__)

# Bump with every change to the models, and add the step that gets an older database there.
SCHEMA_VERSION = 8


def _to_v2(db: Database) -> None:
    """Replies drive the work and the clock keeps time: result, retrospective, archive,
    sign-off, meetings, action items, progress rows, disputes, generated attachments, the
    search backlog, reminder chains, digest preferences."""
    from store.models import (
        ActionItem,
        DigestPreference,
        Dispute,
        ImapState,
        Meeting,
        OutboundMessage,
        Participant,
        ProgressRow,
        Record,
        SearchPending,
    )

    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    migrate_schema(
        migrator.add_column("record", "result", Record.result),
        migrator.add_column("record", "retro", Record.retro),
        migrator.add_column("record", "archive_category", Record.archive_category),
        migrator.add_column("record", "archive_key", Record.archive_key),
        migrator.add_column("record", "archived_at", Record.archived_at),
        migrator.add_column("participant", "signed_at", Participant.signed_at),
        migrator.add_column("milestone", "delayed_from", Milestone.delayed_from),
        migrator.add_column("outboundmessage", "attachments", OutboundMessage.attachments),
        migrator.add_column("participant", "chain_due_at", Participant.chain_due_at),
        migrator.add_column("participant", "next_reminder_at", Participant.next_reminder_at),  # indexed too
        migrator.add_column("milestone", "next_reminder_at", Milestone.next_reminder_at),
        migrator.add_column("record", "next_reminder_at", Record.next_reminder_at),
    )
    db.create_tables([Meeting, ActionItem, ProgressRow, Dispute, SearchPending, DigestPreference, ImapState])


def _to_v3(db: Database) -> None:
    """Trust and faults: a failed mail's retries, each mail's authentication verdict, and
    delivery leases per node."""
    from store.models import InboundMessage, OutboundMessage

    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    migrate_schema(
        migrator.add_column("inboundmessage", "attempts", InboundMessage.attempts),
        migrator.add_column("inboundmessage", "next_attempt_at", InboundMessage.next_attempt_at),
        migrator.add_column("inboundmessage", "auth", InboundMessage.auth),
        migrator.add_column("outboundmessage", "claimed_by", OutboundMessage.claimed_by),
        migrator.add_column("outboundmessage", "lease_until", OutboundMessage.lease_until),
    )


def _to_v4(db: Database) -> None:
    """Loops close: a milestone can be marked done; a dispute is due and reminded; a progress
    row is internal unless marked for the client."""
    from store.models import Dispute, Milestone, ProgressRow

    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    wanted = (("milestone", "done_at", Milestone.done_at), ("dispute", "due_at", Dispute.due_at),
              ("dispute", "next_reminder_at", Dispute.next_reminder_at),
              ("progressrow", "client_visible", ProgressRow.client_visible))
    # The dispute table is created whole (current columns) when an older schema lacked it.
    migrate_schema(*[migrator.add_column(table, name, column) for table, name, column in wanted
                     if name not in {c.name for c in db.get_columns(table)}])


def _to_v5(db: Database) -> None:
    """The web console: sign-ins by mail, sessions, client links; and the indexes that find
    one person's or one department's work."""
    from store.models import ClientLink, SignIn, WebSession

    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    wanted = (("participant", ("email",)), ("participant", ("department",)), ("milestone", ("owner_email",)),
              ("actionitem", ("owner_email",)), ("dispute", ("lead_email",)), ("record", ("created_at",)),
              ("record", ("archived_at",)))
    have = {(table, tuple(index.columns)) for table in {t for t, _ in wanted} for index in db.get_indexes(table)}
    migrate_schema(*[migrator.add_index(table, columns) for table, columns in wanted if (table, columns) not in have])
    db.create_tables([SignIn, WebSession, ClientLink])


def _to_v6(db: Database) -> None:
    """A record's mails in are found by an index, not a scan of every stored mail (the
    record page read 100k rows, raw bytes and all, for them)."""
    if ("record_id",) not in {tuple(i.columns) for i in db.get_indexes("inboundmessage")}:
        migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
        migrate_schema(migrator.add_index("inboundmessage", ("record_id",)))


def _to_v7(db: Database) -> None:
    """Stored mails are claimed by the processor that takes them up, for a lease: two
    gateways on one database no longer both work on the same mails."""
    from store.models import InboundMessage

    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    have = {c.name for c in db.get_columns("inboundmessage")}
    migrate_schema(*[migrator.add_column("inboundmessage", name, field) for name, field in
                     (("claimed_by", InboundMessage.claimed_by), ("lease_until", InboundMessage.lease_until))
                     if name not in have])


def _to_v8(db: Database) -> None:
    """Meetings round-trip through calendars: a UID and SEQUENCE per meeting, cancelled
    meetings, and the attendees' answers."""
    from store.models import Meeting, MeetingAnswer

    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    have = {c.name for c in db.get_columns("meeting")}
    migrate_schema(*[migrator.add_column("meeting", name, field) for name, field in
                     (("uid", Meeting.uid), ("sequence", Meeting.sequence), ("cancelled_at", Meeting.cancelled_at))
                     if name not in have])
    # The invitations already sent had a random UID nobody kept: later changes get a new one.
    Meeting.update(uid=Value("liuhen-meeting-").concat(Meeting.id.cast("TEXT"))).where(Meeting.uid == "").execute()
    db.create_tables([MeetingAnswer])


# version → the step from the one before
MIGRATIONS: dict[int, Callable[[Database], None]] = {2: _to_v2, 3: _to_v3, 4: _to_v4, 5: _to_v5, 6: _to_v6,
                                                     7: _to_v7, 8: _to_v8}

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": 30_000,
}


def open_database(url: str) -> Database:
    """Connect, bind the models, and bring the schema to the current version."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db: Database = SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE",
                                      check_same_thread=False)
    elif urlparse(url).scheme in ("postgres", "postgresql"):
        db = connect(url)
    else:
        raise ValueError(f"unsupported database url {url!r} (use sqlite:/// or postgresql://)")
    db.bind(MODELS)
    migrate(db)
    return db


def migrate(db: Database) -> None:
    # SQLite adds a NOT NULL column by rebuilding the table, which fails on the rows of other
    # tables that refer to it while foreign keys are enforced: off during the migration, as
    # SQLite's documentation says (it cannot change inside a transaction), checked after it.
    sqlite = not is_postgres(db)
    if sqlite:
        db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        with db.atomic():
            if not SchemaVersion.table_exists():
                # A new database gets today's schema directly and is stamped with its version.
                db.create_tables(MODELS)
                SchemaVersion.create(version=SCHEMA_VERSION)
                return
            current = SchemaVersion.select().get().version
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](db)
            dangling = db.execute_sql("PRAGMA foreign_key_check").fetchall() if sqlite else []
            if dangling:
                log.warning("the database holds %d row(s) that refer to rows that do not exist", len(dangling))
            SchemaVersion.update(version=SCHEMA_VERSION).execute()
    finally:
        if sqlite:
            db.execute_sql("PRAGMA foreign_keys = ON")


def is_postgres(db: Database) -> bool:
    return isinstance(db, PostgresqlDatabase)


# What peewee raises for a database that cannot be reached or used right now (the driver's
# errors wrapped): connection refused or lost, "database is locked", disk I/O errors. Other
# errors (IntegrityError, a bug) are about one piece of work, not an outage.
DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0

_P = ParamSpec("_P")
_T = TypeVar("_T")


def drop_connection(db: Database) -> None:
    """Forget this thread's connection (peewee keeps one per thread) so that the next
    statement opens a new one. A connection that died inside a transaction cannot be closed
    the polite way; it is discarded."""
    try:
        db.close()
    except PeeweeException:
        db.dispose()


@contextmanager
def node_lock(db: Database, name: str) -> Iterator[bool]:
    """Whether this node may do `name` now (the reminder sweep, polling one IMAP mailbox)
    while several gateways share one PostgreSQL: a session-level advisory lock, tried, not
    waited for, and given back at the end (or by the server, should the connection die).
    SQLite has one node by construction (`single_node`): always True."""
    if not is_postgres(db):
        yield True
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    got = bool(db.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])
    try:
        yield got
    finally:
        if got:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))


def single_node(db: Database) -> IO[str] | None:
    """For SQLite: hold a lock on the database file's side for as long as `serve` runs, so
    that a second `serve` on the same file is refused with a clear message instead of
    sharing it (SQLite serves one node; several gateways share a PostgreSQL). The caller
    keeps the returned file open; None for PostgreSQL."""
    if is_postgres(db):
        return None
    path = Path(str(db.database) + ".serve-lock")
    held = path.open("a")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        raise RuntimeError(f"another liuhen serve is using {db.database}; an SQLite database serves one gateway "
                           "(for several, share a PostgreSQL database)") from None
    return held


class DatabaseHealth:
    """Whether this process can use its database, as the loops using it find out — shared
    by them, so that an outage is logged once however many loops run into it."""

    def __init__(self, db: Database):
        self.db = db
        self._lock = threading.Lock()
        self._down_since: float | None = None  # monotonic
        self.unavailable_since: datetime | None = None
        self.error = ""
        # Set in a child process: its outages are told to the parent (the error, or None when
        # the database is back), which logs them once with its own, instead of logged here.
        self.tell: Callable[[str | None], None] | None = None

    @property
    def available(self) -> bool:
        return self._down_since is None

    def attempt(self, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run one round of a loop's work in this thread. On a database error the connection
        is dropped and the error raised, for the loop to wait `retry_delay()`; while the
        database is known to be fine, a lost connection (this thread's one died in a restart
        it did not see) is replaced and the round done again at once."""
        try:
            result = work(*args, **kwargs)
        except DATABASE_ERRORS as exc:
            drop_connection(self.db)
            if not self.available:
                raise
            first = exc
        else:
            self.came_back()
            return result
        try:
            result = work(*args, **kwargs)
        except DATABASE_ERRORS as exc:
            drop_connection(self.db)
            self.went_down(exc)
            raise
        log.info("the database connection was lost (%s); reconnected", _one_line(first))
        return result

    def went_down(self, error: BaseException | str) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
            self.unavailable_since = datetime.now(UTC)
            self.error = _one_line(error)
        if self.tell is not None:
            self.tell(self.error)
            return
        log.warning("database unavailable (%s); mail waits in the spool and the queues, retrying until "
                    "it is back", self.error)

    def came_back(self) -> None:
        if self._down_since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._down_since is None:
                return
            seconds = time.monotonic() - self._down_since
            self._down_since, self.unavailable_since, self.error = None, None, ""
        if self.tell is not None:
            self.tell(None)
            return
        log.warning("database available again after %.0f s", seconds)

    def retry_delay(self) -> float:
        """How long a loop waits before its next try: half the outage so far, between 0.5 s
        and 30 s — backoff that needs no count per loop."""
        down_since = self._down_since
        if down_since is None:
            return RETRY_MIN_SECONDS
        return min(RETRY_MAX_SECONDS, max(RETRY_MIN_SECONDS, (time.monotonic() - down_since) / 2))


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split()) or type(error).__name__
