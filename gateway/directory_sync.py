"""`liuhen directory sync`: the organisation from where it lives — LDAP / Active Directory
(ldap3) or an HR export (CSV or XLSX) — into the TOML directory the gateway reads
([directory] path), with what changed shown first (`--dry-run` stops there) and kept as an
event. The gateway notices the new file by itself (gateway/bootstrap.py DirectoryFile).

A department's head is the one [directory_sync] heads names, else the member the others
report to: the member whose manager is outside the department (or who has none), the one
with most reports among several.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from config.directory import Department, Directory, Person
from config.settings import DirectorySyncSettings


class SyncError(Exception):
    """The source cannot be read, or holds nobody: the directory is left as it is."""


@dataclass(frozen=True)
class Entry:
    """One person as the source gives them; `manager` is a DN (LDAP), an address or a name."""

    key: str  # the DN, or the row number
    person: Person
    manager: str


@dataclass
class Changes:
    added: list[Person] = field(default_factory=list)
    removed: list[Person] = field(default_factory=list)
    changed: list[tuple[Person, dict[str, tuple[str, str]]]] = field(default_factory=list)  # field: (old, new)
    departments_added: list[Department] = field(default_factory=list)
    departments_removed: list[Department] = field(default_factory=list)
    heads_changed: list[tuple[str, str, str]] = field(default_factory=list)  # (department, old, new)

    def __bool__(self) -> bool:
        return any((self.added, self.removed, self.changed, self.departments_added, self.departments_removed,
                    self.heads_changed))

    def lines(self) -> list[str]:
        """What changed, a line each, for a person to read before it is written."""
        out = [f"+ {p.name} <{p.email}> {p.department} {p.title}".rstrip() for p in self.added]
        out += [f"- {p.name} <{p.email}> {p.department}".rstrip() for p in self.removed]
        out += [f"~ {p.name} <{p.email}>: " + "; ".join(f"{k} {old or '—'} → {new or '—'}"
                                                         for k, (old, new) in fields.items())
                for p, fields in self.changed]
        out += [f"+ department {d.name} (head {d.head})" for d in self.departments_added]
        out += [f"- department {d.name}" for d in self.departments_removed]
        out += [f"~ department {name}: head {old or '—'} → {new}" for name, old, new in self.heads_changed]
        return out

    def as_data(self) -> dict:
        """The event's data: who came, went and changed, by address."""
        return {"added": [p.email for p in self.added], "removed": [p.email for p in self.removed],
                "changed": {p.email: {k: list(v) for k, v in fields.items()} for p, fields in self.changed},
                "departments_added": [d.name for d in self.departments_added],
                "departments_removed": [d.name for d in self.departments_removed],
                "heads_changed": [list(h) for h in self.heads_changed]}


# ---------------------------------------------------------------------------------------
# Sources

def ldap_connection(s: DirectorySyncSettings) -> Any:
    """A bound ldap3 connection to [directory_sync] url (ldap3's errors as they are)."""
    import ldap3

    password = os.environ.get("LIUHEN_LDAP_PASSWORD", "")
    if s.password_file:
        password = Path(s.password_file).read_text(encoding="utf-8").strip()
    server = ldap3.Server(s.url, connect_timeout=s.timeout_seconds, get_info=ldap3.NONE)
    connection = ldap3.Connection(server, user=s.bind_dn or None, password=password or None,
                                  receive_timeout=max(1, round(s.timeout_seconds)), raise_exceptions=True)
    if s.start_tls:
        connection.open()
        connection.start_tls()
    connection.bind()
    return connection


def read_ldap(s: DirectorySyncSettings) -> list[Entry]:
    from ldap3.core.exceptions import LDAPException

    wanted = [a for a in (s.name, s.email, s.department, s.title, s.manager, s.name_en, s.lang) if a]
    try:
        connection = ldap_connection(s)
        # Paged (RFC 2696): Active Directory returns at most 1,000 entries a page.
        results = connection.extend.standard.paged_search(s.base_dn, s.filter, attributes=wanted, paged_size=500,
                                                          generator=False)
        connection.unbind()
    except LDAPException as exc:
        raise SyncError(f"LDAP {s.url}: {exc}") from exc
    entries = []
    for result in results:
        if result.get("type") != "searchResEntry":
            continue
        values = {name: _first(value) for name, value in result["attributes"].items()}
        entries.append(_entry(result["dn"], values, s))
    return entries


