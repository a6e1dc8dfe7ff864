"""The new text of a reply: what the person wrote in this mail, without the history.

Responsibility: from the decoded plain-text body of a reply ("\\n" newlines; for an
HTML-only mail the caller converts first with ``parsers.mime.html_to_text``), return only
the text its author typed. Quoted history goes wherever it sits — below the answer
(top-posting) or above and between the answers (bottom-posting with ``>`` quotes) — and so
do trailing phone/app signatures ("发自我的iPhone", "Sent from my iPhone") and ``-- ``
signature blocks. A greeting or sign-off the person typed ("您好", "谢谢！张伟",
"Thanks, Bob") is kept: it is part of what they wrote. Pure: no I/O, no clock.

The body is read once from the top, line by line:

- ``>``-quoted lines (Thunderbird, Apple Mail, Gmail's plain-text part) are dropped
  wherever they are, and the unquoted text around them is kept;
- an attribution line ("On … wrote:", "在 … 写道：", "於 … 寫道:", "张伟 <…> 于… 写道：",
  "30.09.2017, 18:30, "A" <a@b.c>:", NetEase's English "At 2019-08-08 02:26:50, "A" <a@b.c>
  wrote:" or "…, said:"), possibly wrapped over three lines or split into a date line and a
  "Name <addr> wrote:" line (Claws Mail, Sylpheed), is dropped with the ``>`` block right
  below it; when no ``>`` block follows (Outlook, or HTML whose ``<blockquote>`` became
  plain text) everything from it on is history. ``&gt;`` at the start of a line (a text
  part made from escaped HTML) quotes like ``>``;
- a separator naming the original message ("-----Original Message-----",
  "------------------ 原始邮件 ------------------", "-----邮件原件-----"), a header block
  with a sender ("From:/Sent:", "发件人：/发送时间：", "寄件者:/主旨:") or IBM Notes' block of a
  name, a date line and "To:/cc:/Subject:" starts the history;
- a phone/app signature, a ``-- `` line or a mailing-list footer ends the person's text:
  phones put the history right below their signature, often without any header. So does
  a corporate disclaimer ("本邮件及其附件含有…保密信息…", "This e-mail … confidential …
  intended only for …") when nothing of the person's follows it.

When in doubt the text is kept, so a mail with words of its own never comes out empty.
Before anything the person wrote, a line that only looks like an attribution (nothing
below it) or a header block without a date (people type "发件人：/收件人：" into their
answers) is their text, not history; a disclaimer counts only after their text.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["new_text"]

# Marks that change how a line looks to a pattern but not what it says: Windows Mail wraps
# the date of its header block in LEFT-TO-RIGHT MARKs, QQ Mail writes "&nbsp;原始邮件&nbsp;",
# Alimail pads "主　题" with an IDEOGRAPHIC SPACE.
_NORMALIZE = str.maketrans({"\u200b": None, "\u200e": None, "\u200f": None, "\ufeff": None,
                            "\xa0": " ", "\u3000": " "})

# Separator lines that clients put above the quoted original, in the languages of our
# users' clients and of the public fixtures. A bare rule of dashes or underscores (new
# Outlook, Alimail) is not enough on its own: the header block below it decides.
# (Each rule character is matched once, followed by optional spaces: two overlapping
# quantifiers here took seconds to reject a long line of dashes — a hostile mail's stall.)
_SEPARATOR = re.compile(
    r"\s*(?:[-=_*]\s*){2,}(?:"
    r"original message|original|forwarded message|replied message|message d'origine"
    r"|ursprüngliche nachricht|oprindelig besked|oprindelig meddelelse|opprinnelig melding"
    r"|ursprungligt meddelande"
    r"|oorspronkelijk bericht|messaggio originale|mensagem original|mensaje original"
    r"|alkuperäinen viesti|исходное сообщение|oryginalna wiadomość"
    r"|原始邮件|邮件原件|回复的原邮件|原邮件|原始郵件|郵件原件|原郵件"
    r")\s*[-=_*]*\s*",
    re.IGNORECASE,
)

# Header fields of a quoted original, as the header block of each client names them, keys
# with their spaces removed and lowercased ("Envoyé le" -> "envoyéle", "主　题" -> "主题").
# A block needs a sender field: "主题：" or "时间：" alone are also template fields
# (沟通主题：, 期望完成时间：) that people type into their replies.
_SENDER_FIELDS = frozenset({
    "from", "发件人", "發件人", "寄件者", "寄件人",
    "de", "von", "van", "da", "fra", "från", "od", "от", "lähettäjä",
})
_OTHER_FIELDS = frozenset({
    "sent", "date", "to", "cc", "bcc", "subject", "reply-to",
    "发送时间", "發送時間", "发送日期", "寄件日期", "时间", "時間", "日期",
    "收件人", "收件者", "抄送", "抄送人", "密送", "副本", "主题", "主題", "主旨",
    "envoyé", "envoyéle", "à", "a", "objet", "copieà", "sujet", "messagedu",
    "gesendet", "an", "betreff", "datum",
    "verzonden", "aan", "onderwerp",
    "inviato", "oggetto", "data",
    "sendt", "dato", "til", "emne", "skickat", "till", "ämne",
    "wysłano", "do", "temat",
    "отправлено", "кому", "тема", "дата",
    "enviado", "para", "asunto", "assunto",
})
# The fields IBM Notes' sender-less block needs (a recipient and a subject), and those that
# date a block: a sender and a date is what clients write, "发件人：/收件人：" alone is what
# people type into an answer.
_TO_FIELDS = frozenset({
    "to", "收件人", "收件者", "an", "à", "aan", "til", "till", "do", "кому", "para", "a",
})
_SUBJECT_FIELDS = frozenset({
    "subject", "主题", "主題", "主旨", "objet", "sujet", "betreff", "onderwerp", "oggetto",
    "emne", "ämne", "temat", "тема", "asunto", "assunto",
})
_DATE_FIELDS = frozenset({
    "sent", "date", "发送时间", "發送時間", "发送日期", "寄件日期", "时间", "時間", "日期",
    "envoyé", "envoyéle", "gesendet", "datum", "verzonden", "inviato", "data", "sendt", "dato",
    "skickat", "wysłano", "отправлено", "дата", "enviado",
})
# "From: x", Gmail's rendering of Outlook's bold "*From:* x", NetEase Mail Master's table
# "| 发件人 | x |" and that table after html_to_text ("发件人\tx").
_FIELD = re.compile(r"[|*\s]*(?P<key>[^:：|*\t]{1,20}?)[*\s]*(?:[:：]|\t|\|)")
# A wrapped value ("From: Human Resources\n<long-address@…>") or one blank line between
# fields (Outlook HTML with a <p> per field) does not end the block.
_FIELD_GAP = 1
_FIELD_BLOCK_MAX = 12

# The verbs that end an attribution. The Latin ones must start a word ("rewrote:" is not
# one); Chinese needs no space ("10:30写道："). "said" (NetEase's English UI, Mutt, Gnus)
# also ends sentences people type, so it needs the sender's address before it.
_VERB_AT_END = re.compile(
    r"(?:(?<![^\W_])(?:wrote|(?P<said>said)|schrieb|a écrit|ha scritto|escreveu|escribió|schreef|skrev"
    r"|napisał\(a\)|napisała|napisał|napsal|kirjoitti|írta|написал\(а\)|написала|написал|пишет)"
    r"|写道|寫道)\s*(?P<colon>[:：])?\s*(?:-{2,}\s*)?$",
    re.IGNORECASE,
)
_DIGIT_OR_AT = re.compile(r"[\d@]")
# Gmail's "On … wrote" loses its colon when it is wrapped away; Zoho writes
# "---- On … wrote ----". Elsewhere a missing colon means a sentence, not an attribution.
_NO_COLON_LEAD = re.compile(r"-{2,}|On\s")
# Every attribution ends like this: a colon, Gmail's bare "wrote", Zoho's dashes.
_ATTRIBUTION_ENDINGS = (":", "：", "wrote", "-")
# Attributions without a verb: a date or time, then the sender's address in brackets and a
# colon (Yandex, mail.ru, Gmail ja/ru/no, Outlook.com: "26.06.2014, 14:41, "A" <a@b.c>:").
_BARE_ATTRIBUTION = re.compile(r".*?\d{1,2}[:.]\d{2}.*[<(]\s*[^\s<>()]+@[^\s<>()]+\s*[>)]\s*[:：]")
# Lotus/IBM Notes: "Li Na <lina@example.com> wrote on 2019/08/08 02:26:50:" (found with
# str.find: a pattern with four ".*" backtracks cubically on a hostile line).
_WROTE_ON = " wrote on "
_TIME = re.compile(r"\d{1,2}:\d{2}")
_ATTRIBUTION_LINES = 3
_ATTRIBUTION_MAX_CHARS = 400
# Claws Mail and Sylpheed write the date on a line of its own above "Name <addr> wrote:"
# ("On Tue, 13 Jun 2023 12:50:43 +0000\n"Liu, Yi L" <yi.l.liu@intel.com> wrote:").
_DATE_LINE_LEAD = re.compile(r"(?:On\s|在|於).*\d{1,2}:\d{2}")
# A line ending with one of these is cut in the middle of a name or an address, and so is
# one starting with one: the attribution goes on across the break ("… The Hiring Engine
# <\nlong@address> wrote:", Gmail fi: "… John Coe\n<address> kirjoitti:").
_OPENERS = ("<", "(")
_CONTINUATION_STARTS = ("<", "(")

# Phone and app signatures. European clients: "Sent from my iPhone", "Gesendet von Outlook
# für Android<https://aka.ms/…>", "Sent with Sparrow (http://…)"; a comma or a sentence
# after the device ("Sent from my desk, is much easier …") makes it prose.
_APP_SIGNATURE = re.compile(
    r"(?:(?:sent|envoyé|gesendet|verzonden|inviato|enviado|skickat|sendt)\s+"
    r"(?:from|with|via|using|de|depuis|à partir de|avec|von|mit|vom|vanaf|met|da|desde|do"
    r"|från|fra)\s+"
    r"(?:(?:my|mon|ma|meinem|meiner|mijn|il mio|mi|meu|min)\s+)?"
    r"[^\s,;:!?<>()]+(?:\s+[^\s,;:!?<>()]+){0,5}"
    r"|(?:get|download)\s+outlook\s+for\s+(?:ios|android))"
    r"\s*(?:<[^<>]*>|\([^()]*\))?\.?",
    re.IGNORECASE,
)
# Chinese clients: "发自我的iPhone", "从我的 iPhone 发送", "從我的 iPhone 傳送", "寄自我的 iPhone",
# "发自网易邮箱大师", "——来自QQ邮箱", "获取 Outlook for iOS". The phrase must name a device or a
# mail app, and be no sentence: "发自内心地感谢大家", "来自客户的反馈", "从今天起" are prose.
_CJK_APP_SIGNATURE = re.compile(
    r"[-—–\s]*(?:(?:(?:发自|發自|寄自|来自|來自)\s*(?P<mine>我的)?|(?:从|從)\s*(?P<from_mine>我的))"
    r"\s*(?P<device>[\w .+\-]{1,30}?)\s*(?:发送|發送|传送|傳送)?"
    r"|(?:获取|獲取|取得)\s*outlook\s*(?:for|适用于|適用於)?\s*(?:ios|android))",
    re.IGNORECASE,
)
_DEVICE = re.compile(
    r"iphone|ipad|android|手机|手機|平板|邮箱|郵箱|mail|outlook|华为|華為|huawei|荣耀|honor"
    r"|小米|xiaomi|redmi|oppo|vivo|三星|samsung|welink|钉钉|釘釘|飞书|飛書|企业微信|foxmail"
    r"|客户端|客戶端",
    re.IGNORECASE,
)
_ASCII_DEVICE = re.compile(r"[A-Za-z0-9 .+\-]+")

# A text part made from HTML without unescaping it: "&gt; quoted", "&lt;a@b.c&gt;". Only the
# copy the patterns see is unescaped (entities, not "&#10;", so no line is split).
_ENTITIES = (("&gt;", ">"), ("&lt;", "<"), ("&quot;", '"'), ("&#39;", "'"), ("&nbsp;", " "),
             ("&amp;", "&"))

# IBM Notes (R5-R9) quotes the original under the sender's name and a date line, with
# "To:/cc:/Subject:" and no "From:" ("Sara Shackleton\n03/01/2000 07:43 AM\nTo: …").
_NOTES_DATE = re.compile(
    r"\d{1,4}[-/.年]\d{1,2}[-/.月]\d{1,4}日?\s*\d{1,2}:\d{2}(?::\d{2})?\s*(?:[AaPp]\.?[Mm]\.?)?"
    r"|\d{1,4}[-/.年]\d{1,2}[-/.月]\d{1,4}日?\s*(?:上午|下午)\s*\d{1,2}:\d{2}(?::\d{2})?"
)
_NOTES_NAME_MAX_CHARS = 80

# Corporate disclaimers: the mail, its secrecy and what to do with it, all in one line or
# paragraph ("本邮件及其附件含有小米公司的保密信息，仅限于…", "This e-mail and its attachments contain
# confidential information … intended only for …"), or a title line above one.
_DISCLAIMER_SUBJECT = re.compile(
    r"本邮件|此邮件|该邮件|本電子郵件|本郵件|此郵件|本电子邮件|this\s+(?:e-?mail|message|communication)"
    r"|the information (?:contained|in this)",
    re.IGNORECASE,
)
_DISCLAIMER_SECRECY = re.compile(r"保密|机密|秘密|機密|confidential|privileged|proprietary", re.IGNORECASE)
_DISCLAIMER_ACTION = re.compile(
    r"删除|刪除|通知发件人|通知寄件人|仅限|僅限|收件人|intended|recipient|delete|notify", re.IGNORECASE
)
_DISCLAIMER_TITLE = re.compile(
    r"[\W_]*(?:disclaimer|免责声明|免責聲明|保密声明|保密聲明|保密提示|confidentiality notice"
    r"|important notice)[\W_]*",
    re.IGNORECASE,
)
# Long enough not to be a sentence someone typed ("本邮件附件中的报价为保密信息，仅限内部使用。").
_DISCLAIMER_MIN_CHARS = 80
_DISCLAIMER_SCAN_CHARS = 1000
_DISCLAIMER_LINES = 10

_SIGNATURE_DELIMITER = "--"  # RFC 3676 "-- "; many clients trim the trailing space
_LIST_FOOTER_RULE = re.compile(r"_{2,}")

# Gmail re-wraps long quoted lines in its plain-text part and the wrapped tail loses its
# ">". Such a tail sits between two quoted lines, under a long one, and starts in
# lowercase (it continues a sentence); an answer typed between two quotes does not.
_WRAPPED_QUOTE_WIDTH = 60
_LOWERCASE_START = re.compile(r"[a-z]")

# Rule lines, bare ("________") or framing a title ("-----Oprindelig meddelelse-----").
_RULE_OR_BLANK = re.compile(r"[-_=*\s]*|\s*[-_=*]{3,}[^-_=*]{1,40}[-_=*]{3,}\s*")


def new_text(body: str) -> str:
    """The text the person wrote in this reply: quoted history, phone/app signatures,
    ``-- `` signature blocks and trailing disclaimers removed, surrounding blank lines
    stripped, the rest as typed. Where quotes were removed between two kept parts, one
    blank line separates them."""
    lines = body.split("\n")
    clean = _clean_lines(body)
    own_after: list[int | None] | None = None  # computed at the first disclaimer
    segments: list[list[str]] = [[]]
    kept = False  # a line with something in it was kept: what follows may be history
    i = 0
    while i < len(lines):
        if _is_quoted(clean, i):
            segments.append([])
            i += 1
            continue
        end = _attribution_end(clean, i)
        if end is not None:
            below = _next_nonblank(clean, end + 1)
            if below is None and not kept:
                # Only a line that looks like an attribution, with nothing it introduces:
                # it is what the person wrote.
                segments[-1].extend(lines[i : end + 1])
                kept = True
                i = end + 1
                continue
            if below is None or not clean[below].startswith(">"):
                break
            segments.append([])  # bottom-posting: the answer follows the quote
            i = end + 1
            continue
        if _starts_history(clean, i, kept) or _ends_own_text(clean, i):
            break
        if kept and _is_disclaimer_start(clean, i):
            if own_after is None:
                own_after = _own_after(clean)
            if _nothing_own_after(clean, own_after[i + 1]):
                break
        segments[-1].append(lines[i])
        kept = kept or bool(clean[i])
        i += 1
    parts = ("\n".join(_trim(segment)) for segment in segments)
    return "\n\n".join(part for part in parts if part).rstrip()


def _clean_lines(body: str) -> list[str]:
    """The lines as the patterns see them: invisible marks gone, HTML entities that a text
    part kept unescaped resolved, spaces trimmed."""
    text = body.translate(_NORMALIZE)
    if "&" in text:
        for entity, char in _ENTITIES:
            text = text.replace(entity, char)
    return [line.strip() for line in text.split("\n")]


def _is_disclaimer_start(clean: list[str], i: int) -> bool:
    if _DISCLAIMER_TITLE.fullmatch(clean[i]):
        following = _next_nonblank(clean, i + 1)
        return following is not None and _names_disclaimer(clean, following)
    return _names_disclaimer(clean, i)


def _names_disclaimer(clean: list[str], i: int) -> bool:
    # A disclaimer starts on the line that names the mail, not on the signature above it.
    if _DISCLAIMER_SUBJECT.search(clean[i][:_DISCLAIMER_SCAN_CHARS]) is None:
        return False
    return _is_disclaimer(_paragraph(clean, i))


def _paragraph(clean: list[str], i: int) -> str:
    """Line i and the lines below it up to a blank line, as far as a disclaimer is read:
    some companies wrap theirs at 40 columns."""
    parts: list[str] = []
    size = 0
    for line in clean[i : i + _DISCLAIMER_LINES]:
        if not line or size >= _DISCLAIMER_SCAN_CHARS:
            break
        parts.append(line[: _DISCLAIMER_SCAN_CHARS - size])
        size += len(parts[-1])
    return "".join(parts)


def _is_disclaimer(head: str) -> bool:
    return (
        len(head) >= _DISCLAIMER_MIN_CHARS
        and _DISCLAIMER_SECRECY.search(head) is not None
        and _DISCLAIMER_SUBJECT.search(head) is not None
        and _DISCLAIMER_ACTION.search(head) is not None
    )


def _own_after(clean: list[str]) -> list[int | None]:
    """For each line, the first line from it on that could be the person's: not blank, not
    quoted, not a rule, not in a disclaimer's paragraph (None: there is none). A disclaimer
    ends the text only when nothing of the person's comes after it."""
    candidate = [False] * len(clean)
    in_disclaimer = False
    for i, line in enumerate(clean):
        if not line:
            in_disclaimer = False
            continue
        in_disclaimer = in_disclaimer or _is_disclaimer_start(clean, i)
        candidate[i] = not (
            in_disclaimer or line.startswith(">") or _RULE_OR_BLANK.fullmatch(line)
        )
    own_after: list[int | None] = [None] * (len(clean) + 1)
    for i in range(len(clean) - 1, -1, -1):
        own_after[i] = i if candidate[i] else own_after[i + 1]
    return own_after


