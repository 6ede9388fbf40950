"""Parsers on real files: generated here with fpdf2, python-docx and openpyxl, and the bundled
samples/ corpus. Broken inputs must raise DocumentError with a message an operator can act on."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from types import ModuleType

import docx
import pypdf
import pytest
from fpdf import FPDF
from openpyxl import Workbook
from PIL import Image, ImageDraw

from executor.ingest import parsers
from executor.ingest.errors import DocumentError
from executor.ingest.parsers import (
    ROWS_PER_SECTION,
    SUPPORTED_SUFFIXES,
    parse_csv,
    parse_docx,
    parse_html,
    parse_json,
    parse_markdown,
    parse_pdf,
    parse_text,
    parse_xlsx,
    parser_for,
    pdf_page_count,
)
from executor.ingest.types import Section

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CORPUS = SAMPLES / "corpus"


# ---------------------------------------------------------------- file builders


def make_pdf(pages: list[str]) -> bytes:
    """One page per string (an empty string makes a blank page)."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_scanned_pdf() -> bytes:
    """A page that is only a picture of text, as a scanner makes it."""
    image = Image.new("RGB", (400, 100), "white")
    ImageDraw.Draw(image).text((10, 40), "This is a scanned page", fill="black")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=150)
    return bytes(pdf.output())


def encrypt_pdf(data: bytes, user_password: str, algorithm: str = "RC4-128") -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(build: Callable[[docx.document.Document], None]) -> bytes:
    document = docx.Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx(sheets: dict[str, list[tuple[object, ...]]]) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def error_of(parse: Callable[..., list[Section]], data: bytes, filename: str, **kw: int) -> str:
    with pytest.raises(DocumentError) as caught:
        parse(data, filename=filename, **kw)
    return str(caught.value)


def texts(sections: list[Section]) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in sections]


# ---------------------------------------------------------------- plain text


def test_text_paragraphs_are_sections() -> None:
    data = b"First paragraph,\nwrapped.\n\n\n  Second one.  \r\n \r\nThird\r\n"
    assert texts(parse_text(data, filename="a.txt")) == [
        ("text", "First paragraph,\nwrapped."),
        ("text", "Second one."),
        ("text", "Third"),
    ]


def test_text_accepts_utf8_bom_and_utf16() -> None:
    assert parse_text("\ufeffcafé".encode(), filename="a.txt") == [Section("café")]
    assert parse_text("naïve 中文".encode("utf-16"), filename="a.txt") == [Section("naïve 中文")]


def test_text_with_nul_bytes_is_binary() -> None:
    message = error_of(parse_text, b"MZ\x90\x00\x03\x00\x00\x00", "program.txt")
    assert message == "program.txt: binary content (NUL bytes), not text"


def test_empty_text_is_an_error() -> None:
    message = error_of(parse_text, b" \n\n \n", "empty.txt")
    assert message == "empty.txt: no text to index (the document is empty)"


# ---------------------------------------------------------------- Markdown


def test_markdown_headings_paragraphs_lists_and_code() -> None:
    source = """# Title

Intro paragraph that is
hard-wrapped over lines, with a [link](https://example.com/x) and ![a cat](cat.png).

Setext heading
--------------

- first item
- second item

```python
# a comment, not a heading
print("hi")
```

## Closing ##
Last line.\\
After a hard break.
"""
    assert texts(parse_markdown(source.encode(), filename="doc.md")) == [
        ("title", "Title"),
        (
            "text",
            "Intro paragraph that is hard-wrapped over lines, with a link and a cat.",
        ),
        ("title", "Setext heading"),
        ("text", "- first item\n- second item"),
        ("text", '```python\n# a comment, not a heading\nprint("hi")\n```'),
        ("title", "Closing"),
        ("text", "Last line.\nAfter a hard break."),
    ]
    two_spaces = b"one  \ntwo\nthree"
    assert parse_markdown(two_spaces, filename="b.md") == [Section("one\ntwo three")]


