"""Raw RFC 5322 bytes -> one normalized message.

Responsibility: turn whatever a mail client or a hostile sender put on the wire into a
``ParsedMessage`` of plain Python values (decoded headers, addresses, a plain-text body, the
HTML body, decoded attachments, forwarded-as-attachment messages). Pure functions: no
database, no clock, no I/O. Never raises on malformed MIME: it degrades and keeps what can
be read, because a lost request is worse than an imperfect one.

Built on the stdlib ``email`` package with ``policy.compat32``, which is ~8x faster than
``policy.default`` (see FACTS.md). compat32 leaves headers undecoded and keeps undeclared
8-bit bytes as surrogate escapes, so decoding (RFC 2047, RFC 2231, raw GBK headers) is done
here, through one charset fallback chain that knows the mislabels of Chinese clients.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.header
import email.utils
import functools
import itertools
import mimetypes
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32, compat32
from html import unescape
from io import BytesIO
from typing import BinaryIO

from parsers.outlook import is_outlook_item, msg_to_rfc822

__all__ = [
    "Attachment",
    "ParsedMessage",
    "decode_bytes",
    "html_tables",
    "html_to_text",
    "limit_mime_depth",
    "parse_message",
]


@dataclass(frozen=True)
class _StashedBody:
    """A large body left in the raw mail (see _LARGE_BODY), decoded piece by piece."""

    raw: bytes
    start: int
    end: int
    base64: bool  # else the bytes are the content (7bit, 8bit, binary)

    def chunks(self, size: int) -> Iterator[bytes]:
        view = memoryview(self.raw)[self.start:self.end]
        if not self.base64:
            for at in range(0, len(view), size):
                yield bytes(view[at:at + size])
            return
        # As the stdlib decodes base64: characters outside the alphabet are skipped, the
        # first padding ends the content, a last group of 2 or 3 characters counts as
        # padded; a single one (a truncated transfer) is dropped.
        carry = b""
        for at in range(0, len(view), size):
            text = carry + bytes(view[at:at + size]).translate(None, _NOT_BASE64_OR_PAD)
            text, padding, _ = text.partition(b"=")
            whole = len(text) - len(text) % 4
            if whole:
                yield binascii.a2b_base64(text[:whole])
            carry = text[whole:]
            if padding:
                break
        if len(carry) > 1:
            yield binascii.a2b_base64(carry + b"=" * (4 - len(carry)))


_NOT_BASE64_OR_PAD = bytes(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="))


@dataclass(frozen=True)
class Attachment:
    filename: str  # decoded and sanitized; "attachment-N.ext" when the part has none
    content_type: str  # lowercased, e.g. "application/pdf"
    # The content, transfer encoding (base64 / quoted-printable / uuencode) undone, or where
    # to decode it from.
    _body: bytes | _StashedBody = field(repr=False, compare=False)

    @property
    def payload(self) -> bytes:
        """The whole content in memory. A large file is decoded again on each access:
        payload_chunks() and write_payload() hold a megabyte of it at a time."""
        if isinstance(self._body, bytes):
            return self._body
        return b"".join(self._body.chunks(_CHUNK))

    def payload_chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The content in pieces of at most ``size`` bytes, decoded as they are read."""
        if isinstance(self._body, bytes):
            for at in range(0, len(self._body), size):
                yield self._body[at:at + size]
        else:
            yield from self._body.chunks(size)

    def write_payload(self, out: BinaryIO) -> int:
        """Write the content to ``out`` a piece at a time; returns its size in bytes."""
        written = 0
        for chunk in self.payload_chunks():
            out.write(chunk)
            written += len(chunk)
        return written


_CHUNK = 1 << 20


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str  # "<...>", "" when missing
    subject: str  # decoded, whitespace collapsed
    from_addr: str  # lowercased bare address, "" when missing or unparseable
    from_name: str  # decoded display name, "" when none
    to: tuple[tuple[str, str], ...]  # (display name, lowercased address)
    cc: tuple[tuple[str, str], ...]
    reply_to: tuple[tuple[str, str], ...]
    date: datetime | None  # timezone-aware when the header has an offset
    in_reply_to: str  # "<...>", "" when missing
    references: tuple[str, ...]  # "<...>" ids in order
    headers: Mapping[str, str]  # lowercased name -> first value, unfolded and decoded
    text: str  # first text/plain body part, else the HTML body as text; "\n" newlines
    html: str  # first text/html body part, "" when none
    attachments: tuple[Attachment, ...]
    attached_messages: tuple[bytes, ...]  # message/rfc822 parts (forwarded as attachment)
    # iCalendar texts: text/calendar parts (in the body or attached) and .ics files — what a
    # calendar sends in answer to an invitation (parsers/itip.py reads them).
    calendars: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------
# Charsets

# Labels that clients put on text their codec cannot decode, mapped to the supersets that
# can. Outlook and Foxmail label GBK text "gb2312", and Python's strict gb2312 fails on
# GBK-only characters (喆 堃 镕); GB18030 contains both. Big5 mail from Hong Kong and Taiwan
# uses HKSCS or Microsoft (cp950) extensions. The Japanese and Korean labels likewise stand
# for Microsoft's extended code pages in practice. Keys are Python codec names.
_CHARSET_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "big5": ("big5hkscs", "cp950"),
    "shift_jis": ("cp932",),
    "euc_kr": ("cp949",),
}
# Labels seen in mail that Python does not know under that name.
_CHARSET_ALIASES = {"x-gbk": "gbk"}

# Tried, in order, after the declared charset: UTF-8 is what modern clients send
# unlabelled; GB18030 covers the raw GB2312/GBK of older Chinese clients (QQ exmail writes
# raw GB2312 headers).
_FALLBACK_CHARSETS = ("utf-8", "gb18030")


@functools.lru_cache(maxsize=256)
def _codec(label: str | None) -> str | None:
    """The Python text codec for a MIME charset label, or None when unusable."""
    if not label:
        return None
    # Labels arrive quoted or padded; RFC 2231 section 5 allows "charset*language" in
    # encoded words.
    name = label.strip().strip("\"'").split("*", 1)[0].strip().lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        b"a".decode(name)  # "base64", "zlib" ... are codecs too, but not text encodings
    except UnicodeDecodeError:
        pass  # a real text codec (utf-16 wants two bytes)
    except (LookupError, ValueError):  # UnicodeError is a ValueError: idna, punycode
        return None
    try:
        b"\xff".decode(name, errors="replace")  # the last resort must work for every codec we use
    except (UnicodeError, LookupError, TypeError):
        return None
    return codecs.lookup(name).name


