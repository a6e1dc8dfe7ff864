"""Commands by mail, written in the subject to any intake address: 帮助/HELP, 模板/TEMPLATE,
检索/SEARCH, 状态/STATUS, 订阅/DIGEST ON, 退订/DIGEST OFF. Search and status answer only with records the asker may see:
participants see their records, a department head those involving the department, admins all,
an external client only their own."""

from __future__ import annotations

from config.forms import FormDef
from gateway.bootstrap import Context
from gateway.checks import detect_language
from gateway.handlers import Outcome
from gateway.outbox import Draft, queue_mails
from gateway.refusals import known_sender, may_answer
from gateway.scheduler import digest_preference
from parsers.keywords import Command
from parsers.mime import ParsedMessage
from store import search
from store.archive import index_pending
from store.models import Event, InboundMessage, Participant, ProgressRow, Record

COMMANDS = ("help", "template", "search", "status", "digest_on", "digest_off")


def visible_record_ids(ctx: Context, email: str) -> set[int] | None:
    """The records a person may see; None means all (an admin)."""
    email = email.lower()
    if email in {a.lower() for a in ctx.settings.gateway.admins}:
        return None
    ids = {p.record_id for p in Participant.select(Participant.record).where(Participant.email == email)}
    headed = [d.name for d in ctx.directory.departments if d.head == email]
    if headed:
        ids |= {p.record_id for p in Participant.select(Participant.record).where(Participant.department.in_(headed))}
    return ids


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
                       "digest_on": _digest_on, "digest_off": _digest_off}[command.name](ctx, msg, command.argument,
                                                                                          lang)
    # A blank form filled in and sent back as a reply reaches that form's intake address.
    form = _form_named(ctx, command.argument) if command.name == "template" else None
    queue_mails(ctx, [Draft(kind=f"command_{command.name}", template="sender/answer", lang=lang,
                            to_addr=msg.from_addr, to_name=msg.from_name, inbound_id=row.id,
                            in_reply_to=msg.message_id, auto_submitted="auto-replied",
                            reply_to=f"{form.address}@{ctx.settings.gateway.domain}" if form else "",
                            context=dict(title=title, text=text))])
    return Outcome("processed", f"command {command.name} {command.argument}".strip())


def _help(ctx: Context, msg: ParsedMessage, argument: str, lang: str, with_forms: bool = True) -> tuple[str, str]:
    domain = ctx.settings.gateway.domain
    en = lang == "en"
    lines = ["How to use liuhen" if en else "留痕 liuhen 使用说明", ""]
    lines.append("Send a request to the address of its form:" if en else "发起请求：把填好的表单发到对应地址：")
    lines += [f"  {f.address}@{domain} — {f.name_for(lang)}" for f in ctx.forms.values()]
    lines += ["", ("Get a blank form: send a mail with the subject “TEMPLATE project”." if en else
                   "获取空白表单：发送主题为「模板 项目协作」的邮件。"),
              ("Search the archive: subject “SEARCH words”; a record's state: “STATUS PRJ-2026-0001”." if en else
               "检索归档：主题写「检索 关键词」；查看进展：主题写「状态 PRJ-2026-0001」。")]
    if with_forms:  # the manual: for people we know; a stranger (perhaps a forged From) gets the lines above
        lines += ["", "Reply keywords (first line of your reply):" if en else "回复关键词（写在回复的第一行）："]
        for k in ctx.keywords:
            words = " / ".join(k.en if en else k.zh + k.en)
            lines.append(f"  {words} — {k.help_en if en else k.help_zh}")
        lines += ["", "Blank forms:" if en else "空白表单："]
        for form in ctx.forms.values():
            lines += ["", *_template(ctx, msg, form.key, lang)]
    return ("liuhen help" if en else "留痕 使用说明"), "\n".join(lines)


