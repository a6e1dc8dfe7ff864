"""Answers to meeting invitations (iTIP, RFC 5546: METHOD:REPLY) as the calendars of Outlook,
Gmail, Apple Mail and QQ Mail send them → (UID, attendee, answer). Pure; never raises.

Outlook puts the REPLY in a text/calendar part of the body (and outlook.com leaves ORGANIZER
out), Gmail adds an invite.ics attachment as well, Apple Mail attaches it; all name the
meeting by UID and the one answering in ATTENDEE with PARTSTAT. Read with icalendar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

ANSWERS = ("ACCEPTED", "DECLINED", "TENTATIVE")


@dataclass(frozen=True)
class CalendarAnswer:
    uid: str
    attendee: str  # lowercased address, "mailto:" taken off
    partstat: str  # one of ANSWERS
    sequence: int  # the version of the invitation answered
    comment: str  # what the person wrote with the answer (COMMENT), "" if nothing


def calendar_answers(calendars: tuple[str, ...]) -> list[CalendarAnswer]:
    """Every attendee answer in the METHOD:REPLY calendars of a mail (duplicates — the same
    REPLY in the body and as invite.ics — once)."""
    found: list[CalendarAnswer] = []
    for text in calendars:
        for answer in _answers(text):
            if answer not in found:
                found.append(answer)
    return found


def _answers(text: str) -> list[CalendarAnswer]:
    import icalendar  # only a mail carrying a calendar pays for the import

    try:
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception:  # not a calendar, or a damaged one: no answer in it
        log.info("could not read a calendar part", exc_info=True)
        return []
    out = []
    for calendar in calendars:
        try:
            if str(calendar.get("METHOD", "")).upper() != "REPLY":
                continue
            for event in calendar.walk("VEVENT"):
                uid = str(event.get("UID", "")).strip()
                attendees = event.get("ATTENDEE", [])
                for attendee in attendees if isinstance(attendees, list) else [attendees]:
                    partstat = str(attendee.params.get("PARTSTAT", "")).upper()
                    address = str(attendee).strip()
                    if address.lower().startswith("mailto:"):
                        address = address[len("mailto:"):]
                    if uid and partstat in ANSWERS and "@" in address:
                        comment = str(event.get("COMMENT", "")).strip()
                        out.append(CalendarAnswer(uid, address.strip().lower(), partstat,
                                                  _int(event.get("SEQUENCE", 0)), comment))
        except Exception:  # one odd component does not hide the others' answers
            log.info("could not read a calendar reply", exc_info=True)
    return out


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