def _nothing_own_after(clean: list[str], j: int | None) -> bool:
    return (
        j is None
        or _starts_history(clean, j, True)
        or _attribution_end(clean, j) is not None
        or _ends_own_text(clean, j)
    )


def _is_quoted(clean: list[str], i: int) -> bool:
    if clean[i].startswith(">"):
        return True
    return (
        0 < i < len(clean) - 1
        and clean[i - 1].startswith(">")
        and clean[i + 1].startswith(">")
        and _width(clean[i - 1]) >= _WRAPPED_QUOTE_WIDTH
        and _LOWERCASE_START.match(clean[i]) is not None
    )


def _width(line: str) -> int:
    """Display width: a CJK character is as wide as two Latin ones when clients wrap."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def _next_nonblank(clean: list[str], start: int) -> int | None:
    for j in range(start, len(clean)):
        if clean[j]:
            return j
    return None


def _is_attribution(text: str) -> bool:
    if len(text) > _ATTRIBUTION_MAX_CHARS or not text.endswith(_ATTRIBUTION_ENDINGS):
        return False
    verb = _VERB_AT_END.search(text)
    if verb is not None:
        lead = text[: verb.start()]
        if verb.group("said") is not None:
            return "@" in lead and verb.group("colon") is not None
        # A date or an address tells a client's attribution from "as I wrote:".
        return _DIGIT_OR_AT.search(lead) is not None and (
            verb.group("colon") is not None or _NO_COLON_LEAD.match(lead) is not None
        )
    if "@" not in text:
        return False
    wrote_on = text.lower().find(_WROTE_ON)
    if wrote_on > 0 and "@" in text[:wrote_on] and _TIME.search(text, wrote_on):
        return True
    return _BARE_ATTRIBUTION.fullmatch(text) is not None


def _attribution_end(clean: list[str], i: int) -> int | None:
    """Index of the last line of an attribution that starts at line i, or None.

    Clients wrap long attributions (Gmail at ~78 columns, even inside the address), so up
    to three non-blank lines are joined, each wrapping onto the next: a line that does not
    is the person's own, above an attribution that starts lower ("谢谢\n在 … 写道：")."""
    parts: list[str] = []
    for line in clean[i : i + _ATTRIBUTION_LINES]:
        if not line:
            return None
        if parts:
            joined = " ".join(parts)
            # Gmail (no) wraps "<address\n>:": that ">" closes the address, it quotes nothing.
            if line.startswith(">") and joined.count("<") <= joined.count(">"):
                return None
            if not _wraps_on(parts[-1], line):
                return None
        parts.append(line)
        if _is_attribution(" ".join(parts)):
            return i + len(parts) - 1
    return None


