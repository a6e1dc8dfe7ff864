"""Shared fixtures: a gateway context on SQLite and on PostgreSQL, a fixed clock, a live SMTP
gateway on a loopback port, and helpers to send mail and read what the gateway sent."""

from __future__ import annotations

import email
import os
import shutil
import smtplib
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from email.message import Message
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.settings import ImapSettings, Settings, load_settings
from gateway.bootstrap import Context, build_context
from gateway.clock import FixedClock
from gateway.delivery import MaildirTransport
from gateway.outbox import deliver_due
from gateway.serve import GatewayThread
from store.models import InboundMessage, OutboundMessage

FIXTURES = Path(__file__).parent / "fixtures"
EMAILS = FIXTURES / "emails"
DOMAIN = "liuhen.test"
TZ = ZoneInfo("Asia/Shanghai")
# Every test lives on Friday 2026-11-27 10:00 in Shanghai, so fixture dates stay in the future.
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)
PG_URL = os.environ.get("LIUHEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DKIM_KEY = (FIXTURES / "dkim" / "test.key").read_bytes()
DKIM_RECORD = "v=DKIM1; k=rsa; p=" + (FIXTURES / "dkim" / "test.pub.b64").read_text().strip()


class StubDns:
    """A DNS zone of TXT records for sender authentication, instead of the network."""

    def __init__(self) -> None:
        self.txt: dict[str, str] = {}

    def __call__(self, name: bytes | str, timeout: float | None = None) -> bytes | str | None:
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        value = self.txt.get(key)
        if value is None:
            return None
        return value.encode() if isinstance(name, bytes) else value

    def publish_dkim(self, domain: str, selector: str = "test") -> None:
        self.txt[f"{selector}._domainkey.{domain}"] = DKIM_RECORD

    def publish_dmarc(self, domain: str, policy: str = "reject") -> None:
        self.txt[f"_dmarc.{domain}"] = f"v=DMARC1; p={policy}"


REFUSAL_CODES_SEEN: set[str] = set()


@pytest.fixture(autouse=True, scope="session")
def _watch_refusal_codes() -> Iterator[None]:
    """Note every problem text the gateway renders, for the check in pytest_sessionfinish."""
    from mail_templates import Renderer

    original = Renderer.problem_text

    def noting(self: Renderer, lang: str, code: str, **values: str) -> str:
        REFUSAL_CODES_SEEN.add(code)
        return original(self, lang, code, **values)

    Renderer.problem_text = noting  # type: ignore[method-assign]
    yield
    Renderer.problem_text = original  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The refusal registry (gateway/refusals.py) is walked by the whole suite: each code must
    be said by some test. Checked only when the whole suite ran and passed."""
    from gateway.refusals import CODES

    option = session.config.option
    whole = not option.keyword and not option.markexpr and not getattr(option, "lf", False) and \
        all(Path(a).resolve() in (Path(__file__).parent, Path(__file__).parent.parent) for a in session.config.args)
    if exitstatus != 0 or not whole or session.testsfailed:
        return
    unsaid = sorted(set(CODES) - REFUSAL_CODES_SEEN)
    if unsaid:
        print(f"\nrefusal codes no test triggers (gateway/refusals.py): {', '.join(unsaid)}")
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def dns_zone(monkeypatch: pytest.MonkeyPatch) -> StubDns:
    """Every test answers sender-authentication lookups from its own empty zone."""
    from gateway import authentication

    zone = StubDns()
    monkeypatch.setattr(authentication, "_dns", zone)
    return zone


def dkim_signed(raw: bytes, domain: str, selector: str = "test") -> bytes:
    """The mail with a valid DKIM signature of `domain` (key in tests/fixtures/dkim)."""
    import dkim

    raw = crlf(raw)
    signature = dkim.sign(raw, selector.encode(), domain.encode(), DKIM_KEY,
                          include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return signature + raw


def _postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _postgres_schema_url(name: str) -> str:
    """A fresh schema per test, so tests never see each other's rows."""
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        cur.execute(f'CREATE SCHEMA "{name}"')
    conn.close()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'liuhen.db'}"
        return
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432, and CI must test it")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (CI runs these tests)")
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield _postgres_schema_url(name)
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


