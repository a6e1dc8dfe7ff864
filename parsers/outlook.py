"""An Outlook item (.msg, [MS-OXMSG]) → the RFC 822 mail it stands for, so that a client's
mail that staff forward from Outlook by dragging it into a new mail is unwrapped like an
attached .eml (parsers/forwarded.py). Pure: bytes in, bytes or None out; never raises.

Read with olefile (the compound-file container; BSD, the reader oletools and msoffcrypto
use) and the few MAPI properties a forwarded request needs: the original internet headers
where Outlook kept them (a received mail), else sender, recipients, subject and time; the
plain and HTML bodies. extract-msg does this and much more, but under the GPL, which would
bind every deployment of this MIT project; mail-parser's .msg support shells out to the
Perl tool msgconvert. The item's own attachments are not carried over.
"""

from __future__ import annotations

import logging
import re
import struct
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr
from typing import Any

log = logging.getLogger(__name__)

OUTLOOK_TYPES = {"application/vnd.ms-outlook", "application/x-msg"}

_SUBJECT, _SENDER_NAME, _SENDER_EMAIL, _SENDER_SMTP = 0x0037, 0x0C1A, 0x0C1F, 0x5D01
_SENDER_ADDRTYPE, _REPRESENTING_SMTP = 0x0C1E, 0x5D02
_HEADERS, _BODY, _HTML, _MESSAGE_ID = 0x007D, 0x1000, 0x1013, 0x1035
_SUBMIT_TIME, _DELIVERY_TIME, _INTERNET_CODEPAGE, _MESSAGE_CODEPAGE = 0x0039, 0x0E06, 0x3FDE, 0x3FFD
_RECIPIENT_NAME, _RECIPIENT_EMAIL, _RECIPIENT_SMTP, _RECIPIENT_TYPE = 0x3001, 0x3003, 0x39FE, 0x0C15
_RECIPIENT_ADDRTYPE = 0x3002
_TO, _CC = 1, 2
_UNICODE, _STRING8, _BINARY, _SYSTIME, _LONG = 0x001F, 0x001E, 0x0102, 0x0040, 0x0003
# Headers of the original that describe its MIME body, which is not what we carry over.
_BODY_HEADERS = re.compile(r"(?i)^(content-|mime-version)")
_POLICY = compat32.clone(linesep="\r\n")


def is_outlook_item(filename: str, content_type: str) -> bool:
    return filename.lower().endswith(".msg") or content_type in OUTLOOK_TYPES


def msg_to_rfc822(data: bytes) -> bytes | None:
    """The mail an Outlook item holds, as RFC 822 bytes; None when it is none."""
    try:
        return _convert(data)
    except Exception:  # a damaged or hostile file: no mail, not an error of the whole mail
        log.info("could not read an Outlook item", exc_info=True)
        return None


class _Item:
    """The properties of one storage (the message, or one of its recipients)."""

    def __init__(self, ole: Any, path: list[str], header: int):
        self.ole, self.path = ole, path
        self.fixed: dict[int, bytes] = {}
        stream = [*path, "__properties_version1.0"]
        if ole.exists(stream):
            raw = ole.openstream(stream).read()
            for at in range(header, len(raw) - 15, 16):
                tag, _flags, value = struct.unpack_from("<II8s", raw, at)
                self.fixed[tag] = value
        self.codepage = "utf-8"

    def string(self, prop: int) -> str:
        for kind, codec in ((_UNICODE, "utf-16-le"), (_STRING8, self.codepage)):
            stream = [*self.path, f"__substg1.0_{prop:04X}{kind:04X}"]
            if self.ole.exists(stream):
                raw = self.ole.openstream(stream).read()
                return raw.decode(codec, errors="replace").rstrip("\0")
        return ""

    def binary(self, prop: int) -> bytes:
        stream = [*self.path, f"__substg1.0_{prop:04X}{_BINARY:04X}"]
        if self.ole.exists(stream):
            return bytes(self.ole.openstream(stream).read())
        return b""

    def long(self, prop: int) -> int | None:
        value = self.fixed.get((prop << 16) | _LONG)
        return struct.unpack_from("<i", value)[0] if value else None

    def time(self, prop: int) -> datetime | None:
        value = self.fixed.get((prop << 16) | _SYSTIME)
        if not value:
            return None
        ticks = struct.unpack_from("<Q", value)[0]  # 100 ns since 1601-01-01 UTC (FILETIME)
        return datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10) if ticks else None


