"""Abstractive summarization of real text, scored with ROUGE, loaded with ``datasets``.

A document and its summary, laid out as ``document <sep> <ans> summary`` (see
``harness/text_task.py`` for loading, tokenizers and truncation); the model generates the summary
greedily, up to ``max_answer_tokens`` tokens. Default data: the shipped sample
(``tasks/data/summarization``, made-up news items); CNN/DailyMail is ``task.source=abisee/cnn_dailymail
task.source_config=3.0.0 task.data_files=null task.document_column=article task.answer_column=highlights`` when online.
Worked example from the sample, word tokenizer::

    the council of graz approved a budget of 7 million for new bridges on tuesday . ...
    <sep> <ans> graz approves 7 million for new bridges . <eos>

Knob: ``context_len``. Metrics: ROUGE-1, ROUGE-2 and ROUGE-L F-measures (``rouge-score``, with
stemming), the maximum over the references. Chance: the scores of a guesser that answers with a
random training summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from harness.registry import register_task
from harness.text_task import TextTask, TextTaskConfig

ROUGE = ("rougeL", "rouge1", "rouge2")


@dataclass
class SummarizationConfig(TextTaskConfig):
    name: str = "summarization"
    data_files: Optional[dict[str, Any]] = field(default_factory=lambda: {
        "train": "memarena:summarization/train.jsonl", "test": "memarena:summarization/test.jsonl"})
    document_column: str = "document"
    answer_column: str = "summary"
    max_question_tokens: int = 0
    max_answer_tokens: int = 24


@register_task("summarization")
class Summarization(TextTask):
    Config = SummarizationConfig
    metrics = {name: True for name in ROUGE}

    def __init__(self, config: SummarizationConfig):
        from rouge_score import rouge_scorer  # imports nltk (seconds): only when the task is built

        self.scorer = rouge_scorer.RougeScorer(list(ROUGE), use_stemmer=True)
        super().__init__(config)

    def score_text(self, prediction: str, references: list[str]) -> dict[str, float]:
        scores = [self.scorer.score(reference, prediction) for reference in references]
        return {name: max(score[name].fmeasure for score in scores) for name in ROUGE}
