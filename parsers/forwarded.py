"""The original message inside a forward.

Responsibility: when staff forward a client's mail to the gateway, recover the original —
its sender (name, address), subject, date as written, and body text — plus what the
forwarder wrote above it (where template fields such as "优先级：高" go). The original comes
either attached as ``message/rfc822`` (``unwrap`` prefers it) or inline in the body text
(``find_forward``). Pure functions: no I/O, no database, no clock. For an HTML-only mail the
caller converts the body first with ``parsers.mime.html_to_text``.

An inline original is a header block — a sender line ("From:", "发件人：", "寄件者:") and at
least one date, subject or recipient line — found in one of these positions:

- under a framed title: "-----Original Message-----", "-----邮件原件-----",
  "---------- Forwarded message ---------", "-------- 转发邮件信息 --------", QQ Mail's
  "------------------ 原始邮件 ------------------", Yahoo's title with the whole block
  squeezed onto the same line;
- under a bare rule ("________________________________" from Outlook, a row of dashes
  from Alimail);
- under a title line ending in a colon that says "forward" ("Begin forwarded message:",
  "以下为转发的邮件：", "轉寄的郵件開始：");
- on its own, starting with the sender line, right after the forwarder's text (new
  Outlook, Outlook converted from HTML): then the sender line must carry an address or
  the block must name three fields, because a request can hold a stray "发件人：陈静".

The first such block from the top is the forward; nested forwards stay in its body. Labels
must match a known header name exactly, so template fields like "发起部门/人：" or
"期望完成时间：" never start a block. The body loses the quote marks and indentation the
client added (Apple Mail's "> ", Outlook for Mac's four spaces); the forwarder's text loses
a phone or "-- " signature, as a reply does (``parsers.quotes.new_text``).

Text alone cannot tell a forward from a reply: Outlook and QQ Mail quote the original
under the same block when replying. ``unwrap`` also reads the subject: under "Re:"/"回复："
only a block whose title says "forward" counts; under "Fw:"/"转发：" an attribution line
("On … wrote:", "在 … 写道：" — Outlook for Mac forwards like that) is accepted too, and the
subject without its prefixes stands in when the block names none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from parsers.mime import ParsedMessage, parse_message
from parsers.quotes import new_text

__all__ = ["Forwarded", "find_forward", "unwrap"]


@dataclass(frozen=True)
class Forwarded:
    above: str  # what the forwarder wrote above the forwarded part (stripped); "" if nothing
    sender_name: str  # original sender's display name ("" if none)
    sender_addr: str  # original sender's address, lowercased ("" if it could not be found)
    subject: str  # original subject ("" if none)
    date: str  # original date as written ("" if none)
    body: str  # the original message's text (everything after its header block), stripped


# ---------------------------------------------------------------------------------------
# Header labels

_FROM, _DATE, _SUBJECT, _TO, _CC, _BCC, _REPLY_TO = (
    "from", "date", "subject", "to", "cc", "bcc", "reply_to")

# Header names as forwarding clients write them: Chinese (Outlook, Gmail, Apple Mail,
# Thunderbird, QQ Mail/Foxmail, NetEase, Alimail, WeLink, Coremail), Japanese, and the
# European locales of the public fixtures (Outlook, Gmail, Apple Mail, Thunderbird, Yahoo).
_LABELS: dict[str, tuple[str, ...]] = {
    _FROM: (
        "From", "发件人", "發件人", "寄件者", "寄件人", "发信人", "發信人", "送信元", "差出人",
        "Von", "De", "De la", "Da", "Od", "Fra", "Från", "Van", "Lähettäjä", "Feladó", "Šalje",
        "Saatja", "Gönderen", "Kimden", "От", "Від", "Від кого", "Отправитель", "Expeditorul",
        "Mittente", "Nadawca",
    ),
    _DATE: (
        "Date", "Sent", "发送时间", "發送時間", "发送日期", "發送日期", "寄件日期", "发件时间",
        "發件時間", "发件日期", "时间", "時間", "日期", "送信日時", "日付",
        "Datum", "Fecha", "Data", "Dato", "Päivämäärä", "Päiväys", "Dátum", "Dată", "Tarih",
        "Дата", "Gesendet", "Envoyé", "Envoyé le", "Enviado", "Enviada", "Inviato", "Verzonden",
        "Sendt", "Skickat", "Wysłano", "Lähetetty", "Elküldve", "Odoslané", "Odesláno",
        "Trimis", "Отправлено", "Відправлено", "Gönderilen", "Poslano",
    ),
    _SUBJECT: (
        "Subject", "主题", "主題", "主旨", "标题", "標題", "件名",
        "Betreff", "Objet", "Sujet", "Asunto", "Assunto", "Oggetto", "Onderwerp", "Emne", "Ämne",
        "Aihe", "Tárgy", "Předmět", "Predmet", "Temat", "Subiect", "Subiectul", "Konu", "Тема",
        "Naslov",
    ),
    _TO: (
        "To", "收件人", "收件者", "收信人", "送信先", "宛先",
        "An", "À", "A", "Para", "Aan", "Til", "Till", "Komu", "Pre", "Prima", "Címzett",
        "Vastaanottaja", "Do", "Adresat", "Către", "Destinatarul", "Kime", "Кому", "Pour",
    ),
    _CC: (
        "Cc", "抄送", "抄送人", "抄送者", "副本",
        "Kopie", "Kopie (CC)", "Kopia", "Kopi", "Kopio", "Copie", "Copie à", "Kópia", "Másolat",
        "Másolatot kap", "Bilgi", "Копия", "Копія", "DW",
    ),
    _BCC: ("Bcc", "密送", "密件抄送", "密件副本"),
    _REPLY_TO: ("Reply-To",),
}

_SPACE = re.compile(r"\s+")


def _key(label: str) -> str:
    # Alimail pads "主　题" with an IDEOGRAPHIC SPACE, Thunderbird fr writes "Sujet :".
    return _SPACE.sub("", label).lower()


_KIND_BY_KEY = {_key(label): kind for kind, labels in _LABELS.items() for label in labels}
_ADDRESS_KINDS = frozenset({_FROM, _TO, _CC, _BCC, _REPLY_TO})
# Besides the sender, a block must name one of these: "发件人：" plus a stray line is no block.
_CONFIRMING_KINDS = (_DATE, _SUBJECT, _TO)
# Fields that make a block without a title or rule convincing when the sender has no address.
_BARE_BLOCK_MIN_FIELDS = 3

# "From: x", Thunderbird's "Subject: \tx", Gmail's rendering of Outlook's bold "*From:* x",
# NetEase Mail Master's table "| 发件人 | x |" and that table after html_to_text ("发件人\tx").
_FIELD = re.compile(
    r"[|*\s]*(?P<label>[^:：\t*<>\"|]{1,24}?)\s*\*{0,2}\s*(?:[:：]|\t|\|)\s*\*{0,2}\s*(?P<value>.*)")

# Yahoo squeezes the whole block onto the title line with no separator between fields:
# "----- Forwarded Message ----- From: A <a@b.c>To: "d@e.f" <d@e.f>Sent: …Subject: x".
# Longest labels first, so "Data:" is not read as "…a" plus the Italian "A:".
_INLINE_FIELD = re.compile(
    "(?P<label>"
    + "|".join(re.escape(label) for label in sorted(
        (label for labels in _LABELS.values() for label in labels), key=len, reverse=True))
    + r")\s*[:：]",
    re.IGNORECASE,
)

# ---------------------------------------------------------------------------------------
# Titles and rules above the block

# Words that make a title say "forward" rather than "original message" (which Outlook and
# QQ Mail also write above a quoted reply). From the clients and locales we meet.
_FORWARD_WORDS = re.compile(
    r"forward|fwd|转发|轉發|转寄|轉寄|転送|weitergeleitet|transféré|transmis|réexpédié|reenviad"
    r"|reencaminhad|encaminhad|inoltrat|doorgestuurd|videresend|vidarebefordra|přeposlan"
    r"|přeposílan|preposlan|proslijeđen|továbbított|välitetty|edelleenlähetetty|przekaza"
    r"|przesłan|redirecționat|переадресован|пересыла|пересила|переслан|перенаправлен"
    r"|iletil|ileti başlangıcı",
    re.IGNORECASE,
)
# "-----Original Message-----", "------------------ 原始邮件 ------------------",
# Thunderbird sk "-------- Preposlaná správa --- Forwarded Message --------".
_FRAMED_TITLE = re.compile(r"[-_=*]{2,}\s*(?P<title>[^-_=*\s].{0,58}?)\s*[-_=*]{2,}")
_YAHOO_TITLE = re.compile(r"-{2,}\s*(?P<title>[^-\s].{0,58}?)\s*-{2,}\s+(?P<rest>\S.*)")
# Outlook's "________________________________", Alimail's row of dashes.
_RULE = re.compile(r"[-_=]{5,}")
# Apple Mail "Begin forwarded message:", "以下为转发的邮件：", "轉寄的郵件開始：", MailMate
# "Forwarded message:". Short: a sentence ending in a colon is the forwarder's text.
_TITLE_MAX_CHARS = 50
_COLONS = (":", "：")
# Apple Mail, MailMate and QQ Mail leave blank lines between the title and the block.
_MAX_BLANKS_AFTER_TITLE = 2

# ---------------------------------------------------------------------------------------
# Lines

# Invisible marks that change how a line looks to a pattern but not what it says: Outlook
# for Mac starts the quoted original with a BYTE ORDER MARK, Windows Mail wraps dates in
# LEFT-TO-RIGHT MARKs, QQ Mail and IONOS write NO-BREAK SPACEs ("&nbsp;原始邮件&nbsp;").
_INVISIBLE = str.maketrans({"\ufeff": None, "\u200b": None, "\u200e": None, "\u200f": None})
_MATCHING = str.maketrans({"\xa0": " ", "\u3000": " "})
_QUOTE = re.compile(r"[ \t]*>[ ]?")


@dataclass(frozen=True)
class _Line:
    depth: int  # number of ">" quote levels
    content: str  # without quote marks, spaces normalized, stripped


def _lines(text: str) -> tuple[list[str], list[_Line]]:
    raw = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE).split("\n")
    parsed = []
    for line in raw:
        depth = 0
        rest = line
        while match := _QUOTE.match(rest):
            depth += 1
            rest = rest[match.end():]
        parsed.append(_Line(depth, rest.translate(_MATCHING).strip()))
    return raw, parsed


def _unquote(line: str, levels: int) -> str:
    for _ in range(levels):
        match = _QUOTE.match(line)
        if match is None:
            break
        line = line[match.end():]
    return line


# ---------------------------------------------------------------------------------------
# Header blocks


@dataclass(frozen=True)
class _Block:
    fields: dict[str, str]  # kind -> value of its first line
    end: int  # index of the first line after the block

    @property
    def valid(self) -> bool:
        return _FROM in self.fields and any(kind in self.fields for kind in _CONFIRMING_KINDS)


def _field(content: str) -> tuple[str, str] | None:
    """(kind, value) when the line is a known header field."""
    match = _FIELD.fullmatch(content)
    if match is None:
        return None
    kind = _KIND_BY_KEY.get(_key(match["label"]))
    if kind is None:
        return None
    value = match["value"].strip()
    return kind, value[:-1].strip() if content.startswith("|") and value.endswith("|") else value


def _continues_address(content: str) -> bool:
    # Outlook wraps a long To:/Cc: list, or a sender's address below the name
    # ("From: Human Resources\n<long-address@example.com>").
    return "@" in content and (content.startswith("<") or content.endswith((">", ">;", ">,", ";")))


def _block(lines: list[_Line], start: int) -> _Block:
    """The header block starting at lines[start] (possibly empty)."""
    depth = lines[start].depth
    fields: dict[str, str] = {}
    last: str | None = None
    i = start
    end = start
    while i < len(lines):
        line = lines[i]
        if line.depth != depth and line.content:
            break
        if not line.content:
            # One blank line ends the block only when no new field follows right below it:
            # Outlook converted from HTML has a <p> per field, QQ Mail a blank before "主题:".
            below = lines[i + 1] if i + 1 < len(lines) else None
            found = _field(below.content) if below and below.depth == depth else None
            if found is None or found[0] in fields:
                break
            i += 1
            continue
        found = _field(line.content)
        if found is None:
            if last is not None and last in _ADDRESS_KINDS and _continues_address(line.content):
                fields[last] += " " + line.content
                i += 1
                end = i
                continue
            break
        kind, value = found
        if kind in fields:  # a second "From:" starts the next (nested) block
            break
        fields[kind] = value
        last = kind
        i += 1
        end = i
    return _Block(fields, end)


def _inline_block(rest: str) -> dict[str, str]:
    """Fields of a Yahoo block squeezed onto one line."""
    matches = list(_INLINE_FIELD.finditer(rest))
    if not matches or matches[0].start() != 0:
        return {}
    fields: dict[str, str] = {}
    for match, following in zip(matches, [*matches[1:], None]):
        kind = _KIND_BY_KEY[_key(match["label"])]
        value = rest[match.end(): following.start() if following else len(rest)]
        fields.setdefault(kind, value.strip())
    return fields


# ---------------------------------------------------------------------------------------
# Locating the forward


@dataclass(frozen=True)
class _Found:
    above_end: int  # index of the first line that is not the forwarder's
    body_start: int  # index of the first line of the original's body
    depth: int  # quote depth of the header block
    fields: dict[str, str]
    explicit: bool  # the title says "forward"


def _title(content: str) -> tuple[str, str] | None:
    """(title, squeezed block) when the line is a title or rule above a header block."""
    if (match := _YAHOO_TITLE.fullmatch(content)) and _INLINE_FIELD.match(match["rest"]):
        return match["title"], match["rest"]
    if match := _FRAMED_TITLE.fullmatch(content):
        return match["title"], ""
    if _RULE.fullmatch(content):
        return "", ""
    if (content.endswith(_COLONS) and len(content) <= _TITLE_MAX_CHARS
            and _FORWARD_WORDS.search(content) and _field(content) is None):
        return content, ""
    return None


def _next_content(lines: list[_Line], start: int) -> int | None:
    for i in range(start, min(len(lines), start + _MAX_BLANKS_AFTER_TITLE + 1)):
        if lines[i].content:
            return i
    return None


def _bare_block_convinces(block: _Block) -> bool:
    return "@" in block.fields[_FROM] or len(block.fields) >= _BARE_BLOCK_MIN_FIELDS


def _locate(lines: list[_Line]) -> _Found | None:
    for i, line in enumerate(lines):
        if not line.content:
            continue
        title = _title(line.content)
        if title is not None:
            name, squeezed = title
            explicit = bool(_FORWARD_WORDS.search(name))
            if squeezed:
                fields = _inline_block(squeezed)
                if _Block(fields, i + 1).valid:
                    return _Found(i, i + 1, line.depth, fields, explicit)
            elif (start := _next_content(lines, i + 1)) is not None:
                block = _block(lines, start)
                if block.valid:
                    return _Found(i, block.end, lines[start].depth, block.fields, explicit)
        found = _field(line.content)
        if found is not None and found[0] == _FROM:
            block = _block(lines, i)
            if block.valid and _bare_block_convinces(block):
                return _Found(i, block.end, line.depth, block.fields, False)
    return None


# ---------------------------------------------------------------------------------------
# Senders

# Outlook pasted through HTML doubles every address: "John<mailto:j@x.com> <j@x.com<mailto:
# j@x.com>>".
_MAILTO_LINK = re.compile(r"<mailto:[^<>]*>", re.IGNORECASE)
# Outlook's "Delegate on behalf of Owner", "助理 代表 老板": the first party is kept, as the
# public fixtures expect.
_ON_BEHALF = re.compile(r"\s+(?:on behalf of|代表)\s+.*", re.IGNORECASE)
_ADDRESS_FORMS = (
    re.compile(r"<\s*(?P<addr>[^<>\s]+@[^<>\s]+?)\s*>"),  # Name <a@b.c>, QQ "名字"<a@b.c>;
    re.compile(r"\[\s*mailto:(?P<addr>[^\]\s]+@[^\]\s]+?)\s*\]", re.IGNORECASE),  # Outlook 2013
    re.compile(r"\(\s*<?(?P<addr>[^()<>\s]+@[^()<>\s]+?)>?\s*\)"),  # Name (a@b.c)
    re.compile(r"(?P<addr>[\w.+'-]+@[\w-]+(?:\.[\w-]+)+)"),  # a bare address
)
_NAME_QUOTES = "\"'“”‘’«»„「」 \t,;，；"
# A sender line is a few hundred characters at most; the address patterns backtrack
# quadratically over a hostile line of word characters.
_MAX_SENDER_CHARS = 1000


def _sender(value: str) -> tuple[str, str]:
    """(display name, lowercased address) from a sender line's value."""
    value = _ON_BEHALF.sub("", _MAILTO_LINK.sub("", value[:_MAX_SENDER_CHARS])).strip()
    for form in _ADDRESS_FORMS:
        match = form.search(value)
        if match:
            addr = match["addr"].lower()
            name = value[: match.start()].strip(_NAME_QUOTES)
            return ("" if name.lower() == addr else name), addr
    return value.strip(_NAME_QUOTES), ""


