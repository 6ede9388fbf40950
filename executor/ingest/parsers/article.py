"""An HTML page's article: its text without the site's menus, banners, footers and sidebars.

Boilerplate repeated on every page of a site would otherwise be indexed with each page and
match queries about the menu instead of the content. Two steps:

1. Landmarks are removed: ``<nav>``, ``<aside>``, a ``<header>``/``<footer>`` outside any
   ``<article>``/``<main>``, and their ARIA-role twins. (readability may still drop an
   article's own header or footer, a byline or a note, as reader views do.)
2. readability-lxml (a port of Arc90's Readability, the "reader view" heuristics; upstream
   RAGFlow v0.21.1 lists it in pyproject.toml line 84) picks the main content of what is left,
   which also removes link-heavy blocks and menus that are plain ``<div>``/``<ul>``.

When readability finds no part of the page better than the whole body (a short page, or one
that is all content), the page without its landmarks is read as it is: readability's cleanup
drops small tables and lists, which on such a page are content.
"""

from __future__ import annotations

import re

_LANDMARKS = (
    "//nav | //aside"
    " | //header[not(ancestor::article or ancestor::main)]"
    " | //footer[not(ancestor::article or ancestor::main)]"
    " | //*[@role='navigation' or @role='banner' or @role='contentinfo'"
    " or @role='complementary' or @role='search']"
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# readability-lxml marks <body> with this id; it is in its output only when it chose the body
_WHOLE_BODY = 'id="readabilityBody"'


def article(page: str) -> tuple[str, str]:
    """``(title, html)``: the page's ``<title>`` without the site's name ("Hubble | Star
    Weekly" -> "Hubble", readability's ``short_title``) and the HTML of its main content.
    Library exceptions propagate: the caller turns them into a DocumentError."""
    from lxml import etree, html
    from readability import Document

    try:
        tree = html.document_fromstring(_XML_DECLARATION.sub("", page, count=1))
    except (etree.ParserError, ValueError):  # no element at all: let the reader say "empty"
        return "", page
    for landmark in tree.xpath(_LANDMARKS):
        if landmark.getparent() is not None:  # not inside one removed already
            landmark.drop_tree()
    document = Document(html.tostring(tree, encoding="unicode"))
    title = document.short_title()  # before summary(), which changes the document
    title = "" if title == "[no-title]" else " ".join(title.split())
    for element in tree.xpath("//title"):
        element.drop_tree()
    summary = document.summary(html_partial=True)
    text = html.fragment_fromstring(summary, create_parent="div").text_content()
    if _WHOLE_BODY in summary or not text.strip():
        return title, html.tostring(tree, encoding="unicode")
    return title, summary