def _wraps_on(first: str, second: str) -> bool:
    """Whether an attribution whose line is `first` goes on with line `second`."""
    return (
        first.endswith(_OPENERS)
        or second.startswith(_CONTINUATION_STARTS)
        or _LOWERCASE_START.match(second) is not None  # "…, John Coe\nwrote:", "…\nat 10:18, …"
        or "<" in first  # "张伟 <zhangwei@example.com> 于2024年5月20日周一\n下午3:30写道："
        or (first.endswith(",") and any(c.isdigit() for c in first))  # "On Nov 21, 2014,\n…"
        or (not first.endswith((":", "：")) and _DATE_LINE_LEAD.match(first) is not None)
    )


def _field_key(line: str) -> str | None:
    """The header field a line starts with, as a key of the field sets, or None."""
    match = _FIELD.match(line)
    if match is None:
        return None
    key = "".join(match.group("key").split()).lower()
    return key if key in _SENDER_FIELDS or key in _OTHER_FIELDS else None


def _field_block(clean: list[str], i: int) -> list[tuple[str, str]]:
    """The (key, line) of each field of a header block starting at i; empty if none."""
    fields: list[tuple[str, str]] = []
    gap = 0
    for line in clean[i : i + _FIELD_BLOCK_MAX]:
        key = _field_key(line)
        if key is not None:
            fields.append((key, line))
            gap = 0
        elif fields and gap < _FIELD_GAP:
            gap += 1
        else:
            break
    return fields


