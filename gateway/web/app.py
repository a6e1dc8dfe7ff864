"""The console's ASGI app: routes, security headers, and how a request becomes a page.

Handlers are plain functions of a `Visit` (who asks, in which language, with what form)
run in a worker thread — peewee is synchronous — and return a Response. `page()` wraps
one: it finds the session, sends the signed-out to the sign-in page, checks the CSRF token
of every POST, and answers 503 while the database is away.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.bootstrap import Context
from gateway.trace import VERDICTS
from gateway.web import auth
from mail_templates import DEFAULT_LANGUAGE
from store.access import Reader
from store.db import DATABASE_ERRORS, drop_connection
from store.models import WebSession

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
LANG_COOKIE = "liuhen_lang"

# No inline script or style anywhere (the pages use static/console.js and console.css), so
# the policy can forbid both; frame-ancestors: no page of ours inside someone's frame.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A sign-in or client link in the address bar goes to no other site ("no-referrer" would
    # also make browsers send Origin: null on our own forms, which the CSRF check refuses).
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds the headers above to every response, static files and errors included."""

    def __init__(self, app: ASGIApp, https: bool):
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if self.https:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class Visit:
    """One request as a handler sees it."""

    web: Web
    request: Request
    lang: str
    form: dict[str, str] = field(default_factory=dict)
    session: WebSession | None = None
    reader: Reader | None = None

    @property
    def ctx(self) -> Context:
        return self.web.ctx

    def param(self, name: str, default: str = "") -> str:
        return self.form.get(name) or self.request.query_params.get(name, default)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.web.render(self, template, **context), status_code=status)

    def refuse(self, status: int = 404) -> HTMLResponse:
        """Not found — also for what exists but is not this reader's: guessing learns nothing."""
        return self.render("error.html.j2", status=status, status_code=status)


class Web:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.phrases: dict[str, dict[str, Any]] = tomllib.loads((HERE / "phrases.toml").read_text(encoding="utf-8"))
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, auto_reload=False)
        self.https = ctx.settings.web.url.startswith("https://")

    def phrase(self, lang: str, key: str, **values: Any) -> str:
        """The console's words (phrases.toml here), else mail's (status, role, priority …)."""
        table: Any = self.phrases.get(lang) or self.phrases[DEFAULT_LANGUAGE]
        for part in key.split("."):
            table = table.get(part) if isinstance(table, dict) else None
            if table is None:
                return self.ctx.renderer.phrase(lang, key, **values)
        return str(table).format(**values)

    def render(self, visit: Visit, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(
            lang=visit.lang, t=lambda key, **values: self.phrase(visit.lang, key, **values),
            verdict=lambda result: self.phrase(visit.lang, f"auth.{result}") if result in VERDICTS else result,
            reader=visit.reader, csrf=visit.session.csrf if visit.session else "",
            path=visit.request.url.path, query=visit.request.url.query, quote=quote, **context)

    def language(self, request: Request) -> str:
        chosen = request.cookies.get(LANG_COOKIE, "")
        if chosen in self.ctx.renderer.languages:
            return chosen
        for part in request.headers.get("accept-language", "").split(","):
            code = part.split(";")[0].strip().lower()[:2]
            if code in self.ctx.renderer.languages:
                return code
        return DEFAULT_LANGUAGE

    def cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, secure=self.https, samesite="lax", path="/")


Handler = Callable[..., Response]


def page(web: Web, handler: Handler, *, signed_in: bool = True, admin: bool = False) -> Callable:
    async def endpoint(request: Request) -> Response:
        form: dict[str, str] = {}
        if request.method == "POST":
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        return await run_in_threadpool(_visit, web, handler, request, form, signed_in, admin)

    return endpoint


def _visit(web: Web, handler: Handler, request: Request, form: dict[str, str], signed_in: bool,
           admin: bool) -> Response:
    visit = Visit(web, request, web.language(request), form)
    try:
        visit.session = auth.current_session(web.ctx, request.cookies.get(auth.SESSION_COOKIE, ""))
        visit.reader = auth.reader_of(web.ctx, visit.session) if visit.session else None
        if request.method == "POST" and not _same_origin(web, request):
            return visit.refuse(403)
        if signed_in:
            if visit.session is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)
            if request.method == "POST" and not auth.same(form.get("csrf", ""), visit.session.csrf):
                return visit.refuse(403)
            if admin and not (visit.reader and visit.reader.admin):
                return visit.refuse(404)
        return handler(visit, **request.path_params)
    except DATABASE_ERRORS as exc:
        log.warning("web console: no database (%s); answering 503", " ".join(str(exc).split())[:200])
        drop_connection(web.ctx.db)  # the next request reconnects
        return PlainTextResponse("503 database unavailable, try again shortly", status_code=503)


def _same_origin(web: Web, request: Request) -> bool:
    """A POST from another site's page carries its Origin; browsers send it on every POST."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.rstrip("/") in {web.ctx.settings.web.url, f"{request.url.scheme}://{request.url.netloc}"}


def create_app(ctx: Context) -> ASGIApp:
    from gateway.web import pages

    web = Web(ctx)

    def route(path: str, handler: Handler, methods: tuple[str, ...] = ("GET",), **options: bool) -> Route:
        return Route(path, page(web, handler, **options), methods=list(methods))

    routes = [
        route("/", pages.home, signed_in=False),
        route("/lang/{code}", pages.choose_language, signed_in=False),
        route("/signin", pages.signin, ("GET", "POST"), signed_in=False),
        route("/signin/code", pages.signin_code, ("POST",), signed_in=False),
        route("/signin/confirm", pages.signin_confirm, ("GET", "POST"), signed_in=False),
        route("/signout", pages.signout, ("POST",)),
        route("/work", pages.my_work),
        route("/board", pages.board),
        route("/board/{department}/{bucket}", pages.board_list),
        route("/records", pages.records),
        route("/records.csv", pages.records_csv),
        route("/records.xlsx", pages.records_xlsx),
        route("/r/{ref}", pages.record),
        route("/r/{ref}/in/{mail_id:int}", pages.mail_in),
        route("/r/{ref}/in/{mail_id:int}.eml", pages.mail_in_eml),
        route("/r/{ref}/out/{mail_id:int}", pages.mail_out),
        route("/r/{ref}/out/{mail_id:int}.eml", pages.mail_out_eml),
        route("/r/{ref}/file/{file_id:int}", pages.record_file),
        route("/r/{ref}/export.zip", pages.record_export),
        route("/search", pages.search),
        route("/archive", pages.archive),
        route("/inbox", pages.inbox, admin=True),
        route("/inbox/{mail_id:int}", pages.inbox_mail, admin=True),
        route("/inbox/{mail_id:int}.eml", pages.inbox_eml, admin=True),
        route("/inbox/{mail_id:int}/retry", pages.inbox_retry, ("POST",), admin=True),
        route("/c/{link_id:int}/{signature}", pages.client_status, signed_in=False),
        route("/unsubscribe", pages.unsubscribe, ("GET", "POST"), signed_in=False),
        route("/healthz", pages.healthz, signed_in=False),
        route("/readyz", pages.readyz, signed_in=False),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    return SecurityHeaders(app, web.https)
