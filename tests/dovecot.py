"""A private Dovecot IMAP server for tests and benchmarks: started from a temporary config on
a loopback port, no system service needed (Debian's dovecot-imapd)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import free_port
from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_UID = 65534  # nobody: Dovecot refuses to deliver mail as root


class Dovecot:
    def __init__(self, folder: Path):
        self.folder, self.port, self.tls_port = folder, free_port(), free_port()
        # A certificate for 127.0.0.1 so IMAPS and STARTTLS are tested with verification on.
        self.cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.cert)],
                       check=True, capture_output=True)
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
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{folder}/key.pem
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
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""")
        self.process: subprocess.Popen | None = None

    def start(self) -> Dovecot:
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
