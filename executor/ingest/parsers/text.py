"""Plain text and Markdown."""

from __future__ import annotations

import re
from collections.abc import Sequence

from executor.ingest.types import Section

from .common import ALL_PAGES, require_sections
from .encoding import decode_text


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, stripped, empty ones dropped."""
    return [block.strip() for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


# ---------------------------------------------------------------- plain text


def parse_text(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """Plain text: one section per paragraph (blank-line separated)."""
    text = decode_text(data, filename)
    return require_sections([Section(p) for p in _paragraphs(text)], filename)


# ---------------------------------------------------------------- Markdown

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _md_inline(text: str) -> str:
    """Links and images keep their visible text only: URLs would be noise tokens in search."""
    return _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", text))


_MD_BLOCK_START = re.compile(r"^ {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|\|)")


def _md_unwrap(lines: Sequence[str]) -> str:
    """A paragraph's lines as Markdown renders them: a soft line break is a space (so chunk
    boundaries at "\\n" fall between sentences, not mid-sentence), but list items, quotes and
    table rows keep their own lines, as do hard breaks (two trailing spaces or a backslash)."""
    parts: list[str] = []
    previous = ""
    for line in lines:
        if parts and (previous.endswith(("  ", "\\")) or _MD_BLOCK_START.match(line)):
            parts[-1] = parts[-1].rstrip("\\")
            parts.append("\n")
        elif parts:
            parts.append(" ")
        parts.append(line.strip())
        previous = line
    return _md_inline("".join(parts).strip())


class _MarkdownReader:
    """Markdown blocks in order: ATX (``#``) and setext (underlined) headings become titles,
    paragraphs text; fenced code is kept verbatim, so a ``#`` comment in code is no heading."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._block: list[str] = []
        self._fence: str | None = None

    def feed(self, line: str) -> None:
        if self._fence is not None:
            self._code_line(line)
        elif opener := _FENCE.match(line):
            self._flush()
            self._fence = opener.group(1)
            self._block.append(line)
        elif heading := _ATX.match(line):
            self._flush()
            self._title(heading.group(2) or "")
        elif self._block and _SETEXT.match(line):
            title = " ".join(part.strip() for part in self._block)
            self._block.clear()
            self._title(title)
        elif line.strip():
            self._block.append(line)
        else:
            self._flush()

    def close(self) -> list[Section]:
        self._flush()
        return self.sections

    def _code_line(self, line: str) -> None:
        self._block.append(line)
        closer = _FENCE.match(line)
        fence = self._fence or ""
        if closer and closer.group(1)[0] == fence[0] and len(closer.group(1)) >= len(fence):
            self._flush()
            self._fence = None

    def _title(self, text: str) -> None:
        if text.strip():
            self.sections.append(Section(_md_inline(text.strip()), kind="title"))

    def _flush(self) -> None:
        code = self._fence is not None
        text = "\n".join(self._block).strip() if code else _md_unwrap(self._block)
        if text:
            self.sections.append(Section(text))
        self._block.clear()


def parse_markdown(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """Markdown: headings become ``title`` sections, paragraphs ``text`` sections."""
    reader = _MarkdownReader()
    for line in decode_text(data, filename).split("\n"):
        reader.feed(line)
    return require_sections(reader.close(), filename)
