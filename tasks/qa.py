"""Extractive question answering on real text (SQuAD style), loaded with ``datasets``.

A document, a question and a short answer, laid out as ``document <sep> question <ans> answer``
(see ``harness/text_task.py`` for loading, tokenizers and truncation); the model generates the
answer greedily. Default data: the shipped sample (``tasks/data/qa``, made-up biographies in
SQuAD's format); SQuAD itself is ``task.source=rajpurkar/squad task.document_column=context
task.test_split=validation`` when online. Worked example from the sample, word tokenizer::

    ines weber was born in kyoto in 1952 . ines weber studied physics at the university . ...
    <sep> where did ines weber work ? <ans> cork <eos>

Knob: ``context_len``. Metrics (SQuAD's, the maximum over the reference answers, after
lower-casing and removing punctuation, articles and extra spaces): ``f1`` (token overlap) and
``exact_match``. Chance: the scores of a guesser that answers with a random training answer.
"""

from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.registry import register_task
from harness.text_task import TextTask, TextTaskConfig


@dataclass
class QaConfig(TextTaskConfig):
    name: str = "qa"
    data_files: Optional[dict[str, Any]] = field(
        default_factory=lambda: {"train": "memarena:qa/train.jsonl", "test": "memarena:qa/test.jsonl"})
    document_column: str = "context"
    question_column: str = "question"
    answer_column: str = "answers"
    max_answer_tokens: int = 8


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    predicted, true = normalize(prediction).split(), normalize(reference).split()
    common = sum((collections.Counter(predicted) & collections.Counter(true)).values())
    if not predicted or not true:
        return float(predicted == true)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(true)
    return 2 * precision * recall / (precision + recall)


@register_task("qa")
class Qa(TextTask):
    Config = QaConfig
    metrics = {"f1": True, "exact_match": True}

    @property
    def question_column(self) -> str:
        return self.config.question_column

    def score_text(self, prediction: str, references: list[str]) -> dict[str, float]:
        return {"f1": max(token_f1(prediction, reference) for reference in references),
                "exact_match": float(any(normalize(prediction) == normalize(reference) for reference in references))}
