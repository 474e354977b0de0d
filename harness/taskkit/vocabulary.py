"""A small word-level vocabulary for synthetic tasks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class Vocabulary:
    def __init__(self, words: Iterable[str]):
        self.words: list[str] = []
        self.ids: dict[str, int] = {}
        for word in words:
            if word not in self.ids:
                self.ids[word] = len(self.words)
                self.words.append(word)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> np.ndarray:
        """Ids of the whitespace-separated words of ``text``; an unknown word raises KeyError."""
        try:
            return np.array([self.ids[word] for word in text.split()], dtype=np.int64)
        except KeyError as error:
            raise KeyError(f"word {error.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[int(i)] for i in ids)
