#!/usr/bin/env python3
"""Forms from attachments: requests whose 沟通单 is an attached .docx or .xlsx, beside the same
requests with the form typed into the body, processed in the same run.

    .venv/bin/python bench/attachments.py [-n 300] [--rounds 3]

Three kinds of request mail, the same form in each (bench/ingest.py's project request, its
dates a month ahead, 4 KB of background text):
  body   the form as `标签：值` lines in the text (what bench/process.py measures)
  docx   a short text ("沟通单见附件") and the form as a two-column Word table (python-docx)
  xlsx   the same, the form as a key/value Excel sheet with the deadline a real date cell,
         the participants' label merged over two rows (openpyxl)
Each round processes -n mails of each kind, in turn, each kind into a fresh SQLite database
(WAL, synchronous=FULL) in a temporary directory, spooled and then imported and processed in
batches of 16 exactly as the processor does (import → parse → read the attachment → validate →
record → outbox, the file kept with the record and queued with the requests). Printed per kind:
forms/s (wall clock, first batch → last) and CPU ms per form, the median of the rounds, and
the ratio of each file kind to the body in the same round (the machine is shared: ratios drift
less than rates). It checks that every mail became a record and that the records of the three
kinds hold the same fields.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from ingest import DOMAIN, PROSE, RCPT, SENDER  # noqa: E402
from process import process_spooled, spooled  # noqa: E402

from config.settings import load_settings  # noqa: E402
from gateway.bootstrap import build_context  # noqa: E402
from gateway.processor import BATCH  # noqa: E402
from store.models import Record  # noqa: E402

KINDS = ("body", "docx", "xlsx")


def form_rows(i: int) -> list[tuple[str, str | datetime]]:
    ahead = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=30)
    due, review = ahead.replace(hour=18), (ahead - timedelta(days=10)).replace(hour=14)
    background = "".join(PROSE[(i + k) % len(PROSE)] for k in range(8))
    return [("沟通主题", f"智能手表项目-硬件方案评审 #{i:06d}"), ("发起部门/人", "产品部/陈静"), ("优先级", "中"),
            ("期望完成时间", due), ("背景与目标", background),
            ("参与部门及职责", "研发部/王强 — 完成硬件方案评估\n市场部/赵磊 — 提供竞品价格"),
            ("关键节点与时间", f"方案评审 — {review:%Y-%m-%d %H:%M}")]


def _text(value: str | datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else value


def docx_form(rows: list[tuple[str, str | datetime]]) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("跨部门项目协作需求沟通单", level=1)
    table = document.add_table(rows=0, cols=2)
    for label, value in rows:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = label, _text(value)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_form(rows: list[tuple[str, str | datetime]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for label, value in rows:
        if label == "参与部门及职责":  # one line per row under a merged label, as offices do
            first, second = str(value).split("\n")
            sheet.append([label, first])
            sheet.append([None, second])
            sheet.merge_cells(start_row=sheet.max_row - 1, start_column=1, end_row=sheet.max_row, end_column=1)
        else:
            sheet.append([label, value])
            if isinstance(value, datetime):
                sheet.cell(sheet.max_row, 2).number_format = "yyyy-mm-dd hh:mm"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def request(kind: str, i: int) -> bytes:
    rows = form_rows(i)
    subject = str(rows[0][1])
    msg: MIMEBase
    if kind == "body":
        msg = MIMEText("\n".join(f"{label}：{_text(value)}" for label, value in rows) + "\n\n谢谢！\n陈静\n",
                       "plain", "utf-8")
    else:
        msg = MIMEMultipart()
        msg.attach(MIMEText("各位好，沟通单见附件。\n\n陈静", "plain", "utf-8"))
        data = docx_form(rows) if kind == "docx" else xlsx_form(rows)
        part = MIMEApplication(data, "octet-stream")
        part.add_header("Content-Disposition", "attachment", filename=f"沟通单-{i:06d}.{kind}")
        msg.attach(part)
    msg["From"] = f"=?utf-8?b?6ZmI6Z2Z?= <{SENDER}>"  # 陈静
    msg["To"] = RCPT
    msg["Subject"] = Header(subject, "utf-8")  # type: ignore[assignment]  # compat32 takes a Header
    msg["Message-ID"] = make_msgid(idstring=f"{kind}.{i}", domain="bench.client.example.cn")
    msg["Date"] = formatdate(localtime=True)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def one_run(messages: list[bytes]) -> tuple[float, float, set[str], dict[str, dict]]:
    """(forms/s, CPU ms per form, final states, record fields by subject) for a fresh database."""
    workdir = Path(tempfile.mkdtemp(prefix="liuhen-attachments-"))
    try:
        config = workdir / "liuhen.toml"
        config.write_text(f'[gateway]\ndomain = "{DOMAIN}"\ndata_dir = "{workdir}"\nsecret = "bench"\n'
                          f'[database]\nurl = "sqlite:///{workdir / "liuhen.db"}"\n', encoding="utf-8")
        ctx = build_context(load_settings(config, env={}))
        spool = spooled(workdir, messages)
        wall, cpu = time.perf_counter(), time.process_time()
        states = process_spooled(ctx, spool)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        fields = {r.subject: dict(r.fields) for r in Record.select()}
        ctx.db.close()
        return len(messages) / wall, 1000 * cpu / len(messages), states, fields
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=300, help="requests of each kind per round (default 300)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each kind once per round (default 3)")
    args = p.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        p.error("-n and --rounds must be positive")
    mails = {kind: [request(kind, i) for i in range(args.n)] for kind in KINDS}
    rates: dict[str, list[float]] = {k: [] for k in KINDS}
    cpus: dict[str, list[float]] = {k: [] for k in KINDS}
    ratios: dict[str, list[float]] = {k: [] for k in KINDS}
    problems: list[str] = []
    for _ in range(args.rounds):
        fields = {}
        for kind in KINDS:
            rate, cpu, states, fields[kind] = one_run(mails[kind])
            rates[kind].append(rate)
            cpus[kind].append(cpu)
            if states != {"processed"} or len(fields[kind]) != args.n:
                problems.append(f"{kind}: states {sorted(states)}, {len(fields[kind])} records of {args.n}")
        for kind in KINDS:
            ratios[kind].append(rates[kind][-1] / rates["body"][-1])
            if kind != "body" and fields[kind] != fields["body"]:
                differing = sum(fields[kind].get(s) != f for s, f in fields["body"].items())
                problems.append(f"{kind}: {differing} records' fields differ from the body form's")
    size = {kind: sum(map(len, mails[kind])) / args.n / 1024 for kind in KINDS}
    print(f"{args.n} requests of each kind per round, {args.rounds} rounds, batches of {BATCH}, SQLite WAL FULL")
    print(f"{'kind':6} {'mail KB':>8} {'forms/s':>9} {'CPU ms/form':>12} {'× body rate':>12}   (medians; rounds)")
    for kind in KINDS:
        print(f"{kind:6} {size[kind]:8.1f} {statistics.median(rates[kind]):9.1f} "
              f"{statistics.median(cpus[kind]):12.2f} {statistics.median(ratios[kind]):12.2f}   "
              f"({', '.join(f'{r:.0f}' for r in rates[kind])} forms/s)")
    for problem in problems:
        print(f"  !! {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
