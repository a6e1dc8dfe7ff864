"""Answers to a meeting invitation (iTIP REPLY) as four calendar clients send them, for the
meeting tests. Written for liuhen after the structure of the clients' real mails (headers,
MIME layout, calendar properties); the people, meeting and texts are the tests'.

- Outlook (desktop, Exchange): multipart/alternative, text/plain + text/calendar; method=REPLY,
  base64; a Windows time zone (TZID:China Standard Time); COMMENT with what was typed; the
  subject 已接受: / 已拒绝: / 暂定:. outlook.com: the same without ORGANIZER.
- Gmail: multipart/mixed holding multipart/alternative (plain, html, text/calendar;
  method=REPLY) and the same calendar again as invite.ics (application/ics), times in UTC.
- Apple Mail (macOS Calendar): multipart/mixed, a short text and the calendar attached
  (text/calendar; method=REPLY; name=…ics), quoted-printable, ATTENDEE with EMAIL= and CN="…".
- QQ Mail: multipart/alternative, GB18030 text and a text/calendar part, MAILTO: in capitals.
"""

from __future__ import annotations

import base64
import quopri
from datetime import UTC, datetime

PARTSTAT_SUBJECT = {"ACCEPTED": ("已接受", "Accepted"), "DECLINED": ("已拒绝", "Declined"),
                    "TENTATIVE": ("暂定", "Tentative")}


def _b64(text: str, charset: str = "utf-8") -> str:
    return base64.encodebytes(text.encode(charset)).decode("ascii")


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def outlook(uid: str, organiser: str, attendee: str, name: str, partstat: str, starts: datetime, ends: datetime,
            comment: str = "", sequence: int = 0, outlook_com: bool = False) -> bytes:
    local = "%Y%m%dT%H%M%S"
    zh = PARTSTAT_SUBJECT[partstat][0]
    lines = ["BEGIN:VCALENDAR", "METHOD:REPLY", "PRODID:Microsoft Exchange Server 2010", "VERSION:2.0",
             "BEGIN:VTIMEZONE", "TZID:China Standard Time", "BEGIN:STANDARD", "DTSTART:16010101T000000",
             "TZOFFSETFROM:+0800", "TZOFFSETTO:+0800", "END:STANDARD", "BEGIN:DAYLIGHT",
             "DTSTART:16010101T000000", "TZOFFSETFROM:+0800", "TZOFFSETTO:+0800", "END:DAYLIGHT", "END:VTIMEZONE",
             "BEGIN:VEVENT"]
    if not outlook_com:
        lines.append(f"ORGANIZER;CN=陈静:mailto:{organiser}")
    lines += [f"ATTENDEE;PARTSTAT={partstat};CN={name}:mailto:{attendee}"]
    if comment:
        lines.append(f"COMMENT;LANGUAGE=zh-CN:{comment}")
    lines += [f"SUMMARY;LANGUAGE=zh-CN:{zh}: 会议", f"DTSTART;TZID=China Standard Time:{starts.strftime(local)}",
              f"DTEND;TZID=China Standard Time:{ends.strftime(local)}", f"UID:{uid}", "CLASS:PUBLIC", "PRIORITY:5",
              f"DTSTAMP:{_stamp(datetime.now(UTC))}", "TRANSP:OPAQUE", "STATUS:CONFIRMED", f"SEQUENCE:{sequence}",
              f"X-MICROSOFT-CDO-APPT-SEQUENCE:{sequence}", f"X-MICROSOFT-CDO-REPLYTIME:{_stamp(datetime.now(UTC))}",
              "END:VEVENT", "END:VCALENDAR"]
    calendar = "\r\n".join(lines) + "\r\n"
    subject = "=?utf-8?b?" + base64.b64encode(f"{zh}: 会议".encode()).decode() + "?="
    return (f"From: =?utf-8?b?{base64.b64encode(name.encode()).decode()}?= <{attendee}>\r\n"
            f"To: =?utf-8?b?6ZmI6Z2Z?= <{organiser}>\r\n"
            f"Subject: {subject}\r\n"
            "Thread-Topic: =?utf-8?b?5Lya6K6u?=\r\n"
            "Thread-Index: AQHbR2xW6l3Pq0m3S0m5oX1pZ3h9Yw==\r\n"
            "Date: Mon, 7 Dec 2026 09:12:00 +0800\r\n"
            f"Message-ID: <{uid[:8]}-{partstat.lower()}@outlook.example.cn>\r\n"
            "Content-Language: zh-CN\r\n"
            "X-MS-Has-Attach:\r\n"
            "X-MS-TNEF-Correlator:\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="_000_outlook_"\r\n\r\n'
            "--_000_outlook_\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{_b64(comment)}\r\n"
            "--_000_outlook_\r\n"
            'Content-Type: text/calendar; charset="utf-8"; method=REPLY\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{_b64(calendar)}\r\n"
            "--_000_outlook_--\r\n").encode("ascii")


