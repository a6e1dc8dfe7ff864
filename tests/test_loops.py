"""Every loop closes (issue 10): a question is answered back to whoever asked, a proposed
milestone change is accepted or declined, finished work is marked done and stops reminding,
an archived record can be reopened. Each test replies as people do — to the gateway's mail,
from their own client — and checks the record, the receipts and what the others get."""

from __future__ import annotations

import pytest
from conftest import make_mail
from test_replies import CHEN, MEDIUM, WANG, ZHAO, mails_to, participant, reply, text_of
from test_reply_context import answer

from gateway.scheduler import sweep
from store.models import Dispute, Event, Milestone, Record


@pytest.fixture
def record(ctx, send) -> Record:
    assert send(make_mail(MEDIUM)).state == "processed"
    return Record.get()


def test_the_answer_to_a_question_goes_to_whoever_asked_and_they_are_asked_again(ctx, send, record):
    assert answer(send, WANG, "需补充信息：请提供BOM成本明细", "request").state == "processed"
    assert participant(WANG).response == "need_info"
    [question] = mails_to(CHEN, "question")
    assert "王强 需要补充信息" in text_of(ctx, question)
    # 陈静 answers by replying to that mail, with no keyword at all.
    assert answer(send, CHEN, "BOM 成本明细见下：主控 86 元，屏幕 54 元，其余 180 元。", "question").state == "processed"
    wang = participant(WANG)
    assert wang.response == "" and wang.response_due_at is not None and wang.next_reminder_at is not None
    passed_on = mails_to(WANG, "request")[-1]
    body = text_of(ctx, passed_on)
    assert "陈静 补充了信息" in text_of(ctx, passed_on) and "主控 86 元" in body
    assert "已转给 王强" in text_of(ctx, mails_to(CHEN, "receipt")[-1])
    assert Event.get(Event.kind == "info_answered").data["to"] == WANG
    # And the loop ends where it should: his answer is now an agreement.
    assert answer(send, WANG, "同意", "request").state == "processed"
    assert participant(WANG).response == "agree"


def test_with_two_questions_open_the_answer_goes_to_the_one_replied_to(ctx, send, record):
    answer(send, WANG, "需补充信息：BOM 明细", "request")
    answer(send, ZHAO, "需补充信息：竞品清单", "request")
    unclear = reply(send, CHEN, "补充信息：都在附件里")  # to the reply address, answering no mail
    assert unclear.state == "rejected" and unclear.reason.startswith("answer_which")
    newest = mails_to(CHEN, "question")[-1]
    assert "赵磊" in text_of(ctx, newest)
    assert answer(send, CHEN, "竞品：A 款 899 元，B 款 1099 元", "question").state == "processed"  # to that one
    assert participant(ZHAO).response == "" and participant(WANG).response == "need_info"
    assert "A 款 899 元" in text_of(ctx, mails_to(ZHAO, "request")[-1])
    assert not any("A 款 899 元" in text_of(ctx, m) for m in mails_to(WANG))


def test_an_answer_with_no_question_open_is_kept_as_a_comment(ctx, send, record):
    assert reply(send, CHEN, "补充信息：评审会改到 3 号会议室").state == "processed"
    assert Event.get(Event.kind == "comment").data["text"] == "评审会改到 3 号会议室"
    assert "没有待答复的“需补充信息”" in text_of(ctx, mails_to(CHEN, "receipt")[-1])


def test_a_proposed_milestone_change_accepted_moves_the_milestone_and_everyone_hears(ctx, send, record):
    assert answer(send, WANG, "建议调整节点：方案评审 — 2026-12-14 14:00，样机未到", "request").state == "processed"
    proposal = mails_to(CHEN, "update")[-1]
    assert "接受调整" in text_of(ctx, proposal)
    assert reply(send, CHEN, "接受调整").state == "processed"
    moved = Milestone.get(Milestone.name == "方案评审")
    assert moved.due_at.astimezone(ctx.tz).strftime("%m-%d %H:%M") == "12-14 14:00"
    assert moved.delayed_from.astimezone(ctx.tz).strftime("%m-%d %H:%M") == "12-10 14:00"
    for person in (WANG, ZHAO):
        assert "方案评审：2026-12-10 14:00 → 2026-12-14 14:00" in text_of(ctx, mails_to(person, "update")[-1])
    again = reply(send, CHEN, "接受调整")
    assert again.state == "rejected" and again.reason.startswith("no_proposal")


