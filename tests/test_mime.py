"""parsers.mime: raw bytes -> ParsedMessage, charset handling, HTML flattening."""

from __future__ import annotations

import base64
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

import pytest

from parsers.dsn import parse_dsn
from parsers.mime import (
    ParsedMessage,
    decode_bytes,
    html_tables,
    html_to_text,
    limit_mime_depth,
    parse_message,
)

EMAILS = Path(__file__).parent / "fixtures" / "emails"
CST = timezone(timedelta(hours=8))


def load(name: str) -> ParsedMessage:
    return parse_message((EMAILS / name).read_bytes())


def b64word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


# ---------------------------------------------------------------------------------------
# Realistic client mails


def test_foxmail_gbk_text_labelled_gb2312():
    msg = load("foxmail_gbk_plain.eml")
    assert msg.subject == "【项目协作】喆园二期数据平台迁移方案评审"
    assert (msg.from_addr, msg.from_name) == ("zhangzhe@example.cn", "张喆")
    assert msg.to == (("project", "project@liuhen.test"),)
    assert msg.cc == (("王堃", "wangkun@example.cn"), ("李镕", "lirong@example.cn"))
    assert msg.message_id == "<202405200915323419876@example.cn>"
    assert msg.date == datetime(2024, 5, 20, 9, 15, 32, tzinfo=CST)
    lines = msg.text.split("\n")
    assert "发起部门/人：信息技术部/张喆" in lines
    assert "优先级：高" in lines
    assert "数据中心/王堃 — 迁移脚本与数据校验" in lines
    assert "\r" not in msg.text
    assert msg.html == "" and msg.attachments == () and msg.attached_messages == ()
    assert msg.headers["x-mailer"] == "Foxmail 7.2.25.228[cn]"


def test_outlook_alternative_keeps_text_part_and_html_table():
    msg = load("outlook_html_table.eml")
    # Two encoded words, folded: joined without the folding whitespace.
    assert msg.subject == "客户需求：华东区经销商门户增加订单导出功能"
    assert msg.from_name == "李娜"
    assert msg.cc == (("赵磊", "zhaolei@example.com"), ("孙悦", "sunyue@example.com"))
    assert msg.date == datetime(2024, 5, 21, 2, 2, 10, tzinfo=UTC)
    assert msg.headers["thread-topic"] == msg.subject
    assert msg.headers["x-ms-has-attach"] == ""
    # The text/plain alternative is the body, as sent.
    assert msg.text.startswith("各位好：\n以下为客户需求沟通单")
    assert "沟通主题\n华东区经销商门户增加订单导出功能\n" in msg.text

    assert html_tables(msg.html) == [
        [
            ["沟通主题", "华东区经销商门户增加订单导出功能"],
            ["发起部门/人", "销售运营部/李娜"],
            ["优先级", "中"],
            ["期望完成时间", "2024-06-15 18:00"],
            [
                "背景与目标",
                "经销商每月需手工整理订单，耗时约2天；客户希望门户直接导出月度订单明细，"
                "减少对账差错。\n目标：6月底前上线Excel导出。",
            ],
            ["参与部门及职责", "研发部/赵磊 — 开发导出功能\n测试部/孙悦 — 验收测试"],
        ]
    ]
    flat = html_to_text(msg.html)
    assert flat.split("\n")[:4] == [
        "各位好：",
        "以下为客户需求沟通单，请查收并在24小时内反馈。",
        "",
        "沟通主题\t华东区经销商门户增加订单导出功能",
    ]
    assert "优先级\t中\n" in flat
    assert "参与部门及职责\t研发部/赵磊 — 开发导出功能\n测试部/孙悦 — 验收测试\n" in flat
    assert flat.endswith("李娜\n销售运营部 | 电话：021-5555-0101")
    for noise in ("Mso", "o:p", "font-face", "mso", "<", "&nbsp;", "\xa0", "\n\n\n"):
        assert noise not in flat


def test_html_only_word_table_becomes_the_text():
    msg = load("html_only_table.eml")
    assert msg.subject == "项目协作：仓储管理系统升级"
    assert (msg.from_addr, msg.from_name) == ("chenjing@example.com.cn", "陈静")
    assert msg.text == html_to_text(msg.html)
    assert msg.text.split("\n") == [
        "王经理，您好：",
        "附上项目协作需求，请审阅。",
        "",
        "沟通主题\t仓储管理系统升级至V3.2版本",
        "优先级\t高",
        "期望完成时间\t2024年6月10日 17:00",
        "关键节点与时间\t1. 测试环境部署 — 2024-06-03",
        "2. 正式切换 — 2024-06-08",
        "",
        "陈静",
        "物流中心 分机 8021",
    ]
    assert html_tables(msg.html)[0][1] == ["优先级", "高"]


