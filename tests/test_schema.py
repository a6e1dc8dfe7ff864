"""Schema versioning: a database made by an older liuhen is brought up to date, data kept."""

from __future__ import annotations

from conftest import NOW
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from store.db import SCHEMA_VERSION, is_postgres, open_database
from store.models import InboundMessage, Meeting, Record, SchemaVersion

V2_COLUMNS = {"record": ["result", "retro", "archive_category", "archive_key", "archived_at", "next_reminder_at"],
              "participant": ["signed_at", "chain_due_at", "next_reminder_at"],
              "milestone": ["delayed_from", "next_reminder_at"], "outboundmessage": ["attachments"]}
V3_COLUMNS = {"inboundmessage": ["attempts", "next_attempt_at", "auth", "claimed_by", "lease_until"],
              "outboundmessage": ["claimed_by", "lease_until"]}
V4_COLUMNS = {"milestone": ["done_at"]}  # and dispute's due_at, next_reminder_at: the table is new in v2
V4_TABLE_COLUMNS = {"dispute": ["due_at", "next_reminder_at"], "progressrow": ["client_visible"]}
V5_INDEXES = (("participant", "email"), ("participant", "department"), ("milestone", "owner_email"),
              ("actionitem", "owner_email"), ("dispute", "lead_email"), ("record", "created_at"),
              ("record", "archived_at"))
V5_TABLES = ("signin", "websession", "clientlink")
V6_INDEXES = (("inboundmessage", "record_id"),)


def _has_v5(db) -> None:
    for table, column in (*V5_INDEXES, *V6_INDEXES):
        assert (column,) in {tuple(i.columns) for i in db.get_indexes(table)}, (table, column)
    assert set(V5_TABLES) <= set(db.get_tables())


def test_a_version_1_database_is_migrated_and_keeps_its_data(db_url):
    db = open_database(db_url)
    InboundMessage.create(received_at=NOW, source="ingest", dedupe_key="k", raw=b"x", size=1)
    # Turn it back into what liuhen 0.1 (schema 1) created.
    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    migrate(*[migrator.drop_index(table, f"{table}_next_reminder_at") for table in ("record", "participant", "milestone")])
    migrate(migrator.drop_index("inboundmessage", "inboundmessage_next_attempt_at"))
    migrate(*[migrator.drop_index(table, f"{table}_{column}") for table, column in (*V5_INDEXES, *V6_INDEXES)
              if table != "dispute"])
    migrate(*[migrator.drop_column(table, column) for columns_by_table in (V2_COLUMNS, V3_COLUMNS, V4_COLUMNS)
              for table, columns in columns_by_table.items() for column in columns])
    for table in ("meetinganswer", "meeting", "actionitem", "progressrow", "dispute", "searchpending", "digestpreference", "imapstate",
                  *V5_TABLES):
        db.execute_sql(f'DROP TABLE "{table}"')
    SchemaVersion.update(version=1).execute()
    db.close()

    db = open_database(db_url)
    assert SchemaVersion.get().version == SCHEMA_VERSION == 8
    for table, columns in (*V2_COLUMNS.items(), *V3_COLUMNS.items(), *V4_COLUMNS.items(), *V4_TABLE_COLUMNS.items()):
        assert {c.name for c in db.get_columns(table)} >= set(columns), table
    assert Meeting.table_exists()
    _has_v5(db)
    assert InboundMessage.get().dedupe_key == "k"
    assert InboundMessage.get().attempts == 0
    assert Record.select().count() == 0
    db.close()


def test_a_version_3_database_gets_the_dispute_deadline_columns(db_url):
    db = open_database(db_url)
    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    migrate(migrator.drop_index("dispute", "dispute_next_reminder_at"))
    migrate(*[migrator.drop_column(t, c) for t, columns in V4_TABLE_COLUMNS.items() for c in columns],
            *[migrator.drop_column(t, c) for t, columns in V4_COLUMNS.items() for c in columns])
    SchemaVersion.update(version=3).execute()
    db.close()
    db = open_database(db_url)
    assert SchemaVersion.get().version == SCHEMA_VERSION
    assert {c.name for c in db.get_columns("dispute")} >= {"due_at", "next_reminder_at"}
    assert "done_at" in {c.name for c in db.get_columns("milestone")}
    db.close()


def test_a_version_4_database_gets_the_console_tables_and_the_indexes_that_find_ones_work(db_url):
    db = open_database(db_url)
    Record.create(ref="PRJ-2026-0001", form="project", subject="s", priority="中", initiator_email="a@b",
                  initiator_name="a", fields={}, thread_id="<t@x>", created_at=NOW, updated_at=NOW)
    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    migrate(*[migrator.drop_index(table, f"{table}_{column}") for table, column in (*V5_INDEXES, *V6_INDEXES)])
    for table in V5_TABLES:
        db.execute_sql(f'DROP TABLE "{table}"')
    SchemaVersion.update(version=4).execute()
    db.close()
    db = open_database(db_url)
    assert SchemaVersion.get().version == SCHEMA_VERSION
    _has_v5(db)
    assert Record.get().ref == "PRJ-2026-0001"
    db.close()


def test_a_database_full_of_records_and_their_mails_is_migrated(db_url):
    # A NOT NULL column is added to SQLite by rebuilding the table; with the records and
    # attachments that refer to the mails, that failed on foreign keys (seen at 100k records).
    from gateway.intake import store_raw
    from store.models import Attachment

    db = open_database(db_url)
    stored = store_raw(db, b"Subject: x\r\n\r\nbody\r\n", source="ingest", envelope_from="a@b", envelope_to=["c@d"],
                       now=NOW)
    Record.create(ref="PRJ-2026-0001", form="project", subject="s", priority="中", initiator_email="a@b",
                  initiator_name="a", fields={}, thread_id="<t@x>", created_at=NOW, updated_at=NOW,
                  source_inbound=stored.inbound_id)
    Attachment.create(inbound=stored.inbound_id, record_id=1, filename="a.pdf", content_type="application/pdf",
                      size=1, sha256="0" * 64)
    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    if not is_postgres(db):
        db.execute_sql("PRAGMA foreign_keys = OFF")  # (to turn it back into schema 6)
    migrate(migrator.drop_column("inboundmessage", "claimed_by"), migrator.drop_column("inboundmessage", "lease_until"))
    SchemaVersion.update(version=6).execute()
    db.close()
    db = open_database(db_url)
    assert SchemaVersion.get().version == SCHEMA_VERSION
    assert {"claimed_by", "lease_until"} <= {c.name for c in db.get_columns("inboundmessage")}
    assert Record.get().source_inbound_id == stored.inbound_id and InboundMessage.get().claimed_by == ""
    db.close()


def test_a_version_7_database_gets_meeting_uids_and_answers(db_url):
    from store.models import MeetingAnswer

    db = open_database(db_url)
    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    db.execute_sql('DROP TABLE "meetinganswer"')
    migrate(*[migrator.drop_column("meeting", column) for column in ("uid", "sequence", "cancelled_at")])
    SchemaVersion.update(version=7).execute()
    db.close()

    db = open_database(db_url)
    assert {"uid", "sequence", "cancelled_at"} <= {c.name for c in db.get_columns("meeting")}
    assert MeetingAnswer.table_exists() and SchemaVersion.get().version == 8
    db.close()
