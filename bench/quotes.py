#!/usr/bin/env python3
"""Reply-text extraction (parsers.quotes.new_text) measured on fixtures with stated answers.

    .venv/bin/python bench/quotes.py

Sets (copies under tests/fixtures/replies/, licences in tests/fixtures/README.md):
  github-email_reply_parser  9   plain bodies
  mailgun-talon             21   12 .eml (first text/plain part, via parsers.mime) and
                                 9 .html (via parsers.mime.html_to_text)
  mail-parser-reply          8   plain bodies
  crisp-email-reply-parser  50   plain bodies
  chinese clients           tests/fixtures/replies/expected.json, written for liuhen
  real-world classes        a row per class of replies.classes.json (a subset of the
                            chinese-clients files): NetEase English UI, two-line
                            attributions, "&gt;" quotes, IBM Notes, disclaimers

Per set it prints:
  quote detection  no quoted history left and no new text lost: the lines with a letter or
                   digit in our answer are exactly those of the reference answer, whitespace
                   collapsed (blank lines and rule lines like "-----" do not count). The
                   reference is the upstream answer, except for the fixtures listed in
                   public/disagreements.json, where it is our policy's answer.
  exact            our answer == upstream answer after collapsing whitespace; talon's HTML
                   answers after removing all whitespace, as talon compares them.
  exact (policy)   the same against the policy reference.
Then every listed disagreement with upstream, by kind (signature policy first), and whether
our answer follows the policy. A benchmark, not a test: it prints and exits 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from parsers.mime import html_to_text, parse_message
from parsers.quotes import new_text

REPLIES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "replies"
PUBLIC = REPLIES / "public"


@dataclass(frozen=True)
class Case:
    set_name: str
    name: str
    body: str
    expected: str  # upstream's answer (ours for the Chinese set)
    reference: str  # the answer under our policy
    whitespace_free: bool  # compared with all whitespace removed (talon HTML)


def _text(path: Path) -> str:
    # What the caller hands new_text: decoded text with "\n" newlines (crisp's files are CRLF).
    return path.read_bytes().decode("utf-8").replace("\r\n", "\n")


def _body(set_dir: Path, name: str) -> str:
    path = set_dir / name
    if path.suffix == ".eml":
        return parse_message(path.read_bytes()).text
    if path.suffix == ".html":
        return html_to_text(_text(path))
    return _text(path)


# Where each upstream keeps its bodies, relative to the names in its expected.json.
_LAYOUT: dict[str, str] = {
    "github-email_reply_parser": "emails",
    "mailgun-talon": "",
    "mail-parser-reply": "emails",
    "crisp-email-reply-parser": "fixtures",
}


def public_cases() -> Iterator[Case]:
    disagreements = json.loads((PUBLIC / "disagreements.json").read_text(encoding="utf-8"))
    for set_name, subdir in _LAYOUT.items():
        set_dir = PUBLIC / set_name
        expected = json.loads((set_dir / "expected.json").read_text(encoding="utf-8"))
        for name, answer in expected.items():
            policy = disagreements.get(f"{set_name}/{name}")
            yield Case(
                set_name, name, _body(set_dir / subdir, name), answer,
                policy["ours"] if policy else answer, name.endswith(".html"),
            )


def chinese_cases() -> Iterator[Case]:
    expected = json.loads((REPLIES / "expected.json").read_text(encoding="utf-8"))
    for name, answer in expected.items():
        yield Case("chinese clients", name, _body(REPLIES, name), answer, answer, False)


def class_names() -> dict[str, str]:
    """File name -> its class (replies/classes.json), for the per-class rows."""
    classes = json.loads((REPLIES / "classes.json").read_text(encoding="utf-8"))
    return {name: cls for cls, names in classes.items() for name in names}


def _collapse(text: str, whitespace_free: bool) -> str:
    return "".join(text.split()) if whitespace_free else " ".join(text.split())


def _content_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.split("\n") if any(c.isalnum() for c in line)]


def quote_verdict(ours: str, reference: str) -> str:
    """"" when no history is left and no new text lost, else what went wrong."""
    mine, theirs = _content_lines(ours), _content_lines(reference)
    problems = []
    for what, lines in (("left", [x for x in mine if x not in theirs]),
                        ("lost", [x for x in theirs if x not in mine])):
        if lines:
            more = f" (+{len(lines) - 1})" if len(lines) > 1 else ""
            problems.append(f"{what} {lines[0][:60]!r}{more}")
    if not problems and mine != theirs:
        problems.append("lines out of order")
    return "; ".join(problems)


@dataclass
class Tally:
    count: int = 0
    detected: int = 0
    exact: int = 0
    exact_policy: int = 0

    def add(self, other: Tally) -> None:
        self.count += other.count
        self.detected += other.detected
        self.exact += other.exact
        self.exact_policy += other.exact_policy

    def line(self, label: str) -> str:
        def pct(n: int) -> str:
            return f"{100 * n / self.count:5.1f}%"
        return (f"{label:<28} {self.count:>4}   {pct(self.detected)}   {pct(self.exact)}"
                f"   {pct(self.exact_policy)}")


def main() -> int:
    cases = list(public_cases()) + list(chinese_cases())
    started = time.perf_counter()
    answers = [new_text(case.body) for case in cases]
    elapsed = time.perf_counter() - started

    tallies: dict[str, Tally] = {}
    by_class: dict[str, Tally] = {}
    classes = class_names()
    misses: list[str] = []
    for case, ours in zip(cases, answers):
        tally = tallies.setdefault(case.set_name, Tally())
        verdict = quote_verdict(ours, case.reference)
        got = _collapse(ours, case.whitespace_free)
        one = Tally(1, not verdict, got == _collapse(case.expected, case.whitespace_free),
                    got == _collapse(case.reference, case.whitespace_free))
        tally.add(one)
        if case.set_name == "chinese clients" and case.name in classes:
            by_class.setdefault(classes[case.name], Tally()).add(one)
        if verdict:
            misses.append(f"  {case.set_name}/{case.name}: {verdict}")

    print(f"{'set':<28} {'n':>4}   quotes   exact   exact (policy)")
    public = Tally()
    for set_name in _LAYOUT:
        print(tallies[set_name].line(set_name))
        public.add(tallies[set_name])
    print(public.line("public sets together"))
    print(tallies["chinese clients"].line("chinese clients"))
    for cls, tally in by_class.items():
        print(tally.line(f"  {cls}"))
    public.add(tallies["chinese clients"])
    print(public.line("all"))
    print(f"\n{len(cases)} replies in {elapsed * 1000:.1f} ms "
          f"({elapsed * 1e6 / len(cases):.0f} µs per reply)")

    print("\nQuote-detection misses:" if misses else "\nQuote-detection misses: none")
    for miss in misses:
        print(miss)

    disagreements = json.loads((PUBLIC / "disagreements.json").read_text(encoding="utf-8"))
    ours_by_key = {f"{c.set_name}/{c.name}": a for c, a in zip(cases, answers)}
    print("\nDisagreements with upstream answers (counted as misses in 'exact'):")
    for kind in ("signature", "separator", "interleaved"):
        names = [key for key, entry in disagreements.items() if entry["kind"] == kind]
        print(f"  {kind}: {len(names)} fixture(s)")
        for key in names:
            entry = disagreements[key]
            follows = " ".join(ours_by_key[key].split()) == " ".join(entry["ours"].split())
            print(f"    {key}{'' if follows else '  (NOT following the policy)'}")
            print(f"        {entry['why']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
