"""`liuhen directory sync` against a real LDAP server — Debian's slapd, started by the test in
a temporary directory on a loopback port, like the private Dovecot — and from HR exports
(issue 14). Names are Chinese; a person may have an English name and a language."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import free_port

from config.directory import Directory
from gateway.cli import cmd_directory_history, cmd_directory_sync
from store.models import Event

SLAPD = "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=cn"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{SUFFIX}", "liuhen-test"
PEOPLE = f"ou=people,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson")


def person(cn: str, mail: str | None, department: str, title: str = "", manager: str = "", english: str = "",
           lang: str = "") -> tuple[str, dict]:
    attributes: dict = {"objectClass": ["inetOrgPerson"], "cn": cn, "sn": cn[0], "departmentNumber": department}
    for name, value in (("mail", mail), ("title", title), ("displayName", english), ("preferredLanguage", lang)):
        if value:
            attributes[name] = value
    if manager:
        attributes["manager"] = f"cn={manager},{PEOPLE}"
    return f"cn={cn},{PEOPLE}", attributes


ORGANISATION = [
    person("周明", "zhou.ming@liuhen.localhost", "研发部", "研发总监", english="Zhou Ming"),
    person("王强", "wang.qiang@liuhen.localhost", "研发部", "硬件工程师", manager="周明", english="Wang Qiang", lang="zh"),
    person("张喆", "zhang.zhe@liuhen.localhost", "研发部", "结构工程师", manager="周明"),
    person("李娜", "li.na@liuhen.localhost", "产品部", "产品总监"),
    person("陈静", "chen.jing@liuhen.localhost", "产品部", "产品经理", manager="李娜"),
    person("赵磊", "zhao.lei@liuhen.localhost", "市场部", "市场总监"),
    person("Emily Carter", "emily.carter@liuhen.localhost", "市场部", "Market analyst", manager="赵磊",
           english="Emily Carter", lang="en"),
    person("会议室", None, "行政部"),  # a room, no address: not a person to take part
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory) -> str:
    """A private slapd on 127.0.0.1 holding ORGANISATION and 600 more staff (more than one
    page of a paged search)."""
    if not Path(SLAPD).exists():
        if os.environ.get("CI"):
            pytest.fail("slapd is missing: .ci/run installs Debian's slapd")
        pytest.skip("slapd is not installed (apt-get install slapd ldap-utils); CI runs these tests")
    import ldap3

    home = tmp_path_factory.mktemp("slapd")
    (home / "db").mkdir()
    config = home / "slapd.conf"
    config.write_text("".join(f"include /etc/ldap/schema/{s}.schema\n" for s in SCHEMAS)
                      + f"pidfile {home}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
                      f'database mdb\nsuffix "{SUFFIX}"\nrootdn "{ROOT_DN}"\nrootpw {ROOT_PASSWORD}\n'
                      f"directory {home}/db\n", encoding="utf-8")
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    server = subprocess.Popen([SLAPD, "-f", str(config), "-h", f"{url}/", "-d", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        connection = ldap3.Connection(url, ROOT_DN, ROOT_PASSWORD, auto_bind=True)
        connection.add(SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
        connection.add(PEOPLE, ["organizationalUnit"], {"ou": "people"})
        for dn, attributes in ORGANISATION:
            assert connection.add(dn, attributes=attributes), connection.result
        for i in range(600):
            dn, attributes = person(f"员工{i:03d}", f"staff{i:03d}@liuhen.localhost", "生产部", "操作员",
                                    manager="员工000" if i else "")
            assert connection.add(dn, attributes=attributes), connection.result
        connection.unbind()
        yield url
    finally:
        server.terminate()
        server.wait(10)


def settings_for(ctx, tmp_path: Path, url: str, **sync):
    s = ctx.settings
    return replace(s, directory=replace(s.directory, path=str(tmp_path / "directory.toml")),
                   directory_sync=replace(s.directory_sync, source="ldap", url=url, bind_dn=ROOT_DN,
                                          base_dn=PEOPLE, filter="(objectClass=inetOrgPerson)",
                                          department="departmentNumber", name_en="displayName", **sync))


def sync(ctx, dry_run: bool = False, source: str | None = None) -> int:
    return cmd_directory_sync(argparse.Namespace(dry_run=dry_run, source=source), ctx)


@pytest.fixture
def ldap_ctx(ctx, slapd, tmp_path, monkeypatch):
    monkeypatch.setenv("LIUHEN_LDAP_PASSWORD", ROOT_PASSWORD)
    return replace(ctx, settings=settings_for(ctx, tmp_path, slapd))


def test_a_dry_run_shows_what_would_change_and_writes_nothing(ldap_ctx, capsys):
    assert sync(ldap_ctx, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "+ 王强 <wang.qiang@liuhen.localhost> 研发部 硬件工程师" in out
    assert "607 people in 4 departments" in out and "dry run: nothing written" in out
    assert not Path(ldap_ctx.settings.directory.path).exists()
    assert Event.select().where(Event.kind == "directory_synced").count() == 0


def test_people_departments_heads_and_managers_come_from_ldap(ldap_ctx, capsys):
    assert sync(ldap_ctx) == 0
    directory = Directory.load(ldap_ctx.settings.directory.path)
    wang = directory.by_email("wang.qiang@liuhen.localhost")
    assert (wang.name, wang.department, wang.title, wang.manager, wang.name_en, wang.lang) == (
        "王强", "研发部", "硬件工程师", "zhou.ming@liuhen.localhost", "Wang Qiang", "zh")
    heads = {d.name: d.head for d in directory.departments}
    assert heads == {"研发部": "zhou.ming@liuhen.localhost", "产品部": "li.na@liuhen.localhost",
                     "市场部": "zhao.lei@liuhen.localhost", "生产部": "staff000@liuhen.localhost"}
    assert directory.resolve("研发部/王强").person == wang
    assert "会议室" not in {p.name for p in directory.people}  # no address: no participant
    assert len(directory.people) == 607  # every page of the paged search


def test_a_second_sync_records_only_what_changed_as_history(ldap_ctx, slapd, capsys):
    import ldap3

    assert sync(ldap_ctx) == 0
    connection = ldap3.Connection(slapd, ROOT_DN, ROOT_PASSWORD, auto_bind=True)
    connection.modify(f"cn=张喆,{PEOPLE}", {"departmentNumber": [(ldap3.MODIFY_REPLACE, ["产品部"])],
                                           "manager": [(ldap3.MODIFY_REPLACE, [f"cn=李娜,{PEOPLE}"])]})
    connection.delete(f"cn=员工599,{PEOPLE}")
    dn, attributes = person("孙丽", "sun.li@liuhen.localhost", "人力资源部", "人力资源总监")
    assert connection.add(dn, attributes=attributes)
    try:
        capsys.readouterr()
        assert sync(ldap_ctx) == 0
        out = capsys.readouterr().out
        assert "+ 孙丽 <sun.li@liuhen.localhost> 人力资源部 人力资源总监" in out
        assert "- 员工599 <staff599@liuhen.localhost> 生产部" in out
        assert "~ 张喆 <zhang.zhe@liuhen.localhost>: department 研发部 → 产品部" in out
        assert "+ department 人力资源部 (head sun.li@liuhen.localhost)" in out
        assert cmd_directory_history(argparse.Namespace(json=True), ldap_ctx) == 0
        latest, first = json.loads(capsys.readouterr().out)
        assert latest["added"] == ["sun.li@liuhen.localhost"] and latest["removed"] == ["staff599@liuhen.localhost"]
        assert latest["changed"]["zhang.zhe@liuhen.localhost"]["department"] == ["研发部", "产品部"]
        assert len(first["added"]) == 607
        assert sync(ldap_ctx) == 0 and "no change" in capsys.readouterr().out
        assert Event.select().where(Event.kind == "directory_synced").count() == 2
    finally:
        connection.modify(f"cn=张喆,{PEOPLE}", {"departmentNumber": [(ldap3.MODIFY_REPLACE, ["研发部"])],
                                               "manager": [(ldap3.MODIFY_REPLACE, [f"cn=周明,{PEOPLE}"])]})
        connection.delete(f"cn=孙丽,{PEOPLE}")
        dn, attributes = person("员工599", "staff599@liuhen.localhost", "生产部", "操作员", manager="员工000")
        connection.add(dn, attributes=attributes)
        connection.unbind()


def test_a_head_named_in_the_configuration_wins(ctx, slapd, tmp_path, monkeypatch):
    monkeypatch.setenv("LIUHEN_LDAP_PASSWORD", ROOT_PASSWORD)
    named = replace(ctx, settings=settings_for(ctx, tmp_path, slapd, heads=("研发部=wang.qiang@liuhen.localhost",)))
    assert sync(named) == 0
    heads = {d.name: d.head for d in Directory.load(named.settings.directory.path).departments}
    assert heads["研发部"] == "wang.qiang@liuhen.localhost"


def test_a_wrong_password_leaves_the_directory_as_it_is(ldap_ctx, monkeypatch, capsys):
    monkeypatch.setenv("LIUHEN_LDAP_PASSWORD", "wrong")
    assert sync(ldap_ctx) == 75  # temporary: try again
    assert "invalidCredentials" in capsys.readouterr().err
    assert not Path(ldap_ctx.settings.directory.path).exists()


def test_the_running_gateway_reads_the_synced_directory_by_itself(ldap_ctx):
    from gateway.bootstrap import DirectoryFile

    # Before: the sample directory. After the sync the context reads the new file by itself.
    shutil.copy(Path(__file__).parents[1] / "config" / "directory.toml", ldap_ctx.settings.directory.path)

    ctx = replace(ldap_ctx, directory_file=DirectoryFile.load(Path(ldap_ctx.settings.directory.path)))
    assert ctx.directory.by_email("staff001@liuhen.localhost").external  # not in the sample
    assert sync(ctx) == 0
    ctx.directory_file._checked -= DirectoryFile.CHECK_SECONDS  # as if 5 s had passed
    assert not ctx.directory.by_email("staff001@liuhen.localhost").external
    assert ctx.directory.by_email("emily.carter@liuhen.localhost").lang == "en"


def test_an_hr_export_in_csv_or_xlsx_is_read_the_same_way(ctx, tmp_path, capsys):
    from openpyxl import Workbook

    header = ["姓名", "邮箱", "部门", "职务", "上级", "英文名", "语言"]
    rows = [["周明", "zhou.ming@liuhen.localhost", "研发部", "研发总监", "", "Zhou Ming", "中文"],
            ["王强", "wang.qiang@liuhen.localhost", "研发部", "硬件工程师", "周明", "Wang Qiang", "zh"],
            ["Emily Carter", "emily.carter@liuhen.localhost", "研发部", "Analyst", "zhou.ming@liuhen.localhost",
             "Emily Carter", "en"]]
    csv_file = tmp_path / "hr.csv"
    csv_file.write_bytes(("\r\n".join(",".join(r) for r in [header, *rows]) + "\r\n").encode("gb18030"))
    xlsx_file = tmp_path / "hr.xlsx"
    workbook = Workbook()
    for row in [header, *rows]:
        workbook.active.append(row)  # type: ignore[union-attr]
    workbook.save(xlsx_file)
    s = ctx.settings
    columns = dict(name="姓名", email="邮箱", department="部门", title="职务", manager="上级", name_en="英文名",
                   lang="语言")
    for export in (csv_file, xlsx_file):
        target = tmp_path / f"directory-{export.suffix[1:]}.toml"
        hr = replace(ctx, settings=replace(s, directory=replace(s.directory, path=str(target)),
                                           directory_sync=replace(s.directory_sync, **columns)))
        assert sync(hr, source=str(export)) == 0, capsys.readouterr()
        directory = Directory.load(target)
        wang = directory.by_email("wang.qiang@liuhen.localhost")
        assert (wang.manager, wang.name_en) == ("zhou.ming@liuhen.localhost", "Wang Qiang")
        assert [d.head for d in directory.departments] == ["zhou.ming@liuhen.localhost"]
        assert directory.by_email("emily.carter@liuhen.localhost").lang == "en"


def test_mails_to_a_person_with_a_language_of_their_own_are_in_it(ctx, clock):
    """王强 reads English (the directory says so): his mails about a Chinese request are in
    English and call him Wang Qiang; everyone else's stay in Chinese."""
    from conftest import PROJECT_BODY, body_text, make_mail, sent_mails

    from gateway.bootstrap import DirectoryFile
    from gateway.intake import store_raw
    from gateway.pipeline import process_batch
    from gateway.scheduler import sweep

    sample = Directory.load(Path(__file__).parents[1] / "config" / "directory.toml")
    english = {"wang.qiang@liuhen.localhost": "Wang Qiang", "chen.jing@liuhen.localhost": "Chen Jing"}
    people = [replace(p, lang="en", name_en=english[p.email]) if p.email in english else p for p in sample.people]
    ctx = replace(ctx, directory_file=DirectoryFile.fixed(Directory(people, sample.departments)))
    stored = store_raw(ctx.db, make_mail(PROJECT_BODY), source="ingest", envelope_from="chen.jing@liuhen.localhost",
                       envelope_to=["project@liuhen.test"], now=ctx.clock.now())
    assert process_batch(ctx, [stored.inbound_id]) == {stored.inbound_id: "processed"}

    def last_to(address: str):
        return [m for m in sent_mails(ctx) if m["To"].endswith(f"<{address}>")][-1]

    request = last_to("wang.qiang@liuhen.localhost")
    assert "Wang Qiang" in request["To"]
    english = body_text(request)
    assert english.startswith("Hello Wang Qiang,") and "and you are a recipient" in english
    assert "Cross-department project request" in english  # the form's English name
    assert "请" in body_text(last_to("zhao.lei@liuhen.localhost"))  # 赵磊 reads the request's Chinese
    clock.advance(hours=30)  # past 王强's deadline: the reminder is in English too
    sweep(ctx)
    reminder = body_text(last_to("wang.qiang@liuhen.localhost"))
    assert "Wang Qiang" in reminder and "请答复" not in reminder
    assert ctx.renderer.phrase("en", "reminder.answer", due="")[:12] in reminder  # the headline, said again
    # Then 王强 agrees; the initiator, who reads English too, is told so in English, by his English name.
    from store.models import OutboundMessage

    reply_to = OutboundMessage.get(OutboundMessage.to_addr == "wang.qiang@liuhen.localhost").headers["Reply-To"]
    agreed = store_raw(ctx.db, make_mail("同意", subject="Re: 智能手表项目-硬件方案评审", to=reply_to,
                                         sender="王强 <wang.qiang@liuhen.localhost>"), source="ingest",
                       envelope_from="wang.qiang@liuhen.localhost", envelope_to=[reply_to], now=ctx.clock.now())
    assert process_batch(ctx, [agreed.inbound_id]) == {agreed.inbound_id: "processed"}
    told = body_text(last_to("chen.jing@liuhen.localhost"))
    assert told.startswith("Hello Chen Jing,") and ctx.renderer.phrase("en", "update.agree", name="Wang Qiang") in told


def test_the_first_sync_from_the_command_line_needs_no_directory_file_yet(tmp_path):
    import sys

    (tmp_path / "hr.csv").write_text("姓名,邮箱,部门\n周明,zhou.ming@example.cn,研发部\n", encoding="utf-8")
    (tmp_path / "liuhen.toml").write_text(
        '[gateway]\ndomain = "example.cn"\ndata_dir = "var"\nsecret = "test"\n[directory]\npath = "directory.toml"\n'
        '[directory_sync]\nsource = "hr.csv"\nname = "姓名"\nemail = "邮箱"\ndepartment = "部门"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(tmp_path / "liuhen.toml"), "directory",
                          "sync"], capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], timeout=60)
    assert run.returncode == 0, run.stderr
    assert "written to" in run.stdout
    assert Directory.load(tmp_path / "directory.toml").by_email("zhou.ming@example.cn").name == "周明"
