"""Question answering over real text: the gold paragraph among distractor paragraphs filling the length.

As RULER's qa_1 (SQuAD) and qa_2 (HotpotQA) build their inputs (``scripts/data/synthetic/qa.py``):
the paragraphs of one split form a pool; an example of ``context_len`` tokens is a question's own
paragraphs (its "gold" ones: one for SQuAD, all ten of a HotpotQA question) among paragraphs of
other questions of the same split (first those of the same article, ``article_column``, as RULER
takes SQuAD's), as many whole paragraphs as fit; the start of one more fills the rest, so that the
distance between a question and its paragraph grows with the length. With a ``depth`` knob in the
grid (memarena's own), the gold paragraphs sit together at that depth among the distractors
(0: first, 1: last before the question); without it, every paragraph, gold or not, takes a random
place (RULER). A paragraph is a cell of ``document_column``: a string (SQuAD), or HotpotQA's
``{"title": [...], "sentences": [[...], ...]}``, whose paragraphs are "title\\nsentences" as RULER
joins them. Rows without an answer (SQuAD 2.0's unanswerable questions) are left out, as in RULER.

Default data: the shipped sample (``tasks/data/qa``, made-up biographies in SQuAD's format).
Worked example from it at context_len=128, depth=1.0 (test seed 0; bpe tokens shown as text, a
paragraph per line, the second distractor cut to fill the length, no padding)::

    Ben Varga was born in Bergen and worked as a pilot. Jonas Silva was born in ... museum. <sep>
    Anna Lund was born in Nairobi in 1987. Anna Lund <sep>
    Grace Varga was born in Lima in 1906. ... Later Grace Varga moved to Porto and worked as a judge.
    In 2014 the city of Malmo opened a new museum. <sep>
    Where did Grace Varga work? <ans> Porto <eos>

Metrics: SQuAD's ``f1`` and ``exact_match`` (the maximum over the reference answers, after
lower-casing and removing punctuation, articles and extra spaces) and RULER's
``string_match_part`` (a reference found in the generated text); ``primary_metric`` says which
heads the report. Chance: the scores of a guesser that answers with a random training answer.
"""

from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from harness.registry import register_task
from harness.taskkit.string_match import string_match_part
from harness.taskkit.text_task import TextTask, TextTaskConfig, answer_texts
from harness.taskkit.task import Example

METRICS = ("f1", "exact_match", "string_match_part")


@dataclass
class QaConfig(TextTaskConfig):
    name: str = "qa"
    data_files: Any = field(
        default_factory=lambda: {"train": "memarena:qa/train.jsonl", "test": "memarena:qa/test.jsonl"})
    document_column: str = "context"
    question_column: str = "question"
    answer_column: str = "answers"
    #: paragraphs with the same value here (SQuAD's "title") are a question's first distractors; null: none
    article_column: Optional[str] = None
    #: the metric that heads the report: f1 | exact_match | string_match_part
    primary_metric: str = "f1"
    #: {"depth": [...]} places the gold paragraphs at those depths (conf/task/qa.yaml); {}: at random (RULER)
    grid: dict[str, list[Any]] = field(default_factory=dict)


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


def paragraphs(cell: Any) -> list[str]:
    """The paragraphs of a document cell: a string, or HotpotQA's {"title": [...], "sentences": [[...]]}."""
    if isinstance(cell, str):
        return [cell]
    if isinstance(cell, dict) and {"title", "sentences"} <= set(cell):
        return [f"{title}\n{''.join(sentences)}" for title, sentences in zip(cell["title"], cell["sentences"])]
    raise ValueError(f"a document cell must be a string or HotpotQA's {{'title', 'sentences'}}, got {type(cell).__name__}"
                     f" {str(cell)[:80]!r}")


@dataclass
class Question:
    gold: list[int]  # indices into the split's paragraphs
    same_article: list[int]
    question: str
    references: list[str]


