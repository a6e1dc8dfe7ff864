"""One function per page of the console. Each gets a Visit (gateway/web/app.py: who asks, in
which language, with what form) and returns a Response; it reads through store/ and checks
what the reader may see before anything else, answering 404 alike for what does not exist
and for what is not theirs."""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from gateway.bootstrap import Context
from gateway.report import client_view, export_bundle, record_report
from gateway.tokens import reply_address
from gateway.web import auth
from gateway.web.app import LANG_COOKIE, Visit
from gateway.web.links import client_link_valid, unsubscribe_valid
from store import search as full_text
from store.access import visible_record_ids
from store.console import (
    PROBLEM_STATES,
    RecordFilter,
    archive_months,
    board_rows,
    department_work,
    inbound_mail,
    reader_participant,
    record_files,
    record_for,
    record_inbound,
    record_list,
    record_outbound,
    record_titles,
    records_by_archive_key,
    records_created_on,
    records_with_person,
    waiting_for_information,
)
from store.console import (
    inbox as problem_mails,
)
from store.console import (
    my_work as work_of,
)
from store.console import (
    record_file as stored_file,
)
from store.models import InboundMessage, OutboundMessage, Participant, Record
from store.repositories import add_events, attachment_path
from store.signins import end_session
from store.worklist import WorkItem, by_deadline

REF = re.compile(r"^[A-Z]{2,8}-\d{4}-\d{4,}$", re.IGNORECASE)
DAY = re.compile(r"^(\d{4})[-/.]?(\d{1,2})[-/.]?(\d{1,2})$")
ARCHIVE_KEY = re.compile(r"-\d{4,8}$")  # 智能手表项目-硬件方案评审-20240525, or -2024…
ARCHIVES = ("项目档案库", "客户沟通档案")
# What a work item offers as buttons ([offers] of config/keywords.toml).
OFFER_OF_KIND = {"awaiting": "request", "overdue": "request", "sign": "signoff", "milestone": "item",
                 "milestone_late": "item", "action": "item", "action_late": "item", "dispute": "ruling",
                 "dispute_late": "ruling"}


def _local(ctx: Context, when: datetime | None) -> str:
    return when.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M") if when else ""


def _safe_next(target: str) -> str:
    """Only a path of ours: never another site (an open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/work"


# ------------------------------------------------------------------ sign-in

def home(visit: Visit) -> Response:
    return RedirectResponse("/work" if visit.session else "/signin", status_code=303)


def choose_language(visit: Visit, code: str) -> Response:
    response = RedirectResponse(_safe_next(visit.param("next", "/work")), status_code=303)
    if code in visit.ctx.renderer.languages:
        visit.web.cookie(response, LANG_COOKIE, code, 365 * 86400)
    return response


def _nonce(visit: Visit) -> tuple[str, bool]:
    """The browser's sign-in nonce, and whether it is new (to be set as a cookie)."""
    nonce = visit.request.cookies.get(auth.NONCE_COOKIE, "")
    return (nonce, False) if len(nonce) >= 16 else (auth.new_nonce(), True)


def _with_nonce(visit: Visit, response: Response, nonce: str, new: bool) -> Response:
    if new:
        visit.web.cookie(response, auth.NONCE_COOKIE, nonce, 86400)
    return response


def _form_ok(visit: Visit, nonce: str) -> bool:
    return auth.same(visit.form.get("csrf", ""), auth.form_token(visit.ctx, nonce))


def signin(visit: Visit) -> Response:
    nonce, new = _nonce(visit)
    nxt = _safe_next(visit.param("next", "/work"))
    if visit.request.method == "GET":
        if visit.session:
            return RedirectResponse(nxt, status_code=303)
        page = visit.render("signin.html.j2", form_csrf=auth.form_token(visit.ctx, nonce), next=nxt, problem="")
        return _with_nonce(visit, page, nonce, new)
    if new or not _form_ok(visit, nonce):
        return visit.render("signin.html.j2", status=403, form_csrf=auth.form_token(visit.ctx, nonce), next=nxt,
                            problem="web.signin.expired_form")
    ip = visit.request.client.host if visit.request.client else ""
    asked = auth.ask_for_signin(visit.ctx, visit.form.get("email", ""), nonce, ip, visit.lang)
    if asked.outcome == "limited":
        return visit.render("signin.html.j2", status=429, form_csrf=auth.form_token(visit.ctx, nonce), next=nxt,
                            problem="web.signin.limited")
    return visit.render("signin_sent.html.j2", form_csrf=auth.form_token(visit.ctx, nonce), next=nxt, problem="",
                        minutes=visit.ctx.settings.web.signin_minutes)