# ---------------------------------------------------------------------------------------
# Bodies


def _body(raw: list[str], start: int, depth: int) -> str:
    lines = raw[start:]
    if depth:
        # Apple Mail and IONOS quote the whole forward; MailMate leaves wrapped lines bare.
        lines = [_unquote(line, depth) for line in lines]
    elif all(_QUOTE.match(line) for line in lines if line.strip()):
        # Missive quotes only the original's body, under an unquoted header block.
        lines = [_unquote(line, 1) for line in lines]
    # A line of NO-BREAK SPACEs (IONOS, Outlook from HTML) is a blank line.
    lines = [line if line.strip() else "" for line in lines]
    # Outlook for Mac indents the original by four spaces.
    cut = min((len(line) - len(line.lstrip(" \t")) for line in lines if line), default=0)
    return "\n".join(line[cut:] for line in lines).strip()


def _above(raw: list[str], end: int) -> str:
    # The forwarder's own text, without a phone or "-- " signature, like a reply's.
    return new_text("\n".join(raw[:end])).strip()


def _forwarded(raw: list[str], found: _Found) -> Forwarded:
    name, addr = _sender(found.fields[_FROM])
    return Forwarded(
        above=_above(raw, found.above_end),
        sender_name=name,
        sender_addr=addr,
        subject=found.fields.get(_SUBJECT, ""),
        date=found.fields.get(_DATE, ""),
        body=_body(raw, found.body_start, found.depth),
    )


