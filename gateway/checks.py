"""Validation of a request: extracted field text → a typed ``Submission``, or every problem.

Each check is a small function that reads one field and reports what is wrong with it; the
caller collects all problems in one pass so the sender can fix everything in one go. The
phrase lists and limits come from ``config/rules.toml``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from config.directory import Directory, Person, Resolution
from config.forms import FieldDef, FormDef, Rules
from parsers.dates import find_datetime, parse_datetime

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[a-z0-9]+", re.IGNORECASE)
# Separators between who and what in `研发部/王强 — 硬件方案` (a bare hyphen only with spaces,
# since addresses and names contain hyphens).
WHO_WHAT = re.compile(r"\s*(?:——|—|–|－|：|:|\||\t|\s-{1,2}\s|，\s*负责|,\s*responsible for)\s*")
PEOPLE_LIST = re.compile(r"\s*(?:、|，|,|；|;|\s和\s|和|及|\band\b)\s*")
SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|回复|答复|转发)\s*[:：]\s*|\[[^\]]*\]\s*|【[^】]*】\s*)+",
                            re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    field: str  # the form field key, "" for the mail as a whole
    code: str  # a key of mail_templates/problems.toml
    value: str = ""  # what the sender wrote
    detail: str = ""  # e.g. the candidates of an ambiguous name
    severity: str = "error"  # error | warning


@dataclass(frozen=True)
class Recipient:
    person: Person
    responsibility: str


@dataclass(frozen=True)
class PlannedMilestone:
    name: str
    due_at: datetime
    owner: Person | None


@dataclass(frozen=True)
class Submission:
    form: FormDef
    lang: str
    subject: str
    initiator: Person
    priority: str
    due_at: datetime | None
    values: dict[str, str]
    recipients: tuple[Recipient, ...]
    milestones: tuple[PlannedMilestone, ...]
    warnings: tuple[Problem, ...] = ()


@dataclass
class _Check:
    """What every check needs: the rules, the directory, the local time, and the findings."""

    rules: Rules
    directory: Directory
    now: datetime  # aware, in the configured timezone
    problems: list[Problem] = field(default_factory=list)

    def add(self, f: FieldDef | None, code: str, value: str = "", detail: str = "",
            severity: str = "error") -> None:
        self.problems.append(Problem(f.key if f else "", code, value, detail, severity))

    def is_vague(self, value: str) -> bool:
        if len(value) > 40:  # a value that long says something; spare normalising a paragraph
            return False
        norm = unicodedata.normalize("NFKC", value).casefold().strip(" 。.!！~～")
        return norm in self.rules.vague_values


def detect_language(text: str) -> str:
    """Chinese unless the sender wrote no Chinese at all."""
    return "zh" if CJK.search(text) else "en"


def validate(form: FormDef, values: dict[str, str], mail_subject: str, sender: Person,
             attachment_names: list[tuple[str, str]], lang: str, rules: Rules,
             directory: Directory, now: datetime) -> Submission | list[Problem]:
    """Check every field; return the typed submission, or all problems (warnings excluded)."""
    c = _Check(rules, directory, now)
    values = dict(values)
    subject_field = form.field("subject")
    if "subject" not in values and mail_subject:
        values["subject"] = SUBJECT_PREFIX.sub("", mail_subject).strip()

    for f in form.fields:
        value = values.get(f.key, "")
        # The sender is the initiator unless a field names someone; some forms imply a priority.
        implied = f.key == "initiator" or (f.type == "priority" and bool(form.default_priority))
        if f.required and not value and not implied:
            c.add(f, "missing")
        elif value and f.type == "text" and f.key != "subject" and c.is_vague(value):
            may_say_none = not f.required and f.key in rules.optional_may_be_none
            if not may_say_none:
                c.add(f, "vague_value", value)

    subject = values.get("subject", "")
    if subject:
        check_subject(c, subject_field, subject)
    initiator = check_initiator(c, form.field("initiator"), values.get("initiator", ""), sender)
    priority = check_priority(c, form.field("priority"), values.get("priority", ""), form.default_priority)
    due_at = None
    for f in form.fields:
        if f.type == "datetime" and values.get(f.key):
            when = check_datetime(c, f, values[f.key])
            if f.key == "due":
                due_at = when
    recipients_field = form.recipients_field
    recipients = check_people(c, recipients_field, values.get(recipients_field.key, ""))
    milestones: list[PlannedMilestone] = []
    for f in form.fields:
        if f.type == "milestones" and values.get(f.key):
            milestones = check_milestones(c, f, values[f.key])
    check_attachment_names(c, form, attachment_names)

    order = {f.key: i for i, f in enumerate(form.fields)}
    errors = sorted((p for p in c.problems if p.severity == "error"), key=lambda p: order.get(p.field, -1))
    if errors:
        return errors
    assert initiator is not None
    return Submission(form=form, lang=lang, subject=subject, initiator=initiator, priority=priority,
                      due_at=due_at, values=values, recipients=tuple(recipients),
                      milestones=tuple(milestones),
                      warnings=tuple(p for p in c.problems if p.severity == "warning"))


def check_subject(c: _Check, f: FieldDef | None, subject: str) -> None:
    """A subject must name the goal: not only vague phrases, not too short to say anything."""
    text = unicodedata.normalize("NFKC", SUBJECT_PREFIX.sub("", subject)).casefold()
    rest = _vague_phrases(c.rules.vague_subjects + c.rules.subject_filler).sub("", re.sub(r"[\W_]+", "", text))
    if len(rest) < 2:
        c.add(f, "vague_subject", subject)
        return
    cjk = len(CJK.findall(text))
    words = len(LATIN_WORD.findall(CJK.sub(" ", text)))
    if (cjk and cjk + words < c.rules.min_cjk_chars) or (not cjk and words < c.rules.min_latin_words):
        c.add(f, "short_subject", subject)


@lru_cache(maxsize=8)
def _vague_phrases(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for all vague phrases, longest first, compared without punctuation."""
    words = {re.sub(r"[\W_]+", "", p.casefold()) for p in phrases} - {""}
    return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))


