"""Who may see which records — one rule for mail (检索, 状态, 待办) and the web console.

A person sees the records they take part in; a department head also every record with a
participant (the initiator included) in a department they head; an admin sees all. External
clients never sign in: they read their own record through a client link (store/console.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from peewee import Expression

from store.models import Participant, Record


@dataclass(frozen=True)
class Reader:
    """Someone reading records: their address, the departments they head, whether admin."""

    email: str
    name: str = ""
    heads: tuple[str, ...] = ()  # names of the departments they head
    admin: bool = False
    external: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", self.email.lower())


def visible_records(reader: Reader) -> Expression | None:
    """A condition on Record for what `reader` may see; None: everything (an admin)."""
    if reader.admin:
        return None
    theirs = Participant.select(Participant.record).where(Participant.email == reader.email)
    condition = Record.id.in_(theirs)
    if reader.heads and not reader.external:
        headed = Participant.select(Participant.record).where(Participant.department.in_(list(reader.heads)))
        condition = condition | Record.id.in_(headed)
    return condition


def visible_record_ids(reader: Reader) -> set[int] | None:
    """The ids of what `reader` may see; None: everything (an admin). Read as plain ids: a
    head sees tens of thousands, and a model object each cost most of a search's time."""
    if reader.admin:
        return None
    db = Participant._meta.database
    param = db.param
    sql = f'SELECT DISTINCT "record_id" FROM "participant" WHERE "email" = {param}'
    params: list[str] = [reader.email]
    if reader.heads and not reader.external:
        sql += f' OR "department" IN ({", ".join([param] * len(reader.heads))})'
        params += list(reader.heads)
    return {row[0] for row in db.execute_sql(sql, params).fetchall()}
