#!/usr/bin/env python3
"""Peak memory of processing one request that carries a large attachment (issue 9: a 50 MB
attachment took 839 MB of RSS).

    .venv/bin/python bench/attachment_memory.py [--mb 50]

Each measurement runs in a fresh interpreter: a request mail (bench/ingest.py's) with a PDF
of --mb megabytes attached (base64, as mail clients send it) is spooled, imported and
processed as the processor child does, on SQLite in a temporary directory. The baseline is
the same request without the attachment, measured in the same run; the result is the peak
RSS above that baseline, as a multiple of the attachment's size (the mail itself is 1.37
times that size once encoded, and the database keeps the raw mail).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from ingest import DOMAIN, RCPT, SENDER, build_messages  # noqa: E402


def request_with_attachment(megabytes: int) -> bytes:
    plain = build_messages(1, "attach")[0]
    if not megabytes:
        return plain
    headers, _, body = plain.partition(b"\r\n\r\n")
    kept = b"\r\n".join(line for line in headers.split(b"\r\n")
                        if not line.lower().startswith((b"content-type", b"content-transfer-encoding",
                                                        b"mime-version")))
    text_part = message_from_bytes(plain)
    payload = os.urandom(megabytes << 20)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return b"\r\n".join([
        kept, b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="liuhen-bench"', b"",
        b"--liuhen-bench", b"Content-Type: " + text_part["Content-Type"].encode(),
        b"Content-Transfer-Encoding: " + text_part["Content-Transfer-Encoding"].encode(), b"", body,
        b"--liuhen-bench", b"Content-Type: application/pdf",
        b'Content-Disposition: attachment; filename="spec.pdf"', b"Content-Transfer-Encoding: base64", b"",
        encoded + b"--liuhen-bench--", b""])


def _config(workdir: Path, max_bytes: int) -> Path:
    config = workdir / "liuhen.toml"
    config.write_text(f'[gateway]\ndomain = "{DOMAIN}"\ndata_dir = "{workdir}"\nsecret = "bench"\n'
                      f"[smtp]\nmax_message_bytes = {max_bytes}\n"
                      f'[database]\nurl = "sqlite:///{workdir / "liuhen.db"}"\n', encoding="utf-8")
    return config


def process_spool(workdir: Path) -> dict[str, object]:
    """What the processor child does with the spooled mail: import it, process it."""
    from config.settings import load_settings
    from gateway.bootstrap import build_context
    from gateway.intake import import_spooled
    from gateway.pipeline import process_batch
    from gateway.spool import Spool

    ctx = build_context(load_settings(workdir / "liuhen.toml", env={}))
    spool = Spool(workdir / "spool")
    files = spool.pending()
    imported = [s.row for s in import_spooled(ctx.db, spool, files) if s.row is not None]
    spool.remove(files)
    states = process_batch(ctx, [row.id for row in imported], imported)
    ctx.db.close()
    stored = sorted(p.stat().st_size for p in (workdir / "attachments").rglob("*") if p.is_file()) \
        if (workdir / "attachments").exists() else []
    return {"states": sorted(set(states.values())), "attachments": stored,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(megabytes: int) -> dict:
    """The mail is spooled here, as SMTP intake would, and processed in a fresh interpreter
    whose peak memory is then only the processor's."""
    from gateway.spool import Spool, SpooledMail, new_queue_id

    with tempfile.TemporaryDirectory(prefix="liuhen-attach-") as folder:
        workdir = Path(folder)
        raw = request_with_attachment(megabytes)
        _config(workdir, len(raw) + 4096)
        Spool(workdir / "spool").write_file([SpooledMail(new_queue_id(), raw, SENDER, [RCPT], datetime.now(UTC))])
        out = subprocess.run([sys.executable, __file__, "--child", folder], check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=50, help="attachment size in MiB (default 50)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(process_spool(args.child)))
        return
    baseline = measure(0)
    loaded = measure(args.mb)
    assert loaded["states"] == ["processed"] and loaded["attachments"] == [args.mb << 20], loaded
    extra = loaded["peak_rss_mb"] - baseline["peak_rss_mb"]
    print(f"request alone:            peak RSS {baseline['peak_rss_mb']:.0f} MB")
    print(f"with a {args.mb} MB attachment: peak RSS {loaded['peak_rss_mb']:.0f} MB "
          f"(+{extra:.0f} MB = {extra / args.mb:.1f} × the attachment)")


if __name__ == "__main__":
    main()
