"""A valid request over SMTP becomes a record, and everyone involved gets the right mail."""

from __future__ import annotations

import hashlib
import json
import re

from conftest import DOMAIN, ENGLISH_BODY, PROJECT_BODY, body_html, body_text, header, make_mail, sent_mails

from gateway.checks import CJK
from gateway.outbox import mail_body
from gateway.tokens import parse_token
from store.models import Event, Milestone, OutboundMessage, Participant, Record


def test_valid_request_is_recorded_and_dispatched(ctx, send):
    raw = make_mail(PROJECT_BODY)
    inbound = send(raw)
    assert inbound.state == "processed"
    record = Record.get()
    assert record.ref == "PRJ-2026-0001"
    assert (record.form, record.subject, record.priority, record.status) == (
        "project", "智能手表项目-硬件方案评审", "高", "open")
    assert record.initiator_email == "chen.jing@liuhen.localhost"
    roles = {(p.email, p.role, p.responsibility) for p in Participant.select()}
    assert roles == {
        ("chen.jing@liuhen.localhost", "initiator", ""),
        ("wang.qiang@liuhen.localhost", "recipient", "完成硬件方案评估"),
        ("zhao.lei@liuhen.localhost", "recipient", "提供竞品价格"),
        ("li.na@liuhen.localhost", "head", ""),  # high priority: the initiator's department head
    }
    milestones = [(m.name, m.due_at.astimezone(ctx.tz).strftime("%m-%d %H:%M"), m.owner_email)
                  for m in Milestone.select().order_by(Milestone.position)]
    assert milestones == [("方案评审", "12-10 14:00", "chen.jing@liuhen.localhost"),
                          ("样机测试", "12-15 18:00", "zhang.zhe@liuhen.localhost")]
    kinds = [e.kind for e in Event.select().order_by(Event.id)]
    assert kinds[0] == "record_created" and kinds.count("dispatched") == 3 and kinds[-1] == "inbound_processed"

    mails = {m["To"].split("<")[-1].rstrip(">"): m for m in sent_mails(ctx)}
    assert set(mails) == {"chen.jing@liuhen.localhost", "wang.qiang@liuhen.localhost",
                          "zhao.lei@liuhen.localhost", "li.na@liuhen.localhost"}

    request = mails["wang.qiang@liuhen.localhost"]
    subject = header(request, "Subject")
    assert subject.startswith("[PRJ-2026-0001] 【紧急】") and "智能手表项目-硬件方案评审" in subject
    assert "=?utf-8?" in request["Subject"]  # RFC 2047 on the wire
    text = body_text(request)
    assert "您的职责：完成硬件方案评估" in text
    assert "» 请在 2026-11-27 12:00 前答复" in text  # 高: 2 hours from 10:00
    assert "同意需求 / 同意 / AGREE / APPROVE" in text and "需补充信息" in text
    assert "<th" in body_html(request) and "背景与目标" in body_html(request)
    assert request.get_content_type() == "multipart/alternative"

    # Personal, signed reply addresses that name the right participant.
    for addr, mail in mails.items():
        token = re.fullmatch(rf"reply\+(.+)@{re.escape(DOMAIN)}", mail["Reply-To"]).group(1)
        record_id, participant_id = parse_token(ctx.settings.gateway.secret, token)
        assert record_id == record.id
        assert Participant.get_by_id(participant_id).email == addr
        # Loop safety and threading on every mail.
        assert mail["Auto-Submitted"] in ("auto-generated", "auto-replied")
        assert mail["X-Auto-Response-Suppress"] == "All"
        assert mail["Message-ID"].endswith(f"@{DOMAIN}>")
        assert record.thread_id in mail["References"]

    ack = mails["chen.jing@liuhen.localhost"]
    assert ack["In-Reply-To"] == re.search(rb"Message-ID: (<[^>]+>)", raw).group(1).decode()
    assert ack["Auto-Submitted"] == "auto-replied"
    assert "PRJ-2026-0001" in body_text(ack) and "王强" in body_text(ack)
    assert "结果 / RESULT" in body_text(ack)  # the initiator's keywords
    head = mails["li.na@liuhen.localhost"]
    assert header(head, "Subject") == header(request, "Subject")  # one conversation per record
    assert "按规定抄送您知悉" in body_text(head)


