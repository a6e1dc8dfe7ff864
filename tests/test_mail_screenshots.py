"""Every mail kind, in every language, rendered in a real browser (Debian's chromium driven by
Playwright) at a desktop width (900 px) and a phone's (390 px): nothing runs off the side,
and the keyword and form tables stay readable. The screenshots are kept as test artefacts
(test-artifacts/mails/, or $LIUHEN_ARTIFACTS) for a person to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_templates import SAMPLES

from mail_templates import LANGUAGES, Renderer

WIDTHS = (900, 390)
ARTIFACTS = Path(os.environ.get("LIUHEN_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")) / "mails"

# The keyword table of a real mail: long word lists beside their help.
KEYWORDS = [("确认 / 签字确认 / 确认签字 / 已确认 / CONFIRM / CONFIRMED / SIGN OFF / SIGNED OFF", "确认结果或通知"),
            ("需补充信息 / NEED INFO", "需要补充信息，后面写需要什么"),
            ("认可签字 / ACCEPT SIGN-OFF", "认可一份未通过发件人验证、待您认可的签字，后面写签字人")]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_mail_reads_at_desktop_and_phone_width(chromium, name, lang, width):
    context = dict(SAMPLES[name])
    if "keywords" in context:
        context["keywords"] = KEYWORDS
    if name == "recipient/request":
        context["buttons"] = [("同意需求", "mailto:reply@example.cn?body=x"), ("需补充信息", "mailto:reply@example.cn"),
                              ("建议调整节点", "mailto:reply@example.cn")]
    html = Renderer().render(lang, name, **context).html
    page = chromium.new_page(viewport={"width": width, "height": 800})
    try:
        page.set_content(html)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name.replace('/', '-')}-{lang}-{width}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} ({lang}) is {overflow} px wider than a {width} px screen"
        # No table cell squeezed to a sliver (one character a line) while it holds text.
        slivers = page.evaluate("""[...document.querySelectorAll('td, th')]
            .filter(c => c.innerText.trim().length > 4 && c.getBoundingClientRect().width < 60)
            .map(c => c.innerText.trim().slice(0, 20))""")
        assert not slivers, f"{name} ({lang}) at {width} px squeezes {slivers}"
    finally:
        page.close()


def test_real_mails_of_a_record_read_on_a_phone(chromium, ctx, send, clock):
    """The mails a real request causes — the request with its buttons, a reminder, an update —
    as delivered, with their real context (the README shows two of these)."""
    from datetime import timedelta

    from conftest import NOW, PROJECT_BODY, make_mail, sent_mails
    from test_replies import reply

    from gateway.scheduler import sweep

    send(make_mail(PROJECT_BODY.replace("优先级：高", "优先级：中")))
    reply(send, "wang.qiang@liuhen.localhost", "需补充信息：请提供BOM成本明细和模具费用")
    clock.instant = NOW + timedelta(hours=24, minutes=1)
    sweep(ctx)
    sent_mails(ctx)
    from store.models import OutboundMessage

    wanted = {("request", "wang.qiang@liuhen.localhost"), ("question", "chen.jing@liuhen.localhost"),
              ("reminder", "zhao.lei@liuhen.localhost")}
    shots = 0
    for mail in OutboundMessage.select().where(OutboundMessage.status == "sent"):
        if (mail.kind, mail.to_addr) in wanted:
            shots += screenshot_as_sent(chromium, mail)
    assert shots == 2 * len(wanted)


def screenshot_as_sent(chromium, mail) -> int:
    """The HTML of a sent mail at each width, kept as real-<kind>-<width>.png; it must fit the
    screen. Returns how many screenshots were taken."""
    from parsers.mime import parse_message

    html = parse_message(bytes(mail.raw)).html
    for width in WIDTHS:
        page = chromium.new_page(viewport={"width": width, "height": 800})
        try:
            page.set_content(html)
            page.screenshot(path=str(ARTIFACTS / f"real-{mail.kind}-{width}.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        finally:
            page.close()
    return len(WIDTHS)
