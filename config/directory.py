"""The organisation directory: people, departments and their heads, and name resolution.

The seed demands that owners be unique and explicit, so a name resolves only when it names
exactly one person; an e-mail address always resolves (to an external person when it is not
in the directory), and a department alone resolves to its head.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

# The look-behind starts a match only where a run of address characters starts: without it a
# long run with no "@" was scanned again from each of its characters (quadratic).
EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_OPTIONAL_PERSON_KEYS = ("department", "title", "name_en", "lang", "manager")
MAX_PERSON_TEXT = 320  # characters: a name, department and address fit; more is no reference to one person


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    department: str = ""
    title: str = ""
    external: bool = False
    name_en: str = ""  # how English mails name them (Wang Qiang)
    lang: str = ""  # "zh" | "en": the language of the mails they get; "" — the record's
    manager: str = ""  # e-mail of the person they report to (from LDAP or the HR export)

    def name_for(self, lang: str) -> str:
        return self.name_en if lang == "en" and self.name_en else self.name


@dataclass(frozen=True)
class Department:
    name: str
    head: str  # e-mail of the head
    name_en: str = ""

    def name_for(self, lang: str) -> str:
        return self.name_en if lang == "en" and self.name_en else self.name


@dataclass(frozen=True)
class Resolution:
    """A person, or why none could be chosen ("unknown" / "ambiguous" with the candidates)."""

    person: Person | None
    problem: str = ""
    candidates: tuple[Person, ...] = ()


class Directory:
    def __init__(self, people: list[Person], departments: list[Department]):
        self.people = people
        self.departments = departments
        self._by_email = {p.email.lower(): p for p in people}
        self._by_name: dict[str, list[Person]] = {}
        for p in people:
            self._by_name.setdefault(_norm(p.name), []).append(p)
        self._departments = {}
        for d in departments:
            self._departments[_norm(d.name)] = d
            if d.name_en:
                self._departments[_norm(d.name_en)] = d

    @classmethod
    def load(cls, path: str | Path) -> Directory:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        people = [Person(name=p["name"], email=p["email"].lower(), department=p.get("department", ""),
                         title=p.get("title", ""), name_en=p.get("name_en", ""), lang=p.get("lang", ""),
                         manager=p.get("manager", "").lower()) for p in data.get("people", [])]
        departments = [Department(name=d["name"], head=d["head"].lower(), name_en=d.get("name_en", ""))
                       for d in data.get("departments", [])]
        return cls(people, departments)

    def to_toml(self, header: str = "") -> str:
        """The directory as the TOML file `load` reads (what `liuhen directory sync` writes)."""
        def value(text: str) -> str:
            return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string

        lines = [f"# {line}".rstrip() for line in header.splitlines()]
        for d in self.departments:
            lines += ["", "[[departments]]", f"name = {value(d.name)}"]
            lines += [f"name_en = {value(d.name_en)}"] if d.name_en else []
            lines.append(f"head = {value(d.head)}")
        for p in self.people:
            lines += ["", "[[people]]", f"name = {value(p.name)}", f"email = {value(p.email)}"]
            lines += [f"{key} = {value(getattr(p, key))}" for key in _OPTIONAL_PERSON_KEYS if getattr(p, key)]
        return "\n".join(lines) + "\n"

    def by_email(self, email: str, name: str = "") -> Person:
        """The directory entry for an address, or an external person with that address."""
        return self._by_email.get(email.lower()) or Person(name=name or email.split("@")[0],
                                                             email=email.lower(), external=True)

    def department(self, name: str) -> Department | None:
        return self._departments.get(_norm(name))

    def department_name(self, name: str, lang: str) -> str:
        """A department as a mail in `lang` names it (市场部 is Marketing in English)."""
        department = self.department(name) if name else None
        return department.name_for(lang) if department else name

    def head_of(self, person: Person) -> Person | None:
        dept = self.department(person.department) if person.department else None
        if dept is None or dept.head == person.email:
            return None
        return self.by_email(dept.head)

    def resolve(self, text: str) -> Resolution:
        """Resolve what a person wrote for someone: an address, a name, `部门/姓名`, `姓名（部门）`."""
        text = text.strip()
        if len(text) > MAX_PERSON_TEXT:
            return Resolution(None, "unknown")
        m = EMAIL_RE.search(text)
        if m:
            name = text[: m.start()].strip(" <\"'")
            return Resolution(self.by_email(m.group(0), name))
        dept_hint, name = _split_department(text)
        if not name:
            return Resolution(None, "unknown")
        candidates = self._by_name.get(_norm(name), [])
        if dept_hint:
            dept = self.department(dept_hint)
            candidates = [p for p in candidates if dept and p.department == dept.name]
        if len(candidates) == 1:
            return Resolution(candidates[0])
        if len(candidates) > 1:
            return Resolution(None, "ambiguous", tuple(candidates))
        dept = self.department(name)
        if dept is not None:
            return Resolution(self.by_email(dept.head))
        return Resolution(None, "unknown")


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().casefold()


def _split_department(text: str) -> tuple[str, str]:
    """`研发部/王强` → ("研发部", "王强"); `王强（研发部）` → ("研发部", "王强"); `王强` → ("", "王强")."""
    m = re.fullmatch(r"(.+?)\s*[（(]\s*(.+?)\s*[）)]", text)
    if m:
        return m.group(2), m.group(1)
    parts = re.split(r"\s*[/／]\s*", text, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", text