# A codec that has already decoded this many non-ASCII bytes before failing is the right
# one and the bytes are damaged (a truncated character, a mailing-list footer in another
# charset): finish with it rather than re-reading everything as GB18030. GBK text read as
# UTF-8 fails within a character or two, far below this.
_PROVEN_NON_ASCII = 8
_ASCII = bytes(range(128))


def decode_bytes(data: bytes, declared_charset: str | None) -> str:
    """Decode ``data`` as text, trusting ``declared_charset`` only as far as it works.

    Order: the declared charset (widened to its superset, e.g. gb2312 -> gb18030), then
    UTF-8, then GB18030, and finally the declared charset (or UTF-8) with replacement
    characters. A charset that fails only after decoding some non-ASCII text is kept,
    with replacement characters for the damaged bytes. Unknown labels are skipped.
    Never raises.
    """
    declared = _codec(declared_charset)
    candidates = _CHARSET_SUPERSETS.get(declared, (declared,)) if declared else ()
    for codec in (*candidates, *_FALLBACK_CHARSETS):
        try:
            text = data.decode(codec)
            break
        except UnicodeDecodeError as error:  # any other UnicodeError: _codec let no such codec in
            if len(data[: error.start].translate(None, _ASCII)) >= _PROVEN_NON_ASCII:
                text = data.decode(codec, errors="replace")
                break
    else:
        text = data.decode(candidates[0] if candidates else "utf-8", errors="replace")
    # A UTF-8 byte order mark is not part of the text (Notepad, some webmails).
    return text[1:] if text.startswith("\ufeff") else text


def _raw_bytes(value: str) -> bytes:
    """The bytes behind a compat32 string: the parser keeps undeclared 8-bit bytes as
    surrogate escapes."""
    return value.encode("utf-8", "surrogateescape")


