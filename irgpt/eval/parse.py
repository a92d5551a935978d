"""Answer parsers for the nine IR-TD benchmark tasks.

docs/method.md, "The benchmark: 9 tasks, psum and nsum", lists one answer format
per task; this module reads each of them out of free model text (and out of
the ground-truth answers, which use the same formats):

    counting      <num>21</num>                          -> parse_count
    reid          8                                      -> parse_index
    grounding     <box>[[x1, y1, x2, y2], ...]</box>     -> parse_boxes
    location      <ref>car</ref> at <pos>[(x, y), ...]</pos> -> parse_location
    relationship  yes / no                               -> parse_yes_no
    scene, rec.   (B) forest                             -> parse_choice
    security      (A) scooter (B) motor (D) hydrant      -> parse_choice_set
    questions     ...\\n(A) person (B) duck ...           -> parse_options

Every parser returns None for "unparseable"; the scorer counts that as a
wrong answer, never drops it (docs/method.md).

Safety and bounded work (model output is untrusted):
- nothing is evaluated: no ``eval``, no ``ast.literal_eval``;
- only the first ``MAX_ANSWER_CHARS`` (65,536) characters of a text are
  read; a longer answer is parsed on that prefix;
- a number with more than ``MAX_NUMBER_DIGITS`` (15) digits in its integer or
  fractional part is unparseable (15 digits stay exact in a float);
- an answer with more than ``MAX_ITEMS`` (1,000) boxes or points is
  unparseable (it keeps the matching matrices small);
- every regex is linear: no nested or adjacent overlapping quantifiers, and
  bracket groups are found innermost-first with a character class that stops
  at any bracket, so 200,000 open brackets cost one pass. Number lists are
  split with ``str.split``, not a regex.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_ANSWER_CHARS = 65_536
MAX_NUMBER_DIGITS = 15
MAX_ITEMS = 1_000

Box = tuple[float, float, float, float]
Point = tuple[float, float]

_NUMBER = re.compile(r"[-+]?\d{1,15}(?:\.\d{1,15})?")  # fullmatch only
_NUMBER_TOKEN = re.compile(r"\d+(?:\.\d+)?")  # finditer: runs end at a non-digit
# Innermost (...) or [...] group; the class stops at any bracket, so each
# attempt scans at most up to the next bracket. An unclosed last group
# (truncated output) runs to the end of the region.
_GROUP = re.compile(r"[\[(]([^\[\]()]*)(?:[\])]|\Z)")
_MARKER = re.compile(r"\(\s*([A-Za-z])\s*\)")  # option marker "(B)"
_LEAD_LETTER = re.compile(r"\W*([A-Za-z])(?:[).:,]|\s*\Z)")  # "B", "b.", "C) dog"
# "answer is (b)", "option: C"; a bare letter must be a capital ("answer is a
# forest" names no option). No two whitespace runs can share characters
# unless a literal separates them, so failing costs linear time.
_ANSWER_IS = re.compile(
    r"\b(?i:answer|option|choice)(?:\s+(?i:is)\b)?(?:\s*[:\-])?\s*"
    r"(?:\(\s*([A-Za-z])\s*\)|([A-Z])(?![A-Za-z]))"
)
_YES = re.compile(r"\byes\b", re.IGNORECASE)
_NO = re.compile(r"\bno\b", re.IGNORECASE)
_WORD_CHAR = re.compile(r"\w")
_TAGS = {
    name: (
        re.compile(r"<\s*" + name + r"\s*>", re.IGNORECASE),
        re.compile(r"<\s*/\s*" + name + r"\s*>", re.IGNORECASE),
    )
    for name in ("num", "box", "ref", "pos")
}
# Separators allowed between option letters in a bare list: "A, B and D".
_LETTER_SEPARATORS = str.maketrans({c: " " for c in "()[]{},;/&.:"})


def _prefix(text: object) -> str:
    """The bounded part of an answer that is parsed (``MAX_ANSWER_CHARS``)."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    return text[:MAX_ANSWER_CHARS]


def _tag_contents(text: str, tag: str) -> list[str] | None:
    """Contents of each ``<tag>...</tag>``; None when the tag never opens.

    Tags are case-insensitive and may hold spaces (``< num >``). An unclosed
    last tag (truncated output) runs to the end of the text.
    """
    opener, closer = _TAGS[tag]
    out: list[str] = []
    pos = 0
    while len(out) <= MAX_ITEMS:
        m = opener.search(text, pos)
        if m is None:
            break
        c = closer.search(text, m.end())
        if c is None:
            out.append(text[m.end() :])
            break
        out.append(text[m.end() : c.start()])
        pos = c.end()
    return out if out else None


def _group_numbers(content: str) -> list[float] | None:
    """The numbers of one bracket group, or None if it holds anything else."""
    parts = content.replace(",", " ").split()
    values = []
    for part in parts:
        if _NUMBER.fullmatch(part) is None:
            return None
        values.append(float(part))
    return values


def _tuples(regions: list[str], arity: int) -> list[tuple[float, ...]] | None:
    """Innermost groups of exactly ``arity`` numbers; None past MAX_ITEMS."""
    found: list[tuple[float, ...]] = []
    for region in regions:
        for m in _GROUP.finditer(region):
            values = _group_numbers(m.group(1))
            if values is not None and len(values) == arity:
                found.append(tuple(values))
                if len(found) > MAX_ITEMS:
                    return None
    return found


def _explicit_empty(contents: list[str] | None) -> bool:
    """Tags present, holding only brackets, commas and spaces: ``<box>[]</box>``."""
    return contents is not None and all(not c.strip("[](){}, \t\r\n") for c in contents)


def _single_integer(region: str) -> int | None:
    """The one integer a text states, or None (none, several, negative, decimal, too long)."""
    value: int | None = None
    for m in _NUMBER_TOKEN.finditer(region):
        token = m.group()
        whole, _, frac = token.partition(".")
        if len(whole) > MAX_NUMBER_DIGITS or len(frac) > MAX_NUMBER_DIGITS:
            return None
        if frac.strip("0"):
            return None  # 2.5 is not a count
        if m.start() > 0 and region[m.start() - 1] == "-":
            return None  # a negative count, or a range "1-2"
        number = int(whole)
        if value is not None and number != value:
            return None  # ambiguous: two different numbers
        value = number
    return value


def parse_count(text: object) -> int | None:
    """Counting answer ``<num>21</num>`` -> 21.

    The first ``<num>`` tag is read (an unclosed one runs to the end); without
    a tag the answer must state exactly one integer ("There are 21 cars.").
    Several different numbers, a decimal, a negative sign or an over-long
    number make it unparseable.
    """
    s = _prefix(text)
    contents = _tag_contents(s, "num")
    return _single_integer(contents[0] if contents else s)


def parse_index(text: object) -> int | None:
    """ReID answer: the grid cell number ``8`` (same rules as ``parse_count``)."""
    return parse_count(text)


def parse_boxes(text: object) -> list[Box] | None:
    """Grounding answer ``<box>[[x1, y1, x2, y2], [..]]</box>`` -> list of boxes.

    Reads every ``<box>`` tag (or the whole text when there is none) and keeps
    each innermost bracket group of exactly four numbers, so extra nesting and
    surrounding prose are tolerated. ``<box>[]</box>`` is an explicit empty
    answer (``[]``); no box at all is None.
    """
    s = _prefix(text)
    contents = _tag_contents(s, "box")
    boxes = _tuples(contents if contents is not None else [s], 4)
    if boxes is None:
        return None
    if boxes:
        return boxes  # type: ignore[return-value]
    return [] if _explicit_empty(contents) else None


@dataclass(frozen=True)
class Location:
    """A parsed location answer: the category named in ``<ref>`` and the points."""

    ref: str | None
    points: list[Point]


def parse_location(text: object) -> Location | None:
    """Location answer ``<ref>car</ref> at <pos>[(x, y), ...]</pos>``.

    Points are innermost groups of exactly two numbers, ``(x, y)`` or
    ``[x, y]``, from every ``<pos>`` tag (or the whole text when there is
    none). ``<pos>[]</pos>`` is an explicit "no targets" answer (no points);
    no point at all is None. The ref is reported but not scored.
    """
    s = _prefix(text)
    contents = _tag_contents(s, "pos")
    points = _tuples(contents if contents is not None else [s], 2)
    if points is None:
        return None
    if not points and not _explicit_empty(contents):
        return None
    refs = _tag_contents(s, "ref")
    ref = " ".join(refs[0].split()) if refs else None
    return Location(ref or None, points)  # type: ignore[arg-type]


def parse_yes_no(text: object) -> bool | None:
    """Relationship answer: True for yes, False for no.

    An answer that opens with yes/no is read by that word ("No, there is
    not."); otherwise it must contain only one of the two words.
    """
    s = _prefix(text)
    yes, no = _YES.search(s), _NO.search(s)
    if yes is None and no is None:
        return None
    if yes is None:
        return False
    if no is None:
        return True
    first = yes if yes.start() < no.start() else no
    if _WORD_CHAR.search(s, 0, first.start()) is None:
        return first is yes
    return None


def normalise_text(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: option text form."""
    return " ".join(text.lower().split()).strip(" .,;:!?\"'")


def parse_options(question: object) -> dict[str, str]:
    """Options listed in a question: ``(A) person (B) duck`` -> {A: person, B: duck}.

    Option text runs to the next marker or the end of the line and is
    normalised (``normalise_text``). When markers restart at (A) (an example
    in the prompt, then the real list), the last run of two or more wins.
    """
    s = _prefix(question)
    markers = []
    for m in _MARKER.finditer(s):
        markers.append(m)
        if len(markers) > MAX_ITEMS:
            break
    runs: list[dict[str, str]] = []
    for i, m in enumerate(markers):
        letter = m.group(1).upper()
        end = markers[i + 1].start() if i + 1 < len(markers) else len(s)
        option = s[m.end() : end].split("\n", 1)[0]
        if letter == "A" or not runs:
            runs.append({})
        runs[-1].setdefault(letter, normalise_text(option))
    full = [run for run in runs if len(run) >= 2]
    return full[-1] if full else (runs[-1] if runs else {})


def _option_hits(s: str, options: Mapping[str, str]) -> list[str]:
    """Letters whose option text appears in the answer as whole words.

    An option whose text lies inside a longer matching option ("car" in
    "car park") is dropped in favour of the longer one.
    """
    answer = normalise_text(s)
    hits = {}
    for letter, option in options.items():
        option = normalise_text(option)
        if option and _contains_words(answer, option):
            hits[letter] = option
    return sorted(
        letter
        for letter, option in hits.items()
        if not any(o != option and option in o for o in hits.values())
    )


def _contains_words(text: str, words: str) -> bool:
    """``words`` occurs in ``text`` not glued to a letter or digit on either side."""
    start = text.find(words)
    while start >= 0:
        end = start + len(words)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(words, start + 1)
    return False


def parse_choice(text: object, options: Mapping[str, str] | None = None) -> str | None:
    """Single-choice answer (scene, recognition) -> its letter, e.g. ``"B"``.

    In order: the ``(x)`` marker when the answer holds one letter's markers
    only ("The answer is (b) Forest." -> B); "answer/option/choice is (x)"
    or "... is X" (capital), which also settles an answer that echoes the
    option list; a lone leading letter ("B", "b.", "C) dog"); else, given
    ``options`` (letter -> text, e.g. from ``parse_options``), the one option
    whose text appears in the answer. An answer naming several options and
    no choice is unparseable.
    """
    s = _prefix(text)
    letters = set()
    for m in _MARKER.finditer(s):
        letters.add(m.group(1).upper())
        if len(letters) > 1:
            break
    if len(letters) == 1:
        return letters.pop()
    m = _ANSWER_IS.search(s)
    if m is not None:
        return (m.group(1) or m.group(2)).upper()
    if letters:
        return None  # several options named, none chosen
    m = _LEAD_LETTER.match(s)
    if m is not None:
        return m.group(1).upper()
    if options:
        hits = _option_hits(s, options)
        if len(hits) == 1:
            return hits[0]
    return None


def parse_choice_set(
    text: object, options: Mapping[str, str] | None = None
) -> frozenset[str] | None:
    """Multi-choice answer (security) -> its set of letters, e.g. {A, B, D}.

    In order: every ``(x)`` marker; a bare list of letters ("A, B and D",
    "a b d"); else, given ``options``, every option whose text appears.
    """
    s = _prefix(text)
    letters = set()
    for m in _MARKER.finditer(s):
        letters.add(m.group(1).upper())
        if len(letters) >= 26:
            break
    if letters:
        return frozenset(letters)
    tokens = [t for t in s.translate(_LETTER_SEPARATORS).split() if t.lower() not in ("and", "or")]
    if tokens and all(len(t) == 1 and t.isascii() and t.isalpha() for t in tokens):
        return frozenset(t.upper() for t in tokens)
    if options:
        hits = _option_hits(s, options)
        if hits:
            return frozenset(hits)
    return None
