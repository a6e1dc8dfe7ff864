"""Every validation rule, with what the sender is told. Pure: no database, no SMTP."""

from __future__ import annotations

import pytest
from conftest import NOW, PROJECT_BODY

from config.directory import Directory
from config.forms import load_forms, load_rules
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES, DEFAULT_TEMPLATES
from gateway.checks import Submission, _Check, check_subject, validate
from parsers.fields import extract_fields
from parsers.mime import html_tables

FORMS = load_forms(DEFAULT_TEMPLATES)
RULES = load_rules(DEFAULT_RULES)
DIRECTORY = Directory.load(DEFAULT_DIRECTORY)
CHEN = DIRECTORY.by_email("chen.jing@liuhen.localhost")


def run(body: str, form: str = "project", subject: str = "", attachments=(), lang: str = "zh"):
    values = extract_fields(body, [], FORMS[form])
    return validate(FORMS[form], values, subject, CHEN, list(attachments), lang, RULES, DIRECTORY, NOW)


def codes(result) -> set[tuple[str, str]]:
    assert isinstance(result, list), "expected problems, got a valid submission"
    return {(p.field, p.code) for p in result}


def test_the_sample_request_is_valid():
    result = run(PROJECT_BODY)
    assert isinstance(result, Submission)
    assert [r.person.name for r in result.recipients] == ["王强", "赵磊"]
    assert result.due_at.isoformat() == "2026-12-20T18:00:00+08:00"


def test_every_missing_required_field_is_reported_at_once():
    result = run("沟通主题：智能手表项目-硬件方案评审\n")
    assert codes(result) == {("priority", "missing"), ("due", "missing"), ("background", "missing"),
                             ("participants", "missing"), ("milestones", "missing")}


def test_the_mail_subject_is_the_topic_when_no_field_gives_one():
    result = run(PROJECT_BODY.replace("沟通主题：智能手表项目-硬件方案评审\n", ""), subject="Re: 智能手表项目-续航优化")
    assert isinstance(result, Submission) and result.subject == "智能手表项目-续航优化"


@pytest.mark.parametrize("subject", ["请确认", "事", "急", "hi", "question", "FYI", "请确认一下！", "急急急",
                                     "Re: 请查收", "[项目协作] 请确认"])
def test_vague_subjects_are_refused(subject):
    c = _Check(RULES, DIRECTORY, NOW)
    check_subject(c, None, subject)
    assert [p.code for p in c.problems] in (["vague_subject"], ["short_subject"])


@pytest.mark.parametrize("subject", ["关于推行弹性考勤制度的通知", "智能手表项目-硬件方案评审", "请确认Q1营销预算分配方案",
                                     "Q1 budget review", "Overseas launch event"])
def test_real_subjects_pass_even_with_a_vague_word_inside(subject):
    c = _Check(RULES, DIRECTORY, NOW)
    check_subject(c, None, subject)
    assert c.problems == []


def test_a_subject_too_short_to_name_a_goal():
    c = _Check(RULES, DIRECTORY, NOW)
    check_subject(c, None, "方案")
    assert [p.code for p in c.problems] == ["short_subject"]


@pytest.mark.parametrize("vague", ["待定", "详见附件", "TBD", "ASAP", "尽快", "tbd."])
def test_vague_values_are_refused(vague):
    result = run(PROJECT_BODY.replace("新款智能手表需在Q1量产，需确认硬件方案以锁定BOM成本", vague)
                 .replace("2026-12-20 18:00", vague))
    assert codes(result) == {("background", "vague_value"), ("due", "vague_value")}


def test_optional_fields_may_say_none():
    assert isinstance(run(PROJECT_BODY + "所需资源：无\n"), Submission)


@pytest.mark.parametrize("written, expected", [("高", "高"), ("紧急", "高"), ("High", "高"), ("中", "中"),
                                               ("medium", "中"), ("低", "低"), ("Low", "低"), ("高（紧急）", "高")])
def test_priorities(written, expected):
    result = run(PROJECT_BODY.replace("优先级：高", f"优先级：{written}"))
    assert isinstance(result, Submission) and result.priority == expected


def test_unknown_priority():
    assert codes(run(PROJECT_BODY.replace("优先级：高", "优先级：特别急"))) == {("priority", "bad_priority")}


@pytest.mark.parametrize("written, iso", [
    ("2026-12-20 18:00", "2026-12-20T18:00"), ("2026/12/20 18:00", "2026-12-20T18:00"),
    ("2026年12月20日 18:00", "2026-12-20T18:00"), ("12月20日18:00", "2026-12-20T18:00"),
    ("1月5日 9:30", "2027-01-05T09:30"), ("2026-12-20", "2026-12-20T18:00")])
def test_date_formats(written, iso):
    result = run(PROJECT_BODY.replace("期望完成时间：2026-12-20 18:00", f"期望完成时间：{written}"))
    assert isinstance(result, Submission)
    assert result.due_at.isoformat().startswith(iso)


