#!/usr/bin/env python3
"""Processing cost per request, without SMTP: what the processor child spends on one mail.

    .venv/bin/python bench/process.py [-n 2000] [--repeat 4]

Spools N of bench/ingest.py's 4 KB Chinese request mails, then imports and processes them in
batches of 16 exactly as the processor does (import → parse → validate → record → outbox),
on SQLite (WAL, synchronous=FULL) in a temporary directory. Prints the CPU time per request
(the best of --repeat fresh runs), the same as a multiple of a fixed reference workload timed
beside each run (the stdlib parsing the same mails: the machine is shared and its speed drifts
by a third, the multiple much less), and how many bytes a request leaves in the database.
This is the serial part of intake: bench/ingest.py's end-to-end rate cannot beat one core
divided by it.
"""

from __future__ import annotations

import argparse
import email
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.policy import compat32
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from ingest import DOMAIN, RCPT, SENDER, build_messages  # noqa: E402

from config.settings import load_settings  # noqa: E402
from gateway.bootstrap import Context, build_context  # noqa: E402
from gateway.intake import import_spooled  # noqa: E402
from gateway.pipeline import process_batch  # noqa: E402
from gateway.processor import BATCH  # noqa: E402
from gateway.spool import Spool, SpooledMail, new_queue_id  # noqa: E402

REFERENCE_ROUNDS = 5


def reference_ms(messages: list[bytes]) -> float:
    """CPU ms per mail for the stdlib to parse the mails: a yardstick for this machine's speed now."""
    started = time.process_time()
    for _ in range(REFERENCE_ROUNDS):  # long enough (about a second) not to be a single hiccup
        for raw in messages:
            email.message_from_bytes(raw, policy=compat32)
    return 1000 * (time.process_time() - started) / len(messages) / REFERENCE_ROUNDS


def spooled(workdir: Path, messages: list[bytes]) -> Spool:
    """The mails in a spool under `workdir`, one file per mail, as intake writes them under light load."""
    spool = Spool(workdir / "spool")
    now = datetime.now(UTC)
    for raw in messages:
        spool.write_file([SpooledMail(new_queue_id(), raw, SENDER, [RCPT], now)])
    return spool


def process_spooled(ctx: Context, spool: Spool) -> set[str]:
    """Import and process the spool in batches of BATCH, as the processor does; the final states."""
    files = spool.pending()
    states: set[str] = set()
    for i in range(0, len(files), BATCH):
        batch = files[i:i + BATCH]
        imported = [s.row for s in import_spooled(ctx.db, spool, batch) if s.row is not None]
        spool.remove(batch)
        states |= set(process_batch(ctx, [row.id for row in imported], imported).values())
    return states


def one_run(messages: list[bytes]) -> tuple[float, float, set[str]]:
    """(CPU ms per request, database bytes per request, final states) for one fresh database."""
    workdir = Path(tempfile.mkdtemp(prefix="liuhen-process-"))
    try:
        config = workdir / "liuhen.toml"
        config.write_text(f'[gateway]\ndomain = "{DOMAIN}"\ndata_dir = "{workdir}"\nsecret = "bench"\n'
                          f'[database]\nurl = "sqlite:///{workdir / "liuhen.db"}"\n', encoding="utf-8")
        ctx = build_context(load_settings(config, env={}))
        spool = spooled(workdir, messages)
        started = time.process_time()
        states = process_spooled(ctx, spool)
        cpu = time.process_time() - started
        ctx.db.close()
        db = sqlite3.connect(workdir / "liuhen.db")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        size = (workdir / "liuhen.db").stat().st_size
        return 1000 * cpu / len(messages), size / len(messages), states
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="requests per run (default 2000)")
    p.add_argument("--repeat", type=int, default=4, help="fresh runs; the best is reported (default 4)")
    args = p.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        p.error("-n and --repeat must be positive")
    messages = build_messages(args.n, "proc")
    runs, multiples = [], []
    for _ in range(args.repeat):
        before = reference_ms(messages)
        runs.append(one_run(messages))
        multiples.append(runs[-1][0] / ((before + reference_ms(messages)) / 2))
    states = set().union(*(s for _, _, s in runs))
    print(f"processing {args.n} requests, batches of {BATCH}, SQLite WAL synchronous=FULL; {args.repeat} runs")
    print(f"CPU per request     : best {min(c for c, _, _ in runs):.3f} ms   "
          f"(runs: {', '.join(f'{c:.3f}' for c, _, _ in runs)})")
    print(f"× stdlib parse      : best {min(multiples):.1f}   (runs: {', '.join(f'{m:.1f}' for m in multiples)})")
    print(f"database per request: {runs[0][1] / 1024:.1f} KB")
    print(f"final states        : {sorted(states)}")
    return 0 if states == {"processed"} else 1


if __name__ == "__main__":
    sys.exit(main())
