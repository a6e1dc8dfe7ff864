"""What the seeded fuzzer (tests/fuzz_gateway.py) found, each kept as a fixture under
tests/fixtures/hostile/ (see its README.md)."""

from __future__ import annotations

from conftest import FIXTURES

from parsers.mime import parse_message

HOSTILE = FIXTURES / "hostile"


def test_an_attached_mail_with_a_long_header_is_kept_as_received():
    # The attached mail was written out again with compat32's folding, quadratic in a
    # header's length: this forward took 11 s to read (a 90 KB header, 30 s).
    raw = (HOSTILE / "attached_mail_long_header.eml").read_bytes()
    [attached] = parse_message(raw).attached_messages
    inner = raw[raw.index(b"From: =?utf-8?b?546L"):raw.rindex(b"\r\n--outer--")]
    assert attached == inner
    original = parse_message(attached)
    assert (original.from_addr, original.subject) == ("wangfang@qq.example.com", "官网首页改版需求")
    assert original.headers["references"] == ", ".join(["a"] * 15000)


def test_an_attached_mail_with_a_control_character_in_a_header_is_read():
    # Written out again, the VT became a line break and the stdlib refused the result
    # ("header value appears to contain an embedded header"): the whole mail fell back to
    # its headers, its text the raw MIME, the attached mail lost.
    raw = (HOSTILE / "attached_mail_vt_in_header.eml").read_bytes()
    msg = parse_message(raw)
    assert msg.text.strip() == "请跟进这个客户需求。"
    [attached] = msg.attached_messages
    assert attached == raw[raw.index(b"From: =?utf-8?b?546L"):raw.rindex(b"\r\n--outer--")]
    original = parse_message(attached)
    assert original.from_addr == "wangfang@qq.example.com" and "x-spam" not in original.headers


def test_a_request_naming_a_person_with_a_huge_run_of_address_characters_is_answered_at_once(ctx):
    # The directory's address pattern was searched again from every character of a run
    # without "@": quadratic, one such request took 85 s and, stopped by the time budget,
    # ended in 'error'. It is an ordinary rejection (no such person).
    from conftest import DOMAIN, PROJECT_BODY, make_mail

    from gateway.intake import store_raw
    from gateway.pipeline import process_inbound

    body = PROJECT_BODY.replace("研发部/王强", "研发部/" + "wang.qiang" * 20_000)
    stored = store_raw(ctx.db, make_mail(body), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=[f"project@{DOMAIN}"], now=ctx.clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "rejected"
