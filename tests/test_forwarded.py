"""parsers.forwarded: the original message inside a staff member's forward.

Two tables drive the tests:

- tests/fixtures/forwards/zh/ — Chinese forwards written for liuhen, one or more per client
  (Outlook zh-CN/zh-TW/en, Gmail, Apple Mail, Thunderbird, QQ Mail/Foxmail, NetEase,
  Alimail, WeLink, Coremail, titleless blocks, HTML-only mails), plus replies and requests
  that must not be taken for a forward; answers in expected.json.
- tests/fixtures/forwards/crisp/ — the public crisp-oss/email-forward-parser fixtures with
  their upstream expectations (expected_forward.json): 9 clients in ~22 locales. Each case
  is checked exactly (sender, subject, body, the forwarder's text); the misses we accept
  are listed in KNOWN_MISSES, and test_crisp_score prints the score.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from conftest import EMAILS, PROJECT_BODY

from parsers.forwarded import Forwarded, find_forward, unwrap
from parsers.mime import ParsedMessage, html_to_text, parse_message

FORWARDS = Path(__file__).parent / "fixtures" / "forwards"
ZH = FORWARDS / "zh"
CRISP = FORWARDS / "crisp"
ZH_CASES = json.loads((ZH / "expected.json").read_text(encoding="utf-8"))
CRISP_CASES = json.loads((CRISP / "expected_forward.json").read_text(encoding="utf-8"))

# Upstream cases we do not meet, and why.
KNOWN_MISSES = {
    "yahoo_pt_body.txt": "Yahoo pt squeezes 'Assunto' onto the title line without a colon",
}


def _mail(text: str, subject: str = "") -> ParsedMessage:
    """A plain-text mail as the gateway receives it, parsed."""
    msg = MIMEText(text, "plain", "utf-8")
    msg["From"] = "李娜 <lina@liuhen.example.cn>"
    msg["To"] = "customer@liuhen.test"
    msg["Subject"] = subject
    return parse_message(msg.as_bytes())


def _zh_text(name: str) -> str:
    text = (ZH / name).read_text(encoding="utf-8")
    # HTML-only mail: the caller converts it first.
    return html_to_text(text) if name.endswith(".html") else text


# ---------------------------------------------------------------------------------------
# Chinese clients


@pytest.mark.parametrize("name", sorted(ZH_CASES))
def test_chinese_client_forward(name: str) -> None:
    case = ZH_CASES[name]
    text = _zh_text(name)
    got = unwrap(_mail(text, case["mail_subject"])) if "mail_subject" in case else find_forward(text)
    want = case["expected"]
    if want is None:
        assert got is None
        return
    assert got is not None
    assert (got.sender_name, got.sender_addr) == (want["sender_name"], want["sender_addr"])
    assert got.subject == want["subject"]
    assert got.date == want["date"]
    assert got.above == want["above"]
    assert got.body.startswith(want["body_start"]), got.body
    assert got.body.endswith(want["body_end"]), got.body


@pytest.mark.parametrize("name", sorted(
    name for name, case in ZH_CASES.items() if case["expected"] and "mail_subject" not in case))
def test_unwrap_finds_the_same_inline_forward_under_a_forward_subject(name: str) -> None:
    text = _zh_text(name)
    assert unwrap(_mail(text, "转发: 官网首页改版需求")) == find_forward(text)
    assert unwrap(_mail(text, "FW: 官网首页改版需求")) == find_forward(text)


def test_chinese_cases_cover_every_client_and_marker() -> None:
    everything = "\n".join(_zh_text(name) for name in ZH_CASES)
    for marker in (
        "-----邮件原件-----", "-----原始郵件-----", "-----Original Message-----",
        "________________________________", "发件人: ", "发件人：", "寄件者: ", "寄件者：",
        "---------- Forwarded message ---------", "---------- 转发的邮件 ---------",
        "---------- 轉寄的郵件 ---------", "以下为转发的邮件：", "轉寄的郵件開始：",
        "-------- 转发的消息 --------", "-------- 轉寄的訊息 --------", "主题:\t",
        "------------------\xa0原始邮件\xa0------------------", " 原始郵件 ", " Original ",
        "-------- 转发邮件信息 --------", "-------- 轉發郵件信息 --------", "发送日期：",
        "主　题：", "主　旨：", "时间：", "发送时间：2024-05-20 10:30:00 (星期一)",
        "[mailto:", "\"王芳\"<", "写入:", "| 发件人 | ",
    ):
        assert marker in everything, marker
    # Every inline client in both scripts, and replies and requests that are no forward.
    for prefix in ("outlook_zhcn", "outlook_zhtw", "gmail_zhcn", "gmail_zhtw", "apple_mail_zhcn",
                   "apple_mail_zhtw", "thunderbird_zhcn", "thunderbird_zhtw", "qqmail_zhcn",
                   "foxmail_zhtw", "netease_163", "netease_126_zhtw", "alimail_zhcn",
                   "alimail_zhtw", "welink_zhcn", "coremail_zhcn", "coremail_zhtw",
                   "netease_mailmaster", "bare_block_zhcn", "bare_block_zhtw"):
        assert any(name.startswith(prefix) for name in ZH_CASES), prefix
    assert sum(case["expected"] is None for case in ZH_CASES.values()) >= 8


# ---------------------------------------------------------------------------------------
# Not forwards


@pytest.mark.parametrize("text", [
    "",
    "好的，收到。",
    PROJECT_BODY,
    # A template field is no header: "发起部门/人：" and "发件人/部门：" are not "发件人：".
    "发件人/部门：产品部/陈静\n主题：首页改版\n收件人：李娜\n日期：2024-05-20\n",
    # A sender line alone, or with one field and no address, is a stray line.
    "发件人：陈静\n请确认首页改版的排期。\n",
    "寄件者：陳美玲\n日期：2024-05-20\n",
])
def test_plain_requests_and_replies_are_no_forward(text: str) -> None:
    assert find_forward(text) is None
    assert unwrap(_mail(text, "客户需求：官网首页改版")) is None


@pytest.mark.parametrize("name", sorted(
    key for key, case in CRISP_CASES.items() if not case["forwarded"]))
def test_crisp_replies_are_no_forward(name: str) -> None:
    assert _crisp_result(CRISP_CASES[name]) is None


def test_a_reply_subject_leaves_an_outlook_block_alone_but_not_a_forward_title() -> None:
    outlook = ("好的。\n\n-----Original Message-----\nFrom: 王芳 <wangfang@huaxing.example.com>\n"
               "Sent: Monday, May 20, 2024 10:30 AM\nSubject: 首页改版\n\n请确认。\n")
    assert find_forward(outlook) is not None  # the text alone cannot tell
    assert unwrap(_mail(outlook, "答复: 首页改版")) is None
    assert unwrap(_mail(outlook, "AW: 首页改版")) is None
    assert unwrap(_mail(outlook, "首页改版")) == find_forward(outlook)
    thunderbird = outlook.replace("-----Original Message-----",
                                  "-------- Forwarded Message --------")
    assert unwrap(_mail(thunderbird, "Re: 首页改版")) == find_forward(thunderbird)


def test_an_attribution_is_a_forward_only_under_a_forward_subject() -> None:
    text = "请跟进\n\n在 2024/5/20 10:30，王芳 <wangfang@huaxing.example.com> 写道：\n\n    首页请改版。\n"
    assert find_forward(text) is None
    assert unwrap(_mail(text, "回复：首页改版")) is None
    assert unwrap(_mail(text, "首页改版")) is None
    assert unwrap(_mail(text, "[外部] 转发：首页改版")) == Forwarded(
        above="请跟进", sender_name="王芳", sender_addr="wangfang@huaxing.example.com",
        subject="首页改版", date="2024/5/20 10:30", body="首页请改版。")


def test_an_attribution_above_the_originals_own_history_wins() -> None:
    text = ("在 2024/5/20 10:30，“王芳”<wangfang@huaxing.example.com> 写入:\n\n    首页请改版。\n\n"
            "    发件人: 李娜 <lina@liuhen.example.cn>\n    发送时间: 2024年5月19日 9:00\n"
            "    主题: 首页改版\n\n    先发需求。\n")
    got = unwrap(_mail(text, "FW: 首页改版"))
    assert (got.sender_addr, got.date) == ("wangfang@huaxing.example.com", "2024/5/20 10:30")
    assert got.body.startswith("首页请改版。\n\n发件人: 李娜")


# ---------------------------------------------------------------------------------------
# Details of the header block


def test_subject_comes_from_the_mail_when_the_block_has_none() -> None:
    text = ("-----邮件原件-----\n发件人: 王芳 <wangfang@huaxing.example.com>\n"
            "发送时间: 2024年5月20日 10:30\n收件人: 李娜\n\n首页请改版。\n")
    assert find_forward(text).subject == ""
    assert unwrap(_mail(text, "转发: Fw: 官网首页改版需求")).subject == "官网首页改版需求"
    assert unwrap(_mail(text, "【外部邮件】转发：官网首页改版需求")).subject == "官网首页改版需求"


@pytest.mark.parametrize(("value", "name", "addr"), [
    ("王芳 <WangFang@Huaxing.example.com>", "王芳", "wangfang@huaxing.example.com"),
    ("\"王芳\"<wangfang@qq.example.com>;", "王芳", "wangfang@qq.example.com"),
    ("“王芳” <wangfang@huaxing.example.com>", "王芳", "wangfang@huaxing.example.com"),
    ("王芳 [mailto:wangfang@huaxing.example.com]", "王芳", "wangfang@huaxing.example.com"),
    ("王芳 (wangfang@huaxing.example.com)", "王芳", "wangfang@huaxing.example.com"),
    ("wangfang@huaxing.example.com", "", "wangfang@huaxing.example.com"),
    ("wangfang@huaxing.example.com <wangfang@huaxing.example.com>", "",
     "wangfang@huaxing.example.com"),
    ("王芳", "王芳", ""),
    # Outlook's "delegate on behalf of owner": the first party, as upstream expects.
    ("助理 <zhuli@huaxing.example.com> 代表 王芳 <wangfang@huaxing.example.com>", "助理",
     "zhuli@huaxing.example.com"),
    ("Wang, Fang<mailto:wangfang@huaxing.example.com> <wangfang@huaxing.example.com<mailto:"
     "wangfang@huaxing.example.com>>", "Wang, Fang", "wangfang@huaxing.example.com"),
])
def test_sender_forms(value: str, name: str, addr: str) -> None:
    got = find_forward(f"-----邮件原件-----\n发件人: {value}\n主题: 首页改版\n\n正文\n")
    assert (got.sender_name, got.sender_addr) == (name, addr)


def test_wrapped_recipients_and_bold_labels_stay_in_the_block() -> None:
    text = ("请处理\n\n*发件人:* 王芳 <wangfang@huaxing.example.com>\n*发送时间:* 2024年5月20日 10:30\n"
            "*收件人:* 李娜 <lina@liuhen.example.cn>; 张伟 <zhangwei@liuhen.example.cn>;\n"
            "赵磊 <zhaolei@liuhen.example.cn>\n*主题:* 首页改版\n首页请改版。\n")
    got = find_forward(text)
    assert (got.above, got.subject, got.body) == ("请处理", "首页改版", "首页请改版。")


# ---------------------------------------------------------------------------------------
# Forwarded as attachment


def test_attached_original_in_gbk() -> None:
    msg = parse_message((ZH / "attached_gbk_original.eml").read_bytes())
    expected = Forwarded(
        above="优先级：高\n请把客户的原始邮件记入需求。",  # the phone signature is dropped
        sender_name="王芳", sender_addr="wangfang@huaxing.example.com",
        subject="关于新版官网首页改版的需求", date="Mon, 20 May 2024 10:30:15 +0800",
        body="李经理：\n\n您好！附件是新版官网首页的需求说明，请在5月31日前给出设计初稿。\n\n谢谢！\n王芳\n"
             "华星贸易有限公司 市场部")
    assert unwrap(msg) == expected
    # The attached original wins over an inline block in the forwarder's text.
    inline = _zh_text("outlook_zhcn_youjianyuanjian.txt")
    assert unwrap(replace(msg, text=inline)).subject == expected.subject


def test_attached_original_with_its_own_attachment() -> None:
    got = unwrap(parse_message((EMAILS / "forwarded_as_attachment.eml").read_bytes()))
    assert (got.sender_name, got.sender_addr) == ("客户 孙立", "sunli@client.example.net")
    assert got.subject == "关于订单导出格式的补充要求"
    assert got.above == "请把客户的原始邮件记入需求 #000123。"
    assert got.body.startswith("赵工：")


# ---------------------------------------------------------------------------------------
# The public corpus


def _crisp_result(case: dict) -> Forwarded | None:
    text = (CRISP / case["body_file"]).read_bytes().decode("utf-8")
    if case["subject_file"]:
        # Outlook's forwards carry their marker in the subject ("FW:", "WG:", "Re:" …).
        subject = (CRISP / case["subject_file"]).read_text(encoding="utf-8").strip()
        return unwrap(_mail(text, subject))
    return find_forward(text)


def _crisp_errors(case: dict) -> list[str]:
    got = _crisp_result(case)
    if not case["forwarded"]:
        return [] if got is None else ["found a forward in a reply"]
    if got is None:
        return ["no forward found"]
    sender = case["email.from"]
    checks = {
        "subject": (got.subject, case["email.subject"]),
        "sender": ((got.sender_name, got.sender_addr),
                   (sender["name"] or "", sender["address"] or "")),
        "date": (bool(got.date), True),
        "body": (got.body, case["email.body"].strip()),
    }
    if "message" in case:
        checks["above"] = (got.above, case["message"] or "")
    return [f"{field}: {have!r} != {want!r}"
            for field, (have, want) in checks.items() if have != want]


@pytest.mark.parametrize("key", [
    pytest.param(key, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[case["body_file"]]))
    if case["body_file"] in KNOWN_MISSES else key
    for key, case in CRISP_CASES.items()
])
def test_crisp_case(key: str) -> None:
    assert _crisp_errors(CRISP_CASES[key]) == []


def test_crisp_score(capsys: pytest.CaptureFixture[str]) -> None:
    total = len(CRISP_CASES)
    correct = sum(not _crisp_errors(case) for case in CRISP_CASES.values())
    with capsys.disabled():
        print(f"\ncrisp-email-forward-parser: {correct}/{total} cases extracted exactly")
    assert correct == total - len(KNOWN_MISSES)


# ---------------------------------------------------------------------------------------
# Speed


def test_long_and_hostile_texts_are_fast() -> None:
    texts = [
        PROJECT_BODY * 100,
        ("-----邮件原件-----\n" + "发件人: " + "a" * 20000 + "@\n主题: x\n\n") * 5,
        ("------------------ 原始邮件 ------------------\n发件人：x\n" + "> 正文\n" * 50) * 100,
        "-" * 20000 + "x\n" + "--a" + "-" * 20000 + "b\n",
        "----- Forwarded Message ----- From: " + "De:A:" * 5000 + "\n",
    ]
    start = time.perf_counter()
    for text in texts:
        find_forward(text)
        unwrap(_mail(text, "转发: 压力测试"))
    unwrap(_mail("在 " + "<a@b> " * 5000 + " 写道：\n正文", "转发: 压力测试"))
    assert time.perf_counter() - start < 1.0
