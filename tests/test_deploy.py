"""deploy/: the systemd unit passes systemd-analyze and serve tells systemd it is ready
(Type=notify); the Dockerfile copies what exists and builds where a Docker daemon runs."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from test_serve_command import _env, _serve_argv

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "liuhen.service"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def test_the_systemd_unit_verifies(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "liuhen.service"
    venv = Path(sys.executable).parent
    unit.write_text(UNIT.read_text().replace("/opt/liuhen/.venv/bin/", f"{venv}/"))
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    text = UNIT.read_text()
    assert "Type=notify" in text and "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text


def test_the_directory_sync_service_and_its_timer_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    venv = Path(sys.executable).parent
    for name in ("liuhen-directory-sync.service", "liuhen-directory-sync.timer"):
        text = (ROOT / "deploy" / name).read_text().replace("/opt/liuhen/.venv/bin/", f"{venv}/")
        (tmp_path / name).write_text(text)
    checked = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "liuhen-directory-sync.service"),
                              str(tmp_path / "liuhen-directory-sync.timer")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    service = (ROOT / "deploy" / "liuhen-directory-sync.service").read_text()
    assert "ExecStart=/opt/liuhen/.venv/bin/liuhen directory sync" in service and "ProtectSystem=strict" in service


def test_serve_tells_systemd_it_is_ready(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(60)
        server = subprocess.Popen(_serve_argv(tmp_path, free_port(), web=False), cwd=ROOT,
                                  env={**_env(), "NOTIFY_SOCKET": str(path)}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        try:
            assert notify.recv(256) == b"READY=1"  # after its port is open and the processor runs
        finally:
            server.terminate()
            server.communicate(timeout=30)
    assert server.returncode == 0


def test_the_dockerfile_copies_what_exists_and_builds_where_docker_runs():
    sources = re.findall(r"^COPY (.+) \S+$", DOCKERFILE.read_text(), re.M)
    for line in sources:
        for name in line.split():
            assert (ROOT / name).exists(), name
    assert "USER liuhen" in DOCKERFILE.read_text() and "HEALTHCHECK" in DOCKERFILE.read_text()
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no Docker daemon here to build the image")
    built = subprocess.run([docker, "build", "-f", str(DOCKERFILE), "-t", "liuhen-test", str(ROOT)],
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