def test_every_dispatch_mail_shows_the_whole_form_as_submitted(ctx, send):
    send(make_mail(PROJECT_BODY))
    for mail in sent_mails(ctx):
        if "抄送" not in header(mail, "Subject") and "已受理" not in body_text(mail) and "您的职责" not in body_text(mail):
            continue
        text = body_text(mail)
        assert "沟通主题：智能手表项目-硬件方案评审" in text or "沟通主题" in body_html(mail)
        assert "产品部/陈静 <chen.jing@liuhen.localhost>" in text
        assert "高（紧急）" in text
        assert "新款智能手表需在Q1量产，需确认硬件方案以锁定BOM成本" in text
        assert "样机测试 — 2026-12-15 18:00 — 张喆" in text
        html = body_html(mail)
        assert "<th" in html and "产品部/陈静 &lt;chen.jing@liuhen.localhost&gt;" in html


def test_medium_priority_gets_24_hours_and_no_head_copy(ctx, send):
    send(make_mail(PROJECT_BODY.replace("优先级：高", "优先级：中")))
    assert Participant.select().where(Participant.role == "head").count() == 0
    request = OutboundMessage.get(OutboundMessage.kind == "request")
    assert "【紧急】" not in request.subject
    assert "2026-11-28 10:00" in mail_body(ctx, request)[0]


def test_english_request_is_answered_in_english(ctx, send):
    inbound = send(make_mail(ENGLISH_BODY, subject="Overseas launch event", sender="emily.carter@liuhen.localhost"),
                   mail_from="emily.carter@liuhen.localhost")
    assert inbound.state == "processed", inbound.reason
    record = Record.get()
    assert record.lang == "en" and record.subject == "Overseas launch event for the Q1 smartwatch"
    request = OutboundMessage.get(OutboundMessage.kind == "request")
    assert request.subject == "[PRJ-2026-0001] Overseas launch event for the Q1 smartwatch"
    assert "Please answer by 2026-11-28 10:00" in mail_body(ctx, request)[0]
    text = mail_body(ctx, request)[0]
    assert "Your part: demo units for the event" in text
    # The form as submitted, labelled in English.
    assert "Book a venue and agree the budget for the Singapore launch" in text
    assert "medium" in text and "Marketing/Emily Carter <emily.carter@liuhen.localhost>" in text
    assert not CJK.search(text.replace("王强", "")), "an English mail names her department (市场部) in English"


def test_generic_address_picks_the_form_from_the_subject_tag(ctx, send):
    inbound = send(make_mail(PROJECT_BODY, subject="[项目协作] 智能手表项目-硬件方案评审"), rcpt=f"requests@{DOMAIN}")
    assert inbound.state == "processed", inbound.reason
    assert Record.get().form == "project"


def test_generic_address_picks_the_form_from_a_template_line(ctx, send):
    body = "模板：内部通知\n通知内容：自2027年1月1日起试行弹性考勤\n需确认人员：王强、张喆\n"
    inbound = send(make_mail(body, subject="关于推行弹性考勤制度的通知"), rcpt=f"requests@{DOMAIN}")
    assert inbound.state == "processed", inbound.reason
    record = Record.get()
    assert record.ref.startswith("NTC-2026-") and record.subject == "关于推行弹性考勤制度的通知"
    assert {p.email for p in Participant.select().where(Participant.role == "recipient")} == {
        "wang.qiang@liuhen.localhost", "zhang.zhe@liuhen.localhost"}


def test_generic_address_without_a_form_gets_one_clear_answer(ctx, send):
    inbound = send(make_mail(PROJECT_BODY, subject="智能手表项目-硬件方案评审"), rcpt=f"requests@{DOMAIN}")
    assert inbound.state == "rejected"
    answer = OutboundMessage.get()
    assert answer.kind == "rejection" and "[项目协作]" in mail_body(ctx, answer)[0]
    assert Record.select().count() == 0


def test_record_ids_count_up_per_template(ctx, send):
    send(make_mail(PROJECT_BODY))
    send(make_mail(PROJECT_BODY.replace("硬件方案评审", "软件方案评审"), subject="智能手表项目-软件方案评审"))
    assert [r.ref for r in Record.select().order_by(Record.id)] == ["PRJ-2026-0001", "PRJ-2026-0002"]


def test_outbox_and_inbox_listings_as_json(ctx, send, capsys):
    import argparse

    from gateway.cli import cmd_inbox_list, cmd_outbox_list, cmd_show

    send(make_mail(PROJECT_BODY))
    cmd_outbox_list(argparse.Namespace(json=True, status=None), ctx)
    queue = json.loads(capsys.readouterr().out)
    assert {m["kind"] for m in queue} == {"ack", "request", "head_copy"}
    assert all(m["status"] == "queued" and m["reply_to"].startswith("reply+") for m in queue)
    cmd_inbox_list(argparse.Namespace(json=True, state=None), ctx)
    inbox = json.loads(capsys.readouterr().out)
    assert inbox[0]["state"] == "processed" and "PRJ-2026-0001" in inbox[0]["reason"]
    cmd_show(argparse.Namespace(ref="PRJ-2026-0001", json=True), ctx)
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "open" and shown["priority"] == "高"
    assert {p["role"] for p in shown["participants"]} == {"initiator", "recipient", "head"}
    assert shown["participants"][1]["response"] == "pending"
    assert [m["name"] for m in shown["milestones"]] == ["方案评审", "样机测试"]
    assert any(e["kind"] == "record_created" for e in shown["events"])