def _is_header_block(clean: list[str], i: int, kept: bool) -> bool:
    """Whether a quoted original's header block (a sender and one more field) starts at i.
    Before anything the person wrote, it must also carry a date: a reply that opens with
    "发件人：张伟\n收件人：李娜" is the person's text."""
    fields = _field_block(clean, i)
    keys = {key for key, _ in fields}
    if len(fields) < 2 or not keys & _SENDER_FIELDS:
        return False
    return kept or any(
        key in _DATE_FIELDS and any(c.isdigit() for c in line) for key, line in fields
    )


def _is_notes_block(clean: list[str], i: int) -> bool:
    """IBM Notes: a sender's name (optional), a date line, then To:/cc:/Subject: at i."""
    if _NOTES_DATE.fullmatch(clean[i]) is None:
        name = clean[i]
        if (
            not name
            or len(name) > _NOTES_NAME_MAX_CHARS
            or i + 1 >= len(clean)
            or _NOTES_DATE.fullmatch(clean[i + 1]) is None
        ):
            return False
        i += 1
    start = _next_nonblank(clean, i + 1)
    if start is None or start > i + 2:
        return False
    keys = {key for key, _ in _field_block(clean, start)}
    return bool(keys & _TO_FIELDS) and bool(keys & _SUBJECT_FIELDS)


