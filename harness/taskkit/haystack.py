"""Haystacks for retrieval tasks, and a pool of made-up words for keys, names and noise.

Three kinds of haystack (RULER's noise, BABILong's background text):

- ``repeat``: one filler paragraph repeated ("the grass is green . the sky is blue . ..."),
  the easiest: a model can learn to ignore it.
- ``words``: tokens drawn uniformly from ``noise_words`` made-up words; nothing to learn in it.
- ``text``: consecutive words of a natural-text corpus (``corpus_path``, a UTF-8 text file split
  on whitespace and lower-cased), starting at a random offset and wrapping around: a background
  longer than the corpus repeats it, and ``Haystack.warn_if_repeated`` says so.

Needles, statements or facts go between units of the haystack (a paragraph of ``repeat``, a sentence
of ``text``, a word of ``words``); ``Haystack.place`` draws their places as RULER does.

Made-up words are two consonant-vowel syllables ("bako", "dimu", ...) in one fixed shuffled order:
tasks take their keys and names from the front of the pool and noise comes from its back, so the
two never share a word.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.taskkit.vocabulary import Vocabulary

FILLER = "the grass is green . the sky is blue . the sun is yellow . here we go . there and back again ."
HAYSTACK_KINDS = ("repeat", "words", "text")
#: RULER's depths (percent of the sentences) for pieces in a natural-text haystack, drawn without
#: replacement (``DEPTHS`` of RULER's scripts/data/synthetic/niah.py and variable_tracking.py)
RULER_DEPTHS = np.round(np.linspace(0, 100, num=40)).astype(int)
SENTENCE_END = (".", "!", "?")


@functools.cache
def word_pool() -> tuple[str, ...]:
    """Every made-up word (4,900 of them) in a fixed shuffled order."""
    syllables = [c + v for c, v in itertools.product("bdfgklmnprstvz", "aeiou")]
    words = [a + b for a, b in itertools.product(syllables, syllables)]
    order = np.random.default_rng(20231).permutation(len(words))
    return tuple(words[i] for i in order)


def made_up_words(count: int, skip: int = 0) -> list[str]:
    """``count`` made-up words from the front of the pool, after the first ``skip``."""
    pool = word_pool()
    if skip + count > len(pool) // 2:
        raise ValueError(f"only {len(pool) // 2} made-up words are reserved for keys and names, asked for {skip + count}")
    return list(pool[skip : skip + count])


@dataclass
class HaystackConfig:
    """The haystack options of a task; its Config inherits them."""

    haystack: str = "repeat"  # repeat | words | text
    #: how many made-up words the `words` haystack draws from
    noise_words: int = 256
    #: the UTF-8 text file of the `text` haystack; null: the shipped public-domain sample (tasks/sample_corpus.py)
    corpus_path: Optional[str] = None


def warn_if_corpus_repeats(corpus: str, corpus_words: int, length: int) -> None:
    """Warn if a background of up to ``length`` words is longer than its corpus (``corpus_words``
    words, named ``corpus``), so that the corpus's text repeats within one example."""
    if length > corpus_words:
        warnings.warn(f"a background of up to {length} words is longer than its corpus of {corpus_words} words, "
                      f"{corpus}: its text repeats within an example. Point task.corpus_path at a longer UTF-8 text "
                      "for lengths like this one", stacklevel=3)


def corpus_sources(corpus: str, text: str, words: int) -> dict[str, Any]:
    """How a run's record names the corpus it read: its name, its words and the SHA-256 of its text."""
    return {"corpus": corpus, "corpus_words": words, "corpus_sha256": hashlib.sha256(text.encode()).hexdigest()}