def test_attachments_are_kept_by_content_and_badly_named_ones_warned_about(ctx, send):
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    from store.models import Attachment
    from store.repositories import attachment_path

    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = "chen.jing@liuhen.localhost", f"project@{DOMAIN}", "智能手表项目-硬件方案评审"
    msg["Message-ID"] = "<with-attachments@client.example.cn>"
    msg.attach(MIMEText(PROJECT_BODY, "plain", "utf-8"))
    for name, data in (("产品需求文档V1.0-20240520.docx", b"spec v1"), ("需求.docx", b"loose notes")):
        part = MIMEApplication(data, "octet-stream")
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        msg.attach(part)
    inbound = send(msg.as_bytes())
    assert inbound.state == "processed", inbound.reason
    record = Record.get()
    files = {a.filename: a for a in Attachment.select().where(Attachment.record_id == record.id)}
    assert set(files) == {"产品需求文档V1.0-20240520.docx", "需求.docx"}
    assert attachment_path(ctx.settings.data_path, files["需求.docx"].sha256).read_bytes() == b"loose notes"
    ack = OutboundMessage.get(OutboundMessage.kind == "ack")
    text = mail_body(ctx, ack)[0]
    assert "附件「需求.docx」的名称不符合“主题+版本+日期”的规范" in text
    assert "产品需求文档V1.0-20240520.docx」" not in text


