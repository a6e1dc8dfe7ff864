"""A record's form as people read it in mails: every filled field, labelled in the mail's
language, with the initiator and the priority spelled out.

The acknowledgement, each recipient's request and the head's copy all show the form. They
are rendered at delivery (gateway/outbox.py), so instead of each queued mail storing its own
copy of the form — half of everything a request wrote to the database — the rows are built
from the record then. A record's fields do not change after it is created.
"""

from __future__ import annotations

import unicodedata

from config.directory import Directory
from config.forms import FormDef
from mail_templates import Renderer
from store.models import Participant, Record


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


def record_rows(renderer: Renderer, forms: dict[str, FormDef], directory: Directory, record_id: int,
                lang: str) -> list[tuple[str, str]]:
    record = Record.get_by_id(record_id)
    initiator = Participant.get_or_none((Participant.record == record_id) & (Participant.role == "initiator"))
    department = (f"{directory.department_name(initiator.department, lang)}/"
                  if initiator is not None and initiator.department else "")
    return form_rows(renderer, forms[record.form], record.fields, record.priority,
                     f"{department}{record.initiator_name} <{record.initiator_email}>", lang)