def test_markdown_suffixes_share_the_parser() -> None:
    assert parser_for("notes.markdown") == ("naive", parse_markdown)
    assert parser_for("NOTES.MD") == ("naive", parse_markdown)


# ---------------------------------------------------------------- HTML


def test_html_visible_text_by_block() -> None:
    page = b"""<!doctype html><html><head><title>The  Page</title>
    <style>p { color: red }</style><script>var hidden = "no";</script></head>
    <body><h1>Main &amp; heading</h1>
    <p>First   paragraph
       wraps.<br>After a break.</p>
    <div>Outer <span>inline</span> text<p>inner block</p>tail</div>
    <noscript>enable JS</noscript>
    <table><tr><th>Name</th><th>Moons</th></tr><tr><td>Mars</td><td>2</td></tr></table>
    <pre>  keep
    spacing</pre>
    <ul><li>one</li><li>two</li></ul>
    </body></html>"""
    assert texts(parse_html(page, filename="page.html")) == [
        ("title", "The Page"),
        ("title", "Main & heading"),
        ("text", "First paragraph wraps.\nAfter a break."),
        ("text", "Outer inline text"),
        ("text", "inner block"),
        ("text", "tail"),
        ("text", "Name | Moons"),
        ("text", "Mars | 2"),
        ("text", "  keep\n    spacing"),
        ("text", "one"),
        ("text", "two"),
    ]


def test_html_uses_the_declared_charset_when_not_utf8() -> None:
    page = '<meta charset="iso-8859-1"><p>Café crème</p>'.encode("latin-1")
    assert texts(parse_html(page, filename="old.htm")) == [("text", "Café crème")]


def test_html_undeclared_non_utf8_is_guessed() -> None:
    page = "<p>Café au lait, crème brûlée</p>".encode("cp1252")
    assert texts(parse_html(page, filename="old.html")) == [("text", "Café au lait, crème brûlée")]


def test_html_wrongly_declared_charset_is_guessed() -> None:
    page = '<meta charset="utf-8"><p>Smörgåsbord à la carte</p>'.encode("cp1252")
    assert texts(parse_html(page, filename="old.htm")) == [("text", "Smörgåsbord à la carte")]


def test_html_with_only_scripts_has_no_text() -> None:
    page = b"<html><head><script>alert(1)</script><style>b{}</style></head><body></body></html>"
    message = error_of(parse_html, page, "app.html")
    assert message == "app.html: no text to index (the document is empty)"


# ---------------------------------------------------------------- PDF


def test_pdf_one_section_per_page_with_page_numbers() -> None:
    data = make_pdf(["Page one text.", "", "Page three text."])
    assert parse_pdf(data, filename="a.pdf") == [
        Section("Page one text.", page=1),
        Section("Page three text.", page=3),
    ]
    assert pdf_page_count(data) == 3


def test_pdf_page_range_reads_only_those_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_pdf([f"Text of page {n}." for n in range(1, 8)])
    extracted: list[str] = []
    original = pypdf.PageObject.extract_text

    def spy(self: pypdf.PageObject, *args: object, **kwargs: object) -> str:
        text = original(self, *args, **kwargs)
        extracted.append(text)
        return text

    monkeypatch.setattr(pypdf.PageObject, "extract_text", spy)
    sections = parse_pdf(data, filename="a.pdf", from_page=2, to_page=5)
    assert sections == [Section(f"Text of page {n}.", page=n) for n in (3, 4, 5)]
    assert extracted == ["Text of page 3.", "Text of page 4.", "Text of page 5."]


def test_pdf_page_range_is_clipped_to_the_document() -> None:
    data = make_pdf(["one", "two", "three"])
    assert [s.page for s in parse_pdf(data, filename="a.pdf", from_page=1)] == [2, 3]
    message = error_of(parse_pdf, data, "a.pdf", from_page=12, to_page=24)
    assert message == "a.pdf: pages 12-24 are outside its 3 pages"


def test_pdf_blank_pages_of_a_text_document_give_no_sections() -> None:
    """The last 12-page task of a book may hold only an empty page: not an error."""
    data = make_pdf(["Some text.", "More text.", ""])
    assert parse_pdf(data, filename="book.pdf", from_page=2, to_page=3) == []