def test_plain_utf8_english_addresses_and_threading():
    msg = load("plain_utf8_english.eml")
    assert msg.subject == "New request: migrate billing reports"
    assert (msg.from_addr, msg.from_name) == ("maria.lopez@example.com", "Maria Lopez")
    assert msg.to == (("Liuhen Projects", "project@liuhen.test"),)
    assert msg.cc == (
        ("Tom Becker", "tom.becker@example.com"),
        ("Lopez, Maria (Finance)", "maria.lopez@example.com"),
    )
    assert msg.reply_to == (("", "finance-requests@example.com"),)
    assert msg.in_reply_to == "<20240522.0930.1@liuhen.test>"
    assert msg.references == (
        "<CAH3x9Q0aa11bb22cc33dd44ee55ff66@mail.gmail.com>",
        "<20240522.0930.1@liuhen.test>",
    )
    assert msg.date == datetime(2024, 5, 23, 8, 12, 44, tzinfo=timezone(timedelta(hours=-7)))
    assert "Priority: high\n" in msg.text
    # A quoted-printable soft line break splits the UTF-8 bytes of the em dash.
    assert "retired on July 1st — all twelve monthly reports" in msg.text


@pytest.mark.parametrize(
    ("name", "subject", "from_name", "fragment"),
    [
        (
            "big5_traditional.eml",
            "客戶需求：新界倉庫溫控系統報價確認",
            "黃志強",
            "進展描述：客戶已確認第一期報價，啲嘢要喺本週五前處理好。",  # HKSCS: 啲 嘢 喺
        ),
        (
            "iso2022jp.eml",
            "見積書送付のご案内",
            "山田太郎",
            "お世話になっております。\n見積書をお送りいたします。",
        ),
        (
            "gb18030_body.eml",
            "客户需求：𠮷祥物流冷链运输合同续签",  # 𠮷: four-byte GB18030
            "刘䶮",
            "客户名称：𠮷祥物流有限公司\n联系人：刘䶮\n",
        ),
    ],
)
def test_legacy_charsets(name, subject, from_name, fragment):
    msg = load(name)
    assert msg.subject == subject
    assert msg.from_name == from_name
    assert fragment in msg.text


