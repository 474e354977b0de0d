"""RULER's scores of a generated answer (Hsieh et al. 2024, ``scripts/eval/synthetic/constants.py``).

Both look for each reference inside the generated text, case-insensitively, in any order, as
RULER scores its synthetic tasks (per example here; RULER averages them over examples and prints
percentages). With word-level vocabularies the text is the decoded words joined by spaces, so a
reference of several words (the digits of a value) must appear as that run of words::

    string_match_all("7 1 4 2 9 3 8", ["2 9 3", "7 1"])  ->  1.0   (both found, order free)
    string_match_all("7 1 4 2 9 3 8", ["2 9 3", "5 5"])  ->  0.5
    string_match_part("7 1 4 2 9 3 8", ["2 9 3", "5 5"]) ->  1.0   (any one found)
"""

from __future__ import annotations

import numpy as np

from harness.taskkit.vocabulary import Vocabulary


def string_match_all(prediction: str, references: list[str]) -> float:
    """The share of ``references`` found in ``prediction`` (RULER's metric for NIAH, VT, CWE, FWE)."""
    if not references:
        raise ValueError("string_match_all needs at least one reference")
    text = prediction.lower()
    return sum(reference.lower() in text for reference in references) / len(references)


def string_match_part(prediction: str, references: list[str]) -> float:
    """1.0 if any of ``references`` is found in ``prediction``, else 0.0 (RULER's metric for QA)."""
    if not references:
        raise ValueError("string_match_part needs at least one reference")
    text = prediction.lower()
    return float(any(reference.lower() in text for reference in references))


def answer_scores(vocab: Vocabulary, predicted: np.ndarray, truth: np.ndarray, item_len: int) -> dict[str, float]:
    """An answer of items (values, names, words) of ``item_len`` tokens each, as RULER scores it:
    ``string_match_all`` of the items in the decoded prediction, in any order; and ``exact_match``,
    every token in place."""
    references = [vocab.decode(item) for item in truth.reshape(-1, item_len)]
    return {"string_match_all": string_match_all(vocab.decode(predicted), references),
            "exact_match": float((predicted == truth).all())}