def _decode_8bit(raw: bytes, hint: str | None) -> str:
    """Undeclared 8-bit header bytes. UTF-8 first (RFC 6532 allows raw UTF-8 headers and
    legacy bytes are rarely valid UTF-8), then the message's body charset: clients that
    send raw headers write them in the charset of the body (QQ exmail: GB2312, Taiwanese
    clients: Big5, Outlook Express: cp1251 ...), then the fallback chain."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return decode_bytes(raw, hint)


def _as_text(value: str, hint: str | None = None) -> str:
    """A compat32 string made safe to store (no surrogate escapes left)."""
    return value if value.isascii() else _decode_8bit(_raw_bytes(value), hint)


# ---------------------------------------------------------------------------------------
# Headers

_FOLD = re.compile(r"\r?\n")


def _unfold(value: str) -> str:
    # RFC 5322 section 2.2.3: unfolding removes the CRLF; the whitespace after it stays.
    return _FOLD.sub("", value)


def _decode_header(value: str, hint: str | None = None) -> str:
    """Unfold and decode a raw header value: RFC 2047 encoded words and raw 8-bit bytes."""
    value = _unfold(value)
    if "=?" not in value:
        return _as_text(value, hint)
    raw = _raw_bytes(value)
    # decode_header works on str; a latin-1 view keeps every byte one character, and it
    # turns the unencoded stretches back into those same bytes (raw-unicode-escape), so
    # raw 8-bit text next to encoded words still gets decoded as bytes. It also joins
    # adjacent encoded words of one charset before decoding (clients split multibyte
    # characters across words) and drops only the whitespace between two encoded words
    # (RFC 2047 section 6.2), keeping "确认 #123" spaced.
    try:
        chunks = email.header.decode_header(raw.decode("latin-1"))
    except email.errors.HeaderParseError:  # bad base64 in an encoded word
        return _decode_8bit(raw, hint)
    decoded = []
    for chunk, charset in chunks:
        data = chunk.encode("latin-1") if isinstance(chunk, str) else chunk
        decoded.append(decode_bytes(data, charset) if charset else _decode_8bit(data, hint))
    return "".join(decoded)


def _raw_headers(msg: Message) -> dict[str, list[str]]:
    """Header name (lowercased) -> raw values in order of appearance."""
    found: dict[str, list[str]] = {}
    # raw_items(), not get()/items(): for a value with 8-bit bytes compat32 returns a
    # Header object whose str() has replaced them with U+FFFD.
    for name, value in msg.raw_items():
        found.setdefault(_as_text(name).strip().lower(), []).append(value)
    return found


class _Headers(Mapping[str, str]):
    """Header name (lowercased) → first value, decoded when first read: most headers are only
    asked whether they are there, and decoding every one was a fifth of parsing a mail."""

    def __init__(self, raw: dict[str, list[str]], hint: str | None):
        self._raw, self._hint = raw, hint
        self._decoded: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._decoded:
            self._decoded[name] = _decode_header(self._raw[name][0], self._hint)
        return self._decoded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return repr(dict(self))


def _addresses(values: list[str], hint: str | None) -> tuple[tuple[str, str], ...]:
    # Split the raw text first, decode each display name afterwards: a decoded name may
    # contain commas or angle brackets that would split the list wrongly. Entries without
    # an "@" (empty groups like "undisclosed-recipients:;", stray words) are dropped.
    if not values:
        return ()
    result = []
    unfolded = [_unfold(v) for v in values]
    try:
        pairs = _simple_addresses(unfolded) or email.utils.getaddresses(unfolded)
    except RecursionError:
        # The stdlib address parser recurses once per ':'/',' and overflows on a hostile
        # header; fall back to the bare addresses it contains.
        pairs = [("", addr) for v in values for addr in _BARE_ADDRESS.findall(v)]
    for name, addr in pairs:
        addr = _as_text(addr, hint).strip().lower()
        if "@" in addr:
            result.append((" ".join(_decode_header(name, hint).split()), addr))
    return tuple(result)


_BARE_ADDRESS = re.compile(r"[^\s<>,;:\"'()]+@[^\s<>,;:\"'()]+")
# `a@b.cn`, `Name <a@b.cn>`, `=?utf-8?b?…?= <a@b.cn>`, comma-separated: nearly every header.
# Anything with quotes, comments, groups, escapes or domain literals goes to the stdlib parser
# (pure Python, a fifth of parsing a mail); on these forms both give the same pairs.
_SIMPLE_ADDRESS = re.compile(r"\s*(?:([^<>@]*?)\s*<([^<>\s@,]+@[^<>\s@,]+)>|([^<>\s@,]+@[^<>\s@,]+))\s*")
_NOT_SIMPLE = re.compile(r'["(\\:;\[]')


def _simple_addresses(values: list[str]) -> list[tuple[str, str]] | None:
    pairs = []
    for value in values:
        if _NOT_SIMPLE.search(value):
            return None
        for item in value.split(","):
            if not item.strip():
                continue
            m = _SIMPLE_ADDRESS.fullmatch(item)
            if m is None:
                return None
            pairs.append(("", m.group(3)) if m.group(3) is not None else (m.group(1), m.group(2)))
    return pairs
_MSG_ID = re.compile(r"<[^<>]*>")


def _message_ids(value: str) -> list[str]:
    # Folding may put whitespace inside a long id; an id never contains any (RFC 5322 3.6.4).
    return ["".join(found.split()) for found in _MSG_ID.findall(value)]


def _first_message_id(value: str) -> str:
    ids = _message_ids(value)
    return ids[0] if ids else "".join(value.split())


def _parse_date(value: str) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # unparseable or impossible
        return None


# ---------------------------------------------------------------------------------------
# Body parts


def _extension_table() -> mimetypes.MimeTypes:
    # The stdlib's built-in table only (the module-level functions also read the host's
    # mime.types, which would make generated names depend on the machine), plus types
    # common in business mail that Python 3.11's table lacks.
    table = mimetypes.MimeTypes()
    for ctype, extension in (
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
        ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ".pptx"),
        ("application/vnd.rar", ".rar"),
        ("application/x-rar-compressed", ".rar"),
        ("application/x-zip-compressed", ".zip"),
        ("application/x-7z-compressed", ".7z"),
        ("text/calendar", ".ics"),
    ):
        table.add_type(ctype, extension)
    return table


_MIME_TYPES = _extension_table()

# In UTF-8 bytes: file systems cap a name at 255 bytes (not characters; a Chinese character
# takes three), and the archive export puts "<id>-" in front.
_MAX_FILENAME_BYTES = 200

# message/global is message/rfc822 with UTF-8 headers (RFC 6532).
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})

# "; name=value" with value a quoted string (may contain ";") or a bare token (may
# contain spaces: mailers leave long names unquoted).
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:\\.|[^"\\])*"|[^;]*)')

Params = dict[str, str | tuple[str | None, str | None, str]]


def _params(part: Message, header: str) -> Params:
    """Parameters of a Content-Type / Content-Disposition header, RFC 2231 decoded:
    plain values are str, extended ones (charset, language, latin-1 octets) tuples."""
    raw = next((value for name, value in part.raw_items() if name.lower() == header), "")
    # Parsed here rather than with Message.get_param(): compat32 hands get_param a Header
    # object for 8-bit values, losing the raw bytes of non-ASCII filenames.
    found = _PARAM.findall(_unfold(raw))
    pairs = [("", "")] + [(name.lower(), value.strip()) for name, value in found]
    try:
        decoded = email.utils.decode_params(pairs)[1:]
    except TypeError:
        # decode_params sorts RFC 2231 continuations and fails when a sender mixes
        # "name*" with "name*0": keep the values as they are.
        decoded = pairs[1:]
    params: Params = {}
    for name, value in decoded:
        if isinstance(value, tuple):
            value = (value[0], value[1], email.utils.unquote(value[2]))
        else:
            value = email.utils.unquote(value)
        params.setdefault(name, value)
    return params


def _charset(params: Params) -> str | None:
    value = params.get("charset")
    if isinstance(value, tuple):  # RFC 2231 encoded charset parameter
        value = value[2]
    return _as_text(value) if value else None


def _filename(disposition: Params, content_type: Params, hint: str | None) -> str | None:
    for value in (disposition.get("filename"), content_type.get("name")):
        if isinstance(value, tuple):
            # RFC 2231 (charset, language, %-decoded octets as latin-1 characters).
            charset, _language, octets = value
            decoded = decode_bytes(octets.encode("latin-1", "surrogateescape"), charset)
        elif value is not None:
            # Outlook puts RFC 2047 encoded words inside the quoted name (against RFC
            # 2047 section 5); Chinese clients also send raw GBK bytes.
            decoded = _decode_header(value, hint)
        else:
            continue
        if decoded.strip():
            return decoded
    return None


def _sanitize_filename(name: str, index: int, content_type: str) -> str:
    # macOS (Apple Mail) sends decomposed (NFD) names.
    name = unicodedata.normalize("NFC", name)
    name = name.replace("/", "_").replace("\\", "_")
    # Control and format characters (incl. U+202E right-to-left override, used to
    # disguise "gpj.exe" as "exe.jpg") and stray surrogates.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = name.strip().lstrip(".").strip()
    if len(name.encode()) > _MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) < 16:
            name = _utf8_prefix(stem, _MAX_FILENAME_BYTES - len(ext.encode()) - 1).rstrip() + "." + ext
        else:
            name = _utf8_prefix(name, _MAX_FILENAME_BYTES).rstrip()
    if name:
        return name
    return f"attachment-{index}{_MIME_TYPES.guess_extension(content_type) or '.bin'}"


def _utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 form fits in `limit` bytes (whole characters)."""
    return text.encode()[:limit].decode("utf-8", errors="ignore")


_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


_UUENCODINGS = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})


def _body(part: Message, stash: _Stash | None) -> bytes | _StashedBody:
    """The content of a leaf part: left in the raw mail when it was cut out (see _Stash)."""
    if stash is not None:
        payload = part.get_payload()
        if isinstance(payload, str) and stash.text_prefix in payload:
            span = stash.span_of(payload)
            # The stdlib's reading of the header, as get_payload(decode=True) has it.
            encoding = str(part.get("content-transfer-encoding", "")).lower()
            if span and encoding != "quoted-printable" and encoding not in _UUENCODINGS:
                return _StashedBody(stash.raw, span[0], span[1], base64=encoding == "base64")
            restored = stash.restore(payload.encode("ascii", "surrogateescape"))
            part.set_payload(restored.decode("ascii", "surrogateescape"))
    return _payload(part)


def _body_bytes(part: Message, stash: _Stash | None) -> bytes:
    body = _body(part, stash)
    return body if isinstance(body, bytes) else b"".join(body.chunks(_CHUNK))


def _payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return b""
    if any(isinstance(defect, email.errors.InvalidBase64LengthDefect) for defect in part.defects):
        # A truncated transfer left 4n+1 base64 characters and the stdlib returned the
        # encoded text unchanged: decode every complete 4-character group instead.
        encoded = _NOT_BASE64.sub(b"", data)
        data = binascii.a2b_base64(encoded[: len(encoded) - len(encoded) % 4])
    return data


