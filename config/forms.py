"""Template (form) definitions and validation rules, loaded from TOML data in ``config/``."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from config.settings import ConfigError

FIELD_TYPES = {"text", "person", "priority", "datetime", "people", "milestones"}
PRIORITIES = ("高", "中", "低")


@dataclass(frozen=True)
class FieldDef:
    key: str
    label: str
    label_en: str
    type: str
    required: bool = False
    aliases: tuple[str, ...] = ()
    example: str = ""
    example_en: str = ""
    recipients: bool = False  # the people named here receive the request
    allow_past: bool = False  # a date that may lie in the past (e.g. the date of a sync row)

    def label_for(self, lang: str) -> str:
        return self.label_en if lang == "en" else self.label

    def example_for(self, lang: str, today: date) -> str:
        """The example value; `{date}` in it becomes a date two weeks ahead, so an example
        date is never one that the validator itself would call past."""
        example = self.example_en if lang == "en" else self.example
        return example.replace("{date}", (today + timedelta(days=14)).isoformat())


@dataclass(frozen=True)
class FormDef:
    key: str
    name: str
    name_en: str
    scenario: str
    scenario_en: str
    id_prefix: str
    address: str
    archive: str
    fields: tuple[FieldDef, ...]
    subject_tags: tuple[str, ...] = ()
    attachment_naming: str = "warn"
    default_priority: str = ""

    def field(self, key: str) -> FieldDef | None:
        return next((f for f in self.fields if f.key == key), None)

    @property
    def recipients_field(self) -> FieldDef:
        return next(f for f in self.fields if f.recipients)

    def name_for(self, lang: str) -> str:
        return self.name_en if lang == "en" else self.name


@dataclass(frozen=True)
class Rules:
    vague_subjects: tuple[str, ...]
    subject_filler: tuple[str, ...]
    min_cjk_chars: int
    min_latin_words: int
    vague_values: frozenset[str]
    priority_words: dict[str, str]  # what people write → 高/中/低
    response_hours: dict[str, float]
    attachment_pattern: re.Pattern[str]
    attachment_example: str
    optional_may_be_none: tuple[str, ...] = field(default=())
    group_heads: frozenset[str] = field(default=frozenset())  # 各部门负责人: every department's head
    group_everyone: frozenset[str] = field(default=frozenset())  # 全体员工: everyone in the directory
    meeting_moved_to: tuple[str, ...] = ()  # 改至: a notice's content names a meeting's new time after it
    meeting_location: tuple[str, ...] = ()  # 地点: … and its place after it


class FormError(ValueError):
    """A template definition in config/ is inconsistent."""


def load_forms(folder: str | Path) -> dict[str, FormDef]:
    forms: dict[str, FormDef] = {}
    for path in sorted(Path(folder).glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        fields_ = tuple(_field(f, path) for f in data.pop("fields"))
        data["subject_tags"] = tuple(data.get("subject_tags", ()))
        form = FormDef(fields=fields_, **data)
        if sum(f.recipients for f in form.fields) != 1:
            raise FormError(f"{path}: exactly one field must be marked recipients = true")
        if form.field("subject") is None:
            raise FormError(f"{path}: a form needs a 'subject' field")
        forms[form.key] = form
    return forms


def _field(data: dict, path: Path) -> FieldDef:
    if data.get("type") not in FIELD_TYPES:
        raise FormError(f"{path}: field {data.get('key')!r} has unknown type {data.get('type')!r}")
    data = dict(data, aliases=tuple(data.get("aliases", ())))
    return FieldDef(**data)


def load_rules(path: str | Path) -> Rules:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    priority_words = {}
    for canonical, key in zip(PRIORITIES, ("high", "medium", "low")):
        for word in data["priority"][key]:
            priority_words[word.casefold()] = canonical
    return Rules(
        vague_subjects=tuple(data["subject"]["vague"]),
        subject_filler=tuple(data["subject"]["filler"]),
        min_cjk_chars=int(data["subject"]["min_cjk_chars"]),
        min_latin_words=int(data["subject"]["min_latin_words"]),
        vague_values=frozenset(v.casefold() for v in data["values"]["vague"]),
        optional_may_be_none=tuple(data["values"].get("optional_may_be_none", ())),
        priority_words=priority_words,
        response_hours={k: float(v) for k, v in data["response_hours"].items()},
        attachment_pattern=re.compile(data["attachments"]["pattern"]),
        attachment_example=data["attachments"]["example"],
        group_heads=frozenset(w.casefold() for w in data.get("groups", {}).get("department_heads", ())),
        group_everyone=frozenset(w.casefold() for w in data.get("groups", {}).get("everyone", ())),
        meeting_moved_to=tuple(data.get("meeting_notice", {}).get("moved_to", ())),
        meeting_location=tuple(data.get("meeting_notice", {}).get("location", ())),
    )


@dataclass(frozen=True)
class Keyword:
    action: str
    zh: tuple[str, ...]
    en: tuple[str, ...]
    roles: tuple[str, ...]
    help_zh: str
    help_en: str
    hant: tuple[str, ...] = ()  # Traditional Chinese spellings: understood, not listed in mails

    def for_role(self, role: str) -> bool:
        return "any" in self.roles or role in self.roles

    def listed(self, lang: str) -> tuple[str, str]:
        """(the words to write, what they do) as a mail in `lang` lists them."""
        if lang == "en":
            return " / ".join(self.en), self.help_en
        return " / ".join(self.zh + self.en), self.help_zh


def load_keywords(path: str | Path) -> tuple[Keyword, ...]:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return tuple(Keyword(action=k["action"], zh=tuple(k["zh"]), en=tuple(k["en"]), roles=tuple(k["roles"]),
                         help_zh=k["help_zh"], help_en=k["help_en"], hant=tuple(k.get("hant", ())))
                 for k in data["keywords"])


@dataclass(frozen=True)
class ReplyContext:
    """What replies mean in answer to one kind of mail."""

    words: tuple[Keyword, ...]  # words that mean an action here (roles and help of its keyword)
    default: str = ""  # the action of a reply with no keyword at all ("" : a comment)


def load_reply_contexts(path: str | Path, keywords: tuple[Keyword, ...]) -> dict[str, ReplyContext]:
    """{context: ReplyContext} from the `[contexts]` of the keywords file."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    by_action = {k.action: k for k in keywords}
    contexts = {}
    for name, meanings in data.get("contexts", {}).items():
        words, default = [], str(meanings.get("default", ""))
        for action in [default] if default else []:
            if action not in by_action:
                raise ConfigError(f"{path}: [contexts.{name}] default names {action!r}, which no keyword has")
        for action, spelled in meanings.items():
            if action == "default":
                continue
            if action not in by_action:
                raise ConfigError(f"{path}: [contexts.{name}] names the action {action!r}, which no keyword has")
            base = by_action[action]
            words.append(replace(base, zh=tuple(w for w in spelled if not w.isascii()),
                                 en=tuple(w for w in spelled if w.isascii()), hant=()))
        contexts[name] = ReplyContext(tuple(words), default)
    return contexts


