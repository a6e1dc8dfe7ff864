"""Meetings that round-trip through calendars (issue 14): invitations as Outlook, Gmail, Apple
Mail and QQ Mail expect them, their answers recorded as the attendee's, changes and
cancellations that calendars follow, and minutes asked for after the real end."""

from __future__ import annotations

import icalendar
import pytest
from conftest import DOMAIN, PROJECT_BODY, make_mail, sent_mails
from itip_clients import CLIENTS, outlook
from test_replies import CHEN, WANG, ZHAO, mails_to, participant, reply, text_of

from gateway.cli import cmd_show
from gateway.scheduler import sweep
from store.models import Event, Meeting, MeetingAnswer, Record

MEETING = "会议：\n时间：2026-12-01 14:00\n时长：90分钟\n链接：https://meeting.example.cn/j/42\n议程：方案评审"


@pytest.fixture
def meeting(ctx, send) -> Meeting:
    assert send(make_mail(PROJECT_BODY.replace("优先级：高", "优先级：中"))).state == "processed"
    assert reply(send, CHEN, MEETING).state == "processed"
    return Meeting.get()


def invitation_to(ctx, person: str, nth: int = -1) -> tuple[icalendar.Event, str, list]:
    """(the VEVENT, METHOD, the mail's calendar parts) of the nth invitation mail to `person`."""
    mails = [m for m in sent_mails(ctx) if m["To"].endswith(f"<{person}>")
             and any(p.get_content_type() == "text/calendar" for p in m.walk())]
    parts = [p for p in mails[nth].walk() if p.get_content_type() == "text/calendar"]
    calendar = icalendar.Calendar.from_ical(parts[0].get_payload(decode=True).decode())
    [event] = calendar.walk("VEVENT")
    return event, str(calendar["METHOD"]), parts


def organiser_of(event: icalendar.Event) -> str:
    return str(event["ORGANIZER"]).removeprefix("mailto:")


def answer(send, client: str, event: icalendar.Event, person: str, name: str, partstat: str, **extra) -> object:
    """The person's calendar answers the invitation, to the organiser address it was given."""
    organiser = organiser_of(event)
    raw = CLIENTS[client](str(event["UID"]), organiser, person, name, partstat, event["DTSTART"].dt,
                          event["DTEND"].dt, sequence=int(event["SEQUENCE"]), **extra)
    return send(raw, rcpt=organiser, mail_from=person)


def test_the_invitation_is_a_calendar_invitation_whose_answers_come_to_the_gateway(ctx, meeting):
    event, method, parts = invitation_to(ctx, WANG)
    assert method == "REQUEST" and [p.get_filename() for p in parts] == [None, "invite.ics"]
    assert parts[0].get_param("method") == "REQUEST"  # inside multipart/alternative, as Outlook wants it
    assert str(event["UID"]) == meeting.uid and int(event["SEQUENCE"]) == 0
    assert event["DTSTART"].params["TZID"] == "Asia/Shanghai" and event["DTSTART"].dt.hour == 14
    calendar = icalendar.Calendar.from_ical(parts[1].get_payload(decode=True).decode())
    assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    # The organiser is the gateway's meeting address in the initiator's name, one per attendee.
    assert organiser_of(event).startswith("meeting+") and organiser_of(event).endswith(f"@{DOMAIN}")
    assert str(event["ORGANIZER"].params["CN"]) == "陈静"
    assert organiser_of(event) != organiser_of(invitation_to(ctx, ZHAO)[0])
    attendees = {str(a).removeprefix("mailto:"): a.params for a in event["ATTENDEE"]}
    assert attendees[WANG]["RSVP"] == "TRUE" and attendees[WANG]["PARTSTAT"] == "NEEDS-ACTION"


@pytest.mark.parametrize("client", ["outlook", "gmail", "apple", "qq"])
@pytest.mark.parametrize("partstat", ["ACCEPTED", "DECLINED", "TENTATIVE"])
def test_each_calendars_answer_is_recorded_as_the_attendees(ctx, send, meeting, client, partstat, capsys):
    import argparse
    import json

    event = invitation_to(ctx, WANG)[0]
    inbound = answer(send, client, event, WANG, "王强", partstat)
    assert inbound.state == "processed", inbound.reason
    saved = MeetingAnswer.get()
    assert (saved.meeting_id, saved.participant_id, saved.answer) == (meeting.id, participant(WANG).id, partstat)
    cmd_show(argparse.Namespace(ref=Record.get().ref, json=True), ctx)
    shown = json.loads(capsys.readouterr().out)["meetings"][0]["answers"]
    assert shown == [{"email": WANG, "name": "王强", "answer": partstat.lower(), "comment": ""}]
    assert mails_to(WANG, "receipt") == []  # a calendar sent it: nobody is answered


