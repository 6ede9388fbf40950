"""RAGFlow's own tokenizer ("huqie"), so ``content_ltks`` holds what RAGFlow's queries look for.

RAGFlow v0.21.1 tokenizes chunks and questions with ``rag/nlp/rag_tokenizer.py``: a
dictionary-based Chinese segmenter (the ``huqie`` dictionary), and for other text NLTK's
word tokenizer, WordNet lemmas and the Porter stemmer. Upstream publishes the same code as
``infinity/rag_tokenizer.py`` in the ``infinity-sdk`` package, with the same dictionary (the
``huqie.txt`` there is byte-identical to v0.21.1's ``rag/res/huqie.txt``: same git blob). We
use that module rather than a rewrite, with three adjustments, each to match v0.21.1 or to
run offline:

* stemmer: infinity-sdk 0.7 stems English with Snowball ("Porter2"); v0.21.1 with Porter.
  ``RAGFLOW_STEMMER`` says which; Porter is the reference version's.
* WordNet: NLTK's corpus comes from Debian's ``wordnet-base`` (``/usr/share/wordnet``, the
  WordNet 3.0 files NLTK's own ``wordnet`` corpus holds) plus a ``lexnames`` file shipped
  here (a fixed list in WordNet's file format, which Debian leaves out). Nothing downloads.
* sentences: ``word_tokenize`` is called with ``preserve_line=True``, so NLTK's Punkt model
  (not packaged anywhere) is not needed. Upstream's tokenizer replaces every ``\\W+`` run by a
  space before this call, so no sentence punctuation is left and the sentence split it skips
  would return the line whole anyway.

``infinity-sdk`` pins numpy < 2 and pulls pandas, pyarrow and polars, none of which the
tokenizer uses, so it is installed with ``--no-deps`` (scripts/setup.sh) and its
``rag_tokenizer.py`` is loaded as a module of its own, without the SDK package's
``__init__`` (which imports the client and those packages).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from .errors import TokenizerUnavailable

WORDNET_DIR = Path("/usr/share/wordnet")  # Debian's wordnet-base
LEXNAMES = Path(__file__).with_name("wordnet_lexnames")
INSTALL_HINT = (
    "RAGFlow's tokenizer is not installed: run scripts/setup.sh (it installs infinity-sdk "
    "with --no-deps and Debian's wordnet-base)"
)
Stemmer = Literal["porter", "snowball"]
RAGFLOW_STEMMER: Stemmer = "porter"  # v0.21.1's rag/nlp/rag_tokenizer.py
CACHE_SIZE = 1 << 16  # distinct words remembered per tokenizer
# What upstream's tokenize() strips from a chunk before tokenizing it (rag/nlp/__init__.py)
_TABLE_TAGS = re.compile(r"</?(table|td|caption|tr|th)( [^<>]{0,12})?>")
# naive.py: the title is the file name without a final letters-only extension
_EXTENSION = re.compile(r"\.[a-zA-Z]+$")


def _module_path() -> Path:
    spec = importlib.util.find_spec("infinity")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable(INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "rag_tokenizer.py"
    if not path.is_file():
        raise TokenizerUnavailable(f"{INSTALL_HINT}; {path} is missing (infinity-sdk >= 0.7.3)")
    return path


def load_upstream_module(name: str = "ragfleet_rag_tokenizer") -> ModuleType:
    """infinity-sdk's ``rag_tokenizer.py`` as a fresh module (not in ``sys.modules``)."""
    path = _module_path()
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise TokenizerUnavailable(f"{INSTALL_HINT}; {exc}") from None
    return module


def wordnet_reader() -> Any:
    """NLTK's WordNet reader over Debian's files, with our ``lexnames`` beside them."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if not (WORDNET_DIR / "index.noun").is_file():
        raise TokenizerUnavailable(f"{INSTALL_HINT}; {WORDNET_DIR} has no WordNet")
    # NLTK >= 3.10 reads data only under the directories of nltk.data.path: add Debian's, once
    if str(WORDNET_DIR) not in nltk.data.path:
        nltk.data.path.append(str(WORDNET_DIR))

    class _Reader(WordNetCorpusReader):  # type: ignore[misc]
        """Debian's directory, except ``lexnames``, which comes from this package."""

        def open(self, fileid: str) -> Any:
            if fileid == "lexnames":
                return LEXNAMES.open(encoding="utf-8")
            return super().open(fileid)

        def map_wn(self, version: str = "wordnet") -> None:
            return None  # these files are WordNet 3.0 itself: no mapping to another version

    with warnings.catch_warnings():  # "no multilingual functions": we use none
        warnings.simplefilter("ignore", UserWarning)
        return _Reader(str(WORDNET_DIR), None)


def _lemmatizer(reader: Any) -> Any:
    from nltk.stem import WordNetLemmatizer

    class _Lemmatizer(WordNetLemmatizer):
        """NLTK's lemmatizer on our reader instead of the nltk_data download."""

        def _morphy(self, form: str, pos: str, check_exceptions: bool = True) -> list[str]:
            return list(reader._morphy(form, pos, check_exceptions))

    return _Lemmatizer()


