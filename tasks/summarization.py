"""Abstractive summarization of real text, scored with ROUGE, loaded with ``datasets``.

A document and its summary, laid out as ``document <sep> <ans> summary`` (see
``harness/taskkit/text_task.py`` for loading, tokenizers, caps and truncation); the model generates the
summary greedily, up to ``answer_cap`` tokens. So that the length measures memory, a document
fills its example: one shorter than ``min_fill`` of its room is left out at that length (say
100 of 1000 tokens would be 90% padding), one longer is cut as ``truncation`` says, and every
example records ``document_tokens``, ``document_dropped`` and ``padding``. For lengths beyond a
source's documents, take a source of long documents (``ccdv/govreport-summarization``,
``ccdv/arxiv-summarization``): too few long documents fail before training, naming the length.

Default data: the shipped sample (``tasks/data/summarization``, made-up news items);
CNN/DailyMail is ``task.source=abisee/cnn_dailymail task.source_config=3.0.0 task.data_files=null
task.document_column=article task.answer_column=highlights task.test_split=validation`` when online.
Worked example from the sample at context_len=128 (test seed 0; bpe tokens shown as text; 76
document tokens, 38 of padding)::

    <pad> ... The council of Bergen approved a budget of 4 million for new bridges on Wednesday. ...
    A festival of engineering will be held in Quito next month. <sep> <ans>
    Bergen approves 4 million for new bridges. <eos>

Knob: ``context_len``. Metrics: ROUGE-1, ROUGE-2 and ROUGE-L F-measures (``rouge-score``, with
stemming), the maximum over the references. Chance: the scores of a guesser that answers with a
random training summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from harness.registry import register_task
from harness.taskkit.task import Example
from harness.taskkit.text_task import TextTask, TextTaskConfig, answer_texts

ROUGE = ("rougeL", "rouge1", "rouge2")


@dataclass
class SummarizationConfig(TextTaskConfig):
    name: str = "summarization"
    data_files: Any = field(default_factory=lambda: {
        "train": "memarena:summarization/train.jsonl", "test": "memarena:summarization/test.jsonl"})
    document_column: str = "document"
    answer_column: str = "summary"
    max_question_tokens: Optional[int] = 0
    #: summaries are long-tailed (CNN/DailyMail's longest are 10 times the median): the 95th percentile
    cap_percentile: float = 95.0
    #: the least share of its room a document fills (shorter ones are left out at that length)
    min_fill: float = 0.5


@register_task("summarization")
class Summarization(TextTask):
    Config = SummarizationConfig
    metrics = {name: True for name in ROUGE}

    def __init__(self, config: SummarizationConfig):
        from rouge_score import rouge_scorer  # imports nltk (seconds): only when the task is built

        if not 0.0 <= config.min_fill <= 1.0:
            raise ValueError(f"summarization: min_fill={config.min_fill} must be in [0, 1]")
        self.scorer = rouge_scorer.RougeScorer(list(ROUGE), use_stemmer=True)
        super().__init__(config)

    def _items(self, split: str, data) -> list[int]:
        """Row numbers of the rows with a summary (the rows themselves are read when laid out)."""
        answers = data[self.config.answer_column]
        return [i for i, answer in enumerate(answers) if any(text.strip() for text in answer_texts(answer))]

    def _texts(self, split: str, index: int) -> tuple[list[str], str, list[str]]:
        row = self.splits[split][self.items[split][index]]
        return [row[self.config.document_column]], "", answer_texts(row[self.config.answer_column])

    def _layout(self, split: str, index: int, knobs: dict[str, Any], rng: np.random.Generator) -> Example | None:
        [text], _, references = self._texts(split, index)
        document = self.encode(text)
        room = self.room(np.zeros(0), knobs["context_len"]) - 1
        if len(document) < self.config.min_fill * room:
            return None
        kept = self.truncate(document, room)
        if kept is None:
            return None
        info = {"document_tokens": len(document), "document_dropped": len(document) - len(kept)}
        return self.example([kept], np.zeros(0, np.int64), references, knobs, info)

    def _fit_rule(self) -> str:
        return f" and documents filling at least min_fill={self.config.min_fill} of their room"

    def score_text(self, prediction: str, references: list[str]) -> dict[str, float]:
        scores = [self.scorer.score(reference, prediction) for reference in references]
        return {name: max(score[name].fmeasure for score in scores) for name in ROUGE}
