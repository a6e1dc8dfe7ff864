"""Signs that an incoming mail must never be answered automatically.

Responsibility: decide from headers, subject and senders whether a mail is a bounce,
an auto-reply, list traffic or our own mail looping back (RFC 3834, RFC 3464,
RFC 5321 §4.5.5 and the de-facto headers of common clients), so the gateway never
starts a mail loop. Returns a short reason code for logs and operators, or None when
answering is fine. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from email.utils import parseaddr

__all__ = ["auto_reply_reason"]

_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
# X-Auto-Response-Suppress is deliberately absent: Exchange puts it on ordinary mail
# to ask *others* not to auto-reply; it says nothing about this mail.
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoreply-from", "x-mail-autoreply")
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post")
_ORIGIN_HEADER = "x-liuhen-origin"

_COMMENT = re.compile(r"\([^()]*\)")
_REPLY_PREFIX = re.compile(r"^(?:\s*(?:re|aw|回复|答复|回覆)\s*(?:\[\d+\])?\s*[:：])+\s*", re.IGNORECASE)
# Markers that mark an auto-reply when they open the subject or label it ("…: ").
_OOO_MARKER = (
    r"(?:自动回复|自动答复|自動回覆|不在办公室|out\s+of\s+(?:the\s+)?office|automatic\s+reply"
    r"|auto[\s-]?reply)"
)
_OOO_LEADING = re.compile(_OOO_MARKER, re.IGNORECASE)
_OOO_LABEL = re.compile(_OOO_MARKER + r"\s*[:：]", re.IGNORECASE)
# 休假/外出 also start real requests ("外出培训报销"), so only as a label or the whole subject.
_AWAY_LABEL = re.compile(r"(?:休假|外出)(?:\s*[:：\-–—]|\s|$)")
# "Absence request for next week" is a real request: these count only as a label.
_ABSENCE_LABEL = re.compile(r"(?:abwesend|absence)\s*[:：]", re.IGNORECASE)


def auto_reply_reason(
    headers: Mapping[str, str],
    subject: str,
    envelope_sender: str | None,
    from_addr: str,
    own_addresses: Iterable[str] = (),
    own_domain: str = "",
) -> str | None:
    """Reason code why this mail must not be answered, or None.

    `headers` has lowercase keys and decoded values; `envelope_sender` is the SMTP
    MAIL FROM, None when unknown, "" or "<>" for the null sender. Checks run from the
    most certain sign to the most heuristic one, and the first hit is reported.
    """
    if envelope_sender is not None and envelope_sender.strip() in ("", "<>"):
        return "null-sender"
    if _is_daemon(from_addr) or (envelope_sender and _is_daemon(envelope_sender)):
        return "mailer-daemon"
    if _token(headers.get("content-type", "")) == "multipart/report":
        return "mailer-daemon"  # delivery status notification, RFC 3464
    if _is_own(headers, from_addr, own_addresses, own_domain):
        return "own-mail"
    if "auto-submitted" in headers and _token(headers["auto-submitted"]) != "no":
        return "auto-submitted"
    if _token(headers.get("precedence", "")) in _BULK_PRECEDENCE:
        return "precedence"
    if any(name in headers for name in _AUTOREPLY_HEADERS):
        return "x-autoreply"
    if _token(headers.get("x-auto-reply", "")) == "yes":
        return "x-autoreply"
    if any(name in headers for name in _LIST_HEADERS):
        return "list"
    if _is_out_of_office(subject):
        return "out-of-office"
    return None


def _token(value: str) -> str:
    """The bare lowercase keyword of a structured header, without comments or parameters."""
    return _COMMENT.sub("", value).split(";", 1)[0].strip().lower()


# A bare address (what the parser and the SMTP envelope hand over) needs no parsing.
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"]+")


def _address(value: str) -> str:
    value = value.strip()
    if _BARE_ADDRESS.fullmatch(value):
        return value.lower()
    return parseaddr(value)[1].strip().lower()


def _is_daemon(address: str) -> bool:
    # Some MTAs use a bare "MAILER-DAEMON" with no domain.
    return _address(address).rsplit("@", 1)[0] in _DAEMON_LOCAL_PARTS


def _is_own(
    headers: Mapping[str, str], from_addr: str, own_addresses: Iterable[str], own_domain: str
) -> bool:
    # The gateway stamps X-Liuhen-Origin on everything it sends, so its presence alone
    # means our own mail came back, whoever appears as sender.
    if _ORIGIN_HEADER in headers:
        return True
    sender = _address(from_addr)
    if sender and sender in {_address(a) for a in own_addresses}:
        return True
    if own_domain and "x-loop" in headers:
        # Match the domain or a subdomain of it, not a longer name such as "notexample.com".
        domain = re.escape(own_domain.strip().lower())
        return re.search(rf"(?<![\w-]){domain}(?![\w-]|\.\w)", headers["x-loop"].lower()) is not None
    return False


def _is_out_of_office(subject: str) -> bool:
    text = _REPLY_PREFIX.sub("", subject.strip())
    return bool(_OOO_LEADING.match(text) or _OOO_LABEL.search(text) or _AWAY_LABEL.match(text)
                or _ABSENCE_LABEL.search(text))