def check_initiator(c: _Check, f: FieldDef | None, value: str, sender: Person) -> Person | None:
    """The sender, unless the form names someone else; a department alone means the sender."""
    if not value:
        return sender
    if not sender.external and sender.department:
        dept = c.directory.department(value.strip())
        if dept is not None and dept.name == sender.department:
            return sender
        if value.strip() in (sender.name, f"{sender.department}/{sender.name}"):
            return sender
    return resolve_person(c, f, value)


def resolve_person(c: _Check, f: FieldDef | None, who: str) -> Person | None:
    resolution: Resolution = c.directory.resolve(who)
    if resolution.person is not None:
        return resolution.person
    if resolution.problem == "ambiguous":
        detail = " / ".join(f"{p.department}/{p.name} <{p.email}>" for p in resolution.candidates)
        c.add(f, "ambiguous_person", who, detail)
    else:
        c.add(f, "unknown_person", who)
    return None


def check_priority(c: _Check, f: FieldDef | None, value: str, default: str) -> str:
    if not value:
        return default or "中"
    word = re.sub(r"[（(].*?[)）]", "", unicodedata.normalize("NFKC", value)).strip(" 。.!！").casefold()
    priority = c.rules.priority_words.get(word)
    if priority is None:
        c.add(f, "bad_priority", value)
        return "中"
    return priority


def check_datetime(c: _Check, f: FieldDef, value: str) -> datetime | None:
    if c.is_vague(value):
        c.add(f, "vague_value", value)
        return None
    when = parse_datetime(value, c.now)
    first = find_datetime(value, c.now) if when is None else None
    if when is None and first is not None and _second_time(c, value[first[2]:]):
        c.add(f, "date_alternatives", value)
    elif when is None:
        c.add(f, "bad_date", value)
    elif when < c.now and not f.allow_past:
        c.add(f, "past_date", value)
    return when