def test_outlook_com_leaves_out_the_organizer_and_is_matched_on_the_uid(ctx, send, meeting):
    event = invitation_to(ctx, ZHAO)[0]
    assert answer(send, "outlook", event, ZHAO, "赵磊", "ACCEPTED", outlook_com=True).state == "processed"
    assert MeetingAnswer.get().answer == "ACCEPTED"


def test_a_key_participant_declining_is_flagged_to_the_initiator_with_what_they_wrote(ctx, send, meeting):
    event = invitation_to(ctx, WANG)[0]
    assert answer(send, "outlook", event, WANG, "王强", "DECLINED", comment="当天在深圳出差").state == "processed"
    [flag] = mails_to(CHEN, "meeting_declined")
    text = text_of(ctx, flag)
    assert "王强 拒绝了会议邀请" in text and "当天在深圳出差" in text
    assert Event.select().where(Event.kind == "meeting_declined").count() == 1


def test_an_answer_to_a_forged_or_someone_elses_meeting_address_changes_nothing(ctx, send, meeting):
    event = invitation_to(ctx, WANG)[0]
    forged = outlook(str(event["UID"]), f"meeting+{meeting.id}-{participant(WANG).id}-aaaaaaaaaaaaaaaa@{DOMAIN}",
                     WANG, "王强", "DECLINED", event["DTSTART"].dt, event["DTEND"].dt)
    assert send(forged, rcpt=f"meeting+{meeting.id}-{participant(WANG).id}-aaaaaaaaaaaaaaaa@{DOMAIN}",
                mail_from=WANG).state == "rejected"
    # 赵磊 answering for 王强, at 王强's address: the calendar answer is not his to give.
    raw = outlook(str(event["UID"]), organiser_of(event), ZHAO, "赵磊", "DECLINED", event["DTSTART"].dt,
                  event["DTEND"].dt)
    assert send(raw, rcpt=organiser_of(event), mail_from=ZHAO).state == "ignored"
    assert MeetingAnswer.select().count() == 0 and mails_to(CHEN, "meeting_declined") == []
    assert [m for m in sent_mails(ctx) if m["To"].endswith(f"<{ZHAO}>") and "拒绝" in m["Subject"]] == []


def test_a_moved_meeting_keeps_its_uid_raises_its_sequence_and_asks_for_new_answers(ctx, send, clock, meeting):
    first = invitation_to(ctx, WANG)[0]
    assert answer(send, "gmail", first, WANG, "王强", "ACCEPTED").state == "processed"
    assert reply(send, CHEN, "会议改期：\n时间：2026-12-02 10:00").state == "processed"
    moved, method, _ = invitation_to(ctx, WANG)
    assert method == "REQUEST" and str(moved["UID"]) == str(first["UID"]) and int(moved["SEQUENCE"]) == 1
    assert moved["DTSTART"].dt.day == 2 and moved["DTSTART"].dt.hour == 10
    assert (moved["DTEND"].dt - moved["DTSTART"].dt).total_seconds() == 90 * 60  # the length stays
    assert MeetingAnswer.select().count() == 0  # the acceptance was for the old time
    # An answer to the old version is not taken for one to the new time.
    assert answer(send, "apple", first, WANG, "王强", "ACCEPTED").state == "ignored"


def test_a_cancelled_meeting_leaves_the_calendars_and_asks_for_no_minutes(ctx, send, clock, meeting):
    assert reply(send, CHEN, "取消会议：方案还没准备好").state == "processed"
    event, method, parts = invitation_to(ctx, ZHAO)
    assert method == "CANCEL" and str(event["STATUS"]) == "CANCELLED" and int(event["SEQUENCE"]) == 1
    assert parts[0].get_param("method") == "CANCEL"
    assert "会议已取消" in text_of(ctx, mails_to(ZHAO, "meeting")[-1])
    clock.advance(days=10)
    sweep(ctx)
    assert [m for m in mails_to(CHEN, "reminder") if "纪要" in text_of(ctx, m)] == []
    assert reply(send, CHEN, "会议改期：\n时间：2026-12-20 10:00").reason.startswith("no_meeting")