def find_forward(text: str) -> Forwarded | None:
    """The inline forward in a text body ("\\n" newlines), or None when there is none."""
    raw, lines = _lines(text)
    found = _locate(lines)
    return _forwarded(raw, found) if found else None


# ---------------------------------------------------------------------------------------
# Subjects and attributions (unwrap only)

# Tags before the prefix: "[EXTERNAL] FW:", "【外部邮件】转发：".
_PREFIX = re.compile(r"\s*(?:[\[【][^\]】]{0,40}[\]】]\s*)*(?P<word>[^\s:：\[\]【】]{1,12})\s*[:：]\s*")
# Forward prefixes of Outlook, Gmail, Foxmail/QQ Mail, NetEase and the European Outlooks
# (de WG, fr TR, es RV, it I, da/no VS, sv VB, fi VL, pl PD, pt-BR ENC, tr İLT, ro Redir.).
_FORWARD_PREFIXES = frozenset({
    "fw", "fwd", "转发", "轉發", "转寄", "轉寄", "wg", "tr", "rv", "i", "vs", "vb", "vl", "pd",
    "enc", "videresend", "ilt", "redir.",
})
_REPLY_PREFIXES = frozenset({"re", "回复", "回覆", "答复", "答覆", "aw", "sv", "odp", "res", "antw"})