def _signed_in(visit: Visit, email: str, nxt: str) -> Response:
    cookie, _ = auth.start_session(visit.ctx, email)
    response = RedirectResponse(nxt, status_code=303)
    visit.web.cookie(response, auth.SESSION_COOKIE, cookie, None)  # a browser session; idle expiry is ours
    response.delete_cookie(auth.NONCE_COOKIE, path="/")
    return response


def signin_code(visit: Visit) -> Response:
    nonce, new = _nonce(visit)
    nxt = _safe_next(visit.param("next", "/work"))
    email = None if new or not _form_ok(visit, nonce) else auth.signin_by_code(
        visit.ctx, visit.form.get("code", ""), nonce)
    if email is None:
        return visit.render("signin_sent.html.j2", status=403, form_csrf=auth.form_token(visit.ctx, nonce), next=nxt,
                            problem="web.signin.wrong_code", minutes=visit.ctx.settings.web.signin_minutes)
    return _signed_in(visit, email, nxt)


def signin_confirm(visit: Visit) -> Response:
    """GET only shows the button: a scanner that fetches the link spends nothing."""
    nonce, new = _nonce(visit)
    token = visit.param("t")
    if visit.request.method == "GET":
        return visit.render("signin_confirm.html.j2", token=token, form_csrf=auth.form_token(visit.ctx, nonce),
                            same_browser=not new, problem="")
    email = None if new or not _form_ok(visit, nonce) else auth.signin_by_link(visit.ctx, token, nonce)
    if email is None:
        return visit.render("signin_confirm.html.j2", status=403, token="", form_csrf="", same_browser=not new,
                            problem="web.signin.link_dead")
    return _signed_in(visit, email, "/work")


def signout(visit: Visit) -> Response:
    assert visit.session is not None
    end_session(visit.session.id, visit.ctx.clock.now())
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


# ------------------------------------------------------------------ work and board

@dataclass(frozen=True)
class Row:
    """A work item as a page lists it."""

    item: WorkItem
    whose: str
    what: str
    due: str
    actions: list[tuple[str, str]]


def _mailto(ctx: Context, lang: str, address: str, ref: str, title: str, offer: str) -> list[tuple[str, str]]:
    """(label, mailto:) for the keywords an item offers: a reply to the reader's own address."""
    subject = quote(f"Re: [{ref}] {title}")
    links = []
    for choice in ctx.offers.get(offer, ()):
        word = ctx.keyword_label(choice.action, lang)
        first = "" if choice.action == "comment" else word + (ctx.renderer.phrase(lang, "colon") if choice.with_text
                                                              else "")
        links.append((word, f"mailto:{address}?subject={subject}&body={quote(first + chr(10))}"))
    return links


def _rows(visit: Visit, items: list[WorkItem], with_actions: bool) -> list[Row]:
    ctx, s = visit.ctx, visit.ctx.settings
    rows = []
    for item in by_deadline(items):
        actions = []
        if with_actions and item.participant_id:
            address = reply_address(s.gateway.secret, s.gateway.domain, item.record_id, item.participant_id)
            actions = _mailto(ctx, visit.lang, address, item.ref, item.title, OFFER_OF_KIND.get(item.kind, ""))
        rows.append(Row(item, ctx.directory.by_email(item.email).name,
                        ctx.renderer.phrase(visit.lang, f"digest.{item.kind}", label=item.label),
                        _local(ctx, item.due), actions))
    return rows


def my_work(visit: Visit) -> Response:
    assert visit.reader is not None
    rows = _rows(visit, work_of(visit.reader, visit.ctx.clock.now()), with_actions=True)
    return visit.render("work.html.j2", rows=rows, late=sum(1 for r in rows if r.item.late))


