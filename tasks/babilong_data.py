"""BABILong's released data (Kuratov et al. 2024) read with ``datasets``: its own contexts, questions and answers.

The benchmark as its authors published it on the Hugging Face hub (``RMT-team/babilong``, also
``booydar/babilong``): one configuration per length in GPT-2 tokens ("0k", "1k", ..., "128k"), one
split per bAbI task ("qa1", ..., "qa20"), rows with fields ``input`` (the facts spread through
PG-19 text), ``question`` and ``target`` (the one-word answer). memarena's ``babi_qa`` builds the
same kind of example itself; this task reads the released rows as they are, so that numbers are
BABILong's own examples. Default data: a shipped sample in the same format (``tasks/data/babilong``,
made-up qa1 stories without background, as the "0k" rows, and a training split of the same kind; a
plumbing check). Online::

    task=babilong_data task.source=RMT-team/babilong task.source_config=4k task.data_files=null \
        task.train_split=qa2 task.test_split=qa2

and from local files of the same format (parquet or JSON lines, one file per split)::

    task=babilong_data task.source=parquet "task.data_files={qa1: /data/babilong_4k_qa1.parquet}"

An example is the row's ``input`` as one document, its question, and the answer (the layout of
harness/taskkit/text_task.py). A released input has the length it was released at, so it is never
cut: one longer than its room is left out (``truncation=skip``), and a pretrained model's prompt
holds it whole (harness/pretrained/sizing.py). The split names the bAbI task; memarena has
BABILong's labels and prompts for qa1-qa5. The released lengths have no training split: with them,
``train_split`` names the test split too (it then only fits the bpe tokenizer of a model trained
here; evaluating a pretrained model, the data's purpose, reads the test split alone). Metric ``accuracy``: BABILong's
``compare_answers`` (tasks/babi_qa.py) with the question's task labels; chance: a random answer of
the split, scored the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.registry import register_task
from harness.taskkit.task import Example
from harness.taskkit.text_task import TextTask, TextTaskConfig, answer_texts
from tasks.babi_qa import compare_answers
from tasks.babi_stories import LABELS


@dataclass
class BabilongDataConfig(TextTaskConfig):
    name: str = "babilong_data"
    #: RMT-team/babilong on the hub (source_config: the released length, 0k ... 128k), or json/parquet files
    source: str = "json"
    data_files: Any = field(default_factory=lambda: {"train": "memarena:babilong/train.jsonl",
                                                     "qa1": "memarena:babilong/qa1.jsonl"})
    train_split: str = "train"
    test_split: str = "qa1"
    document_column: str = "input"
    question_column: str = "question"
    answer_column: str = "target"
    truncation: str = "skip"


@register_task("babilong_data")
class BabilongData(TextTask):
    Config = BabilongDataConfig
    metrics = {"accuracy": True}

    def __init__(self, config: BabilongDataConfig):
        match = re.fullmatch(r"qa(\d+)", config.test_split)
        if match is None or int(match.group(1)) not in LABELS:
            raise ValueError(f"babilong_data: test_split={config.test_split!r} names no bAbI task memarena has labels "
                             f"for; choose one of {[f'qa{qa}' for qa in LABELS]}")
        self.qa = int(match.group(1))
        super().__init__(config)

    def _columns(self) -> list[str]:
        return [*super()._columns(), self.config.question_column]

    def _items(self, split: str, data) -> list[int]:
        """Row numbers of the rows with a target."""
        return [i for i, target in enumerate(data[self.config.answer_column]) if str(target).strip()]

    def _texts(self, split: str, index: int) -> tuple[list[str], str, list[str]]:
        row = self.splits[split][self.items[split][index]]
        return [row[self.config.document_column]], row[self.config.question_column], answer_texts(
            row[self.config.answer_column])

    def _layout(self, split: str, index: int, knobs: dict[str, Any], rng: np.random.Generator) -> Example | None:
        [text], question_text, references = self._texts(split, index)
        question = self.question(question_text)
        document = self.truncate(self.encode(text), self.room(question, knobs["context_len"]) - 1)
        if document is None:
            return None
        return self.example([document], question, references, knobs, {"qa": self.qa, "question": question_text})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        return self.score_question(self.predicted_text(example, predictions), example.references,
                                   example.info["question"])

    def score_question(self, prediction: str, references: list[str], question: str) -> dict[str, float]:
        """BABILong's ``compare_answers`` of ``prediction`` with the target, the question's labels set aside."""
        return {"accuracy": float(compare_answers(references[0], prediction, question, LABELS[self.qa]))}

    def score_text(self, prediction: str, references: list[str]) -> dict[str, float]:
        return self.score_question(prediction, references, "")
