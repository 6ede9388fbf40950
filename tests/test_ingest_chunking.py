"""Chunking like upstream's naive mode: token budget, delimiters, titles, tables, overlap, pages;
the offline tokenizer; and the chunk id rule."""

# CJK punctuation and curly quotes are what these tests are about:
# ruff: noqa: RUF001

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest
import xxhash

from executor.ingest.chunking import (
    _TOKEN,
    DEFAULT_DELIMITER,
    chunk,
    chunk_id,
    count_tokens,
    split_sentences,
    tokenize,
)
from executor.ingest.parsers import parser_for
from executor.ingest.types import Piece, Section

CORPUS = Path(__file__).resolve().parents[1] / "samples" / "corpus"


def words(n: int, start: int = 0) -> str:
    """n distinct word tokens: w0 w1 w2 ..."""
    return " ".join(f"w{i}" for i in range(start, start + n))


def corpus_sections(name: str) -> list[Section]:
    return parser_for(name)[1]((CORPUS / name).read_bytes(), filename=name)


# ---------------------------------------------------------------- tokenizer


def test_tokenize_english() -> None:
    text = "Hello, World! It's 3.14 and 1,000 items: mp3, 2024; don’t_stop."
    assert tokenize(text) == [
        "hello", "world", "it's", "3.14", "and", "1,000", "items", "mp3", "2024", "don’t", "stop",
    ]  # fmt: skip


def test_tokenize_cjk_characters_are_single_tokens() -> None:
    assert tokenize("学而时习之，不亦说乎？") == list("学而时习之不亦说乎")
    assert tokenize("日本語のテキスト") == ["日", "本", "語", "の", "テ", "キ", "ス", "ト"]


def test_tokenize_mixed_scripts() -> None:
    assert tokenize("RAGFlow支持PDF文档, v2.1") == [
        "ragflow", "支", "持", "pdf", "文", "档", "v2", "1",
    ]  # fmt: skip
    assert tokenize("한국어 텍스트 Ελληνικά Кириллица") == [
        "한국어", "텍스트", "ελληνικά", "кириллица",
    ]  # fmt: skip
    assert tokenize("café naïve cafe\u0301") == ["café", "naïve", "cafe\u0301"]


def test_tokenize_ignores_punctuation_and_whitespace() -> None:
    assert tokenize(" -- ... !!! \n\t «» ") == []
    assert count_tokens("") == 0


def test_count_tokens_matches_tokenize() -> None:
    for section in corpus_sections("analects-book-1-excerpt.txt"):
        assert count_tokens(section.text) == len(tokenize(section.text))


def test_the_ascii_fast_path_tokenizes_as_the_full_pattern() -> None:
    """ASCII text takes a simpler pattern; it must find exactly what the full one finds."""
    rng = random.Random(7)
    alphabet = "aZ09 .,'_-!?\n\t:;#`\"()$%"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert tokenize(text) == [token.lower() for token in _TOKEN.findall(text)], text
        assert count_tokens(text) == len(_TOKEN.findall(text)), text
    for path in sorted(CORPUS.iterdir()):
        if path.suffix in (".txt", ".md", ".csv", ".json", ".html"):
            text = path.read_text()
            assert tokenize(text) == [token.lower() for token in _TOKEN.findall(text)], path


# ---------------------------------------------------------------- chunk ids


def test_chunk_id_is_upstreams_xxh64_of_content_and_doc_id() -> None:
    content, doc_id = "All legislative Powers herein granted", "3f2a9c0e5b1d4e6f"
    assert chunk_id(content, doc_id) == xxhash.xxh64((content + doc_id).encode()).hexdigest()
    assert chunk_id("abc", "doc") == "ffea4c618bdad2db"  # stable across releases
    assert chunk_id("中文", "d") == xxhash.xxh64("中文d".encode()).hexdigest()
    assert chunk_id("a", "bc") == chunk_id("ab", "c")  # as upstream: plain concatenation


def test_chunk_id_accepts_lone_surrogates() -> None:
    assert len(chunk_id("bad \ud800 text", "doc")) == 16