def test_pdf_without_text_layer_is_an_error() -> None:
    message = error_of(parse_pdf, make_scanned_pdf(), "scan.pdf")
    assert message == "scan.pdf: no text layer (scanned PDF?); OCR is not supported"


def test_pdf_truncated_is_an_error() -> None:
    data = make_pdf(["Page one text.", "Page two text."])
    message = error_of(parse_pdf, data[: len(data) // 2], "cut.pdf")
    assert message.startswith("cut.pdf: corrupt or unreadable PDF: ")
    assert "\n" not in message and "Traceback" not in message


def test_pdf_wrong_content_is_an_error() -> None:
    message = error_of(parse_pdf, b"<html>not a pdf</html>", "page.pdf")
    assert message == "page.pdf: not a PDF file (no %PDF- header)"
    with pytest.raises(DocumentError, match=r"^x\.pdf: not a PDF file"):
        pdf_page_count(b"hello", filename="x.pdf")


ALGORITHMS = ["RC4-128", "AES-128", "AES-256"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pdf_encrypted_with_a_password_is_an_error(algorithm: str) -> None:
    data = encrypt_pdf(make_pdf(["Secret text."]), user_password="secret", algorithm=algorithm)
    message = error_of(parse_pdf, data, "locked.pdf")
    assert message == "locked.pdf: the PDF is encrypted (password-protected)"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pdf_with_only_an_owner_password_is_read(algorithm: str) -> None:
    """Opens in any viewer, so it is indexed; AES needs `cryptography` (issue 16)."""
    data = encrypt_pdf(make_pdf(["Open text.", "Page two."]), user_password="", algorithm=algorithm)
    assert pdf_page_count(data) == 2
    assert parse_pdf(data, filename="restricted.pdf") == [
        Section("Open text.", page=1),
        Section("Page two.", page=2),
    ]


def test_an_aes_pdf_without_cryptography_says_what_is_missing(tmp_path: Path) -> None:
    """A host without the package (hidden from a child interpreter: pypdf then falls back to
    its RC4-only provider) gets a message naming it, not "corrupt PDF"."""
    path = tmp_path / "aes.pdf"
    path.write_bytes(encrypt_pdf(make_pdf(["Open text."]), user_password="", algorithm="AES-256"))
    script = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from executor.ingest.parsers import parse_pdf\n"
        "from executor.ingest.errors import DocumentError\n"
        "try:\n"
        f"    parse_pdf(open({str(path)!r}, 'rb').read(), filename='aes.pdf')\n"
        "except DocumentError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout == (
        "aes.pdf: the PDF is AES-encrypted and this host lacks the 'cryptography' package "
        "to open it\n"
    ), done.stderr


def test_the_readers_dependencies_are_declared() -> None:
    """Installed here by other packages too, so a missing declaration would pass every other
    test and fail on a host that installs only ragfleet."""
    required = {
        re.split(r"[<>=\[; ]", line, maxsplit=1)[0].lower()
        for line in importlib.metadata.requires("ragfleet") or []
        if "extra ==" not in line
    }
    assert {"cryptography", "charset-normalizer", "readability-lxml"} <= required


# ---------------------------------------------------------------- DOCX


def _report(document: docx.document.Document) -> None:
    document.add_heading("Annual report", level=0)
    document.add_paragraph("An introduction.")
    document.add_heading("Results", level=1)
    document.add_paragraph("")
    table = document.add_table(rows=3, cols=3)
    rows = [("Name", "Moons", "Rings"), ("Mars", "2", ""), ("Saturn", "146", "yes")]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("After the table.")
    merged = document.add_table(rows=2, cols=2)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "Both columns"
    merged.cell(1, 0).text = "a"
    merged.cell(1, 1).text = "b"


def test_docx_headings_paragraphs_and_tables_in_order() -> None:
    assert texts(parse_docx(make_docx(_report), filename="report.docx")) == [
        ("title", "Annual report"),
        ("text", "An introduction."),
        ("title", "Results"),
        ("table", "Name: Mars; Moons: 2\nName: Saturn; Moons: 146; Rings: yes"),
        ("text", "After the table."),
        ("table", "Both columns: a; column 2: b"),
    ]


def test_docx_random_bytes_is_an_error() -> None:
    message = error_of(parse_docx, bytes(range(256)) * 4, "memo.docx")
    assert message == (
        "memo.docx: not a valid DOCX file (not a zip archive: corrupt or another format)"
    )


def test_docx_that_is_really_a_spreadsheet_is_an_error() -> None:
    message = error_of(parse_docx, make_xlsx({"S": [("a",)]}), "renamed.docx")
    assert message.startswith("renamed.docx: corrupt or unreadable DOCX: file is not a Word file")
    assert "object at 0x" not in message


def test_legacy_or_encrypted_office_file_is_named_as_such() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    message = error_of(parse_docx, ole, "old.docx")
    assert message.startswith("old.docx: not a valid DOCX file: it is password-protected or")


def test_docx_truncated_is_an_error() -> None:
    data = make_docx(_report)
    message = error_of(parse_docx, data[: len(data) // 2], "cut.docx")
    assert message.startswith("cut.docx: corrupt or unreadable DOCX: ")


# ---------------------------------------------------------------- XLSX


def test_xlsx_every_sheet_rows_as_header_value_lines() -> None:
    data = make_xlsx(
        {
            "Planets": [
                ("name", "moons", "mass (Earth=1)", "seen", "visited", None),
                (None, None, None, None, None, None),
                ("Mars", 2, 0.107, date(1610, 1, 1), True, None),
                ("Jupiter", 95.0, 317.8, datetime(1610, 1, 7, 20, 30), False, "extra"),
            ],
            "Empty": [],
            "Notes": [("note",), ("Pluto was reclassified in 2006",)],
        }
    )
    assert texts(parse_xlsx(data, filename="planets.xlsx")) == [
        ("title", "Planets"),
        (
            "table",
            "name: Mars; moons: 2; mass (Earth=1): 0.107; seen: 1610-01-01; visited: true\n"
            "name: Jupiter; moons: 95; mass (Earth=1): 317.8; seen: 1610-01-07 20:30:00; "
            "visited: false; column 6: extra",
        ),
        ("title", "Notes"),
        ("table", "note: Pluto was reclassified in 2006"),
    ]


def test_xlsx_rows_are_batched() -> None:
    rows = [("n", "square")] + [(n, n * n) for n in range(1, 46)]
    sections = parse_xlsx(make_xlsx({"Squares": rows}), filename="squares.xlsx")
    tables = [s for s in sections if s.kind == "table"]
    assert [len(s.text.split("\n")) for s in tables] == [ROWS_PER_SECTION, ROWS_PER_SECTION, 5]
    assert tables[2].text.split("\n")[-1] == "n: 45; square: 2025"


def test_xlsx_random_bytes_is_an_error() -> None:
    message = error_of(parse_xlsx, b"\x00\x01garbage" * 50, "data.xlsx")
    assert message == (
        "data.xlsx: not a valid XLSX file (not a zip archive: corrupt or another format)"
    )


def test_xlsx_that_is_really_a_document_is_an_error() -> None:
    message = error_of(parse_xlsx, make_docx(_report), "renamed.xlsx")
    assert message.startswith("renamed.xlsx: corrupt or unreadable XLSX: ")


# ---------------------------------------------------------------- CSV


def test_csv_rows_as_self_describing_lines() -> None:
    data = b'planet,,notes\nMercury,0.39,"closest, smallest"\n\n,,\nVenus,0.72,,hot\n'
    assert texts(parse_csv(data, filename="p.csv")) == [
        (
            "table",
            "planet: Mercury; column 2: 0.39; notes: closest, smallest\n"
            "planet: Venus; column 2: 0.72; column 4: hot",
        )
    ]


def test_csv_semicolon_and_tab_delimiters_are_detected() -> None:
    assert parse_csv(b"a;b\n1;2\n3;4\n", filename="s.csv") == [
        Section("a: 1; b: 2\na: 3; b: 4", kind="table")
    ]
    assert parse_csv(b"a\tb\n1\t2\n", filename="t.csv") == [Section("a: 1; b: 2", kind="table")]


def test_csv_rows_are_batched() -> None:
    data = "n\n" + "".join(f"{n}\n" for n in range(45))
    sections = parse_csv(data.encode(), filename="n.csv")
    assert [s.text.count("\n") + 1 for s in sections] == [20, 20, 5]


def test_csv_malformed_is_an_error() -> None:
    data = b"a,b\n" + b'"' + b"x" * 200_000 + b'",1\n'
    message = error_of(parse_csv, data, "huge.csv")
    assert message.startswith("huge.csv: malformed CSV at line 2: field larger than field limit")


def test_csv_not_text_is_an_error() -> None:
    message = error_of(parse_csv, make_xlsx({"S": [("a",)]}), "sheet.csv")
    assert message.startswith("sheet.csv: ")
    assert "not UTF-8 text" in message or "binary content" in message


# ---------------------------------------------------------------- JSON


def test_json_is_flattened_to_path_value_lines() -> None:
    value = {
        "name": "Mars",
        "moons": [{"name": "Phobos", "km": 22.5}, {"name": "Deimos", "km": 12.4}],
        "habitable": False,
        "life": None,
        "notes": "red\n  planet",
        "empty": {},
    }
    assert parse_json(json.dumps(value).encode(), filename="mars.json") == [
        Section(
            "name: Mars\nmoons[0].name: Phobos\nmoons[0].km: 22.5\nmoons[1].name: Deimos\n"
            "moons[1].km: 12.4\nhabitable: false\nlife: null\nnotes: red planet",
            kind="table",
        )
    ]


def test_json_lines_are_batched_and_scalars_accepted() -> None:
    sections = parse_json(json.dumps(list(range(45))).encode(), filename="n.json")
    assert [s.text.count("\n") + 1 for s in sections] == [20, 20, 5]
    assert sections[0].text.startswith("[0]: 0\n[1]: 1")
    assert parse_json(b'"just a string"', filename="s.json") == [
        Section("just a string", kind="table")
    ]


def test_json_deep_nesting_does_not_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    message = error_of(parse_json, deep.encode(), "deep.json")
    assert message.startswith("deep.json: ")


def test_json_invalid_is_an_error() -> None:
    message = error_of(parse_json, b'{"a": 1 "b": 2}', "bad.json")
    assert message == "bad.json: invalid JSON: Expecting ',' delimiter at line 1 column 9"


@pytest.mark.parametrize("name", ["empty.json", "empty.jsonl"])
@pytest.mark.parametrize("data", [b"{}", b"", b" \n\n", b"{}\n[]\n{}\n"])
def test_json_empty_is_an_error(name: str, data: bytes) -> None:
    assert error_of(parse_json, data, name) == f"{name}: no text to index (the document is empty)"


# ---------------------------------------------------------------- JSON Lines (issue 16)

PLANETS = [
    {"name": "Mercury", "moons": 0, "rings": False},
    {"name": "Venus", "moons": 0, "atmosphere": {"main": "CO2"}},
    {"name": "Earth", "moons": 1, "seen": ["Moon"]},
    {"name": "Mars", "moons": 2, "seen": ["Phobos", "Deimos"], "note": None},
]
PLANET_RECORDS = [
    "name: Mercury; moons: 0; rings: false",
    "name: Venus; moons: 0; atmosphere.main: CO2",
    "name: Earth; moons: 1; seen[0]: Moon",
    "name: Mars; moons: 2; seen[0]: Phobos; seen[1]: Deimos; note: null",
]


def json_lines(records: list[object]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.mark.parametrize("name", ["planets.jsonl", "planets.ldjson", "planets.json"])
def test_json_lines_one_record_a_line_whatever_the_suffix(name: str) -> None:
    """Upstream reads .json, .jsonl and .ldjson with one parser that tells JSON Lines by its
    content (rag/app/naive.py line 602; deepdoc/parser/json_parser.py line 37, v0.21.1)."""
    assert parser_for(name) == ("naive", parse_json)
    sections = parse_json(json_lines(PLANETS), filename=name)
    assert sections == [Section("\n".join(PLANET_RECORDS), kind="table")]


def test_json_lines_records_are_batched() -> None:
    data = json_lines([{"n": n} for n in range(45)]) + b"\n\n"  # blank lines are no records
    sections = parse_json(data, filename="n.jsonl")
    assert [s.text.count("\n") + 1 for s in sections] == [ROWS_PER_SECTION, ROWS_PER_SECTION, 5]
    assert sections[2].text.endswith("n: 44")


def test_json_lines_malformed_lines_are_skipped_as_upstream_does() -> None:
    """Upstream skips a line that is not JSON (json_parser.py lines 140-152) once the file is
    JSON Lines: 80% of its first 10 non-blank lines parse (lines 154-172). A log cut off
    mid-line keeps its other records."""
    lines = json_lines([*PLANETS, *({"n": n} for n in range(6))]).decode().splitlines()
    data = "\n".join([*lines[:2], "{not json", *lines[2:], '{"name": "Jupi']).encode()
    assert parse_json(data, filename="cut.jsonl") == [
        Section("\n".join([*PLANET_RECORDS, *(f"n: {n}" for n in range(6))]), kind="table")
    ]


def test_mostly_malformed_json_lines_are_an_error() -> None:
    data = b'{"a": 1}\n{"b": 2}\n{oops\n{"c": 3}\nnot json\n'
    assert error_of(parse_json, data, "bad.jsonl") == (
        "bad.jsonl: invalid JSON Lines: line 3 is not a JSON value, nor are 2 of the first 5 "
        "lines (at most 20% may be malformed)"
    )
    # the same bytes as .json: the error says where the one JSON value breaks
    assert error_of(parse_json, data, "bad.json") == (
        "bad.json: invalid JSON: Extra data at line 2 column 1"
    )


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("filename", "parser_id", "parse"),
    [
        ("a.txt", "naive", parse_text),
        ("a.md", "naive", parse_markdown),
        ("a.markdown", "naive", parse_markdown),
        ("a.html", "naive", parse_html),
        ("A.HTM", "naive", parse_html),
        ("dir/a.pdf", "naive", parse_pdf),
        ("a.docx", "naive", parse_docx),
        ("a.csv", "table", parse_csv),
        ("a.xlsx", "table", parse_xlsx),
        ("a.json", "naive", parse_json),
        ("a.jsonl", "naive", parse_json),
        ("A.LDJSON", "naive", parse_json),
    ],
)
def test_parser_for_chooses_by_suffix(filename: str, parser_id: str, parse: object) -> None:
    assert parser_for(filename) == (parser_id, parse)


def test_supported_suffixes() -> None:
    expected = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".xlsx"}
    assert expected | {".json", ".jsonl", ".ldjson"} == SUPPORTED_SUFFIXES


def test_parser_for_honours_a_parser_id() -> None:
    assert parser_for("a.csv", "naive") == ("naive", parse_csv)
    assert parser_for("a.xlsx", " Table ") == ("table", parse_xlsx)
    assert parser_for("a.pdf", "") == ("naive", parse_pdf)
    with pytest.raises(DocumentError) as caught:
        parser_for("a.pdf", "table")
    assert str(caught.value) == "a.pdf: parser 'table' reads .csv and .xlsx files, not .pdf"
    with pytest.raises(DocumentError) as caught:
        parser_for("a.pdf", "qa")
    assert str(caught.value) == "a.pdf: parser 'qa' is not supported (ragfleet has: naive, table)"


def test_parser_for_unsupported_suffix() -> None:
    with pytest.raises(DocumentError) as caught:
        parser_for("slides.pptx")
    assert str(caught.value).startswith(
        "slides.pptx: unsupported file type: '.pptx' files (supported: .csv, .docx, .htm, "
    )
    with pytest.raises(DocumentError, match=r"^README: unsupported file type: files without a "):
        parser_for("README")


# ---------------------------------------------------------------- the bundled corpus


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file())


def test_corpus_has_every_type_and_is_small() -> None:
    files = corpus_files()
    suffixes = {p.suffix for p in files}
    assert {".txt", ".md", ".html", ".pdf", ".docx", ".csv", ".xlsx", ".json", ".jsonl"} <= suffixes
    assert suffixes <= SUPPORTED_SUFFIXES
    assert sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file()) < 1_000_000


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_file_parses(path: Path) -> None:
    _, parse = parser_for(path.name)
    sections = parse(path.read_bytes(), filename=path.name)
    assert sections and all(s.text.strip() for s in sections)


def test_corpus_expected_structure() -> None:
    def parse(name: str) -> list[Section]:
        return parser_for(name)[1]((CORPUS / name).read_bytes(), filename=name)

    alice = parse("alice-down-the-rabbit-hole.md")
    assert [s.text for s in alice if s.kind == "title"] == [
        "Alice's Adventures in Wonderland",
        "Chapter I. Down the Rabbit-Hole",
    ]
    frog = parse("grimm-the-frog-king.html")
    assert not any("console.log" in s.text or "font-family" in s.text for s in frog)
    # the page's <header> (title and byline) and <footer> (a table about the text) are not
    # part of the tale: the <title> stands for the header's heading
    assert frog[0] == Section(
        "The Frog-King, or Iron Henry (Grimm's Household Tales, no. 1)", kind="title"
    )
    assert frog[1].text.startswith("In olden times when wishing still helped one")
    assert not any("Margaret Hunt" in s.text or "Translator" in s.text for s in frog)
    origin = parse("origin-of-species-introduction.docx")
    assert origin[0] == Section("On the Origin of Species", kind="title")
    assert origin[-1].kind == "table" and "Title: Natural Selection" in origin[-1].text
    elements = parse("chemical-elements.xlsx")
    assert [s.text for s in elements if s.kind == "title"] == ["Elements", "Discoveries"]
    assert "symbol: Ne; name: Neon" in elements[1].text
    moons = parse("moons-of-mars-and-jupiter.jsonl")
    assert len(moons) == 1 and moons[0].text.count("\n") == 5
    assert moons[0].text.startswith(
        "moon: Phobos; planet: Mars; discovered.year: 1877; discovered.by: Asaph Hall; "
    )
    planets = parse("planets-of-the-solar-system.csv")
    assert "named after: Mars, Roman god of war" in planets[0].text


def test_corpus_pdf_is_split_into_page_range_tasks() -> None:
    data = (CORPUS / "constitution-of-the-united-states.pdf").read_bytes()
    pages = pdf_page_count(data)
    assert pages > 12
    first = parse_pdf(data, filename="c.pdf", from_page=0, to_page=12)
    rest = parse_pdf(data, filename="c.pdf", from_page=12, to_page=24)
    assert [s.page for s in first] == list(range(1, 13))
    assert [s.page for s in rest] == list(range(13, pages + 1))
    assert first[0].text.startswith("The Constitution of the United States\nWe the People")
    assert "Gouv Morris" in rest[-1].text


def load_make_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_samples_is_deterministic_and_matches_the_corpus() -> None:
    """Two builds give the same bytes; and the committed files hold what the sources say
    (compared as parsed text, which survives a library upgrade that changes the bytes)."""
    make_samples = load_make_samples()
    built = make_samples.build_all()
    assert built == make_samples.build_all()
    for name, data in built.items():
        _, parse = parser_for(name)
        committed = (CORPUS / name).read_bytes()
        assert parse(data, filename=name) == parse(committed, filename=name), name


def test_parsers_module_has_no_mutable_registry() -> None:
    with pytest.raises(TypeError):
        parsers._BY_SUFFIX[".exe"] = parse_text  # type: ignore[index]