class Haystack:
    """Background tokens of one kind; ``words`` lists what it adds to a task's vocabulary."""

    def __init__(self, kind: str, noise_words: int = 256, corpus_path: str | None = None,
                 corpus_name: str | None = None):
        """``corpus_name`` names the corpus in records and warnings (default: ``corpus_path``)."""
        if kind not in HAYSTACK_KINDS:
            raise ValueError(f"haystack={kind!r}; choose one of {list(HAYSTACK_KINDS)}")
        if kind == "text" and not corpus_path:
            raise ValueError("haystack='text' needs corpus_path, a UTF-8 text file")
        if kind == "words" and not 1 <= noise_words <= len(word_pool()) // 2:
            raise ValueError(f"noise_words must be in [1, {len(word_pool()) // 2}], got {noise_words}")
        self.kind = kind
        #: what a run's record names as read (the corpus of ``text``; nothing for the others)
        self.sources: dict[str, Any] = {}
        if kind == "repeat":
            self.text = FILLER.split()
            self.words = list(self.text)
        elif kind == "words":
            self.words = list(word_pool()[-noise_words:])
        else:
            path = Path(corpus_path)
            if not path.is_file():
                raise ValueError(f"corpus_path={corpus_path!r} is not a file")
            raw = path.read_text(encoding="utf-8")
            self.text = raw.lower().split()
            if not self.text:
                raise ValueError(f"corpus_path={corpus_path!r} holds no words")
            self.words = sorted(set(self.text))
            self.sources = corpus_sources(corpus_name or corpus_path, raw, len(self.text))
        self._ids: np.ndarray | None = None
        self._ends_sentence: np.ndarray | None = None

    def warn_if_repeated(self, length: int) -> None:
        """Warn if a sample of ``length`` tokens of a ``text`` haystack repeats its corpus."""
        if self.kind == "text":
            warn_if_corpus_repeats(self.sources["corpus"], len(self.text), length)

    def bind(self, vocab: Vocabulary) -> None:
        """Encode the haystack's words with the task's vocabulary (which must contain them)."""
        self._ids = vocab.encode(" ".join(self.text if self.kind != "words" else self.words))
        self._ends_sentence = np.array([word.rstrip("\"')]").endswith(SENTENCE_END) for word in vocab.words])

    def sample(self, rng: np.random.Generator, length: int) -> np.ndarray:
        """``length`` background tokens."""
        if self._ids is None:
            raise RuntimeError("Haystack.bind(vocab) must be called before sample()")
        if self.kind == "words":
            return rng.choice(self._ids, length)
        start = 0 if self.kind == "repeat" else int(rng.integers(len(self._ids)))
        return self._ids[(start + np.arange(length)) % len(self._ids)]


    def unit_starts(self, tokens: np.ndarray) -> np.ndarray:
        """Offsets in a sample (from ``sample``) where a unit begins: every paragraph of ``repeat``,
        every word of ``words``, every sentence of ``text`` (after a word ending in . ! or ?, as an
        approximation of RULER's nltk sentence splitter); the sample's start is one."""
        if self.kind == "repeat":
            return np.arange(0, len(tokens), len(self.text))
        if self.kind == "words":
            return np.arange(len(tokens))
        ends = np.flatnonzero(self._ends_sentence[tokens[:-1]]) + 1
        return np.concatenate(([0], ends))

    def min_length(self, units: int) -> int:
        """The fewest tokens of a sample in which ``place`` finds room for ``units`` pieces."""
        if units == 0 or self.kind == "text":  # RULER's depths may put several pieces in one sentence
            return 0
        return (units - 1) * len(self.text) + 1 if self.kind == "repeat" else units

    def place(self, rng: np.random.Generator, tokens: np.ndarray, count: int) -> np.ndarray:
        """Sorted offsets in ``tokens`` for ``count`` pieces, drawn as RULER places needles.

        ``text`` (RULER's essay haystack): at the start of sentence ``int(sentences x depth / 100)``
        (the end for 100) for depths drawn without replacement from ``RULER_DEPTHS``, so at most 40
        pieces. ``repeat`` (RULER's noise) and ``words``: before distinct units drawn uniformly.
        """
        starts = self.unit_starts(tokens)
        if self.kind == "text":
            if count > len(RULER_DEPTHS):
                raise ValueError(f"the text haystack places at most {len(RULER_DEPTHS)} pieces (RULER's depths), "
                                 f"asked for {count}")
            depths = rng.choice(RULER_DEPTHS, count, replace=False)
            return np.sort(np.append(starts, len(tokens))[len(starts) * depths // 100])
        if count > len(starts):
            raise ValueError(f"a {self.kind} haystack of {len(tokens)} tokens has {len(starts)} places, asked for {count}")
        return np.sort(rng.choice(starts, count, replace=False))


def insert(haystack: np.ndarray, pieces: list[np.ndarray], positions: list[int]) -> np.ndarray:
    """Insert ``pieces`` into ``haystack`` before the given haystack offsets (non-decreasing)."""
    parts, last = [], 0
    for piece, position in zip(pieces, positions):
        parts += [haystack[last:position], piece]
        last = position
    parts.append(haystack[last:])
    return np.concatenate(parts)
