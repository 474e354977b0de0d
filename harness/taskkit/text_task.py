"""Dataset-backed tasks: real text loaded with Hugging Face ``datasets``, for a model trained from scratch.

The splits come from ``datasets.load_dataset(source, data_files=..., split=...)``: a hub name when
online, or a packaged builder (``json``, ``parquet``, ``csv``) with local files. A path in
``data_files`` that starts with ``memarena:`` names a file shipped in ``tasks/data/``.

Tokenizers that fit a model trained from scratch and write back any text exactly (so that
SQuAD's normalisation and ROUGE see the text as it was, "NP-complete" and "30,000" included):
``bpe`` (byte-level BPE from Hugging Face ``tokenizers``, trained on ``tokenizer_rows`` rows of
the training split, ``vocab_size`` ids at most; every byte is a symbol, so no word is ever unknown) or
``byte`` (UTF-8 bytes, 256 ids). Four special ids come first: ``<pad> <sep> <ans> <eos>``.
Answers are encoded after a space, as words inside a text are, so that the tokens of an answer
copied from a document are the document's own tokens.

Caps come from the data unless set: an answer keeps its first ``max_answer_tokens`` tokens, by
default the ``cap_percentile`` percentile of the answer lengths (the shortest reference of each
row) in up to ``tokenizer_rows`` rows of every loaded split; a question keeps its first
``max_question_tokens``, by default the longest question in them (``answer_cap`` and
``question_cap`` give the values in use, and every example records ``answer_tokens_cut``). The
evaluation splits count because a bpe trained on the training split writes an unseen word of a
test answer in more tokens than any training answer takes; they give only lengths. Of the
references of an example the first that fits the answer cap is the one trained on and answered
by the oracle; answers are always scored against every full reference.

Every example of a cell has exactly ``context_len`` tokens, laid out as::

    <pad> ... document <sep> [document <sep> ...] question <ans> answer <eos> <pad> ...
                                                       '-- answer region: answer_cap + 1 --'

so that all examples of a batch end in an answer region of the same size, which the model
generates greedily when evaluated (its own outputs fed back). Subclasses choose the documents
(``_layout``): the gold paragraph among distractors for QA, one long document for summarization.
Truncation is explicit, never in the middle: a document longer than its room keeps its start
(``truncation=keep_start``), keeps its end (``keep_end``), or the example is left out (``skip``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from harness.taskkit.task import EVAL_SPLITS, IGNORE, TRAIN, VALIDATION, Example, Task, TaskConfig
from harness.taskkit.vocabulary import Vocabulary

SHIPPED_DATA = Path(__file__).resolve().parents[2] / "tasks" / "data"
SPECIALS = ["<pad>", "<sep>", "<ans>", "<eos>"]
PAD, SEP, ANS, EOS = range(len(SPECIALS))
TOKENIZERS = ("bpe", "byte")
TRUNCATIONS = ("keep_start", "keep_end", "skip")


@dataclass
class TextTaskConfig(TaskConfig):
    #: a datasets builder ("json", "parquet", "csv") for local files, or a dataset on the hub
    source: str = "json"
    #: the dataset's configuration name, if it has several (load_dataset's second argument)
    source_config: Optional[str] = None
    #: split name -> file (or list of files); "memarena:<path>" is a file shipped in tasks/data/
    data_files: Any = None  # Any, not Optional[dict]: Hydra cannot set a dict where a typed dict is null
    train_split: str = "train"
    test_split: str = "test"
    #: split that learning-rate tuning evaluates on (tune.lr_grid); null: this task cannot be tuned
    validation_split: Optional[str] = None
    document_column: str = "document"
    answer_column: str = "answer"
    tokenizer: str = "bpe"  # bpe | byte
    #: ids of the bpe tokenizer (the specials and the 256 byte symbols included)
    vocab_size: int = 8000
    #: rows of each split (drawn with a fixed seed) that set the caps; those of the training split train the bpe
    tokenizer_rows: int = 20000
    #: null: the longest question in the tokenizer_rows
    max_question_tokens: Optional[int] = None
    #: null: the cap_percentile percentile of the answer lengths in the tokenizer_rows (100: the longest)
    max_answer_tokens: Optional[int] = None
    cap_percentile: float = 100.0
    truncation: str = "keep_start"  # keep_start | keep_end | skip


class Tokenizer:
    """Text <-> ids; the first ids are SPECIALS; ``decode(encode(text)) == text`` for any text."""

    def __init__(self, kind: str, training_texts: list[str], vocab_size: int):
        self.kind = kind
        if kind == "byte":
            self.vocab = Vocabulary([*SPECIALS, *(f"<0x{b:02x}>" for b in range(256))])
            return
        from tokenizers import Tokenizer as Bpe, decoders, models, pre_tokenizers, trainers

        self.bpe = Bpe(models.BPE())
        self.bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self.bpe.decoder = decoders.ByteLevel()
        self.bpe.train_from_iterator(training_texts, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        ids = self.bpe.get_vocab()
        self.vocab = Vocabulary(sorted(ids, key=ids.get))

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) + len(SPECIALS)
        return np.array(self.bpe.encode(text).ids, dtype=np.int64)

    def decode(self, ids: np.ndarray) -> str:
        """Text of ``ids`` up to the first <eos>, special ids left out, without surrounding spaces."""
        ids = [int(i) for i in ids]
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        ids = [i for i in ids if i >= len(SPECIALS)]
        if self.kind == "byte":
            return bytes(i - len(SPECIALS) for i in ids).decode("utf-8", errors="replace").strip()
        return self.bpe.decode(ids).strip()


class TextTask(Task):
    """Base of the dataset-backed tasks: loading, tokenizer, caps, example order, scoring of the text.

    A subclass says what an item of a split is (``_items``, ``_texts``), lays an item out at a
    length (``_layout``) and scores the generated text (``score_text``).
    """

    Config: ClassVar[type[TextTaskConfig]] = TextTaskConfig
    cell_knobs = {"context_len": int}
    cacheable = False  # examples are laid out from the loaded data (cached by datasets) on demand

    def __init__(self, config: TextTaskConfig):
        if config.tokenizer not in TOKENIZERS:
            raise ValueError(f"{self.name}: tokenizer={config.tokenizer!r}; choose one of {list(TOKENIZERS)}")
        if config.truncation not in TRUNCATIONS:
            raise ValueError(f"{self.name}: truncation={config.truncation!r}; choose one of {list(TRUNCATIONS)}")
        for key in ("vocab_size", "tokenizer_rows", "max_answer_tokens"):
            if getattr(config, key) is not None and getattr(config, key) < 1:
                raise ValueError(f"{self.name}: {key} must be at least 1, got {getattr(config, key)}")
        if config.max_question_tokens is not None and config.max_question_tokens < 0:
            raise ValueError(f"{self.name}: max_question_tokens must be at least 0, got {config.max_question_tokens}")
        if not 0 < config.cap_percentile <= 100:
            raise ValueError(f"{self.name}: cap_percentile must be in (0, 100], got {config.cap_percentile}")
        if config.tokenizer == "bpe" and config.vocab_size < len(SPECIALS) + 256:
            raise ValueError(f"{self.name}: vocab_size={config.vocab_size} is less than the {len(SPECIALS) + 256} ids "
                             "of the specials and the 256 bytes that a bpe tokenizer starts from")
        self.config = config
        names = (config.train_split, config.test_split, *([config.validation_split] if config.validation_split else []))
        self.splits = {split: self._load(split) for split in names}
        self.items = {split: self._items(split, data) for split, data in self.splits.items()}
        for split, items in self.items.items():
            if not items:
                raise ValueError(f"{self.name}: split {split!r} has no example with an answer in column "
                                 f"{config.answer_column!r}")
        samples = {split: [self._texts(split, int(i)) for i in np.random.default_rng(0).permutation(
            len(items))[: config.tokenizer_rows]] for split, items in self.items.items()}
        self.tokenizer = Tokenizer(config.tokenizer, [text for documents, question, references in samples[names[0]]
                                                      for text in (*documents, question, *references)],
                                   config.vocab_size)
        super().__init__(config)
        self._tokens: dict[str, np.ndarray] = {}
        texts = [text for sample in samples.values() for text in sample]
        self.question_cap = config.max_question_tokens
        if self.question_cap is None:
            self.question_cap = max(len(self.question(question)) for _, question, _ in texts)
        self.answer_cap = config.max_answer_tokens or max(1, int(np.ceil(np.percentile(
            [min(len(self.encode(" " + reference)) for reference in references) for _, _, references in texts],
            config.cap_percentile))))
        self.generated_tokens = self.answer_cap + 1
        self._chance = self._context_free_scores()

    def _load(self, split: str):
        import datasets

        datasets.disable_progress_bars()
        config = self.config
        data_files = None  # only this split's files: another split's may have other columns
        if config.data_files and split in config.data_files:
            data_files = {split: _shipped(config.data_files[split])}
        for file in _local_files(data_files, split):
            if file.stat().st_size == 0:
                raise ValueError(f"{self.name}: data file {file} of split {split!r} is empty")
        try:
            data = datasets.load_dataset(config.source, config.source_config, data_files=data_files, split=split)
        except Exception as error:  # datasets raises many kinds; all mean "cannot load this"
            raise ValueError(f"{self.name}: cannot load split {split!r} of source={config.source!r} "
                             f"(data_files={data_files}): {type(error).__name__}: {error}") from None
        missing = [column for column in self._columns() if column not in data.column_names]
        if missing:
            raise ValueError(f"{self.name}: split {split!r} has no column(s) {missing}; its columns: {data.column_names}"
                             " (set task.document_column / question_column / answer_column)")
        if len(data) == 0:
            raise ValueError(f"{self.name}: split {split!r} of {config.source!r} is empty")
        return data

    def _columns(self) -> list[str]:
        """The columns every split must have."""
        return [self.config.document_column, self.config.answer_column]

    def _items(self, split: str, data) -> list[Any]:
        """The items of a split (what ``_texts`` and ``_layout`` take an index into)."""
        raise NotImplementedError

    def _texts(self, split: str, index: int) -> tuple[list[str], str, list[str]]:
        """(the item's own documents, its question or "", its reference answers)."""
        raise NotImplementedError

    def _layout(self, split: str, index: int, knobs: dict[str, Any], rng: np.random.Generator) -> Example | None:
        """The example of item ``index`` in the cell ``knobs`` (None if it is left out at this length)."""
        raise NotImplementedError

    def build_vocabulary(self) -> Vocabulary:
        return self.tokenizer.vocab

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``, computed once per text."""
        if text not in self._tokens:
            self._tokens[text] = self.tokenizer.encode(text)
        return self._tokens[text]

    def question(self, text: str) -> np.ndarray:
        """Tokens of a question, cut to the question cap (once it is known)."""
        return self.encode(" " + text)[: self.question_cap] if text else np.zeros(0, np.int64)

    def answer(self, references: list[str]) -> tuple[np.ndarray, int]:
        """Tokens of the first reference that fits the answer cap (else the first, cut) and <eos>; tokens cut."""
        encoded = [self.encode(" " + reference) for reference in references]
        tokens = next((tokens for tokens in encoded if len(tokens) <= self.answer_cap), encoded[0])
        return np.append(tokens[: self.answer_cap], EOS), max(0, len(tokens) - self.answer_cap)

    def room(self, question: np.ndarray, context_len: int) -> int:
        """Tokens left for documents and their separators in an example of ``context_len``."""
        return context_len - self.generated_tokens - 1 - len(question)

    def truncate(self, document: np.ndarray, room: int) -> np.ndarray | None:
        """``document`` cut to ``room`` tokens as ``truncation`` says (None: ``skip`` and too long)."""
        if len(document) <= room:
            return document
        if self.config.truncation == "skip":
            return None
        return document[:room] if self.config.truncation == "keep_start" else document[len(document) - room :]

    def example(self, documents: list[np.ndarray], question: np.ndarray, references: list[str],
                knobs: dict[str, Any], info: dict[str, Any]) -> Example:
        """``documents`` (each followed by <sep>), the question and the answer region, left-padded to context_len."""
        context_len = knobs["context_len"]
        answer, cut = self.answer(references)
        prompt = np.concatenate([*(np.append(document, SEP) for document in documents), question, [ANS]])
        region = context_len - self.generated_tokens
        if len(prompt) > region:
            raise AssertionError(f"{self.name}: a prompt of {len(prompt)} tokens overflows its room of {region}")
        tokens = np.full(context_len, PAD, dtype=np.int64)
        tokens[region - len(prompt) : region] = prompt
        tokens[region : region + len(answer)] = answer
        labels = np.full(context_len, IGNORE, dtype=np.int64)
        labels[region - 1 : region - 1 + len(answer)] = answer  # the <ans> position predicts the first answer token
        info = {**info, "padding": region - len(prompt), "answer_tokens_cut": cut}
        return Example(tokens, labels, dict(knobs), None, info, references)

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        """Room for one document token, its <sep>, the longest question, <ans> and the answer region."""
        return 1 + 1 + self.question_cap + 1 + self.generated_tokens

    def _examples(self, split: str, order: np.ndarray, context_len: int, knobs: dict[str, Any] | None, count: int,
                  seeds: list[int]) -> list[Example]:
        """The first ``count`` items of ``order`` that fit, each laid out with a generator seeded from
        ``seeds``, the item and the length (so the same distractors at every depth), in the cell
        ``knobs`` or, for training (None), in knobs drawn per example (``training_knobs``)."""
        examples = []
        for index in order:
            rng = np.random.default_rng([*seeds, int(index), context_len])
            example = self._layout(split, int(index), knobs or self.training_knobs(rng, context_len), rng)
            if example is not None:
                examples.append(example)
                if len(examples) == count:
                    return examples
        raise ValueError(f"{self.name}: split {split!r} has only {len(examples)} example(s) that fit "
                         f"{knobs or {'context_len': context_len}} with truncation={self.config.truncation!r}"
                         f"{self._fit_rule()}; {count} are needed")

    def _fit_rule(self) -> str:
        """What else an example must meet to fit a length, for the error message."""
        return ""

    def check_data(self, cells, count, test_seed, training_lengths, batch_size, training_seed, split="test") -> None:
        """Lay out the examples of every cell and of the first training step: too small a split fails now."""
        for knobs in cells:
            self.test_examples(test_seed, knobs, count, split)
        for length in training_lengths:
            self.training_examples(training_seed, 0, batch_size, length)

    def test_examples(self, seed: int, knobs: dict[str, Any], count: int, split: str = "test") -> list[Example]:
        """The first ``count`` examples (that fit) of the test or validation split, in an order drawn from ``seed``."""
        self.validate_cell(knobs)
        name, order = self._test_order(seed, split)
        return self._examples(name, order, knobs["context_len"], knobs, count, [seed, EVAL_SPLITS[split]])

    def sized_example(self, seed: int, knobs: dict[str, Any], index: int, context_len: int,
                      split: str = "test") -> Example | None:
        """The ``index``-th item of the test order laid out at ``context_len`` (see ``Task.sized_example``);
        None where it does not fit that length, IndexError past the split's last item."""
        name, order = self._test_order(seed, split)
        item = int(order[index])
        rng = np.random.default_rng([seed, EVAL_SPLITS[split], item, knobs["context_len"]])
        return self._layout(name, item, {**knobs, "context_len": context_len}, rng)

    def _test_order(self, seed: int, split: str) -> tuple[str, np.ndarray]:
        """The evaluation split's name and the order of its items drawn from ``seed``. The validation split's
        items are halved once, whatever the seed: tuning ("validation") reads one half, early stopping
        ("stopping") the other."""
        if split == "test":
            name = self.config.test_split
            return name, np.random.default_rng([seed, EVAL_SPLITS[split]]).permutation(len(self.items[name]))
        if self.config.validation_split is None:
            use = "to tune on" if split == "validation" else "for early stopping's checks"
            raise ValueError(f"{self.name}: no validation split {use}: set task.validation_split to a split of "
                             "the data that is neither the training nor the test split")
        name = self.config.validation_split
        halves = np.random.default_rng([VALIDATION]).permutation(len(self.items[name]))
        half = halves[: len(halves) // 2] if split == "validation" else halves[len(halves) // 2 :]
        return name, half[np.random.default_rng([seed, EVAL_SPLITS[split]]).permutation(len(half))]

    def training_examples(self, seed: int, step: int, count: int, context_len: int) -> list[Example]:
        split = self.config.train_split
        order = np.random.default_rng([seed, TRAIN, step]).permutation(len(self.items[split]))
        return self._examples(split, order, context_len, None, count, [seed, TRAIN, step])

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
        test, train = self.config.test_split, self.config.train_split
        tests = [self._texts(test, i)[2] for i in range(min(count, len(self.items[test])))]
        guesses = [self.tokenizer.decode(self.answer(self._texts(train, int(i))[2])[0])
                   for i in rng.integers(len(self.items[train]), size=len(tests))]
        scores = [self.score_text(guess, references) for guess, references in zip(guesses, tests)]
        return {metric: float(np.mean([s[metric] for s in scores])) for metric in self.metrics}

    def oracle(self, example: Example) -> np.ndarray:
        """The answer the example was built with (a reader that knows it), through the scoring path."""
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        positions = example.answer_positions
        predictions[positions] = example.labels[positions]
        return predictions


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