def _prefix_word(match: re.Match[str]) -> str:
    # Turkish Outlook's "İLT": lower() leaves a COMBINING DOT ABOVE after the i.
    return match["word"].lower().replace("\u0307", "")


def _subject_kind(subject: str) -> str:
    """"forward", "reply" or "" — by the first prefix of the subject."""
    match = _PREFIX.match(subject)
    if match is None:
        return ""
    word = _prefix_word(match)
    return "forward" if word in _FORWARD_PREFIXES else "reply" if word in _REPLY_PREFIXES else ""


def _strip_forward_prefixes(subject: str) -> str:
    while (match := _PREFIX.match(subject)) and _prefix_word(match) in _FORWARD_PREFIXES:
        subject = subject[match.end():]
    return subject.strip()


# Outlook for Mac forwards with a reply's attribution: "On 28/10/2021 12:46, "John Doe"
# <john.doe@acme.com> wrote:", "在 2024/5/20 10:30，“王芳”<wangfang@example.com> 写入:".
_ATTRIBUTION_VERB = re.compile(
    r"wrote|napsal|skrev|schrieb|escribió|kirjoitti|a écrit|írta|ha scritto|geschreven"
    r"|napisał|escreveu|написал|napísal|yazdı|写道|寫道|写入|寫入",
    re.IGNORECASE,
)
_ATTRIBUTION_ADDRESS = re.compile(r"[<(]\s*<?(?P<addr>[^\s<>()]+@[^\s<>()]+?)>?\s*[>)]")
_QUOTED_NAME = re.compile(r"[\"“«„「](?P<name>[^\"“”«»„「」]+)[\"”»“」]\s*$")
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"\S+")
# Longer lines are prose, and the patterns above need not run over a hostile long line.
_ATTRIBUTION_MAX_CHARS = 400
# The date as written: from its first digit to its last ("2024年5月20日周一 10:30").
_DATE_SPAN = re.compile(r"\d.*\d")


