"""The console in a real browser (Debian's chromium driven by Playwright), served by uvicorn on
a real port beside a real gateway: sign in with the link from the delivered mail, see My
work, open a record and read its timeline, search a two-character Chinese word, open the
board. Screenshots are kept as test artefacts (test-artifacts/web/, or $LIUHEN_ARTIFACTS)."""

from __future__ import annotations

import email
import os
import re
import threading
import time
from dataclasses import replace
from email import policy
from pathlib import Path

import pytest
from conftest import free_port, make_mail, sent_mails, test_settings
from test_replies import MEDIUM, reply

from gateway.bootstrap import build_context
from gateway.web.app import create_app
from store.archive import index_pending

ARTIFACTS = Path(os.environ.get("LIUHEN_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")) / "web"
WANG, ZHOU = "wang.qiang@liuhen.localhost", "zhou.ming@liuhen.localhost"


@pytest.fixture
def ctx(tmp_path, db_url, clock):
    settings = test_settings(tmp_path, db_url)
    context = build_context(replace(settings, web=replace(settings.web, enabled=True, port=free_port())), clock=clock)
    yield context
    context.db.close()


@pytest.fixture
def console(ctx):
    """The console on its port, as `liuhen web` serves it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=ctx.settings.web.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield ctx.settings.web.url
    server.should_exit = True
    thread.join(10)


def _link_from_maildir(ctx, to: str) -> str:
    """The sign-in link of the newest mail to `to` in the delivered maildir, as a person reads it."""
    sent_mails(ctx)  # the outbox delivers into the maildir
    found = []
    for path in (ctx.settings.maildir_path / "new").iterdir():
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = msg.get_body(preferencelist=("plain",)).get_content()
        if to in str(msg["To"]) and "/signin/confirm?t=" in text:
            found.append((path.stat().st_mtime_ns, text))
    assert found, f"no sign-in mail to {to} in the maildir"
    return re.search(r"(http://\S+/signin/confirm\?t=\S+)", max(found)[1]).group(1)


def _sign_in(page, ctx, base: str, who: str) -> None:
    page.goto(f"{base}/signin")
    page.fill("input[name=email]", who)
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=code]")
    page.goto(_link_from_maildir(ctx, who))
    page.click("button[type=submit]")  # the link's page only shows this button
    page.wait_for_url(f"{base}/work")


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("width", (1280, 390))
def test_a_person_signs_in_by_mail_and_follows_their_work_in_the_browser(ctx, send, console, chromium, width):
    send(make_mail(MEDIUM))
    reply(send, "zhao.lei@liuhen.localhost", "需补充信息：请提供BOM成本明细")
    index_pending()
    page = chromium.new_page(viewport={"width": width, "height": 900}, locale="zh-CN")
    _sign_in(page, ctx, console, WANG)
    assert "PRJ-2026-0001" in page.inner_text("main") and "等待您回复" in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    _shot(page, f"work-{width}")
    page.click("text=PRJ-2026-0001")
    page.wait_for_url(f"{console}/r/PRJ-2026-0001")
    timeline = page.inner_text("table.timeline")
    assert "赵磊 需要补充信息：请提供BOM成本明细" in timeline  # the trace in sentences
    assert page.locator("a.button[href^='mailto:reply+']").count() >= 3  # his actions, as mailto buttons
    _shot(page, f"record-{width}")
    page.goto(f"{console}/search")
    page.fill("input[name=q]", "硬件")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("ol.hits")
    assert page.locator("ol.hits mark").first.inner_text() == "硬件"
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0  # the filters wrap
    _shot(page, f"search-{width}")
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{console}/records")
    page.select_option("select[name=status]", "open")  # the filter applies at once (htmx)
    page.wait_for_url(re.compile(r".*status=open.*"))
    assert "PRJ-2026-0001" in page.inner_text("main")
    assert not [e for e in errors if "Content Security Policy" in e], errors  # no inline script or style


def test_a_department_head_opens_the_board_and_the_overdue_list(ctx, send, console, chromium, clock):
    send(make_mail(MEDIUM))
    clock.advance(hours=30)  # 王强's answer (due after 24 h) is overdue
    page = chromium.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    _sign_in(page, ctx, console, ZHOU)
    page.click("text=部门看板")
    row = page.locator("tr", has_text="研发部")
    assert row.locator("td").nth(2).inner_text() == "1"  # overdue
    _shot(page, "board")
    row.locator("td").nth(2).locator("a").click()
    assert "王强" in page.inner_text("main") and "PRJ-2026-0001" in page.inner_text("main")
