"""Outbound mail texts: jinja2 templates named ``<lang>/<audience>/<purpose>.{subject,txt,html}.j2``.

StrictUndefined turns a missing variable into an error in tests instead of a blank in a
customer's mail; HTML parts are autoescaped, text parts are not.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATE_DIR = Path(__file__).resolve().parent
LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(self, folder: Path = TEMPLATE_DIR):
        self.env = Environment(
            loader=FileSystemLoader(str(folder)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # templates do not change under a running gateway; saves a stat per render
        )
        self.problem_texts: dict[str, dict[str, str]] = tomllib.loads(
            (folder / "problems.toml").read_text(encoding="utf-8"))

    def render(self, lang: str, name: str, /, **context: Any) -> RenderedMail:
        return RenderedMail(self.subject(lang, name, **context), *self.body(lang, name, **context))

    def subject(self, lang: str, name: str, /, **context: Any) -> str:
        lang = lang if lang in LANGUAGES else "zh"
        subject = self.env.get_template(f"{lang}/{name}.subject.j2").render({"lang": lang, **context})
        return " ".join(subject.split())

    def body(self, lang: str, name: str, /, **context: Any) -> tuple[str, str]:
        """(text, html) of a mail."""
        lang = lang if lang in LANGUAGES else "zh"
        context = {"lang": lang, **context}
        return (self.env.get_template(f"{lang}/{name}.txt.j2").render(context),
                self.env.get_template(f"{lang}/{name}.html.j2").render(context))

    def problem_text(self, lang: str, code: str, **values: str) -> str:
        return self.problem_texts[lang if lang in LANGUAGES else "zh"][code].format(**values)