def _next_working_day(ctx: Context, now: datetime) -> datetime:
    """A working day from now: the board's "due soon"."""
    r = ctx.settings.reminders
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (r.work_start, r.work_end))
    return ctx.deadline(now, (end - start) / 60 if r.business_hours else 24)


def _headed(visit: Visit) -> list[str]:
    assert visit.reader is not None
    if visit.reader.admin:
        return [d.name for d in visit.ctx.directory.departments]
    return list(visit.reader.heads)


def _members(ctx: Context, department: str) -> list[str]:
    return [p.email for p in ctx.directory.people if p.department == department]


def board(visit: Visit) -> Response:
    ctx = visit.ctx
    now = ctx.clock.now()
    soon = _next_working_day(ctx, now)
    escalate = timedelta(hours=ctx.settings.reminders.escalate_after_hours)
    rows = board_rows({d: _members(ctx, d) for d in _headed(visit)}, now, soon, escalate)
    return visit.render("board.html.j2", rows=rows, local=lambda t: _local(ctx, t),
                        department_name=lambda d: ctx.directory.department_name(d, visit.lang))


def board_list(visit: Visit, department: str, bucket: str) -> Response:
    """The items behind one number of the board."""
    ctx = visit.ctx
    if department not in _headed(visit) or bucket not in ("due_soon", "overdue", "escalated", "waiting_info"):
        return visit.refuse()
    now = ctx.clock.now()
    if bucket == "waiting_info":
        asking = waiting_for_information(department)
        return visit.render("board_list.html.j2", department=ctx.directory.department_name(department, visit.lang),
                            bucket=bucket, rows=[], asking=asking, local=lambda t: _local(ctx, t))
    items = department_work(_members(ctx, department), now)
    soon = _next_working_day(ctx, now)
    escalate = timedelta(hours=ctx.settings.reminders.escalate_after_hours)
    chosen = {
        "due_soon": [i for i in items if not i.late and i.due is not None and i.due <= soon],
        "overdue": [i for i in items if i.late],
        "escalated": [i for i in items if i.late and i.due is not None and i.due + escalate <= now],
    }[bucket]
    return visit.render("board_list.html.j2", department=ctx.directory.department_name(department, visit.lang),
                        bucket=bucket, rows=_rows(visit, chosen, with_actions=False), asking=[],
                        local=lambda t: _local(ctx, t))


# ------------------------------------------------------------------ records

def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 6 else None


def _filter(visit: Visit) -> RecordFilter:
    p = visit.param
    return RecordFilter(form=p("form"), status=p("status") if p("status") in ("open", "confirming", "archived") else "",
                        active=p("active") == "1", department=p("department"), person=p("person").strip(),
                        overdue=p("overdue") == "1", created_from=_day(p("from")), created_to=_day(p("to")),
                        archive=p("archive") if p("archive") in ARCHIVES else "", year=_int(p("year")),
                        month=_int(p("month")))


def records(visit: Visit) -> Response:
    assert visit.reader is not None
    ctx = visit.ctx
    page = record_list(visit.reader, _filter(visit), ctx.clock.now(), ctx.tz, _int(visit.param("page")) or 1)
    return visit.render("records.html.j2", page=page, forms=ctx.forms, departments=ctx.directory.departments,
                        local=lambda t: _local(ctx, t), wanted=dict(visit.request.query_params),
                        page_link=lambda n: "?" + urlencode({**visit.request.query_params, "page": n}))