@register_task("qa")
class Qa(TextTask):
    Config = QaConfig
    metrics = {name: True for name in METRICS}

    def __init__(self, config: QaConfig):
        if config.primary_metric not in METRICS:
            raise ValueError(f"qa: primary_metric={config.primary_metric!r}; choose one of {list(METRICS)}")
        self.metrics = {name: True for name in (config.primary_metric, *METRICS)}
        self.cell_knobs = {"context_len": int, **({"depth": float} if "depth" in config.grid else {})}
        self.paragraphs: dict[str, list[str]] = {}
        super().__init__(config)

    def _columns(self) -> list[str]:
        config = self.config
        return [*super()._columns(), config.question_column, *([config.article_column] if config.article_column else [])]

    def _items(self, split: str, data) -> list[Question]:
        """Every answerable question of the split, with its paragraphs' indices into the split's pool."""
        config = self.config
        columns = [config.document_column, config.question_column, config.answer_column,
                   *([config.article_column] if config.article_column else [])]
        pool: dict[str, int] = {}
        rows = []
        for row in data.select_columns(columns):
            try:
                own = [pool.setdefault(text, len(pool)) for text in paragraphs(row[config.document_column])]
            except ValueError as error:
                raise ValueError(f"qa: column {config.document_column!r} of split {split!r}: {error}") from None
            rows.append((own, row))
        articles = collections.defaultdict(dict)
        for own, row in rows:
            if config.article_column:
                articles[row[config.article_column]].update(dict.fromkeys(own))
        self.paragraphs[split] = list(pool)
        questions = []
        for own, row in rows:
            references = [text for text in answer_texts(row[config.answer_column]) if text.strip()]
            if references:
                article = articles[row[config.article_column]] if config.article_column else {}
                questions.append(Question(own, [i for i in article if i not in own], row[config.question_column],
                                          references))
        return questions

    def _texts(self, split: str, index: int) -> tuple[list[str], str, list[str]]:
        item = self.items[split][index]
        return [self.paragraphs[split][i] for i in item.gold], item.question, item.references

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        if "depth" in knobs and not 0.0 <= knobs["depth"] <= 1.0:
            raise ValueError(f"qa: depth={knobs['depth']} must be in [0, 1]")

    def training_knobs(self, rng: np.random.Generator, context_len: int) -> dict[str, Any]:
        return {"context_len": context_len, **({"depth": float(rng.uniform())} if "depth" in self.cell_knobs else {})}

    def _layout(self, split: str, index: int, knobs: dict[str, Any], rng: np.random.Generator) -> Example | None:
        item = self.items[split][index]
        pool = self.paragraphs[split]
        question = self.question(item.question)
        room = self.room(question, knobs["context_len"])
        gold = [self.encode(pool[i]) for i in item.gold]
        length = length_of(gold)
        info = {"document_tokens": length - len(gold), "document_dropped": 0, "distractors": 0, "gold_depth": 0.0,
                "answer_cut_out": False}
        if length > room:  # the gold paragraphs alone overflow: cut them as one document
            document = self.truncate(np.concatenate(gold), room - 1)
            if document is None:
                return None
            info["document_dropped"] = length - len(gold) - len(document)
            # an answer the gold text held but the cut removed: the example cannot be answered from its context
            kept, whole = self.tokenizer.decode(document), " ".join(pool[i] for i in item.gold)
            info["answer_cut_out"] = not any(ref in kept for ref in item.references) and any(
                ref in whole for ref in item.references)
            return self.example([document], question, item.references, knobs, info)
        distractors = []
        for i in self._candidates(split, item, rng):
            paragraph = self.encode(pool[i])
            if length + len(paragraph) + 1 > room:
                if room - length > 1:  # the start of one more fills what is left
                    distractors.append(paragraph[: room - length - 1])
                break
            distractors.append(paragraph)
            length += len(paragraph) + 1
        if "depth" in knobs:  # the boundary between distractors nearest to depth, in tokens
            boundaries = np.cumsum([0, *(len(distractor) + 1 for distractor in distractors)])
            first = int(np.abs(boundaries - knobs["depth"] * boundaries[-1]).argmin())
            documents = [*distractors[:first], *gold, *distractors[first:]]
        else:
            documents = [*gold, *distractors]
            order = rng.permutation(len(documents))
            documents = [documents[i] for i in order]
            first = int(np.flatnonzero(order < len(gold)).min())
        info.update(distractors=len(distractors), gold_depth=length_of(documents[:first]) / max(1, length_of(distractors)))
        return self.example(documents, question, item.references, knobs, info)

    def _candidates(self, split: str, item: Question, rng: np.random.Generator):
        """Distractor paragraphs in the order they are tried: the same article's, then any other's."""
        yield from (int(i) for i in rng.permutation(item.same_article))
        taken, size = {*item.gold, *item.same_article}, len(self.paragraphs[split])
        while len(taken) < size:  # draws without a permutation of the whole pool (HotpotQA's has 900k)
            i = int(rng.integers(size))
            if i not in taken:
                taken.add(i)
                yield i

    def score_text(self, prediction: str, references: list[str]) -> dict[str, float]:
        return {"f1": max(token_f1(prediction, reference) for reference in references),
                "exact_match": float(any(normalize(prediction) == normalize(reference) for reference in references)),
                "string_match_part": string_match_part(prediction, references)}


def length_of(documents: list[np.ndarray]) -> int:
    """Tokens of ``documents``, each with its <sep>."""
    return sum(len(document) + 1 for document in documents)
