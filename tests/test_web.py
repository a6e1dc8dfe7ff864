"""The web console over HTTP (Starlette's TestClient), on SQLite and PostgreSQL: sign-in by
mail, sessions and CSRF, who sees what on every page and download, and the pages' content."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

import pytest
from conftest import DOMAIN, PROJECT_BODY, make_mail, test_settings
from starlette.testclient import TestClient

from gateway.bootstrap import build_context
from gateway.outbox import mail_body
from gateway.web.app import create_app
from store.models import Attachment, Event, InboundMessage, OutboundMessage, Record, SignIn, WebSession

BASE = "http://127.0.0.1:8080"
CHEN, WANG, ZHOU, SUN = ("chen.jing@liuhen.localhost", "wang.qiang@liuhen.localhost", "zhou.ming@liuhen.localhost",
                         "sun.li@liuhen.localhost")


@pytest.fixture
def ctx(tmp_path, db_url, clock):
    """The console on: client mails carry their status link, digests the one-click unsubscribe."""
    settings = test_settings(tmp_path, db_url)
    context = build_context(replace(settings, web=replace(settings.web, enabled=True)), clock=clock)
    yield context
    context.db.close()


@pytest.fixture
def app(ctx):
    return create_app(ctx)


def browser(app) -> TestClient:
    return TestClient(app, base_url=BASE, follow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]*)"', html).group(1)


def ask(client: TestClient, email: str):
    page = client.get("/signin")
    return client.post("/signin", data={"email": email, "csrf": csrf_of(page.text), "next": "/work"})


def signin_mail(ctx, email: str) -> tuple[str, str]:
    """(link, code) of the newest sign-in mail to `email`, as its reader sees them."""
    mail = (OutboundMessage.select().where((OutboundMessage.kind == "signin") & (OutboundMessage.to_addr == email))
            .order_by(OutboundMessage.id.desc()).first())
    assert mail is not None, f"no sign-in mail to {email}"
    text = mail_body(ctx, mail)[0]
    link = re.search(r"(http://\S+/signin/confirm\?t=\S+)", text).group(1)
    return link, re.search(r"\b(\d{6})\b", mail.subject).group(1)


def signed_in(app, ctx, email: str) -> TestClient:
    client = browser(app)
    ask(client, email)
    link, _ = signin_mail(ctx, email)
    confirm = client.get(link.removeprefix(BASE))
    answer = client.post("/signin/confirm", data={"t": link.split("t=")[1], "csrf": csrf_of(confirm.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/work", answer.text
    return client


# ------------------------------------------------------------------ sign-in

def test_signing_in_by_the_mailed_link_in_the_browser_that_asked(ctx, app):
    client = browser(app)
    sent = ask(client, WANG)
    assert sent.status_code == 200 and "请查收登录邮件" in sent.text
    link, code = signin_mail(ctx, WANG)
    stored = SignIn.get(SignIn.email == WANG)
    token = link.split("t=")[1]
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()  # only hashes are kept
    assert code not in stored.code_hash and len(token) >= 43  # ≥ 256 bits, base64
    # A mail scanner fetching the link (no cookies of the browser) spends nothing …
    scanner = browser(app).get(link.removeprefix(BASE))
    assert scanner.status_code == 200 and "申请登录的浏览器" in scanner.text and "<form" not in scanner.text
    # … and the link's GET in the right browser only shows a button.
    confirm = client.get(link.removeprefix(BASE))
    assert 'action="/signin/confirm"' in confirm.text and SignIn.get(SignIn.email == WANG).used_at is None
    assert client.get("/work").status_code == 303  # not signed in yet
    done = client.post("/signin/confirm", data={"t": token, "csrf": csrf_of(confirm.text)})
    assert done.status_code == 303
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    work = client.get("/work")
    assert work.status_code == 200 and "我的待办" in work.text and "王强" in work.text
    # Once only: the same link again, even in the same browser, opens nothing.
    again = browser(app)
    assert again.post("/signin/confirm", data={"t": token, "csrf": "x"}).status_code == 403


def test_a_link_from_another_browser_or_past_its_time_opens_nothing(ctx, app, clock):
    asking, other = browser(app), browser(app)
    ask(asking, WANG)
    link, _ = signin_mail(ctx, WANG)
    page = other.get("/signin")  # a nonce of its own: not the one the link was asked with
    other.get(link.removeprefix(BASE))
    refused = other.post("/signin/confirm", data={"t": link.split("t=")[1], "csrf": csrf_of(page.text)})
    assert refused.status_code == 403 and other.get("/work").status_code == 303
    clock.advance(minutes=16)
    confirm = asking.get(link.removeprefix(BASE))
    late = asking.post("/signin/confirm", data={"t": link.split("t=")[1], "csrf": csrf_of(confirm.text)})
    assert late.status_code == 403 and "已失效" in late.text


def test_signing_in_by_the_code_and_five_wrong_codes_end_it(ctx, app):
    client = browser(app)
    ask(client, WANG)
    _, code = signin_mail(ctx, WANG)
    form = client.get("/signin").text
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert client.post("/signin/code", data={"code": wrong, "csrf": csrf_of(form)}).status_code == 403
    dead = client.post("/signin/code", data={"code": code, "csrf": csrf_of(form)})
    assert dead.status_code == 403, "a code guessed at five times is dead"
    ask(client, WANG)
    _, code = signin_mail(ctx, WANG)
    good = client.post("/signin/code", data={"code": code, "csrf": csrf_of(form), "next": "/search"})
    assert good.status_code == 303 and good.headers["location"] == "/search"
    assert client.get("/search").status_code == 200


def test_the_sign_in_page_tells_nobody_who_is_in_the_directory(ctx, app):
    client = browser(app)
    known = ask(client, WANG)
    for stranger in ("nobody@liuhen.localhost", "client@customer.example.cn", "not an address"):
        answer = ask(client, stranger)
        assert answer.status_code == 200 and answer.text == known.text.replace(WANG, stranger)
    assert [m.to_addr for m in OutboundMessage.select().where(OutboundMessage.kind == "signin")] == [WANG]


def test_sign_in_requests_are_limited_per_address_and_per_computer(ctx, app):
    client = browser(app)
    for _ in range(7):
        assert ask(client, WANG).status_code == 200
    assert OutboundMessage.select().where(OutboundMessage.kind == "signin").count() == 5  # per address and hour
    for _ in range(14):
        last = ask(client, CHEN)
    assert last.status_code == 429 and "太多" in last.text  # 20 an hour from one IP


def test_a_post_without_the_sessions_csrf_token_or_from_another_site_is_refused(ctx, app):
    client = signed_in(app, ctx, WANG)
    assert client.post("/signout", data={}).status_code == 403
    assert client.post("/signout", data={"csrf": "guess"}).status_code == 403
    work = client.get("/work")
    foreign = client.post("/signout", data={"csrf": csrf_of(work.text)}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and client.get("/work").status_code == 200  # still signed in
    out = client.post("/signout", data={"csrf": csrf_of(work.text)}, headers={"Origin": BASE})
    assert out.status_code == 303 and client.get("/work").status_code == 303
    assert WebSession.get().ended_at is not None


def test_a_session_unused_for_the_idle_time_ends(ctx, app, clock):
    client = signed_in(app, ctx, WANG)
    clock.advance(minutes=ctx.settings.web.session_idle_minutes - 5)
    assert client.get("/work").status_code == 200  # used: the idle time starts again
    clock.advance(minutes=ctx.settings.web.session_idle_minutes + 1)
    answer = client.get("/work")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


def test_every_answer_carries_the_security_headers(ctx, app):
    client = browser(app)
    for path in ("/signin", "/static/console.css", "/r/PRJ-2026-0001", "/nothing-here"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


# ------------------------------------------------------------------ who sees what

@pytest.fixture
def record(ctx, send):
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = CHEN, f"project@{DOMAIN}", "智能手表项目-硬件方案评审"
    msg["Message-ID"] = "<web@client.example.cn>"
    msg.attach(MIMEText(PROJECT_BODY, "plain", "utf-8"))
    part = MIMEApplication(b"%PDF-1.4 BOM", "pdf")
    part.add_header("Content-Disposition", "attachment", filename="BOM.pdf")
    msg.attach(part)
    assert send(msg.as_bytes()).state == "processed"
    return "PRJ-2026-0001"


def _record_urls(ref: str) -> list[str]:
    inbound = InboundMessage.get(InboundMessage.record_id.is_null(False))
    outbound = OutboundMessage.get(OutboundMessage.kind == "request")
    attachment = Attachment.get()
    return [f"/r/{ref}", f"/r/{ref}/in/{inbound.id}", f"/r/{ref}/in/{inbound.id}.eml", f"/r/{ref}/out/{outbound.id}",
            f"/r/{ref}/file/{attachment.id}", f"/r/{ref}/export.zip", f"/r/{ref}/out/{outbound.id}.eml"]


def test_a_participant_opens_the_record_its_mails_and_files(ctx, app, record):
    from conftest import sent_mails

    sent_mails(ctx)  # the mails went out: their bytes are there to download
    client = signed_in(app, ctx, WANG)
    for url in _record_urls(record):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/r/{record}").text
    assert "智能手表项目-硬件方案评审" in page and "完成硬件方案评估" in page
    assert "BOM.pdf" in page and "mailto:reply+" in page  # his files, and his actions
    eml = client.get(_record_urls(record)[2])
    assert eml.headers["content-type"] == "message/rfc822" and b"BOM.pdf" in eml.content
    file = client.get(_record_urls(record)[4])
    assert file.content == b"%PDF-1.4 BOM" and file.headers["content-disposition"].startswith("attachment")


def test_someone_from_another_department_cannot_open_the_record_by_guessing_its_urls(ctx, app, record):
    from conftest import sent_mails

    sent_mails(ctx)  # sent: every download exists
    outsider = signed_in(app, ctx, SUN)  # head of HR: nobody of HR takes part
    for url in _record_urls(record):
        answer = outsider.get(url)
        assert answer.status_code == 404 and "智能手表" not in answer.text, url
    # The same answer as for a record that does not exist (but for the page's own path).
    assert outsider.get(f"/r/{record}").text.replace(record, "X") == outsider.get("/r/PRJ-2026-9999").text.replace(
        "PRJ-2026-9999", "X")
    assert record not in outsider.get("/records").text
    assert record not in outsider.get("/search", params={"q": "硬件"}).text
    assert outsider.get("/search", params={"q": record}).status_code == 200  # no redirect to it
    assert outsider.get("/records.csv").text.count("\n") == 1  # the header line only
    assert outsider.get("/inbox").status_code == 404  # admins only


def test_a_department_head_sees_the_records_of_the_department_and_an_admin_all(ctx, app, record):
    head = signed_in(app, ctx, ZHOU)  # 王强 of his 研发部 takes part
    assert head.get(f"/r/{record}").status_code == 200
    assert record in head.get("/records").text
    with_admin = replace(ctx, settings=replace(ctx.settings, web=replace(ctx.settings.web, admins=(SUN,))))
    admin = signed_in(create_app(with_admin), ctx, SUN)
    assert admin.get(f"/r/{record}").status_code == 200 and admin.get("/inbox").status_code == 200


# ------------------------------------------------------------------ pages

def test_my_work_lists_what_is_expected_of_me_with_a_reply_button_each(ctx, app, record):
    client = signed_in(app, ctx, WANG)
    page = client.get("/work").text
    assert record in page and "等待您回复" in page and "2026-11-27 12:00" in page  # 高: two hours
    buttons = re.findall(r'href="(mailto:[^"]+)"', page)
    assert buttons and all(b.startswith("mailto:reply+") for b in buttons)
    assert "同意需求" in page


def test_the_board_counts_the_departments_work_and_each_number_lists_it(ctx, app, record, clock):
    head = signed_in(app, ctx, ZHOU)
    clock.advance(hours=3)  # 高: 王强's answer was due two hours after dispatch
    board = head.get("/board").text
    assert "研发部" in board
    overdue = head.get("/board/%E7%A0%94%E5%8F%91%E9%83%A8/overdue")
    assert overdue.status_code == 200 and record in overdue.text and "王强" in overdue.text
    assert head.get("/board/%E8%B4%A2%E5%8A%A1%E9%83%A8/overdue").status_code == 404  # not his department
    assert "部门负责人" in signed_in(app, ctx, WANG).get("/board").text  # not a head: nothing to show


def test_search_finds_by_a_two_character_word_the_id_a_day_and_a_person(ctx, app, record):
    from store.archive import index_pending

    index_pending()
    client = signed_in(app, ctx, WANG)
    words = client.get("/search", params={"q": "硬件"}).text
    assert record in words and "<mark>硬件</mark>" in words
    assert client.get("/search", params={"q": record.lower()}).headers["location"] == f"/r/{record}"
    assert record in client.get("/search", params={"q": "2026-11-27"}).text
    assert record in client.get("/search", params={"q": "赵磊"}).text
    assert record not in client.get("/search", params={"q": "2026-11-28"}).text


def test_an_admin_retries_a_rejected_mail_and_the_retry_is_in_the_trace(ctx, app, send):
    rejected = send(make_mail("沟通主题：缺字段"))
    assert rejected.state == "rejected"
    with_admin = replace(ctx, settings=replace(ctx.settings, web=replace(ctx.settings.web, admins=(SUN,))))
    admin = signed_in(create_app(with_admin), ctx, SUN)
    listed = admin.get("/inbox").text
    assert f"IN-{rejected.id}" in listed
    page = admin.get(f"/inbox/{rejected.id}").text
    answer = admin.post(f"/inbox/{rejected.id}/retry", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    retried = Event.get(Event.kind == "inbound_retried")
    assert retried.actor == SUN and retried.data["state_before"] == "rejected"
    assert InboundMessage.get_by_id(rejected.id).state == "rejected"  # the same mail, rejected again


# ------------------------------------------------------------------ without signing in

def test_a_client_reads_their_own_record_by_the_link_in_their_mails_and_nothing_internal(ctx, app, send):
    from test_forwarded_requests import CLIENT, QQ_FORWARD, WU
    from test_replies import NAMES, reply

    send(make_mail(QQ_FORWARD, subject="转发：定制表带刻字需求", to=f"customer@{DOMAIN}", sender=WU),
         rcpt=f"customer@{DOMAIN}", mail_from=WU)
    NAMES[CLIENT], NAMES[WU] = "林先生", "吴刚"
    reply(send, WANG, "进度：\n进展：刻字工艺已打样\n风险：激光头库存只够 300 条")
    reply(send, WANG, "进度（客户可见）：\n进展：刻字样品已完成\n下一步：12月8日前寄样给客户\n风险：激光头库存不足")
    ack = OutboundMessage.get(OutboundMessage.kind == "client_ack")
    link = re.search(r"(http://\S+/c/\d+/\w+)", mail_body(ctx, ack)[0]).group(1).removeprefix(BASE)
    update = OutboundMessage.select().where((OutboundMessage.to_addr == CLIENT)
                                            & (OutboundMessage.kind == "update")).get()
    assert link in mail_body(ctx, update)[0]  # the same page from every mail
    page = browser(app).get(link)
    assert page.status_code == 200
    assert "定制表带刻字需求" in page.text and "首批500条" in page.text and "刻字样品已完成" in page.text
    for internal in ("王强", "吴刚", WANG, WU, "库存", "刻字工艺已打样", "/work"):
        assert internal not in page.text, internal
    forged = link[: -4] + ("0000" if not link.endswith("0000") else "1111")
    assert browser(app).get(forged).status_code == 404
    import argparse

    from gateway.cli import cmd_client_links_revoke

    assert cmd_client_links_revoke(argparse.Namespace(ref=Record.get().ref.lower()), ctx) == 0
    assert browser(app).get(link).status_code == 404  # revoked


def test_a_digest_unsubscribes_with_one_click_and_a_person_opening_the_link_sees_a_button(ctx, app, send, clock):
    from datetime import timedelta

    from test_replies import MEDIUM

    send(make_mail(MEDIUM))  # 中: his answer is due at 10:00 tomorrow, in the 09:00 digest

    from gateway.scheduler import sweep
    from store.models import DigestPreference

    clock.advance(hours=23)  # 09:00 the next morning
    sweep(ctx)
    digest = OutboundMessage.get((OutboundMessage.kind == "digest") & (OutboundMessage.to_addr == WANG))
    assert digest.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(http[^>]+)>", digest.headers["List-Unsubscribe"]).group(1).removeprefix(BASE)
    assert "mailto:" in digest.headers["List-Unsubscribe"]  # and the mail way, for clients without it
    scanner = browser(app).get(url)
    assert scanner.status_code == 200 and DigestPreference.get_or_none(DigestPreference.email == WANG) is None
    # The mail client's POST (RFC 8058): no cookie, no CSRF token, no Origin.
    done = browser(app).post(url, content=b"List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200 and DigestPreference.get(DigestPreference.email == WANG).enabled is False
    assert browser(app).post(url.replace("s=", "s=0"), content=b"List-Unsubscribe=One-Click").status_code == 404
    clock.advance(hours=24)
    sweep(ctx)
    assert not OutboundMessage.select().where((OutboundMessage.kind == "digest") & (OutboundMessage.to_addr == WANG)
                                              & (OutboundMessage.created_at > digest.created_at + timedelta(hours=1))
                                              ).exists()


def test_a_filtered_list_exports_as_csv_and_excel_with_what_people_wrote_kept_as_text(ctx, app, send):
    import io

    from openpyxl import load_workbook
    from test_replies import MEDIUM

    send(make_mail(MEDIUM))
    send(make_mail(MEDIUM.replace("智能手表项目-硬件方案评审", "=HYPERLINK(\"http://evil\")"),
                   subject="=HYPERLINK(\"http://evil\")"))
    client = signed_in(app, ctx, WANG)
    csv_text = client.get("/records.csv", params={"form": "project"}).text
    assert csv_text.startswith("\ufeff编号,主题") and "PRJ-2026-0001" in csv_text and "PRJ-2026-0002" in csv_text
    book = load_workbook(io.BytesIO(client.get("/records.xlsx", params={"form": "project"}).content))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][:2] == ("编号", "主题") and len(rows) == 3
    assert {r[1] for r in rows[1:]} == {"智能手表项目-硬件方案评审", "'=HYPERLINK(\"http://evil\")"}
    assert len(list(load_workbook(io.BytesIO(client.get("/records.xlsx", params={"form": "notice"}).content))
                    .active.iter_rows())) == 1  # the filter applies: the header alone


def test_search_filters_by_state_and_form_and_finds_by_archive_key(ctx, app, send):
    from test_replies import CHEN, MEDIUM, ZHAO, reply

    from store.archive import index_pending

    send(make_mail(MEDIUM))
    reply(send, CHEN, "结果：采用方案B")
    reply(send, WANG, "确认")
    reply(send, ZHAO, "确认")
    send(make_mail(MEDIUM.replace("智能手表项目-硬件方案评审", "硬件采购-第二批"), subject="硬件采购-第二批"))
    index_pending()
    archived = Record.get(Record.status == "archived")
    client = signed_in(app, ctx, WANG)
    both = client.get("/search", params={"q": "硬件"}).text
    assert "PRJ-2026-0001" in both and "PRJ-2026-0002" in both
    only_archived = client.get("/search", params={"q": "硬件", "status": "archived"}).text
    assert "PRJ-2026-0001" in only_archived and "PRJ-2026-0002" not in only_archived
    assert "PRJ-2026-0001" not in client.get("/search", params={"q": "硬件", "form": "notice"}).text
    by_key = client.get("/search", params={"q": archived.archive_key}).text
    assert archived.archive_key in by_key and "PRJ-2026-0001" in by_key
