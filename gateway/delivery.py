"""Composing outbound mail and handing it to a transport (local maildir or SMTP smarthost).

Composition happens here, at delivery time, not in the intake transaction: building MIME is
~30x dearer than rendering the text (FACTS.md), and the legacy compat32 classes are ~4x
faster than ``EmailMessage`` while producing the same RFC 2047/MIME output.

``compose`` is the one place where the headers of a mail we send are written. Their values
come from senders' mails (names, addresses, subjects, Message-IDs), so each is cleaned of
control characters and checked before it is folded into a header line.
"""

from __future__ import annotations

import base64
import mailbox
import os
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email import encoders
from email.charset import Charset
from email.header import Header
from email.headerregistry import Address
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import dkim

from config.settings import DeliverySettings
from store.models import OutboundMessage

CRLF = "\r\n"  # the wire form (RFC 5321 §2.3.8); smtplib sends bytes unchanged

class DeliveryError(Exception):
    """A mail did not go: `permanent` ends it (5xx), else it is retried later; `session_lost`
    says the smarthost session is gone (a kept session may just have been closed meanwhile)."""

    def __init__(self, message: str, permanent: bool, session_lost: bool = False):
        super().__init__(message)
        self.permanent = permanent
        self.session_lost = session_lost


class Transport(Protocol):
    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        """Deliver or raise DeliveryError."""

    def flush(self) -> None:
        """Make what was sent since the last flush durable, or raise DeliveryError; called
        before those mails are marked sent (a smarthost's 250 already is)."""

    def close(self) -> None:
        """Let go of connections; the next send opens new ones."""


@dataclass(frozen=True)
class Composed:
    raw: bytes
    recipients: list[str]  # the envelope: To, then each Cc that is an address
    left_out: list[str]  # Cc entries that are not addresses (not sent to, noted in the trace)


# C0, DEL, C1 (NEL among them), the line and paragraph separators, and lone surrogates (a
# sender's undecodable bytes): splitlines() — and so Header.encode — breaks a line at
# several of these, and in a header a line break ends it.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
# Dot-atom names are written as they are; any other name as RFC 2047 encoded words.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'_-]+(?: [A-Za-z0-9'_-]+)*")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8 ftext
# A msg-id as we write it: printable ASCII without spaces or angle brackets, of a length any
# reader keeps; anything else from a sender's References is dropped rather than repaired.
_MSG_ID = re.compile(r"<[!-;=?-~]{1,250}>")
_MAX_ADDRESS_BYTES = 254  # RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its <>
_MAX_FILENAME_BYTES = 200  # as for attachments we receive; keeps the RFC 2231 line short
# Written by compose itself; an extra header of the same name would make them appear twice.
_OWN_HEADERS = frozenset({"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
                          "content-type", "content-transfer-encoding", "x-auto-response-suppress",
                          "x-liuhen-origin"})
_UTF8 = Charset("utf-8")


def clean(value: str) -> str:
    """`value` as a header may carry it: each run of control characters becomes one space."""
    return _CONTROL.sub(" ", value).strip(" ")


@lru_cache(maxsize=4096)  # the same few addresses again and again; the RFC 5322 parser is dear
def checked_address(addr: str, role: str = "the recipient's") -> str:
    """`addr` as it is written into a header and the SMTP envelope, or a permanent
    DeliveryError saying why it cannot be. Nothing is repaired — an address with a control
    character removed is someone else's. A non-ASCII domain behind an ASCII local part is
    written in its IDNA form (so no SMTPUTF8 is needed); a non-ASCII local part stays as it
    is and needs SMTPUTF8 (RFC 6531)."""
    local, at, domain = addr.rpartition("@")
    if _CONTROL.search(addr) or not (local and at and domain):
        raise DeliveryError(f"{role} address {addr!r} is not a valid mail address", permanent=True)
    if local.isascii() and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise DeliveryError(f"{role} address {addr!r} has a domain that cannot be written in IDNA",
                                permanent=True) from None
    address = f"{local}@{domain}"
    # The stdlib parser knows RFC 5322's addr-spec, not RFC 6532's UTF-8 atext; a non-ASCII
    # letter stands wherever an ASCII one may, so an ASCII stand-in checks the structure.
    stand_in = "".join(c if c.isascii() else "a" for c in address)
    try:
        Address(addr_spec=stand_in)
        valid = len(address.encode()) <= _MAX_ADDRESS_BYTES
    except Exception:
        valid = False
    if not valid:
        raise DeliveryError(f"{role} address {addr!r} is not a valid mail address", permanent=True)
    return address


