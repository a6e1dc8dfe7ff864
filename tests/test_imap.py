"""IMAP intake against a real Dovecot: a private instance from a temporary config on a loopback
port (Debian's dovecot-imapd; CI installs it and these tests must run there)."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import pytest
from conftest import DOMAIN, MEDIUM_BODY, make_mail, wait_idle

from gateway.cli import cmd_imap_check
from gateway.imap import ImapError, Poller, check, connect, fetch_new
from gateway.serve import GatewayThread
from store.models import InboundMessage, Record


def test_appended_messages_are_stored_moved_and_processed(imap_ctx, dovecot):
    dovecot.append(make_mail(MEDIUM_BODY))
    dovecot.append(make_mail(MEDIUM_BODY.replace("硬件方案评审", "软件方案评审"), subject="智能手表项目-软件方案评审"))
    box = imap_ctx.settings.imap[0]
    client = connect(box)
    assert fetch_new(imap_ctx, box, client) == 2
    assert fetch_new(imap_ctx, box, client) == 0  # nothing twice
    client.logout()
    assert dovecot.folder_counts() == {"INBOX": 0, "liuhen-done": 2}
    rows = list(InboundMessage.select())
    assert {r.source for r in rows} == {"imap"} and rows[0].envelope_to == [f"project@{DOMAIN}"]
    gateway = GatewayThread(imap_ctx, transport=None).start()  # the processor takes them from the store
    try:
        wait_idle(imap_ctx)
    finally:
        gateway.stop()
    assert Record.select().count() == 2


def test_idle_picks_up_a_new_message_within_seconds(imap_ctx, dovecot):
    gateway = GatewayThread(imap_ctx, transport=None).start()
    poller = Poller(imap_ctx, imap_ctx.settings.imap[0], lambda: None).start()
    try:
        time.sleep(1)  # connected and idling
        dovecot.append(make_mail(MEDIUM_BODY))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and InboundMessage.select().count() == 0:
            time.sleep(0.1)
        assert InboundMessage.select().count() == 1
    finally:
        poller.stop()
        gateway.stop()


def test_flagging_instead_of_moving_and_a_restart_neither_loses_nor_repeats(imap_ctx, dovecot):
    box = replace(imap_ctx.settings.imap[0], processed_folder="")
    dovecot.append(make_mail(MEDIUM_BODY))
    client = connect(box)
    assert fetch_new(imap_ctx, box, client) == 1
    client.logout()
    dovecot.append(make_mail(MEDIUM_BODY.replace("硬件方案评审", "结构评审"), subject="智能手表项目-结构评审"))
    client = connect(box)  # "restart": a new connection, the state is in the database
    assert fetch_new(imap_ctx, box, client) == 1
    client.logout()
    assert InboundMessage.select().count() == 2
    assert dovecot.folder_counts()["INBOX"] == 2  # flagged, left in place


def test_the_server_going_away_and_coming_back(imap_ctx, dovecot):
    poller = Poller(imap_ctx, imap_ctx.settings.imap[0], lambda: None).start()
    try:
        time.sleep(1)
        dovecot.stop()
        time.sleep(2)  # the poller notices and backs off
        dovecot.start()
        dovecot.append(make_mail(MEDIUM_BODY))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and InboundMessage.select().count() == 0:
            time.sleep(0.2)
        assert InboundMessage.select().count() == 1
    finally:
        poller.stop()


def test_a_wrong_password_is_named_clearly(imap_ctx, dovecot, capsys):
    wrong = replace(imap_ctx.settings.imap[0], password="nope")
    with pytest.raises(ImapError, match="login: intake was refused"):
        check(wrong)
    ok = check(imap_ctx.settings.imap[0])
    assert "IDLE" in ok[-1]
    bad_ctx = replace(imap_ctx, settings=replace(imap_ctx.settings, imap=(wrong,)))
    assert cmd_imap_check(argparse.Namespace(), bad_ctx) == 78
    assert "FAILED at login" in capsys.readouterr().out


def test_an_unknown_host_is_named_clearly(imap_ctx):
    box = replace(imap_ctx.settings.imap[0], host="imap.does-not-exist.invalid")
    with pytest.raises(ImapError, match="DNS"):
        check(box)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_and_starttls_with_certificate_verification(imap_ctx, dovecot, security):
    box = replace(imap_ctx.settings.imap[0], security=security, ca_file=str(dovecot.cert),
                  port=dovecot.tls_port if security == "ssl" else dovecot.port)
    assert check(box)[0].startswith("DNS, connection, TLS, login as intake: ok")
    with pytest.raises(ImapError, match="TLS"):
        check(replace(box, ca_file=""))  # a certificate nobody vouches for is refused