def gmail(uid: str, organiser: str, attendee: str, name: str, partstat: str, starts: datetime, ends: datetime,
          sequence: int = 0) -> bytes:
    en = PARTSTAT_SUBJECT[partstat][1]
    calendar = "\r\n".join([
        "BEGIN:VCALENDAR", "PRODID:-//Google Inc//Google Calendar 70.9054//EN", "VERSION:2.0", "CALSCALE:GREGORIAN",
        "METHOD:REPLY", "BEGIN:VEVENT", f"DTSTART:{_stamp(starts)}", f"DTEND:{_stamp(ends)}",
        f"DTSTAMP:{_stamp(datetime.now(UTC))}", f"ORGANIZER;CN=陈静:mailto:{organiser}", f"UID:{uid}",
        f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={partstat};CN={attendee};X-NUM-GUESTS=0:"
        f"mailto:{attendee}", f"CREATED:{_stamp(datetime.now(UTC))}", "DESCRIPTION:", "LOCATION:",
        f"SEQUENCE:{sequence}", "STATUS:CONFIRMED", "SUMMARY:会议", "TRANSP:OPAQUE", "END:VEVENT",
        "END:VCALENDAR"]) + "\r\n"
    return (f"From: {attendee}\r\n"
            f"To: {organiser}\r\n"
            f"Subject: {en}: =?UTF-8?B?5Lya6K6u?= @ Thu Dec 10, 2026 2pm - 3pm (CST) ({attendee})\r\n"
            "Date: Mon, 07 Dec 2026 01:12:00 +0000\r\n"
            f"Message-ID: <0000000000{uid[:8]}@google.com>\r\n"
            "Reply-To: " + attendee + "\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="000000000000mixed"\r\n\r\n'
            "--000000000000mixed\r\n"
            'Content-Type: multipart/alternative; boundary="000000000000alt"\r\n\r\n'
            "--000000000000alt\r\n"
            'Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            f"{_b64(f'{attendee} has {en.lower()} this invitation.')}\r\n"
            "--000000000000alt\r\n"
            'Content-Type: text/html; charset="UTF-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{_b64(f'<p>{attendee} has {en.lower()} this invitation.</p>')}\r\n"
            "--000000000000alt\r\n"
            'Content-Type: text/calendar; charset="UTF-8"; method=REPLY\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
            f"{calendar}"
            "--000000000000alt--\r\n"
            "--000000000000mixed\r\n"
            'Content-Type: application/ics; name="invite.ics"\r\n'
            'Content-Disposition: attachment; filename="invite.ics"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{_b64(calendar)}\r\n"
            "--000000000000mixed--\r\n").encode("utf-8")


