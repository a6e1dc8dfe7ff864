"""Template field extraction: the body of a request mail → {field key: text as written}.

People fill forms in two ways: `标签：值` lines typed into a mail (full- or half-width colon,
labels with or without `*` / `（必填）`, values running over several lines), or a table pasted
from Word/Outlook. Only labels the form knows start a field, so a value line that itself
contains a colon (`研发部/王强：硬件方案`) stays part of its field. Pure functions.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from config.forms import FormDef

# `模板：项目协作` / `Template: project` chooses the form at the generic intake address.
TEMPLATE_LABELS = {"模板", "模版", "template", "form", "表单", "沟通模板"}

# Where the request ends: a signature delimiter (RFC 3676 §4.3) or quoted/forwarded history.
_END_OF_REQUEST = re.compile(
    r"^(-- ?$|_{5,}\s*$|-{3,}\s*(original message|邮件原件|原始邮件|forwarded message|转发的邮件)"
    r"|-{5,} ?原始邮件|发自我的|sent from my )",
    re.IGNORECASE,
)
_REQUIRED_MARKS = re.compile(r"[*＊]|[（(]\s*(必填|选填|可选|required|optional)\s*[)）]", re.IGNORECASE)
_NUMBERING = re.compile(r"^\s*(\d{1,2}[.、)]|[一二三四五六七八九十]+[、.]|[-•·●▪]\s)\s*")
_MULTILINE_TYPES = {"text", "people", "milestones"}


@lru_cache(maxsize=4096)
def normalize_label(label: str) -> str:
    """`＊沟通主题（必填）` → `沟通主题`; `Background & Goal:` → `background & goal`.
    (Cached: the same few labels come in every mail.)"""
    label = unicodedata.normalize("NFKC", label)
    label = _REQUIRED_MARKS.sub("", label)
    label = _NUMBERING.sub("", label)
    label = label.strip(" \t:：【】[]<>")
    return re.sub(r"\s+", " ", label).casefold()


@lru_cache(maxsize=64)
def label_index(form: FormDef) -> dict[str, str]:
    """Normalised label → field key (cached: forms are immutable and labels many)."""
    index: dict[str, str] = {}
    for f in form.fields:
        for label in (f.label, f.label_en, *f.aliases):
            index[normalize_label(label)] = f.key
    return index


def extract_fields(text: str, tables: list[list[list[str]]], form: FormDef) -> dict[str, str]:
    """Field key → value as written (stripped, lines joined by "\n"): from pasted tables first
    (their structure is reliable), then from text lines."""
    index = label_index(form)
    values = _from_tables(tables, index)
    from_text = _from_lines(request_lines(text), index, {f.key: f.type for f in form.fields})
    for key, value in from_text.items():
        values.setdefault(key, value)
    return {k: v for k, v in values.items() if v}


def labelled_values(text: str, labels: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """`阶段：…` / `Next step: …` lines of a reply → {key: value}, for the keys in `labels`
    (each with the labels that may stand for it). Values may run over several lines."""
    index = {normalize_label(label): key for key, names in labels.items() for label in names}
    values = _from_lines(request_lines(text), index, {key: "text" for key in labels})
    return {k: v for k, v in values.items() if v}


def request_lines(text: str) -> list[str]:
    """The lines of the request itself, stopping at a signature or quoted history."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _END_OF_REQUEST.match(line.strip()) or line.startswith(">"):
            break
        lines.append(line.rstrip())
    return lines


# A label starts with a non-space, so a long run of spaces cannot be split between
# overlapping quantifiers (that made a line of spaces cost seconds).
_LABEL_LINE = re.compile(r"([^:：\t\s][^:：\t]{0,39}?)[ \u3000]*(?:[:：]|\t+)\s*(.*)", re.DOTALL)


def _split_label(line: str) -> tuple[str, str] | None:
    """`沟通主题：值` / `Subject: value` / `沟通主题<TAB>值` → (label, value), else None."""
    m = _LABEL_LINE.match(line.lstrip())
    if m:
        return m.group(1), m.group(2).rstrip()
    return None


def _from_lines(lines: list[str], index: dict[str, str], types: dict[str, str]) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        split = _split_label(line)
        key = index.get(normalize_label(split[0])) if split else None
        if key is None and len(line.strip()) <= 40 and normalize_label(line) in index:
            key, split = index[normalize_label(line)], (line, "")  # a label alone on its line
        if key is not None and split is not None:
            current = key if key not in values else None  # a repeated label: keep the first
            if current:
                values[current] = [split[1].strip()] if split[1].strip() else []
            continue
        if current is None:
            continue
        if not line.strip():
            # A blank line ends a typed value; free text may run over paragraphs.
            if values[current] and types.get(current) != "text":
                current = None
            elif values[current]:
                values[current].append("")
            continue
        if types.get(current) in _MULTILINE_TYPES:
            values[current].append(line.strip())
        elif not values[current]:
            values[current] = [line.strip()]
    return {k: "\n".join(v).strip() for k, v in values.items()}


def _from_tables(tables: list[list[list[str]]], index: dict[str, str]) -> dict[str, str]:
    """Label/value cell pairs: rows of 2 cells, or 4 cells (two pairs side by side in Word)."""
    values: dict[str, str] = {}
    for table in tables:
        for row in table:
            cells = [c.strip() for c in row]
            for i in range(0, len(cells) - 1, 2):
                key = index.get(normalize_label(cells[i]))
                if key and key not in values:
                    values[key] = cells[i + 1]
    return values


def find_template_hint(text: str, tables: list[list[list[str]]]) -> str:
    """What a `模板:` / `Template:` line or table row says, "" if none."""
    for line in text.splitlines():
        split = _split_label(line)
        if split and normalize_label(split[0]) in TEMPLATE_LABELS:
            return split[1].strip()
    for table in tables:
        for row in table:
            if len(row) >= 2 and normalize_label(row[0]) in TEMPLATE_LABELS:
                return row[1].strip()
    return ""
