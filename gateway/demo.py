"""`liuhen demo`: a scripted walkthrough in a temporary directory that prints every mail in
and out — a valid request, a request with mistakes, an out-of-office reply, a recipient's
reply — through a real SMTP connection to a gateway running on a loopback port."""

from __future__ import annotations

import email
import smtplib
import socket
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from email.header import Header, decode_header, make_header
from email.mime.text import MIMEText
from email.utils import formataddr, make_msgid
from pathlib import Path
from typing import cast

from config.settings import load_settings
from gateway.bootstrap import Context, build_context
from gateway.delivery import MaildirTransport
from gateway.outbox import deliver_due
from gateway.serve import GatewayThread
from store.models import InboundMessage, OutboundMessage

DOMAIN = "liuhen.localhost"

VALID = """沟通主题：智能手表项目-硬件方案评审
发起部门/人：产品部/陈静
优先级：高
期望完成时间：{due}
背景与目标：新款智能手表需在Q1量产，需确认硬件方案以锁定BOM成本
参与部门及职责：
研发部/王强 — 完成硬件方案评估
市场部/赵磊 — 提供竞品价格
关键节点与时间：
方案评审 — {review}
"""

MISTAKES = """沟通主题：请确认
优先级：特别急
期望完成时间：待定
参与部门及职责：
刘洋 — 竞品价格
"""


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="liuhen-demo-") as folder:
        ctx = _context(Path(folder))
        gateway = GatewayThread(ctx, transport=None).start()
        try:
            now = ctx.local_now()
            due = (now + timedelta(days=20)).strftime("%Y-%m-%d 18:00")
            review = (now + timedelta(days=10)).strftime("%Y-%m-%d 14:00")
            _step(ctx, "1. 陈静 sends a project request to project@", "陈静", "chen.jing@liuhen.localhost",
                  f"project@{DOMAIN}", "智能手表项目-硬件方案评审", VALID.format(due=due, review=review))
            _step(ctx, "2. 刘洋 sends a request with mistakes", "刘洋", "liu.yang@liuhen.localhost",
                  f"project@{DOMAIN}", "请确认", MISTAKES)
            _step(ctx, "3. An out-of-office answer arrives (never answered: no mail loops)", "赵磊",
                  "zhao.lei@liuhen.localhost", f"project@{DOMAIN}", "自动回复：我正在休假", "我正在休假。",
                  {"Auto-Submitted": "auto-replied"})
            request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                          (OutboundMessage.to_addr == "wang.qiang@liuhen.localhost"))
            _step(ctx, "4. 王强 replies to his personal reply address", "王强", "wang.qiang@liuhen.localhost",
                  request.headers["Reply-To"], "Re: " + request.subject, "收到，周五前给出评估。")
        finally:
            gateway.stop()
        print(f"\nEverything above is kept: `liuhen --config {folder}/liuhen.toml inbox list` would show it "
              "(the folder is removed now that the demo is over).")
    return 0


def _context(folder: Path) -> Context:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (folder / "liuhen.toml").write_text(f'[gateway]\ndomain = "{DOMAIN}"\ndata_dir = "var"\n'
                                        f'[smtp]\nport = {port}\n', encoding="utf-8")
    settings = load_settings(folder / "liuhen.toml", env={})
    return build_context(replace(settings, smtp=replace(settings.smtp, port=port)))


def _step(ctx: Context, title: str, name: str, sender: str, to: str, subject: str, body: str,
          headers: dict[str, str] | None = None) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")
    msg = MIMEText(body, "plain", "utf-8")
    msg["From"] = formataddr((str(Header(name, "utf-8")), sender))
    msg["To"] = to
    msg["Subject"] = Header(subject, "utf-8")  # type: ignore[assignment]  # compat32 takes a Header; typeshed says str
    msg["Message-ID"] = make_msgid(domain="client.example.cn")
    for key, value in (headers or {}).items():
        msg[key] = value
    print(f"--> IN  From: {name} <{sender}>  To: {to}\n    Subject: {subject}\n")
    print("    " + body.strip().replace("\n", "\n    "))
    raw = msg.as_bytes().replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", ctx.settings.smtp.port) as client:
        client.ehlo("demo")
        client.mail(sender)
        client.rcpt(to)
        code, answer = client.data(raw)
    queue_id = answer.decode().rsplit(" ", 1)[-1]
    print(f"\n    SMTP: {code} {answer.decode()}")
    row = _wait(queue_id)
    print(f"    → {row.state}: {row.reason}")
    transport = MaildirTransport(ctx.settings.maildir_path)
    while deliver_due(ctx, transport):
        pass
    printed = [_print_out(bytes(out.raw)) for out in  # a sent mail has its raw bytes (set with 'sent')
               OutboundMessage.select().where(OutboundMessage.status == "sent").order_by(OutboundMessage.id)
               if out.raw is not None]
    if not any(printed):
        print("    (no mail goes out)")


def _wait(queue_id: str) -> InboundMessage:
    for _ in range(500):
        row = InboundMessage.get_or_none(InboundMessage.queue_id == queue_id)
        if row is not None and row.state != "received":
            return row
        time.sleep(0.02)
    raise RuntimeError("the gateway did not process the demo mail")


_shown: set[str] = set()  # Message-IDs already printed


def _print_out(raw: bytes) -> bool:
    """Print a mail we sent, once; True if it was new."""
    msg = email.message_from_bytes(raw)
    if msg["Message-ID"] in _shown:
        return False
    _shown.add(msg["Message-ID"])
    subject = str(make_header(decode_header(msg["Subject"])))
    to = str(make_header(decode_header(msg["To"])))
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    body = cast(bytes, text.get_payload(decode=True)).decode("utf-8")  # a text/plain part decodes to bytes
    print(f"\n<-- OUT To: {to}\n    Subject: {subject}\n    Reply-To: {msg['Reply-To'] or '-'}   "
          f"Auto-Submitted: {msg['Auto-Submitted']}\n")
    print("    " + body.strip().replace("\n", "\n    "))
    return True