def test_a_large_attachment_is_kept_whole_and_once(ctx):
    # Large files are decoded from the raw mail and written to disk a piece at a time
    # (issue 9: a 50 MB attachment took 839 MB); what lands on disk must be the file sent.
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    from gateway.intake import store_raw
    from gateway.pipeline import process_inbound
    from store.models import Attachment
    from store.repositories import attachment_path

    drawing = hashlib.sha256(b"seed").digest() * (3 << 15)  # 3 MiB: far above what is read in one piece
    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = "chen.jing@liuhen.localhost", f"project@{DOMAIN}", "智能手表项目-硬件方案评审"
    msg["Message-ID"] = "<large-attachment@client.example.cn>"
    msg.attach(MIMEText(PROJECT_BODY, "plain", "utf-8"))
    for name in ("结构图V2-20261201.pdf", "结构图副本V2-20261201.pdf"):
        part = MIMEApplication(drawing, "pdf")
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        msg.attach(part)
    stored = store_raw(ctx.db, msg.as_bytes(), source="pipe", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=ctx.clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "processed"
    rows = list(Attachment.select().where(Attachment.record_id == Record.get().id))
    assert [(a.size, a.sha256) for a in rows] == [(len(drawing), hashlib.sha256(drawing).hexdigest())] * 2
    assert attachment_path(ctx.settings.data_path, rows[0].sha256).read_bytes() == drawing
    kept = [p for p in (ctx.settings.data_path / "attachments").rglob("*") if p.is_file()]
    assert kept == [attachment_path(ctx.settings.data_path, rows[0].sha256)]  # once, no .tmp left


def test_two_processors_on_one_database_process_a_mail_once(ctx):
    import threading

    from gateway.intake import store_raw
    from gateway.pipeline import process_batch

    stored = [store_raw(ctx.db, make_mail(PROJECT_BODY.replace("硬件方案评审", f"硬件方案评审{i}"),
                                          subject=f"智能手表项目-硬件方案评审{i}"),
                        source="ingest", envelope_from=None, envelope_to=[f"project@{DOMAIN}"],
                        now=ctx.clock.now()).inbound_id for i in range(6)]
    results: list[dict] = []
    workers = [threading.Thread(target=lambda: results.append(process_batch(ctx, stored))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert Record.select().count() == 6
    assert OutboundMessage.select().where(OutboundMessage.kind == "ack").count() == 6
    assert sorted(r.ref for r in Record.select()) == [f"PRJ-2026-{i:04d}" for i in range(1, 7)]
    assert all(set(r.values()) == {"processed"} for r in results)


def test_a_request_offers_its_answers_as_buttons_that_prefill_a_reply_to_the_readers_own_address(ctx, send):
    from urllib.parse import parse_qs, unquote, urlsplit

    send(make_mail(PROJECT_BODY))
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "wang.qiang@liuhen.localhost"))
    html = mail_body(ctx, request)[1]
    # The band: which record, what kind, how urgent, in which state.
    assert "PRJ-2026-0001 · 跨部门项目协作需求沟通单 · 优先级 高（紧急） · 进行中" in html
    links = re.findall(r'href="(mailto:[^"]+)"', html)
    assert len(links) == 3
    parts = [urlsplit(link.replace("&amp;", "&")) for link in links]
    assert {unquote(p.path) for p in parts} == {request.headers["Reply-To"]}  # his personal address
    queries = [parse_qs(p.query) for p in parts]
    assert queries[0]["subject"] == [f"Re: {request.subject}"]
    assert [q["body"][0] for q in queries] == ["同意需求\n", "需补充信息：\n", "建议调整节点：\n"]
    ack = OutboundMessage.get(OutboundMessage.kind == "ack")
    assert "mailto:" not in mail_body(ctx, ack)[1]  # the initiator is asked nothing by it
    # The keyword table lists what fits a first request, not the sign-off's words.
    text = mail_body(ctx, request)[0]
    assert "同意需求 / 同意 / AGREE" in text and "转交 / DELEGATE" in text
    assert "驳回 / REJECT" not in text and "确认 / 签字确认" not in text


def _request_with_files(files: list[tuple[str, bytes]]) -> bytes:
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = "chen.jing@liuhen.localhost", f"project@{DOMAIN}", "智能手表项目-硬件方案评审"
    msg["Message-ID"] = "<files@client.example.cn>"
    msg.attach(MIMEText(PROJECT_BODY, "plain", "utf-8"))
    for name, data in files:
        part = MIMEApplication(data, "pdf")
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        msg.attach(part)
    return msg.as_bytes()


def _files_in(mail) -> dict[str, bytes]:
    return {part.get_filename(): part.get_payload(decode=True) for part in mail.walk()
            if part.get_content_disposition() == "attachment"}


def test_a_requests_files_go_to_the_people_who_work_on_it(ctx, send):
    spec = bytes(range(256)) * 40  # binary, not text
    assert send(_request_with_files([("硬件方案V1.0-20261127.pdf", spec)])).state == "processed"
    mails = {header(m, "To"): m for m in sent_mails(ctx)}
    for person in ("王强 <wang.qiang@liuhen.localhost>", "赵磊 <zhao.lei@liuhen.localhost>"):
        assert _files_in(mails[person]) == {"硬件方案V1.0-20261127.pdf": spec}, person
    head = next(m for to, m in mails.items() if "li.na@" in to)  # the urgent request's copy to the head
    assert _files_in(head) == {"硬件方案V1.0-20261127.pdf": spec}
    ack = next(m for to, m in mails.items() if "chen.jing@" in to)
    assert _files_in(ack) == {}  # the initiator has them


def test_files_too_large_for_mail_are_named_instead(ctx):
    from dataclasses import replace

    from gateway.intake import store_raw
    from gateway.pipeline import process_batch

    small = replace(ctx.settings, delivery=replace(ctx.settings.delivery, attachments_mb=0.001))
    ctx = replace(ctx, settings=small)
    stored = store_raw(ctx.db, _request_with_files([("硬件方案V1.0-20261127.pdf", b"x" * 5000)]), source="ingest",
                       envelope_from="chen.jing@liuhen.localhost", envelope_to=[f"project@{DOMAIN}"],
                       now=ctx.clock.now())
    assert process_batch(ctx, [stored.inbound_id]) == {stored.inbound_id: "processed"}
    request = OutboundMessage.get((OutboundMessage.kind == "request") &
                                  (OutboundMessage.to_addr == "wang.qiang@liuhen.localhost"))
    assert request.attachments == []
    assert "附件较大，未随本邮件发送：硬件方案V1.0-20261127.pdf" in mail_body(ctx, request)[0]


def test_a_notice_asks_its_readers_to_confirm_it_not_to_agree_to_it(ctx, send):
    from urllib.parse import parse_qs, urlsplit

    body = "通知内容：自2027年1月1日起研发部试行弹性考勤\n需确认人员：王强、张喆\n"
    send(make_mail(body, subject="关于推行弹性考勤制度的通知", to=f"notice@{DOMAIN}"), rcpt=f"notice@{DOMAIN}")
    notice = OutboundMessage.get((OutboundMessage.kind == "request") &
                                 (OutboundMessage.to_addr == "wang.qiang@liuhen.localhost"))
    text, html = mail_body(ctx, notice)
    bodies = [parse_qs(urlsplit(link.replace("&amp;", "&")).query)["body"][0]
              for link in re.findall(r'href="(mailto:[^"]+)"', html)]
    assert bodies == ["确认\n", "需补充信息：\n"]
    assert "回复「确认」，表示已知悉本通知" in text and "同意需求" not in text