def _ascii_fast_paths(upstream: Any) -> None:
    """Skip three per-character passes of upstream's on ASCII text, where each is the
    identity or trivial: full-width to half-width (``_strQ2B``: an ASCII code minus 0xFEE0
    is below 0x20, so every character is kept), traditional to simplified Chinese
    (``_tradi2simp``: no ASCII character is in its table), and the split into Chinese and
    other runs (``_split_by_lang``: no ASCII character is Chinese, so each piece of its
    ``SPLIT_CHAR`` split is one non-Chinese run). Same output; 40% less CPU on English.
    """
    q2b, t2s, by_lang = upstream._strQ2B, upstream._tradi2simp, upstream._split_by_lang
    split_char = re.compile(upstream.SPLIT_CHAR)
    upstream._strQ2B = lambda line: line if line.isascii() else q2b(line)
    upstream._tradi2simp = lambda line: line if line.isascii() else t2s(line)
    upstream._split_by_lang = lambda line: (
        [(piece, False) for piece in split_char.split(line) if piece]
        if line.isascii()
        else by_lang(line)
    )


class RagTokenizer:
    """``tokenize`` and ``fine_grained_tokenize`` as RAGFlow's; thread-safe (one lock: the
    upstream object keeps no per-call state, but NLTK's lazy loaders are not thread-safe)."""

    def __init__(self, stemmer: Stemmer = RAGFLOW_STEMMER) -> None:
        from functools import partial

        from nltk import word_tokenize
        from nltk.stem import PorterStemmer, SnowballStemmer

        module = load_upstream_module()
        # Memoized: upstream calls these once per word, and each is a pure function of it;
        # same output, about 4x faster on English (NLTK's tokenizer: ~20 regexes a call).
        words = functools.lru_cache(maxsize=CACHE_SIZE)(
            partial(word_tokenize, preserve_line=True)  # see module doc
        )
        module.word_tokenize = lambda text: words(text)
        upstream = module.RagTokenizer()
        upstream.stemmer = PorterStemmer() if stemmer == "porter" else SnowballStemmer("english")
        upstream.lemmatizer = _lemmatizer(wordnet_reader())
        upstream._normalize_token = functools.lru_cache(maxsize=CACHE_SIZE)(
            upstream._normalize_token
        )
        # tokenize() calls merge_ twice on the same tokens (once for a debug log line, even
        # with debug off): the second call is answered from this cache. -27% CPU on English.
        upstream.merge_ = functools.lru_cache(maxsize=2)(upstream.merge_)
        _ascii_fast_paths(upstream)
        self._upstream = upstream
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> str:
        """Space-separated coarse tokens (upstream's ``rag_tokenizer.tokenize``)."""
        with self._lock:
            return str(self._upstream.tokenize(text))

    def fine_grained_tokenize(self, tokens: str) -> str:
        """Finer tokens of ``tokenize``'s output (upstream's ``fine_grained_tokenize``)."""
        with self._lock:
            return str(self._upstream.fine_grained_tokenize(tokens))

    def query_tokens(self, text: str) -> list[str]:
        """A question's coarse tokens, then those of its fine-grained split not among them
        (RAGFlow's query side searches both)."""
        coarse = self.tokenize(text)
        return list(dict.fromkeys([*coarse.split(), *self.fine_grained_tokenize(coarse).split()]))

    def content_fields(self, text: str) -> tuple[str, str]:
        """``content_ltks`` and ``content_sm_ltks`` of a chunk's text, as upstream's
        ``rag.nlp.tokenize``: table tags out, then coarse, then fine tokens."""
        coarse = self.tokenize(_TABLE_TAGS.sub(" ", text))
        return coarse, self.fine_grained_tokenize(coarse)

    def title_fields(self, filename: str) -> tuple[str, str]:
        """``title_tks`` and ``title_sm_tks`` of a document name, as upstream's naive parser."""
        coarse = self.tokenize(_EXTENSION.sub("", filename))
        return coarse, self.fine_grained_tokenize(coarse)


def check_installed() -> None:
    """Raise TokenizerUnavailable, at once, if loading the tokenizer would fail for want of
    its packages or data (loading itself takes seconds: it is left to the first use)."""
    _module_path()
    for name in ("datrie", "hanziconv", "nltk"):
        if importlib.util.find_spec(name) is None:
            raise TokenizerUnavailable(f"{INSTALL_HINT}; Python package {name} is missing")
    if not (WORDNET_DIR / "index.noun").is_file():
        raise TokenizerUnavailable(f"{INSTALL_HINT}; {WORDNET_DIR} has no WordNet")


_loading = threading.Lock()  # the first callers in several threads wait for one load


@functools.cache
def _process_tokenizer() -> RagTokenizer:
    return RagTokenizer()


def shared_tokenizer() -> RagTokenizer:
    """One tokenizer per process, loaded on first use (4 to 5 s, ~330 MiB: the dictionary
    trie and NLTK's WordNet), in the thread that first needs it."""
    with _loading:
        return _process_tokenizer()


def query_tokens(text: str) -> list[str]:
    """:meth:`RagTokenizer.query_tokens` of the process's tokenizer (loaded on first use)."""
    return shared_tokenizer().query_tokens(text)