# ---------------------------------------------------------------- sentences and delimiters


def test_split_sentences_at_default_delimiters() -> None:
    text = "First line.\nDone! Really? Yes. 是的。好；对！\n\nEnd"
    assert split_sentences(text) == [
        "First line.\n", "Done!", " Really?", " Yes. 是的。", "好；", "对！\n\n", "End",
    ]  # fmt: skip
    assert "".join(split_sentences(text)) == text


def test_split_sentences_custom_and_multi_character_delimiters() -> None:
    assert split_sentences("a. b. c", ".") == ["a.", " b.", " c"]
    assert split_sentences("one ## two ## three\nfour", "`##`") == [
        "one ##", " two ##", " three\nfour",
    ]  # fmt: skip
    assert split_sentences("no split here!", "") == ["no split here!"]


def test_chunks_break_at_delimiters_not_mid_sentence() -> None:
    text = f"{words(5)}.\n{words(5, 5)}! {words(5, 10)}? {words(5, 15)}"
    pieces = chunk([Section(text)], chunk_token_num=12)
    assert [p.text for p in pieces] == [
        f"{words(5)}.\n{words(5, 5)}!",
        f"{words(5, 10)}? {words(5, 15)}",
    ]


def test_period_is_not_a_default_delimiter() -> None:
    assert "." not in DEFAULT_DELIMITER
    pieces = chunk([Section(f"{words(6)}. {words(6, 6)}.")], chunk_token_num=8)
    assert [p.tokens for p in pieces] == [8, 4]  # one sentence cut by tokens


# ---------------------------------------------------------------- budget


@pytest.mark.parametrize("budget", [1, 7, 32, 128, 512])
@pytest.mark.parametrize("overlap", [0, 20, 50])
def test_budget_is_respected_on_the_corpus(budget: int, overlap: int) -> None:
    for path in sorted(CORPUS.iterdir()):
        pieces = chunk(corpus_sections(path.name), chunk_token_num=budget, overlap_percent=overlap)
        assert pieces, path.name
        for piece in pieces:
            assert 0 < piece.tokens <= budget, (path.name, piece)
            assert piece.tokens == count_tokens(piece.text)
            assert piece.text == piece.text.strip()


def test_an_over_long_sentence_is_cut_between_tokens() -> None:
    pieces = chunk([Section(words(300) + ".")], chunk_token_num=128)
    assert [p.tokens for p in pieces] == [128, 128, 44]
    assert pieces[0].text == words(128)
    assert pieces[2].text == words(44, 256) + "."


def test_a_huge_sentence_is_cut_in_linear_time() -> None:
    """A text without any delimiter is one sentence; cutting it must not rescan it per chunk
    (that took minutes for 200,000 tokens)."""
    started = time.perf_counter()
    pieces = chunk([Section(words(200_000))], chunk_token_num=128, overlap_percent=10)
    assert time.perf_counter() - started < 15
    assert len(pieces) == 1725 and max(p.tokens for p in pieces) == 128


def test_nothing_is_lost_or_duplicated_without_overlap() -> None:
    sections = corpus_sections("declaration-of-independence.txt")
    pieces = chunk(sections, chunk_token_num=50)
    assert [t for p in pieces for t in tokenize(p.text)] == [
        t for s in sections for t in tokenize(s.text)
    ]


@pytest.mark.parametrize("delimiter", [DEFAULT_DELIMITER, ".", "\n.,'", "`##`!"])
@pytest.mark.parametrize("overlap", [0, 30])
def test_pieces_carry_the_tokens_of_their_text(delimiter: str, overlap: int) -> None:
    """Chunking tokenizes each sentence once and hands the tokens on with the piece; they must
    be exactly what tokenizing the piece's text gives, also where a delimiter cut a token."""
    for path in sorted(CORPUS.iterdir()):
        for budget in (5, 128):
            for piece in chunk(
                corpus_sections(path.name),
                chunk_token_num=budget,
                delimiter=delimiter,
                overlap_percent=overlap,
            ):
                assert piece.terms == tokenize(piece.text), (path.name, piece)
                assert piece.tokens == len(piece.terms)