@dataclass(frozen=True)
class Offer:
    """A button of a mail: the action, and whether the keyword wants text after it."""

    action: str
    with_text: bool


def load_offers(path: str | Path, keywords: tuple[Keyword, ...]) -> dict[str, tuple[Offer, ...]]:
    """{mail kind: its buttons} from the `[offers]` of the keywords file; "also" holds the
    keywords listed beside the buttons (they fit any stage), with_text meaning nothing."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    known = {k.action for k in keywords} | {"comment"}  # a comment is a reply without a keyword
    offers = {}
    for kind, actions in data.get("offers", {}).items():
        chosen = tuple(Offer(a.rstrip(":"), a.endswith(":")) for a in actions)
        unknown = [o.action for o in chosen if o.action not in known]
        if unknown:
            raise ConfigError(f"{path}: [offers] {kind} names {', '.join(unknown)}, which no keyword has")
        offers[kind] = chosen
    return offers


@lru_cache(maxsize=64)
def keyword_help(keywords: tuple[Keyword, ...], role: str, lang: str) -> tuple[tuple[str, str], ...]:
    """(the words to write, what they do) for the keywords a person in `role` may use.
    (Cached: every dispatched mail lists them, and the keyword table does not change.)"""
    return tuple(k.listed(lang) for k in keywords if k.for_role(role))


def load_reply_labels(path: str | Path) -> dict[str, dict[str, tuple[str, ...]]]:
    """{keyword action: {field: the labels that may stand for it}} from `[labels]` of the
    keywords file: the `阶段：…` / `Next step: …` lines a 进度, 延期 or 会议 reply may carry."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return {action: {key: tuple(names) for key, names in fields.items()}
            for action, fields in data.get("labels", {}).items()}
