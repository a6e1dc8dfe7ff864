"""A client's mail forwarded by staff to customer@ becomes a customer record in which the
client takes part without an account: acknowledged, and able to confirm by replying."""

from __future__ import annotations

from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from conftest import DOMAIN, make_mail
from test_replies import NAMES, reply

from gateway.outbox import mail_body
from store.models import OutboundMessage, Participant, Record

WU = "wu.gang@liuhen.localhost"  # 客户服务部, the account manager
CLIENT = "lin@huadong-trade.example.cn"
ABOVE = """优先级：中
期望完成时间：2026-12-20 18:00
参与人：研发部/王强 — 评估刻字工艺

林先生的需求，请王强评估。
"""
QQ_FORWARD = ABOVE + """
------------------ 原始邮件 ------------------
发件人: "林先生"<lin@huadong-trade.example.cn>;
发送时间: 2026年11月26日(星期四) 下午3:12
收件人: "吴刚"<wu.gang@liuhen.localhost>;
主题: 定制表带刻字需求

吴经理您好：
我们希望表带支持激光刻字，首批500条，请评估工艺与报价。
林
"""


def test_an_inline_forward_makes_the_client_a_participant(ctx, send):
    inbound = send(make_mail(QQ_FORWARD, subject="转发：定制表带刻字需求", to=f"customer@{DOMAIN}",
                             sender=f"吴刚 <{WU}>"), rcpt=f"customer@{DOMAIN}", mail_from=WU)
    assert inbound.state == "processed", inbound.reason
    record = Record.get()
    assert record.ref.startswith("CUS-") and record.subject == "定制表带刻字需求"
    assert record.initiator_email == WU
    assert "首批500条" in record.fields["progress"] and CLIENT in record.fields["client"]
    client = Participant.get(Participant.role == "external")
    assert (client.email, client.name, client.external) == (CLIENT, "林先生", True)
    ack = OutboundMessage.get(OutboundMessage.kind == "client_ack")
    assert ack.to_addr == CLIENT and ack.headers["Reply-To"].startswith("reply+")
    text = mail_body(ctx, ack)[0]
    assert "已收到您的需求" in text and "吴刚" in text and "首批500条" in text
    assert OutboundMessage.get(OutboundMessage.kind == "request").to_addr == "wang.qiang@liuhen.localhost"


def test_the_client_adds_information_and_signs_the_result(ctx, send):
    send(make_mail(QQ_FORWARD, subject="转发：定制表带刻字需求", to=f"customer@{DOMAIN}", sender=WU),
         rcpt=f"customer@{DOMAIN}", mail_from=WU)
    NAMES[CLIENT], NAMES[WU] = "林先生", "吴刚"
    assert reply(send, CLIENT, "另外刻字需要支持中文字体。").state == "processed"
    assert "林先生 留言" in mail_body(ctx, OutboundMessage.select().where(OutboundMessage.to_addr == WU).order_by(
        OutboundMessage.id.desc()).first())[0]
    reply(send, WU, "结果：支持中文激光刻字，单价12元")
    assert OutboundMessage.select().where((OutboundMessage.to_addr == CLIENT) &
                                          (OutboundMessage.kind == "signoff")).count() == 1
    reply(send, "wang.qiang@liuhen.localhost", "确认")
    assert reply(send, CLIENT, "确认").state == "processed"
    record = Record.get()
    assert record.status == "archived" and record.archive_category == "客户沟通档案"


def test_fields_above_the_forward_are_validated_as_usual(ctx, send):
    inbound = send(make_mail(QQ_FORWARD.replace("期望完成时间：2026-12-20 18:00\n", ""), subject="转发：定制表带刻字需求",
                             to=f"customer@{DOMAIN}", sender=WU), rcpt=f"customer@{DOMAIN}", mail_from=WU)
    assert inbound.state == "rejected" and inbound.reason == "invalid request: due:missing"
    assert Participant.select().count() == 0


def test_a_client_mail_attached_as_message_rfc822(ctx, send):
    original = MIMEText("我们希望表带支持激光刻字，首批500条。", "plain", "utf-8")
    original["From"], original["Subject"] = f"=?utf-8?b?5p6X5YWI55Sf?= <{CLIENT}>", "定制表带刻字需求"
    outer = MIMEMultipart()
    outer["From"], outer["To"], outer["Subject"] = WU, f"customer@{DOMAIN}", "Fw: 定制表带刻字需求"
    outer["Message-ID"] = "<fw-attached@liuhen.localhost>"
    outer.attach(MIMEText(ABOVE, "plain", "utf-8"))
    outer.attach(MIMEMessage(original))
    inbound = send(outer.as_bytes(), rcpt=f"customer@{DOMAIN}", mail_from=WU)
    assert inbound.state == "processed", inbound.reason
    client = Participant.get(Participant.role == "external")
    assert (client.email, client.name) == (CLIENT, "林先生")