def compose(mail: OutboundMessage, *, from_name: str, from_addr: str, date: datetime, domain: str,
            files: dict[str, bytes] | None = None) -> Composed:
    """The bytes of `mail` as they go out, or a permanent DeliveryError when its recipient (or
    our own From) is not an address."""
    sender = checked_address(from_addr, "our From")
    to = checked_address(mail.to_addr)
    cc: list[str] = []
    left_out: list[str] = []
    for entry in mail.cc:
        try:
            cc.append(checked_address(entry))
        except DeliveryError:
            left_out.append(entry)
    headers = [("From", _mailbox(from_name, sender, "From")), ("To", _mailbox(mail.to_name, to, "To"))]
    if cc:
        headers.append(("Cc", ("," + CRLF + " ").join(cc)))
    headers += [("Subject", _encoded(mail.subject, "Subject")),
                ("Date", format_datetime(date)),  # caller passes local time
                ("Message-ID", clean(mail.message_id))]  # ours: new_message_id
    for name, value in mail.headers.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _OWN_HEADERS:
            raise DeliveryError(f"header name {name!r} cannot be set on a mail", permanent=True)
        folded = _header_value(name, value)
        if folded:
            headers.append((name, folded))
    # RFC 3834 §5 is stamped per mail (auto-generated / auto-replied); Exchange and Outlook
    # honour only their own header for suppressing out-of-office answers.
    headers += [("X-Auto-Response-Suppress", "All"), ("X-Liuhen-Origin", _plain(domain, "X-Liuhen-Origin"))]
    head = "".join(f"{name}: {value}{CRLF}" for name, value in headers).encode("utf-8")
    return Composed(head + _mime(mail, files or {}), [to, *cc], left_out)


# What a DKIM signature covers (RFC 6376 §5.4): what a reader sees and what threads or
# unsubscribes; mime-version and content-type, so the body cannot be re-labelled.
DKIM_HEADERS = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to", b"references",
                b"reply-to", b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type")


