"""Tests for parsers.signals: mail the gateway must never answer."""

import pytest

from parsers.signals import auto_reply_reason

OWN = ("intake@liuhen.example.com",)
DOMAIN = "liuhen.example.com"


def reason(
    headers: dict[str, str] | None = None,
    subject: str = "关于Q3客户需求评审的安排",
    envelope_sender: str | None = "wang.qiang@client.example.cn",
    from_addr: str = "wang.qiang@client.example.cn",
) -> str | None:
    return auto_reply_reason(headers or {}, subject, envelope_sender, from_addr, OWN, DOMAIN)


def test_ordinary_mail_is_answered() -> None:
    headers = {"content-type": "text/plain; charset=GBK", "x-mailer": "Foxmail 7.2"}
    assert reason(headers) is None
    assert reason(headers, envelope_sender=None) is None  # unknown envelope, e.g. read from a file


@pytest.mark.parametrize("envelope", ["", "<>", " <> "])
def test_null_sender(envelope: str) -> None:
    assert reason({"auto-submitted": "auto-replied"}, envelope_sender=envelope) == "null-sender"


def test_mailer_daemon_from() -> None:
    from_addr = "Mail Delivery System <MAILER-DAEMON@mx1.client.example.cn>"
    assert reason(from_addr=from_addr) == "mailer-daemon"


def test_postmaster_envelope() -> None:
    assert reason(envelope_sender="<postmaster@client.example.cn>") == "mailer-daemon"


def test_delivery_status_notification() -> None:
    headers = {
        "content-type": 'multipart/report; report-type=delivery-status; boundary="9B095B5ADSN=_01D9"',
        "auto-submitted": "auto-replied",
    }
    assert reason(headers, envelope_sender=None, from_addr="system@client.example.cn") == "mailer-daemon"


def test_own_mail_by_origin_header() -> None:
    headers = {"x-liuhen-origin": "reminder; item=PRJ-2024-0042", "auto-submitted": "auto-generated"}
    assert reason(headers, from_addr="someone@elsewhere.example.org") == "own-mail"


def test_own_mail_by_address() -> None:
    assert reason(from_addr="留痕 <Intake@Liuhen.Example.com>") == "own-mail"


def test_own_mail_by_x_loop() -> None:
    assert reason({"x-loop": "intake@liuhen.example.com"}) == "own-mail"
    assert reason({"x-loop": "helpdesk@notliuhen.example.com"}) is None


def test_gmail_vacation_responder() -> None:
    headers = {"auto-submitted": "auto-replied", "precedence": "bulk"}
    assert reason(headers, subject="Re: 关于Q3客户需求评审的安排") == "auto-submitted"


@pytest.mark.parametrize(
    "value",
    ["auto-generated", 'Auto-Replied; owner-email="li.lei@client.example.cn"', "auto-replied (vacation)"],
)
def test_auto_submitted(value: str) -> None:
    assert reason({"auto-submitted": value}) == "auto-submitted"


@pytest.mark.parametrize("value", ["no", "No (sent by a person)"])
def test_auto_submitted_no_is_a_person(value: str) -> None:
    assert reason({"auto-submitted": value}) is None


@pytest.mark.parametrize("value", ["bulk", "Junk", "list", "auto_reply"])
def test_precedence(value: str) -> None:
    assert reason({"precedence": value}) == "precedence"


def test_precedence_first_class_is_fine() -> None:
    assert reason({"precedence": "first-class"}) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"x-autoreply": "yes"},
        {"x-autorespond": "Vacation"},
        {"x-autoreply-from": "li.lei@client.example.cn"},
        {"x-mail-autoreply": "yes"},
        {"x-auto-reply": "YES"},
    ],
)
def test_x_autoreply(headers: dict[str, str]) -> None:
    assert reason(headers) == "x-autoreply"


def test_exchange_suppress_request_alone_is_not_a_sign() -> None:
    headers = {"x-auto-response-suppress": "All", "x-ms-exchange-organization-authas": "Internal"}
    assert reason(headers) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"list-id": "<project-x.lists.client.example.cn>"},
        {"list-unsubscribe": "<mailto:unsubscribe@news.example.com>, <https://news.example.com/u/123>"},
        {"list-post": "<mailto:project-x@lists.client.example.cn>"},
    ],
)
def test_list(headers: dict[str, str]) -> None:
    assert reason(headers) == "list"


@pytest.mark.parametrize(
    "subject",
    [
        "自动回复: 项目进度",  # Outlook zh-CN
        "自动回复：关于5月20日需求评审",  # QQ Mail
        "自動回覆: 專案進度",  # Outlook zh-TW
        "Automatic reply: Project status",  # Outlook en
        "Out of Office: weekly sync",
        "RE：回复: Re: 自动答复：项目进度",
        "答复: Out of the office until 5/25",
        "Auto-Reply: your message",
        "AW: Abwesend: Projekt",
        "项目进度 - Autoreply: I am away",
        "休假：5月20日-5月25日",
        "外出 - 下午回",
        "外出",
    ],
)
def test_out_of_office_subject(subject: str) -> None:
    assert reason(subject=subject) == "out-of-office"


@pytest.mark.parametrize(
    "subject",
    ["关于外出培训报销的申请", "休假申请审批", "Re: 项目进度：自动回复功能需求", "Re: 回复: 需求评审",
     "Absence request for next week"],
)
def test_real_subjects_are_not_out_of_office(subject: str) -> None:
    assert reason(subject=subject) is None


def test_order_own_mail_before_auto_submitted() -> None:
    headers = {"x-liuhen-origin": "digest", "auto-submitted": "auto-generated", "list-id": "<x>"}
    assert reason(headers) == "own-mail"