def test_a_client_mail_dragged_from_outlook_as_a_msg_item(ctx, send):
    # Outlook forwards a mail as an attached item (.msg, application/vnd.ms-outlook), not as
    # message/rfc822: it is unwrapped the same way. The item is Apache POI's test file.
    from email.mime.application import MIMEApplication
    from pathlib import Path

    item = Path(__file__).parent / "fixtures" / "outlook" / "simple_test_msg.msg"
    outer = MIMEMultipart()
    outer["From"], outer["To"], outer["Subject"] = WU, f"customer@{DOMAIN}", "FW: test message"
    outer["Message-ID"] = "<fw-outlook-item@liuhen.localhost>"
    outer.attach(MIMEText(ABOVE, "plain", "utf-8"))
    part = MIMEApplication(item.read_bytes(), "vnd.ms-outlook")
    part.add_header("Content-Disposition", "attachment", filename="test message.msg")
    outer.attach(part)
    inbound = send(outer.as_bytes(), rcpt=f"customer@{DOMAIN}", mail_from=WU)
    assert inbound.state == "processed", inbound.reason
    client = Participant.get(Participant.role == "external")
    assert (client.email, client.name) == ("travis@overwrittenstack.com", "Travis Ferguson")
    assert Record.get().fields["progress"] == "This is a test message."


def test_internal_progress_stays_inside_and_the_client_sees_only_their_request(ctx, send):
    # issue 10: progress rows with costs and stock risks were mailed to the client, and the
    # client's 状态 showed our staff and the event log.
    from test_replies import mails_to, text_of

    send(make_mail(QQ_FORWARD, subject="转发：定制表带刻字需求", to=f"customer@{DOMAIN}", sender=WU),
         rcpt=f"customer@{DOMAIN}", mail_from=WU)
    NAMES[CLIENT], NAMES[WU] = "林先生", "吴刚"
    wang = "wang.qiang@liuhen.localhost"
    reply(send, wang, "进度：\n进展：刻字工艺已打样\n风险：激光头库存只够 300 条，成本每条多 4 元")
    assert not mails_to(CLIENT, "update")  # internal: the client gets nothing of it
    assert "库存只够 300 条" in text_of(ctx, mails_to(WU, "update")[-1])
    reply(send, wang, "进度（客户可见）：\n进展：刻字样品已完成\n下一步：12月8日前寄样给客户\n风险：激光头库存不足")
    [shared] = mails_to(CLIENT, "update")
    text = text_of(ctx, shared)
    assert "刻字样品已完成" in text and "12月8日前寄样" in text and "库存" not in text
    status = send(make_mail("", subject=f"状态 {Record.get().ref}", to=f"customer@{DOMAIN}",
                            sender=f"林先生 <{CLIENT}>"), rcpt=f"customer@{DOMAIN}", mail_from=CLIENT)
    assert status.state == "processed", status.reason
    answer = text_of(ctx, mails_to(CLIENT)[-1])
    assert "首批500条" in answer and "刻字样品已完成" in answer and "12月8日前寄样" in answer
    for internal in ("王强", "吴刚", wang, WU, "库存", "record_created", "progress"):
        assert internal not in answer, internal


def test_a_forward_with_only_a_line_for_a_colleague_is_completed_by_replying_to_the_rejection(ctx, send):
    # issue 10: "请王强评估一下" above a client's mail was rejected for missing fields, and the fix
    # could not be sent as a reply: the reply did not carry the client's mail.
    from test_replies import mails_to
    from test_replies_to_our_mails import answer_as_client

    bare = QQ_FORWARD.replace(ABOVE, "请王强评估一下。\n")
    first = send(make_mail(bare, subject="转发：定制表带刻字需求", to=f"customer@{DOMAIN}", sender=f"吴刚 <{WU}>"),
                 rcpt=f"customer@{DOMAIN}", mail_from=WU)
    assert first.state == "rejected"
    [rejection] = mails_to(WU, "rejection")
    assert rejection.headers["Reply-To"] == f"customer@{DOMAIN}"
    fix = "优先级：中\n期望完成时间：2026-12-20 18:00\n参与人：研发部/王强 — 评估刻字工艺"
    inbound = answer_as_client(send, WU, "吴刚", rejection, fix)
    assert inbound.state == "processed", inbound.reason
    record = Record.get()
    assert record.form == "customer" and "首批500条" in record.fields["progress"]
    client = Participant.get(Participant.role == "external")
    assert (client.email, client.name) == (CLIENT, "林先生")
    assert Participant.get(Participant.role == "recipient").email == "wang.qiang@liuhen.localhost"
