"""Outlook items (.msg) read as the mails they hold (parsers/outlook.py); the files are Apache
POI's (tests/fixtures/outlook/README.md)."""

from __future__ import annotations

from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

from parsers.mime import parse_message
from parsers.outlook import msg_to_rfc822

OUTLOOK = Path(__file__).parent / "fixtures" / "outlook"


def held(name: str):
    raw = msg_to_rfc822((OUTLOOK / name).read_bytes())
    assert raw is not None
    return parse_message(raw)


def test_a_big5_item_from_outlook_2003_reads_in_chinese():
    mail = held("chinese-traditional.msg")
    assert mail.subject == "Alfresco MSG format testing ( MSG 格式測試 )"
    assert "中文測試" in mail.text
    assert mail.to == (("Tests Chang@FT (張毓倫)", "tests.chang@fengttt.com"),)
    assert mail.date is not None and mail.date.year == 2011


def test_a_received_item_keeps_its_original_sender_and_date():
    mail = held("simple_test_msg.msg")
    assert (mail.from_name, mail.from_addr, mail.subject) == ("Travis Ferguson", "travis@overwrittenstack.com",
                                                              "test message")
    assert mail.text.strip() == "This is a test message."
    assert mail.date is not None and mail.date.isoformat() == "2007-07-06T01:27:17-04:00"


def test_an_exchange_senders_x500_name_is_not_taken_for_an_address():
    mail = held("quick.msg")
    assert mail.from_addr == "" and mail.subject == "Test the content transformer"
    assert "quick brown fox" in mail.text


def test_what_is_no_outlook_item_gives_none():
    item = (OUTLOOK / "simple_test_msg.msg").read_bytes()
    for data in (b"", b"not a msg", item[:2048], item[:512] + bytes(4096)):
        assert msg_to_rfc822(data) is None


def test_an_attached_item_is_an_attached_mail_and_stays_a_file():
    outer = MIMEMultipart()
    outer["From"], outer["Subject"] = "wu.gang@liuhen.localhost", "FW: test message"
    outer.attach(MIMEText("请看客户来信。", "plain", "utf-8"))
    part = MIMEApplication((OUTLOOK / "simple_test_msg.msg").read_bytes(), "vnd.ms-outlook")
    part.add_header("Content-Disposition", "attachment", filename="test message.msg")
    outer.attach(part)
    mail = parse_message(outer.as_bytes())
    assert [a.filename for a in mail.attachments] == ["test message.msg"]
    assert len(mail.attached_messages) == 1
    assert parse_message(mail.attached_messages[0]).from_addr == "travis@overwrittenstack.com"
