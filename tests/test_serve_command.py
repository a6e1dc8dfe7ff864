"""`liuhen serve` as people run it: a separate process, a real SMTP client, SIGTERM to stop."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import PROJECT_BODY, crlf, free_port, make_mail

ROOT = Path(__file__).resolve().parent.parent


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("liuhen serve did not open its port")


def _serve_argv(tmp_path: Path, port: int, *options: str, web_port: int = 0, web: bool = True) -> list[str]:
    """`liuhen serve` on a config of its own (data under tmp_path/var, SMTP on `port`, the
    web console on `web_port`, or on a free port, unless not `web`)."""
    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndomain = "liuhen.test"\ndata_dir = "var"\n[smtp]\nport = {port}\n'
                      f'[web]\nenabled = {"true" if web else "false"}\nport = {web_port or free_port()}\n',
                      encoding="utf-8")
    return [sys.executable, "-m", "gateway.cli", "--config", str(config), "serve", *options]


def _get(port: int, path: str, timeout: float = 20.0) -> str:
    """GET a page of the console, waiting for it to listen."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                return answer.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}


def _request_due_ahead(body: str = PROJECT_BODY) -> bytes:
    """The project request with dates a month from now: these tests run on the real clock."""
    soon = datetime.now() + timedelta(days=30)
    body = body.replace("2026-12-20 18:00", soon.strftime("%Y-%m-%d 18:00")) \
        .replace("2026-12-10 14:00", (soon - timedelta(days=5)).strftime("%Y-%m-%d 14:00")) \
        .replace("2026-12-15 18:00", (soon - timedelta(days=2)).strftime("%Y-%m-%d 18:00"))
    return crlf(make_mail(body))


def test_serve_accepts_processes_delivers_and_stops_cleanly(tmp_path):
    port, web_port = free_port(), free_port()
    server = subprocess.Popen(_serve_argv(tmp_path, port, web_port=web_port), cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_port(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail("chen.jing@liuhen.localhost", ["project@liuhen.test"], _request_due_ahead())
        assert refused == {}
        maildir = tmp_path / "var" / "outbox-maildir" / "new"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(list(maildir.glob("*")) if maildir.exists() else []) < 4:
            time.sleep(0.1)
        assert len(list(maildir.glob("*"))) == 4  # ack, two requests, the head's copy
        # The web console beside it, in a process of its own (make run shows both).
        page = _get(web_port, "/signin")
        assert "登录留痕控制台" in page or "Sign in" in page
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert b"accepting mail for @liuhen.test" in out and f"web console http://127.0.0.1:{web_port}".encode() in out
    db = sqlite3.connect(tmp_path / "var" / "liuhen.db")
    assert db.execute("SELECT state FROM inboundmessage").fetchall() == [("processed",)]
    assert db.execute("SELECT ref FROM record").fetchall()[0][0].startswith("PRJ-")


def test_swaks_a_client_that_is_not_python(tmp_path):
    """An end-to-end send from swaks (Debian package), so intake is not only tested with smtplib."""
    import shutil

    if not shutil.which("swaks"):
        if os.environ.get("CI"):
            pytest.fail("swaks is not installed, and CI must run this test (.ci/run installs it)")
        pytest.skip("swaks is not installed (apt-get install swaks)")
    port = free_port()
    server = subprocess.Popen(_serve_argv(tmp_path, port, "--no-delivery"), cwd=ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port)
        message = tmp_path / "request.eml"
        message.write_bytes(_request_due_ahead(PROJECT_BODY.replace("优先级：高", "优先级：中")))
        sent = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--from", "chen.jing@liuhen.localhost",
                               "--to", "project@liuhen.test", "--data", f"@{message}"],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "250 2.0.0 OK: queued as" in sent.stdout
        refused = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--from", "x@example.net",
                                  "--to", "victim@example.org", "--data", f"@{message}"],
                                 capture_output=True, text=True, timeout=60)
        assert "550 5.7.1" in refused.stdout
        db_path = tmp_path / "var" / "liuhen.db"
        deadline = time.monotonic() + 20
        state = None
        while time.monotonic() < deadline and state != "processed":
            time.sleep(0.2)
            rows = sqlite3.connect(db_path).execute("SELECT state FROM inboundmessage").fetchall() if db_path.exists() else []
            state = rows[0][0] if rows else None
        assert state == "processed"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def test_serve_with_its_port_taken_says_so_and_leaves_nothing_running(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = subprocess.run(_serve_argv(tmp_path, taken.getsockname()[1]), cwd=ROOT, env=_env(),
                              capture_output=True, timeout=60)  # the processor child must not keep it alive
    assert done.returncode == 70
    assert b"cannot serve" in done.stderr and b"Traceback" not in done.stderr
    assert b"accepting mail" not in done.stdout  # never announced as ready


def test_the_processor_child_that_cannot_start_is_reported_not_left_behind(tmp_path):
    from config.settings import load_settings
    from gateway.processor import ChildProcessor

    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\nsecret = "x"\n'
                      '[database]\nurl = "postgresql://liuhen@127.0.0.1:1/nowhere"\n', encoding="utf-8")
    processor = ChildProcessor(load_settings(config, env={}))
    with pytest.raises(RuntimeError, match="could not start"):
        processor.start()
    assert not processor.process.is_alive()


