"""Dataset-backed tasks: real text loaded with Hugging Face ``datasets``, for a model trained from scratch.

The splits come from ``datasets.load_dataset(source, data_files=..., split=...)``: a hub name when
online, or a packaged builder (``json``, ``parquet``, ``csv``) with local files. A path in
``data_files`` that starts with ``memarena:`` names a file shipped in ``tasks/data/``. Loading
and tokenizing go through ``datasets``, which caches both (Arrow files keyed by the source files
and the tokenizer), so the runs of a sweep share them.

Tokenizers that fit a model trained from scratch: ``byte`` (UTF-8 bytes, 256 ids) or ``word``
(lower-cased words, punctuation and single digits, so that any number can be written; the
``vocab_size`` most frequent in the training split, the rest mapped to ``<unk>``; decoding joins
adjacent digits into one number). Four special ids come first: ``<pad> <sep> <ans> <eos>``.

Every example of a cell has exactly ``context_len`` tokens, laid out as::

    <pad> ... <pad> document <sep> question <ans> answer <eos> <pad> ...
                                                 '-- answer region: max_answer_tokens + 1 --'

so that all examples of a batch end in an answer region of the same size, which the model
generates greedily when evaluated (its own outputs fed back). Truncation is explicit, never in
the middle: a document longer than its room keeps its start (``truncation=keep_start``), keeps
its end (``keep_end``), or the example is left out (``skip``); a question keeps its first
``max_question_tokens`` tokens and an answer its first ``max_answer_tokens`` for training. Every
example records ``document_tokens`` (its length before truncation) and ``document_dropped``
(tokens cut) with its outcome, and answers are always scored against the full reference text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from harness.task import IGNORE, TEST, TRAIN, Example, Task, TaskConfig
from harness.vocabulary import Vocabulary

SHIPPED_DATA = Path(__file__).resolve().parent.parent / "tasks" / "data"
SPECIALS = ["<pad>", "<sep>", "<ans>", "<eos>"]
PAD, SEP, ANS, EOS = range(len(SPECIALS))
UNKNOWN = "<unk>"
TRUNCATIONS = ("keep_start", "keep_end", "skip")
WORD = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")  # words of letters, single digits, punctuation


@dataclass
class TextTaskConfig(TaskConfig):
    #: a datasets builder ("json", "parquet", "csv") for local files, or a dataset on the hub
    source: str = "json"
    #: the dataset's configuration name, if it has several (load_dataset's second argument)
    source_config: Optional[str] = None
    #: split name -> file (or list of files); "memarena:<path>" is a file shipped in tasks/data/
    data_files: Optional[dict[str, Any]] = None
    train_split: str = "train"
    test_split: str = "test"
    #: split that learning-rate tuning evaluates on (tune.lr_grid); null: this task cannot be tuned
    validation_split: Optional[str] = None
    document_column: str = "document"
    answer_column: str = "answer"
    tokenizer: str = "word"  # word | byte
    #: words kept by the word tokenizer (most frequent in the training split)
    vocab_size: int = 4000
    max_question_tokens: int = 32
    max_answer_tokens: int = 16
    truncation: str = "keep_start"  # keep_start | keep_end | skip


class Tokenizer:
    """Text <-> ids; the first ids are SPECIALS."""

    def __init__(self, kind: str, training_texts: list[str], vocab_size: int):
        self.kind = kind
        if kind == "byte":
            self.vocab = Vocabulary([*SPECIALS, *(f"<0x{b:02x}>" for b in range(256))])
            return
        counts = Counter(word for text in training_texts for word in WORD.findall(text.lower()))
        frequent = sorted(counts, key=lambda word: (-counts[word], word))[:vocab_size]
        self.vocab = Vocabulary([*SPECIALS, UNKNOWN, *frequent])

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) + len(SPECIALS)
        unknown = self.vocab.ids[UNKNOWN]
        return np.array([self.vocab.ids.get(word, unknown) for word in WORD.findall(text.lower())], dtype=np.int64)

    def decode(self, ids: np.ndarray) -> str:
        """Text of ``ids`` up to the first <eos>, special ids left out."""
        ids = [int(i) for i in ids]
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        ids = [i for i in ids if i >= len(SPECIALS)]
        if self.kind == "byte":
            return bytes(i - len(SPECIALS) for i in ids).decode("utf-8", errors="replace")
        words = [self.vocab.words[i] for i in ids]
        return "".join(word if i and word.isdigit() and words[i - 1].isdigit() else f" {word}"
                       for i, word in enumerate(words)).strip()


class TextTask(Task):
    """Base of the dataset-backed tasks; subclasses name the question column and score the text."""

    Config: ClassVar[type[TextTaskConfig]] = TextTaskConfig
    cell_knobs = {"context_len": int}
    #: the column holding the question, or None for tasks without one (summarization)
    question_column: ClassVar[str | None] = None
    cacheable = False  # datasets caches the tokenized splits, keyed by the files' contents

    def __init__(self, config: TextTaskConfig):
        if config.tokenizer not in ("word", "byte"):
            raise ValueError(f"{self.name}: tokenizer={config.tokenizer!r}; choose 'word' or 'byte'")
        if config.truncation not in TRUNCATIONS:
            raise ValueError(f"{self.name}: truncation={config.truncation!r}; choose one of {list(TRUNCATIONS)}")
        for key in ("vocab_size", "max_answer_tokens"):
            if getattr(config, key) < 1:
                raise ValueError(f"{self.name}: {key} must be at least 1, got {getattr(config, key)}")
        if config.max_question_tokens < 0:
            raise ValueError(f"{self.name}: max_question_tokens must be at least 0, got {config.max_question_tokens}")
        self.config = config
        names = (config.train_split, config.test_split, *([config.validation_split] if config.validation_split else []))
        self.splits = {split: self._load(split) for split in names}
        train = self.splits[config.train_split]
        self.tokenizer = Tokenizer(config.tokenizer, [
            text for column in self._text_columns() for text in train[column]] +
            [answer for row in train[config.answer_column] for answer in answer_texts(row)], config.vocab_size)
        super().__init__(config)
        self.generated_tokens = config.max_answer_tokens + 1
        self.encoded = {split: self._encode(data) for split, data in self.splits.items()}
        self._chance = self._context_free_scores()

    def _text_columns(self) -> list[str]:
        return [self.config.document_column] + ([self.question_column] if self.question_column else [])

    def _load(self, split: str):
        import datasets

        datasets.disable_progress_bars()
        config = self.config
        data_files = None
        if config.data_files is not None:
            data_files = {name: _shipped(files) for name, files in config.data_files.items()}
        for file in _local_files(data_files, split):
            if file.stat().st_size == 0:
                raise ValueError(f"{self.name}: data file {file} of split {split!r} is empty")
        try:
            data = datasets.load_dataset(config.source, config.source_config, data_files=data_files, split=split)
        except Exception as error:  # datasets raises many kinds; all mean "cannot load this"
            raise ValueError(f"{self.name}: cannot load split {split!r} of source={config.source!r} "
                             f"(data_files={data_files}): {type(error).__name__}: {error}") from None
        missing = [column for column in (*self._text_columns(), config.answer_column) if column not in data.column_names]
        if missing:
            raise ValueError(f"{self.name}: split {split!r} has no column(s) {missing}; its columns: {data.column_names}"
                             " (set task.document_column / question_column / answer_column)")
        if len(data) == 0:
            raise ValueError(f"{self.name}: split {split!r} of {config.source!r} is empty")
        return data

    def build_vocabulary(self) -> Vocabulary:
        return self.tokenizer.vocab

    def _encode(self, data) -> list[dict[str, Any]]:
        """Token ids of every row, through ``datasets.map`` (cached with the data and the tokenizer)."""
        config = self.config
        columns = {"document": config.document_column, "question": self.question_column, "answer": config.answer_column}
        encoded = data.map(_encode_row, fn_kwargs={"tokenizer": self.tokenizer, "columns": columns, "config": {
            "max_question_tokens": config.max_question_tokens, "max_answer_tokens": config.max_answer_tokens}},
            remove_columns=data.column_names, desc=f"tokenize {self.name}")
        encoded.set_format("numpy", columns=["document", "question", "answer"], output_all_columns=True)
        rows = [encoded[i] for i in range(len(encoded))]
        for row in rows:
            if not len(row["references"]):
                raise ValueError(f"{self.name}: an example has no answer in column {config.answer_column!r}")
            row["references"] = list(row["references"])
        return rows

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        """Room for one document token, the longest question and the answer region."""
        return 1 + 1 + self.config.max_question_tokens + 1 + self.generated_tokens

    def _layout(self, item: dict[str, Any], context_len: int) -> Example | None:
        """The example of ``context_len`` tokens (None if it is skipped for want of room)."""
        region = self.generated_tokens
        room = context_len - region - 2 - len(item["question"])
        document = item["document"]
        dropped = max(0, len(document) - room)
        if dropped and self.config.truncation == "skip":
            return None
        if dropped:
            document = document[:room] if self.config.truncation == "keep_start" else document[dropped:]
        answer = np.concatenate((item["answer"], [EOS]))
        prompt = np.concatenate((document, [SEP], item["question"], [ANS]))
        tokens = np.full(context_len, PAD, dtype=np.int64)
        tokens[context_len - region - len(prompt) : context_len - region] = prompt
        tokens[context_len - region : context_len - region + len(answer)] = answer
        labels = np.full(context_len, IGNORE, dtype=np.int64)
        first = context_len - region - 1  # the <ans> position predicts the first answer token
        labels[first : first + len(answer)] = answer
        info = {"document_tokens": len(item["document"]), "document_dropped": dropped}
        return Example(tokens, labels, {"context_len": context_len}, None, info, item["references"])

    def _examples(self, split: str, order: np.ndarray, context_len: int, count: int) -> list[Example]:
        items = self.encoded[split]
        examples = []
        for index in order:
            example = self._layout(items[int(index)], context_len)
            if example is not None:
                examples.append(example)
                if len(examples) == count:
                    return examples
        raise ValueError(f"{self.name}: split {split!r} has only {len(examples)} example(s) that fit context_len="
                         f"{context_len} with truncation={self.config.truncation!r}; {count} are needed")

    def check_data(self, cells, count, test_seed, training_lengths, batch_size, training_seed, split="test") -> None:
        """Lay out the examples of every cell and of the first training step: too small a split fails now."""
        for knobs in cells:
            self.test_examples(test_seed, knobs, count, split)
        for length in training_lengths:
            self.training_examples(training_seed, 0, batch_size, length)

    def test_examples(self, seed: int, knobs: dict[str, Any], count: int, split: str = "test") -> list[Example]:
        """The first ``count`` examples (that fit) of the test or validation split, in an order drawn from ``seed``."""
        self.validate_cell(knobs)
        if split == "validation" and self.config.validation_split is None:
            raise ValueError(f"{self.name}: no validation split to tune on: set task.validation_split to a split of "
                             "the data that is neither the training nor the test split")
        split = self.config.validation_split if split == "validation" else self.config.test_split
        order = np.random.default_rng([seed, TEST]).permutation(len(self.encoded[split]))
        return self._examples(split, order, knobs["context_len"], count)

    def training_examples(self, seed: int, step: int, count: int, context_len: int) -> list[Example]:
        split = self.config.train_split
        order = np.random.default_rng([seed, TRAIN, step]).permutation(len(self.encoded[split]))
        return self._examples(split, order, context_len, count)

    def generate(self, rng: np.random.Generator, context_len: int) -> Example:
        split = self.config.test_split
        return self._examples(split, rng.permutation(len(self.encoded[split])), context_len, 1)[0]

    def predicted_text(self, example: Example, predictions: np.ndarray) -> str:
        first = len(example.tokens) - self.generated_tokens - 1
        return self.tokenizer.decode(predictions[first : first + self.generated_tokens])

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        return self.score_text(self.predicted_text(example, predictions), example.references)

    def score_text(self, prediction: str, references: list[str]) -> dict[str, float]:
        raise NotImplementedError

    def chance(self, **knobs: Any) -> dict[str, float]:
        return self._chance

    def _context_free_scores(self, count: int = 200) -> dict[str, float]:
        """Mean scores of a guesser that ignores the context: it answers with a random training answer."""
        rng = np.random.default_rng(0)
        test = self.encoded[self.config.test_split][:count]
        train = self.encoded[self.config.train_split]
        guesses = [self.tokenizer.decode(train[int(i)]["answer"]) for i in rng.integers(len(train), size=len(test))]
        scores = [self.score_text(guess, item["references"]) for guess, item in zip(guesses, test)]
        return {metric: float(np.mean([s[metric] for s in scores])) for metric in self.metrics}

    def oracle(self, example: Example) -> np.ndarray:
        """The reference answer's tokens (a reader that knows the answer, to check the scoring)."""
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        answer = np.concatenate((self.tokenizer.encode(example.references[0]), [EOS]))[: self.generated_tokens]
        first = len(example.tokens) - self.generated_tokens - 1
        predictions[first : first + len(answer)] = answer
        return predictions


