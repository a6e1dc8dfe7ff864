"""Composing outbound mail and handing it to a transport (local maildir or SMTP smarthost).

Composition happens here, at delivery time, not in the intake transaction: building MIME is
~30x dearer than rendering the text (FACTS.md), and the legacy compat32 classes are ~4x
faster than ``EmailMessage`` while producing the same RFC 2047/MIME output.
"""

from __future__ import annotations

import mailbox
import smtplib
import ssl
from datetime import datetime
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Protocol

from config.settings import DeliverySettings
from store.models import OutboundMessage


class DeliveryError(Exception):
    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        """Deliver or raise DeliveryError."""


def _address(name: str, addr: str) -> str:
    return formataddr((str(Header(name, "utf-8")), addr)) if name else addr


def compose(mail: OutboundMessage, *, from_name: str, from_addr: str, date: datetime, domain: str) -> bytes:
    msg = MIMEMultipart("alternative")
    msg["From"] = _address(from_name, from_addr)
    msg["To"] = _address(mail.to_name, mail.to_addr)
    if mail.cc:
        msg["Cc"] = ", ".join(mail.cc)
    msg["Subject"] = Header(mail.subject, "utf-8")
    msg["Date"] = format_datetime(date)  # caller passes local time
    msg["Message-ID"] = mail.message_id
    for name, value in mail.headers.items():
        msg[name] = value
    # RFC 3834 §5 is stamped per mail (auto-generated / auto-replied); Exchange and Outlook
    # honour only their own header for suppressing out-of-office answers.
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Liuhen-Origin"] = domain
    body = MIMEMultipart("alternative")
    body.attach(MIMEText(mail.text, "plain", "utf-8"))
    body.attach(MIMEText(mail.html, "html", "utf-8"))
    if mail.attachments:
        msg.set_type("multipart/mixed")
        msg.attach(body)
        for item in mail.attachments:
            main, _, params = item["content_type"].partition(";")
            part = MIMEText(item["text"], main.split("/")[1], "utf-8")
            for param in filter(None, (p.strip() for p in params.split(";"))):
                name, _, value = param.partition("=")
                part.set_param(name, value)
            part.add_header("Content-Disposition", "attachment", filename=item["filename"])
            msg.attach(part)
    else:
        for part in body.get_payload():
            msg.attach(part)
    # CRLF is the wire form (RFC 5321 §2.3.8); smtplib sends bytes unchanged.
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


class MaildirTransport:
    """Writes each mail into a local maildir (the default: nothing leaves the machine)."""

    def __init__(self, path: Path):
        self.maildir = mailbox.Maildir(str(path), create=True)

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        try:
            self.maildir.add(raw.replace(b"\r\n", b"\n"))  # maildir files use local line ends
        except OSError as exc:
            raise DeliveryError(f"maildir: {exc}", permanent=False) from exc


class SmtpTransport:
    """Relays through a smarthost, with STARTTLS and AUTH when configured."""

    def __init__(self, settings: DeliverySettings):
        self.settings = settings

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
                smtp.ehlo()
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=s.ca_file or None))
                    smtp.ehlo()
                if s.user:
                    smtp.login(s.user, s.password)
                refused = smtp.sendmail(sender, recipients, raw)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(_describe(exc.recipients), permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPAuthenticationError as exc:
            # Our credentials are wrong: the operator can fix that, so keep the mail and retry.
            raise DeliveryError(f"smarthost refused our login: {exc.smtp_code} {exc.smtp_error!r}",
                                permanent=False) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        if recipients[0] in refused:
            code = refused[recipients[0]][0]
            raise DeliveryError(_describe(refused), permanent=code >= 500)


def _describe(refused: dict) -> str:
    return "; ".join(f"{addr}: {code} {msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else msg}"
                     for addr, (code, msg) in refused.items())


def make_transport(settings: DeliverySettings, maildir: Path) -> Transport:
    if settings.mode == "smtp":
        return SmtpTransport(settings)
    if settings.mode == "maildir":
        return MaildirTransport(maildir)
    raise ValueError(f"[delivery] mode must be 'maildir' or 'smtp', not {settings.mode!r}")