def test_rfc2231_chinese_attachment_names():
    msg = load("attachment_rfc2231_chinese_name.eml")
    assert msg.text == "附件为产品需求文档和评审会议纪要，请查收。\n\n周敏"
    docx, pdf = msg.attachments
    assert docx.filename == "产品需求文档V1.0-20240520.docx"
    assert docx.content_type == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert docx.payload.startswith(b"PK\x03\x04") and bytes(range(256)) in docx.payload
    # filename*0* / filename*1* continuations, split inside the UTF-8 bytes of 数.
    assert pdf.filename == "会议纪要-数据平台迁移评审-20240524.pdf"
    assert pdf.content_type == "application/pdf"
    assert pdf.payload == (
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def test_outlook_rfc2047_attachment_name_and_inline_images():
    msg = load("attachment_rfc2047_name.eml")
    # The space between the encoded word and the plain text after it is kept.
    assert msg.subject == "回复: 客户需求进度同步 #000123"
    assert msg.in_reply_to == "<req-000123.1716181200@liuhen.test>"
    assert msg.text == "同意需求，进度表见附件。"
    # The named inline image is a file; the unnamed cid: image is not.
    assert [(a.filename, a.content_type) for a in msg.attachments] == [
        ("image001.png", "image/png"),
        (
            "客户沟通进度同步表-20240520.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    ]
    assert msg.attachments[0].payload.startswith(b"\x89PNG\r\n\x1a\n")
    assert msg.attachments[1].payload.startswith(b"PK\x03\x04xl/workbook.xml")


def test_forwarded_message_is_kept_whole_and_not_descended_into():
    msg = load("forwarded_as_attachment.eml")
    assert msg.subject == "转发：关于订单导出格式的补充要求"
    assert msg.text == "请把客户的原始邮件记入需求 #000123。\n"
    assert msg.attachments == ()
    (raw,) = msg.attached_messages
    inner = parse_message(raw)
    assert inner.subject == "关于订单导出格式的补充要求"
    assert (inner.from_addr, inner.from_name) == ("sunli@client.example.net", "客户 孙立")
    assert inner.message_id == "<client-20240521-1620@client.example.net>"
    assert "导出文件请按经销商编号分Sheet" in inner.text
    assert [a.filename for a in inner.attachments] == ["format-spec.pdf"]
    assert inner.attachments[0].payload.startswith(b"%PDF-1.7")


def test_base64_encoded_message_rfc822_part_is_decoded():
    inner = b"From: client@example.net\r\nSubject: inner\r\n\r\nhello\r\n"
    raw = (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(inner)
        + b"--B--\r\n"
    )
    msg = parse_message(raw)
    assert msg.attached_messages == (inner,)
    assert msg.text == "see attached"  # the CRLF before a boundary belongs to it


def test_qq_exmail_raw_gb2312_headers():
    # Corpus mail: the From name and Subject are undeclared 8-bit GB2312 bytes.
    msg = load("corpus_flanker_qq_exmail_raw_gb2312_headers.eml")
    assert msg.subject == "提示：您的企业成员暂时无法登录邮件客户端"
    assert (msg.from_addr, msg.from_name) == ("10000@qq.com", "腾讯企业邮箱")
    assert msg.text.startswith("尊敬的管理员：\n系统检测到邮箱账号")


# ---------------------------------------------------------------------------------------
# Malformed input


def test_mixed_rfc2231_continuations_fall_back_to_headers_and_raw_body():
    # The stdlib parser raises TypeError on this boundary parameter.
    msg = load("malformed_rfc2231_mixed_continuations.eml")
    assert msg.subject == "mixed RFC 2231 continuations"
    assert msg.from_addr == "broken@example.com"
    assert "Body text survives." in msg.text


def test_truncated_base64_and_unknown_charset():
    msg = load("malformed_truncated_base64.eml")
    assert msg.subject == "截断的邮件 truncated"
    assert msg.date is None  # "Thu, 32 Foo 2024 25:61:00"
    assert msg.text == "正文被截断"  # the complete base64 groups of a cut-off part
    (pdf,) = msg.attachments
    assert pdf.filename == "report.pdf" and pdf.payload.startswith(b"%PDF-1.7")


def test_lying_multipart_body_is_read_as_text():
    msg = load("corpus_cpython_multipart_without_boundary.eml")
    assert msg.text == "Blah blah blah\n"
    assert (msg.from_addr, msg.from_name) == ("xxx@example.com", "Allison Dunlap")


def test_repeated_header_keeps_first_occurrence():
    msg = load("corpus_mikel_repeated_references_one_invalid.eml")
    assert msg.references == ("<foo@bar.net>",)
    assert msg.text == "foo\n" and msg.html == "<p>foo</p>\n"


@pytest.mark.parametrize("path", sorted(EMAILS.glob("*.eml")), ids=lambda p: p.name)
def test_never_raises_and_returns_storable_text(path):
    msg = parse_message(path.read_bytes())
    strings = [msg.message_id, msg.subject, msg.from_addr, msg.from_name, msg.text, msg.html]
    strings += [*msg.headers, *msg.headers.values(), *(a.filename for a in msg.attachments)]
    strings += [part for pair in msg.to + msg.cc + msg.reply_to for part in pair]
    for text in strings:
        text.encode("utf-8")  # no surrogate escapes left over from 8-bit bytes
    for attachment in msg.attachments:
        assert attachment.filename and "/" not in attachment.filename


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe",
        b"Subject: only headers",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
        b"Content-Type: text/plain; charset*0=a; charset*=b\r\n\r\n\xd6\xd0\xce\xc4",
        b"Content-Type: message/rfc822\r\n\r\nSubject: unterminated",
        b"From: <>\r\nTo: undisclosed-recipients:;\r\nDate: yesterday\r\n\r\n",
    ],
)
def test_never_raises_on_scraps(raw):
    parse_message(raw)


# ---------------------------------------------------------------------------------------
# Headers


def test_encoded_word_spacing_per_rfc2047():
    subject = (
        f"Subject: {b64word('确认', 'utf-8')} #000000 {b64word('需求', 'utf-8')}\r\n"
        f" {b64word('变更', 'utf-8')} done\r\n\r\n"
    )
    assert parse_message(subject.encode()).subject == "确认 #000000 需求变更 done"


def test_encoded_words_splitting_a_character_are_joined_before_decoding():
    data = "客户需求".encode("gb18030")
    first, second = base64.b64encode(data[:3]).decode(), base64.b64encode(data[3:]).decode()
    raw = f"Subject: =?gb2312?B?{first}?= =?gb2312?B?{second}?=\r\n\r\n".encode()
    assert parse_message(raw).subject == "客户需求"


def test_raw_8bit_headers_use_utf8_then_the_body_charset():
    big5 = (
        b"From: " + "黃志強".encode("big5") + b" <wong@example.com.hk>\r\n"
        b"Subject: " + "報價確認".encode("big5") + b"\r\n"
        b"Content-Type: text/plain; charset=big5\r\n\r\n" + "內容".encode("big5")
    )
    msg = parse_message(big5)
    assert (msg.subject, msg.from_name, msg.text) == ("報價確認", "黃志強", "內容")
    utf8 = "Subject: 需求确认\r\nContent-Type: text/plain; charset=gbk\r\n\r\n".encode()
    assert parse_message(utf8).subject == "需求确认"


def test_raw_8bit_attachment_name():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=gbk\r\n\r\n" + "见附件".encode("gbk") + b"\r\n"
        b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="'
        + "报价单-20240520.pdf".encode("gbk")
        + b'"\r\n\r\n%PDF\r\n--b--\r\n'
    )
    msg = parse_message(raw)
    assert [a.filename for a in msg.attachments] == ["报价单-20240520.pdf"]


