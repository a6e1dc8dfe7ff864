"""[log] format = "json": one JSON object a line, naming the inbound mail, the record and the
Message-ID a line is about; a wrong format is a configuration error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_BODY, make_mail

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, log: str, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    config = tmp_path / "liuhen.toml"
    config.write_text(f'[gateway]\ndomain = "liuhen.localhost"\ndata_dir = "var"\n[log]\n{log}\n', encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *argv], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, timeout=120)


def test_json_lines_name_the_mail_and_the_record(tmp_path):
    done = _run(tmp_path, 'format = "json"\nlevel = "info"', "ingest", "--sender", "chen.jing@liuhen.localhost",
                "--recipient", "project@liuhen.localhost", stdin=make_mail(PROJECT_BODY, to="project@liuhen.localhost"))
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stderr.decode().splitlines() if line.strip()]
    processed = [entry for entry in lines if entry["message"].startswith("inbound 1 processed")]
    assert processed, lines
    assert processed[0]["inbound_id"] == 1 and processed[0]["record_id"] == 1
    assert processed[0]["message_id"].startswith("<") and processed[0]["level"] == "info"
    assert {"at", "logger", "process"} <= set(processed[0])


def test_a_log_format_that_does_not_exist_is_a_configuration_error(tmp_path):
    done = _run(tmp_path, 'format = "xml"', "status")
    assert done.returncode == 78 and b"[log] format must be 'text' or 'json'" in done.stderr
