"""Handlers: one module per intent. Each is a plain function run inside the pipeline's
transaction that writes its record changes, events and outbox mails, and returns an Outcome."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    state: str  # processed | rejected | ignored
    reason: str = ""
    record_id: int | None = None
    events: list[dict] = field(default_factory=list)  # trace rows to add with the outcome