def _listed(visit: Visit) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the filtered record list, for a spreadsheet (up to 10,000 rows)."""
    assert visit.reader is not None
    ctx = visit.ctx
    page = record_list(visit.reader, _filter(visit), ctx.clock.now(), ctx.tz, 1, per_page=10_000)
    header = [visit.web.phrase(visit.lang, f"web.col.{c}") for c in
              ("ref", "subject", "form", "status", "priority", "initiator", "created", "archive_key")]
    rows = []
    for r in page.rows:
        form = ctx.forms.get(r.form)
        rows.append([r.ref, r.subject, form.name_for(visit.lang) if form else r.form,
                     ctx.renderer.phrase(visit.lang, f"status.{r.status}"), r.priority, r.initiator_name,
                     _local(ctx, r.created_at), r.archive_key])
    return header, rows


def records_csv(visit: Visit) -> Response:
    header, rows = _listed(visit)
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    # With a byte-order mark, Excel opens the Chinese in it as UTF-8.
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=records.csv"})


def records_xlsx(visit: Visit) -> Response:
    from openpyxl import Workbook

    header, rows = _listed(visit)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(visit.web.phrase(visit.lang, "web.records.title"))
    for row in (header, *rows):
        # A cell starting with = + - @ would be a formula in Excel: keep what people wrote as text.
        sheet.append([f"'{v}" if v[:1] in ("=", "+", "-", "@") else v for v in row])
    out = io.BytesIO()
    book.save(out)
    return Response(out.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": "attachment; filename=records.xlsx"})


def _stage_offer(record: Record, person: Participant) -> str:
    if person.role in ("recipient", "external"):
        if record.status == "confirming" and person.signed_at is None:
            return "signoff"
        if record.status == "open" and not person.response:
            return "notice" if record.form == "notice" else "request"
        return "also"
    return "initiator" if person.role == "initiator" else "escalation"


def record(visit: Visit, ref: str) -> Response:
    assert visit.reader is not None
    ctx = visit.ctx
    report = record_report(ctx, ref, visit.lang, visit.reader)  # None too when it is not theirs
    if report is None:
        return visit.refuse()
    found = record_for(visit.reader, ref)
    assert found is not None
    stamp = lambda iso: (iso or "")[:16].replace("T", " ")  # noqa: E731
    timeline = [(e["at"], "event", e["text"], "") for e in report["trace"]]
    timeline += [(stamp(m["at"]), "in", f"{m['from']} · {m['subject']}", f"/r/{found.ref}/in/{m['id']}")
                 for m in report["inbound"]]
    timeline += [(stamp(m["at"]), "out", f"{m['to_name'] or m['to']} · {m['subject']}",
                  f"/r/{found.ref}/out/{m['id']}") for m in report["mails"]]
    timeline.sort(key=lambda row: row[0])
    actions: list[tuple[str, str]] = []
    person = reader_participant(found.id, visit.reader.email)
    if person is not None and found.status != "archived":
        s = ctx.settings
        address = reply_address(s.gateway.secret, s.gateway.domain, found.id, person.id)
        actions = _mailto(ctx, visit.lang, address, found.ref, found.subject, _stage_offer(found, person))
    names = {p["email"]: p["name"] for p in report["participants"]}
    return visit.render("record.html.j2", r=report, timeline=timeline, files=record_files(found.id),
                        actions=actions, name_of=lambda e: names.get(e) or ctx.directory.by_email(e).name)


def _text_of(raw: bytes) -> tuple[dict[str, str], str]:
    """(headers worth showing, the plain text) of a stored mail; never raises."""
    try:
        msg = message_from_bytes(raw, policy=policy.default)
        headers = {name: str(msg.get(name, "")) for name in ("From", "To", "Cc", "Date", "Subject", "Message-ID")}
        body = msg.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
        return headers, text if isinstance(text, str) else ""
    except Exception:
        return {}, raw[:20_000].decode("utf-8", "replace")


def _eml(raw: bytes, name: str) -> Response:
    return Response(raw, media_type="message/rfc822", headers={"Content-Disposition": f"attachment; filename={name}"})


def _inbound_of(visit: Visit, ref: str, mail_id: int) -> InboundMessage | None:
    """A mail in of a record the reader may see; None alike when either is not there."""
    assert visit.reader is not None
    found = record_for(visit.reader, ref)
    return record_inbound(found.id, mail_id) if found else None


def _outbound_of(visit: Visit, ref: str, mail_id: int) -> OutboundMessage | None:
    assert visit.reader is not None
    found = record_for(visit.reader, ref)
    return record_outbound(found.id, mail_id) if found else None


def mail_in(visit: Visit, ref: str, mail_id: int) -> Response:
    mail = _inbound_of(visit, ref, mail_id)
    if mail is None:
        return visit.refuse()
    headers, text = _text_of(bytes(mail.raw))
    return visit.render("mail.html.j2", ref=ref.upper(), headers=headers, text=text, download=f"{mail_id}.eml",
                        state=mail.state, reason=mail.reason, auth=mail.auth)


def mail_in_eml(visit: Visit, ref: str, mail_id: int) -> Response:
    mail = _inbound_of(visit, ref, mail_id)
    return _eml(bytes(mail.raw), f"IN-{mail_id}.eml") if mail else visit.refuse()


def mail_out(visit: Visit, ref: str, mail_id: int) -> Response:
    mail = _outbound_of(visit, ref, mail_id)
    if mail is None:
        return visit.refuse()
    if mail.raw:
        headers, text = _text_of(bytes(mail.raw))
    else:  # not sent yet: what it will say
        from gateway.outbox import mail_body

        headers, text = {"To": mail.to_addr, "Subject": mail.subject}, mail_body(visit.ctx, mail)[0]
    return visit.render("mail.html.j2", ref=ref.upper(), headers=headers, text=text,
                        download=f"{mail_id}.eml" if mail.raw else "", state=mail.status, reason=mail.last_error,
                        auth={})


def mail_out_eml(visit: Visit, ref: str, mail_id: int) -> Response:
    mail = _outbound_of(visit, ref, mail_id)
    return _eml(bytes(mail.raw), f"OUT-{mail_id}.eml") if mail and mail.raw else visit.refuse()


def record_file(visit: Visit, ref: str, file_id: int) -> Response:
    assert visit.reader is not None
    found = record_for(visit.reader, ref)
    item = stored_file(found.id, file_id) if found else None
    if found is None or item is None:
        return visit.refuse()
    path = attachment_path(visit.ctx.settings.data_path, item.sha256)
    # Always a download, never shown inline: an HTML or SVG file must not run as our page.
    return FileResponse(path, media_type="application/octet-stream", filename=item.filename,
                        content_disposition_type="attachment")


def record_export(visit: Visit, ref: str) -> Response:
    assert visit.reader is not None
    found = record_for(visit.reader, ref)
    if found is None:
        return visit.refuse()
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_bundle(visit.ctx, found, Path(tmp))
        archive = shutil.make_archive(str(Path(tmp) / found.ref), "zip", root_dir=folder.parent, base_dir=folder.name)
        data = Path(archive).read_bytes()
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f"attachment; filename={found.ref}.zip"})


# ------------------------------------------------------------------ search and archive

@dataclass(frozen=True)
class Found:
    ref: str
    subject: str
    form: str
    status: str
    archive_key: str
    snippet: str  # matches marked 【】


def search(visit: Visit) -> Response:
    """Words (the full-text index), a record ID, an archive key (主题+日期), a day or a person."""
    assert visit.reader is not None
    ctx, q = visit.ctx, visit.param("q").strip()[:200]
    hits: list[Found] = []
    if REF.match(q):
        found = record_for(visit.reader, q)
        if found is not None:
            return RedirectResponse(f"/r/{found.ref}", status_code=303)
    elif q:
        day = DAY.match(q.replace(" ", ""))
        person = ctx.directory.resolve(q).person if not day else None
        picked: list[Record] = []
        if day:
            try:
                picked = records_created_on(visit.reader, date(*map(int, day.groups())), ctx.tz)
            except ValueError:
                picked = []
        elif person is not None:
            picked = records_with_person(visit.reader, person.email)
        if ARCHIVE_KEY.search(q):  # 主题+日期, or a part of one with its date
            picked += [r for r in records_by_archive_key(visit.reader, q) if r.id not in {p.id for p in picked}]
        hits = [Found(r.ref, r.subject, r.form, r.status, r.archive_key, "") for r in picked]
        seen = {h.ref for h in hits}
        visible = visible_record_ids(visit.reader)
        matches = full_text.search(ctx.db, q, include_open=True, visible_record_ids=visible, limit=30)
        titles = record_titles([h.record_id for h in matches])
        hits += [Found(h.ref, *titles.get(h.record_id, ("", "")), h.status, h.archive_key, h.snippet)
                 for h in matches if h.ref not in seen]
    state, form = visit.param("status"), visit.param("form")
    hits = [h for h in hits if (not state or h.status == state) and (not form or h.form == form)]
    return visit.render("search.html.j2", q=q, hits=hits, marked=_marked, forms=ctx.forms, state=state, form=form)


def _marked(snippet: str) -> list[tuple[bool, str]]:
    """A snippet as (is_match, text) pieces, so the template marks matches without |safe."""
    pieces = []
    for n, part in enumerate(re.split(r"【|】", snippet)):
        if part:
            pieces.append((n % 2 == 1, part))
    return pieces


def archive(visit: Visit) -> Response:
    assert visit.reader is not None
    ctx = visit.ctx
    category = visit.param("archive") if visit.param("archive") in ARCHIVES else ARCHIVES[0]
    year, month = _int(visit.param("year")), _int(visit.param("month"))
    page = None
    if year:
        page = record_list(visit.reader, RecordFilter(archive=category, year=year, month=month), ctx.clock.now(),
                           ctx.tz, _int(visit.param("page")) or 1)
    return visit.render("archive.html.j2", category=category, archives=ARCHIVES,
                        months=archive_months(visit.reader, category), year=year, month=month, page=page,
                        local=lambda t: _local(ctx, t))


# ------------------------------------------------------------------ admins: the inbox

def inbox(visit: Visit) -> Response:
    page = problem_mails(PROBLEM_STATES, _int(visit.param("page")) or 1)
    return visit.render("inbox.html.j2", page=page, local=lambda t: _local(visit.ctx, t),
                        page_link=lambda n: f"?page={n}")


def inbox_mail(visit: Visit, mail_id: int) -> Response:
    mail = inbound_mail(mail_id)
    if mail is None:
        return visit.refuse()
    headers, text = _text_of(bytes(mail.raw))
    return visit.render("inbox_mail.html.j2", mail=mail, headers=headers, text=text,
                        retry=mail.state in PROBLEM_STATES, local=lambda t: _local(visit.ctx, t))


def inbox_eml(visit: Visit, mail_id: int) -> Response:
    mail = inbound_mail(mail_id)
    return _eml(bytes(mail.raw), f"IN-{mail_id}.eml") if mail else visit.refuse()


def inbox_retry(visit: Visit, mail_id: int) -> Response:
    """Take a rejected, ignored or failed mail through the pipeline again (after a directory
    or form fix, say), as `liuhen inbox retry` does; the retry is in the trace."""
    from gateway.pipeline import process_inbound
    from store.repositories import retry_inbound

    assert visit.reader is not None
    mail = inbound_mail(mail_id)
    if mail is None or not retry_inbound(mail_id, PROBLEM_STATES):
        return visit.refuse()
    add_events([dict(record_id=mail.record_id, inbound_id=mail_id, kind="inbound_retried", actor=visit.reader.email,
                     data={"state_before": mail.state, "reason_before": mail.reason})], visit.ctx.clock.now())
    process_inbound(visit.ctx, mail_id)
    return RedirectResponse(f"/inbox/{mail_id}", status_code=303)


# ------------------------------------------------------------------ without signing in

def client_status(visit: Visit, link_id: int, signature: str) -> Response:
    """An external client's read-only page of their own record: what is client-visible only."""
    found = client_link_valid(visit.ctx, link_id, signature)
    if found is None:
        return visit.refuse()
    record, person = found
    view = client_view(visit.ctx, record, visit.lang)
    return visit.render("client.html.j2", view=view, name=person.name)


def unsubscribe(visit: Visit) -> Response:
    """RFC 8058: a mail client POSTs List-Unsubscribe=One-Click to the digest's URL; a person
    opening it sees a button first (a GET changes nothing: scanners fetch links)."""
    from gateway.scheduler import digest_preference

    email = unsubscribe_valid(visit.ctx, visit.param("e"), visit.param("s"))
    if email is None:
        return visit.refuse()
    if visit.request.method == "POST":
        digest_preference(email, False, visit.ctx.clock.now())
        return visit.render("unsubscribed.html.j2", done=True, e=visit.param("e"), s=visit.param("s"))
    return visit.render("unsubscribed.html.j2", done=False, e=visit.param("e"), s=visit.param("s"))


def healthz(visit: Visit) -> Response:
    return PlainTextResponse("ok")


def readyz(visit: Visit) -> Response:
    visit.ctx.db.execute_sql("SELECT 1")  # a database error answers 503 (app.py)
    return PlainTextResponse("ready")
