"""Commands by mail, written in the subject to any intake address: 帮助/HELP, 模板/TEMPLATE,
检索/SEARCH, 状态/STATUS, 待办/TODO, 部门待办/TEAM, 订阅/DIGEST ON, 退订/DIGEST OFF.
Search and status answer only with records the asker may see (store/access.py):
participants see their records, a department head those involving the department, admins all,
an external client only their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from config.forms import FormDef
from gateway.bootstrap import Context
from gateway.checks import detect_language
from gateway.form_files import blank_form_files
from gateway.handlers import Outcome
from gateway.outbox import Draft, queue_mails
from gateway.refusals import known_sender, may_answer
from gateway.report import client_view, record_report
from gateway.scheduler import digest_preference
from gateway.tokens import reply_address
from parsers.keywords import Command
from parsers.mime import ParsedMessage
from store import search
from store.access import visible_record_ids
from store.archive import index_pending
from store.models import InboundMessage, Record
from store.worklist import WorkItem, by_deadline, pending_items

COMMANDS = ("help", "template", "search", "status", "todo", "team", "digest_on", "digest_off")


def handle_command(ctx: Context, row: InboundMessage, msg: ParsedMessage, command: Command) -> Outcome:
    lang = detect_language(f"{msg.subject}\n{msg.text}")
    known = known_sender(ctx, msg.from_addr)
    if not may_answer(ctx, msg.from_addr, known):
        return Outcome("ignored", f"command {command.name}: daily answer limit for this sender reached; not answered")
    if command.name == "help" and not known:
        # A stranger (perhaps a forged From) gets the short page: no blank forms.
        title, text = _help(ctx, msg, command.argument, lang, with_forms=False)
    else:
        title, text = {"help": _help, "template": _template, "search": _search, "status": _status,
                       "todo": _todo, "team": _team, "digest_on": _digest_on,
                       "digest_off": _digest_off}[command.name](ctx, msg, command.argument, lang)
    # A blank form filled in and sent back as a reply reaches that form's intake address;
    # it comes as text to fill in and as the .docx and .xlsx offices fill in.
    form = _form_named(ctx, command.argument) if command.name == "template" else None
    files = blank_form_files(form, lang, _say(ctx, lang), ctx.local_now().date()) if form else ()
    if files:
        text += "\n\n" + _say(ctx, lang)("files_attached")
    queue_mails(ctx, [Draft(kind=f"command_{command.name}", template="sender/answer", lang=lang,
                            to_addr=msg.from_addr, to_name=msg.from_name, inbound_id=row.id,
                            in_reply_to=msg.message_id, auto_submitted="auto-replied",
                            reply_to=f"{form.address}@{ctx.settings.gateway.domain}" if form else "",
                            context=dict(title=title, text=text), attachments=files)])
    return Outcome("processed", f"command {command.name} {command.argument}".strip())


def _help(ctx: Context, msg: ParsedMessage, argument: str, lang: str, with_forms: bool = True) -> tuple[str, str]:
    say = _say(ctx, lang)
    domain = ctx.settings.gateway.domain
    lines = [say("help_title"), "", say("help_send")]
    lines += [f"  {f.address}@{domain} — {f.name_for(lang)}" for f in ctx.forms.values()]
    lines += ["", say("help_template"), say("help_search"), say("help_todo")]
    if with_forms:  # the manual: for people we know; a stranger (perhaps a forged From) gets the lines above
        lines += ["", say("help_keywords")]
        lines += [f"  {words} — {meaning}" for words, meaning in (k.listed(lang) for k in ctx.keywords)]
        lines += ["", say("help_forms")]
        for form in ctx.forms.values():
            lines += ["", *_template(ctx, msg, form.key, lang)]
    return say("help_subject"), "\n".join(lines)


def _say(ctx: Context, lang: str) -> Callable[..., str]:
    """The [command] phrases in `lang`."""
    return lambda key, **values: ctx.renderer.phrase(lang, f"command.{key}", **values)


def _template(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    say = _say(ctx, lang)
    form = _form_named(ctx, argument)
    if form is None:
        names = ctx.renderer.joined(lang, [f"{f.scenario} ({f.scenario_en})" for f in ctx.forms.values()])
        return say("which_form"), say("forms", names=names)
    today = ctx.local_now().date()
    lines = [f"{f.label_for(lang)}{'*' if f.required else ''}{ctx.renderer.phrase(lang, 'colon').rstrip()}"
             + (say("example", example=f.example_for(lang, today)) if f.example else "") for f in form.fields]
    intro = say("fill_in", address=f"{form.address}@{ctx.settings.gateway.domain}")
    return form.name_for(lang), intro + "\n\n" + "\n".join(lines)


def _form_named(ctx: Context, name: str) -> FormDef | None:
    wanted = name.strip().casefold()
    for form in ctx.forms.values():
        if wanted in {n.casefold() for n in (form.key, form.name, form.name_en, form.scenario, form.scenario_en,
                                             *form.subject_tags)}:
            return form
    return None


def _search(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    say = _say(ctx, lang)
    if not argument.strip():
        return say("search"), say("search_empty")
    while index_pending():  # a search sees every change up to this mail
        pass
    hits = search.search(ctx.db, argument, include_open=True,
                         visible_record_ids=visible_record_ids(ctx.reader(msg.from_addr)))
    title = say("search_title", words=argument)
    if not hits:
        return title, say("search_none")
    lines = [f"{h.ref}  [{ctx.renderer.phrase(lang, f'status.{h.status}')}]  {h.archive_key}\n    {h.snippet}"
             for h in hits]
    return title, "\n".join(lines)


# What a work item asks for, as the keywords that answer it ([offers] of config/keywords.toml).
_OFFER_OF_KIND = {"awaiting": "request", "overdue": "request", "sign": "signoff", "dispute": "ruling",
                  "dispute_late": "ruling"}


def _work_lines(ctx: Context, items: list[WorkItem], lang: str, whose: bool) -> list[str]:
    """One item a line (overdue first), then how to answer it: the reply address and words."""
    s, say = ctx.settings, _say(ctx, lang)
    lines = []
    for item in by_deadline(items):
        what = ctx.renderer.phrase(lang, f"digest.{item.kind}", label=item.label)
        if whose:
            what = ctx.renderer.phrase(lang, "digest.whose", whose=ctx.directory.by_email(item.email).name, what=what)
        due = say("due", due=_local(ctx, item.due)) if item.due else ""
        lines.append(f"{item.ref} {item.title}{ctx.renderer.phrase(lang, 'colon')}{what}{due}")
        offer = _OFFER_OF_KIND.get(item.kind, "item")
        if not whose and item.participant_id:
            words = " / ".join(ctx.keyword_label(o.action, lang) for o in ctx.offers.get(offer, ()))
            lines.append(say("reply_with", address=reply_address(s.gateway.secret, s.gateway.domain, item.record_id,
                                                                 item.participant_id), words=words))
    return lines


def _local(ctx: Context, when: datetime) -> str:
    return when.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M")


def _todo(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    """待办: what is expected of the sender — the same list as the console's My work."""
    say = _say(ctx, lang)
    items = pending_items(ctx.clock.now(), emails=[msg.from_addr.lower()])
    if not items:
        return say("todo_title"), say("todo_none")
    return say("todo_title"), "\n".join(_work_lines(ctx, items, lang, whose=False))