class _AsReceived(Compat32):
    """compat32 writing each header as it was received, its folding kept. compat32 itself
    refolds every ASCII value with email.header.Header, whose splitting is quadratic in a
    value's length: 200 KB of "a, a, …" in an attached mail's header took 30 s."""

    def fold_binary(self, name: str, value: str) -> bytes:
        if not isinstance(value, str):  # a Header set by code, not parsed: compat32's way
            return super().fold_binary(name, value)
        return f"{name}: {value}{self.linesep}".encode("utf-8", "surrogateescape")


def _message_bytes(part: Message, linesep: str, stash: _Stash | None) -> bytes:
    """Raw bytes of a message/rfc822 part, regenerated from the parsed tree (compat32
    keeps header values as received; no byte offsets are recorded)."""
    if not part.is_multipart():  # left unparsed (headers-only fallback)
        return _body_bytes(part, stash)
    out = BytesIO()
    policy = _AsReceived(linesep=linesep)
    for inner in part.get_payload():
        if isinstance(inner, Message):
            BytesGenerator(out, mangle_from_=False, policy=policy).flatten(inner)
    data = stash.restore(out.getvalue()) if stash is not None else out.getvalue()
    # RFC 2046 section 5.2.1 forbids encoding message/rfc822, RFC 6532 allows it for
    # message/global, and some clients do it anyway; the parser then sees the encoded
    # text as a header-less message.
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        try:
            data = binascii.a2b_base64(b"".join(data.split()))
        except binascii.Error:
            pass  # keep the undecoded text: better than nothing
    elif cte == "quoted-printable":
        data = binascii.a2b_qp(data)
    return data


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _leaves(msg: Message) -> Iterator[tuple[Message, str]]:
    """(part, content type) of the leaf and message/rfc822 parts in document order, not
    entering forwarded messages (their text and attachments belong to the forwarded
    mail)."""
    stack = [msg]
    while stack:
        part = stack.pop()
        ctype = part.get_content_type()
        if not ctype.isascii():  # 8-bit bytes in the type itself come back as U+FFFD
            ctype = "application/octet-stream"
        maintype = ctype.partition("/")[0]
        if maintype == "multipart":
            # is_multipart(), not get_payload(): for 8-bit text get_payload() looks up
            # the charset parameter, which can raise (see _params).
            if part.is_multipart():
                stack.extend(reversed([p for p in part.get_payload() if isinstance(p, Message)]))
            else:
                # No boundary line found (or the headers-only fallback): the parser kept
                # the body as text, which is the most that can be read from it.
                yield part, "text/plain"
        elif maintype != "message" or ctype in _MESSAGE_TYPES:
            # Other message/* types (delivery-status, disposition-notification,
            # external-body) are header blocks: neither body text nor a file.
            yield part, ctype


def _build(msg: Message, linesep: str, stash: _Stash | None) -> ParsedMessage:
    parts = [(part, ctype, _params(part, "content-type")) for part, ctype in _leaves(msg)]
    # The body's charset, for header and filename bytes sent without any declaration.
    hint = next((_charset(params) for _, _, params in parts if "charset" in params), None)

    raw_headers = _raw_headers(msg)
    headers = _Headers(raw_headers, hint)
    senders = _addresses(raw_headers.get("from", []), hint)

    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    attached: list[bytes] = []
    calendars: list[str] = []
    for part, ctype, params in parts:
        if ctype in _MESSAGE_TYPES:
            attached.append(_message_bytes(part, linesep, stash))
            continue
        charset = _charset(params)
        filename = _filename(_params(part, "content-disposition"), params, charset or hint)
        if ctype in _CALENDAR_TYPES or (filename or "").lower().endswith(".ics"):
            calendars.append(decode_bytes(_body_bytes(part, stash)[:_MAX_CALENDAR], charset))
        is_attachment = part.get_content_disposition() == "attachment"
        if not is_attachment and ctype in ("text/plain", "text/html"):
            # The first plain and the first HTML part are the body (multipart/alternative,
            # multipart/related); a later one carrying a filename is an attached file.
            if ctype == "text/plain" and text is None:
                text = decode_bytes(_body_bytes(part, stash), charset)
                continue
            if ctype == "text/html" and html is None:
                html = decode_bytes(_body_bytes(part, stash), charset)
                continue
            is_attachment = filename is not None
        elif not is_attachment:
            # Inline images without a name are cid: pictures (signature logos); unnamed
            # text/* parts (text/rfc822-headers in bounces) are no files either.
            maintype = ctype.partition("/")[0]
            is_attachment = filename is not None or maintype not in ("image", "text")
        if is_attachment:
            attachments.append(
                Attachment(
                    filename=_sanitize_filename(filename or "", len(attachments) + 1, ctype),
                    content_type=ctype,
                    _body=_body(part, stash),
                )
            )

    # An Outlook item dragged into a mail (a client's mail forwarded from Outlook) is that
    # mail, as an attached .eml is; the file stays an attachment too.
    attached += filter(None, (msg_to_rfc822(a.payload) for a in attachments
                              if is_outlook_item(a.filename, a.content_type)))
    html = html or ""
    # A whitespace-only text part next to real HTML (some webmail composers) is no body.
    if not (text or "").strip() and html:
        text = html_to_text(html)
    return ParsedMessage(
        message_id=_first_message_id(headers.get("message-id", "")),
        subject=" ".join(headers.get("subject", "").split()),
        from_addr=senders[0][1] if senders else "",
        from_name=senders[0][0] if senders else "",
        to=_addresses(raw_headers.get("to", []), hint),
        cc=_addresses(raw_headers.get("cc", []), hint),
        reply_to=_addresses(raw_headers.get("reply-to", []), hint),
        date=_parse_date(headers.get("date", "")),
        in_reply_to=_first_message_id(headers.get("in-reply-to", "")),
        references=tuple(_message_ids(headers.get("references", ""))),
        headers=headers,
        text=_normalize_newlines(text or ""),
        html=html,
        attachments=tuple(attachments),
        attached_messages=tuple(attached),
        calendars=tuple(calendars),
    )


_CALENDAR_TYPES = ("text/calendar", "application/ics")
_MAX_CALENDAR = 1 << 20  # an answer to an invitation is a few KB