def _starts_history(clean: list[str], i: int, kept: bool) -> bool:
    return (
        _SEPARATOR.fullmatch(clean[i]) is not None
        or _is_header_block(clean, i, kept)
        or _is_notes_block(clean, i)
    )


def _is_app_signature(line: str) -> bool:
    if _APP_SIGNATURE.fullmatch(line):
        return True
    match = _CJK_APP_SIGNATURE.fullmatch(line)
    if match is None:
        return False
    device = match.group("device")
    if device is None:  # "获取 Outlook for iOS"
        return True
    if "的" in device:
        return False
    if _DEVICE.search(device):
        return True
    # "发自我的 Mate 60 Pro": a model name after "我的".
    mine = match.group("mine") or match.group("from_mine")
    return mine is not None and _ASCII_DEVICE.fullmatch(device) is not None


def _ends_own_text(clean: list[str], i: int) -> bool:
    line = clean[i]
    if line == _SIGNATURE_DELIMITER or _is_app_signature(line):
        return True
    # Mailman's footer ("____\nriak-users mailing list\n…") is the list's, not the person's.
    return (
        _LIST_FOOTER_RULE.fullmatch(line) is not None
        and i + 1 < len(clean)
        and clean[i + 1].lower().endswith("mailing list")
    )


def _trim(segment: list[str]) -> list[str]:
    """Drop blank lines around a kept part, and the rule lines (dashes, underscores) that
    clients draw between the answer and the history they quote."""
    start, end = 0, len(segment)
    while start < end and not segment[start].strip():
        start += 1
    while end > start and _RULE_OR_BLANK.fullmatch(segment[end - 1]):
        end -= 1
    return segment[start:end]