def _template(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    form = _form_named(ctx, argument)
    if form is None:
        names = "、".join(f"{f.scenario} ({f.scenario_en})" for f in ctx.forms.values())
        return (("Which form?" if lang == "en" else "请指定模板"),
                (f"Forms: {names}. Example subject: TEMPLATE project" if lang == "en"
                 else f"可用模板：{names}。示例主题：模板 项目协作"))
    today = ctx.local_now().date()
    colon, example = (": ", "(e.g. {})") if lang == "en" else ("：", "（例 {}）")
    lines = [f"{f.label_for(lang)}{'*' if f.required else ''}{colon}"
             + (example.format(f.example_for(lang, today)) if f.example else "") for f in form.fields]
    intro = (f"Fill in the form and send it to {form.address}@{ctx.settings.gateway.domain} (* = required; "
             "replace the examples):" if lang == "en" else
             f"填写后发送到 {form.address}@{ctx.settings.gateway.domain}（* 为必填，括号内为示例，请替换）：")
    return form.name_for(lang), intro + "\n\n" + "\n".join(lines)


def _form_named(ctx: Context, name: str) -> FormDef | None:
    wanted = name.strip().casefold()
    for form in ctx.forms.values():
        if wanted in {n.casefold() for n in (form.key, form.name, form.name_en, form.scenario, form.scenario_en,
                                             *form.subject_tags)}:
            return form
    return None


def _search(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    en = lang == "en"
    if not argument.strip():
        return ("Search" if en else "检索"), ("Write the words after SEARCH in the subject." if en
                                            else "请在主题「检索」后写上关键词。")
    while index_pending():  # a search sees every change up to this mail
        pass
    hits = search.search(ctx.db, argument, include_open=True,
                         visible_record_ids=visible_record_ids(ctx, msg.from_addr))
    title = f"{'Search' if en else '检索'}：{argument}"
    if not hits:
        return title, "No record you may see matches." if en else "没有找到您有权查看的相关记录。"
    lines = [f"{h.ref}  [{h.status}]  {h.archive_key}\n    {h.snippet}" for h in hits]
    return title, "\n".join(lines)


def _digest_on(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    digest_preference(msg.from_addr, True, ctx.clock.now())
    return ("Daily digest on", "You will get the daily digest again.") if lang == "en" else (
        "已订阅每日摘要", "您将重新收到每日待办摘要。")


def _digest_off(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    digest_preference(msg.from_addr, False, ctx.clock.now())
    return ("Daily digest off", "You will no longer get the daily digest; reminders for your own items "
                                "still come. Send DIGEST ON to resume.") if lang == "en" else (
        "已退订每日摘要", "您将不再收到每日待办摘要（具体事项的提醒仍会发送）。发送「订阅」可恢复。")


def _status(ctx: Context, msg: ParsedMessage, argument: str, lang: str) -> tuple[str, str]:
    en = lang == "en"
    record = Record.get_or_none(Record.ref == argument.strip().upper())
    visible = visible_record_ids(ctx, msg.from_addr)
    if record is None or (visible is not None and record.id not in visible):
        # The same answer whether it does not exist or is not theirs: no probing.
        return (f"{'Status' if en else '状态'}：{argument}",
                "No record of that id that you may see." if en else "没有找到您有权查看的该编号记录。")
    if ctx.directory.by_email(msg.from_addr).external:
        return _client_status(record, en)
    people = Participant.select().where(Participant.record == record.id).order_by(Participant.id)
    lines = [f"{record.ref} {record.subject}", f"{'Status' if en else '状态'}: {record.status}", ""]
    lines += [f"  {p.role}: {p.name} <{p.email}> {p.response or ''}{' ✔' if p.signed_at else ''}" for p in people]
    lines.append("")
    for event in Event.select().where(Event.record_id == record.id).order_by(Event.id):
        lines.append(f"  {event.at.astimezone(ctx.tz).strftime('%Y-%m-%d %H:%M')}  {event.kind}  {event.actor}")
    return f"{'Status' if en else '状态'}：{record.ref}", "\n".join(lines)


_CLIENT_STAGES = {"open": ("处理中", "in progress"), "confirming": ("待您确认结果", "result waiting for confirmation"),
                  "archived": ("已完成", "done")}


def _client_status(record: Record, en: bool) -> tuple[str, str]:
    """What an external client sees of their own request: what they asked, the stage, and
    the next step we told them — never our staff, our internal progress or the trace."""
    shared = (ProgressRow.select().where((ProgressRow.record == record.id) & ProgressRow.client_visible)
              .order_by(ProgressRow.id.desc()).first())
    stage = _CLIENT_STAGES.get(record.status, (record.status, record.status))[en]
    request = record.fields.get("progress") or record.fields.get("content") or record.subject
    if en:
        lines = [f"{record.ref} {record.subject}", f"Stage: {stage}", "", f"Your request: {request}"]
        if shared:
            lines += [f"Latest progress: {shared.progress}"] + ([f"Next step: {shared.next_step}"]
                                                                if shared.next_step else [])
        return f"Status: {record.ref}", "\n".join(lines)
    lines = [f"{record.ref} {record.subject}", f"阶段：{stage}", "", f"您的需求：{request}"]
    if shared:
        lines += [f"最新进展：{shared.progress}"] + ([f"下一步：{shared.next_step}"] if shared.next_step else [])
    return f"状态：{record.ref}", "\n".join(lines)