def apple(uid: str, organiser: str, attendee: str, name: str, partstat: str, starts: datetime, ends: datetime,
          sequence: int = 0) -> bytes:
    local = "%Y%m%dT%H%M%S"
    calendar = "\r\n".join([
        "BEGIN:VCALENDAR", "METHOD:REPLY", "VERSION:2.0", "PRODID:-//Apple Inc.//macOS 15.1//EN", "BEGIN:VTIMEZONE",
        "TZID:Asia/Shanghai", "BEGIN:STANDARD", "DTSTART:19910915T000000", "TZNAME:GMT+8", "TZOFFSETFROM:+0900",
        "TZOFFSETTO:+0800", "END:STANDARD", "END:VTIMEZONE", "BEGIN:VEVENT",
        f'ATTENDEE;CN="{name}";CUTYPE=INDIVIDUAL;EMAIL="{attendee}";PARTSTAT={partstat}:mailto:{attendee}',
        f"DTEND;TZID=Asia/Shanghai:{ends.strftime(local)}", f"DTSTART;TZID=Asia/Shanghai:{starts.strftime(local)}",
        f"DTSTAMP:{_stamp(datetime.now(UTC))}", f'ORGANIZER;CN="陈静":mailto:{organiser}', f"SEQUENCE:{sequence}",
        "SUMMARY:会议", f"UID:{uid}", "END:VEVENT", "END:VCALENDAR"]) + "\r\n"
    qp = quopri.encodestring(calendar.encode("utf-8")).decode("ascii")
    return (f"From: =?utf-8?b?{base64.b64encode(name.encode()).decode()}?= <{attendee}>\r\n"
            f"To: {organiser}\r\n"
            "Subject: =?utf-8?b?" + base64.b64encode(f"{name} 已回复邀请".encode()).decode() + "?=\r\n"
            "Date: Mon, 7 Dec 2026 09:12:00 +0800\r\n"
            f"Message-ID: <{uid[:8]}-apple@icloud.example.com>\r\n"
            "X-Mailer: Apple Mail (2.3826.200.121)\r\n"
            "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.200.121\\))\r\n"
            'Content-Type: multipart/mixed; boundary="Apple-Mail=_6E2A"\r\n\r\n'
            "--Apple-Mail=_6E2A\r\n"
            "Content-Transfer-Encoding: 7bit\r\nContent-Type: text/plain;\r\n\tcharset=us-ascii\r\n\r\n\r\n"
            "--Apple-Mail=_6E2A\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n"
            "Content-Type: text/calendar;\r\n\tcharset=utf-8;\r\n\tmethod=REPLY;\r\n\tname=iCal-20261207-091200.ics\r\n"
            'Content-Disposition: attachment;\r\n\tfilename="iCal-20261207-091200.ics"\r\n\r\n'
            f"{qp}\r\n"
            "--Apple-Mail=_6E2A--\r\n").encode("ascii")


def qq(uid: str, organiser: str, attendee: str, name: str, partstat: str, starts: datetime, ends: datetime,
       sequence: int = 0) -> bytes:
    calendar = "\r\n".join([
        "BEGIN:VCALENDAR", "PRODID:-//Tencent Inc.//QQMail Calendar//CN", "VERSION:2.0", "METHOD:REPLY",
        "BEGIN:VEVENT", f"UID:{uid}", f"DTSTAMP:{_stamp(datetime.now(UTC))}", f"DTSTART:{_stamp(starts)}",
        f"DTEND:{_stamp(ends)}", f"SEQUENCE:{sequence}", "SUMMARY:会议",
        f"ORGANIZER:MAILTO:{organiser}", f"ATTENDEE;PARTSTAT={partstat};CN={name}:MAILTO:{attendee.upper()}",
        "END:VEVENT", "END:VCALENDAR"]) + "\r\n"
    text = f"{name}{PARTSTAT_SUBJECT[partstat][0]}了您的会议邀请"
    return (f"From: \"=?gb18030?B?{base64.b64encode(name.encode('gb18030')).decode()}?=\" <{attendee}>\r\n"
            f"To: \"=?gb18030?B?s8LmyQ==?=\" <{organiser}>\r\n"
            "Subject: =?gb18030?B?" + base64.b64encode(text.encode("gb18030")).decode() + "?=\r\n"
            "Date: Mon, 7 Dec 2026 09:12:00 +0800\r\n"
            f"Message-ID: <tencent_{uid[:8]}@qq.com>\r\n"
            "X-Mailer: QQMail 2.x\r\n"
            "Mime-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="----=_NextPart_QQ"\r\n\r\n'
            "------=_NextPart_QQ\r\n"
            'Content-Type: text/plain; charset="gb18030"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{_b64(text, 'gb18030')}\r\n"
            "------=_NextPart_QQ\r\n"
            'Content-Type: text/calendar; charset="utf-8"; method=REPLY\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{_b64(calendar)}\r\n"
            "------=_NextPart_QQ--\r\n").encode("ascii")


CLIENTS = {"outlook": outlook, "gmail": gmail, "apple": apple, "qq": qq}
