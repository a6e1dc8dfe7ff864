"""One conversation per record (issue 11): every mail of a record refers to the request that
opened it, so Gmail and Outlook group the record's mails into one thread."""

from __future__ import annotations

from conftest import MEDIUM_BODY, PROJECT_BODY, make_mail
from test_replies import CHEN, WANG, reply

from gateway.scheduler import sweep
from store.models import InboundMessage, OutboundMessage, Record


def test_every_mail_of_a_record_has_the_request_as_its_root(ctx, send, clock):
    request = send(make_mail(MEDIUM_BODY))
    request_id = InboundMessage.get_by_id(request.id).message_id
    record = Record.get()
    answer = reply(send, WANG, "同意")
    reply(send, CHEN, "结果：采用方案B")
    clock.advance(days=2)
    sweep(ctx)  # reminders to sign
    mails = list(OutboundMessage.select().where(OutboundMessage.record_id == record.id))
    kinds = {m.kind for m in mails}
    assert {"ack", "request", "receipt", "update", "signoff", "reminder"} <= kinds, kinds
    for mail in mails:
        references = mail.headers["References"].split()
        assert references[:2] == [request_id, record.thread_id], (mail.kind, references)
        assert mail.headers["Thread-Topic"] == record.subject
    ack = next(m for m in mails if m.kind == "ack")
    assert ack.headers["In-Reply-To"] == request_id
    receipt = next(m for m in mails if m.kind == "receipt" and m.to_addr == WANG)
    answered = InboundMessage.get_by_id(answer.id).message_id
    assert receipt.headers["In-Reply-To"] == answered and receipt.headers["References"].split()[-1] == answered


def test_every_mail_of_a_record_has_the_records_subject_and_says_what_it_is_in_its_first_lines(ctx, send):
    from test_replies import text_of

    send(make_mail(PROJECT_BODY))
    reply(send, WANG, "同意")
    reply(send, CHEN, "结果：采用方案B")
    mails = list(OutboundMessage.select().where(OutboundMessage.record_id.is_null(False)))
    assert {m.kind for m in mails} >= {"ack", "request", "head_copy", "receipt", "update", "signoff"}
    assert {m.subject for m in mails} == {"[PRJ-2026-0001] 【紧急】 智能手表项目-硬件方案评审"}
    signoff = next(m for m in mails if m.kind == "signoff" and m.to_addr == WANG)
    assert "结果确认表：请签字确认" in text_of(ctx, signoff).split("\n\n")[1]  # what it is, up top


def test_outlook_sees_one_conversation_by_thread_index(ctx, send):
    import base64

    from test_replies import WANG, reply

    send(make_mail(PROJECT_BODY))
    reply(send, WANG, "同意")
    indexes = [base64.b64decode(m.headers["Thread-Index"])
               for m in OutboundMessage.select().where(OutboundMessage.record_id.is_null(False))]
    assert len(indexes) >= 5 and {len(i) for i in indexes} == {27}  # a 22-byte header and one child block
    assert len({i[:22] for i in indexes}) == 1  # the same conversation for every mail of the record
    filetime = int.from_bytes(indexes[0][:6], "big") << 16  # …starting when the record was opened
    assert abs(filetime / 10_000_000 - 11_644_473_600 - Record.get().created_at.timestamp()) < 10
