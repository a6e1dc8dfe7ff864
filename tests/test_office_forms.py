"""A 沟通单 sent as a Word or Excel attachment is read like a form typed into the mail (issue 14).

The files are tests/fixtures/office/ (its README says how each was made: python-docx and
openpyxl, and LibreOffice 7.4 for the .xls, .ods and .doc): each holds PROJECT_BODY's form.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from dataclasses import replace
from datetime import datetime
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr
from pathlib import Path

import pytest
from conftest import DOMAIN, PROJECT_BODY, body_text, sent_mails

from gateway.intake import store_raw
from gateway.pipeline import process_batch
from parsers.office import ENCRYPTED, MACRO, TOO_LARGE, UNREADABLE, read_office
from store.models import Attachment, InboundMessage, Milestone, Participant, Record

OFFICE = Path(__file__).parent / "fixtures" / "office"


@pytest.fixture
def libreoffice() -> None:
    if shutil.which("soffice") is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice is missing: .ci/run installs libreoffice-writer-nogui")
        pytest.skip("LibreOffice is not installed (apt-get install libreoffice-writer-nogui); CI runs this test")


def request_with_file(name: str, data: bytes, body: str = "各位好，沟通单见附件，请查收。\n\n陈静",
                      subject: str = "智能手表项目-硬件方案评审") -> bytes:
    msg = MIMEMultipart()
    msg["From"] = formataddr(("陈静", "chen.jing@liuhen.localhost"))
    msg["To"], msg["Subject"] = f"project@{DOMAIN}", str(Header(subject, "utf-8"))
    msg["Message-ID"] = f"<office-{abs(hash((name, body, subject)))}@client.example.cn>"
    msg.attach(MIMEText(body, "plain", "utf-8"))
    part = MIMEApplication(data, "octet-stream")
    part.add_header("Content-Disposition", "attachment", filename=name)
    msg.attach(part)
    return msg.as_bytes()


def processed(ctx, raw: bytes, rcpt: str = f"project@{DOMAIN}") -> InboundMessage:
    """Process one mail as the processor does (for files above the tests' SMTP size limit)."""
    stored = store_raw(ctx.db, raw, source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[rcpt], now=ctx.clock.now())
    process_batch(ctx, [stored.inbound_id])
    return InboundMessage.get_by_id(stored.inbound_id)


def answer_to_sender(ctx) -> str:
    """The one mail the sender got back (an acknowledgement or a rejection), as text."""
    mails = [m for m in sent_mails(ctx) if "chen.jing@liuhen.localhost" in m["To"]]
    assert len(mails) == 1, [m["Subject"] for m in mails]
    return body_text(mails[0])


def assert_the_project_form_was_recorded() -> None:
    record = Record.get()
    assert record.subject == "智能手表项目-硬件方案评审" and record.priority == "高"
    assert record.fields["background"] == "新款智能手表需在Q1量产，需确认硬件方案以锁定BOM成本"
    assert record.due_at is not None
    recipients = {p.name: p.responsibility for p in Participant.select().where(Participant.role == "recipient")}
    assert recipients == {"王强": "完成硬件方案评估", "赵磊": "提供竞品价格"}
    milestones = [(m.name, m.owner_email) for m in Milestone.select().order_by(Milestone.due_at)]
    assert milestones == [("方案评审", "chen.jing@liuhen.localhost"), ("样机测试", "zhang.zhe@liuhen.localhost")]


@pytest.mark.parametrize("name", ["project-table.docx", "project-paragraphs.docx", "project-two-tables.docx",
                                  "project-sheet.xlsx", "project-sheet.xls", "project-sheet.ods"])
def test_a_form_sent_as_a_word_or_excel_file_becomes_the_record(ctx, send, name):
    inbound = send(request_with_file(name, (OFFICE / name).read_bytes()))
    assert inbound.state == "processed", inbound.reason
    assert_the_project_form_was_recorded()
    assert f"沟通单内容取自附件「{name}」" in answer_to_sender(ctx)
    # The file itself stays with the record and goes to the people who work on it.
    assert [a.filename for a in Attachment.select()] == [name]


def test_the_date_of_an_excel_cell_is_read_as_the_date_it_shows(ctx, send):
    send(request_with_file("沟通单.xlsx", (OFFICE / "project-sheet.xlsx").read_bytes()))
    assert Record.get().fields["due"] == "2026-12-20 18:00"  # a datetime cell, not 46376.75


def test_when_the_mail_and_its_file_both_hold_the_form_the_mail_wins_and_the_answer_says_so(ctx, send):
    body = PROJECT_BODY.replace("优先级：高", "优先级：中")
    inbound = send(request_with_file("project-table.docx", (OFFICE / "project-table.docx").read_bytes(), body=body))
    assert inbound.state == "processed", inbound.reason
    assert Record.get().priority == "中"
    assert "正文已填写沟通单，以正文为准；附件「project-table.docx」中的沟通单未采用" in answer_to_sender(ctx)


def test_at_the_generic_address_the_files_title_chooses_the_form(ctx, send):
    raw = request_with_file("沟通单.docx", (OFFICE / "project-table.docx").read_bytes(), subject="硬件方案评审")
    inbound = send(raw, rcpt=f"requests@{DOMAIN}")
    assert inbound.state == "processed", inbound.reason
    assert Record.get().form == "project"


@pytest.mark.parametrize(("name", "says"), [
    ("encrypted.xlsx", "设置了打开密码"),
    ("macro.docm", "启用宏的文件"),
    ("zipbomb.docx", "解压后过大"),
])
def test_a_file_that_is_not_read_gets_that_reason_not_every_field_missing(ctx, name, says):
    inbound = processed(ctx, request_with_file(name, (OFFICE / name).read_bytes()))
    assert inbound.state == "rejected"
    answer = answer_to_sender(ctx)
    assert f"附件「{name}」" in answer and says in answer
    assert "必填项" not in answer
    assert Record.select().count() == 0


def test_after_a_refused_file_the_same_form_as_xlsx_is_taken(ctx, send):
    first = processed(ctx, request_with_file("沟通单.xlsx", (OFFICE / "encrypted.xlsx").read_bytes()))
    assert first.state == "rejected"
    second = send(request_with_file("沟通单-无密码.xlsx", (OFFICE / "project-sheet.xlsx").read_bytes()))
    assert second.state == "processed", second.reason
    assert_the_project_form_was_recorded()


def test_a_file_without_the_forms_labels_is_named_in_the_answer(ctx, send):
    notes = _docx([_paragraph("会议记录：下周再议")])
    inbound = send(request_with_file("会议记录.docx", notes))
    assert inbound.state == "rejected"
    answer = answer_to_sender(ctx)
    assert "已读取附件「会议记录.docx」，但其中没有找到本模板的栏目" in answer and "必填项" in answer


def test_a_legacy_doc_is_converted_by_libreoffice_and_read(ctx, libreoffice):
    inbound = processed(ctx, request_with_file("沟通单.doc", (OFFICE / "project-legacy.doc").read_bytes()))
    assert inbound.state == "processed", inbound.reason
    assert_the_project_form_was_recorded()


def test_without_libreoffice_a_doc_gets_a_request_for_docx(ctx):
    ctx = replace(ctx, settings=replace(ctx.settings, office=replace(ctx.settings.office, libreoffice="")))
    inbound = processed(ctx, request_with_file("沟通单.doc", (OFFICE / "project-legacy.doc").read_bytes()))
    assert inbound.state == "rejected"
    answer = answer_to_sender(ctx)
    assert "附件「沟通单.doc」是旧版格式" in answer and "另存为 .docx" in answer and "必填项" not in answer


def test_a_conversion_over_the_time_limit_is_stopped_and_answered(ctx, libreoffice):
    quick = replace(ctx.settings.office, read_seconds=0.3)  # LibreOffice needs seconds to start
    ctx = replace(ctx, settings=replace(ctx.settings, office=quick))
    inbound = processed(ctx, request_with_file("沟通单.doc", (OFFICE / "project-legacy.doc").read_bytes()))
    assert inbound.state == "rejected"
    assert "读取超时" in answer_to_sender(ctx)
    left = subprocess.run(["pgrep", "-f", "liuhen-office-"], capture_output=True, text=True).stdout
    assert left == "", "LibreOffice was left running"


# ---------------------------------------------------------------------------------------
# The reader itself (parsers/office.py)

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _paragraph(*runs: str) -> str:
    return "<w:p>" + "".join(f"<w:r><w:t xml:space=\"preserve\">{r}</w:t></w:r>" for r in runs) + "</w:p>"


def _docx(blocks: list[str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/'
                   'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("word/document.xml", f'<?xml version="1.0"?><w:document xmlns:w="{_W}"><w:body>'
                   + "".join(blocks) + "</w:body></w:document>")
    return out.getvalue()


def test_text_in_content_controls_is_read_as_the_form_templates_fill_it_in():
    # Chinese form templates put their fill-in boxes in content controls (w:sdt), inline in a
    # paragraph or around a whole cell's content.
    inline = '<w:p><w:r><w:t>优先级：</w:t></w:r><w:sdt><w:sdtContent><w:r><w:t>高</w:t></w:r></w:sdtContent></w:sdt></w:p>'
    cell = ('<w:tbl><w:tr><w:tc>' + _paragraph("沟通主题") + '</w:tc><w:sdt><w:sdtContent><w:tc>'
            + _paragraph("智能手表项目-硬件方案评审") + '</w:tc></w:sdtContent></w:sdt></w:tr></w:tbl>')
    block = '<w:sdt><w:sdtContent>' + _paragraph("背景与目标：", "锁定BOM成本") + '</w:sdtContent></w:sdt>'
    form = read_office("form.docx", _docx([inline, cell, block]))
    assert form.problem == ""
    assert form.text.splitlines() == ["优先级：高", "背景与目标：锁定BOM成本"]
    assert form.tables == [[["沟通主题", "智能手表项目-硬件方案评审"]]]


def test_a_renamed_file_is_read_by_what_it_is():
    from parsers.office import CONVERT, is_form_file

    assert read_office("沟通单.xlsx", (OFFICE / "project-sheet.xls").read_bytes()).tables  # an .xls named .xlsx
    assert read_office("沟通单.doc", (OFFICE / "project-table.docx").read_bytes()).tables
    # WPS Office saves its spreadsheets (.et) as BIFF8 and its documents (.wps) as Word 97 files.
    assert is_form_file("沟通单.et") and read_office("沟通单.et", (OFFICE / "project-sheet.xls").read_bytes()).tables
    assert read_office("沟通单.wps", (OFFICE / "project-legacy.doc").read_bytes()).problem == CONVERT


def test_the_declared_size_of_every_part_bounds_the_work():
    form = read_office("a.docx", (OFFICE / "zipbomb.docx").read_bytes())
    assert form.problem == TOO_LARGE
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as z:
        for i in range(2001):
            z.writestr(f"word/media/{i}.txt", "")
    assert read_office("b.docx", many.getvalue()).problem == TOO_LARGE


def test_broken_and_hostile_files_are_named_not_raised():
    table = (OFFICE / "project-table.docx").read_bytes()
    assert read_office("a.docx", table[: len(table) // 2]).problem == UNREADABLE  # cut short in transit
    assert read_office("a.xlsx", b"PK\x03\x04" + b"\0" * 100).problem == UNREADABLE
    assert read_office("a.docx", b"").problem == UNREADABLE
    assert read_office("a.xlsx", (OFFICE / "encrypted.xlsx").read_bytes()).problem == ENCRYPTED
    assert read_office("a.docx", (OFFICE / "macro.docm").read_bytes()).problem == MACRO
    entity = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>')
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as z:
        z.writestr("word/document.xml", entity + f'<w:document xmlns:w="{_W}"><w:body>'
                   + _paragraph("&c;") + "</w:body></w:document>")
    assert read_office("c.docx", bomb.getvalue()).problem in ("", UNREADABLE)  # expat bounds the expansion


# ---------------------------------------------------------------------------------------
# The blank form as files (模板 项目协作)

FILLED_IN = {
    "沟通主题": "智能手表项目-硬件方案评审",
    "发起部门/人": "产品部/陈静",
    "优先级": "高",
    "期望完成时间": "2026-12-20 18:00",
    "背景与目标": "新款智能手表需在Q1量产，需确认硬件方案以锁定BOM成本",
    "参与部门及职责": "研发部/王强 — 完成硬件方案评估\n市场部/赵磊 — 提供竞品价格",
    "关键节点与时间": "方案评审 — 2026-12-10 14:00\n样机测试 — 2026-12-15 18:00 — 张喆",
}


def _blank_form_files(ctx, send) -> dict[str, bytes]:
    from conftest import make_mail

    send(make_mail("", subject="模板 项目协作", to=f"requests@{DOMAIN}"), rcpt=f"requests@{DOMAIN}")
    answer = [m for m in sent_mails(ctx) if "chen.jing@liuhen.localhost" in m["To"]][-1]
    assert "也可以填写附件中的 Word 或 Excel 表格" in body_text(answer)
    return {part.get_filename(): part.get_payload(decode=True) for part in answer.walk() if part.get_filename()}


@pytest.mark.parametrize("suffix", [".docx", ".xlsx"])
def test_the_blank_form_comes_as_word_and_excel_files_that_come_back_as_a_record(ctx, send, suffix):
    import docx
    import openpyxl

    files = _blank_form_files(ctx, send)
    assert sorted(files) == ["跨部门项目协作需求沟通单.docx", "跨部门项目协作需求沟通单.xlsx"]
    data, filled = files[f"跨部门项目协作需求沟通单{suffix}"], io.BytesIO()
    if suffix == ".docx":  # filled in as Word would: the 填写内容 column
        document = docx.Document(io.BytesIO(data))
        for row in document.tables[0].rows[1:]:
            row.cells[1].text = FILLED_IN.get(row.cells[0].text.rstrip("*"), "")
        document.save(filled)
    else:  # and as Excel would, the date typed into a date cell
        workbook = openpyxl.load_workbook(io.BytesIO(data))
        sheet = workbook.active
        for row in sheet.iter_rows(min_row=4):
            value = FILLED_IN.get(str(row[0].value).rstrip("*"))
            if value == "2026-12-20 18:00":
                row[1].value, row[1].number_format = datetime(2026, 12, 20, 18, 0), "yyyy-mm-dd hh:mm"
            else:
                row[1].value = value
        workbook.save(filled)
    inbound = send(request_with_file(f"沟通单{suffix}", filled.getvalue()), rcpt=f"requests@{DOMAIN}")
    assert inbound.state == "processed", inbound.reason
    assert_the_project_form_was_recorded()


def test_the_mails_time_limit_is_not_swallowed_by_the_readers_catch_all(monkeypatch):
    import time

    from gateway.budget import OverBudget, time_limit
    from parsers import office

    monkeypatch.setattr(office, "_read", lambda *args: time.sleep(5))  # a reader that hangs
    with pytest.raises(OverBudget), time_limit(0.2):
        read_office("slow.docx", b"")
