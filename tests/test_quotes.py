"""parsers.quotes.new_text: the new text of a reply.

The Chinese-client cases (tests/fixtures/replies/*.txt|html, answers in expected.json) must
all pass exactly. The public fixtures (tests/fixtures/replies/public/, copied with their
upstream answers) are checked on a representative set, against the upstream answer or, where
our policy differs on purpose, the answer in public/disagreements.json. bench/quotes.py
measures all of them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from parsers.mime import html_to_text, parse_message
from parsers.quotes import new_text

REPLIES = Path(__file__).parent / "fixtures" / "replies"
PUBLIC = REPLIES / "public"
CHINESE = json.loads((REPLIES / "expected.json").read_text(encoding="utf-8"))
CLASSES = json.loads((REPLIES / "classes.json").read_text(encoding="utf-8"))
DISAGREEMENTS = json.loads((PUBLIC / "disagreements.json").read_text(encoding="utf-8"))


def _text(path: Path) -> str:
    # Callers hand new_text "\n" newlines; several public fixtures are CRLF files.
    return path.read_bytes().decode("utf-8").replace("\r\n", "\n")


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.split("\n") if line.strip()]


@pytest.mark.parametrize("name", sorted(CHINESE))
def test_chinese_client_reply(name: str) -> None:
    path = REPLIES / name
    if path.suffix == ".html":
        # HTML-only mail: the caller converts it first; its blank lines are html_to_text's.
        assert _lines(new_text(html_to_text(_text(path)))) == _lines(CHINESE[name])
    else:
        assert new_text(_text(path)) == CHINESE[name]


def test_chinese_cases_cover_every_client_and_style() -> None:
    bodies = {name: _text(REPLIES / name) for name in CHINESE}
    everything = "\n".join(bodies.values())
    for marker in (
        "-----邮件原件-----", "-----原始邮件-----", "-----Original Message-----", "原始邮件",
        "发件人:", "发件人：", "发送时间:", "发送时间：", "收件人:", "主题:", "寄件者:", "寄件者：",
        "寄件人:", "主旨:", " 写道：", " 写道:", "於 ", " 寫道:", "寫道：", "回复的原邮件",
        "发自我的iPhone", "Sent from my iPhone", "发自网易邮箱大师", "從我的 iPhone 傳送",
        "寄自我的 iPhone", "获取 Outlook for iOS", "\n-- \n", "\n> ",
    ):
        assert marker in everything, marker
    bottom_posted = [n for n, body in bodies.items() if body.lstrip().startswith(("> ", "在 ", "於 "))]
    assert len(bottom_posted) >= 5
    assert sum(name.endswith(".html") for name in CHINESE) >= 4


def test_real_world_classes_have_their_fixtures() -> None:
    """The reply shapes seen in public archives that our first fixtures missed (issue 10),
    each with several fixtures in expected.json and the mark that makes the class."""
    marks = {
        "netease_en_ui": ('>, said:', '> said:', '> wrote:\n>', "At 20"),
        "two_line_attribution": ("+0800\n", "+0800\n\"", ",\n   "),
        "escaped_quote": ("&gt; ", "&gt;&gt; ", "&lt;"),
        "ibm_notes": ("\ncc:", "To:\t", " wrote on "),
        "disclaimer": ("本邮件及其附件", "confidential", "Disclaimer\n"),
    }
    assert set(CLASSES) == set(marks)
    for cls, names in CLASSES.items():
        assert len(names) >= 3, cls
        assert set(names) <= set(CHINESE), cls
        bodies = "\n".join(_text(REPLIES / name) for name in names)
        for mark in marks[cls]:
            assert mark in bodies, (cls, mark)


# One or more per mechanism: header blocks (Outlook en/de/fr/nl/it/ru, bold "*From:*",
# a wrapped sender), separators, attributions in many languages (one line, wrapped over
# two or three lines, without colon, without verb), bottom-posting and Gmail's re-wrapped
# quote tails, phone/app signatures and prose that only looks like one, HTML replies.
REPRESENTATIVE = [
    "github-email_reply_parser/email_2_2.txt",
    "github-email_reply_parser/email_bullets.txt",
    "github-email_reply_parser/email_sent_from_my_not_signature.txt",
    "mailgun-talon/standard_replies/android.eml",
    "mailgun-talon/standard_replies/apple_mail_2.eml",
    "mailgun-talon/standard_replies/hotmail.eml",
    "mailgun-talon/standard_replies/outlook.eml",
    "mailgun-talon/standard_replies/thunderbird.eml",
    "mailgun-talon/standard_replies/yahoo.eml",
    "mailgun-talon/html_replies/gmail.html",
    "mailgun-talon/html_replies/mail_ru.html",
    "mailgun-talon/html_replies/ms_outlook_2010.html",
    "mailgun-talon/html_replies/windows_mail.html",
    "mail-parser-reply/email_2_3.txt",
    "mail-parser-reply/email_headers_no_delimiter.txt",
    "mail-parser-reply/email_sent_from_multi_word_mobile_device.txt",
    "crisp-email-reply-parser/email_1.txt",
    "crisp-email-reply-parser/email_7.txt",
    "crisp-email-reply-parser/email_9.txt",
    "crisp-email-reply-parser/email_15.txt",
    "crisp-email-reply-parser/email_22.txt",
    "crisp-email-reply-parser/email_24.txt",
    "crisp-email-reply-parser/email_emoji.txt",
    "crisp-email-reply-parser/email_finnish.txt",
    "crisp-email-reply-parser/email_german_3.txt",
    "crisp-email-reply-parser/email_gmail_split_line_from.txt",
    "crisp-email-reply-parser/email_norwegian_gmail.txt",
    "crisp-email-reply-parser/email_outlook_split_line_from.txt",
    "crisp-email-reply-parser/email_portuguese.txt",
    "crisp-email-reply-parser/email_tricky_12_no_space_after_header.txt",
    "crisp-email-reply-parser/email_zoho.txt",
    *DISAGREEMENTS,
]
_BODY_DIRS = {"github-email_reply_parser": "emails", "mail-parser-reply": "emails",
              "crisp-email-reply-parser": "fixtures", "mailgun-talon": ""}


def _public(key: str) -> tuple[str, str]:
    set_name, name = key.split("/", 1)
    path = PUBLIC / set_name / _BODY_DIRS[set_name] / name
    if path.suffix == ".eml":
        body = parse_message(path.read_bytes()).text  # talon: the first text/plain part
    elif path.suffix == ".html":
        body = html_to_text(_text(path))
    else:
        body = _text(path)
    upstream = json.loads((PUBLIC / set_name / "expected.json").read_text(encoding="utf-8"))
    return body, DISAGREEMENTS.get(key, {}).get("ours", upstream[name])


@pytest.mark.parametrize("key", REPRESENTATIVE)
def test_public_fixture(key: str) -> None:
    body, answer = _public(key)
    got = new_text(body)
    if key.endswith(".html"):
        assert "".join(got.split()) == "".join(answer.split())  # talon compares HTML so
    else:
        assert " ".join(got.split()) == " ".join(answer.split())


def test_signature_policy_on_the_disputed_public_fixtures() -> None:
    """Phone/app signatures and "-- " blocks go; typed sign-offs stay."""
    assert new_text(_public("mailgun-talon/standard_replies/iphone.eml")[0]) == "Hello"
    assert new_text(_public("mailgun-talon/standard_replies/sparrow.eml")[0]) == "Hello"
    assert new_text(_public("github-email_reply_parser/email_1_1.txt")[0]).endswith(
        "-Abhishek Kona"
    )
    assert new_text(_public("crisp-email-reply-parser/email_with_regards.txt")[0]).endswith(
        "Regards,\n\nJohn Doe\nCEO @ Acme !"
    )


def test_text_without_history_is_kept_as_typed() -> None:
    body = "\n\n  您好：\n\n\n  请确认。  \n谢谢！张伟\n\n"
    assert new_text(body) == "  您好：\n\n\n  请确认。  \n谢谢！张伟"
    assert new_text("") == ""
    assert new_text("\n \n") == ""


def test_signoff_kept_phone_signature_dropped() -> None:
    body = "同意需求。\n\n谢谢！\n张伟\n\n发自我的iPhone\n\n------------------ 原始邮件 ------------------\n发件人: 李娜"
    assert new_text(body) == "同意需求。\n\n谢谢！\n张伟"


def test_dash_dash_signature_block_dropped_but_not_dashes_inside_a_line() -> None:
    assert new_text("修复了 -- 见附件。\n\n-- \n张伟\n产品部\n电话 010-12345678") == "修复了 -- 见附件。"
    assert new_text("第一点\n--\n张伟") == "第一点"


def test_interleaved_answers_kept_in_order_one_blank_line_apart() -> None:
    body = (
        "在 2024/5/20 10:30, 张伟 写道:\n> 问题一？\n\n\n答复一\n> 问题二？\n> 补充说明\n答复二\n\n"
        "> 问题三？"
    )
    assert new_text(body) == "答复一\n\n答复二"


def test_gmail_rewrapped_quote_tail_is_quote_but_a_typed_answer_is_not() -> None:
    long_line = "> " + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod"
    tail = new_text(f"Reply.\n\nOn Mon, May 20, 2024 at 10:30 AM A <a@example.com> wrote:\n"
                    f"{long_line}\ntempor incididunt.\n> More quote.")
    assert tail == "Reply."
    answer = new_text(f"On Mon, May 20, 2024 at 10:30 AM A <a@example.com> wrote:\n"
                      f"{long_line}\nYes, agreed.\n> More quote.")
    assert answer == "Yes, agreed."


def test_attribution_without_history_below_ends_the_text() -> None:
    # Outlook, Coremail and HTML turned into text quote without ">": the rest is history.
    body = '收到。\n\n在 2024-05-20 10:30:00，"张伟" <zhangwei@163.com> 写道：\n请问发票什么时候能开？\n> 旧'
    assert new_text(body) == "收到。"


def test_prose_that_looks_like_history_is_kept() -> None:
    for body in (
        "发自内心地感谢大家。\n来自客户的反馈如下：\n1. 很好",
        "Sent from my desk, is much easier than my mobile phone.",
        "As I wrote:\n\n  the deadline is Friday.",
        "主题：首页改版\n时间：2024-05-20 10:30\n参与人：张伟",
        "On the surface this is fine.\nOn Monday we ship.",
    ):
        assert new_text(body) == body


def test_pathological_and_huge_bodies_stay_fast() -> None:
    pathological = _text(PUBLIC / "github-email_reply_parser" / "emails" / "pathological.txt")
    bodies = [
        pathological,
        "好的\n\n" + "> " + "引用内容 " * 20 + "\n" * 1 + ("> 引用\n" * 20000),  # a long quote
        ("On " + "x" * 5000 + " wrote\n") * 200,  # lines that almost are attributions
        ("12:30 " + "<" * 3000 + "a@b" + " " * 3000 + "\n") * 50,
        "正文\n" * 20000,
        # issue 10's patterns: escaped quotes, Notes date lines, two-line attributions,
        # "wrote on", titles and disclaimers that are not at the end.
        "&gt; " * 5000 + "\n" + "&gt;&gt; 引用\n" * 10000,
        "03/01/2000 07:43 AM\n" * 5000,
        ("On Mon 10:30 " + "1:11 " * 2000 + "\n") * 50,
        ("a@b " + " wrote on " * 40 + "1:11" * 10 + ":\n") * 500,
        "正文\n" + ("Disclaimer\n" * 5000),
        "正文\n" + ("本邮件及其附件含有保密信息，仅限收件人" * 50 + "\n正文\n") * 500,
        "正文\n" + "-" * 200000 + "\n",
    ]
    started = time.perf_counter()
    for body in bodies:
        new_text(body)
    assert time.perf_counter() - started < 2.0


# What a client puts under an answer: each one ends what the person wrote.
HISTORY_TAILS = [
    "-----原始邮件-----\n发件人: 张伟 <zhangwei@example.com>\n发送时间: 2024年5月20日 10:30\n"
    "收件人: 李娜\n主题: 首页改版\n\n请确认。",
    "From: Zhang Wei <zhangwei@example.com>\nSent: Monday, May 20, 2024 10:30 AM\n"
    "To: Li Na <lina@example.com>\nSubject: 首页改版\n\n请确认。",
    "在 2024年5月20日 10:30，张伟 <zhangwei@example.com> 写道：\n> 请确认。",
    "在 2024-05-20 10:30:00，\"张伟\" <zhangwei@163.com> 写道：\n请确认。",
    'At 2019-08-08 02:26:50, "Zhang Wei" <zhangwei@example.com>, said:\n>请确认。',
    "On Mon, 20 May 2024 10:30:00 +0800\nZhang Wei <zhangwei@example.com> wrote:\n\n> 请确认。",
    "&gt; 请确认。\n&gt; 张伟",
    "Zhang Wei/RD/ACME@ACME\n2024-05-20 10:30\n\nTo:\tLi Na/Sales/ACME@ACME\n"
    "Subject:\t首页改版\n\n请确认。",
    "本邮件及其附件含有示例科技的保密信息，仅限于发送给上面地址中列出的个人或群组。禁止任何其他人以任何形式使用"
    "（包括但不限于全部或部分地泄露、复制、或散发）本邮件中的信息。如果您错收了本邮件，请您立即通知发件人并删除本邮件！",
    "发自我的iPhone\n\n------------------ 原始邮件 ------------------\n发件人: 张伟",
]

# Lines that look like history but are, alone or on top, what the person typed.
OWN_WORDS_THAT_LOOK_LIKE_HISTORY = [
    "在 2024-05-20 10:30，张伟 <zhangwei@example.com> 写道：",
    "On Mon, May 20, 2024 at 10:30 AM Zhang Wei <zhangwei@example.com> wrote:",
    'At 2019-08-08 02:26:50, "Zhang Wei" <zhangwei@example.com>, said:',
    "On Mon, 20 May 2024 10:30:00 +0800\nZhang Wei <zhangwei@example.com> wrote:",
    "发件人：张伟\n收件人：李娜\n同意需求。",
    "From: 张伟\nTo: 李娜\nSubject: 首页改版\n\n同意需求，5 月 31 日上线。",
    "主题：首页改版\n发件人：市场部/刘洋\n抄送：王强\n需补充信息：接口的鉴权方式。",
]


def _own_texts() -> list[str]:
    answers = [answer for answer in CHINESE.values() if answer.strip()]
    answers += [_public(key)[1] for key in REPRESENTATIVE]
    return [answer for answer in answers if answer.strip()]


def test_never_empty_when_the_mail_had_words_of_its_own() -> None:
    """Every fixture's own text, alone and above every kind of history, and text that only
    looks like an attribution or a header block: new_text keeps something."""
    for own in _own_texts():
        assert new_text(own).strip(), own
        for tail in HISTORY_TAILS:
            assert new_text(f"{own}\n\n{tail}").strip(), (own, tail)
    for own in OWN_WORDS_THAT_LOOK_LIKE_HISTORY:
        assert new_text(own).strip(), own
    # Typed header-like lines on top of a real reply: the answer below them is kept.
    for name in CHINESE:
        body = _text(REPLIES / name)
        if name.endswith(".html"):
            body = html_to_text(body)
        for own in OWN_WORDS_THAT_LOOK_LIKE_HISTORY[4:]:
            assert new_text(f"{own}\n\n{body}").strip(), (own, name)


def test_looks_like_history_but_is_the_persons_text() -> None:
    attribution_alone = "在 2024-05-20 10:30，张伟 <zhangwei@example.com> 写道："
    assert new_text(attribution_alone) == attribution_alone
    typed = "发件人：张伟\n收件人：李娜\n同意需求。"
    assert new_text(f"{typed}\n\n{HISTORY_TAILS[2]}") == typed
    # With a date it is a client's header block: an empty reply stays empty.
    assert new_text(HISTORY_TAILS[1]) == ""
    # "said" without an address is a sentence; a line naming secrecy is no disclaimer.
    said = "周一 10:30 的会上王总 said:\n预算按 V2.0 执行。"
    assert new_text(said) == said
    note = "王经理：\n\n本邮件附件中的报价为保密信息，请仅限内部使用；误收请删除。"
    assert new_text(note) == note


def test_disclaimer_ends_the_text_only_when_nothing_of_the_persons_follows() -> None:
    disclaimer = HISTORY_TAILS[8]
    assert new_text(f"今天发出。\n\n{disclaimer}") == "今天发出。"
    assert new_text(f"今天发出。\n\n{disclaimer}\n\n> 旧的引用") == "今天发出。"
    # Pasted in the middle of what the person wrote: kept with it.
    middle = f"今天发出。\n\n{disclaimer}\n\n另外发票周五开。"
    assert new_text(middle) == middle
