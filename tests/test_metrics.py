"""GET /metrics on serve's probe listener: Prometheus text with SMTP answers by code, spool
fsync time, and what the database knows — inbound by state, processing time, the outbox,
deliveries, reminders, overdue items."""

from __future__ import annotations

import smtplib
import urllib.request
from dataclasses import replace

from conftest import DOMAIN, PROJECT_BODY, free_port, make_mail, sent_mails, smtp_send, wait_processed
from prometheus_client.parser import text_string_to_metric_families

from config.settings import ProbeSettings
from gateway.scheduler import sweep
from gateway.serve import GatewayThread


def _metrics(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_what_the_gateway_did_and_what_waits(ctx, clock):
    port = free_port()
    ctx = replace(ctx, settings=replace(ctx.settings, probe=ProbeSettings(port=port)))
    gateway = GatewayThread(ctx, transport=None).start()
    try:
        before = _metrics(port).get(("liuhen_smtp_answers_total", (("code", "250"),)), 0)
        wait_processed(smtp_send(ctx, make_mail(PROJECT_BODY), f"project@{DOMAIN}", "chen.jing@liuhen.localhost"))
        with smtplib.SMTP("127.0.0.1", ctx.settings.smtp.port, timeout=10) as client:
            client.ehlo()
            client.mail("chen.jing@liuhen.localhost")
            assert client.rcpt("someone@elsewhere.example")[0] == 550  # not a relay
        m = _metrics(port)
        assert m[("liuhen_smtp_answers_total", (("code", "550"),))] >= 1
        assert m[("liuhen_smtp_answers_total", (("code", "250"),))] >= before + 3  # MAIL, RCPT, DATA
        assert m[("liuhen_spool_fsync_seconds_count", ())] >= 1
        assert m[("liuhen_inbound_mails", (("state", "processed"),))] == 1
        assert m[("liuhen_outbox_mails", (("status", "queued"),))] == 4
        assert m[("liuhen_outbox_oldest_queued_seconds", ())] >= 0
        sent_mails(ctx)
        clock.advance(hours=3)  # 高: the answers were due in two hours
        sweep(ctx)
        m = _metrics(port)
        assert m[("liuhen_deliveries_total", (("result", "sent"),))] == 4
        assert m[("liuhen_reminders_sent_total", (("kind", "reminder"),))] >= 1
        assert m[("liuhen_overdue_items", (("kind", "answer"),))] == 2  # 王强 and 赵磊
        assert m[("liuhen_processing_seconds", (("quantile", "0.5"),))] >= 0
    finally:
        gateway.stop()