def _team(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    """部门待办: a head's departments' open items, whose they are — the board as a list."""
    say = _say(ctx, lang)
    reader = ctx.reader(msg.from_addr)
    if not reader.heads or reader.external:
        return say("team_title"), say("team_not_head")
    members = [p.email for p in ctx.directory.people if p.department in reader.heads]
    items = pending_items(ctx.clock.now(), emails=members)
    title = say("team_title") + " " + ctx.renderer.joined(lang, [ctx.directory.department_name(d, lang)
                                                                 for d in reader.heads])
    return title, "\n".join(_work_lines(ctx, items, lang, whose=True)) if items else say("todo_none")


def _digest_on(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    digest_preference(msg.from_addr, True, ctx.clock.now())
    return _say(ctx, lang)("digest_on_title"), _say(ctx, lang)("digest_on")


def _digest_off(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    digest_preference(msg.from_addr, False, ctx.clock.now())
    return _say(ctx, lang)("digest_off_title"), _say(ctx, lang)("digest_off")


def _status(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    say = _say(ctx, lang)
    record = Record.get_or_none(Record.ref == argument.strip().upper())
    report = record_report(ctx, record.ref, lang, ctx.reader(msg.from_addr)) if record is not None else None
    if record is None or report is None:
        # The same answer whether it does not exist or is not theirs: no probing.
        return say("status_title", ref=argument), say("status_none")
    if ctx.directory.by_email(msg.from_addr).external:
        return _client_status(ctx, record, lang)
    colon = ctx.renderer.phrase(lang, "colon")
    lines = [f"{record.ref} {record.subject}", say("stage", stage=ctx.renderer.phrase(lang, f"status.{record.status}")),
             ""]
    for p in report["participants"]:
        state = ctx.renderer.phrase(lang, f"response.{p['response']}") if p["response"] in _RESPONSES else ""
        signed = say("signed_at", at=p["signed_at"]) if p["signed_at"] else ""
        lines.append(f"  {ctx.renderer.phrase(lang, 'role.' + p['role'])}{colon}{p['name']} <{p['email']}>"
                     f" {state} {signed}".rstrip())
    lines += ["", *(f"  {e['at']}  {e['text']}" for e in report["trace"])]
    return say("status_title", ref=record.ref), "\n".join(lines)


_RESPONSES = ("pending", "agree", "need_info", "propose", "confirmed", "delegated")


def _client_status(ctx: Context, record: Record, lang: str) -> tuple[str, str]:
    """What an external client sees of their own request (gateway/report.py client_view)."""
    say = _say(ctx, lang)
    view = client_view(ctx, record, lang)
    lines = [f"{view['ref']} {view['subject']}", say("stage", stage=view["stage"]), "",
             say("your_request", request=view["request"])]
    if view["latest"]:
        lines.append(say("latest", progress=view["latest"]))
        if view["next_step"]:
            lines.append(say("next_step", step=view["next_step"]))
    return say("status_title", ref=record.ref), "\n".join(lines)