def check_people(c: _Check, f: FieldDef, value: str) -> list[Recipient]:
    """One line per person or group: `研发部/王强 — 职责`, a list `研发部/王强、张喆` (the
    department goes with the names after it), or a group (`各部门负责人`, a department's name:
    its head). Several people on one duty each get it, and the sender is told."""
    recipients: dict[str, Recipient] = {}
    for line in (raw.strip(" ;；") for raw in value.splitlines()):
        if not line:
            continue
        who, _, what = (p.strip() for p in _split_once(WHO_WHAT, line))
        if c.is_vague(who):
            c.add(f, "vague_value", line)
            continue
        people: list[Person] = []
        department = ""
        for name in (n.strip() for n in PEOPLE_LIST.split(who) if n.strip()):
            group = _group(c, name)
            if group is not None:
                people += group
                continue
            if "/" in name or "／" in name:
                department = re.split(r"\s*[/／]\s*", name, maxsplit=1)[0]
            elif department and c.directory.resolve(f"{department}/{name}").person is not None:
                name = f"{department}/{name}"  # 研发部/王强、张喆: 张喆 of 研发部
            person = resolve_person(c, f, name)
            if person is not None:
                people.append(person)
        if len(people) > 1 and what:
            c.add(f, "shared_duty", who, "、".join(p.name for p in people), "warning")
        for person in people:
            known = recipients.get(person.email)
            if known and what and what not in known.responsibility:
                what = f"{known.responsibility}；{what}" if known.responsibility else what
            recipients[person.email] = Recipient(person, what or (known.responsibility if known else ""))
    return list(recipients.values())


def _group(c: _Check, name: str) -> list[Person] | None:
    """The people a group word stands for (config/rules.toml [groups]), or None."""
    word = name.casefold()
    if word in c.rules.group_heads:
        return [c.directory.by_email(d.head) for d in c.directory.departments]
    if word in c.rules.group_everyone:
        return list(c.directory.people)
    return None


# Two times offered as alternatives or a range: 3月5日或3月6日, 12-10 至 12-12, 10/12 or 11/12.
ALTERNATIVE_TIMES = re.compile(r"^\s*(?:或者?|或是|至|到|~|～|—|-|/|／|or|to)\s*", re.IGNORECASE)


def _second_time(c: _Check, text: str) -> bool:
    """Whether `text` (what follows a date) offers another time as an alternative."""
    joined = ALTERNATIVE_TIMES.match(text)
    if joined is None:
        return False
    other = find_datetime(text[joined.end():], c.now)
    return other is not None and other[1] == 0


def check_milestones(c: _Check, f: FieldDef, value: str) -> list[PlannedMilestone]:
    """One line per milestone: `方案评审 — 2026-12-10 14:00 [— 负责人]`."""
    milestones = []
    for number, line in enumerate((raw.strip() for raw in value.splitlines() if raw.strip()), start=1):
        found = find_datetime(line, c.now)
        if found is None:
            c.add(f, "vague_value" if any(c.is_vague(w) for w in WHO_WHAT.split(line)) else "bad_milestone",
                  line)
            continue
        when, start, end = found
        name = WHO_WHAT.sub(" ", line[:start]).strip(" -—") or f"#{number}"
        if _second_time(c, line[end:]):
            c.add(f, "date_alternatives", line)
            continue
        owner_text = line[end:].strip(" -—–:：|\t")
        owner = resolve_person(c, f, owner_text) if owner_text else None
        if when < c.now:
            c.add(f, "past_date", line)
        milestones.append(PlannedMilestone(name, when, owner))
    return milestones


def check_attachment_names(c: _Check, form: FormDef, attachments: list[tuple[str, str]]) -> None:
    """Documents are named 主题+版本+日期; pictures (screenshots, signature logos) are exempt."""
    f = form.field("attachments")
    severity = "error" if form.attachment_naming == "error" else "warning"
    for name, content_type in attachments:
        if content_type.startswith("image/"):
            continue
        if not c.rules.attachment_pattern.match(name):
            c.add(f, "attachment_name", name, c.rules.attachment_example, severity)


def _split_once(pattern: re.Pattern[str], text: str) -> tuple[str, str, str]:
    m = pattern.search(text)
    if not m:
        return text, "", ""
    return text[: m.start()], m.group(0), text[m.end():]