def test_headers_are_unfolded_decoded_and_lowercased():
    raw = (
        f"X-Custom: first\r\n\tcontinued\r\nx-custom: second\r\n"
        f"Subject: {b64word('张喆', 'gbk')}\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert msg.headers == {"x-custom": "first\tcontinued", "subject": "张喆"}


# ---------------------------------------------------------------------------------------
# Attachments


def _attachment(disposition: str, ctype: str = "application/pdf") -> bytes:
    return (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"body\r\n--b\r\nContent-Type: " + ctype.encode() + b"\r\nContent-Disposition: "
        + disposition.encode()
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
    )


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ('attachment; filename="../../etc/passwd"', "_.._etc_passwd"),
        ('attachment; filename="C:\\\\Users\\\\zz\\\\report.pdf"', "C:_Users_zz_report.pdf"),
        ('attachment; filename="...hidden.pdf"', "hidden.pdf"),
        ("attachment; filename*=utf-8''%E6%8A%A5%E4%BB%B7%E2%80%AEfdp.exe", "报价fdp.exe"),
        ("attachment", "attachment-1.pdf"),
        ('attachment; filename="   "', "attachment-1.pdf"),
    ],
)
def test_attachment_filenames_are_sanitized(disposition, expected):
    (attachment,) = parse_message(_attachment(disposition)).attachments
    assert attachment.filename == expected
    assert attachment.payload == b"%PDF-"


def test_long_attachment_name_keeps_its_extension_and_fits_a_file_system():
    # issue 9: capped at 200 characters (600 bytes), the archive export failed with
    # "File name too long"; file systems count bytes.
    raw = _attachment(f'attachment; filename="{"需" * 300}.docx"')
    (attachment,) = parse_message(raw).attachments
    assert len(attachment.filename.encode()) == 200 and attachment.filename.endswith("需.docx")


def test_unnamed_attachment_gets_extension_from_type():
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    raw = _attachment("attachment", xlsx)
    assert parse_message(raw).attachments[0].filename == "attachment-1.xlsx"


# ---------------------------------------------------------------------------------------
# decode_bytes


@pytest.mark.parametrize(
    ("data", "label", "expected"),
    [
        ("张喆 王堃 李镕".encode("gbk"), "gb2312", "张喆 王堃 李镕"),  # GBK under a gb2312 label
        ("张喆".encode("gbk"), "x-gbk", "张喆"),
        ("张喆".encode("gbk"), "cp936", "张喆"),
        ("张喆".encode("gbk"), "EUC-CN", "张喆"),
        ("刘䶮".encode("gb18030"), '"GB2312"', "刘䶮"),
        ("啲嘢".encode("big5hkscs"), "big5", "啲嘢"),
        ("需求".encode(), "x-unknown", "需求"),
        ("需求".encode(), "utf8", "需求"),
        ("需求".encode(), "unicode-1-1-utf-7", "需求"),  # valid label, wrong: falls back
        ("需求".encode(), "base64", "需求"),  # a codec, but not a text encoding
        ("需求".encode("gbk"), None, "需求"),  # undeclared legacy bytes
        ("需求".encode("gbk"), "us-ascii", "需求"),
        ("\ufeff需求".encode(), "utf-8", "需求"),
        (b"\xff\xfe\xfd", "utf-8", "\ufffd\ufffd\ufffd"),
    ],
)
def test_decode_bytes(data, label, expected):
    assert decode_bytes(data, label) == expected


