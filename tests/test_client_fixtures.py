"""Real client styles through SMTP: Foxmail GBK, Outlook HTML tables, HTML-only, English plain
text, Big5 — and every fixture, malformed ones included, ends in a visible terminal state."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from conftest import DOMAIN, EMAILS, FIXTURES, TZ, fixture_bytes, wait_idle

from config.directory import Directory
from gateway.bootstrap import DirectoryFile
from gateway.outbox import mail_body
from store.models import OutboundMessage, Participant, Record

# The fixtures were written in May 2024: walk in on the morning they were sent.
MAY_2024 = datetime(2024, 5, 20, 9, 0, tzinfo=TZ)


@pytest.fixture
def clock(clock):
    clock.instant = MAY_2024
    return clock


@pytest.fixture
def ctx(ctx):
    return replace(ctx, directory_file=DirectoryFile.fixed(Directory.load(FIXTURES / "directory.toml")))


def test_foxmail_gbk_request_becomes_a_record_with_names_intact(ctx, send):
    inbound = send(fixture_bytes("foxmail_gbk_plain.eml"), mail_from="zhangzhe@example.cn")
    assert inbound.state == "processed", inbound.reason
    record = Record.get()
    assert record.subject == "喆园二期数据平台迁移方案评审"  # 喆 is not in strict GB2312
    assert record.priority == "高" and record.initiator_name == "张喆"
    assert {(p.name, p.responsibility) for p in Participant.select().where(Participant.role == "recipient")} == {
        ("王堃", "迁移脚本与数据校验"), ("李镕", "账务数据核对")}
    assert record.fields["resources"] == "测试服务器2台"  # the `--` signature is not part of it


def test_outlook_html_table_is_read_and_the_missing_field_named(ctx, send):
    inbound = send(fixture_bytes("outlook_html_table.eml"), mail_from="lina@example.com")
    assert inbound.state == "rejected"
    assert inbound.reason == "invalid request: milestones:missing"
    text = mail_body(ctx, OutboundMessage.get())[0]
    assert "共有 1 处需要修改" in text and "必填项「关键节点与时间」没有填写" in text
    assert "参与部门及职责：研发部/赵磊 — 开发导出功能\n    测试部/孙悦 — 验收测试" in text


def test_html_only_mail_with_a_pasted_table(ctx, send):
    inbound = send(fixture_bytes("html_only_table.eml"), mail_from="chenjing@example.com.cn")
    assert inbound.state == "rejected"
    # Read from the table: subject, priority, dates and milestones; not written: these two.
    assert inbound.reason == "invalid request: background:missing,participants:missing"


def test_english_plain_text_request_is_answered_in_english(ctx, send):
    inbound = send(fixture_bytes("plain_utf8_english.eml"), mail_from="maria.lopez@example.com")
    # Everything is understood (`Departments and responsibilities`, `Requester: Finance / Maria
    # Lopez`, the em-dash lines); the mail simply has no milestones.
    assert inbound.state == "rejected" and inbound.reason == "invalid request: milestones:missing"
    answer = OutboundMessage.get()
    assert answer.lang == "en"
    text = mail_body(ctx, answer)[0]
    assert "The required field “Milestones” is missing." in text
    assert "Participants: Data Engineering / Tom Becker — port the queries" in text


def test_big5_traditional_customer_sync(ctx, send):
    inbound = send(fixture_bytes("big5_traditional.eml"), rcpt=f"customer@{DOMAIN}",
                   mail_from="wongchikeung@example.com.hk")
    assert inbound.subject == "客戶需求：新界倉庫溫控系統報價確認"
    assert inbound.state == "rejected"
    # Traditional labels are understood; what is really missing is the due date.
    assert inbound.reason == "invalid request: due:missing"


@pytest.mark.parametrize("name", sorted(p.name for p in EMAILS.glob("*.eml")))
def test_every_fixture_reaches_a_visible_terminal_state(ctx, send, name):
    inbound = send(fixture_bytes(name), mail_from="someone@example.net")
    assert inbound.state in ("processed", "rejected", "ignored"), (inbound.state, inbound.reason)
    assert inbound.reason
    wait_idle(ctx)
