"""`liuhen doctor`: what a new installation (or one that misbehaves) gets wrong, each finding
with a line that says what to try. Reads only: it sends no mail and changes nothing.

Checks: the configuration (secrets redacted), the database, free disk for the spool, SMTP
intake (it answers, and refuses to relay), the smarthost (TLS, login) or the maildir, the
domain's MX, SPF, DKIM and DMARC records (where DNS is reachable), the holiday calendar, the
directory (and the LDAP bind of its sync), and LibreOffice for legacy Word forms.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import ssl
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dns.exception
import dns.resolver

from config.settings import Settings
from gateway.health import _without_password

FREE_DISK_WARNING = 1 << 30  # below 1 GiB free the spool may soon answer 452


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool | None  # None: not checked (not configured, or not reachable from here)
    detail: str
    hint: str = ""


def lookup(name: str, rtype: str) -> list[str] | None:
    """The records of `name` as text; [] when there are none, None when DNS is not reachable."""
    try:
        answer = dns.resolver.resolve(name, rtype, lifetime=5.0, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError):
        return None
    texts = []
    for rrset in answer.response.answer:
        for item in rrset:
            strings = getattr(item, "strings", None)
            texts.append(b"".join(strings).decode("utf-8", "replace") if strings else item.to_text())
    return texts


def examine(settings: Settings) -> list[Finding]:
    return [_configuration(settings), _database(settings), _disk(settings), _intake(settings),
            _delivery(settings), *_dns_records(settings), _calendar(settings), _directory(settings),
            _directory_sync(settings), _libreoffice(settings)]


def _configuration(s: Settings) -> Finding:
    secret = "set" if s.gateway.secret else "generated into <data_dir>/secret.key on first start"
    return Finding("configuration", True, f"domain {s.gateway.domain}; database {_without_password(s.database_url)}; "
                   f"delivery {s.delivery.mode}; secret {secret}; smarthost password "
                   f"{'set' if s.delivery.password else 'none'}")


def _database(s: Settings) -> Finding:
    """Connects and reads the schema version — without migrating anything (serve does)."""
    from playhouse.db_url import connect

    from store.db import SCHEMA_VERSION

    url = s.database_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return Finding("database", None, f"{_without_password(url)} does not exist yet", "serve creates it")
    try:
        db = connect(url)
        version = db.execute_sql('SELECT "version" FROM "schemaversion"').fetchone()[0]
        db.close()
    except Exception as exc:
        return Finding("database", False, " ".join(str(exc).split())[:300],
                       "is the database server running and reachable? check [database] url or LIUHEN_DATABASE_URL")
    behind = f" (serve brings it to {SCHEMA_VERSION})" if version < SCHEMA_VERSION else ""
    return Finding("database", True, f"answers; schema version {version}{behind}")


def _disk(s: Settings) -> Finding:
    folder = Path(s.gateway.data_dir)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < FREE_DISK_WARNING:
        return Finding("disk", False, f"{free / 2**20:.0f} MiB free under {s.gateway.data_dir}",
                       "free some space: without it the spool cannot be written and SMTP answers 452")
    return Finding("disk", True, f"{free / 2**30:.1f} GiB free under {s.gateway.data_dir}")


def _intake(s: Settings) -> Finding:
    host = "127.0.0.1" if s.smtp.host in ("0.0.0.0", "::", "") else s.smtp.host
    try:
        with smtplib.SMTP(host, s.smtp.port, timeout=10) as smtp:
            smtp.ehlo("doctor.invalid")
            smtp.mail("doctor@example.invalid")
            relay, _ = smtp.rcpt("someone@example.invalid")
            smtp.rset()
    except (OSError, smtplib.SMTPException) as exc:
        return Finding("SMTP intake", None, f"nothing answers on {host}:{s.smtp.port} ({exc})",
                       "start `liuhen serve` to check it")
    if relay < 500:
        return Finding("SMTP intake", False, f"{host}:{s.smtp.port} accepted a recipient of another domain",
                       "an open relay: report it — liuhen accepts only its own domain")
    return Finding("SMTP intake", True, f"{host}:{s.smtp.port} answers and refuses to relay ({relay})")


def _delivery(s: Settings) -> Finding:
    d = s.delivery
    if d.mode == "maildir":
        target = s.maildir_path
        writable = os.access(target, os.W_OK) if target.exists() else True  # serve creates it
        return Finding("delivery", writable, f"into the maildir {target} (no mail leaves this machine)",
                       "" if writable else "make the maildir writable for the liuhen user")
    try:
        with smtplib.SMTP(d.host, d.port, timeout=min(d.timeout_seconds, 15)) as smtp:
            smtp.ehlo()
            steps = ["connected"]
            if d.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=d.ca_file or None))
                smtp.ehlo()
                steps.append("STARTTLS")
            if d.user:
                smtp.login(d.user, d.password)
                steps.append(f"logged in as {d.user}")
    except ssl.SSLError as exc:
        return Finding("smarthost", False, f"{d.host}:{d.port}: TLS failed ({exc})",
                       "the smarthost's certificate is not trusted: set [delivery] ca_file to its CA")
    except smtplib.SMTPAuthenticationError as exc:
        return Finding("smarthost", False, f"{d.host}:{d.port}: login refused ({exc.smtp_code})",
                       "check [delivery] user and password (or LIUHEN_SMTP_PASSWORD)")
    except (OSError, smtplib.SMTPException) as exc:
        return Finding("smarthost", False, f"{d.host}:{d.port}: {exc}",
                       "check [delivery] host and port, and that this machine may connect to it")
    return Finding("smarthost", True, f"{d.host}:{d.port}: " + ", ".join(steps))


def _dns_records(s: Settings) -> list[Finding]:
    domain = s.gateway.domain
    mx = lookup(domain, "MX")
    if mx is None:
        return [Finding("DNS", None, "not reachable from here", "run liuhen doctor where DNS answers")]
    found = [Finding("MX", bool(mx), ", ".join(mx) or f"no MX for {domain}",
                     "" if mx else f"publish an MX for {domain} pointing at your mail server (or at liuhen)")]
    spf = [t for t in lookup(domain, "TXT") or [] if t.lower().startswith("v=spf1")]
    found.append(Finding("SPF", bool(spf), spf[0] if spf else f"no SPF record for {domain}",
                         "" if spf else f'publish TXT "v=spf1 mx -all" (with your smarthost) for {domain}'))
    d = s.delivery
    if d.dkim_selector:
        name = f"{d.dkim_selector}._domainkey.{d.dkim_domain or domain}"
        key = [t for t in lookup(name, "TXT") or [] if "p=" in t]
        found.append(Finding("DKIM", bool(key), name + (" published" if key else " has no key"),
                             "" if key else "publish the record `liuhen dkim keygen` printed"))
    else:
        found.append(Finding("DKIM", None, "outbound mail is not signed",
                             "`liuhen dkim keygen --out KEY`, then set [delivery] dkim_selector and dkim_key_file"))
    dmarc = [t for t in lookup(f"_dmarc.{domain}", "TXT") or [] if t.lower().startswith("v=dmarc1")]
    found.append(Finding("DMARC", bool(dmarc), dmarc[0] if dmarc else f"no DMARC record for {domain}",
                         "" if dmarc else f'publish TXT "v=DMARC1; p=quarantine" at _dmarc.{domain}'))
    return found


def _calendar(s: Settings) -> Finding:
    if not s.reminders.business_hours:
        return Finding("holiday calendar", None, "deadlines count plain hours ([reminders] business_hours = false)")
    import chinese_calendar  # type: ignore[import-untyped]  # ships no type information

    last = max(chinese_calendar.holidays).year
    needed = date.today().year + (1 if date.today().month == 12 else 0)
    if last < needed:
        return Finding("holiday calendar", False, f"chinesecalendar knows the holidays up to {last}",
                       f"upgrade chinesecalendar (pip install -U chinesecalendar), or list {needed}'s days off "
                       "and working days in [reminders] days_off / working_days")
    return Finding("holiday calendar", True, f"holidays known up to {last}")


def _directory(s: Settings) -> Finding:
    from config.directory import Directory

    try:
        directory = Directory.load(s.directory_path)
    except (OSError, ValueError, KeyError) as exc:
        return Finding("directory", False, f"{s.directory_path}: {exc}",
                       "fix the file, or run `liuhen directory sync` to write it from LDAP or an HR export")
    if not s.directory.path:
        return Finding("directory", None, f"the sample directory ({len(directory.people)} fictional people)",
                       "set [directory] path to your own directory file (or fill it with `liuhen directory sync`)")
    return Finding("directory", True, f"{len(directory.people)} people in {len(directory.departments)} departments "
                   f"({s.directory_path})")


def _directory_sync(s: Settings) -> Finding:
    sync = s.directory_sync
    if sync.source != "ldap":
        return Finding("directory sync", None, f"from {sync.source}" if sync.source else "not configured",
                       "" if sync.source else "[directory_sync] source = \"ldap\" (with url, base_dn) or an HR export")
    from ldap3.core.exceptions import LDAPException

    from gateway.directory_sync import ldap_connection

    try:
        ldap_connection(sync).unbind()
    except (LDAPException, OSError) as exc:
        return Finding("directory sync", False, f"LDAP {sync.url}: {exc}",
                       "check [directory_sync] url, bind_dn and the password (password_file or $LIUHEN_LDAP_PASSWORD)")
    return Finding("directory sync", True, f"LDAP {sync.url} accepts the bind as {sync.bind_dn or 'anonymous'}")


def _libreoffice(s: Settings) -> Finding:
    found = shutil.which(s.office.libreoffice) if s.office.libreoffice else None
    if found:
        return Finding("LibreOffice", True, f"{found}: forms sent as .doc, .wps, .odt, .rtf are read")
    return Finding("LibreOffice", None, "not found: forms sent as .doc or .wps are answered with a request for .docx",
                   "apt-get install libreoffice-writer-nogui (or set [office] libreoffice to its path)")


def render(findings: list[Finding]) -> str:
    marks = {True: "ok  ", False: "FAIL", None: "--  "}
    lines = []
    for f in findings:
        lines.append(f"{marks[f.ok]} {f.name}: {f.detail}")
        if f.hint and f.ok is not True:
            lines.append(f"     try: {f.hint}")
    return "\n".join(lines)