def test_decode_bytes_keeps_a_proven_charset_over_damaged_bytes():
    # UTF-8 with a broken footer must not be re-read as GB18030.
    text = decode_bytes("客户已确认第一期报价".encode() + b"\xd1 footer", "utf-8")
    assert text == "客户已确认第一期报价\ufffd footer"


# ---------------------------------------------------------------------------------------
# HTML


def test_html_to_text_drops_invisible_content_and_collapses_space():
    html = (
        "<html><head><title>t</title><style>p{color:red}</style></head><body>"
        "<script>alert(1)</script><!--[if gte mso 9]><xml><o:x/></xml><![endif]-->"
        "<p>A&nbsp;&nbsp;&nbsp;b &amp; c&lt;d&gt;</p><p>&nbsp;</p><p>&nbsp;</p><p>&nbsp;</p>"
        "<div>line<br>break</div><h1>Title</h1><ul><li>one</li><li>two</li></ul>"
        "<pre>keep\n  lines</pre><![weird[ x <p>end</p></body></html>"
    )
    assert html_to_text(html) == (
        "A b & c<d>\n\nline\nbreak\nTitle\none\ntwo\nkeep\nlines\n<![weird[ x\nend"
    )


def test_html_to_text_joins_cjk_lines_wrapped_in_the_source():
    # CSS Text 3: a source line break between two wide characters is no space.
    html = "<p>经销商每月需手工\r\n整理订单\nExcel\n导出</p>"
    assert html_to_text(html) == "经销商每月需手工整理订单 Excel 导出"


def test_html_tables_nested_and_implied_end_tags():
    html = (
        "<table><tr><td>a<td>b<table><tr><th>x</th><td>y</td></tr></table>"
        "<td>c</tr><tr><td>d</td></tr></table><table></table>"
    )
    assert html_tables(html) == [[["a", "b\nx\ty", "c"], ["d"]], [["x", "y"]], []]
    assert html_to_text(html) == "a\tb\nx\ty\nc\nd"


@pytest.mark.parametrize("header, expected", [
    ("chen.jing@example.cn", [("", "chen.jing@example.cn")]),
    ("=?utf-8?b?6ZmI6Z2Z?= <Chen.Jing@Example.cn>", [("陈静", "chen.jing@example.cn")]),
    ("Wang  Qiang <wq@example.cn>, zhao@example.cn,\r\n  =?gb2312?B?s8K+sg==?= <cj@example.cn>",
     [("Wang Qiang", "wq@example.cn"), ("", "zhao@example.cn"), ("陈静", "cj@example.cn")]),
    ('"Wang, Qiang" <wq@example.cn>', [("Wang, Qiang", "wq@example.cn")]),  # a comma inside quotes
    ("wq@example.cn (Wang Qiang)", [("Wang Qiang", "wq@example.cn")]),  # an RFC 822 comment
    ("undisclosed-recipients:;", []),
    ("Team: a@example.cn, b@example.cn;", [("", "a@example.cn"), ("", "b@example.cn")]),  # a group
    ("a@example.cn <b@example.cn>", [("", "a@example.cn"), ("", "b@example.cn")]),
    ("broken@, <>, x", []),
])
def test_address_headers_in_every_common_form(header, expected):
    msg = parse_message(f"From: a@example.cn\r\nTo: {header}\r\nSubject: x\r\n\r\nbody\r\n".encode())
    assert list(msg.to) == expected


def test_a_charset_whose_codec_refuses_to_decode_never_raises():
    # issue 9: charset=idna raised UnicodeError (not UnicodeDecodeError) and stalled the queue.
    raw = (EMAILS.parent / "hostile" / "idna_charset.eml").read_bytes()
    msg = parse_message(raw)
    assert msg.subject.startswith("中") and msg.text.startswith("中")
    assert decode_bytes(b"\xe4\xb8\xad\xff", "idna").startswith("中")



