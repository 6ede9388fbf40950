"""Build the binary documents of the sample corpus (PDF, DOCX, XLSX) from ``samples/sources``.

    .venv/bin/python samples/make_samples.py            # writes into samples/corpus/
    .venv/bin/python samples/make_samples.py --out DIR

The outputs are committed, so a fresh checkout can ingest them without this script; it exists so
that anyone can check they contain only what the sources say, and rebuild them.

Deterministic: fixed creation dates, producer and metadata, and zip members rewritten in a fixed
order with a fixed timestamp, so a rebuild with the same versions of fpdf2, python-docx, openpyxl
and zlib gives the same bytes. A new release of one of them may change its output (layout,
default template, XML details), and then the rebuilt files differ from the committed ones while
holding the same text.
"""

from __future__ import annotations

import argparse
import io
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import docx
from docx.document import Document as DocxDocument
from fpdf import FPDF
from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
CORPUS = HERE / "corpus"

FIXED_DATE = datetime(2024, 1, 1, tzinfo=UTC)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip member can carry
PRODUCER = "ragfleet samples/make_samples.py"


def _paragraphs(name: str) -> list[str]:
    """A source text's blank-line separated paragraphs (lines inside one are kept)."""
    text = (SOURCES / name).read_text(encoding="utf-8")
    return [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


def _normalized_zip(data: bytes) -> bytes:
    """The same archive with every member dated ZIP_DATE, Unix attributes and sorted names.

    python-docx stamps members with the current time, which alone makes every build differ.
    """
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in sorted(source.namelist(), key=lambda n: (n != "[Content_Types].xml", n)):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever the build machine
            info.external_attr = 0o644 << 16
            target.writestr(info, source.read(name))
    return out.getvalue()


# ---------------------------------------------------------------- PDF


class _Pdf(FPDF):
    """A5 pages with a running footer, so that every page has text on it."""

    def __init__(self, footer_title: str) -> None:
        super().__init__(format=(148, 210))  # A5 in mm
        self.footer_title = footer_title
        self.set_creation_date(FIXED_DATE)
        self.set_producer(PRODUCER)
        self.set_creator(PRODUCER)
        self.set_margins(14, 14, 14)
        self.set_auto_page_break(auto=True, margin=16)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "I", 8)
        self.cell(0, 6, f"{self.footer_title} - page {self.page_no()}", align="C")


