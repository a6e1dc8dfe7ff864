"""Commands by mail (HELP, TEMPLATE, SEARCH, STATUS) with their access rules; `liuhen search`
and `liuhen archive export` on archived records, in Chinese and English, on both databases."""

from __future__ import annotations

import argparse
import email
import json

import pytest
from conftest import DOMAIN, make_mail
from test_replies import CHEN, MEDIUM, WANG, ZHAO, reply

from gateway.cli import cmd_archive_export, cmd_search
from gateway.outbox import mail_body
from store.models import OutboundMessage, Record


def answer_to(ctx, person: str) -> str:
    mail = OutboundMessage.select().where((OutboundMessage.to_addr == person) &
                                          OutboundMessage.kind.startswith("command_")).order_by(OutboundMessage.id.desc()).first()
    return mail.subject + "\n" + mail_body(ctx, mail)[0]


def command(send, person: str, subject: str, to: str = f"requests@{DOMAIN}"):
    return send(make_mail("", subject=subject, to=to, sender=person), rcpt=to, mail_from=person)


@pytest.fixture
def archived(ctx, send) -> Record:
    """A project record taken all the way to the archive, with an English comment on the way."""
    send(make_mail(MEDIUM.replace("锁定BOM成本", "锁定BOM成本，提升续航")))
    reply(send, WANG, "Battery life tests need the Q1 prototypes")
    reply(send, CHEN, "结果：采用方案B，合同已签")
    reply(send, WANG, "确认")
    reply(send, ZHAO, "确认")
    record = Record.get()
    assert record.status == "archived"
    return record


def test_help_lists_forms_and_keywords(ctx, send):
    assert command(send, CHEN, "帮助").state == "processed"
    text = answer_to(ctx, CHEN)
    assert f"project@{DOMAIN}" in text and "同意需求 / 同意" in text and "模板 项目协作" in text


def test_help_in_english(ctx, send):
    command(send, "emily.carter@liuhen.localhost", "HELP")
    text = answer_to(ctx, "emily.carter@liuhen.localhost")
    assert "How to use liuhen" in text and "AGREE / APPROVE" in text and "同意" not in text


def test_template_sends_a_blank_form(ctx, send):
    command(send, CHEN, "模板 项目协作")
    text = answer_to(ctx, CHEN)
    assert "沟通主题*：" in text and "所需资源：" in text and f"project@{DOMAIN}" in text
    assert "2026-12-11" in text  # example dates lie ahead


def test_template_in_english(ctx, send):
    command(send, "emily.carter@liuhen.localhost", "TEMPLATE project")
    text = answer_to(ctx, "emily.carter@liuhen.localhost")
    assert "Subject*: (e.g. " in text and "Milestones*:" in text and "Resources:" in text


@pytest.mark.parametrize("words, found", [("成本", True), ("续航", True), ("合同", True), ("方案评审", True),
                                          ("battery", True), ("BATTERY LIFE", True), ("供应链", False)])
def test_search_by_mail_finds_two_character_chinese_and_english(ctx, send, archived, words, found):
    command(send, CHEN, f"检索 {words}")
    text = answer_to(ctx, CHEN)
    assert (archived.ref in text) is found
    if found:
        assert "【" in text  # the snippet marks the match


def test_search_and_status_show_only_what_the_asker_may_see(ctx, send, archived):
    outsider = "liu.yang@liuhen.localhost"  # 市场部, not involved
    command(send, outsider, "检索 成本")
    assert archived.ref not in answer_to(ctx, outsider)
    command(send, outsider, f"状态 {archived.ref}")
    assert "没有找到您有权查看的该编号记录" in answer_to(ctx, outsider)
    head = "zhou.ming@liuhen.localhost"  # head of 研发部, where 王强 works
    command(send, head, "检索 成本")
    assert archived.ref in answer_to(ctx, head)
    command(send, WANG, f"STATUS {archived.ref}")
    status = answer_to(ctx, WANG)
    assert "archived" in status and "signed" in status and "王强" in status


def test_admins_see_everything(ctx, send, archived):
    from dataclasses import replace

    object.__setattr__(ctx, "settings", replace(ctx.settings, gateway=replace(ctx.settings.gateway,
                                                                              admins=("auditor@liuhen.localhost",))))
    command(send, "auditor@liuhen.localhost", "检索 合同")
    assert archived.ref in answer_to(ctx, "auditor@liuhen.localhost")