def test_a_declined_change_goes_back_to_the_proposer_with_the_reason(ctx, send, record):
    answer(send, WANG, "建议调整节点：方案评审 — 2026-12-14 14:00", "request")
    assert reply(send, CHEN, "不接受").reason.startswith("need_text")
    assert reply(send, CHEN, "不接受：评审日期已与客户确认").state == "processed"
    assert Milestone.get(Milestone.name == "方案评审").due_at.astimezone(ctx.tz).day == 10
    wang = participant(WANG)
    assert wang.response == "" and wang.next_reminder_at is not None
    told = mails_to(WANG, "request")[-1]
    assert "不接受节点调整" in text_of(ctx, told) and "已与客户确认" in text_of(ctx, told)


def test_a_milestone_marked_done_stops_reminding_and_shows_as_done(ctx, send, record, clock):
    refused = reply(send, WANG, "完成：方案评审")  # not his: the initiator owns it
    assert refused.state == "rejected" and refused.reason.startswith("done_which")
    assert reply(send, CHEN, "完成：方案评审").state == "processed"
    assert Milestone.get(Milestone.name == "方案评审").done_at is not None
    clock.advance(days=20)  # far past its date: no before, overdue or escalation mail
    sweep(ctx)
    reminded = {e.data.get("item") for e in Event.select().where(Event.kind.in_(("reminder", "escalation")))}
    assert "样机测试" in reminded and "方案评审" not in reminded
    from gateway.report import record_report

    shown = {m["name"]: m for m in record_report(ctx, record.ref)["milestones"]}
    assert shown["方案评审"]["done_at"] is not None and shown["样机测试"]["done_at"] is None


def test_an_archived_record_can_be_reopened_by_its_initiator_with_a_reason(ctx, send, record):
    assert reply(send, CHEN, "重新打开：再看看").reason.startswith("reopen_not_archived")
    reply(send, CHEN, "结果：采用方案B")
    reply(send, WANG, "确认")
    reply(send, ZHAO, "确认")
    assert Record.get().status == "archived"
    assert reply(send, CHEN, "重新打开").reason.startswith("need_text")
    assert reply(send, CHEN, "重新打开：客户要求增加防水等级").state == "processed"
    reopened = Record.get()
    assert reopened.status == "open" and reopened.archived_at is None
    assert participant(WANG).signed_at is None and participant(ZHAO).signed_at is None
    assert "重新打开" in text_of(ctx, mails_to(WANG, "update")[-1])
    assert Event.get(Event.kind == "reopened").data["reason"] == "客户要求增加防水等级"


ZHOU, LI = "zhou.ming@liuhen.localhost", "li.na@liuhen.localhost"  # heads of 研发部 and 产品部


def test_a_dispute_may_be_ruled_by_the_lead_or_a_head_of_a_department_taking_part(ctx, send, record):
    from test_replies import NAMES

    NAMES.setdefault(ZHOU, "周明")
    NAMES.setdefault(LI, "李娜")
    assert reply(send, WANG, "争议：研发与市场对上市时间意见不一致").state == "processed"
    for ruler in (CHEN, LI, ZHOU, ZHAO):  # the initiator, and the heads of 产品部, 研发部, 市场部
        assert "争议待您裁定" in text_of(ctx, mails_to(ruler)[-1]), ruler
    assert reply(send, ZHOU, "裁定：按研发意见，上市推迟两周").state == "processed"
    settled = Dispute.get()
    assert settled.ruled_by == ZHOU and settled.next_reminder_at is None


def test_only_someone_who_may_rule_does(ctx, send, record):
    from store.models import Participant

    reply(send, WANG, "争议：研发与市场对上市时间意见不一致")
    # A head of a department that takes no part (copied in some other way) may not.
    Participant.create(record=record.id, email="qian.hong@liuhen.localhost", name="钱红", department="财务部",
                       role="head")
    from test_replies import NAMES

    NAMES.setdefault("qian.hong@liuhen.localhost", "钱红")
    refused = reply(send, "qian.hong@liuhen.localhost", "裁定：按市场意见",
                    to=_reply_address_of(ctx, record, "qian.hong@liuhen.localhost"))
    assert refused.state == "rejected" and refused.reason.startswith("ruling_not_allowed")
    assert Dispute.get().ruled_at is None


