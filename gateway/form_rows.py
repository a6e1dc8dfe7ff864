"""A record's form as people read it in mails: every filled field, labelled in the mail's
language, with the initiator and the priority spelled out.

The acknowledgement, each recipient's request and the head's copy all show the form. They
are rendered at delivery (gateway/outbox.py), so instead of each queued mail storing its own
copy of the form — half of everything a request wrote to the database — the rows are built
from the record then. A record's fields do not change after it is created.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from config.directory import Directory
from config.forms import FormDef
from mail_templates import Renderer
from store.records import form_sources


def form_rows(renderer: Renderer, form: FormDef, values: dict[str, str], priority: str, initiator: str,
              lang: str) -> list[tuple[str, str]]:
    """(label, value) for every filled field; `initiator` as `产品部/陈静 <chen.jing@…>`."""
    rows = []
    for f in form.fields:
        if f.type == "person":
            rows.append((f.label_for(lang), initiator))
        elif f.type == "priority":
            rows.append((f.label_for(lang), renderer.phrase(lang, f"priority.{priority}")))
        elif values.get(f.key):
            rows.append((f.label_for(lang), unicodedata.normalize("NFC", values[f.key])))
    return rows


def records_rows(renderer: Renderer, forms: dict[str, FormDef], directory: Directory,
                 wanted: Iterable[tuple[int, str]]) -> dict[tuple[int, str], list[tuple[str, str]]]:
    """The rows of each (record, language) wanted, the records read in one query."""
    wanted = set(wanted)
    sources = form_sources(record_id for record_id, _ in wanted)
    rows = {}
    for record_id, lang in wanted:
        if (source := sources.get(record_id)) is None:
            continue
        department = (f"{directory.department_name(source.initiator_department, lang)}/"
                      if source.initiator_department else "")
        rows[(record_id, lang)] = form_rows(renderer, forms[source.form], source.fields, source.priority,
                                            f"{department}{source.initiator_name} <{source.initiator_email}>", lang)
    return rows