def test_unparseable_and_past_dates():
    body = PROJECT_BODY.replace("期望完成时间：2026-12-20 18:00", "期望完成时间：下个月中旬").replace(
        "方案评审 — 2026-12-10 14:00", "方案评审 — 2026-11-20 14:00")
    assert codes(run(body)) == {("due", "bad_date"), ("milestones", "past_date")}


def test_a_milestone_without_a_date():
    body = PROJECT_BODY.replace("方案评审 — 2026-12-10 14:00", "方案评审 — 下周")
    assert codes(run(body)) == {("milestones", "bad_milestone")}


def test_people_must_resolve_to_exactly_one_person():
    body = PROJECT_BODY.replace("市场部/赵磊 — 提供竞品价格", "刘洋 — 提供竞品价格\n王小明 — 测试")
    result = run(body)
    assert codes(result) == {("participants", "ambiguous_person"), ("participants", "unknown_person")}
    ambiguous = next(p for p in result if p.code == "ambiguous_person")
    assert "liu.yang@liuhen.localhost" in ambiguous.detail and "liu.yang2@liuhen.localhost" in ambiguous.detail


@pytest.mark.parametrize("line, email", [
    ("市场部/刘洋 — 竞品", "liu.yang@liuhen.localhost"),  # the department makes the name unique
    ("刘洋（财务部） — 预算", "liu.yang2@liuhen.localhost"),
    ("ext.partner@supplier.example.com — 供货", "ext.partner@supplier.example.com"),  # an address always resolves
    ("财务部 — 预算审批", "qian.hong@liuhen.localhost"),  # a department alone: its head
])
def test_explicit_people_resolve(line, email):
    result = run(PROJECT_BODY.replace("市场部/赵磊 — 提供竞品价格", line))
    assert isinstance(result, Submission)
    assert email in {r.person.email for r in result.recipients}


def test_a_list_of_people_on_one_line():
    body = "通知内容：自2027年1月1日起试行弹性考勤\n需确认人员：王强、张喆, sun.li@liuhen.localhost\n"
    result = run(body, form="notice", subject="关于推行弹性考勤制度的通知")
    assert isinstance(result, Submission)
    assert [r.person.name for r in result.recipients] == ["王强", "张喆", "孙丽"]


def test_attachment_names_warn_by_default_and_pictures_are_exempt():
    result = run(PROJECT_BODY, attachments=[("需求.docx", "application/msword"), ("image001.png", "image/png"),
                                            ("产品需求文档V1.0-20240520.docx", "application/msword")])
    assert isinstance(result, Submission)
    assert [(w.code, w.value) for w in result.warnings] == [("attachment_name", "需求.docx")]


def test_attachment_names_are_errors_when_the_form_says_so():
    from dataclasses import replace

    strict = replace(FORMS["project"], attachment_naming="error")
    values = extract_fields(PROJECT_BODY, [], strict)
    result = validate(strict, values, "", CHEN, [("方案.pdf", "application/pdf")], "zh", RULES, DIRECTORY, NOW)
    assert codes(result) == {("attachments", "attachment_name")}


def test_labels_with_stars_required_marks_and_ascii_colons():
    body = ("＊沟通主题（必填）: 智能手表项目-硬件方案评审\n*优先级: 高\n期望完成时间（必填）：2026-12-20 18:00\n"
            "背景与目标:\n新款智能手表需在Q1量产\n需确认硬件方案\n参与部门及职责：研发部/王强 — 硬件\n"
            "关键节点与时间：方案评审 — 2026-12-10 14:00\n")
    result = run(body)
    assert isinstance(result, Submission)
    assert result.values["background"] == "新款智能手表需在Q1量产\n需确认硬件方案"


@pytest.mark.parametrize("label", ["Subject", "Topic"])
def test_english_label_variants(label):
    body = (f"{label}: Overseas launch event for Q1\nRequester: chen.jing@liuhen.localhost\nPriority: low\n"
            "Expected completion: 2026-12-18 18:00\nBackground and goal: Book the venue\n"
            "Responsibilities:\nwang.qiang@liuhen.localhost - demo units\nKey dates:\nVenue booked - 2026-12-05\n")
    result = run(body, lang="en")
    assert isinstance(result, Submission), result
    assert result.subject == "Overseas launch event for Q1" and result.priority == "低"


def test_a_pasted_word_table_is_read():
    html = ("<table><tr><td><p class=MsoNormal>沟通主题*<o:p></o:p></p></td><td><p>智能手表项目-硬件方案评审</p></td></tr>"
            "<tr><td>优先级*</td><td>中</td><td>期望完成时间*</td><td>2026-12-20 18:00</td></tr>"
            "<tr><td>背景与目标*</td><td>锁定BOM成本</td></tr>"
            "<tr><td>参与部门及职责*</td><td><p>研发部/王强 — 硬件</p><p>市场部/赵磊 — 价格</p></td></tr>"
            "<tr><td>关键节点与时间*</td><td>方案评审 — 2026-12-10 14:00</td></tr></table>")
    values = extract_fields("", html_tables(html), FORMS["project"])
    result = validate(FORMS["project"], values, "", CHEN, [], "zh", RULES, DIRECTORY, NOW)
    assert isinstance(result, Submission), result
    assert result.priority == "中" and len(result.recipients) == 2
