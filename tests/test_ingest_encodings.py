"""Text files in legacy encodings are decoded (issue 16): UTF-8 first, then a byte-order mark,
then charset-normalizer's guess. Only bytes that no encoding fits fail, with a clear message.

Upstream guesses as well (rag/nlp/__init__.py line 53, ``find_codec``, v0.21.1) but decodes
with ``errors="ignore"``, so it never fails and indexes binary files as noise."""

# ruff: noqa: RUF001  (CJK and Greek text in the encodings under test)

from __future__ import annotations

import json
import random

import pytest

from executor.ingest.errors import DocumentError
from executor.ingest.parsers import decode_text, parser_for

FRENCH = (
    "Le cœur de la ville était animé ce matin-là. Les élèves étudiaient à l'école près du "
    "château, où l'on vendait du café et des crêpes. « Quelle journée ! » s'écria la maîtresse."
)
CHINESE = (
    "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？"
    "其为人也孝弟，而好犯上者，鲜矣；不好犯上，而好作乱者，未之有也。"
)
JAPANESE = (
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
    "何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。"
)
CASES = [
    ("cp1252", FRENCH),
    ("gbk", CHINESE),
    ("shift_jis", JAPANESE),
    ("utf-16", FRENCH + CHINESE),  # Python writes a BOM (little-endian here)
    ("utf-16-be", FRENCH),  # with a BOM added below
    ("utf-32", JAPANESE),
    ("utf-8-sig", CHINESE),
]


def encoded(text: str, encoding: str) -> bytes:
    data = text.encode(encoding)
    return b"\xfe\xff" + data if encoding == "utf-16-be" else data


def as_file(suffix: str, text: str) -> str:
    """*text* as the content of a file of that type, so each parser decodes it."""
    if suffix == ".csv":
        return f'note\n"{text}"\n'
    if suffix == ".json":
        return json.dumps({"note": text}, ensure_ascii=False)
    if suffix == ".html":
        return f"<html><body><p>{text}</p></body></html>"
    return text


@pytest.mark.parametrize(("encoding", "text"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("suffix", [".txt", ".md", ".csv", ".json", ".html"])
def test_every_text_parser_decodes_legacy_encodings(suffix: str, encoding: str, text: str) -> None:
    _, parse = parser_for(f"file{suffix}")
    sections = parse(encoded(as_file(suffix, text), encoding), filename=f"file{suffix}")
    assert text in "\n".join(s.text for s in sections).replace("note: ", "")


def test_short_western_text_is_read_as_cp1252() -> None:
    """charset-normalizer ranks cp1250 or cp852 first for these; cp1252 is favoured when it
    decodes them as cleanly."""
    assert decode_text("Café crème".encode("cp1252"), "a.txt") == "Café crème"
    assert decode_text(b"caf\xe9 au lait\r\n", "a.txt") == "café au lait\n"
    page = '<meta charset="utf-8"><p>Smörgåsbord à la carte</p>'
    assert decode_text(page.encode("cp1252"), "a.html") == page


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1251", "Привет, как дела? Сегодня хорошая погода, и мы пойдём гулять в парк."),
        ("cp1250", "Příliš žluťoučký kůň úpěl ďábelské ódy. Zażółć gęślą jaźń."),
        ("cp1253", "Καλημέρα, τι κάνεις; Σήμερα ο καιρός είναι καλός."),
        ("big5", "學而時習之，不亦說乎？有朋自遠方來，不亦樂乎？"),
    ],
)
def test_favouring_cp1252_leaves_other_scripts_alone(encoding: str, text: str) -> None:
    assert decode_text(text.encode(encoding), "a.txt") == text


def test_utf8_is_not_second_guessed() -> None:
    """Valid UTF-8 is UTF-8, even when a single-byte encoding would decode it too."""
    assert decode_text("Ã©tÃ© naïve".encode(), "a.txt") == "Ã©tÃ© naïve"


def test_undecodable_bytes_fail_with_a_clear_message() -> None:
    noise = bytes(b for b in random.Random(16).randbytes(3000) if b)
    with pytest.raises(DocumentError) as caught:
        decode_text(noise, "noise.txt")
    first = next(i for i, b in enumerate(noise) if b >= 0x80)
    assert str(caught.value) == (
        f"noise.txt: not text in any encoding (invalid UTF-8 byte 0x{noise[first]:02x} at "
        f"offset {first}, and no other encoding fits its bytes): a binary or damaged file"
    )


def test_nul_bytes_without_a_bom_are_binary() -> None:
    with pytest.raises(DocumentError, match=r"^x\.txt: binary content \(NUL bytes\), not text$"):
        decode_text(b"MZ\x90\x00\x03\x00", "x.txt")


def test_a_broken_bom_encoded_file_is_an_error() -> None:
    with pytest.raises(DocumentError, match=r"^x\.txt: invalid UTF-16 text \(truncated data\)$"):
        decode_text(b"\xff\xfeh\x00i", "x.txt")