# The stdlib parser recurses once per multipart or message/* level, in a time that grows
# with the square of the depth, and fails near 1,000 levels (a hostile mail nested 10,000).
# Mail nests a few levels (three per message forwarded as an attachment).
_MAX_MIME_DEPTH = 50
# The stdlib parser holds a body several times over while parsing (as text, as a list of
# lines, joined, encoded again): a 50 MB attachment took 630 MB. Leaf bodies this large are
# cut out before it runs and decoded from the raw bytes when asked for — which is also
# faster from a few KB up: the stdlib feeds a body line by line (a 50 KB .docx form cost
# 3 ms to parse that way; bench/attachments.py).
_LARGE_BODY = 16 * 1024
_NESTING_TYPE = re.compile(rb"(?i)(?:multipart|message)/")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n|\Z)")
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[ \t]")  # the stdlib's test
_CONTENT_TYPE_NAME = re.compile(rb"(?i)content-type:")
_TRANSFER_ENCODING_NAME = re.compile(rb"(?i)content-transfer-encoding:")
_BOUNDARY = re.compile(rb'(?i);\s*boundary\s*=\s*(?:"([^"]*)"|([^;\s]*))')
_TRAILING_NEWLINE = re.compile(rb"(?:\r\n|\r|\n)\Z")
# Transfer encodings decoded from a cut-out body; the others stay with the stdlib.
_STREAMED_ENCODINGS = frozenset({b"base64", b"", b"7bit", b"8bit", b"binary"})


def _nesting(content_type: bytes) -> tuple[str, bytes]:
    """("multipart", boundary), ("message", b"") or ("", b"") for a Content-Type header."""
    value = content_type.partition(b":")[2]
    ctype = value.split(b";", 1)[0].strip().lower()
    if ctype.startswith(b"multipart/"):
        found = _BOUNDARY.search(value)
        boundary = (found.group(1) if found.group(1) is not None else found.group(2)) if found else b""
        return ("multipart", boundary.rstrip()) if boundary.strip() else ("", b"")
    if ctype.startswith(b"message/") and ctype != b"message/delivery-status":
        return "message", b""  # its body is a message with headers of its own
    return "", b""


def _delimiter(line: bytes, open_parts: list[bytes]) -> tuple[int, bool] | None:
    """(index in open_parts, closes) when ``line`` is a boundary line of an open multipart."""
    if not line.startswith(b"--"):
        return None
    marker = line[2:].rstrip(b"\r\n").rstrip(b" \t")
    closes = marker.endswith(b"--") and marker[:-2] in open_parts
    boundary = marker[:-2] if closes else marker
    if not boundary or boundary not in open_parts:
        return None
    return len(open_parts) - 1 - open_parts[::-1].index(boundary), closes


def _line(raw: bytes, pos: int) -> re.Match[bytes]:
    line = _LINE.match(raw, pos)
    assert line is not None  # the pattern matches everywhere
    return line


@dataclass(frozen=True)
class _Part:
    """What _layout needs of a header block."""

    kind: str  # "multipart", "message", "" for a leaf
    boundary: bytes
    content_type_at: int  # offset of the Content-Type header, -1 when there is none
    streamable: bool  # a transfer encoding that _StashedBody decodes
    end: int  # where the body starts


def _header_block(raw: bytes, pos: int, open_parts: list[bytes]) -> _Part:
    content_type = encoding = b""
    content_type_at, continuing = -1, b""
    while pos < len(raw):
        line = _line(raw, pos)
        text = line.group()
        if _delimiter(text, open_parts):
            break  # a part with no body
        if not text.strip(b"\r\n"):
            pos = line.end()
            break
        if not _HEADER_LINE.match(text):
            break  # the stdlib starts the body at a line that is no header
        if text[0] in b" \t":
            if continuing == b"type":
                content_type += text
            elif continuing == b"encoding":
                encoding += text
        elif content_type_at < 0 and _CONTENT_TYPE_NAME.match(text):
            content_type, content_type_at, continuing = text, line.start(), b"type"
        elif not encoding and _TRANSFER_ENCODING_NAME.match(text):
            encoding, continuing = text.partition(b":")[2].lstrip(b" \t"), b"encoding"
        else:
            continuing = b""
        pos = line.end()
    kind, boundary = _nesting(content_type)
    # message/delivery-status is no leaf to the stdlib either: its body is header blocks.
    streamable = encoding.rstrip(b"\r\n").lower() in _STREAMED_ENCODINGS and \
        not content_type.partition(b":")[2].lstrip().lower().startswith(b"message/")
    return _Part(kind, boundary, content_type_at, streamable, pos)