def test_minutes_are_asked_for_an_hour_after_the_real_end(ctx, send, clock, meeting):
    assert reply(send, CHEN, "会议改期：\n时间：2026-12-02 10:00\n时长：2小时").state == "processed"
    clock.instant = Meeting.get().ends_at  # the new end, 12:00; the old one was 12-01 15:30
    clock.advance(minutes=59)
    sweep(ctx)
    assert [m for m in mails_to(CHEN, "reminder") if "纪要" in text_of(ctx, m)] == []
    clock.advance(minutes=2)
    sweep(ctx)
    assert [m for m in mails_to(CHEN, "reminder") if "纪要" in text_of(ctx, m)] != []


def test_only_the_initiator_moves_or_cancels_the_meeting(ctx, send, meeting):
    assert reply(send, WANG, "取消会议").reason.startswith("reply_role")
    assert Meeting.get().cancelled_at is None


def test_the_record_page_shows_who_answered_what(ctx, send, meeting):
    from test_web import signed_in

    from gateway.web.app import create_app

    answer(send, "qq", invitation_to(ctx, WANG)[0], WANG, "王强", "TENTATIVE")
    answer(send, "outlook", invitation_to(ctx, ZHAO)[0], ZHAO, "赵磊", "DECLINED", comment="出差")
    page = signed_in(create_app(ctx), ctx, CHEN).get(f"/r/{Record.get().ref}").text
    assert "王强 暂定" in page and "赵磊 拒绝（出差）" in page


def test_a_notice_of_a_meeting_change_carries_the_invitation(ctx, send):
    # The seed's own example: 5月25日部门例会调整 — the meeting moved, everyone confirms.
    body = ("通知主题：部门例会时间调整\n通知内容：原定12月4日14:00的部门例会改至12月3日15:00\n涉及部门：研发部、市场部\n"
            "会议时间：2026-12-03 15:00\n会议地点：3楼会议室\n需确认人员：王强、赵磊\n")
    inbound = send(make_mail(body, subject="部门例会时间调整", to=f"notice@{DOMAIN}"), rcpt=f"notice@{DOMAIN}")
    assert inbound.state == "processed", inbound.reason
    event, method, _ = invitation_to(ctx, WANG)
    assert method == "REQUEST" and str(event["LOCATION"]) == "3楼会议室"
    assert event["DTSTART"].dt.strftime("%m-%d %H:%M") == "12-03 15:00"
    assert answer(send, "apple", event, WANG, "王强", "ACCEPTED").state == "processed"
    assert MeetingAnswer.get().answer == "ACCEPTED"
    assert Meeting.get().next_reminder_at is None  # a notice asks for no minutes


def test_the_invitation_and_the_decline_read_on_a_phone(chromium, ctx, send, meeting):
    from test_mail_screenshots import screenshot_as_sent

    from store.models import OutboundMessage

    answer(send, "outlook", invitation_to(ctx, WANG)[0], WANG, "王强", "DECLINED", comment="当天在深圳出差")
    sent_mails(ctx)
    wanted = {("meeting", WANG), ("meeting_declined", CHEN)}
    mails = [m for m in OutboundMessage.select().where(OutboundMessage.status == "sent")
             if (m.kind, m.to_addr) in wanted]
    assert {(m.kind, m.to_addr) for m in mails} == wanted
    for mail in mails:
        screenshot_as_sent(chromium, mail)


def test_the_seeds_notice_of_a_moved_meeting_carries_the_invitation_without_a_meeting_time_line(ctx, send):
    # 模板3's second example as people write it: the new time and the room inside the content.
    body = ("通知主题：12月3日部门例会调整\n通知内容：原定12月4日14:00例会改至12月3日15:00，地点：3楼会议室\n"
            "涉及部门：市场部、研发部\n需确认人员：王强、赵磊\n")
    inbound = send(make_mail(body, subject="12月3日部门例会调整", to=f"notice@{DOMAIN}"), rcpt=f"notice@{DOMAIN}")
    assert inbound.state == "processed", inbound.reason
    event, method, _ = invitation_to(ctx, ZHAO)
    assert method == "REQUEST" and event["DTSTART"].dt.strftime("%m-%d %H:%M") == "12-03 15:00"  # not the old time
    assert str(event["LOCATION"]) == "3楼会议室"