# ---------------------------------------------------------------------------------------
# Hostile HTML (issue 9): linear time, bounded nesting, the text kept

HOSTILE = EMAILS.parent / "hostile"


def _cell_chars(tables: list[list[list[str]]]) -> int:
    return sum(len(cell) for table in tables for row in table for cell in row)


@pytest.mark.parametrize("closed", [False, True])
def test_deeply_nested_tables_keep_their_text_and_bounded_work(closed):
    # Every open cell got the text of the tables inside it, so 2,000 nested tables made
    # 2,000 ever longer copies (8,000 unclosed ones took 22 s and 305 MB).
    depth = 2000
    html = "".join(f"<table><tr><td>c{i}" for i in range(depth))
    if closed:
        html += "</td></tr></table>" * depth
    tables = html_tables(html)
    assert tables[0][0][0].split("\n")[:2] == ["c0", "c1"]
    assert tables[-1][0][0].endswith(f"c{depth - 1}")  # the innermost listed cell holds the rest
    # A bounded number of tables is followed, so the output is a bounded multiple of the input.
    assert len(tables) <= 16 and _cell_chars(tables) <= 16 * len(html)
    assert html_to_text(html).split("\n") == [f"c{i}" for i in range(depth)]


def test_shallow_nested_tables_are_all_listed():
    html = "<table><tr><td>a" * 5 + "<table><tr><td>k</td><td>v</td></tr></table>"
    tables = html_tables(html)
    assert len(tables) == 6 and tables[-1] == [["k", "v"]]
    assert tables[0] == [["a\na\na\na\na\nk\tv"]]


def test_unclosed_markup_is_text_and_the_tags_after_it_still_count():
    assert html_to_text("<p>a</p><!-- never closed <p>b</p>") == "a\n<!-- never closed\nb"
    assert html_to_text("<p>x <y and more") == "x <y and more"
    assert html_to_text('<a title="1 > 0">link</a>') == "link"


_HOSTILE_HTML = {
    # html.parser searched the rest of the document again for each "<": 90 s for 100 KB.
    "unclosed_tags": '"<a<a " * 20000',
    "unclosed_comments": '"<!--x" * 40000',
    "quotes_hiding_every_gt": '''"<a x='<b>' " * 20000''',
    "unclosed_nested_tables": '"<table><tr><td>" * 8000',  # issue 9: 120 KB, 22 s
    "closed_nested_tables": '"<table><tr><td>x" * 10000 + "</td></tr></table>" * 10000',
}


@pytest.mark.parametrize("name", _HOSTILE_HTML)
def test_hostile_html_is_converted_in_one_pass(name):
    # Well under a second each; the quadratic converter took minutes. The limit is generous
    # so that a loaded machine cannot fail it.
    code = (
        "from parsers.mime import html_tables, html_to_text\n"
        f"html = {_HOSTILE_HTML[name]}\n"
        "html_to_text(html); html_tables(html)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=20, cwd=Path(__file__).parent.parent)


@pytest.mark.parametrize("name", ["nested_tables_unclosed.eml", "unclosed_tags.eml"])
def test_hostile_html_mails_keep_their_text(name):
    msg = parse_message((HOSTILE / name).read_bytes())
    assert msg.text.startswith("沟通主题：")
    if name == "nested_tables_unclosed.eml":
        assert msg.text.endswith("最内层文字")
        assert html_tables(msg.html)[-1][0][0].endswith("最内层文字")


# ---------------------------------------------------------------------------------------
# Hostile MIME structure (issue 9)


def _nested_multipart(depth: int, inner: bytes) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level) for level in range(depth)
    )
    return opening + inner + b"".join(b"\r\n--b%d--\r\n" % level for level in reversed(range(depth)))


def test_ten_thousand_nested_multiparts_keep_the_structure_above_the_depth_limit():
    # The stdlib parser recursed once per level and hit RecursionError; the mail then fell
    # back to its headers, losing the attachment next to the nesting.
    raw = (
        b'From: a@example.cn\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary="top"\r\n\r\n'
        b'--top\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"\r\n\r\n'
        b"%PDF-1.4\r\n--top\r\n"
        + _nested_multipart(10_000, b"Content-Type: text/plain\r\n\r\nthe innermost text\r\n")
        + b"\r\n--top--\r\n"
    )
    msg = parse_message(raw)
    assert [a.filename for a in msg.attachments] == ["a.pdf"]
    assert "the innermost text" in msg.text  # kept, as the text of the part at the limit
    assert msg.text.startswith("--b49")  # the first 49 levels were read as structure