def _attribution_name(before: str) -> tuple[str, str]:
    """(sender's name, the text before it) in the text before an attribution's address."""
    if match := _QUOTED_NAME.search(before):
        return match["name"].strip(), before[: match.start()]
    # "Dne 28/10/2021 12:46, John Doe", "Op … 12:46 heeft John Doe", "在 …，王芳": the name is
    # the run of capitalized (or Chinese) words right before the address, after any comma.
    tail = max(before.rfind(","), before.rfind("，")) + 1
    start = len(before)
    for word in reversed(list(_WORD.finditer(before, tail))):
        text = word.group()
        if any(ch.isdigit() for ch in text) or not (text[0].isupper() or _CJK.match(text)):
            break
        start = word.start()
    return before[start:].strip(), before[:start]


def _by_attribution(raw: list[str], lines: list[_Line], subject: str) -> Forwarded | None:
    for i, line in enumerate(lines):
        if (len(line.content) > _ATTRIBUTION_MAX_CHARS or not line.content.endswith(_COLONS)
                or not _ATTRIBUTION_VERB.search(line.content)):
            continue
        match = _ATTRIBUTION_ADDRESS.search(line.content)
        if match is None:
            continue
        name, before_name = _attribution_name(line.content[: match.start()])
        # "On 28/10/2021 12:46, "John Doe" <…> wrote:" or "John Doe <…> kirjoitti 28/10/2021".
        date = _DATE_SPAN.search(before_name) or _DATE_SPAN.search(line.content[match.end():])
        return Forwarded(
            above=_above(raw, i),
            sender_name=name,
            sender_addr=match["addr"].lower(),
            subject=subject,
            date=date.group() if date else "",
            body=_body(raw, i + 1, line.depth),
        )
    return None