def _encode_row(row: dict[str, Any], tokenizer: Tokenizer, columns: dict[str, str | None],
                config: dict[str, int]) -> dict[str, Any]:
    question = tokenizer.encode(row[columns["question"]]) if columns["question"] else np.zeros(0, np.int64)
    references = answer_texts(row[columns["answer"]])
    answer = tokenizer.encode(references[0]) if references else np.zeros(0, np.int64)
    return {"document": tokenizer.encode(row[columns["document"]]),
            "question": question[: config["max_question_tokens"]],
            "answer": answer[: config["max_answer_tokens"]], "references": references}


def answer_texts(value: Any) -> list[str]:
    """Reference texts of an answer cell: a string, a list of strings, or SQuAD's {"text": [...]}."""
    if isinstance(value, dict):
        value = value.get("text", [])
    if isinstance(value, str):
        return [value]
    return [str(text) for text in value]


def _local_files(data_files: dict[str, Any] | None, split: str) -> list[Path]:
    """The files of ``split`` in ``data_files`` that exist on this machine (not hub names or URLs)."""
    files = (data_files or {}).get(split, [])
    return [Path(file) for file in ([files] if isinstance(files, str) else files) if Path(file).is_file()]


def _shipped(files: Any) -> Any:
    if isinstance(files, str):
        return str(SHIPPED_DATA / files.removeprefix("memarena:")) if files.startswith("memarena:") else files
    return [_shipped(file) for file in files]
