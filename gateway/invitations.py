"""Meeting invitations that round-trip through calendars (RFC 5545 / iTIP RFC 5546, written
with icalendar): REQUEST with a stable UID and a SEQUENCE raised on every change, CANCEL,
times in the gateway's time zone with its VTIMEZONE, and as ORGANIZER the gateway's own
meeting address, signed per meeting and attendee (gateway/tokens.py), in the initiator's name
— so that Accept/Decline comes back to the gateway, as a personal answer, not to the
initiator's mailbox.

Each attendee's copy names that attendee's own organiser address: their calendar keeps it for
the event and answers every later version there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.tokens import meeting_address
from store.models import Meeting, Record

REQUEST, CANCEL = "REQUEST", "CANCEL"


@dataclass(frozen=True)
class Invitee:
    participant_id: int
    name: str
    email: str


@dataclass(frozen=True)
class MeetingFacts:
    uid: str
    sequence: int
    starts_at: datetime
    ends_at: datetime
    summary: str  # "[PRJ-2026-0001] 智能手表项目-硬件方案评审"
    location: str  # the meeting link (or room)
    description: str

    @classmethod
    def of(cls, meeting: Meeting, record: Record) -> MeetingFacts:
        return cls(meeting.uid, meeting.sequence, meeting.starts_at, meeting.ends_at,
                   f"[{record.ref}] {record.subject}", meeting.link, meeting.agenda or meeting.link)


def invitation(facts: MeetingFacts, method: str, organiser_name: str, invitees: list[Invitee], copy_for: Invitee,
               secret: str, domain: str, meeting_id: int, now: datetime, tz: ZoneInfo) -> str:
    """The calendar for `copy_for`'s copy of the invitation (REQUEST or CANCEL)."""
    import icalendar

    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//liuhen//liuhen meeting//ZH")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = icalendar.Event()
    event.add("uid", facts.uid)
    event.add("sequence", facts.sequence)
    event.add("dtstamp", now)
    event.add("dtstart", facts.starts_at.astimezone(tz))
    event.add("dtend", facts.ends_at.astimezone(tz))
    event.add("summary", facts.summary)
    if facts.location:
        event.add("location", facts.location)
    if facts.description:
        event.add("description", facts.description)
    event.add("status", "CANCELLED" if method == CANCEL else "CONFIRMED")
    organiser = icalendar.vCalAddress(f"mailto:{meeting_address(secret, domain, meeting_id, copy_for.participant_id)}")
    organiser.params["CN"] = icalendar.vText(organiser_name)
    event.add("organizer", organiser)
    for person in invitees:
        attendee = icalendar.vCalAddress(f"mailto:{person.email}")
        attendee.params["CN"] = icalendar.vText(person.name)
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        attendee.params["RSVP"] = "TRUE"
        event.add("attendee", attendee, encode=False)
    calendar.add_component(event)
    calendar.add_missing_timezones()
    return calendar.to_ical().decode("utf-8")


def invitation_file(ics: str, method: str) -> dict:
    """The outbox attachment of an invitation: shown as the body's calendar form and attached
    as invite.ics (gateway/delivery.py)."""
    return {"filename": "invite.ics", "content_type": f"text/calendar; method={method}", "text": ics,
            "calendar": True}
