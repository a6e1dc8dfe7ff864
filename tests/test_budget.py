"""One mail's processing has a time and a memory budget (issue 9: a mail of nested HTML took
22 s and 305 MB, and a valid request behind it waited 27 s). The parsers are linear now; the
budget is the backstop for what no parser foresaw, so these tests make processing slow or
greedy on purpose."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from conftest import DOMAIN, PROJECT_BODY, make_mail

import gateway.pipeline as pipeline
from gateway.intake import store_raw
from gateway.pipeline import process_batch
from store.models import InboundMessage, Record

REPO = Path(__file__).resolve().parent.parent


def _store(ctx, subject: str, extra_headers: dict[str, str] | None = None) -> int:
    return store_raw(ctx.db, make_mail(PROJECT_BODY, subject=subject, extra_headers=extra_headers), source="ingest",
                     envelope_from="chen.jing@liuhen.localhost", envelope_to=[f"project@{DOMAIN}"],
                     now=ctx.clock.now()).inbound_id


def test_a_mail_over_its_time_budget_is_stopped_kept_and_does_not_hold_up_the_rest(ctx, monkeypatch):
    real = pipeline.parse_message

    def slow_for_one(raw: bytes):
        if b"X-Test: slow" in raw:
            time.sleep(60)  # a parser stuck on this mail
        return real(raw)

    monkeypatch.setattr(pipeline, "parse_message", slow_for_one)
    ctx = replace(ctx, settings=replace(ctx.settings, processing=replace(ctx.settings.processing, mail_seconds=0.5)))
    stuck = _store(ctx, "智能手表项目-软件方案评审", {"X-Test": "slow"})
    fine = _store(ctx, "智能手表项目-硬件方案评审")
    states = process_batch(ctx, [stuck, fine])  # one transaction, as the processor batches them
    assert states == {stuck: "error", fine: "processed"}  # without the budget: both processed, a minute later
    kept = InboundMessage.get_by_id(stuck)
    assert "took longer than 0.5 s" in kept.reason and "attempt 1 of" in kept.reason
    assert kept.next_attempt_at is not None and bytes(kept.raw)  # kept, tried again later
    assert Record.select().count() == 1


CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from config.settings import load_settings
    from gateway.bootstrap import build_context
    from gateway.budget import limit_memory
    from gateway.intake import store_raw
    import gateway.pipeline as pipeline

    ctx = build_context(load_settings(Path(sys.argv[2]), env={}))
    real = pipeline.parse_message

    def greedy_for_one(raw):
        if b"X-Test: greedy" in raw:
            hoard = bytearray(800 << 20)  # what a parser gone quadratic might ask for
        return real(raw)

    pipeline.parse_message = greedy_for_one
    ids = [store_raw(ctx.db, Path(p).read_bytes(), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                     envelope_to=["project@DOMAIN"], now=ctx.clock.now()).inbound_id for p in sys.argv[3:]]
    limit_memory(400)
    states = pipeline.process_batch(ctx, ids)
    reasons = {i: r for i, r in ctx.db.execute_sql("SELECT id, reason FROM inboundmessage").fetchall()}
    print(json.dumps([[states[i], reasons[i]] for i in ids]))
""").replace("DOMAIN", DOMAIN)


def test_a_mail_needing_more_memory_than_the_processor_may_use_fails_alone(tmp_path):
    # In a process of its own: the limit is on the whole process, as serve's processor has it.
    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndomain = "{DOMAIN}"\ndata_dir = "{tmp_path}"\nsecret = "t"\n'
                      f'[database]\nurl = "sqlite:///{tmp_path / "liuhen.db"}"\n', encoding="utf-8")
    greedy, fine = tmp_path / "greedy.eml", tmp_path / "fine.eml"
    greedy.write_bytes(make_mail(PROJECT_BODY, extra_headers={"X-Test": "greedy"}))
    fine.write_bytes(make_mail(PROJECT_BODY, subject="智能手表项目-软件方案评审"))
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(config), str(greedy), str(fine)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (greedy_state, greedy_reason), (fine_state, _) = json.loads(done.stdout)
    assert (greedy_state, fine_state) == ("error", "processed")
    assert "more memory than the processor may use" in greedy_reason