def dkim_signed(raw: bytes, selector: str, domain: str, private_key: bytes) -> bytes:
    """`raw` with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
    try:
        signature = dkim.sign(raw, selector.encode(), domain.encode(), private_key, include_headers=list(DKIM_HEADERS),
                              canonicalize=(b"relaxed", b"relaxed"))
    except dkim.DKIMException as exc:
        raise DeliveryError(f"the mail could not be DKIM-signed: {exc}", permanent=False) from exc
    return signature + raw


def _mailbox(name: str, addr: str, field: str) -> str:
    name = clean(name)
    if not name:
        return addr
    if len(name) <= 64 and _PLAIN_NAME.fullmatch(name):
        return f"{name} <{addr}>"
    # Encoded words of at most 76 characters a line; the address (at most 254 bytes) follows.
    return f"{_encoded(name, field)} <{addr}>"


def _encoded(text: str, field: str) -> str:
    """UTF-8 encoded words (RFC 2047, base64), one a line within 76 characters (the first line
    holds the field's name too), cut between whole characters. email.header.Header does the
    same at ~70 µs a call, a tenth of composing a mail, where this takes a few."""
    words: list[str] = []
    chunk: list[str] = []
    size, budget = 0, _word_bytes(76 - len(field) - 2)
    for char in clean(text):
        n = len(char.encode())
        if size + n > budget and chunk:
            words.append("".join(chunk))
            chunk, size, budget = [], 0, _word_bytes(75)  # a folded line starts with a space
        chunk.append(char)
        size += n
    if chunk:
        words.append("".join(chunk))
    return (CRLF + " ").join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode('ascii')}?=" for w in words)


def _word_bytes(width: int) -> int:
    """How many bytes one encoded word of at most `width` characters carries."""
    return max(3, (width - len("=?utf-8?b??=")) // 4 * 3)


def _plain(text: str, field: str) -> str:
    """ASCII text folded at its spaces; anything that would not fit (non-ASCII, a word too
    long for one line) as encoded words."""
    text = clean(text)
    if text.isascii() and all(len(word) <= 900 for word in text.split(" ")):
        if len(field) + 2 + len(text) <= 78:  # one line: nothing to fold
            return text
        return Header(text, "us-ascii", header_name=field).encode(linesep=CRLF)
    return _encoded(text, field)


def _msg_ids(value: str) -> list[str]:
    return [word for word in value.split() if _MSG_ID.fullmatch(word)]


def _header_value(name: str, value: str) -> str:
    """The folded value of an extra header ("" when nothing of it is left to write)."""
    match name.lower():
        case "reply-to":
            return checked_address(value, "the Reply-To")
        case "in-reply-to":
            return next(iter(_msg_ids(value)), "")
        case "references":
            return (CRLF + " ").join(_msg_ids(value))
        case _:
            return _plain(value, name)


def _filename(name: str) -> str:
    """An attachment's name, cleaned and cut to whole characters within the byte cap, its
    extension kept."""
    name = clean(name).strip() or "attachment"  # a name of only spaces (U+00A0 too) is no name
    if len(name.encode()) <= _MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension) > 16:
        stem, dot, extension = name, "", ""
    room = _MAX_FILENAME_BYTES - len(dot + extension)
    return stem.encode()[:room].decode("utf-8", "ignore") + dot + extension


def _mime(mail: OutboundMessage, files: dict[str, bytes]) -> bytes:
    """The MIME structure with its own Content-Type and MIME-Version, which complete the
    header block that compose writes in front of it. An attachment is a generated text, or a
    stored file (by its sha256, its bytes in `files`)."""
    if mail.attachments:
        msg = MIMEMultipart("alternative")
        alternatives = [MIMEText(mail.text, "plain", "utf-8"), MIMEText(mail.html, "html", "utf-8")]
        # An invitation is also the body's third form (Outlook and Gmail show it as a meeting
        # with Accept/Decline from there), and an invite.ics attachment for the others.
        for item in mail.attachments:
            if item.get("calendar"):
                alternatives.append(_calendar_part(item))
        body = MIMEMultipart("alternative")
        for alternative in alternatives:
            body.attach(alternative)
        msg.set_type("multipart/mixed")
        msg.attach(body)
        for item in mail.attachments:
            main, _, params = item["content_type"].partition(";")
            if "sha256" in item:
                major, _, minor = main.strip().partition("/")
                data = files[item["sha256"]]
                if major == "text" and "charset" not in params.lower():
                    # A stored text file whose charset we were not told: say it when it is
                    # UTF-8 (or ASCII), else pass it on as bytes — never text that cannot decode.
                    try:
                        data.decode("utf-8")
                        params += "; charset=utf-8"
                    except UnicodeDecodeError:
                        major, minor = "application", "octet-stream"
                part = MIMEBase(major or "application", minor or "octet-stream")
                part.set_payload(data)
                encoders.encode_base64(part)
            elif "base64" in item:  # a generated file (a blank form as .docx/.xlsx)
                major, _, minor = main.strip().partition("/")
                part = MIMEBase(major, minor)
                part.set_payload(base64.b64decode(item["base64"]))
                encoders.encode_base64(part)
            else:
                part = MIMEText(item["text"], main.split("/")[1], "utf-8")
            _set_params(part, params)
            part.add_header("Content-Disposition", "attachment", filename=_filename(item["filename"]))
            msg.attach(part)
        return msg.as_bytes(policy=compat32.clone(linesep=CRLF))
    return _alternative(mail.text, mail.html)


def _calendar_part(item: dict) -> MIMEText:
    """text/calendar; method=…; charset=utf-8 holding an invitation (RFC 6047)."""
    part = MIMEText(item["text"], "calendar", "utf-8")
    _set_params(part, item["content_type"].partition(";")[2])
    return part


def _set_params(part: MIMEBase, params: str) -> None:
    """The `; name=value` parameters of a content type (method=REQUEST) onto the part."""
    for param in filter(None, (p.strip() for p in params.split(";"))):
        name, _, value = param.partition("=")
        part.set_param(name, value)


def _alternative(text: str, html: str) -> bytes:
    """A text part and an HTML part, base64, as multipart/alternative — what MIMEMultipart
    writes for them, byte for byte but the boundary, in a tenth of the time (it was a fifth
    of the cost of delivering a mail)."""
    boundary = f"==============={secrets.randbits(63)}==".encode()
    out = [b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\nMIME-Version: 1.0\r\n\r\n']
    for subtype, body in ((b"plain", text), (b"html", html)):
        out += [b"--" + boundary + b'\r\nContent-Type: text/' + subtype + b'; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\n",
                base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")]
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


class MaildirTransport:
    """Writes each mail into a local maildir (the default: nothing leaves the machine). The
    files of a batch are synced together at its flush."""

    def __init__(self, path: Path):
        self.maildir = mailbox.Maildir(str(path), create=True)
        self._written: list[str] = []

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        try:
            key = self.maildir.add(raw.replace(b"\r\n", b"\n"))  # maildir files use local line ends
        except OSError as exc:
            raise DeliveryError(f"maildir: {exc}", permanent=False) from exc
        self._written.append(os.path.join(self.maildir._path, "new", key))

    def flush(self) -> None:
        written, self._written = self._written, []
        try:
            for path in written:
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            if written:  # the directory entries too
                descriptor = os.open(os.path.dirname(written[0]), os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        except OSError as exc:
            raise DeliveryError(f"maildir: {exc}", permanent=False) from exc

    def close(self) -> None:
        self._written = []


class SmtpTransport:
    """Relays through a smarthost, with STARTTLS and AUTH when configured, over one session
    kept open for many mails: RSET after a refused one, a new session after the server
    dropped it (421, a timeout, an idle connection it closed)."""

    def __init__(self, settings: DeliverySettings):
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _session(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        s = self.settings
        smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        try:
            smtp.ehlo()
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=s.ca_file or None))
                smtp.ehlo()
            if s.user:
                smtp.login(s.user, s.password)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        reused = self._smtp is not None
        try:
            self._send(raw, sender, recipients)
        except DeliveryError as exc:
            if not (reused and exc.session_lost):
                raise
            # A session kept open can have been closed by the server meanwhile: once more on a new one.
            self._send(raw, sender, recipients)

    def _send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        # A UTF-8 local part (RFC 6531) can only be relayed with SMTPUTF8; the headers of such
        # a mail are UTF-8 as well (compose), so without it the mail cannot go at all.
        international = not all(addr.isascii() for addr in (sender, *recipients))
        try:
            smtp = self._session()
            if international and not smtp.has_extn("smtputf8"):
                raise DeliveryError("the recipient's address needs SMTPUTF8, which the smarthost does not offer",
                                    permanent=True)
            options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
            if smtp.has_extn("pipelining"):
                refused = _pipelined(smtp, raw, sender, recipients, options)
            else:
                refused = smtp.sendmail(sender, recipients, raw, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(_describe(exc.recipients), permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPAuthenticationError as exc:
            # Our credentials are wrong: the operator can fix that, so keep the mail and retry.
            self.close()
            raise DeliveryError(f"smarthost refused our login: {exc.smtp_code} {exc.smtp_error!r}",
                                permanent=False) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # the server is closing the session
                self.close()
                raise DeliveryError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=False,
                                    session_lost=True) from exc
            self._reset()
            raise DeliveryError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False, session_lost=True) from exc
        if recipients[0] in refused:
            code = refused[recipients[0]][0]
            raise DeliveryError(_describe(refused), permanent=code >= 500)

    def _reset(self) -> None:
        """After a refused mail the session goes on with the next (smtplib has sent RSET for
        refusals before DATA; after DATA one is due)."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def _pipelined(smtp: smtplib.SMTP, raw: bytes, sender: str, recipients: list[str],
               options: list[str]) -> dict[str, tuple[int, bytes]]:
    """smtplib's sendmail, with MAIL, RCPT and DATA sent together (RFC 2920, where the server
    offers PIPELINING): two round trips a mail instead of 3 + recipients. Its refusals raise
    what sendmail's would; it returns the refused recipients when some were accepted."""
    if smtp.has_extn("size"):
        options = [*options, f"SIZE={len(raw)}"]
    commands = [f"MAIL FROM:{smtplib.quoteaddr(sender)}{''.join(' ' + o for o in options)}",
                *(f"RCPT TO:{smtplib.quoteaddr(r)}" for r in recipients), "DATA"]
    smtp.send("".join(command + CRLF for command in commands))
    mail = smtp.getreply()
    answers = [smtp.getreply() for _ in recipients]
    data = smtp.getreply()
    nothing_to_send = mail[0] != 250 or all(code not in (250, 251) for code, _ in answers)
    if data[0] == 354 and nothing_to_send:  # let in although nothing may go: end the empty message
        smtp.send(b"." + CRLF.encode())
        smtp.getreply()
    if mail[0] != 250:
        if mail[0] != 421:
            smtp.rset()
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
    refused = {r: answer for r, answer in zip(recipients, answers, strict=True) if answer[0] not in (250, 251)}
    if len(refused) == len(recipients):
        smtp.rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    if data[0] != 354:
        raise smtplib.SMTPDataError(*data)
    smtp.send(_DOT_AT_LINE_START.sub(b"..", raw) + (b"" if raw.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    done = smtp.getreply()
    if done[0] != 250:
        raise smtplib.SMTPDataError(*done)
    return refused


_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")  # dot-stuffing (RFC 5321 4.5.2); our lines end in CRLF


def _describe(refused: dict) -> str:
    return "; ".join(f"{addr}: {code} {msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else msg}"
                     for addr, (code, msg) in refused.items())


def make_transport(settings: DeliverySettings, maildir: Path) -> Transport:
    if settings.mode == "smtp":
        return SmtpTransport(settings)
    if settings.mode == "maildir":
        return MaildirTransport(maildir)
    raise ValueError(f"[delivery] mode must be 'maildir' or 'smtp', not {settings.mode!r}")
