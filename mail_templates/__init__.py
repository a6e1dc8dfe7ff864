"""Outbound mail texts: jinja2 templates named ``<lang>/<audience>/<purpose>.{subject,txt,html}.j2``,
and the sentences the gateway says outside a whole template — headlines, labels, what a mail
asks, receipt notes, trace sentences — in ``phrases.toml``, one table per language.

A language is a folder of templates plus its tables in ``phrases.toml`` and ``problems.toml``:
adding one needs no code. StrictUndefined turns a missing variable into an error in tests
instead of a blank in a customer's mail; HTML parts are autoescaped, text parts are not.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATE_DIR = Path(__file__).resolve().parent
DEFAULT_LANGUAGE = "zh"


def _languages(folder: Path) -> tuple[str, ...]:
    """The languages with phrases and a folder of templates, the default first."""
    phrases = tomllib.loads((folder / "phrases.toml").read_text(encoding="utf-8"))
    found = sorted(lang for lang in phrases if (folder / lang).is_dir())
    return tuple(sorted(found, key=lambda lang: lang != DEFAULT_LANGUAGE))


LANGUAGES = _languages(TEMPLATE_DIR)


class Phrase(str):
    """A sentence of phrases.toml said in one language that can be said again in another:
    a mail to someone who reads English (people may have a language of their own,
    config/directory.py) says in English what the record's Chinese mails say."""

    _again: Callable[[str], str]

    def __new__(cls, text: str, again: Callable[[str], str]) -> Phrase:
        phrase = super().__new__(cls, text)
        phrase._again = again
        return phrase

    def said_in(self, lang: str) -> str:
        return self._again(lang)


def said_in(text: str, lang: str) -> str:
    """`text` in `lang` when it is a Phrase; anything else (what a person wrote) as it is."""
    return text.said_in(lang) if isinstance(text, Phrase) else text


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
        self.languages = _languages(folder)
        self.problem_texts: dict[str, dict[str, str]] = tomllib.loads(
            (folder / "problems.toml").read_text(encoding="utf-8"))
        self.phrases: dict[str, dict[str, Any]] = tomllib.loads((folder / "phrases.toml").read_text(encoding="utf-8"))

    def language(self, lang: str) -> str:
        return lang if lang in self.languages else DEFAULT_LANGUAGE

    def render(self, lang: str, name: str, /, **context: Any) -> RenderedMail:
        return RenderedMail(self.subject(lang, name, **context), *self.body(lang, name, **context))

    def subject(self, lang: str, name: str, /, **context: Any) -> str:
        lang = self.language(lang)
        subject = self.env.get_template(f"{lang}/{name}.subject.j2").render(self._context(lang, context))
        return " ".join(subject.split())

    def body(self, lang: str, name: str, /, **context: Any) -> tuple[str, str]:
        """(text, html) of a mail."""
        lang = self.language(lang)
        context = self._context(lang, context)
        return (self.env.get_template(f"{lang}/{name}.txt.j2").render(context),
                self.env.get_template(f"{lang}/{name}.html.j2").render(context))

    def page(self, lang: str, name: str, /, **context: Any) -> str:
        """A page that is not a mail (an exported record's timeline), in `lang`."""
        return self.env.get_template(name).render(self._context(self.language(lang), context))

    def _context(self, lang: str, context: dict[str, Any]) -> dict[str, Any]:
        return {"lang": lang, "t": lambda key, **values: self.phrase(lang, key, **values), **context}

    def problem_text(self, lang: str, code: str, **values: str) -> str:
        return self.problem_texts[self.language(lang)][code].format(**values)

    def phrase(self, lang: str, key: str, /, **values: Any) -> str:
        """A sentence of phrases.toml: `key` is its table and name ("update.agree"), `values`
        fill its {placeholders}. A missing phrase is an error, not a blank in a mail."""
        table: Any = self.phrases[self.language(lang)]
        for part in key.split("."):
            table = table[part]
        return str(table).format(**values)

    def sentence(self, lang: str, key: str, /, **values: Any) -> Phrase:
        """phrase(), remembering how it was made (a Phrase); values may be Phrases too."""
        text = self.phrase(lang, key, **{k: said_in(v, lang) if isinstance(v, str) else v for k, v in values.items()})
        return Phrase(text, lambda other: self.sentence(other, key, **values))

    def labelled(self, lang: str, label: str, value: str) -> Phrase:
        """`label：value` in `lang`'s words for the label and its colon, as a Phrase."""
        text = self.phrase(lang, f"label.{label}") + self.phrase(lang, "colon") + said_in(value, lang)
        return Phrase(text, lambda other: self.labelled(other, label, value))

    def joined(self, lang: str, items: list[str]) -> str:
        """Names in a row, as the language lists them (王强、李娜 / Wang Qiang, Li Na)."""
        return self.phrase(lang, "list_separator").join(items)
