"""HTML pages are indexed without their boilerplate (issue 16): menus, banners, sidebars,
footers, scripts and styles are left out, the article is kept. Real pages built here,
read by the real parser (readability-lxml and lxml underneath)."""

from __future__ import annotations

import pytest

from executor.ingest.errors import DocumentError
from executor.ingest.parsers import parse_html
from executor.ingest.types import Section

ARTICLE = [
    "The Hubble Space Telescope was launched into low Earth orbit in 1990 and remains in "
    "operation. Its four main instruments observe in the ultraviolet, visible, and near "
    "infrared regions of the electromagnetic spectrum.",
    "Hubble's orbit outside the distortion of Earth's atmosphere allows it to capture "
    "extremely high-resolution images with substantially lower background light than "
    "ground-based telescopes. It has recorded some of the most detailed visible light images.",
    "Many Hubble observations have led to breakthroughs in astrophysics, such as determining "
    "the rate of expansion of the universe, which astronomers call the Hubble constant.",
]
BOILERPLATE = [
    "Stargazer Weekly",  # the site's banner
    "Subscribe",
    "Newsroom",  # menu entries
    "Podcasts",
    "Careers",
    "Most read this week",  # sidebar
    "Copyright 2026 Stargazer Media",  # footer
    "Privacy policy",
    "trackPageView",  # script
    "font-family",  # style
]


def semantic_page() -> bytes:
    """A page as a CMS renders it: banner and menu, sidebar, article, footer."""
    paragraphs = "".join(f"<p>{text}</p>\n" for text in ARTICLE)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Hubble at thirty-six | Stargazer Weekly</title>
<style>body {{ font-family: sans-serif }}</style>
<script>window.analytics && analytics.trackPageView();</script>
</head><body>
<header class="site-header">
  <a class="logo" href="/">Stargazer Weekly</a>
  <nav><ul>
    <li><a href="/news">Newsroom</a></li><li><a href="/podcasts">Podcasts</a></li>
    <li><a href="/jobs">Careers</a></li><li><a href="/subscribe">Subscribe</a></li>
  </ul></nav>
</header>
<div class="layout">
<main>
<article>
  <h1>Hubble at thirty-six</h1>
  {paragraphs}
</article>
</main>
<aside class="sidebar"><h2>Most read this week</h2>
  <ul><li><a href="/a">Ten comets to watch</a></li><li><a href="/b">Mars in May</a></li></ul>
</aside>
</div>
<footer><p>Copyright 2026 Stargazer Media. All rights reserved.</p>
  <p><a href="/privacy">Privacy policy</a> | <a href="/terms">Terms</a></p></footer>
</body></html>""".encode()


def div_soup_page() -> bytes:
    """An older site: no semantic elements, boilerplate told only by classes and link lists."""
    paragraphs = "".join(f"<p>{text}</p>\n" for text in ARTICLE)
    return f"""<html><head><title>Hubble at thirty-six</title></head><body>
<div id="top"><div class="menu">
  <a href="/">Stargazer Weekly</a> | <a href="/news">Newsroom</a> |
  <a href="/podcasts">Podcasts</a> | <a href="/jobs">Careers</a> |
  <a href="/subscribe">Subscribe</a>
</div></div>
<div id="sidebar"><b>Most read this week</b><br><a href="/a">Ten comets to watch</a></div>
<div class="post-body"><h2>Hubble at thirty-six</h2>{paragraphs}</div>
<div id="footer">Copyright 2026 Stargazer Media. <a href="/privacy">Privacy policy</a></div>
</body></html>""".encode()


def indexed_text(page: bytes) -> str:
    return "\n".join(s.text for s in parse_html(page, filename="hubble.html"))


@pytest.mark.parametrize("page", [semantic_page, div_soup_page], ids=lambda f: f.__name__)
def test_the_article_is_indexed_without_the_boilerplate(page) -> None:
    text = indexed_text(page())
    for paragraph in ARTICLE:
        assert paragraph in text
    for words in BOILERPLATE:
        assert words not in text, words


@pytest.mark.parametrize("page", [semantic_page, div_soup_page], ids=lambda f: f.__name__)
def test_the_page_title_without_the_site_name_comes_first(page) -> None:
    """The <title> once, not repeated by an <h1> of the same words."""
    sections = parse_html(page(), filename="hubble.html")
    assert sections[:2] == [Section("Hubble at thirty-six", kind="title"), Section(ARTICLE[0])]


def test_a_short_page_without_boilerplate_keeps_its_tables_and_lists() -> None:
    """readability's cleanup would drop these; a page that is all content is read whole."""
    page = b"""<html><body><nav><a href="/">Home</a></nav><h1>Moons</h1>
    <table><tr><th>Planet</th><th>Moons</th></tr><tr><td>Mars</td><td>2</td></tr></table>
    <ul><li>Phobos</li><li>Deimos</li></ul><footer>Copyright Example</footer></body></html>"""
    assert [(s.kind, s.text) for s in parse_html(page, filename="moons.html")] == [
        ("title", "Moons"),
        ("text", "Planet | Moons"),
        ("text", "Mars | 2"),
        ("text", "Phobos"),
        ("text", "Deimos"),
    ]


def test_an_xhtml_page_with_an_xml_declaration_is_read() -> None:
    page = b"""<?xml version="1.0" encoding="utf-8"?>
    <html xmlns="http://www.w3.org/1999/xhtml"><body><p>Plain XHTML text.</p></body></html>"""
    assert parse_html(page, filename="x.xhtml") == [Section("Plain XHTML text.")]


@pytest.mark.parametrize(
    "page",
    [b"", b"   \n", b"<!-- nothing -->", b"<html><body><nav><a href='/'>Home</a></nav></body>"],
)
def test_a_page_with_nothing_but_boilerplate_fails_only_its_task(page: bytes) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_html(page, filename="menu.html")
    assert str(caught.value) == "menu.html: no text to index (the document is empty)"