def _convert(data: bytes) -> bytes | None:
    import olefile  # only a mail with an Outlook item attached pays for the import

    if not olefile.isOleFile(data):
        return None
    with olefile.OleFileIO(data) as ole:
        item = _Item(ole, [], header=32)  # the message's own properties stream has a 32-byte header
        codepage = item.long(_INTERNET_CODEPAGE) or item.long(_MESSAGE_CODEPAGE)
        if codepage:
            item.codepage = _codec(codepage)
        text = item.string(_BODY)
        html_bytes = item.binary(_HTML)
        html = html_bytes.decode(item.codepage, errors="replace") if html_bytes else item.string(_HTML)
        if not (text or html or item.string(_SUBJECT)):
            return None
        body: Message = MIMEText(text, "plain", "utf-8")
        if html:
            alternative = MIMEMultipart("alternative")
            alternative.attach(body)
            alternative.attach(MIMEText(html, "html", "utf-8"))
            body = alternative
        original = item.string(_HEADERS)
        if original.strip():
            return _original_headers(original) + body.as_bytes(policy=_POLICY)
        recipients = [_Item(ole, [name], header=8) for name in _storages(ole, "__recip_version1.0_")]
        for recipient in recipients:
            recipient.codepage = item.codepage
        sender = _smtp(item, _SENDER_SMTP, _REPRESENTING_SMTP, _SENDER_EMAIL, _SENDER_ADDRTYPE)
        body["From"] = formataddr((item.string(_SENDER_NAME), sender))
        for header, kind in (("To", _TO), ("Cc", _CC)):
            people = [formataddr((r.string(_RECIPIENT_NAME),
                                  _smtp(r, _RECIPIENT_SMTP, _RECIPIENT_SMTP, _RECIPIENT_EMAIL, _RECIPIENT_ADDRTYPE)))
                      for r in recipients if (r.long(_RECIPIENT_TYPE) or _TO) == kind]
            if people:
                body[header] = ", ".join(people)
        body["Subject"] = Header(item.string(_SUBJECT), "utf-8").encode()
        sent = item.time(_SUBMIT_TIME) or item.time(_DELIVERY_TIME)
        if sent is not None:
            body["Date"] = format_datetime(sent)
        if message_id := item.string(_MESSAGE_ID).strip():
            body["Message-ID"] = message_id
        # The headers go in front of the body's own (formataddr and compat32 encode them).
        return body.as_bytes(policy=_POLICY)


def _smtp(item: _Item, smtp: int, other_smtp: int, address: int, address_type: int) -> str:
    """An internet address: the SMTP properties, or the address when its type is SMTP (an
    Exchange sender's is an X.500 name, /O=…/CN=…, no address at all)."""
    found = item.string(smtp) or item.string(other_smtp)
    if not found and item.string(address_type).upper() in ("SMTP", ""):
        found = item.string(address)
    return found if "@" in found and "/" not in found else ""


def _storages(ole: Any, prefix: str) -> list[str]:
    return sorted({entry[0] for entry in ole.listdir(streams=True, storages=False)
                   if len(entry) > 1 and entry[0].startswith(prefix)})


def _original_headers(headers: str) -> bytes:
    """The original mail's header block without what described its MIME body."""
    kept: list[str] = []
    keeping = False
    for line in headers.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            break
        if line[0] in " \t":
            if keeping:
                kept.append(line)
            continue
        keeping = not _BODY_HEADERS.match(line)
        if keeping:
            kept.append(line)
    return "".join(f"{line}\r\n" for line in kept).encode("utf-8", errors="replace")


def _codec(codepage: int) -> str:
    """A Windows code page number (936, 950, 65001…) as a Python codec; GBK and GB2312 read
    as GB18030, their superset."""
    names = {936: "gb18030", 20936: "gb18030", 54936: "gb18030", 950: "big5hkscs", 65001: "utf-8",
             1200: "utf-16-le", 28591: "latin-1"}
    name = names.get(codepage, f"cp{codepage}")
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name
