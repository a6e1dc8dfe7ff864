"""Every sentence a mail, a receipt or a command answer says lives in mail_templates/ (the
templates and the phrase tables) or config/, never in Python: a third language needs no
code, and a wording change needs no programmer. This test reads the code of gateway/ and
store/ and fails on a Chinese or English sentence in a string.

What is not a sentence a reader gets: docstrings; regular expressions (the vocabulary the
parsers understand); what operators read — log lines, exceptions, the reasons recorded for
an inbound mail (Outcome), the command line's own output, the help of a metric."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
CJK_SENTENCE = re.compile(r"[\u3400-\u9fff][^\n]*[，。！？；「」“”]|[\u3400-\u9fff]{8,}")
ENGLISH_SENTENCE = re.compile(r"^[A-Z][a-z]+(?: [\w'’,()/-]+){3,}[.:!?]?$")
OPERATOR_CALLS = {"debug", "info", "warning", "error", "exception", "critical", "Outcome", "print", "add_argument",
                  "add_parser", "ArgumentParser", "compile", "match", "search", "sub", "split", "fullmatch",
                  "finditer", "findall",
                  "Counter", "Histogram", "GaugeMetricFamily", "CounterMetricFamily"}  # metrics' help: operators
CODE = [p for folder in ("gateway", "store") for p in sorted((ROOT / folder).rglob("*.py"))
        if p.name not in ("cli.py", "demo.py")]  # the operator's command line; the demo's sample mails (input)


def _sentences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skipped.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Raise) and node.exc is not None:
            skipped |= {id(n) for n in ast.walk(node.exc)}
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in OPERATOR_CALLS:
                skipped |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            text = node.value.strip()
            if CJK_SENTENCE.search(text) or (not CJK.search(text) and ENGLISH_SENTENCE.match(text)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:60]!r}")
    return found


def test_no_sentence_a_reader_gets_is_written_in_python():
    found = [s for path in CODE for s in _sentences(path)]
    assert not found, "move these to mail_templates/phrases.toml or a template:\n" + "\n".join(found)


def test_the_check_finds_a_sentence(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('GREETING = "请在截止前回复「延期：原因」。"\nHINT = "Please reply to this mail."\n'
                      'WORD = "进度"\nlog.info("Started the gateway on port 25")\n', encoding="utf-8")
    assert len(_sentences_of(sample)) == 2


def _sentences_of(path: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, path.parent
    try:
        return _sentences(path)
    finally:
        ROOT = saved
