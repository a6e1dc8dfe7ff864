"""Every outbound template exists in every language, renders, and escapes what people wrote."""

from __future__ import annotations

import pytest

from mail_templates import LANGUAGES, TEMPLATE_DIR, Renderer

RECORD = dict(ref="PRJ-2026-0001", subject="硬件<方案>评审", form_name="跨部门项目协作需求沟通单", priority="高", urgent=True)
PERSON = dict(name="陈静", email="chen.jing@example.cn", department="产品部")
ROWS = [("沟通主题", "硬件<方案>评审"), ("参与部门及职责", "研发部/王强 — 硬件\n市场部/赵磊 — 价格")]
RECIPIENTS = [dict(name="王强", email="wang@example.cn", responsibility="硬件", deadline="2026-11-27 12:00")]
KEYWORDS = [("同意 / AGREE", "同意需求")]

THREAD = dict(ref="PRJ-2026-0001", subject="硬件<方案>评审", urgent=True, form="project", priority="高", status="open",
              form_name="跨部门项目协作需求沟通单")  # every mail of a record: its subject
SAMPLES = {
    "initiator/ack": dict(thread=THREAD, record=RECORD, rows=ROWS, recipients=RECIPIENTS, warnings=["附件名称不规范"],
                          initiator_name="陈静", keywords=KEYWORDS),
    "recipient/request": dict(thread=THREAD, record=RECORD, rows=ROWS, name="王强", responsibility="硬件", deadline="2026-11-27 12:00",
                              initiator=PERSON, keywords=KEYWORDS),
    "head/copy": dict(thread=THREAD, record=RECORD, rows=ROWS, name="李娜", initiator=PERSON, recipients=RECIPIENTS),
    "sender/rejection": dict(problems=[dict(label="优先级", text="优先级「特别急」无法识别", example="高")], rows=ROWS,
                             form_name="跨部门项目协作需求沟通单", original_subject="请确认"),
    "sender/error": dict(inbound_id=7, original_subject="请确认"),
    "participant/update": dict(thread=THREAD, ref="PRJ-2026-0001", subject="硬件<方案>评审", name="王强", headline="陈静 同步进度",
                               author="陈静 <chen.jing@example.cn>", text="<b>样机</b>已完成", lines=["下一步：出报告"],
                               at="2026-11-27 10:00", keywords=KEYWORDS),
    "participant/receipt": dict(thread=THREAD, ref="PRJ-2026-0001", subject="硬件<方案>评审", label="同意", name="王强",
                                at="2026-11-27 10:00", notes=["还待签字：赵磊"], answers_nothing=False,
                                expected=[dict(kind="sign", due="2026-11-28 <10:00>", words=["确认", "驳回"])]),
    "sender/refusal": dict(ref="PRJ-2026-0001", original_subject="Re: 硬件<方案>评审", text="未记录 <x>"),
    "external/ack": dict(thread=THREAD, ref="CUS-2026-0001", subject="硬件<方案>评审", name="林先生", owner=PERSON, request="需要<刻字>表带"),
    "participant/reminder": dict(thread=THREAD, ref="PRJ-2026-0001", subject="硬件<方案>评审", name="王强", headline="请尽快回复",
                                 lines=["截止：2026-11-27 12:00"], keywords=KEYWORDS),
    "participant/digest": dict(name="王强", day="2026-11-28", head=False,
                               entries=[("PRJ-2026-0001", "awaiting <answer>", "2026-11-27 12:00", "reply+1-2-x@liuhen.test",
                                         "硬件<方案>评审")]),
    "sender/answer": dict(title="检索：<成本>", text="PRJ-2026-0001 <b>"),
    "sender/signin": dict(name="王强", link="http://127.0.0.1:8080/signin/confirm?t=abc<x>", code="042917",
                          minutes=15, ip="127.0.0.1"),
    "initiator/delivery_failed": dict(record_ref="PRJ-2026-0001", to_addr="x@example.cn", to_name="X",
                                      failed_subject="[PRJ-2026-0001] 请回复", error="550 5.1.1 <x@example.cn>: no such user"),
}


def _templates(lang: str) -> set[str]:
    return {str(p.relative_to(TEMPLATE_DIR / lang)).removesuffix(".subject.j2")
            for p in (TEMPLATE_DIR / lang).rglob("*.subject.j2")}


def test_every_language_has_the_same_templates_and_each_has_a_sample():
    assert _templates("zh") == _templates("en") == set(SAMPLES)
    for lang in LANGUAGES:
        for name in SAMPLES:
            for part in ("subject", "txt", "html"):
                assert (TEMPLATE_DIR / lang / f"{name}.{part}.j2").exists()


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_template_renders_and_escapes_html(lang, name):
    mail = Renderer().render(lang, name, **SAMPLES[name])
    assert mail.subject and "\n" not in mail.subject
    assert mail.text.strip() and mail.html.strip().startswith("<!DOCTYPE html>")
    if "rows" in SAMPLES[name] or "subject" in SAMPLES[name]:
        assert "硬件<方案>评审" in mail.text  # plain text is not escaped
        assert "硬件&lt;方案&gt;评审" in mail.html and "<方案>" not in mail.html


def test_a_missing_variable_is_an_error_not_a_blank():
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        Renderer().render("zh", "sender/error", original_subject="x")


def _keys(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        keys |= _keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


def test_every_language_has_every_phrase_with_the_same_placeholders():
    import string

    renderer = Renderer()
    assert set(LANGUAGES) == {"zh", "en"} and LANGUAGES[0] == "zh"
    keys = {lang: _keys(renderer.phrases[lang]) for lang in LANGUAGES}
    assert keys["zh"] == keys["en"]
    for key in keys["zh"]:
        fields = []
        for lang in LANGUAGES:
            text = renderer.phrases[lang]
            for part in key.split("."):
                text = text[part]
            fields.append({name for _, name, _, _ in string.Formatter().parse(text) if name})
        assert fields[0] == fields[1], key


def test_a_phrase_fills_its_placeholders_and_a_missing_one_is_an_error():
    renderer = Renderer()
    assert renderer.phrase("zh", "reminder.answer", due="2026-12-04 10:00") == "请答复（截止 2026-12-04 10:00）"
    assert renderer.phrase("en", "digest.whose", whose="Wang", what="answer overdue") == "Wang: answer overdue"
    assert renderer.phrase("fr", "role.recipient") == "接收人"  # an unknown language reads the default
    with pytest.raises(KeyError):
        renderer.phrase("en", "reminder.no_such_phrase")
