"""IMAP intake against a real Dovecot: a private instance from a temporary config on a loopback
port (Debian's dovecot-imapd; CI installs it and these tests must run there)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from imapclient import IMAPClient

from conftest import DOMAIN, MEDIUM_BODY, free_port, make_mail, wait_idle
from gateway.cli import cmd_imap_check
from gateway.imap import ImapError, Poller, check, fetch_new, connect
from gateway.serve import GatewayThread
from store.models import InboundMessage, Record

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_UID = 65534  # nobody: Dovecot refuses to deliver mail as root


class Dovecot:
    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        for sub in ("run", "state", "mail"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        os.chown(folder / "mail", MAIL_UID, MAIL_UID)
        (folder / "users").write_text("intake:{PLAIN}s3cret\n")
        (folder / "dovecot.conf").write_text(f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{folder}/mail/%u
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/users
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={folder}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        self.process: subprocess.Popen | None = None

    def start(self) -> "Dovecot":
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.folder / "dovecot.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=2).logout()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("Dovecot did not start: " + (self.folder / "dovecot.log").read_text(errors="replace"))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False)
        client.login("intake", "s3cret")
        client.append(folder, raw)
        client.logout()

    def folder_counts(self) -> dict[str, int]:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False)
        client.login("intake", "s3cret")
        counts = {f: client.folder_status(f, [b"MESSAGES"])[b"MESSAGES"] for _, _, f in client.list_folders()}
        client.logout()
        return counts


@pytest.fixture
def dovecot():
    if not Path(DOVECOT).exists():
        if os.environ.get("CI"):
            pytest.fail("Dovecot is not installed, and CI must run the IMAP tests (.ci/run installs dovecot-imapd)")
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd); CI runs these tests")
    # Not pytest's tmp_path: its folders are 0700, and Dovecot's unprivileged auth and mail
    # processes must reach the user list and the mail folder.
    folder = Path(tempfile.mkdtemp(prefix="liuhen-dovecot-"))
    folder.chmod(0o755)
    server = Dovecot(folder).start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def imap_ctx(ctx, dovecot):
    box = dict(address=f"project@{DOMAIN}", host="127.0.0.1", port=dovecot.port, security="none", user="intake",
               password="s3cret", processed_folder="liuhen-done", poll_seconds=1)
    from config.settings import ImapSettings

    return replace(ctx, settings=replace(ctx.settings, imap=(ImapSettings(**box),)))


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
