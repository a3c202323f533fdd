"""Reading model answers: item titles, rerank orders, and the GBNF grammar of allowed titles.

The parsers never raise on model output: they return what they could read and say what was
wrong, so callers can count malformed answers instead of crashing on them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lmrec.errors import ConfigError, InputError

#: Longest list a prompt may ask for.
MAX_K = 100

#: Model output longer than this is cut before parsing (bounds the JSON scan).
MAX_OUTPUT_CHARS = 32_000
#: Longest title kept from model output.
MAX_PARSED_TITLE_CHARS = 300
_MAX_JSON_STARTS = 64  # `{` positions tried with raw_decode, so garbage cannot cost O(n^2)


@dataclass(frozen=True)
class ParseResult:
    """Titles read from a model answer, what was wrong with it, and how it was read."""

    titles: list[str]
    problems: list[str]
    format: Literal["json", "partial-json", "list", "none"]


@dataclass(frozen=True)
class OrderResult:
    """A full permutation of candidate indices (0-based), and what was wrong with the answer."""

    order: list[int]
    problems: list[str]
    given: int = 0  # how many of ``order`` the model wrote (the rest were appended)


# ---------------------------------------------------------------------------- parsing

_FENCE_RE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.S)
_TITLE_FIELD_RE = re.compile(r'"title"\s*:\s*"((?:[^"\\\n]|\\.){0,1000})"')
_LIST_RE = re.compile(r"^\s*(?:[-*•·+]|\(?\d{1,3}[.):]|#\d{1,3}[.:]?)\s+(.+?)\s*$")
_EMPHASIS_RE = re.compile(r'^(\*\*|__|\*|"|“)(.+?)(\*\*|__|\*|"|”)(.*)$')
_YEAR_AFTER_RE = re.compile(r"^\s*(\(\d{4}\))")
_DASH_SPLIT_RE = re.compile("\\s+[-\u2013\u2014]\\s+")  # hyphen, en dash, em dash
_JSON_KEY_RE = re.compile(r'^\s*"?[\w ]+"?\s*:\s*[\[{]')


_NOT_JSON = object()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _json_objects(text: str) -> Iterable[Any]:
    """JSON values found in ``text``: fenced blocks, then the whole text, then each ``{``."""
    candidates = [_loads(block) for block in _FENCE_RE.findall(text)]
    candidates.append(_loads(text))
    yield from (c for c in candidates if c is not _NOT_JSON)
    decoder = json.JSONDecoder()
    start, tries = text.find("{"), 0
    while start != -1 and tries < _MAX_JSON_STARTS:
        tries += 1
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            value = _NOT_JSON
        if value is not _NOT_JSON:
            yield value
        start = text.find("{", start + 1)


def _clean_title(raw: object, problems: list[str]) -> str | None:
    if not isinstance(raw, str):
        problems.append(f"non-text title {type(raw).__name__} skipped")
        return None
    title = " ".join(raw.split())
    if not title:
        problems.append("empty title skipped")
        return None
    if len(title) > MAX_PARSED_TITLE_CHARS:
        problems.append(f"title cut to {MAX_PARSED_TITLE_CHARS} characters")
        title = title[:MAX_PARSED_TITLE_CHARS]
    return title


def _bounded(titles: list[str], max_items: int, problems: list[str]) -> list[str]:
    if len(titles) > max_items:
        problems.append(f"{len(titles) - max_items} items beyond {max_items} dropped")
    return titles[:max_items]


def _titles_from_json(value: Any, problems: list[str]) -> list[str] | None:
    entries = value.get("items") if isinstance(value, dict) else value
    if not isinstance(entries, list):
        return None
    if not isinstance(value, dict):
        problems.append('a bare JSON list instead of {"items": [...]}')
    titles = []
    for entry in entries:
        raw = entry.get("title") if isinstance(entry, dict) else entry
        title = _clean_title(raw, problems)
        if title is not None:
            titles.append(title)
    return titles


def _list_line_title(content: str) -> str:
    """The title in a list line such as ``**Heat** (1995) - a heist thriller``."""
    emph = _EMPHASIS_RE.match(content)
    if emph:
        year = _YEAR_AFTER_RE.match(emph.group(4))
        return emph.group(2).strip() + (" " + year.group(1) if year else "")
    parts = _DASH_SPLIT_RE.split(content, maxsplit=1)
    # "Pink Floyd - The Wall" is a title; "Heat - a tense heist thriller with De Niro" is
    # a title plus a reason: only a long tail after the dash is taken for a reason
    if len(parts) == 2 and parts[0] and len(parts[1].split()) >= 4:
        return parts[0]
    return content


def parse_items(text: str, max_items: int) -> ParseResult:
    """Titles from a model answer: ``{"items": [{"title": ...}]}``, else a list of lines.

    Accepts the JSON object alone, in a fenced code block or with chatter around it; a
    truncated object still yields the titles it completed; a numbered or bulleted list is
    the last resort. Never raises: garbage gives no titles and a problem.
    """
    problems: list[str] = []
    if not isinstance(text, str) or not text.strip():
        return ParseResult([], ["empty answer"], "none")
    if max_items < 1:
        return ParseResult([], [f"max_items must be >= 1, got {max_items}"], "none")
    if len(text) > MAX_OUTPUT_CHARS:
        problems.append(f"answer cut to {MAX_OUTPUT_CHARS} characters")
        text = text[:MAX_OUTPUT_CHARS]
    for value in _json_objects(text):
        found = _titles_from_json(value, problems)
        if found is not None:
            if not found:
                problems.append("the JSON answer holds no titles")
            return ParseResult(_bounded(found, max_items, problems), problems, "json")
    partial = []
    for raw in _TITLE_FIELD_RE.findall(text):
        try:
            decoded = json.loads(f'"{raw}"')
        except ValueError:
            decoded = raw
        title = _clean_title(decoded, problems)
        if title is not None:
            partial.append(title)
    if partial:
        problems.append("malformed or truncated JSON; read its complete title fields")
        return ParseResult(_bounded(partial, max_items, problems), problems, "partial-json")
    listed = []
    for line in text.splitlines():
        m = _LIST_RE.match(line)
        if m and not _JSON_KEY_RE.match(m.group(1)):
            title = _clean_title(_list_line_title(m.group(1)), problems)
            if title is not None:
                listed.append(title)
    if listed:
        problems.append("no JSON answer; read a list of lines")
        return ParseResult(_bounded(listed, max_items, problems), problems, "list")
    return ParseResult([], [*problems, "no titles found in the answer"], "none")


def _as_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("[#(").rstrip("])").isdigit():
        return int(value.strip().lstrip("[#(").rstrip("])"))
    if isinstance(value, dict):
        return _as_number(value.get("number", value.get("n")))
    return None


def parse_order_result(text: str, n: int) -> OrderResult:
    """`parse_order` with the problems found in the answer."""
    problems: list[str] = []
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    if not isinstance(text, str):
        text = ""
    text = text[:MAX_OUTPUT_CHARS]
    raw: list[Any] | None = None
    for value in _json_objects(text):
        entries = value.get("order") if isinstance(value, dict) else value
        if isinstance(entries, list):
            raw = entries
            break
    if raw is None:
        bracketed = re.findall(r"\[(\d{1,4})\]", text)
        raw = bracketed or re.findall(r"\b\d{1,4}\b", text)
        problems.append("no JSON order; read the numbers in the answer")
    seen: set[int] = set()
    order: list[int] = []
    for entry in raw:
        number = _as_number(entry)
        if number is None or not 1 <= number <= n:
            problems.append(f"invalid candidate number {str(entry)[:20]!r} ignored")
        elif number - 1 in seen:
            problems.append(f"candidate {number} repeated")
        else:
            seen.add(number - 1)
            order.append(number - 1)
    missing = [i for i in range(n) if i not in seen]
    if missing:
        problems.append(f"{len(missing)} candidates missing; appended in their original order")
    return OrderResult(order + missing, problems, len(order))


def parse_order(text: str, n: int) -> list[int]:
    """A full permutation of ``range(n)`` from a rerank answer (1-based numbers in, 0-based out).

    Valid numbers are kept in the model's order, repeats and out-of-range numbers are
    dropped, and candidates the model left out follow in their original order.
    """
    return parse_order_result(text, n).order


# ---------------------------------------------------------------------------- grammar


def _gbnf_literal(text: str) -> str:
    """A GBNF string literal matching ``text`` exactly (UTF-8 kept, specials escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _trie_expr(words: list[str]) -> str:
    """A GBNF expression matching exactly ``words`` (distinct, non-empty), as a radix trie."""
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault(w[0], []).append(w)
    branches = []
    for members in groups.values():
        prefix = members[0]
        for m in members[1:]:
            while not m.startswith(prefix):
                prefix = prefix[:-1]
        rests = sorted({m[len(prefix) :] for m in members})
        if rests == [""]:
            branches.append(_gbnf_literal(prefix))
            continue
        # a title that is a prefix of others ends here: the rest becomes optional
        opt = "?" if rests[0] == "" else ""
        tail = _trie_expr([r for r in rests if r])
        branches.append(f"{_gbnf_literal(prefix)} ({tail}){opt}")
    return " | ".join(branches)


def title_grammar(titles: Sequence[str], k: int) -> str:
    """GBNF (llama.cpp) for ``{"items": [{"title": "<one of titles>"}, ...]}`` with 1..k items.

    The titles appear JSON-escaped (as they must in the answer) inside GBNF literals, and
    are factored by common prefixes so the decoder tracks few alternatives at a time. The
    grammar fixes the layout (one space after ``:`` and ``,``), so answers parse as JSON.

    Raises:
        ConfigError: If ``k`` is out of range.
        InputError: If no non-empty title is given.
    """
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be between 1 and {MAX_K}, got {k}")
    encoded = sorted({json.dumps(t, ensure_ascii=False)[1:-1] for t in titles if t and t.strip()})
    if not encoded:
        raise InputError("a title grammar needs at least one non-empty title")
    rules = ['root ::= "{\\"items\\": [" item' + (" more1" if k > 1 else "") + ' "]}"']
    for i in range(1, k):
        nxt = f" more{i + 1}" if i + 1 < k else ""
        rules.append(f'more{i} ::= (", " item{nxt})?')
    rules.append('item ::= "{\\"title\\": \\"" title "\\"}"')
    rules.append(f"title ::= {_trie_expr(encoded)}")
    return "\n".join(rules) + "\n"


def order_grammar(n: int, k: int) -> str:
    """GBNF for ``{"order": [i, j, ...]}`` with 1..k numbers, each one of ``1..n``.

    Repeats are not excluded (GBNF has no memory); `parse_order_result` drops them.

    Raises:
        ConfigError: If ``n`` or ``k`` is out of range.
    """
    if not 1 <= k <= MAX_K or n < 1:
        raise ConfigError(f"need n >= 1 and k between 1 and {MAX_K}, got n={n}, k={k}")
    rules = ['root ::= "{\\"order\\": [" num' + (" more1" if k > 1 else "") + ' "]}"']
    for i in range(1, min(k, n)):
        nxt = f" more{i + 1}" if i + 1 < min(k, n) else ""
        rules.append(f'more{i} ::= (", " num{nxt})?')
    rules.append("num ::= " + _trie_expr([str(i) for i in range(1, n + 1)]))
    return "\n".join(rules) + "\n"