def unwrap(msg: ParsedMessage) -> Forwarded | None:
    """The forwarded original of a mail: the first attached message/rfc822 part, else an
    inline forward in ``msg.text`` (judged together with the subject); None if neither."""
    if msg.attached_messages:
        original = parse_message(msg.attached_messages[0])
        return Forwarded(
            above=new_text(msg.text).strip(),
            sender_name=original.from_name,
            sender_addr=original.from_addr,
            subject=original.subject,
            date=original.headers.get("date", "").strip(),
            body=original.text.strip(),
        )
    raw, lines = _lines(msg.text)
    kind = _subject_kind(msg.subject)
    found = _locate(lines)
    if kind == "forward":
        subject = _strip_forward_prefixes(msg.subject)
        # An attribution above the first block wins: that block is the original's own
        # quoted history, indented under Outlook for Mac's attribution.
        by_attribution = _by_attribution(raw, lines[: found.above_end if found else None], subject)
        if by_attribution is not None:
            return by_attribution
        if found is not None:
            forwarded = _forwarded(raw, found)
            return forwarded if forwarded.subject else replace(forwarded, subject=subject)
        return None
    if found is None or (kind == "reply" and not found.explicit):
        return None  # no forward, or Outlook's or QQ Mail's quoted history under a reply
    return _forwarded(raw, found)

