"""Reply keywords and mail commands: what a person means by the first words they write.

Responsibility: find the reply keyword (config/keywords.toml: `同意`, `需补充信息：…`,
`SIGN OFF`) at the top of the new text of a reply (`match_keyword`; the caller has already
removed quotes and signatures), and the command in the subject of a mail to an intake
address (`parse_command`: `检索 成本`, `STATUS PRJ-2026-0001`). Pure: text in, values out.

A keyword changes the state of a record, so every doubtful reading yields no keyword (the
caller keeps the reply as a comment or asks the sender) rather than a wrong one:

- It counts only at the start of one of the first two meaningful lines. Greetings
  (`您好`, `Hi Zhang,`), short salutations (`王经理：`, `审批意见：`), banners that mail
  systems insert (`[External]`, `注意：此邮件来自外部`) and decoration lines (`————`) are
  passed over. A short acknowledgement may come first (`好的，同意`, `收到，确认。`, `OK, AGREE`):
  a keyword opening a clause after at most 10 characters counts. A first line that has no keyword
  there lets the second be read (`收到，马上处理。` then `进度：…`) — unless it mentions one
  anywhere (`不同意`, `I agree`, `我们上周已经确认过`, `we approved it`): then it is a sentence
  about the word, and nothing counts.
- What a short answer means depends on what the mail it answers asked for: the caller
  passes the words of that context (config/keywords.toml `[contexts]`: `收到` confirms a
  notice, `同意` or `OK` signs a result), which count as keywords there and win over a
  keyword written the same way.
- It must stand alone: followed by the end of the line, a space, or a punctuation mark
  (`同意。`, `同意，但…`, `AGREE - looks good`), or wrapped in brackets (`【同意】`, `[AGREE]`).
  Glued to more letters it is part of another word (`确认一下`, `同意的话`, `AGREED`);
  the particles 了/啦 are the one exception (`确认了`). A question mark makes it a
  question (`同意？`, `Approve?`), not a decision.
- A Latin keyword in lower or mixed case followed by a space and a word begins an English
  sentence (`Agree with Bob's concerns`, `Close to done`) and does not count; written in
  capitals (`AGREE with Bob`), or followed by punctuation (`Agree, but…`) or by something
  that is not a word (`Delay 2 days`, `Status PRJ-2026-0001`), it does.
- Width and case do not matter (`ＡＧＲＥＥ`, `approve`); the words of a multi-word keyword
  may be joined by spaces, hyphens or nothing (`need-info`, `Sign-off`).
- The longest keyword wins (`同意需求` over `同意`).
- A first line with keywords of two actions is ambiguous (`同意/驳回`, `同意，需补充信息：BOM`):
  no action. A second keyword counts when it opens a clause (after punctuation, or after a
  space following Chinese text) or, in English, is written in capitals (`AGREE REJECT`);
  `同意，但需补充信息…` is agreement with a text. What follows a keyword's colon is its own
  text, so `结果：同意` is a result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from config.forms import Keyword

__all__ = ["Command", "KeywordMatch", "match_keyword", "parse_command"]


@dataclass(frozen=True)
class KeywordMatch:
    action: str | None  # Keyword.action; None when there is no keyword or the line is ambiguous
    text: str  # what follows the keyword; the whole new text when there is no action
    ambiguous: tuple[str, ...] = ()  # the actions found on an ambiguous first line


@dataclass(frozen=True)
class Command:
    name: str  # "help" | "template" | "search" | "status" | "todo" | "team" | "digest_on" | "digest_off"
    argument: str


# Full-width ASCII, the ideographic space, and the no-break and zero-width spaces that
# HTML-to-text conversion leaves at line starts map one-to-one onto ASCII, so an offset in
# the translated text is an offset in the original and the caller gets the text as written.
_HALF_WIDTH = str.maketrans({0x3000: " ", 0x00A0: " ", 0x200B: " ", 0xFEFF: " ",
                             **{0xFF01 + i: chr(0x21 + i) for i in range(94)}})


def _skip_blanks(text: str, pos: int) -> int:
    """The offset past the spaces and tabs at `pos`."""
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


_BRACKETS = {"[": "]", "【": "】", "(": ")", "「": "」", "〔": "〕", "*": "*"}  # *AGREE*: bold in plain text
# Separators between a keyword and its text: 同意，… / 需补充信息：… / AGREE - … / 同意/驳回.
_TEXT_LEAD = " \t:,;.!、。-–—~…/|"
# A banner cut off without one of these at its end continues on the next line.
_SENTENCE_END = ".!)]。】"

# Words that appear only in the warnings mail systems put above the text (Exchange,
# Microsoft 365 "first contact" tip, Tencent/Alibaba/NetEase enterprise mail).
_BANNER = re.compile(
    r"外部邮件|外部发件|外部来信|来自外部|组织外部|公司外部|不经常收到来自|不常收到来自"
    r"|external (?:email|e-mail|mail|sender|message)|originated (?:from )?outside"
    r"|from outside (?:of )?(?:the|your|our) organi[sz]ation|don['’]t often get email",
    re.IGNORECASE)
_BANNER_TAG = re.compile(
    r"[\[【]\s*(?:external|ext|外部|caution|warning|警告|spam|垃圾|suspicious|可疑|phishing|钓鱼)[^\]】]*[\]】]",
    re.IGNORECASE)
_LONE_EXTERNAL = re.compile(r"\W*(?:external|ext)\W*", re.IGNORECASE)

_TITLES = "经理|总监|总|老师|工|主任|部长|处长|科长|组长|主管|老板|先生|女士|小姐|同学|同事|领导|们|团队"
# 您好 / 王经理您好 / 张总，你好 / 各位好 / 各位领导好 / 大家好. A bare "X好" counts only after an
# addressee (各位, 大家, a title), so 很好 or 不好 at the start of a line stay meaningful.
_ZH_GREETING = re.compile(
    r"(?:(?:[^\W\d_]{1,12}?[ \t,:]*)?(?:您好|你好|早上好|上午好|中午好|下午好|晚上好|早安)"
    rf"|(?:各位|大家|诸位|[^\W\d_]{{0,8}}?(?:{_TITLES}))好)(?!\w)[ \t,:;!.。~、…]*")
# Hi Zhang, / Dear Ms. Chen, / Hello all — up to four words before the mark, or a short line.
_EN_GREETING = re.compile(
    r"(?:hi|hello|hey|dear|greetings|good[ \t]+(?:morning|afternoon|evening))\b"
    r"(?:(?:[ \t]+[^\s,:;!]+){0,4}[ \t]*[,:;!]|(?:[ \t]+\S+){0,3}[ \t]*$)",
    re.IGNORECASE)
# 王经理： / 各位领导、同事： / 审批意见： / Zhang Wei: — a short addressee or label before the text.
_SALUTATION = re.compile(r"[^\W\d_][\w .·、]{0,11}?[ \t]*:")
# Zhang Wei, / All, / Team, on a line of their own; only capitalised words, as names are written.
_EN_ADDRESSEE = re.compile(r"[A-Z][\w.]*(?:[ \t]+[A-Z][\w.]*){0,2}[ \t]*,[ \t]*$")

# Subject prefixes a reply or the receiving mail system adds. Forward prefixes are not
# here on purpose: a forwarded mail carries someone else's subject, not a command.
_REPLY_PREFIX = re.compile(r"(?:re|aw|sv|回复|答复|回覆)[ \t]*(?:\[\d+\])?[ \t]*:", re.IGNORECASE)
_COMMAND_WORDS = (
    ("help", ("帮助", "HELP")),
    ("template", ("模板", "TEMPLATE")),
    ("search", ("检索", "SEARCH")),
    ("status", ("状态", "STATUS")),
    ("todo", ("待办", "TODO")),
    ("team", ("部门待办", "TEAM")),
    ("digest_on", ("订阅", "DIGEST ON")),
    ("digest_off", ("退订", "DIGEST OFF")),
)
_NO_ARGUMENT = frozenset({"help", "todo", "team", "digest_on", "digest_off"})


@dataclass(frozen=True)
class _Term:
    action: str
    pattern: re.Pattern[str]
    latin: bool
    mention: re.Pattern[str]  # the word anywhere in a line; Latin words not inside other words


def _term(action: str, word: str, particles: bool) -> _Term:
    word = word.translate(_HALF_WIDTH)  # lines are matched translated
    latin = word.isascii()
    # "NEED INFO" is also written need-info, Need_Info or needinfo.
    body = r"[\s\-_]*".join(re.escape(part) for part in re.split(r"[\s\-_]+", word.strip()))
    mention = rf"(?<![^\W\d_]){body}(?![^\W\d_])" if latin else body  # OK in "look" is no OK
    if particles and not latin:
        body += "(?:了|啦)?"  # 确认了 / 同意啦 say no more than 确认 / 同意
    return _Term(action, re.compile(body, re.IGNORECASE), latin, re.compile(mention, re.IGNORECASE))


def _terms(words: Sequence[tuple[str, str]], particles: bool) -> tuple[_Term, ...]:
    # Longest first, so that 同意需求 is tried before 同意.
    ordered = sorted(words, key=lambda pair: -len(pair[1]))
    return tuple(_term(action, word, particles) for action, word in ordered)


def _words(keywords: Sequence[Keyword]) -> dict[str, tuple[str, str]]:
    """{normalised word: (action, word)} of every word a keyword is written with."""
    return {" ".join(word.translate(_HALF_WIDTH).casefold().split()): (k.action, word)
            for k in keywords for word in (*k.zh, *k.hant, *k.en)}


@lru_cache(maxsize=32)
def _keyword_terms(keywords: tuple[Keyword, ...], context: tuple[Keyword, ...] = ()) -> tuple[_Term, ...]:
    words = _words(keywords) | _words(context)  # in its context, 同意 signs rather than agrees
    return _terms(list(words.values()), particles=True)


def _mentions(norm: str, pos: int, terms: Sequence[_Term], end: int | None = None) -> bool:
    return any(term.mention.search(norm, pos, len(norm) if end is None else end) for term in terms)


ACKNOWLEDGEMENT_CHARS = 10  # 好的， / 收到， / 看过了， / OK, before the keyword


def _after_acknowledgement(norm: str, pos: int, terms: Sequence[_Term]) -> tuple[str, int] | None:
    """A keyword opening the second clause of a line whose first is a short acknowledgement
    free of keywords (好的，同意 / 收到，确认。); None otherwise."""
    limit = min(len(norm), pos + ACKNOWLEDGEMENT_CHARS + 1)
    for i in range(pos + 1, limit):
        if norm[i - 1] in _CLAUSE_MARKS:
            start = _skip_blanks(norm, i)
            found = _word_at(norm, start, terms)
            if found is None or _mentions(norm, pos, terms, i):
                return None
            return found
    return None


_CLAUSE_MARKS = ",;:!.、。~…"  # after the full-width forms are translated


_COMMAND_TERMS = _terms([(name, word) for name, words in _COMMAND_WORDS for word in words], particles=False)


KEYWORD_LINES = 2  # a keyword counts at the start of one of the first this many meaningful lines


def match_keyword(new_text: str, keywords: Sequence[Keyword], context: Sequence[Keyword] = ()) -> KeywordMatch:
    """The keyword near the top of a reply's new text and the text that goes with it: what
    follows the keyword, after the lines above it (the person's own words, greetings left
    out). `context`: the words that mean an action in the context of the mail answered."""
    terms = _keyword_terms(tuple(keywords), tuple(context))
    lines = new_text.splitlines()
    whole = KeywordMatch(None, new_text.strip())
    start = _first_meaningful(lines, terms)
    if start is None:
        return whole
    first = start[0]
    for _ in range(KEYWORD_LINES):
        index, norm, pos = start
        found = _word_at(norm, pos, terms) or _after_acknowledgement(norm, pos, terms)
        if found is not None:
            break
        if _mentions(norm, pos, terms):
            return whole  # 我不同意 / we approved it last week: about a keyword, not one
        start = _first_meaningful(lines, terms, index + 1)
        if start is None:
            return whole
    else:
        return whole
    action, end = found
    actions = tuple(dict.fromkeys([action, *_later_actions(norm, end, terms)]))
    if len(actions) > 1:
        return KeywordMatch(None, whole.text, actions)
    lead = len(norm) - end - len(norm[end:].lstrip(_TEXT_LEAD))
    rest = lines[index][end + lead:]
    return KeywordMatch(action, "\n".join([*lines[first:index], rest, *lines[index + 1:]]).strip())


def parse_command(subject: str) -> Command | None:
    """The mail command a subject line gives, or None when it is not one."""
    norm = subject.translate(_HALF_WIDTH).rstrip(" \t?!.。~…")  # 帮助？ / HELP! ask for the same thing
    pos = _skip_blanks(norm, 0)
    while prefix := _REPLY_PREFIX.match(norm, pos) or _BANNER_TAG.match(norm, pos):
        pos = _skip_blanks(norm, prefix.end())
    found = _word_at(norm, pos, _COMMAND_TERMS)
    if found is None:
        return None
    name, end = found
    argument = " ".join(norm[end:].lstrip(_TEXT_LEAD).split())
    if name in _NO_ARGUMENT and argument:
        return None  # "HELP desk migration", "订阅 服务续费": a subject, not a command
    return Command(name, argument)


def _first_meaningful(lines: Sequence[str], terms: Sequence[_Term], begin: int = 0) -> tuple[int, str, int] | None:
    """Where the text proper starts at or after line `begin`: (line index, translated line,
    offset), past greetings, salutations, banners and decoration; None when there is none."""
    banner_tail = 0  # lines that may still continue a banner cut off mid-sentence
    for index in range(begin, len(lines)):
        line = lines[index]
        norm = line.translate(_HALF_WIDTH)
        pos = len(norm) - len(norm.lstrip())
        if pos == len(norm):
            banner_tail = 0  # a blank line ends a banner
            continue
        if _word_at(norm, pos, terms):
            return index, norm, pos
        if banner_tail or _is_banner(norm, pos):
            # Plain-text conversion wraps a long banner ("CAUTION: … Do not click links or
            # open" / "attachments unless …"); its next line or two belong to it.
            stripped = norm.rstrip()
            unfinished = len(stripped) - pos >= 20 and stripped[-1] not in _SENTENCE_END
            banner_tail = (banner_tail - 1 if banner_tail else 2) if unfinished else 0
            continue
        pos = _skip_greetings(norm, pos, terms)
        if any(ch.isalnum() for ch in norm[pos:]):
            return index, norm, pos
    return None


def _is_banner(norm: str, pos: int) -> bool:
    return bool(_BANNER_TAG.match(norm, pos) or _BANNER.search(norm, pos)
                or _LONE_EXTERNAL.fullmatch(norm, pos))


def _skip_greetings(norm: str, pos: int, terms: Sequence[_Term]) -> int:
    """The offset past greetings and salutations at `pos` (王经理：您好！ is two of them)."""
    while greeting := (_ZH_GREETING.match(norm, pos) or _EN_GREETING.match(norm, pos)
                       or _salutation(norm, pos, terms)):
        pos = _skip_blanks(norm, greeting.end())
    return pos


def _salutation(norm: str, pos: int, terms: Sequence[_Term]) -> re.Match[str] | None:
    found = _SALUTATION.match(norm, pos) or _EN_ADDRESSEE.match(norm, pos)
    # 不同意： or NOT APPROVED, looks like a salutation but is the answer itself; skipping it
    # could turn a keyword on the next line into the opposite of what was meant.
    if found and not any(t.pattern.search(norm, pos, found.end()) for t in terms):
        return found
    return None


def _word_at(norm: str, pos: int, terms: Sequence[_Term]) -> tuple[str, int] | None:
    """(action, end offset) of the keyword standing at `pos` in the translated line, or None."""
    closer = _BRACKETS.get(norm[pos:pos + 1])
    if closer:
        # 【同意】 / [AGREE]: the brackets set the word apart, whatever follows them.
        start = _skip_blanks(norm, pos + 1)
        for term in terms:
            found = term.pattern.match(norm, start)
            if found:
                end = _skip_blanks(norm, found.end())
                if norm.startswith(closer, end):
                    return term.action, end + 1
        return None
    for term in terms:
        found = term.pattern.match(norm, pos)
        if found and _stands_alone(norm, found, term):
            return term.action, found.end()
    return None


def _stands_alone(norm: str, found: re.Match[str], term: _Term) -> bool:
    end = found.end()
    after = _skip_blanks(norm, end)
    if after == len(norm):
        return True
    ch = norm[after]
    if ch == "?":
        return False  # 同意？ asks, it does not decide
    if not ch.isalnum():
        return True  # punctuation, an emoji, an opening bracket
    if after == end:
        return False  # part of a longer word: 确认一下, 同意的话, AGREED
    if term.latin and not found.group().isupper():
        word = norm[after:].split(None, 1)[0]
        return not (word[0].isascii() and word[0].isalpha() and not any(c.isdigit() for c in word))
    return True


def _later_actions(norm: str, end: int, terms: Sequence[_Term]) -> list[str]:
    """Actions of further keywords that open a clause of the line after the first keyword."""
    if norm[_skip_blanks(norm, end):].startswith(":"):
        return []  # 结果：同意 — the colon introduces the keyword's own text
    actions = []
    prev, spaced = norm[end - 1], False
    for i in range(end, len(norm)):
        ch = norm[i]
        if ch.isspace():
            spaced = True
            continue
        # A clause opens after punctuation (同意，需补充信息 / AGREE / REJECT) or after a space
        # following Chinese text (同意 驳回). In English a space only separates words, so there
        # only a keyword in capitals counts, as it does at the start (AGREE REJECT).
        opens_clause = not prev.isalnum() or (spaced and not prev.isascii())
        if opens_clause or spaced:
            found = _word_at(norm, i, terms)
            if found and (opens_clause or norm[i:found[1]].isupper()):
                actions.append(found[0])
        prev, spaced = ch, False
    return actions
