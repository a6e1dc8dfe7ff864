"""Settings: one frozen object loaded once from TOML (plus environment) and passed in.

Every key has a default (``config/liuhen.toml`` documents them), so the gateway runs with
no configuration at all: SQLite and an outbound maildir under ``var/``. Secrets may come
from the environment instead of the file:

* ``LIUHEN_CONFIG``        — path of the TOML file (``--config`` wins over it)
* ``LIUHEN_SECRET``        — HMAC key for reply tokens
* ``LIUHEN_DATABASE_URL``  — overrides ``[database] url``
* ``LIUHEN_SMTP_PASSWORD`` — overrides ``[delivery] password``
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_DIRECTORY = CONFIG_DIR / "directory.toml"
DEFAULT_TEMPLATES = CONFIG_DIR / "templates"
DEFAULT_RULES = CONFIG_DIR / "rules.toml"
DEFAULT_KEYWORDS = CONFIG_DIR / "keywords.toml"


@dataclass(frozen=True)
class GatewaySettings:
    domain: str = "liuhen.localhost"
    timezone: str = "Asia/Shanghai"
    secret: str = ""  # empty: generated once and kept in <data_dir>/secret.key
    data_dir: str = "var"
    from_name: str = "留痕 liuhen"
    from_local: str = "liuhen"
    admins: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 2525
    max_message_bytes: int = 25 * 1024 * 1024


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""  # empty: sqlite:///<data_dir>/liuhen.db


@dataclass(frozen=True)
class DeliverySettings:
    mode: str = "maildir"  # "maildir" | "smtp"
    maildir: str = ""  # empty: <data_dir>/outbox-maildir
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    ca_file: str = ""  # a private CA for the smarthost's certificate; empty: the system's CAs
    user: str = ""
    password: str = ""
    timeout_seconds: float = 30.0
    max_attempts: int = 8
    retry_seconds: tuple[int, ...] = (60, 300, 900, 3600, 4 * 3600, 12 * 3600)
    # `serve` delivers over this many smarthost sessions in parallel, each kept open for many
    # mails, taking this many due mails at a time, from this many processes: the mail
    # processor's and processes − 1 of their own (composing mails wants more than one core).
    sessions: int = 4
    batch: int = 50
    processes: int = 2
    # DKIM-sign every outbound mail when both are set (`liuhen dkim keygen` makes the key and
    # prints the DNS record); the signing domain is the gateway's unless dkim_domain says.
    dkim_selector: str = ""
    dkim_key_file: str = ""
    dkim_domain: str = ""
    # A request's files travel with the mails to its recipients up to this size in all; above
    # it the mails name the files and say where to get them.
    attachments_mb: float = 10.0


@dataclass(frozen=True)
class DirectorySettings:
    path: str = ""  # empty: the sample directory in config/


@dataclass(frozen=True)
class DirectorySyncSettings:
    # Where `liuhen directory sync` reads the organisation from: "ldap" (LDAP or Active
    # Directory), or the path of a CSV/XLSX HR export. It writes [directory] path.
    source: str = ""
    url: str = ""  # ldap://dc1.example.cn, ldaps://dc1.example.cn:636
    bind_dn: str = ""  # empty: an anonymous bind
    password_file: str = ""  # the bind password, alone in a file (or $LIUHEN_LDAP_PASSWORD)
    base_dn: str = ""
    filter: str = "(&(objectClass=person)(mail=*))"
    start_tls: bool = False
    timeout_seconds: float = 10.0
    # The LDAP attribute, or the export's column header, of each thing we keep. Active
    # Directory: displayName, mail, department, title, manager (a DN), preferredLanguage.
    name: str = "cn"
    email: str = "mail"
    department: str = "department"
    title: str = "title"
    manager: str = "manager"
    name_en: str = ""
    lang: str = "preferredLanguage"
    # A department's head, "研发部=zhou.ming@example.cn"; a department not named here is headed
    # by the member the others report to (the manager attribute).
    heads: tuple[str, ...] = ()


@dataclass(frozen=True)
class TemplateSettings:
    path: str = ""  # empty: the form definitions in config/templates/
    rules: str = ""  # empty: config/rules.toml


@dataclass(frozen=True)
class ReminderSettings:
    sweep_seconds: int = 60  # how often `serve` looks for what is due
    escalate_after_hours: float = 48  # overdue this long → the department head is told
    before_hours: float = 24  # milestones and action items: a reminder this long before
    signoff_hours: float = 24  # key recipients have this long to sign a result
    minutes_due_hours: float = 1  # minutes are due this long after a meeting ends
    retro_after_days: float = 3  # the initiator of a closed record is asked for the 复盘
    digest_time: str = "09:00"  # local time of the daily digest
    # Count deadlines in working time (Chinese working days with 调休, work_start–work_end) and
    # send reminders, escalations and digests only within it. A company can turn it off.
    business_hours: bool = True
    work_start: str = "09:00"
    work_end: str = "18:00"
    days_off: tuple[str, ...] = ()  # ISO dates off besides the statutory holidays, e.g. "2027-02-05"
    working_days: tuple[str, ...] = ()  # ISO dates worked although weekend or holiday (调休)


@dataclass(frozen=True)
class ImapSettings:
    """One mailbox the gateway reads, standing for one of its intake addresses."""

    address: str  # the intake address this mailbox stands for, e.g. project@example.cn
    host: str
    user: str
    port: int = 993
    security: str = "ssl"  # "ssl" (IMAPS), "starttls", or "none" (loopback tests only)
    password: str = ""
    password_file: str = ""  # read the password from this file instead
    folder: str = "INBOX"
    processed_folder: str = ""  # move mail here once stored; empty: flag it instead
    poll_seconds: float = 60.0  # when the server cannot IDLE
    ca_file: str = ""

    def secret(self) -> str:
        return Path(self.password_file).read_text(encoding="utf-8").strip() if self.password_file else self.password


@dataclass(frozen=True)
class SecuritySettings:
    # The authserv-id your own MX writes in Authentication-Results (RFC 8601). When set, the
    # topmost such header decides who sent a mail — if the mail came through that MX (piped,
    # from an IMAP mailbox, or over SMTP from one of `trusted_relays`). When empty, the
    # gateway checks DKIM and DMARC itself (DNS lookups of the sender's domain).
    trusted_authserv_id: str = ""
    trusted_relays: tuple[str, ...] = ("127.0.0.1/32", "::1/128")  # networks your MX connects from
    check_dkim: bool = True  # without a trusted MX: verify DKIM/DMARC ourselves (off: every verdict is "none")
    dns_timeout_seconds: float = 2.0


@dataclass(frozen=True)
class ProcessingSettings:
    # One mail's processing may take this long; then it is stopped and kept in 'error' (tried
    # again later, behind new mail). Enforced where mail is processed in a main thread:
    # serve's processor process, `liuhen ingest`, `liuhen inbox retry`. 0: no limit.
    mail_seconds: float = 30.0
    # serve's processor process may use this much memory (address space); a mail that needs
    # more fails alone, in 'error'. 0: no limit.
    memory_mb: int = 2048


@dataclass(frozen=True)
class OfficeSettings:
    # Forms sent as Word/Excel attachments (gateway/office.py). Reading every office file of
    # one mail may take this long; what is left unread then is answered as such.
    read_seconds: float = 15.0
    # A .docx/.xlsx/.ods whose parts would unpack to more than this (a zip bomb) is refused.
    unpacked_mb: int = 20
    # LibreOffice, which turns .doc/.wps/.odt/.rtf into .docx; "" (or not installed): those
    # are answered with a request for .docx.
    libreoffice: str = "soffice"


@dataclass(frozen=True)
class ProbeSettings:
    # An HTTP listener in `serve` for a supervisor's probes: GET /healthz (the process
    # answers) and GET /readyz (200 when the database answers, else 503; the body is
    # `liuhen status --json`). Port 0: off.
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class LogSettings:
    format: str = "text"  # "text" | "json": one JSON object a line, with inbound/outbound/record ids
    level: str = "warning"  # debug | info | warning | error; `liuhen -v` means info

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError(f"[log] format must be 'text' or 'json', not {self.format!r}")


@dataclass(frozen=True)
class WebSettings:
    # The staff console (`liuhen web`; `serve` starts it beside SMTP when enabled): sign-in by
    # mail, My work, the board, records, search, the archive. base_url is where people reach
    # it (links in mails); empty: http://host:port.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""
    admins: tuple[str, ...] = ()  # besides [gateway] admins: who sees every record
    session_idle_minutes: int = 480  # a session unused this long ends
    signin_minutes: int = 15  # a sign-in link and code are good this long, once

    @property
    def url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")


@dataclass(frozen=True)
class Settings:
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    directory_sync: DirectorySyncSettings = field(default_factory=DirectorySyncSettings)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    reminders: ReminderSettings = field(default_factory=ReminderSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)
    office: OfficeSettings = field(default_factory=OfficeSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    web: WebSettings = field(default_factory=WebSettings)
    log: LogSettings = field(default_factory=LogSettings)
    imap: tuple[ImapSettings, ...] = ()

    @property
    def data_path(self) -> Path:
        return Path(self.gateway.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'liuhen.db'}"

    @property
    def maildir_path(self) -> Path:
        return Path(self.delivery.maildir) if self.delivery.maildir else self.data_path / "outbox-maildir"

    @property
    def directory_path(self) -> Path:
        return Path(self.directory.path or DEFAULT_DIRECTORY)

    @property
    def forms_path(self) -> Path:
        return Path(self.templates.path or DEFAULT_TEMPLATES)

    @property
    def rules_path(self) -> Path:
        return Path(self.templates.rules or DEFAULT_RULES)

    @property
    def from_address(self) -> str:
        return f"{self.gateway.from_local}@{self.gateway.domain}"


_SECTIONS: dict[str, type] = {
    "gateway": GatewaySettings, "smtp": SmtpSettings, "database": DatabaseSettings,
    "delivery": DeliverySettings, "directory": DirectorySettings, "directory_sync": DirectorySyncSettings,
    "templates": TemplateSettings,
    "security": SecuritySettings, "reminders": ReminderSettings, "processing": ProcessingSettings,
    "office": OfficeSettings, "probe": ProbeSettings, "web": WebSettings, "log": LogSettings,
}


class ConfigError(ValueError):
    """The configuration file is unreadable or names an unknown key."""


def _section(cls: type, values: Mapping[str, Any], name: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"[{name}]: unknown key(s) {', '.join(sorted(unknown))}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**converted)


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                  base_dir: Path | None = None) -> Settings:
    """Read settings from ``path`` (or ``$LIUHEN_CONFIG``); no file means all defaults.

    Relative paths in the file are taken relative to the file's folder, so a config file
    works from wherever the gateway is started.
    """
    env = os.environ if env is None else env
    path = path or env.get("LIUHEN_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        base_dir = base_dir or Path(path).resolve().parent
    unknown = set(data) - set(_SECTIONS) - {"imap"}
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(unknown))}")
    mailboxes = data.get("imap", [])
    if not isinstance(mailboxes, list):
        raise ConfigError("[[imap]] is a list of mailboxes: write it with double brackets")
    try:
        imap = tuple(_section(ImapSettings, m, "imap") for m in mailboxes)
    except TypeError as exc:
        raise ConfigError(f"[[imap]]: {exc}") from exc
    settings = Settings(imap=imap, **{name: _section(cls, data.get(name, {}), name) for name, cls in _SECTIONS.items()})
    for key in ("days_off", "working_days"):
        for day in getattr(settings.reminders, key):
            try:
                date.fromisoformat(day)
            except (TypeError, ValueError):
                raise ConfigError(f"[reminders] {key}: {day!r} is not a date like \"2027-02-05\"") from None
    if base_dir is not None:
        settings = _resolve_paths(settings, base_dir)
    return _apply_env(settings, env)


def _resolve_paths(s: Settings, base: Path) -> Settings:
    def rel(p: str) -> str:
        return p if not p or Path(p).is_absolute() else str(base / p)

    return replace(
        s,
        gateway=replace(s.gateway, data_dir=rel(s.gateway.data_dir)),
        delivery=replace(s.delivery, maildir=rel(s.delivery.maildir), ca_file=rel(s.delivery.ca_file)),
        directory=replace(s.directory, path=rel(s.directory.path)),
        directory_sync=replace(s.directory_sync, password_file=rel(s.directory_sync.password_file),
                               source=s.directory_sync.source if s.directory_sync.source in ("", "ldap")
                               else rel(s.directory_sync.source)),
        templates=replace(s.templates, path=rel(s.templates.path), rules=rel(s.templates.rules)),
        imap=tuple(replace(m, password_file=rel(m.password_file), ca_file=rel(m.ca_file)) for m in s.imap),
    )


def _apply_env(s: Settings, env: Mapping[str, str]) -> Settings:
    if env.get("LIUHEN_SECRET"):
        s = replace(s, gateway=replace(s.gateway, secret=env["LIUHEN_SECRET"]))
    if env.get("LIUHEN_DATABASE_URL"):
        s = replace(s, database=replace(s.database, url=env["LIUHEN_DATABASE_URL"]))
    if env.get("LIUHEN_SMTP_PASSWORD"):
        s = replace(s, delivery=replace(s.delivery, password=env["LIUHEN_SMTP_PASSWORD"]))
    return s


def ensure_secret(s: Settings) -> Settings:
    """Return settings with a reply-token secret, generating and keeping one if none is set.

    A built-in default secret would let anyone forge reply tokens, so there is none: the
    first start writes a random key to ``<data_dir>/secret.key`` (mode 0600).
    """
    if s.gateway.secret:
        return s
    key_file = s.data_path / "secret.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return replace(s, gateway=replace(s.gateway, secret=key_file.read_text().strip()))