def _message_id(path: Path) -> str:
    import email

    return str(email.message_from_bytes(path.read_bytes())["Message-ID"])


def _child_named(pid: int, title: str) -> int | None:
    """The child of `serve` (pid) that ps calls `title` (gateway/children.py names them). A
    child started again is the child of the thread that started it: every thread is looked at."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == title:
                return int(child)
    return None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the children through Linux's /proc")
def test_a_killed_delivery_process_is_replaced_and_every_mail_goes_out_once(tmp_path):
    port = free_port()
    server = subprocess.Popen(_serve_argv(tmp_path, port, web=False), cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    maildir = tmp_path / "var" / "outbox-maildir" / "new"
    try:
        _wait_port(port)
        first = _child_named(server.pid, "lh-delivery-1")
        assert first is not None and _child_named(server.pid, "lh-processor") is not None
        os.kill(first, signal.SIGKILL)  # as the kernel's OOM killer would
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for _ in range(3):
                assert client.sendmail("chen.jing@liuhen.localhost", ["project@liuhen.test"],
                                       _request_due_ahead()) == {}
        deadline = time.monotonic() + 30
        replaced = None
        while time.monotonic() < deadline and (replaced in (None, first) or len(list(maildir.glob("*"))) < 12):
            time.sleep(0.2)
            replaced = _child_named(server.pid, "lh-delivery-1")
        assert replaced not in (None, first)
        time.sleep(1)  # time for a mail sent twice to show
        message_ids = [_message_id(path) for path in maildir.glob("*")]
        assert len(message_ids) == 12 and len(set(message_ids)) == 12  # 3 requests × 4 mails, each once
    finally:
        server.send_signal(signal.SIGTERM)
        _out, err = server.communicate(timeout=30)
    assert server.returncode == 0
    assert b"delivery process 1 exited" in err and b"starting it again" in err


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the processor child through Linux's /proc")
def test_a_killed_processor_is_replaced_and_the_mail_meanwhile_is_processed(tmp_path):
    port = free_port()
    server = subprocess.Popen(_serve_argv(tmp_path, port, "--no-delivery", web=False), cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_port(port)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        [child] = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(int(child), signal.SIGKILL)  # as the kernel's OOM killer would
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.sendmail("chen.jing@liuhen.localhost", ["project@liuhen.test"], _request_due_ahead()) == {}
        db_path = tmp_path / "var" / "liuhen.db"
        deadline = time.monotonic() + 30
        states: list[tuple[str]] = []
        while time.monotonic() < deadline and states != [("processed",)]:
            time.sleep(0.2)
            with sqlite3.connect(db_path) as db:
                states = db.execute("SELECT state FROM inboundmessage").fetchall()
        assert states == [("processed",)]
    finally:
        server.send_signal(signal.SIGTERM)
        _out, err = server.communicate(timeout=30)
    assert server.returncode == 0
    assert b"starting it again" in err


def test_serve_with_the_database_down_exits_75_so_a_supervisor_restarts_it(tmp_path):
    # issue 9: it exited 78 (EX_CONFIG), which systemd units often mark as do-not-restart;
    # a database that is down is temporary (EX_TEMPFAIL). A broken configuration stays 78.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/test"  # nothing listens
        done = subprocess.run(_serve_argv(tmp_path, free_port()), cwd=ROOT, capture_output=True, timeout=60,
                              env=_env() | {"LIUHEN_DATABASE_URL": down})
    assert done.returncode == 75, done.stderr.decode()
    assert b"cannot start" in done.stderr and b"Traceback" not in done.stderr
    bad = tmp_path / "broken.toml"
    bad.write_text("[gateway\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(bad), "serve"], cwd=ROOT,
                          capture_output=True, timeout=60, env=_env())
    assert done.returncode == 78
