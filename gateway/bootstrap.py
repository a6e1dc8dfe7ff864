"""The composition root: settings in, every dependency built once and handed out explicitly."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from peewee import Database

from config.directory import Directory
from config.forms import (
    FormDef,
    Keyword,
    Offer,
    ReplyContext,
    Rules,
    load_forms,
    load_keywords,
    load_offers,
    load_reply_contexts,
    load_reply_labels,
    load_rules,
)
from config.settings import DEFAULT_KEYWORDS, ReminderSettings, Settings, ensure_secret
from gateway.clock import Clock, SystemClock
from gateway.worktime import WorkingTime, parse_clock
from mail_templates import Renderer
from store.access import Reader
from store.db import DatabaseHealth, open_database
from store.search import ensure_search_schema

log = logging.getLogger(__name__)


class DirectoryFile:
    """The directory, read again when its file changes (`liuhen directory sync` writes a new
    one while the gateway runs); the file is looked at every CHECK_SECONDS at most. A new file
    that cannot be read leaves the one read before in use, and says so."""

    CHECK_SECONDS = 5.0

    def __init__(self, path: Path | None, directory: Directory):
        self._path, self._directory = path, directory
        self._stamp = self._mtime()
        self._checked = time.monotonic()

    @classmethod
    def load(cls, path: Path, required: bool = True) -> DirectoryFile:
        """The directory in `path`; when not `required`, a file not there yet (before the first
        `liuhen directory sync`) is an empty directory, read once it appears."""
        if not required and not path.exists():
            return cls(path, Directory([], []))
        return cls(path, Directory.load(path))

    @classmethod
    def fixed(cls, directory: Directory) -> DirectoryFile:
        return cls(None, directory)

    def current(self) -> Directory:
        now = time.monotonic()
        if self._path is not None and now - self._checked >= self.CHECK_SECONDS:
            self._checked = now
            stamp = self._mtime()
            if stamp is not None and stamp != self._stamp:
                try:
                    self._directory, self._stamp = Directory.load(self._path), stamp
                    log.info("directory %s read again", self._path)
                except (OSError, ValueError, KeyError) as exc:  # TOML errors are ValueErrors
                    log.warning("directory %s changed but cannot be read (%s); the one read before stays in use",
                                self._path, exc)
        return self._directory

    def _mtime(self) -> int | None:
        try:
            return self._path.stat().st_mtime_ns if self._path is not None else None
        except OSError:
            return None


@dataclass(frozen=True)
class Context:
    """What handlers need: read-only configuration plus the database and the clock."""

    settings: Settings
    db: Database
    db_health: DatabaseHealth  # shared by the loops of this process that use `db`
    directory_file: DirectoryFile
    forms: dict[str, FormDef]
    rules: Rules
    keywords: tuple[Keyword, ...]
    # What short answers mean in the context of the mail answered (config/keywords.toml
    # [contexts]): "request", "signoff", "notice".
    reply_contexts: dict[str, ReplyContext]
    # The buttons a mail offers, by its kind (config/keywords.toml [offers]).
    offers: dict[str, tuple[Offer, ...]]
    # The labelled lines of a 进度, 延期 or 会议 reply (config/keywords.toml [labels]).
    reply_labels: dict[str, dict[str, tuple[str, ...]]]
    renderer: Renderer
    clock: Clock
    tz: ZoneInfo

    @property
    def directory(self) -> Directory:
        return self.directory_file.current()

    def local_now(self) -> datetime:
        return self.clock.now().astimezone(self.tz)

    def language_of(self, email: str, default: str) -> str:
        """The language of the mails to `email`: theirs in the directory, else `default` (the
        record's, which its request was written in)."""
        lang = self.directory.by_email(email).lang
        return lang if lang in self.renderer.languages else default

    def name_in(self, email: str, name: str, lang: str) -> str:
        """How a mail in `lang` names the person: their English name in English, if they have one."""
        person = self.directory.by_email(email)
        return person.name_for(lang) if not person.external else name

    def deadline(self, start: datetime, hours: float) -> datetime:
        """`hours` after `start` — in working time when [reminders] business_hours is on."""
        r = self.settings.reminders
        if not r.business_hours:
            return start + timedelta(hours=hours)
        return _working_time(r, self.tz).add(start, hours)

    def working_now(self) -> bool:
        """Whether reminders may go out now: always, unless [reminders] business_hours is on
        and it is outside working time (no escalation at 00:01 on a Saturday)."""
        r = self.settings.reminders
        return not r.business_hours or _working_time(r, self.tz).is_working(self.clock.now())

    def reader(self, email: str) -> Reader:
        """Who `email` is when reading records (store/access.py: who sees what)."""
        person = self.directory.by_email(email)
        admins = {a.lower() for a in (*self.settings.gateway.admins, *self.settings.web.admins)}
        heads = tuple(d.name for d in self.directory.departments if d.head.lower() == email.lower())
        return Reader(email, person.name, heads, email.lower() in admins, person.external)

    def keyword_label(self, action: str, lang: str) -> str:
        """The word that does `action`, as a mail in `lang` names it (a comment has none)."""
        if action == "comment":
            return self.renderer.phrase(lang, "label.comment")
        keyword = next(k for k in self.keywords if k.action == action)
        return keyword.en[0] if lang == "en" else keyword.zh[0]

    def form_by_address(self, local_part: str) -> FormDef | None:
        return next((f for f in self.forms.values() if f.address == local_part), None)


@lru_cache(maxsize=8)
def _working_time(r: ReminderSettings, tz: ZoneInfo) -> WorkingTime:
    """Built once per configuration, not for every deadline of every request."""
    return WorkingTime(tz, parse_clock(r.work_start), parse_clock(r.work_end),
                       frozenset(map(date.fromisoformat, r.days_off)),
                       frozenset(map(date.fromisoformat, r.working_days)))


def build_context(settings: Settings, clock: Clock | None = None, directory_required: bool = True) -> Context:
    from gateway.handlers.actions import check_keywords  # the handlers import this module

    settings = ensure_secret(settings)
    # The configuration files first: a mistake in them is told even while the database is down.
    directory = DirectoryFile.load(settings.directory_path, required=directory_required)
    forms, rules = load_forms(settings.forms_path), load_rules(settings.rules_path)
    keywords = load_keywords(DEFAULT_KEYWORDS)
    check_keywords(keywords, DEFAULT_KEYWORDS)
    reply_contexts = load_reply_contexts(DEFAULT_KEYWORDS, keywords)
    offers = load_offers(DEFAULT_KEYWORDS, keywords)
    reply_labels = load_reply_labels(DEFAULT_KEYWORDS)
    db = open_database(settings.database_url)
    ensure_search_schema(db)
    return Context(
        settings=settings,
        db=db,
        db_health=DatabaseHealth(db),
        directory_file=directory,
        forms=forms,
        rules=rules,
        keywords=keywords,
        reply_contexts=reply_contexts,
        offers=offers,
        reply_labels=reply_labels,
        renderer=Renderer(),
        clock=clock or SystemClock(),
        tz=ZoneInfo(settings.gateway.timezone),
    )