def test_many_sibling_messages_are_not_too_deep():
    parts = b"".join(
        b"--top\r\nContent-Type: message/rfc822\r\n\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(200)
    )
    raw = b'Subject: digest\r\nContent-Type: multipart/mixed; boundary="top"\r\n\r\n' + parts + b"--top--\r\n"
    assert limit_mime_depth(raw) == raw
    attached = parse_message(raw).attached_messages
    assert len(attached) == 200 and parse_message(attached[-1]).subject == "m199"


def test_a_bounce_returning_a_deeply_nested_mail_is_still_read():
    # The returned original nested 5,000 deep: RecursionError, and the bounce was ignored.
    raw = (
        b'Subject: Undelivered\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.cn\r\n\r\n"
        b"Final-Recipient: rfc822; wang.qiang@example.cn\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <abc@liuhen.localhost>\r\n"
        + _nested_multipart(5_000, b"\r\nx\r\n") + b"--B--\r\n"
    )
    report = parse_dsn(raw)
    assert report is not None and [f.address for f in report.failed] == ["wang.qiang@example.cn"]


# ---------------------------------------------------------------------------------------
# Large attachments (issue 9: a 50 MB attachment took 839 MB to process)


def _mail_with_attachment(payload: bytes, newline: bytes = b"\r\n") -> bytes:
    encoded = base64.encodebytes(payload).replace(b"\n", newline)
    return newline.join([
        b"From: a@example.cn", b"Subject: big", b'Content-Type: multipart/mixed; boundary="B"', b"",
        b"--B", b"Content-Type: text/plain; charset=utf-8", b"", "正文".encode(),
        b"--B", b"Content-Type: application/pdf", b'Content-Disposition: attachment; filename="big.pdf"',
        b"Content-Transfer-Encoding: base64", b"", encoded + b"--B--", b"",
    ])


@pytest.mark.parametrize("newline", [b"\r\n", b"\n", b"\r"])
def test_a_large_attachment_is_decoded_from_the_raw_mail_in_pieces(newline):
    payload = bytes(range(256)) * 4000 + b"end"  # 1 MB
    msg = parse_message(_mail_with_attachment(payload, newline))
    assert msg.text == "正文" and [a.filename for a in msg.attachments] == ["big.pdf"]
    attachment = msg.attachments[0]
    assert attachment.payload == payload
    chunks = list(attachment.payload_chunks(100_000))
    assert b"".join(chunks) == payload and max(len(c) for c in chunks) <= 100_000
    out = BytesIO()
    assert attachment.write_payload(out) == len(payload) and out.getvalue() == payload


def test_parsing_a_large_attachment_does_not_copy_it():
    # Python allocations are counted, not the process size: the same on every run. The
    # stdlib parser alone allocated about six times the mail (text, lines, joined, bytes).
    raw = _mail_with_attachment(bytes(range(256)) * 40_000)  # 10 MB, 14 MB encoded
    tracemalloc.start()
    try:
        msg = parse_message(raw)
        parsed = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        written = msg.attachments[0].write_payload(_Discard())
        streamed = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == 10_240_000
    # Streaming holds about a megabyte of it at a time, encoded and decoded.
    assert parsed < len(raw) // 4 and streamed < written // 2


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def test_html_is_read_up_to_a_bound_and_what_comes_first_is_kept():
    # A megabyte of tags took 2.4 s to read twice (text, tables); found by the fuzzer.
    from parsers.mime import MAX_HTML_CHARS

    form = "<table><tr><td>沟通主题：</td><td>智能手表项目-硬件方案评审</td></tr></table><p>正文开头</p>"
    html = form + "<span>填充</span>" * (MAX_HTML_CHARS // 10) + "<p>末尾文字</p>"
    text = html_to_text(html)
    assert text.startswith("沟通主题：\t智能手表项目-硬件方案评审\n正文开头") and "末尾文字" not in text
    assert html_tables(html)[0] == [["沟通主题：", "智能手表项目-硬件方案评审"]]
    assert html_to_text("<p>前文</p><img src='data:image/png;base64," + "A" * MAX_HTML_CHARS + "'>") == "前文"
