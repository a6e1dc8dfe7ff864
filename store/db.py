"""Database connection, schema versioning, and the unit of work.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed row survives power loss,
which is what lets the SMTP server answer 250 right after the commit. Write transactions
start ``IMMEDIATE`` so two writers queue on the lock instead of failing half-way.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from typing import Callable

from peewee import Database, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import connect
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
from playhouse.migrate import migrate as migrate_schema

from store.models import MODELS, Milestone, SchemaVersion

# Bump with every change to the models, and add the step that gets an older database there.
SCHEMA_VERSION = 3


def _to_v2(db: Database) -> None:
    """Replies drive the work and the clock keeps time: result, retrospective, archive,
    sign-off, meetings, action items, progress rows, disputes, generated attachments, the
    search backlog, reminder chains, digest preferences."""
    from store.models import (ActionItem, DigestPreference, Dispute, ImapState, Meeting, OutboundMessage,
                              Participant, ProgressRow, Record, SearchPending)

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


MIGRATIONS: dict[int, Callable[[Database], None]] = {2: _to_v2, 3: _to_v3}  # version → step from the one before

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
    with db.atomic():
        if not SchemaVersion.table_exists():
            # A new database gets today's schema directly and is stamped with its version.
            db.create_tables(MODELS)
            SchemaVersion.create(version=SCHEMA_VERSION)
            return
        current = SchemaVersion.select().get().version
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](db)
        SchemaVersion.update(version=SCHEMA_VERSION).execute()


def is_postgres(db: Database) -> bool:
    return isinstance(db, PostgresqlDatabase)
