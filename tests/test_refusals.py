"""One refusal path with caps (issue 9): strangers learn nothing and get little; robots that
answer everything stop hearing back; every refusal code has its texts."""

from __future__ import annotations

from conftest import DOMAIN, PROJECT_BODY, make_mail
from test_replies import MEDIUM, WANG, mails_to, reply, reply_address

from gateway import refusals
from mail_templates import LANGUAGES, Renderer
from store.models import Event, OutboundMessage, Participant, Record


def _answers_to(address: str) -> list[OutboundMessage]:
    return list(OutboundMessage.select().where(OutboundMessage.to_addr == address))


def test_forged_tokens_from_strangers_are_not_answered(ctx, send):
    assert send(make_mail(MEDIUM)).state == "processed"
    record = Record.get()
    strangers = [f"probe{i}@evil.test" for i in range(20)]
    for i, stranger in enumerate(strangers):
        forged = f"reply+{record.id}-{i + 1}-aaaaaaaaaaaaaaaa@{DOMAIN}"
        inbound = send(make_mail("同意", subject="Re: x", to=forged, sender=stranger), rcpt=forged, mail_from=stranger)
        assert inbound.state == "rejected" and "unknown sender: not answered" in inbound.reason
    assert not OutboundMessage.select().where(OutboundMessage.to_addr.in_(strangers)).exists()


def test_invalid_requests_are_answered_a_few_times_a_day_then_no_more(ctx, send):
    stranger, colleague = "someone@example.net", "chen.jing@liuhen.localhost"
    for i in range(15):
        body = PROJECT_BODY.replace("优先级：高", f"优先级：特别急{i}")  # a different problem every time
        send(make_mail(body, sender=stranger), mail_from=stranger)
        send(make_mail(body, sender=f"陈静 <{colleague}>"), mail_from=colleague)
    assert len(_answers_to(stranger)) == refusals.STRANGER_DAILY
    assert len(_answers_to(colleague)) == refusals.KNOWN_SENDER_DAILY


def test_help_to_a_stranger_is_short_and_capped(ctx, send):
    known, stranger = "chen.jing@liuhen.localhost", "anyone@example.net"
    send(make_mail("", subject="帮助", sender=f"陈静 <{known}>"), mail_from=known)
    for _ in range(10):
        send(make_mail("", subject="帮助", sender=stranger), mail_from=stranger)
    from gateway.outbox import mail_body
    full = mail_body(ctx, _answers_to(known)[0])[0]
    short = [mail_body(ctx, m)[0] for m in _answers_to(stranger)]
    assert len(short) == refusals.STRANGER_DAILY
    assert len(short[0].encode()) < len(full.encode()) / 2 and "\n空白表单：" not in short[0]


def test_an_auto_responder_without_markers_stops_getting_receipts(ctx, send):
    # It answers every receipt with the same words, to the reply address it was given.
    assert send(make_mail(MEDIUM)).state == "processed"
    states = [reply(send, WANG, "您好，我正在休假，12月10日回来。").state for _ in range(6)]
    assert states == ["processed"] * refusals.SAME_TEXT_DAILY + ["ignored"] * (6 - refusals.SAME_TEXT_DAILY)
    assert len(mails_to(WANG, "receipt")) == refusals.SAME_TEXT_DAILY
    assert Event.select().where(Event.kind == "repetition_ignored").count() == 1  # said once in the trace


def test_receipts_on_one_record_are_capped_per_day(ctx, send):
    assert send(make_mail(MEDIUM)).state == "processed"
    for i in range(refusals.RECEIPTS_PER_RECORD_DAILY + 3):
        assert reply(send, WANG, f"进度：第{i}次同步").state == "processed"
    assert len(mails_to(WANG, "receipt")) == refusals.RECEIPTS_PER_RECORD_DAILY
    assert Event.select().where(Event.kind == "progress").count() == refusals.RECEIPTS_PER_RECORD_DAILY + 3


def test_a_colleague_outside_the_record_is_told_once_a_stranger_not_at_all(ctx, send):
    assert send(make_mail(MEDIUM)).state == "processed"
    colleague = "li.na@liuhen.localhost"  # in the directory, not in this record
    assert Participant.select().where(Participant.email == colleague).count() == 0
    for person in (colleague, "mallory@example.net"):
        inbound = reply(send, person, "同意", to=f"project@{DOMAIN}")
        assert inbound.state == "rejected" and "reply_not_participant" in inbound.reason
    assert [m.kind for m in _answers_to(colleague)] == ["refusal"]
    assert _answers_to("mallory@example.net") == []
    assert reply_address(WANG)  # the participants were not told anything about it


def test_every_refusal_code_has_a_text_in_every_language():
    renderer = Renderer()
    for lang in LANGUAGES:
        missing = set(refusals.CODES) - set(renderer.problem_texts[lang])
        assert not missing, (lang, missing)
        unused = set(renderer.problem_texts[lang]) - set(refusals.CODES)
        assert not unused, (lang, unused)  # a text nothing can say is dead, or its code is unregistered
        for code in refusals.CODES:
            assert "{" not in renderer.problem_text(lang, code, label="L", value="V", detail="D")


def test_no_answer_is_queued_to_an_address_no_mail_can_reach(ctx):
    # A hostile From with a control character in a quoted local part: the rejection was queued
    # and failed at delivery (found by the fuzzer). Now it is not written at all.
    from gateway.intake import store_raw
    from gateway.pipeline import process_inbound

    raw = make_mail("沟通主题：测试", sender="X <x@evil.test>").replace(b"<x@evil.test>", b'<"chen\x0bx"@evil.test>')
    stored = store_raw(ctx.db, raw, source="ingest", envelope_from="x@evil.test",
                       envelope_to=[f"project@{DOMAIN}"], now=ctx.clock.now())
    assert process_inbound(ctx, stored.inbound_id) == "rejected"
    assert OutboundMessage.select().count() == 0