def _pdf_heading(pdf: FPDF, text: str, size: int) -> None:
    pdf.set_font("Helvetica", "B", size)
    pdf.multi_cell(0, size * 0.55, text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _pdf_paragraph(pdf: FPDF, text: str) -> None:
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _pdf_bytes(pdf: FPDF, title: str, author: str) -> bytes:
    pdf.set_title(title)
    pdf.set_author(author)
    return bytes(pdf.output())


def constitution_pdf() -> bytes:
    """The Constitution, Articles I-VII, each Article on a new page: about 20 A5 pages, more
    than upstream's 12-page task size, so the PDF is split into several page-range tasks."""
    title = "The Constitution of the United States"
    pdf = _Pdf(title)
    pdf.add_page()
    for block in _paragraphs("constitution-of-the-united-states.txt"):
        if block == title:
            _pdf_heading(pdf, block, 16)
        elif re.fullmatch(r"Article\.? [IVX]+\.?", block):
            pdf.add_page()
            _pdf_heading(pdf, block, 14)
        elif re.fullmatch(r"Section\. \d+\.", block):
            _pdf_heading(pdf, block, 11)
        else:
            _pdf_paragraph(pdf, block)
    return _pdf_bytes(pdf, title, "Constitutional Convention, 1787")


def gettysburg_pdf() -> bytes:
    """The Gettysburg Address (Bliss copy): a one-page PDF."""
    title, byline, *paragraphs = _paragraphs("gettysburg-address.txt")
    pdf = _Pdf("The Gettysburg Address")
    pdf.add_page()
    _pdf_heading(pdf, title, 13)
    _pdf_paragraph(pdf, byline)
    for paragraph in paragraphs:
        _pdf_paragraph(pdf, paragraph)
    return _pdf_bytes(pdf, "The Gettysburg Address", "Abraham Lincoln")


# ---------------------------------------------------------------- DOCX

ORIGIN_CHAPTERS = (
    "Variation under Domestication",
    "Variation under Nature",
    "Struggle for Existence",
    "Natural Selection",
    "Laws of Variation",
    "Difficulties on Theory",
    "Instinct",
    "Hybridism",
    "On the Imperfection of the Geological Record",
    "On the Geological Succession of Organic Beings",
    "Geographical Distribution",
    "Geographical Distribution, continued",
    "Mutual Affinities of Organic Beings: Morphology: Embryology: Rudimentary Organs",
    "Recapitulation and Conclusion",
)


def _fixed_core_properties(document: DocxDocument, title: str, author: str) -> None:
    props = document.core_properties
    props.title = title
    props.author = author
    props.comments = f"Built by {PRODUCER}"
    props.last_modified_by = ""
    props.revision = 1
    props.created = FIXED_DATE.replace(tzinfo=None)
    props.modified = FIXED_DATE.replace(tzinfo=None)


def origin_docx() -> bytes:
    """Darwin's Introduction with Title/Heading styles and a table: titles, text and rows."""
    document = docx.Document()
    _fixed_core_properties(document, "On the Origin of Species: Introduction", "Charles Darwin")
    document.add_heading("On the Origin of Species", level=0)
    document.add_paragraph("By Charles Darwin, M.A. First edition, London: John Murray, 1859.")
    document.add_heading("Introduction", level=1)
    for paragraph in _paragraphs("origin-of-species-introduction.txt"):
        document.add_paragraph(paragraph)
    document.add_heading("Chapters of the first edition", level=1)
    table = document.add_table(rows=1, cols=2)
    table.style = "Table Grid"
    table.rows[0].cells[0].text = "Chapter"
    table.rows[0].cells[1].text = "Title"
    for number, name in enumerate(ORIGIN_CHAPTERS, start=1):
        cells = table.add_row().cells
        cells[0].text = str(number)
        cells[1].text = name
    out = io.BytesIO()
    document.save(out)
    return _normalized_zip(out.getvalue())


# ---------------------------------------------------------------- XLSX

ELEMENTS_HEADER = (
    "atomic number",
    "symbol",
    "name",
    "standard atomic weight",
    "period",
    "group",
    "block",
    "category",
    "state at 20 °C",
)
ELEMENTS = (
    (1, "H", "Hydrogen", 1.008, 1, 1, "s", "reactive nonmetal", "gas"),
    (2, "He", "Helium", 4.0026, 1, 18, "s", "noble gas", "gas"),
    (3, "Li", "Lithium", 6.94, 2, 1, "s", "alkali metal", "solid"),
    (4, "Be", "Beryllium", 9.0122, 2, 2, "s", "alkaline earth metal", "solid"),
    (5, "B", "Boron", 10.81, 2, 13, "p", "metalloid", "solid"),
    (6, "C", "Carbon", 12.011, 2, 14, "p", "reactive nonmetal", "solid"),
    (7, "N", "Nitrogen", 14.007, 2, 15, "p", "reactive nonmetal", "gas"),
    (8, "O", "Oxygen", 15.999, 2, 16, "p", "reactive nonmetal", "gas"),
    (9, "F", "Fluorine", 18.998, 2, 17, "p", "halogen", "gas"),
    (10, "Ne", "Neon", 20.180, 2, 18, "p", "noble gas", "gas"),
    (11, "Na", "Sodium", 22.990, 3, 1, "s", "alkali metal", "solid"),
    (12, "Mg", "Magnesium", 24.305, 3, 2, "s", "alkaline earth metal", "solid"),
    (13, "Al", "Aluminium", 26.982, 3, 13, "p", "post-transition metal", "solid"),
    (14, "Si", "Silicon", 28.085, 3, 14, "p", "metalloid", "solid"),
    (15, "P", "Phosphorus", 30.974, 3, 15, "p", "reactive nonmetal", "solid"),
    (16, "S", "Sulfur", 32.06, 3, 16, "p", "reactive nonmetal", "solid"),
    (17, "Cl", "Chlorine", 35.45, 3, 17, "p", "halogen", "gas"),
    (18, "Ar", "Argon", 39.95, 3, 18, "p", "noble gas", "gas"),
    (19, "K", "Potassium", 39.098, 4, 1, "s", "alkali metal", "solid"),
    (20, "Ca", "Calcium", 40.078, 4, 2, "s", "alkaline earth metal", "solid"),
)
DISCOVERIES_HEADER = ("element", "year", "discovered or first isolated by")
DISCOVERIES = (
    ("Phosphorus", 1669, "Hennig Brand"),
    ("Hydrogen", 1766, "Henry Cavendish"),
    ("Nitrogen", 1772, "Daniel Rutherford"),
    ("Chlorine", 1774, "Carl Wilhelm Scheele"),
    ("Sodium", 1807, "Humphry Davy"),
    ("Potassium", 1807, "Humphry Davy"),
    ("Magnesium", 1808, "Humphry Davy"),
    ("Calcium", 1808, "Humphry Davy"),
    ("Fluorine", 1886, "Henri Moissan"),
    ("Argon", 1894, "Lord Rayleigh and William Ramsay"),
    ("Neon", 1898, "William Ramsay and Morris Travers"),
)


def elements_xlsx() -> bytes:
    """Two sheets (the first 20 elements; some discoveries): rows become table sections."""
    workbook = Workbook()
    elements = workbook.active
    elements.title = "Elements"
    for row in (ELEMENTS_HEADER, *ELEMENTS):
        elements.append(row)
    discoveries = workbook.create_sheet("Discoveries")
    for row in (DISCOVERIES_HEADER, *DISCOVERIES):
        discoveries.append(row)
    workbook.properties.creator = PRODUCER
    workbook.properties.title = "The first twenty chemical elements"
    workbook.properties.created = FIXED_DATE.replace(tzinfo=None)
    workbook.properties.modified = FIXED_DATE.replace(tzinfo=None)
    out = io.BytesIO()
    # ExcelWriter directly: openpyxl's save() would stamp "modified" with the current time.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(workbook, archive).save()
    return _normalized_zip(out.getvalue())


# ---------------------------------------------------------------- entry point

BUILDERS: dict[str, Callable[[], bytes]] = {
    "constitution-of-the-united-states.pdf": constitution_pdf,
    "gettysburg-address.pdf": gettysburg_pdf,
    "origin-of-species-introduction.docx": origin_docx,
    "chemical-elements.xlsx": elements_xlsx,
}


def build_all() -> dict[str, bytes]:
    """Every generated file's name and bytes."""
    return {name: build() for name, build in BUILDERS.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CORPUS, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in build_all().items():
        (args.out / name).write_bytes(data)
        print(f"{args.out / name}: {len(data):,} bytes")


if __name__ == "__main__":
    main()
