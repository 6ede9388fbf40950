"""HTML: visible text by block element, from the page's article."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from executor.ingest.types import Section

from .article import article
from .common import ALL_PAGES, reading, require_sections
from .encoding import decode_text

# fmt: off
_HTML_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hr", "html", "legend", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "tfoot", "thead", "title", "tr", "ul",
})
# fmt: on
_HTML_TITLES = frozenset({"title", "h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe"})
_HTML_CELLS = frozenset({"td", "th"})
_HTML_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


class _HtmlText(HTMLParser):
    """Collects visible text, one section per block element; titles and headings as titles.

    Whitespace is collapsed as a browser would, except inside ``<pre>``; ``<br>`` keeps a line
    break; table cells of a row are joined by `` | ``.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._buffer: list[str] = []
        self._skip = 0
        self._pre = 0
        self._heading = 0
        self._cells = 0  # cells seen in the current row, to put " | " between them

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIP:
            self._skip += 1
        elif tag == "br":
            self._buffer.append("\n")
        elif tag in _HTML_CELLS:
            self._buffer.append(" | " if self._cells else "")
            self._cells += 1
        elif tag in _HTML_BLOCKS:
            self._flush()
            self._pre += tag == "pre"
            self._heading += tag in _HTML_TITLES

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._buffer.append("\n")
        elif tag in _HTML_BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _HTML_BLOCKS:
            self._flush()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            if tag in _HTML_TITLES:
                self._heading = max(0, self._heading - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._buffer.append(data if self._pre else re.sub(r"\s+", " ", data))

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        self._cells = 0
        if self._pre:
            text = raw.strip("\n").rstrip()
        else:
            lines = (" ".join(line.split()) for line in raw.split("\n"))
            text = "\n".join(line for line in lines if line)
        if text.strip():
            self.sections.append(Section(text, kind="title" if self._heading else "text"))


def _decode_html(data: bytes, filename: str) -> str:
    """UTF-8 first; then the charset the page declares in a ``<meta>`` tag; then a guess."""
    declared = _HTML_CHARSET.search(data[:4096])
    return decode_text(data, filename, declared.group(1).decode("ascii") if declared else None)


def parse_html(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """HTML: the article's visible text by block element (no menus, headers, footers, scripts
    or styles: see :mod:`.article`); ``<title>``/``<h1..6>`` as titles."""
    text = _decode_html(data, filename)
    reader = _HtmlText()
    with reading(filename, "HTML"):
        title, body = article(text)
        reader.feed(body)
        reader.close()
    sections = reader.sections
    if title and sections[:1] != [Section(title, kind="title")]:
        sections.insert(0, Section(title, kind="title"))
    return require_sections(sections, filename)