class _DashedLines:
    """Finds the lines that start with "--" (those that may be boundaries) at the speed of
    bytes.find: a regular expression with a look-behind took 3 s over 70 MB."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._next: dict[bytes, int] = {}  # needle -> its next occurrence found, -1 for none

    def _find(self, needle: bytes, pos: int) -> int:
        known = self._next.get(needle, -2)
        if known == -1 or known >= pos:
            return known  # nothing found before from an earlier position, or still ahead
        self._next[needle] = self._raw.find(needle, pos)
        return self._next[needle]

    def next(self, pos: int) -> int:
        """Start of the first line at or after ``pos`` (a line start) that begins with "--"."""
        if self._raw.startswith(b"--", pos):
            return pos
        found = [at + 1 for at in (self._find(b"\n--", pos), self._find(b"\r--", pos)) if at >= 0]
        return min(found) if found else -1


@dataclass(frozen=True)
class _Layout:
    too_deep: tuple[int, ...]  # offsets of the Content-Type headers of parts below the limit
    large_bodies: tuple[tuple[int, int], ...]  # (start, end) of leaf bodies to cut out


def _layout(raw: bytes) -> _Layout:
    """Where the parts nested too deep and the large leaf bodies are. Reads headers and
    boundary lines as the stdlib parser does, closely enough for both: a body is only cut
    out when no line in it starts with "--", so that no boundary can be inside it."""
    open_parts: list[bytes] = []  # boundaries of the enclosing multiparts, b"" for message/*
    too_deep: list[int] = []
    large: list[tuple[int, int]] = []
    pos, in_headers = 0, True
    dashes = _DashedLines(raw)
    while pos < len(raw):
        leaf: _Part | None = None
        if in_headers:
            part = _header_block(raw, pos, open_parts)
            pos = part.end
            if part.kind and len(open_parts) >= _MAX_MIME_DEPTH:
                too_deep.append(part.content_type_at)
                leaf = part
            elif part.kind:
                open_parts.append(part.boundary)
                if part.kind == "message":
                    continue  # the headers of the message inside follow
            else:
                leaf = part
        # A body, preamble or epilogue, up to the next boundary line of an open multipart.
        body_start, clean, found = pos, True, None
        while found is None:
            start = dashes.next(pos)
            if start < 0:
                pos = len(raw)
                break
            line = _line(raw, start)
            found = _delimiter(line.group(), open_parts)
            pos = line.start() if found else line.end()
            clean = clean and found is not None
        if leaf and clean and leaf.streamable and leaf.content_type_at >= 0 and b"" not in open_parts:
            # Inside a message/* part the stdlib's tree is written out again as bytes
            # (attached_messages): its bodies stay in it.
            body_end = pos
            if found:  # the line break before a boundary belongs to the boundary
                newline = _TRAILING_NEWLINE.search(raw, body_start, pos)
                body_end = newline.start() if newline else pos
            if body_end - body_start >= _LARGE_BODY:
                large.append((body_start, body_end))
        if found is None:
            break
        index, closes = found
        del open_parts[index + (0 if closes else 1):]
        pos, in_headers = _line(raw, pos).end(), not closes
    return _Layout(tuple(too_deep), tuple(large))


def _edited(raw: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """``raw`` with each (start, end) range, in order and not overlapping, replaced."""
    pieces, pos = [], 0
    for start, end, replacement in edits:
        pieces += [raw[pos:start], replacement]
        pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces)


def _relabelled(raw: bytes, too_deep: tuple[int, ...]) -> list[tuple[int, int, bytes]]:
    # Each becomes a text/plain leaf: its content stays readable, no deeper part is parsed.
    edits = []
    for offset in too_deep:
        newline = b"\r\n" if raw.find(b"\r\n", offset, offset + 4096) >= 0 else b"\n"
        edits.append((offset, offset, b"Content-Type: text/plain" + newline + b"X-Too-Deep-"))
    return edits


def _needs_layout(raw: bytes) -> bool:
    if len(raw) >= _LARGE_BODY:
        return True
    return sum(1 for _ in itertools.islice(_NESTING_TYPE.finditer(raw), _MAX_MIME_DEPTH + 1)) > _MAX_MIME_DEPTH


def limit_mime_depth(raw: bytes) -> bytes:
    """``raw`` with every multipart or message/* part nested deeper than _MAX_MIME_DEPTH
    relabelled text/plain: its content is kept as text and the stdlib parser's recursion
    stays bounded."""
    if not _needs_layout(raw):
        return raw
    too_deep = _layout(raw).too_deep
    return _edited(raw, _relabelled(raw, too_deep)) if too_deep else raw


class _Stash:
    """Large bodies cut out of a raw mail before the stdlib parses it, each replaced by a
    marker that occurs nowhere in the mail."""

    def __init__(self, raw: bytes, spans: tuple[tuple[int, int], ...]) -> None:
        token = 0
        while b"liuhen-stash-%d-" % token in raw:
            token += 1
        self.prefix = b"liuhen-stash-%d-" % token
        self.text_prefix = self.prefix.decode()
        self._marker = re.compile(re.escape(self.prefix) + rb"(\d+)")
        self.raw, self.spans = raw, spans

    def cuts(self) -> list[tuple[int, int, bytes]]:
        return [(start, end, self.prefix + b"%d" % index) for index, (start, end) in enumerate(self.spans)]

    def span_of(self, payload: str) -> tuple[int, int] | None:
        """The span a payload stands for when it is exactly one marker."""
        found = self._marker.fullmatch(payload.encode("ascii", "surrogateescape"))
        return self.spans[int(found.group(1))] if found and int(found.group(1)) < len(self.spans) else None

    def restore(self, data: bytes) -> bytes:
        """``data`` with every marker replaced by the bytes it stands for (the stdlib read the
        structure differently from _layout and a marker ended up inside a larger text)."""
        if self.prefix not in data:
            return data

        def original(found: re.Match[bytes]) -> bytes:
            index = int(found.group(1))
            if index >= len(self.spans):
                return found.group()
            return self.raw[self.spans[index][0]:self.spans[index][1]]

        return self._marker.sub(original, data)


def _prepared(raw: bytes) -> tuple[bytes, _Stash | None]:
    """What the stdlib parser is given: parts nested too deep relabelled, large bodies cut
    out (and the stash that gives them back)."""
    if not _needs_layout(raw):
        return raw, None
    layout = _layout(raw)
    stash = _Stash(raw, layout.large_bodies) if layout.large_bodies else None
    edits = _relabelled(raw, layout.too_deep) + (stash.cuts() if stash else [])
    return (_edited(raw, sorted(edits)) if edits else raw), stash


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one raw message. Never raises on malformed input. The message keeps a
    reference to ``raw``: large attachments are decoded from it when read."""
    linesep = "\r\n" if b"\r\n" in raw[:4096] else "\n"
    try:
        prepared, stash = _prepared(raw)
        return _build(email.message_from_bytes(prepared, policy=compat32), linesep, stash)
    except Exception:
        # The stdlib parser has crash paths on hostile input (e.g. a boundary parameter
        # with mixed RFC 2231 continuations raises TypeError while splitting parts).
        # Headers alone never need the parameters: keep them and the body as text.
        headers_only = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
        return _build(headers_only, linesep, None)


# ---------------------------------------------------------------------------------------
# HTML

# Elements that start and end a line. Cells (td, th) are separated by a tab instead.
_BLOCK_TAGS = frozenset([
    "address", "article", "aside", "blockquote", "caption", "center", "dd", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
    "tbody", "tfoot", "thead", "tr", "ul"
])
# Content that is never shown as text.
_SKIP_TAGS = frozenset({"script", "style", "head", "title"})
_CELL_TAGS = frozenset({"td", "th"})
# Nesting is followed this deep and no deeper; the text inside deeper elements is kept. Mail
# nests tables a few levels; a hostile one nested 100,000 (issue 9).
_MAX_HTML_DEPTH = 100
# html_tables gives every open cell the text of the tables nested in it, so its work and its
# output grow with the nesting depth: tables below this depth are not listed on their own,
# and their text stays in the innermost cell that is.
_MAX_TABLE_DEPTH = 8

# CJK ideographs and punctuation, kana, full-width forms: a line break in the HTML source
# between two of them is no space (CSS Text 3 segment break rules; Hangul keeps it).
# Outlook wraps long Chinese paragraphs in its HTML source.
_WIDE = r"\u2e80-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_SOURCE_BREAK = re.compile(rf"(?<=[{_WIDE}]) *\n[ \n]*(?=[{_WIDE}])")
_SPACES = re.compile(r"[ \n\r\f\v\xa0]+")


class _Flattener:
    """Turns a stream of HTML events into lines of text.

    Block boundaries are lazy: a closing </p> only ends the line when more text follows
    in the same table cell, so a Word table cell (<td><p>...</p></td>) stays on its row's
    line and "沟通主题\tvalue" keeps key and value together.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._line: list[str] = []
        self._has_content = False  # the current line holds more than source whitespace
        self._pending_break = False
        self._cell_start = False
        self._cells_in_row: list[int] = []  # one counter per open table, up to _MAX_HTML_DEPTH
        self._open_tables = 0
        self._pre = 0

    def start(self, tag: str) -> None:
        if tag == "br":
            self._end_pending()
            self._end_line(keep_empty=True)
        elif tag in _CELL_TAGS:
            self._pending_break = False
            if self._cells_in_row:
                if self._cells_in_row[-1]:
                    self._line.append("\t")
                self._cells_in_row[-1] += 1
            self._cell_start = True
        elif tag in _BLOCK_TAGS:
            if tag in ("table", "tr"):
                self._end_line()
                if tag == "table":
                    self._open_tables += 1
                    if self._open_tables <= _MAX_HTML_DEPTH:
                        self._cells_in_row.append(0)
                elif self._cells_in_row:
                    self._cells_in_row[-1] = 0
            else:
                self._pending_break = True
            if tag == "pre":
                self._pre += 1

    def end(self, tag: str) -> None:
        if tag in _CELL_TAGS:
            self._pending_break = False
            self._cell_start = False
        elif tag in ("table", "tr"):
            self._end_line()
            if tag == "table" and self._open_tables:
                if self._open_tables <= _MAX_HTML_DEPTH:
                    self._cells_in_row.pop()
                self._open_tables -= 1
        elif tag in _BLOCK_TAGS:
            self._pending_break = True
            if tag == "pre" and self._pre:
                self._pre -= 1

    def data(self, text: str) -> None:
        text = _normalize_newlines(text)
        if self._pre:
            first, *rest = text.split("\n")
            self._add(first)
            for line in rest:
                self._end_line(keep_empty=True)
                self._add(line)
            return
        self._add(text.replace("\t", " "))

    def _add(self, text: str) -> None:
        if not text.strip(" \t\r\n\f"):
            # Source indentation between tags: only matters inside a line ("<b>a</b> <i>b").
            if not self._pending_break and self._line:
                self._line.append(text)
            return
        if self._cell_start:
            self._pending_break = False  # the first block in a cell continues the row
            self._cell_start = False
        self._end_pending()
        self._line.append(text)
        self._has_content = True

    def _end_pending(self) -> None:
        if self._pending_break:
            self._pending_break = False
            self._end_line()

    def _end_line(self, keep_empty: bool = False) -> None:
        if self._has_content or keep_empty:
            line = _CJK_SOURCE_BREAK.sub("", "".join(self._line))
            cells = (_SPACES.sub(" ", cell).strip() for cell in line.split("\t"))
            self._lines.append("\t".join(cells).strip())
        self._line = []
        self._has_content = False
        self._cell_start = False

    def text(self) -> str:
        self._end_line()
        out: list[str] = []
        for line in self._lines:
            if line or (out and out[-1]):  # at most one blank line in a row
                out.append(line)
        while out and not out[-1]:
            out.pop()
        return "\n".join(out)


class _Table:
    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.row: list[str] | None = None
        self.cell: _Flattener | None = None

    def close_cell(self) -> None:
        if self.cell is not None:
            if self.row is None:  # a cell without <tr>
                self.row = []
            self.row.append(self.cell.text())
            self.cell = None

    def close_row(self) -> None:
        self.close_cell()
        if self.row:
            self.rows.append(self.row)
        self.row = None


class _TableCollector:
    """Receives HTML events and collects every table's rows of cell texts."""

    def __init__(self) -> None:
        self.tables: list[_Table] = []  # in document order of their <table> tags
        self._open: list[_Table] = []  # up to _MAX_TABLE_DEPTH
        self._untracked = 0  # tables open below _MAX_TABLE_DEPTH

    def _cells(self) -> list[_Flattener]:
        return [table.cell for table in self._open if table.cell is not None]

    def start(self, tag: str) -> None:
        # Rows and cells of a table below the depth limit are only text for the open cells.
        tracked = self._open and not self._untracked
        # </tr> and </td> are optional in HTML: a new row or cell closes the open one.
        if tracked and tag == "tr":
            self._open[-1].close_row()
        elif tracked and tag in _CELL_TAGS:
            self._open[-1].close_cell()
        # Every open cell sees the event: an outer cell gets the inner table's text.
        for cell in self._cells():
            cell.start(tag)
        if tag == "table":
            if self._untracked or len(self._open) == _MAX_TABLE_DEPTH:
                self._untracked += 1
            else:
                self._open.append(_Table())
                self.tables.append(self._open[-1])
        elif tracked and tag == "tr":
            self._open[-1].row = []
        elif tracked and tag in _CELL_TAGS:
            self._open[-1].cell = _Flattener()

    def end(self, tag: str) -> None:
        if self._untracked:
            if tag == "table":
                self._untracked -= 1
        elif self._open and tag in _CELL_TAGS:
            self._open[-1].close_cell()
        elif self._open and tag == "tr":
            self._open[-1].close_row()
        elif self._open and tag == "table":
            self._open.pop().close_row()
        for cell in self._cells():
            cell.end(tag)

    def data(self, text: str) -> None:
        for cell in self._cells():
            cell.data(text)

    def finish(self) -> list[list[list[str]]]:
        while self._open:  # tables left open at the end of the document
            self._open.pop().close_row()
        return [table.rows for table in self.tables]


# html.parser (Python <= 3.13.4) searches the rest of the document again for every "<" that
# does not start a complete construct, which is quadratic: 100 KB of "<a<a " took 90 s. This
# tokenizer reads what html.parser read, in one pass: every search either consumes what it
# found, or fails once and is not repeated (a pattern absent from position p is absent from
# every later one). A construct left open at the end is text, as html.parser showed it.
_MARKUP_START = re.compile(r"<(?:(/?)([a-zA-Z][^\t\n\f\r />\x00]*)|(!--)|(!\[)|[!?/])")
# Attributes up to the ">" (or the end); quoted values may hold ">". Atomic, so a tag without
# ">" cannot backtrack.
_ATTRIBUTES = re.compile(
    r"""(?>[\t\n\f\r /]+|[^\t\n\f\r />][^\t\n\f\r /=>]*"""
    r"""(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:"[^"]*"|'[^']*'|[^\t\n\f\r >]*))?)*"""
)
_COMMENT_END = re.compile(r"--!?>")
# Marked sections: MS Office writes "<![if !supportLists]>" ... "<![endif]>" around text that
# is shown; the SGML keywords end with "]]>". Any other "<![" is text (as html.parser had it).
_MARKED_SECTION = re.compile(r"(?i:(if|else|endif)|cdata|temp|ignore|include|rcdata)(?![-_.a-z0-9])")
_MS_SECTION_END = re.compile(r"]\s*>")
_SGML_SECTION_END = re.compile(r"]\s*]\s*>")
# Elements whose content is raw text, not markup (html.parser's CDATA_CONTENT_ELEMENTS).
_RAW_TEXT_END = {tag: re.compile(rf"</{tag}(?=[\t\n\f\r />])", re.IGNORECASE) for tag in ("script", "style")}

_START, _END, _DATA = 0, 1, 2


class _Scanner:
    """Finds where each piece of markup ends, remembering failures: a pattern not found from
    position p is not searched for again from any later position."""

    def __init__(self, html: str) -> None:
        self._html = html
        self._absent_from: dict[re.Pattern[str], int] = {}
        # Quoted attribute values are honoured until one scan for a tag's ">" has run to the
        # end of the document; after that, a tag ends at its first ">", or every later tag
        # would be scanned to the end again.
        self._quoted = True

    def search(self, pattern: re.Pattern[str], start: int) -> re.Match[str] | None:
        if start >= self._absent_from.get(pattern, len(self._html) + 1):
            return None
        found = pattern.search(self._html, start)
        if found is None:
            self._absent_from[pattern] = start
        return found

    def markup_end(self, m: re.Match[str]) -> int:
        """Where the markup that ``m`` starts ends (after its ">"), or -1 when it is text."""
        html = self._html
        _slash, name, comment, marked = m.groups()
        if name is not None:
            if self._quoted:
                attributes = _ATTRIBUTES.match(html, m.end())
                if attributes is not None and attributes.end() < len(html):  # it always matches
                    return attributes.end() + 1
                self._quoted = False
            return html.find(">", m.end()) + 1
        if comment is not None:
            found = self.search(_COMMENT_END, m.start() + 2)  # from "<!" so "<!-->" is closed
        elif marked is not None:
            keyword = _MARKED_SECTION.match(html, m.end())
            if keyword is None:
                return -1
            found = self.search(_MS_SECTION_END if keyword.group(1) else _SGML_SECTION_END, m.end())
        else:  # "<!DOCTYPE ...>", "<?xml ...?>", "</>", "</3>": a bogus comment up to ">"
            return html.find(">", m.end()) + 1
        return found.end() if found else -1


def _tokens(html: str) -> Iterator[tuple[int, str]]:
    """(kind, tag name or text) in document order; text has its character references
    decoded (except in script and style)."""
    scanner = _Scanner(html)
    last_gt = html.rfind(">")  # after it, no markup can be complete: the rest is text
    text_from = pos = 0  # text runs from text_from to the next markup
    while True:
        lt = html.find("<", pos)
        if lt < 0 or lt > last_gt:
            if text_from < len(html):
                yield _DATA, unescape(html[text_from:])
            return
        m = _MARKUP_START.match(html, lt)
        end = scanner.markup_end(m) if m else -1
        if end < 0:
            pos = lt + 1  # "<" is text ("a < b", an unclosed comment)
            continue
        if lt > text_from:
            yield _DATA, unescape(html[text_from:lt])
        pos = text_from = end
        if m is None or m.group(2) is None:
            continue  # a comment or a declaration
        name = m.group(2).lower()
        if m.group(1):
            yield _END, name
            continue
        yield _START, name
        if html[end - 2] == "/" and end - 1 > m.end():
            yield _END, name  # "<br/>": html.parser reported an end as well
        elif name in _RAW_TEXT_END:
            closing = scanner.search(_RAW_TEXT_END[name], pos)
            raw_end = closing.start() if closing else len(html)
            if raw_end > pos:
                yield _DATA, html[pos:raw_end]
            pos = text_from = raw_end


def _feed(html: str, sink: _Flattener | _TableCollector) -> None:
    """Pass tag names and text of ``html`` on to ``sink``, without the elements that are
    never shown."""
    skipping: list[str] = []  # open elements whose content is not shown, innermost last
    for kind, value in _tokens(html):
        if kind == _DATA:
            if not skipping:
                sink.data(value)
        elif kind == _START:
            if value == "body":
                skipping.clear()  # an unclosed <head> ends where <body> starts
            elif value in _SKIP_TAGS:
                if len(skipping) < _MAX_HTML_DEPTH:
                    skipping.append(value)
            elif not skipping:
                sink.start(value)
        elif value in _SKIP_TAGS:
            if value in skipping:  # also closes skipped elements left open inside
                while skipping.pop() != value:
                    pass
        elif not skipping:
            sink.end(value)


# HTML is read up to this many characters. Reading is linear but not free (about a second a
# megabyte here, and an HTML-only request is read twice: text and tables); what people write
# comes first, and beyond this a body is images inlined as data: URIs, pasted spreadsheets,
# or an attack (1 MB of tags took 2.4 s, found by the fuzzer).
MAX_HTML_CHARS = 512 * 1024


def _bounded(html: str) -> str:
    """``html`` cut to MAX_HTML_CHARS, before the tag that the cut would split."""
    if len(html) <= MAX_HTML_CHARS:
        return html
    cut = html.rfind("<", 0, MAX_HTML_CHARS)
    return html[:cut if cut > 0 else MAX_HTML_CHARS]


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body: one line per block, table cells of a row
    joined by tabs, entities decoded, spaces collapsed, at most one blank line in a row.
    Only the first MAX_HTML_CHARS are read."""
    flattener = _Flattener()
    _feed(_bounded(html), flattener)
    return flattener.text()


def html_tables(html: str) -> list[list[list[str]]]:
    """Every <table> in document order as rows of cell texts. A cell's text is flattened
    like html_to_text (newlines kept); a cell holding a nested table gets that table's
    text, and the nested table is also listed on its own. Only the first MAX_HTML_CHARS are
    read."""
    collector = _TableCollector()
    _feed(_bounded(html), collector)
    return collector.finish()