def test_cli_search_json_and_open_records(ctx, send, archived, capsys):
    send(make_mail(MEDIUM.replace("智能手表项目-硬件方案评审", "智能手表项目-续航优化"), subject="智能手表项目-续航优化"))
    cmd_search(argparse.Namespace(words=["续航"], all=False, json=True, limit=20), ctx)
    hits = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in hits] == [archived.ref]
    assert hits[0]["archive_key"] == "智能手表项目-硬件方案评审-20261127" and hits[0]["status"] == "archived"
    cmd_search(argparse.Namespace(words=["续航"], all=True, json=True, limit=20), ctx)
    assert {h["status"] for h in json.loads(capsys.readouterr().out)} == {"archived", "open"}


def test_archive_export_bundle(ctx, send, archived, tmp_path):
    from conftest import sent_mails

    sent_mails(ctx)  # deliver, so the outgoing mails have their raw bytes
    cmd_archive_export(argparse.Namespace(ref=archived.ref, out=str(tmp_path / "out")), ctx)
    folder = tmp_path / "out" / archived.ref
    data = json.loads((folder / "record.json").read_text(encoding="utf-8"))
    assert data["result"] == "采用方案B，合同已签" and data["archive"]["key"] == archived.archive_key
    assert any(e["kind"] == "signed" for e in data["events"])
    mails = sorted(p.name for p in (folder / "mails").iterdir())
    assert any(n.startswith("in-") for n in mails) and any(n.startswith("out-") for n in mails)
    first_in = email.message_from_bytes((folder / "mails" / next(n for n in mails if n.startswith("in-"))).read_bytes())
    assert first_in["To"] == f"project@{DOMAIN}"
    timeline = (folder / "timeline.html").read_text(encoding="utf-8")
    assert "采用方案B" in timeline and "<h2>参与人</h2>" in timeline  # headings in the record's language
    assert "新款智能手表需在Q1量产" in timeline  # the fields of the request
    assert "mail_sent" not in timeline  # deliveries are not events a reader looks for
    assert "<h2>关键节点</h2>" in timeline and "方案评审" in timeline
    assert "签字确认" in timeline and "record_created" not in timeline  # the trace in sentences


def test_status_in_the_same_batch_as_the_request_sees_its_whole_trace(ctx):
    """Mails are processed in batches that write their trace together; a command still sees
    every event of the mails processed before it, as if each had been committed alone."""
    from test_replies import MEDIUM as body

    from gateway.intake import store_raw
    from gateway.pipeline import process_batch

    request = store_raw(ctx.db, make_mail(body), source="ingest", envelope_from=CHEN,
                        envelope_to=[f"project@{DOMAIN}"], now=ctx.clock.now())
    status = store_raw(ctx.db, make_mail("", subject="STATUS PRJ-2026-0001", to=f"requests@{DOMAIN}", sender=CHEN),
                       source="ingest", envelope_from=CHEN, envelope_to=[f"requests@{DOMAIN}"], now=ctx.clock.now())
    states = process_batch(ctx, [request.inbound_id, status.inbound_id])
    assert states == {request.inbound_id: "processed", status.inbound_id: "processed"}
    answer = answer_to(ctx, CHEN)
    # Every event of the request, as sentences in the asker's language, not event codes.
    assert "2026-11-27 10:00  陈静 opened PRJ-2026-0001" in answer and "sent to 王强" in answer
    assert "record_created" not in answer and "inbound_processed" not in answer and "mail_sent" not in answer


def test_todo_by_mail_lists_what_waits_for_the_sender_with_how_to_answer_each(ctx, send):
    send(make_mail(MEDIUM))
    command(send, WANG, "待办")
    answer = answer_to(ctx, WANG)
    assert "PRJ-2026-0001 智能手表项目-硬件方案评审：等待您回复（截止 2026-11-28 10:00）" in answer
    assert "回复到 reply+" in answer and "同意需求 / 需补充信息 / 建议调整节点" in answer
    command(send, "sun.li@liuhen.localhost", "TODO")  # nothing of hers
    assert "Nothing is waiting for you" in answer_to(ctx, "sun.li@liuhen.localhost")  # asked in English


def test_team_by_mail_lists_a_heads_departments_items_and_only_for_a_head(ctx, send):
    send(make_mail(MEDIUM))
    head = "zhou.ming@liuhen.localhost"  # 研发部: 王强 is to answer
    command(send, head, "部门待办")
    answer = answer_to(ctx, head)
    assert "部门待办 研发部" in answer and "王强：等待您回复" in answer and "赵磊" not in answer
    assert "reply+" not in answer  # his reply addresses are his own
    command(send, WANG, "部门待办")
    assert "您不是部门负责人" in answer_to(ctx, WANG)
