"""Bytes of a text-like file (.txt, .md, .csv, .json, .html...) as str, whatever its encoding.

UTF-8 is tried first (most files are, and it is the fast path); then a byte-order mark; then,
for HTML, the charset the page declares; then charset-normalizer guesses the encoding from the
bytes (cp1252, GBK, Shift-JIS, ...). Upstream guesses too (``find_codec``, rag/nlp/__init__.py
line 53 at v0.21.1: chardet, then the first of a list of codecs that decodes), but decodes with
``errors="ignore"`` and so indexes a binary file as noise; here only bytes that no encoding fits
fail the task, with a message saying so.
"""

from __future__ import annotations

import codecs

from .common import error

_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_FAVOURED = "cp1252"
"""Picked when it decodes the bytes as cleanly as the best guess: charset-normalizer tells
Western European single-byte encodings apart by language statistics, which short texts do not
have (it ranks cp1250 first for French, turning "crème" into "crčme"), and cp1252 is the most
common of them. Text in another script decodes as a mess in cp1252, so is not affected."""


def decode_text(data: bytes, filename: str, declared: str | None = None) -> str:
    """*data* as str with ``\\n`` line ends; *declared* is an encoding the file names itself
    (an HTML ``<meta charset>``), tried before guessing. A DocumentError when nothing fits."""
    text = _decode(data, filename, declared)
    if "\x00" in text:
        raise error(filename, "binary content (NUL bytes), not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes, filename: str, declared: str | None) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise error(filename, f"invalid {codec.upper()} text ({exc.reason})") from exc
    if b"\x00" in data:  # no single-byte or multi-byte legacy text has NULs
        raise error(filename, "binary content (NUL bytes), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        invalid = f"invalid UTF-8 byte 0x{data[exc.start]:02x} at offset {exc.start}"
    if declared:
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong declaration is common: guess from the bytes instead
    guessed = _guess(data)
    if guessed is None:
        raise error(
            filename,
            f"not text in any encoding ({invalid}, and no other encoding fits its bytes): "
            "a binary or damaged file",
        )
    return guessed


def _guess(data: bytes) -> str | None:
    """charset-normalizer's best guess, or None when no encoding decodes the bytes into
    plausible text."""
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    as_clean = (m for m in matches if m.chaos <= best.chaos)
    if any(_FAVOURED in m.could_be_from_charset for m in as_clean):
        return data.decode(_FAVOURED)
    return str(best)