def test_a_token_cut_by_a_delimiter_is_whole_again_in_its_chunk() -> None:
    pieces = chunk([Section("pi is 3.14, don't round")], delimiter=".,'")
    assert [p.terms for p in pieces] == [["pi", "is", "3.14", "don't", "round"]]
    assert pieces[0].tokens == 5


def test_small_sections_are_packed_together() -> None:
    sections = [Section(words(3, i * 3)) for i in range(10)]
    pieces = chunk(sections, chunk_token_num=10)
    assert [p.tokens for p in pieces] == [9, 9, 9, 3]
    assert pieces[0].text == f"{words(3)}\n{words(3, 3)}\n{words(3, 6)}"


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk_token_num"):
        chunk([Section("x")], chunk_token_num=0)
    with pytest.raises(ValueError, match="overlap_percent"):
        chunk([Section("x")], overlap_percent=100)


def test_no_text_gives_no_pieces() -> None:
    assert chunk([]) == []
    assert chunk([Section("   \n "), Section("--- ... ---")]) == []


# ---------------------------------------------------------------- titles


def test_a_title_starts_a_new_chunk_and_keeps_its_text() -> None:
    sections = [
        Section(words(3)),
        Section("Chapter Two", kind="title"),
        Section(words(3, 3)),
        Section(words(3, 6)),
    ]
    pieces = chunk(sections, chunk_token_num=100)
    assert [p.text for p in pieces] == [
        words(3),
        f"Chapter Two\n{words(3, 3)}\n{words(3, 6)}",
    ]


def test_consecutive_titles_share_a_chunk() -> None:
    sections = [
        Section("Part One", kind="title"),
        Section("Chapter One", kind="title"),
        Section(words(2)),
    ]
    assert [p.text for p in chunk(sections)] == [f"Part One\nChapter One\n{words(2)}"]


def test_a_title_is_not_left_alone_before_a_long_sentence() -> None:
    sections = [Section("The Title", kind="title"), Section(words(20) + "!")]
    pieces = chunk(sections, chunk_token_num=10)
    assert pieces[0].text == f"The Title\n{words(8)}"
    assert [p.tokens for p in pieces] == [10, 10, 2]


def test_a_trailing_title_is_its_own_chunk() -> None:
    pieces = chunk([Section(words(2)), Section("Appendix", kind="title")])
    assert [p.text for p in pieces] == [words(2), "Appendix"]


# ---------------------------------------------------------------- tables


def test_tables_are_never_merged_with_text() -> None:
    sections = [
        Section(words(2)),
        Section("name: Mars; moons: 2\nname: Venus; moons: 0", kind="table"),
        Section(words(2, 2)),
    ]
    assert [p.text for p in chunk(sections)] == [
        words(2),
        "name: Mars; moons: 2\nname: Venus; moons: 0",
        words(2, 2),
    ]


def test_table_rows_are_packed_and_never_cut() -> None:
    rows = [f"name: planet{i}; moons: {i}" for i in range(10)]  # 4 tokens a row
    pieces = chunk([Section("\n".join(rows), kind="table")], chunk_token_num=10)
    assert [p.text for p in pieces] == ["\n".join(rows[i : i + 2]) for i in range(0, 10, 2)]


def test_table_sections_are_chunked_apart_even_with_room() -> None:
    sections = [Section("a: 1", kind="table"), Section("b: 2", kind="table")]
    assert [p.text for p in chunk(sections)] == ["a: 1", "b: 2"]


def test_a_title_heads_the_table_after_it() -> None:
    sections = [Section("Elements", kind="title"), Section("symbol: H", kind="table")]
    assert [p.text for p in chunk(sections)] == ["Elements\nsymbol: H"]


def test_an_over_long_row_is_cut_by_tokens() -> None:
    pieces = chunk([Section(words(25), kind="table")], chunk_token_num=10)
    assert [p.tokens for p in pieces] == [10, 10, 5]


def test_tables_are_not_overlapped() -> None:
    rows = "\n".join(f"row: {i}" for i in range(20))
    pieces = chunk([Section(rows, kind="table")], chunk_token_num=10, overlap_percent=40)
    assert [t for p in pieces for t in tokenize(p.text)] == tokenize(rows)


