"""Every value that reaches a header of a mail we send is cleaned of control characters and
checked (issue 9, "Header injection"). `str.splitlines` — and with it `Header.encode` — breaks
lines at VT, FF, \\x1c-\\x1e, NEL and U+2028/2029 as well as at CR and LF: one of them in a
sender's address ended the headers of the acknowledgement early, and where the injected text
looked like a header the composer raised and the mail stayed 'sending'."""

from __future__ import annotations

import base64
import email
import re
from datetime import UTC, datetime
from email import errors, policy
from pathlib import Path

from conftest import FIXTURES, sent_mails
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.delivery import DeliveryError, MaildirTransport, compose
from gateway.intake import store_raw
from gateway.outbox import Draft, deliver_due, queue_mails
from gateway.pipeline import process_inbound
from store.models import Event, OutboundMessage

HOSTILE = FIXTURES / "hostile"


def _submit(ctx, fixture: Path) -> None:
    stored = store_raw(ctx.db, fixture.read_bytes(), source="ingest", envelope_from="eve@evil.test",
                       envelope_to=["project@liuhen.test"], now=ctx.clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "processed"


def _ack(ctx) -> OutboundMessage:
    return OutboundMessage.get(OutboundMessage.kind == "ack")


def test_a_line_break_in_the_senders_address_does_not_end_the_headers(ctx):
    # The sender is not the request's initiator, so the acknowledgement copies them (Cc).
    _submit(ctx, HOSTILE / "outbound_vt_in_sender_address.eml")
    sent_mails(ctx)
    ack = _ack(ctx)
    assert ack.status == "sent"
    parsed = email.message_from_bytes(bytes(ack.raw), policy=policy.default)
    assert parsed.defects == []
    assert parsed["Subject"].startswith("[PRJ-2026-0001]")
    assert parsed["Auto-Submitted"] == "auto-replied" and parsed["Reply-To"].startswith("reply+")
    # The address with a control character is no address: left out, said so in the trace.
    assert parsed["Cc"] is None and b"owned text" not in bytes(ack.raw)
    [event] = [e for e in Event.select().where(Event.kind == "mail_sent") if e.data["outbound_id"] == ack.id]
    assert event.data["left_out"] == ['"chen\x0b\x0bowned text"@evil.test']


def test_injected_text_that_looks_like_a_header_neither_crashes_delivery_nor_becomes_one(ctx):
    _submit(ctx, HOSTILE / "outbound_header_in_sender_address.eml")
    sent_mails(ctx)  # what `liuhen outbox flush` does; it raised HeaderParseError
    assert not OutboundMessage.select().where(OutboundMessage.status == "sending").exists()
    ack = _ack(ctx)
    assert ack.status == "sent"
    parsed = email.message_from_bytes(bytes(ack.raw), policy=policy.default)
    assert parsed.defects == [] and parsed["X-Evil"] is None and parsed["Cc"] is None


def test_a_recipient_address_that_is_no_address_is_a_permanent_failure(ctx):
    queue_mails(ctx, [Draft(kind="rejection", template="sender/error", lang="en", to_addr='"eve\x0bx"@evil.test',
                            to_name="Eve", context={"inbound_id": 1, "original_subject": "hello"})])
    deliver_due(ctx, MaildirTransport(ctx.settings.maildir_path))
    failed = OutboundMessage.get()
    assert failed.status == "failed" and failed.raw is None
    assert "not a valid mail address" in failed.last_error and "\\x0b" in failed.last_error
    assert Event.get(Event.kind == "mail_failed").data["to"] == '"eve\x0bx"@evil.test'


# --- every header we write, fuzzed -------------------------------------------------------

_CONTROLS = "\x00\x01\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x7f\x85\u2028\u2029"
_has_control = re.compile(f"[{re.escape(_CONTROLS)}\x00-\x1f\x7f-\x9f]").search
_any_control = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # what a header value cannot hold
_texts = st.text(st.characters(codec="utf-8"), max_size=300) | st.text(
    st.sampled_from("ab 王强 =?_\"\\<>@,;:()." + _CONTROLS), max_size=120)
_atoms = st.text(st.sampled_from("abcXYZ019.-_+!#'=?{|}~"), min_size=1, max_size=30).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
_labels = st.text(st.sampled_from("abcxyz019-"), min_size=1, max_size=20).filter(
    lambda s: not s.startswith("-") and not s.endswith("-"))
_non_ascii_labels = st.sampled_from(["mächine", "例子", "bücher", "xn--caf-dma"])
_domains = st.lists(_labels | _non_ascii_labels, min_size=1, max_size=3).map(".".join)
_good_addresses = st.builds(lambda local, domain: f"{local}@{domain}", _atoms | st.sampled_from(["jdöe", "王强"]),
                            _domains)
# What a hostile sender's address may turn into: a control character inside, a bare word.
_bad_addresses = st.builds(lambda addr, i, c: addr[:i] + c + addr[i:], _good_addresses,
                           st.integers(0, 40), st.sampled_from(_CONTROLS)) | st.text(max_size=20).filter(
    lambda s: "@" not in s)
_good_ids = st.from_regex(r"<[a-z0-9.$%+-]{1,40}@[a-z0-9.-]{1,30}>", fullmatch=True)
_bad_ids = st.builds(lambda msg_id, c: msg_id[:3] + c + msg_id[3:], _good_ids, st.sampled_from(_CONTROLS + " 王<"))


def _text_of(msg, subtype: str) -> str:
    return next(p for p in msg.walk() if p.get_content_type() == f"text/{subtype}").get_content()


def _same(parsed: str, written: str) -> bool:
    return parsed.split() == written.split()


@settings(derandomize=True, max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(to_name=_texts, to_addr=_good_addresses | _bad_addresses, cc=st.lists(_good_addresses | _bad_addresses, max_size=3),
       subject=_texts, references=st.lists(_good_ids | _bad_ids, max_size=6), extra=_texts, filename=_texts,
       text=st.text(max_size=200))
def test_every_header_we_write_parses_back_as_written(to_name, to_addr, cc, subject, references, extra, filename,
                                                      text):
    headers = {"Auto-Submitted": "auto-replied", "Reply-To": "reply+1-2-abc@liuhen.test",
               "In-Reply-To": " ".join(references), "References": " ".join(references), "X-Liuhen-Note": extra}
    mail = OutboundMessage(to_addr=to_addr, to_name=to_name, cc=cc, subject=subject, headers=headers,
                           message_id="<0123abcd@liuhen.test>", text=text, html=f"<p>{text}</p>",
                           attachments=[{"filename": filename, "content_type": "text/calendar; method=REQUEST",
                                         "text": "BEGIN:VCALENDAR"}])
    try:
        composed = compose(mail, from_name="留痕 liuhen", from_addr="liuhen@liuhen.test",
                           date=datetime(2026, 11, 27, 10, 0, tzinfo=UTC), domain="liuhen.test")
    except DeliveryError as exc:
        assert exc.permanent and "recipient's address" in str(exc)
        assert _has_control(to_addr) or "@" not in to_addr or not to_addr.split("@")[0]
        return
    raw = composed.raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    # RFC 6532 mail has UTF-8 headers; the stdlib reads those only from text, and calls a
    # UTF-8 local part (valid there) a defect of RFC 5322.
    msg = email.message_from_string(raw.decode("utf-8"), policy=policy.default)
    assert msg.defects == []
    for name, value in msg.items():
        assert all(isinstance(d, errors.NonASCIILocalPartDefect) for d in value.defects), (name, value.defects)
    good_ids = [r for r in references if not _has_control(r) and " " not in r and r.isascii() and r.count("<") == 1]
    expected = {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Auto-Submitted",
                "Reply-To", "X-Auto-Response-Suppress", "X-Liuhen-Origin"}
    expected |= {"Cc"} if len(composed.recipients) > 1 else set()
    expected |= {"In-Reply-To", "References"} if good_ids else set()
    expected |= {"X-Liuhen-Note"} if _any_control.sub("", extra).strip(" ") else set()  # not only controls
    assert set(msg.keys()) == expected and len(msg.keys()) == len(expected)  # each one once
    assert [a.addr_spec for a in msg["To"].addresses] == [composed.recipients[0]]
    assert ([a.addr_spec for a in msg["Cc"].addresses] if "Cc" in msg else []) == composed.recipients[1:]
    assert len(composed.recipients) + len(composed.left_out) == 1 + len(cc)
    if not _has_control(to_name):
        assert _same(msg["To"].addresses[0].display_name, to_name)
    if not _has_control(subject):
        assert _same(str(msg["Subject"]), subject)
    assert not _has_control(str(msg["Subject"])) and not _has_control(msg["To"].addresses[0].display_name)
    if good_ids:
        assert msg["In-Reply-To"] == good_ids[0] and msg["References"].split() == good_ids
    assert _text_of(msg, "plain") == text and _text_of(msg, "html") == f"<p>{text}</p>"
    [attachment] = [p for p in msg.walk() if p.get_content_disposition() == "attachment"]
    written = attachment.get_filename()
    assert written and not _has_control(written) and len(written.encode()) <= 200
    if not _has_control(filename) and len(filename.encode()) <= 200 and filename.strip():
        assert _same(written, filename)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(subject=st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S")) | st.just(" "), min_size=1,
                       max_size=300).filter(lambda s: not s.isascii()))
def test_a_long_non_ascii_subject_is_folded_into_whole_character_encoded_words(subject):
    mail = OutboundMessage(to_addr="wang@liuhen.test", to_name="王强", cc=[], subject=subject, headers={},
                           message_id="<0123abcd@liuhen.test>", text="x", html="<p>x</p>", attachments=[])
    raw = compose(mail, from_name="留痕", from_addr="liuhen@liuhen.test",
                  date=datetime(2026, 11, 27, 10, 0, tzinfo=UTC), domain="liuhen.test").raw
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")  # non-ASCII only inside encoded words
    lines = re.search(r"^Subject: [^\r\n]*(?:\r\n [^\r\n]*)*", head, re.MULTILINE).group(0).split("\r\n")
    assert all(len(line) <= 76 for line in lines)
    words = [re.fullmatch(r" ?(?:Subject: )?=\?utf-8\?b\?([A-Za-z0-9+/=]+)\?=", line).group(1) for line in lines]
    # Each word decodes on its own: a character is never split between two (Outlook shows ? for those).
    decoded = "".join(base64.b64decode(w).decode("utf-8") for w in words)
    assert decoded.split() == subject.split()
