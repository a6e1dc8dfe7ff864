"""An attendee's calendar answers a meeting invitation (iTIP REPLY: accepted, declined,
tentative), sent to the organiser address of their copy, meeting+<meeting>-<participant>-<mac>@
(gateway/invitations.py). The address names whose answer it is, as a reply address does; the
answer is recorded as that attendee's, shown in the record, and a key participant's decline is
flagged to the initiator. Never answered: a calendar sent it.
"""

from __future__ import annotations

from gateway.bootstrap import Context
from gateway.handlers import Outcome
from gateway.handlers.actions import KEY_ROLES, Act
from gateway.outbox import queue_mails
from gateway.tokens import parse_meeting_address
from parsers.itip import calendar_answers
from parsers.mime import ParsedMessage
from store.models import InboundMessage
from store.repositories import meeting_attendee, record_meeting_answer


def handle_meeting_answer(ctx: Context, row: InboundMessage, msg: ParsedMessage, local_part: str) -> Outcome:
    found = parse_meeting_address(ctx.settings.gateway.secret, local_part)
    attendee = meeting_attendee(*found) if found else None
    if attendee is None:  # not answered: a calendar (or a forger) would learn nothing from it anyway
        return Outcome("rejected", "a meeting address that is not ours (forged or damaged); nothing recorded")
    meeting, participant, record = attendee
    # Their own answer to this meeting: the UID names the meeting (outlook.com leaves out the
    # ORGANIZER); the ATTENDEE is the person the address was given to.
    answers = [a for a in calendar_answers(msg.calendars)
               if a.uid == meeting.uid and participant.email.lower() in (a.attendee, msg.from_addr)]
    if not answers:
        return Outcome("ignored", f"no answer to meeting {meeting.id} by {participant.email} in it", record.id)
    answer = answers[-1]
    if meeting.cancelled_at is not None:
        return Outcome("ignored", f"an answer to meeting {meeting.id}, which was cancelled", record.id)
    if answer.sequence < meeting.sequence:
        return Outcome("ignored", f"an answer to version {answer.sequence} of meeting {meeting.id}, "
                                  f"which is at version {meeting.sequence}", record.id)
    record_meeting_answer(meeting.id, participant.id, answer.partstat, answer.sequence, answer.comment,
                          ctx.clock.now())
    act = Act(ctx=ctx, record=record, participant=participant, text=answer.comment, msg=msg, row=row,
              via="calendar", token=local_part)
    act.event(f"meeting_{answer.partstat.lower()}", meeting_id=meeting.id, comment=answer.comment)
    if answer.partstat == "DECLINED" and participant.role in KEY_ROLES:
        when = f"{act.local(meeting.starts_at)} – {act.local(meeting.ends_at)[-5:]}"
        lines: tuple[str, ...] = (act.line("when", when),)
        lines += (act.line("comment", answer.comment),) if answer.comment else ()
        for initiator in act.participants("initiator"):
            act.update(initiator, act.say("update.meeting_declined", name=act.name_of(participant)), "", lines,
                       kind="meeting_declined", ask=act.say("ask.meeting_declined"))
    queue_mails(ctx, act.drafts)
    return Outcome("processed", f"meeting answer {answer.partstat.lower()} by {participant.email} "
                                f"on {record.ref}", record.id, act.events)