def test_settings(tmp_path: Path, db_url: str, **overrides: object) -> Settings:
    s = load_settings(None, env={})
    return replace(
        s,
        gateway=replace(s.gateway, domain=DOMAIN, data_dir=str(tmp_path / "var"), secret="test-secret"),
        smtp=replace(s.smtp, port=free_port(), max_message_bytes=200_000),
        database=replace(s.database, url=db_url),
        delivery=replace(s.delivery, maildir=str(tmp_path / "sent")),
        # Plain hours keep the tests' deadline arithmetic readable; working time, the default,
        # has tests of its own (test_worktime.py, test_scheduler.py).
        reminders=replace(s.reminders, business_hours=False),
        web=replace(s.web, enabled=False, port=free_port()),  # the console's tests start it themselves
    )


test_settings.__test__ = False  # a helper, not a test


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def ctx(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[Context]:
    context = build_context(test_settings(tmp_path, db_url), clock=clock)
    yield context
    context.db.close()


@pytest.fixture
def gateway(ctx: Context) -> Iterator[GatewayThread]:
    """A running gateway (SMTP intake + processing); delivery is left to `sent_mails`."""
    running = GatewayThread(ctx, transport=None).start()
    yield running
    running.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixture_bytes(name: str) -> bytes:
    return (EMAILS / name).read_bytes()


def smtp_send(ctx: Context, raw: bytes, rcpt: str | list[str], mail_from: str = "sender@example.cn") -> str:
    """Send over a real SMTP connection; returns the queue id from the 250 answer."""
    rcpts = [rcpt] if isinstance(rcpt, str) else rcpt
    raw = crlf(raw)
    with smtplib.SMTP("127.0.0.1", ctx.settings.smtp.port, timeout=10) as client:
        client.ehlo("client.example.cn")
        client.mail(mail_from)
        for r in rcpts:
            code, answer = client.rcpt(r)
            assert code == 250, answer
        code, answer = client.data(raw)
    assert code == 250, answer
    return answer.decode().rsplit("queued as ", 1)[1]


def crlf(raw: bytes) -> bytes:
    """SMTP carries CRLF line ends (RFC 5321 §2.3.8); smtplib sends bytes as they are."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def wait_processed(key: str | int, timeout: float = 10.0) -> InboundMessage:
    """Wait until the mail with this SMTP queue id (or inbound id) reaches a terminal state."""
    where = InboundMessage.queue_id == key if isinstance(key, str) else InboundMessage.id == key
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = InboundMessage.get_or_none(where)
        if row is not None and row.state != "received":
            return row
        time.sleep(0.02)
    raise AssertionError(f"{key} was not processed within {timeout}s")


def wait_idle(ctx: Context, timeout: float = 10.0) -> None:
    """Wait until the spool is empty and no stored mail waits for processing."""
    spool = ctx.settings.data_path / "spool" / "new"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(spool.iterdir()) and not InboundMessage.select().where(InboundMessage.state == "received").exists():
            return
        time.sleep(0.02)
    raise AssertionError(f"the gateway did not become idle within {timeout}s")


def sent_mails(ctx: Context) -> list[Message]:
    """Deliver the outbox into the test maildir and return every mail in it, oldest first."""
    transport = MaildirTransport(ctx.settings.maildir_path)
    while deliver_due(ctx, transport):
        pass
    rows = OutboundMessage.select().where(OutboundMessage.status == "sent").order_by(OutboundMessage.id)
    return [email.message_from_bytes(bytes(r.raw)) for r in rows]


def body_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return ""


def body_html(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return ""


def header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    return str(email.header.make_header(email.header.decode_header(value)))


def make_mail(body: str, subject: str = "智能手表项目-硬件方案评审", to: str = f"project@{DOMAIN}",
              sender: str = "陈静 <chen.jing@liuhen.localhost>", extra_headers: dict[str, str] | None = None,
              charset: str = "utf-8") -> bytes:
    """A plain-text request mail as a mail client would send it."""
    from email.header import Header
    from email.mime.text import MIMEText
    from email.utils import make_msgid

    msg = MIMEText(body, "plain", charset)
    msg["From"] = sender if sender.isascii() else _encode_sender(sender)
    msg["To"] = to
    msg["Subject"] = Header(subject, charset)
    msg["Message-ID"] = make_msgid(domain="client.example.cn")
    msg["Date"] = "Fri, 27 Nov 2026 09:58:00 +0800"
    for k, v in (extra_headers or {}).items():
        msg[k] = v
    return msg.as_bytes()


def _encode_sender(sender: str) -> str:
    from email.header import Header
    from email.utils import formataddr, parseaddr

    name, addr = parseaddr(sender)
    return formataddr((str(Header(name, "utf-8")), addr))


PROJECT_BODY = """沟通主题：智能手表项目-硬件方案评审
发起部门/人：产品部/陈静
优先级：高
期望完成时间：2026-12-20 18:00
背景与目标：新款智能手表需在Q1量产，需确认硬件方案以锁定BOM成本
参与部门及职责：
研发部/王强 — 完成硬件方案评估
市场部/赵磊 — 提供竞品价格
关键节点与时间：
方案评审 — 2026-12-10 14:00
样机测试 — 2026-12-15 18:00 — 张喆

谢谢！
陈静
"""


MEDIUM_BODY = PROJECT_BODY.replace("优先级：高", "优先级：中")

# The same kind of request written in English by someone without the form in front of them.
ENGLISH_BODY = """Subject: Overseas launch event for the Q1 smartwatch
Requester: emily.carter@liuhen.localhost
Priority: medium
Deadline: 2026-12-18 18:00
Background & goal: Book a venue and agree the budget for the Singapore launch
Participants:
wang.qiang@liuhen.localhost - demo units for the event
Milestones:
Venue booked - 2026-11-29 18:00 - wang.qiang@liuhen.localhost
"""


@pytest.fixture
def send(ctx: Context, gateway: GatewayThread) -> Callable[..., InboundMessage]:
    """Send a mail to the running gateway and wait for its terminal state."""
    def _send(raw: bytes, rcpt: str = f"project@{DOMAIN}", mail_from: str = "chen.jing@liuhen.localhost"):
        return wait_processed(smtp_send(ctx, raw, rcpt, mail_from))
    return _send


def spool_mail(ctx: Context, raw: bytes, envelope_from: str, envelope_to: list[str]) -> str:
    """Put one mail in the SMTP spool as intake would (for crash scenarios); its queue id."""
    from gateway.spool import Spool, SpooledMail, new_queue_id

    mail = SpooledMail(new_queue_id(), raw, envelope_from, envelope_to, ctx.clock.now())
    Spool(ctx.settings.data_path / "spool").write_file([mail])
    return mail.queue_id


# ---------------------------------------------------------------------------------------
# A private Dovecot (tests/dovecot.py) for the IMAP tests


@pytest.fixture
def dovecot():
    from dovecot import DOVECOT, Dovecot  # it imports this module (free_port)

    if not Path(DOVECOT).exists():
        if os.environ.get("CI"):
            pytest.fail("Dovecot is not installed, and CI must run the IMAP tests (.ci/run installs dovecot-imapd)")
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd); CI runs these tests")
    # Not pytest's tmp_path: its folders are 0700, and Dovecot's unprivileged auth and mail
    # processes must reach the user list and the mail folder.
    folder = Path(tempfile.mkdtemp(prefix="liuhen-dovecot-"))
    folder.chmod(0o755)
    server = Dovecot(folder).start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def imap_ctx(ctx, dovecot):
    box = dict(address=f"project@{DOMAIN}", host="127.0.0.1", port=dovecot.port, security="none", user="intake",
               password="s3cret", processed_folder="liuhen-done", poll_seconds=1)
    return replace(ctx, settings=replace(ctx.settings, imap=(ImapSettings(**box),)))


CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright drives it, no browser download


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium through Playwright, for the mail and console screenshots."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
