"""liuhen doctor: each finding with what to try; it sends no mail and changes nothing."""

from __future__ import annotations

import argparse
import datetime
from dataclasses import replace

import pytest
from conftest import free_port

from gateway import doctor
from gateway.cli import cmd_doctor
from gateway.serve import GatewayThread


@pytest.fixture
def zone(monkeypatch):
    records = {("liuhen.test", "MX"): ["10 mx.liuhen.test."], ("liuhen.test", "TXT"): ["v=spf1 mx -all"],
               ("_dmarc.liuhen.test", "TXT"): ["v=DMARC1; p=quarantine"]}
    monkeypatch.setattr(doctor, "lookup", lambda name, rtype: records.get((name, rtype), []))
    return records


def test_a_sound_installation_passes_and_says_what_it_checked(ctx, zone, capsys):
    gateway = GatewayThread(ctx, transport=None).start()
    try:
        assert cmd_doctor(argparse.Namespace(), ctx.settings) == 0
    finally:
        gateway.stop()
    out = capsys.readouterr().out
    assert "ok   database: answers; schema version" in out
    assert f"ok   SMTP intake: 127.0.0.1:{ctx.settings.smtp.port} answers and refuses to relay (550)" in out
    assert "ok   SPF: v=spf1 mx -all" in out and "ok   DMARC" in out and "ok   MX: 10 mx.liuhen.test." in out
    assert "--   DKIM: outbound mail is not signed" in out and "liuhen dkim keygen" in out
    assert "test-secret" not in out  # secrets are not printed
    assert "--   directory: the sample directory" in out and "--   directory sync: not configured" in out
    assert "LibreOffice:" in out


def test_what_is_wrong_is_said_with_what_to_try(ctx, zone, capsys, monkeypatch):
    import chinese_calendar

    broken = replace(ctx.settings, database=replace(ctx.settings.database, url="postgresql://nobody@127.0.0.1:1/x"),
                     delivery=replace(ctx.settings.delivery, mode="smtp", host="127.0.0.1", port=free_port(),
                                      password="hunter2"),
                     reminders=replace(ctx.settings.reminders, business_hours=True),
                     directory_sync=replace(ctx.settings.directory_sync, source="ldap",
                                            url=f"ldap://127.0.0.1:{free_port()}", timeout_seconds=2.0))
    monkeypatch.setattr(chinese_calendar, "holidays", {datetime.date(2020, 1, 1): "New Year"})
    zone.clear()
    assert cmd_doctor(argparse.Namespace(), broken) == 70
    out = capsys.readouterr().out
    assert "FAIL database:" in out and "try: is the database server running" in out
    assert "FAIL smarthost:" in out and "try: check [delivery] host and port" in out
    assert "FAIL SPF: no SPF record for liuhen.test" in out and 'try: publish TXT "v=spf1' in out
    assert "FAIL holiday calendar: chinesecalendar knows the holidays up to 2020" in out
    assert "--   SMTP intake: nothing answers" in out  # not running is not a failure
    assert "hunter2" not in out
    assert "FAIL directory sync: LDAP ldap://127.0.0.1:" in out and "try: check [directory_sync] url" in out