def read_table(path: Path, s: DirectorySyncSettings) -> list[Entry]:
    """An HR export: a header row naming the columns, a person a row (CSV in UTF-8 — with or
    without BOM — or GB18030, as Excel in China saves it; or the first sheet of an XLSX)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SyncError(f"{path}: {exc.strerror}") from exc
    if path.suffix.lower() in (".xlsx", ".xls", ".ods"):
        import python_calamine

        try:
            workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
            rows = [[_cell(v) for v in row] for row in workbook.get_sheet_by_index(0).to_python()]
        except python_calamine.CalamineError as exc:
            raise SyncError(f"{path}: {exc}") from exc
    else:
        for codec in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(codec)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise SyncError(f"{path}: neither UTF-8 nor GB18030")
        rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise SyncError(f"{path}: empty")
    header = [h.strip() for h in rows[0]]
    missing = [name for name in (s.name, s.email) if name not in header]
    if missing:
        raise SyncError(f"{path}: no column {', '.join(missing)} (the header has {', '.join(header)})")
    entries = []
    for number, row in enumerate(rows[1:], start=2):
        entries.append(_entry(str(number), dict(zip(header, (c.strip() for c in row), strict=False)), s))
    return entries


def _entry(key: str, values: dict[str, str], s: DirectorySyncSettings) -> Entry:
    def get(name: str) -> str:  # an attribute or column not configured ("") is empty
        return values.get(name, "") if name else ""

    lang = get(s.lang).lower()[:2]
    person = Person(name=get(s.name), email=get(s.email).lower(), department=get(s.department),
                    title=get(s.title), name_en=get(s.name_en), lang=lang if lang in ("zh", "en") else "")
    return Entry(key, person, get(s.manager))


def _first(value: object) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "").strip()


def _cell(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value if value is not None else "").strip()


# ---------------------------------------------------------------------------------------
# From entries to a directory

def build_directory(entries: list[Entry], s: DirectorySyncSettings, current: Directory) -> Directory:
    """People with an address, once each (the first entry wins), their managers resolved to
    addresses, and the departments with their heads; English department names kept."""
    people: dict[str, Entry] = {}
    for entry in entries:
        if "@" in entry.person.email and entry.person.name and entry.person.email not in people:
            people[entry.person.email] = entry
    if not people:
        raise SyncError("the source holds nobody with a name and an address; the directory is left as it is")
    by_key = {e.key.lower(): e.person.email for e in people.values()}
    by_name: dict[str, list[str]] = {}
    for e in people.values():
        by_name.setdefault(e.person.name, []).append(e.person.email)

    def manager_of(entry: Entry) -> str:
        """The manager's address: given as one, as a DN (LDAP), or as a name that is one person's."""
        wanted = entry.manager.strip()
        if "@" in wanted:
            return wanted.lower() if wanted.lower() in people else ""
        if wanted.lower() in by_key:
            return by_key[wanted.lower()]
        namesakes = by_name.get(wanted, [])
        return namesakes[0] if len(namesakes) == 1 else ""

    resolved = [replace(e.person, manager=manager_of(e)) for e in people.values()]
    named = dict(h.split("=", 1) for h in s.heads if "=" in h)
    english = {d.name: d.name_en for d in current.departments}
    departments = []
    for name in sorted({p.department for p in resolved if p.department}):
        members = [p for p in resolved if p.department == name]
        head = named.get(name, "").strip().lower() or _head(members)
        departments.append(Department(name=name, head=head, name_en=english.get(name, "")))
    return Directory(resolved, departments)


def _head(members: list[Person]) -> str:
    inside = {p.email for p in members}
    reports = Counter(p.manager for p in members if p.manager in inside)
    tops = [p for p in members if p.manager not in inside] or members
    return max(tops, key=lambda p: (reports[p.email], -members.index(p))).email


def changes_between(old: Directory, new: Directory) -> Changes:
    changes = Changes()
    before = {p.email: p for p in old.people}
    after = {p.email: p for p in new.people}
    changes.added = [p for e, p in after.items() if e not in before]
    changes.removed = [p for e, p in before.items() if e not in after]
    for email, person in after.items():
        if email in before:
            fields = {k: (getattr(before[email], k), getattr(person, k))
                      for k in ("name", "department", "title", "manager", "name_en", "lang")
                      if getattr(before[email], k) != getattr(person, k)}
            if fields:
                changes.changed.append((person, fields))
    old_departments = {d.name: d for d in old.departments}
    new_departments = {d.name: d for d in new.departments}
    changes.departments_added = [d for n, d in new_departments.items() if n not in old_departments]
    changes.departments_removed = [d for n, d in old_departments.items() if n not in new_departments]
    changes.heads_changed = [(n, old_departments[n].head, d.head) for n, d in new_departments.items()
                             if n in old_departments and old_departments[n].head != d.head]
    return changes


def write_directory(path: Path, directory: Directory, header: str) -> None:
    """Replace the directory file whole: written beside it, flushed, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(directory.to_toml(header))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