# ---------------------------------------------------------------- overlap


def test_overlap_copies_the_tail_of_the_previous_chunk() -> None:
    text = "\n".join(f"{words(5, i * 5)}." for i in range(8))  # 8 sentences of 5 tokens
    pieces = chunk([Section(text)], chunk_token_num=20, overlap_percent=25)
    overlap = 5
    for previous, current in itertools.pairwise(pieces):
        assert tokenize(current.text)[:overlap] == tokenize(previous.text)[-overlap:]
        assert current.tokens <= 20
    without = chunk([Section(text)], chunk_token_num=20)
    assert len(pieces) > len(without)
    seen = {t for p in pieces for t in tokenize(p.text)}
    assert seen == set(tokenize(text))


def test_overlap_tail_starts_at_a_token() -> None:
    text = "alpha beta gamma delta!\nepsilon zeta eta theta!\niota kappa lambda mu!"
    pieces = chunk([Section(text)], chunk_token_num=8, overlap_percent=25)
    assert [p.text for p in pieces] == [
        "alpha beta gamma delta!\nepsilon zeta eta theta!",
        "eta theta!\niota kappa lambda mu!",
    ]


def test_overlap_does_not_cross_a_title() -> None:
    sections = [Section(words(8)), Section("Next", kind="title"), Section(words(4, 8))]
    pieces = chunk(sections, chunk_token_num=10, overlap_percent=50)
    assert [p.text for p in pieces] == [words(8), f"Next\n{words(4, 8)}"]


def test_overlap_with_an_over_long_sentence() -> None:
    pieces = chunk([Section(words(20) + "!")], chunk_token_num=10, overlap_percent=30)
    assert [p.text for p in pieces] == [words(10), words(10, 7), words(6, 14) + "!"]


def test_overlap_ends_with_the_text() -> None:
    """The tail of the last chunk is not repeated as a chunk of its own."""
    pieces = chunk([Section(words(10) + "!")], chunk_token_num=10, overlap_percent=30)
    assert [p.text for p in pieces] == [words(10) + "!"]


# ---------------------------------------------------------------- pages


def test_pieces_carry_the_pages_their_text_came_from() -> None:
    sections = [
        Section(words(4), page=1),
        Section(words(4, 4), page=2),
        Section(words(8, 8), page=3),
        Section(words(2, 16), page=5),
    ]
    pieces = chunk(sections, chunk_token_num=10)
    assert [(p.tokens, p.pages) for p in pieces] == [(8, (1, 2)), (10, (3, 5))]


def test_overlap_tail_keeps_its_page() -> None:
    sections = [Section(words(8) + "!", page=4), Section(words(8, 8) + "!", page=5)]
    pieces = chunk(sections, chunk_token_num=10, overlap_percent=20)
    assert [p.pages for p in pieces] == [(4,), (4, 5)]
    assert pieces[1].text.startswith("w6 w7!")


def test_unpaged_sections_give_no_pages() -> None:
    assert chunk([Section("plain text")]) == [Piece("plain text", 2, ())]


def test_corpus_pdf_pages_are_right() -> None:
    sections = corpus_sections("constitution-of-the-united-states.pdf")
    pieces = chunk(sections)
    page_of = {s.page: s.text for s in sections}
    for piece in pieces:
        assert piece.pages and list(piece.pages) == sorted(piece.pages)
        first_line = piece.text.split("\n")[0]
        assert any(first_line in page_of[p] for p in piece.pages)


# ---------------------------------------------------------------- determinism


def test_chunking_is_deterministic() -> None:
    for path in sorted(CORPUS.iterdir()):
        sections = corpus_sections(path.name)
        first = chunk(sections, chunk_token_num=64, overlap_percent=10)
        second = chunk(list(sections), chunk_token_num=64, overlap_percent=10)
        assert first == second
        ids = [chunk_id(p.text, "doc-1") for p in first]
        assert ids == [chunk_id(p.text, "doc-1") for p in second]
