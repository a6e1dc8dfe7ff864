"""The SMTP spool: where a mail is made durable before the client hears 250.

Writing a file and fsync-ing it (and its folder) takes well under a millisecond here and
needs no database lock, so intake never waits for the processor's transaction. The
processor moves spooled mails into the database in batches and removes the files after the
commit. A crash between the two leaves a file whose mail is already in the database: its
dedupe key makes the second import a no-op.

File format: one JSON line with the envelope, then the raw message bytes.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class SpooledMail:
    queue_id: str
    raw: bytes
    envelope_from: str | None
    envelope_to: list[str]
    received_at: datetime


class Spool:
    def __init__(self, folder: Path):
        self.new = folder / "new"
        self.tmp = folder / "tmp"
        self.new.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def write(self, raw: bytes, envelope_from: str | None, envelope_to: list[str], received_at: datetime) -> str:
        """Store durably and return the queue id; raises OSError when that is not possible."""
        queue_id = f"{time.time_ns():x}{uuid.uuid4().hex[:8]}".upper()
        envelope = json.dumps({"from": envelope_from, "to": envelope_to, "at": received_at.isoformat()})
        tmp_path = self.tmp / queue_id
        with open(tmp_path, "wb") as fh:
            fh.write(envelope.encode() + b"\n" + raw)
            fh.flush()
            os.fsync(fh.fileno())
        # Appear complete or not at all (maildir's tmp → new), and make the rename durable.
        os.rename(tmp_path, self.new / queue_id)
        dir_fd = os.open(self.new, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return queue_id

    def read(self, queue_id: str) -> SpooledMail:
        data = (self.new / queue_id).read_bytes()
        head, _, raw = data.partition(b"\n")
        envelope = json.loads(head)
        return SpooledMail(queue_id, raw, envelope["from"], envelope["to"], datetime.fromisoformat(envelope["at"]))

    def remove(self, queue_ids: list[str]) -> None:
        for queue_id in queue_ids:
            (self.new / queue_id).unlink(missing_ok=True)

    def pending(self) -> list[str]:
        """Queue ids waiting to be imported, oldest first (ids sort by time)."""
        return sorted(p.name for p in self.new.iterdir())
