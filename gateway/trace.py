"""The trace as people read it: one sentence per event in the reader's language
(陈静 同意需求 · 2026-12-02 21:37), with deliveries folded into the mails they carried.
The sentences are the [event] phrases of mail_templates/phrases.toml."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from gateway.bootstrap import Context
from store.models import Event


class _Blank(dict):
    """Values for a sentence; what an old event does not have reads as blank, not an error."""

    def __missing__(self, key: str) -> str:
        return ""


VERDICTS = ("pass", "fail", "none", "accepted")  # a sender check's results, as [auth] phrases say them


def sentences(ctx: Context, lang: str, events: Iterable[Event], names: dict[str, str]) -> list[tuple[datetime, str]]:
    """(when, sentence) for every event a reader looks for; `names` maps addresses to names."""
    table = ctx.renderer.phrases[ctx.renderer.language(lang)]["event"]
    out = []
    for event in events:
        data = event.data or {}
        key = f"feedback_{data.get('response', '')}" if event.kind == "feedback" else event.kind
        template = table.get(key)
        if template == "":
            continue  # folded into another event
        values = _Blank({k: (v if isinstance(v, str) else str(v)) for k, v in data.items()})
        values["actor"] = names.get(event.actor, event.actor)
        for person in ("to", "signer"):
            if isinstance(data.get(person), str):
                values[person] = names.get(data[person], data[person])
        for when in ("starts", "new"):
            if isinstance(data.get(when), str):
                values[when] = _local(ctx, data[when])
        if event.kind == "signed":
            verdict = str((data.get("authentication") or {}).get("result", "none"))
            values["auth"] = ctx.renderer.phrase(lang, f"auth.{verdict}") if verdict in VERDICTS else verdict
        sentence = template.format_map(values) if template else event.kind
        out.append((event.at, " ".join(sentence.split()) if len(sentence) < 400 else sentence[:400] + "…"))
    return out


def _local(ctx: Context, iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso
