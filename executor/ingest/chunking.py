"""Chunking like upstream's "naive" mode: [Section] -> [Piece] under a token budget.

Text is split into sentences at the delimiters, and sentences are packed into chunks of at most
``chunk_token_num`` tokens; a sentence longer than that is cut between tokens. A title starts a
new chunk and stays with the text after it; a table section is chunked on its own, by rows, and
never shares a chunk with text; ``overlap_percent`` starts each text chunk with the tail of the
previous one. Tokens come from :func:`tokenize`, which works offline: a regex, no model files.

Everything here is a pure function of its inputs, so processing a task twice gives the same
pieces and, through :func:`chunk_id`, the same chunk ids.
"""

from __future__ import annotations

import functools
import itertools
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import xxhash

from executor.ingest.types import Piece, Section

DEFAULT_CHUNK_TOKEN_NUM = 128
DEFAULT_DELIMITER = "\n!?\u3002\uff1b\uff01\uff1f"  # upstream's: \n ! ? and CJK full stop, ; ! ?

# Scripts written without spaces between words: each character is a token, as upstream's
# tokenizer does for Chinese when no dictionary word matches.
_CJK = (
    "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
)
# Combining marks and Indic vowel signs, which are not \w but belong inside a word.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670"
    "\u0900-\u0963\u0966-\u0dff"
)
_LETTER = rf"[^\W_{_CJK}]"
_TOKEN = re.compile(
    rf"[{_CJK}]"  # one CJK character
    r"|\d+(?:[.,]\d+)+"  # a number with decimal or thousands separators: 3.14, 1,000
    rf"|{_LETTER}(?:{_LETTER}|[{_MARKS}])*(?:['\u2019]{_LETTER}+)*"  # words: don't, mp3, 2024
)


# On ASCII text _TOKEN means exactly this (no CJK, no marks, one apostrophe), and this runs
# about 2.5 times faster; most text is ASCII.
_ASCII_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[A-Za-z0-9]+(?:'[A-Za-z0-9]+)*")

# Characters a token can contain. A boundary with any other character on either side
# cannot be inside a token, so tokens found on both sides of it are the tokens of the whole.
_TOKEN_CHAR = re.compile(rf"[\w{_MARKS}.,'\u2019]")

# Lowercased ASCII with every character that no token contains made a space: the words
# split() then finds hold whole tokens, separated by at most . , ' inside.
_ASCII_KEPT = frozenset(string.ascii_lowercase + string.digits + ".,'")
_ASCII_BLANKS = str.maketrans({c: " " for c in map(chr, range(128)) if c not in _ASCII_KEPT})


def _ascii_tokens(text: str) -> list[str]:
    """:func:`tokenize` of ASCII text, about twice as fast as ``_ASCII_TOKEN.findall``: most
    words are letters and digits only, and only the others need the pattern."""
    tokens: list[str] = []
    for word in text.lower().translate(_ASCII_BLANKS).split():
        word = word.strip(".,'")  # a separator at either end joins nothing
        if word.isalnum():
            tokens.append(word)
        elif word:
            tokens += _ASCII_TOKEN.findall(word)
    return tokens


def tokenize(text: str) -> list[str]:
    """Lowercase search tokens: words (letters and digits, inner apostrophes kept), numbers with
    separators, and single CJK characters. Punctuation and whitespace are not tokens."""
    if text.isascii():
        return _ascii_tokens(text)
    return [token.lower() for token in _TOKEN.findall(text)]


def count_tokens(text: str) -> int:
    """How many tokens :func:`tokenize` finds: the unit of ``chunk_token_num``."""
    return len(tokenize(text))


def _token_starts(text: str) -> list[int]:
    """Where each of *text*'s tokens starts. Text cut at these offsets keeps its tokens:
    a piece from one start to a later one has exactly the tokens between them."""
    pattern = _ASCII_TOKEN if text.isascii() else _TOKEN
    return [match.start() for match in pattern.finditer(text)]


def chunk_id(content: str, doc_id: str) -> str:
    """Upstream's chunk id: xxh64 hex of ``content + doc_id``, so re-indexing replaces rather
    than duplicates. ``surrogatepass`` as upstream: a lone surrogate must not fail the task."""
    return xxhash.xxh64((content + doc_id).encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------- splitting


@functools.lru_cache(maxsize=64)
def _delimiter_pattern(delimiter: str) -> re.Pattern[str] | None:
    """Each character of *delimiter* is a delimiter, and so is each backquoted string in it
    (upstream's syntax for multi-character delimiters, e.g. ``\\n`##`!?``)."""
    quoted = re.findall(r"`([^`]+)`", delimiter)
    singles = re.sub(r"`[^`]+`", "", delimiter)
    options = sorted({*quoted, *singles}, key=lambda d: (-len(d), d))
    return re.compile("|".join(map(re.escape, options))) if options else None


def split_sentences(text: str, delimiter: str = DEFAULT_DELIMITER) -> list[str]:
    """Sentences that end with their delimiter; joined back they give *text* unchanged.

    Whitespace-only pieces (runs of newlines) stay attached to the sentence before them.
    """
    pattern = _delimiter_pattern(delimiter)
    if pattern is None:
        return [text] if text else []
    sentences: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        _append_sentence(sentences, text[start : match.end()])
        start = match.end()
    if start < len(text):
        _append_sentence(sentences, text[start:])
    return sentences


def _append_sentence(sentences: list[str], piece: str) -> None:
    if sentences and not piece.strip():
        sentences[-1] += piece
    else:
        sentences.append(piece)


def _cut(text: str, terms: list[str], size: int) -> list[tuple[str, list[str]]]:
    """*text* (whose tokens are *terms*) cut right before every *size*-th token: pieces of at
    most *size* tokens that concatenate back to *text* (the punctuation between tokens stays
    with the earlier piece), each with its tokens."""
    starts = _token_starts(text)
    cuts = [0, *starts[size::size], len(text)]
    return [
        (text[a:b], terms[n * size : (n + 1) * size])
        for n, (a, b) in enumerate(itertools.pairwise(cuts))
        if b > a
    ]


# ---------------------------------------------------------------- packing

_Mode = Literal["empty", "title", "text", "table"]


@dataclass(frozen=True)
class _Unit:
    """A sentence, title or table row (or a token-cut piece of one) with what packing needs."""

    text: str
    terms: list[str]  # tokenize(text), found once: packing counts them, the piece keeps them
    pages: tuple[int, ...]
    sep: str  # put between it and the unit before it in the same chunk

    @property
    def tokens(self) -> int:
        return len(self.terms)


def _units(
    pieces: Iterable[str], pages: tuple[int, ...], sep: str, cap: int | None = None
) -> list[_Unit]:
    """Units of at most *cap* tokens (uncut without a cap); the first one of a section is
    joined with *sep*."""
    units: list[_Unit] = []
    for piece in pieces:
        terms = tokenize(piece)
        parts = [(piece, terms)] if cap is None or len(terms) <= cap else _cut(piece, terms, cap)
        for part, part_terms in parts:
            units.append(_Unit(part, part_terms, pages, sep if not units else ""))
    return units


def _row_units(text: str, pages: tuple[int, ...], cap: int) -> list[_Unit]:
    """Table rows, one unit per line (cut by tokens only if a single row is over budget)."""
    units: list[_Unit] = []
    for row in filter(str.strip, text.split("\n")):
        units.extend(_units([row], pages, "\n", cap))
    return units


class _Packer:
    """Accumulates units into pieces. Lives for one :func:`chunk` call only."""

    def __init__(self, budget: int, overlap: int) -> None:
        self.budget = budget
        self.overlap = overlap
        self.pieces: list[Piece] = []
        self._units: list[_Unit] = []
        self._size = 0
        self._fresh = 0  # units added after the overlap seed: a seed alone is not a chunk
        self._mode: _Mode = "empty"

    # -- section kinds

    def title(self, units: Sequence[_Unit]) -> None:
        """Titles start a chunk (consecutive titles share it) and wait for the text after."""
        if self._mode not in ("empty", "title"):
            self._flush(overlap=False)
        for unit in units:
            if self._size + unit.tokens > self.budget:
                self._flush(overlap=False)
            self._append(unit, "title")

    def text(self, units: Sequence[_Unit]) -> None:
        """Sentences flow into the current chunk; a full chunk is emitted and, with overlap,
        its tail starts the next one."""
        if self._mode == "table":
            self._flush(overlap=False)
        for unit in units:
            self._add_flowing(unit)

    def table(self, units: Sequence[_Unit]) -> None:
        """Rows of one table section, never mixed with text, never overlapped: rows describe
        themselves, and a repeated row would only be a duplicate hit."""
        if self._mode not in ("empty", "title"):
            self._flush(overlap=False)
        for unit in units:
            if self._size + unit.tokens > self.budget:
                self._flush(overlap=False)
            self._append(unit, "table")
        self._flush(overlap=False)

    def finish(self) -> list[Piece]:
        self._flush(overlap=False)
        return self.pieces

    # -- mechanics

    def _add_flowing(self, unit: _Unit) -> None:
        """Add a sentence, starting a new chunk when it does not fit. One that fits in no chunk
        (longer than the budget left after an overlap), or that follows a lone title, is cut
        instead, to fill the current chunk first."""
        room = self.budget - self._size
        if unit.tokens <= room:
            self._append(unit, "text")
        elif unit.tokens > self.budget - self.overlap or self._mode == "title":
            self._add_cut(unit)
        else:
            self._flush(overlap=self._mode == "text")
            self._append(unit, "text")

    def _add_cut(self, unit: _Unit) -> None:
        """Fill chunks with consecutive token runs of *unit*; its tokens are found once, so a
        huge sentence (a text without delimiters) costs linear time, not quadratic."""
        starts = _token_starts(unit.text)
        taken, begin, sep = 0, 0, unit.sep
        while len(starts) - taken > self.budget - self._size:
            room = self.budget - self._size
            if room > 0:
                end = starts[taken + room]
                terms = unit.terms[taken : taken + room]
                self._append(_Unit(unit.text[begin:end], terms, unit.pages, sep), "text")
                taken, begin, sep = taken + room, end, ""
            self._flush(overlap=self._mode == "text")
        self._append(_Unit(unit.text[begin:], unit.terms[taken:], unit.pages, sep), "text")

    def _append(self, unit: _Unit, mode: _Mode) -> None:
        self._units.append(unit)
        self._size += unit.tokens
        self._fresh += 1
        self._mode = mode

    def _flush(self, *, overlap: bool) -> None:
        units, fresh = self._units, self._fresh
        self._units, self._size, self._fresh, self._mode = [], 0, 0, "empty"
        if not fresh:
            return
        parts = _parts(units)
        joined = "".join(parts)
        terms = _terms(parts, units, joined)
        if terms:  # punctuation-only leftovers carry nothing searchable
            pages = sorted({page for unit in units for page in unit.pages})
            self.pieces.append(Piece(joined.strip(), len(terms), tuple(pages), terms))
        seed = _tail(joined, parts, units, terms, self.overlap) if overlap else None
        if seed is not None:
            self._units, self._size, self._mode = [seed], seed.tokens, "text"


def _parts(units: Sequence[_Unit]) -> list[str]:
    """Each unit's text with the separator that joins it to the one before."""
    return [unit.text if index == 0 else unit.sep + unit.text for index, unit in enumerate(units)]


def _terms(parts: list[str], units: Sequence[_Unit], joined: str) -> list[str]:
    """The tokens of *joined*: the units' own, unless a token may run across a join (two
    token characters meet there, as in "3." + "14" with a "." delimiter)."""
    for before, after in itertools.pairwise(parts):
        if before and after and _TOKEN_CHAR.match(before[-1]) and _TOKEN_CHAR.match(after[0]):
            return tokenize(joined)
    return [term for unit in units for term in unit.terms]


def _tail(
    joined: str, parts: list[str], units: Sequence[_Unit], terms: list[str], size: int
) -> _Unit | None:
    """The last *size* tokens of a chunk (with the pages they came from) as the next chunk's
    first unit."""
    starts = _token_starts(joined) if size else []
    if not starts:
        return None
    count = min(size, len(starts))
    start = starts[-count]
    ends = itertools.accumulate(len(part) for part in parts)
    pages = {
        page for unit, end in zip(units, ends, strict=True) if end > start for page in unit.pages
    }
    return _Unit(joined[start:], terms[-count:], tuple(sorted(pages)), "")


# ---------------------------------------------------------------- entry point


def chunk(
    sections: Iterable[Section],
    *,
    chunk_token_num: int = DEFAULT_CHUNK_TOKEN_NUM,
    delimiter: str = DEFAULT_DELIMITER,
    overlap_percent: float = 0,
) -> list[Piece]:
    """Pack *sections* into pieces of at most *chunk_token_num* tokens.

    ``overlap_percent`` of the budget (in tokens) is copied from the end of one text chunk to
    the start of the next, so a sentence cut by a chunk boundary is still found whole in one of
    them. Piece.pages are the pages the piece's text came from (empty for unpaged formats).
    """
    if chunk_token_num < 1:
        raise ValueError(f"chunk_token_num must be at least 1, not {chunk_token_num}")
    if not 0 <= overlap_percent < 100:
        raise ValueError(f"overlap_percent must be in [0, 100), not {overlap_percent}")
    overlap = int(chunk_token_num * overlap_percent / 100)
    packer = _Packer(chunk_token_num, overlap)
    for section in sections:
        text = section.text.strip()
        if not text:
            continue
        pages = () if section.page is None else (section.page,)
        if section.kind == "table":
            packer.table(_row_units(text, pages, chunk_token_num))
        elif section.kind == "title":
            packer.title(_units(split_sentences(text, delimiter), pages, "\n", chunk_token_num))
        else:
            packer.text(_units(split_sentences(text, delimiter), pages, "\n"))
    return packer.finish()