def _reply_address_of(ctx, record, email):
    from gateway.tokens import reply_address
    from store.models import Participant

    p = Participant.get((Participant.record == record.id) & (Participant.email == email))
    return reply_address(ctx.settings.gateway.secret, ctx.settings.gateway.domain, record.id, p.id)


def test_an_unruled_dispute_is_reminded_escalated_and_in_the_digest(ctx, send, record, clock):
    reply(send, WANG, "争议：研发与市场对上市时间意见不一致")
    clock.advance(hours=25)
    sweep(ctx)
    reminded = [e for e in Event.select().where(Event.kind == "reminder") if e.data.get("chain") == "dispute"]
    assert [e.data["stage"] for e in reminded] == ["overdue"]
    clock.advance(hours=48)
    sweep(ctx)
    assert any(e.data.get("chain") == "dispute" for e in Event.select().where(Event.kind == "escalation"))
    digest = [m for m in mails_to(LI) if m.kind == "digest"]  # the sweeps send the 09:00 digest too
    assert digest and "争议待您裁定（已逾期）" in text_of(ctx, digest[-1])


def test_an_open_dispute_holds_the_archive_until_it_is_ruled(ctx, send, record):
    reply(send, CHEN, "结果：采用方案B")
    reply(send, ZHAO, "争议：市场部认为成本估算偏低")
    reply(send, WANG, "确认")
    last = reply(send, ZHAO, "确认")
    assert last.state == "processed" and Record.get().status == "confirming"
    assert "有未裁定的争议" in text_of(ctx, mails_to(ZHAO, "receipt")[-1])
    closing = reply(send, CHEN, "关闭")
    assert closing.state == "rejected" and closing.reason.startswith("close_dispute_open")
    assert reply(send, CHEN, "裁定：成本按财务复核后的数字").state == "processed"
    assert Record.get().status == "archived"


def test_a_recipient_hands_their_part_to_a_colleague_who_then_answers(ctx, send, record):
    from test_replies import NAMES

    from store.models import Participant

    ZHANG = "zhang.zhe@liuhen.localhost"
    NAMES.setdefault(ZHANG, "张喆")
    assert reply(send, WANG, "转交：外星人").reason.startswith("delegate_unknown")
    assert reply(send, WANG, "转交：市场部/赵磊").reason.startswith("delegate_already")
    assert reply(send, WANG, "转交：研发部/张喆，结构件由他负责").state == "processed"
    wang = participant(WANG)
    assert wang.response == "delegated" and wang.next_reminder_at is None
    zhang = Participant.get((Participant.email == ZHANG) & (Participant.role == "recipient"))
    assert zhang.responsibility == wang.responsibility and zhang.response_due_at == wang.response_due_at
    handed = mails_to(ZHANG, "request")[-1]
    assert "王强 把这项工作转交给您" in text_of(ctx, handed) and "结构件由他负责" in text_of(ctx, handed)
    assert "转交给了 张喆" in text_of(ctx, mails_to(CHEN, "update")[-1])
    assert answer(send, ZHANG, "同意", "request").state == "processed"
    assert Participant.get_by_id(zhang.id).response == "agree"
    # The result is signed by whoever holds the part now; the one who handed it on is not waited for.
    reply(send, CHEN, "结果：采用方案B")
    assert not mails_to(WANG, "signoff") and mails_to(ZHANG, "signoff")
    answer(send, ZHANG, "确认", "signoff")
    answer(send, ZHAO, "确认", "signoff")
    assert Record.get().status == "archived"


def test_the_initiators_receipt_lists_what_waits_for_them(ctx, send, record):
    answer(send, WANG, "需补充信息：BOM 明细", "request")
    answer(send, ZHAO, "建议调整节点：方案评审 — 2026-12-14 14:00", "request")
    reply(send, ZHAO, "争议：市场部认为成本估算偏低")
    assert reply(send, CHEN, "进度：方案B 成本测算中").state == "processed"
    receipt = text_of(ctx, mails_to(CHEN, "receipt")[-1])
    assert "待您答复的“需补充信息”：王强" in receipt
    assert "待您决定的节点调整建议" in receipt and "“接受调整”" in receipt
    assert "待裁定的争议" in receipt
