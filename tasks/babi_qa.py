"""bAbI questions over facts spread through real text: BABILong's construction (Kuratov et al. 2024).

A bAbI story of task ``qa`` (1-5; tasks/babi_stories.py: generated, or read from bAbI's public
files with ``babi_dir``) has its facts inserted, in order, between the sentences of a background
text, and its question follows; the model generates the one-word answer. As BABILong's
``NoiseInjectionDataset`` (booydar/babilong, babilong/babilong_utils.py): the background is
consecutive sentences of ``min_sentence_tokens`` tokens or more from a random point of the corpus
(``corpus_path``, by default a public-domain sample, tasks/data/haystack/), the last one cut so that
the example has exactly ``context_len`` tokens; each fact goes before a sentence drawn uniformly
(with replacement) among the gaps, facts keeping their order; a story too long for the length is
redrawn (BABILong drops the stories with too many facts). Worked example, ``qa=1``,
``context_len=48`` (test seed 1)::

    sandra went to the garden . daniel journeyed to the bathroom .              <- facts 1, 2
    she was close behind it when she turned the corner , but the rabbit was     <- background,
    no longer to                                                                   cut to fit
    daniel journeyed to the bedroom . john went back to the bathroom .          <- facts 3, 4
    where is sandra ? garden                                                    <- question, answer

Tokens are words: lower case, punctuation a word of its own; the corpus's ``max_haystack_words``
most frequent words are in the vocabulary and rarer ones read as ``<unk>``. Corpus sentences that
contain a bAbI statement or question are left out, so that every fact in the context is the
story's. Knobs: ``context_len`` and ``qa``. Metric ``accuracy``: BABILong's ``compare_answers``
(babilong/metrics.py) on the generated answer: correct when the target is the only one of the
task's labels in the output's first sentence, not counting labels the question names. Chance: a
uniform guess among the answers of the question's kind, 1/6 (a place) for qa 1-4; for qa 5,
1/3 x 1/3 (an object, "what did ...") + 2/3 x 1/4 (a person) = 5/18.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.taskkit.haystack import corpus_sources, warn_if_corpus_repeats
from harness.registry import register_task
from harness.taskkit.task import EVAL_SPLITS, IGNORE, Example, Task, TaskConfig, answer_labels
from harness.taskkit.vocabulary import Vocabulary
from tasks.babi_stories import (LABELS, OBJECTS, OPPOSITE, PEOPLE, PLACES, QA_KINDS, QUESTION_SHARES, QUESTIONS,
                                STATEMENTS, VERBS, Story, answer_story, generate_story, last_question, read_babi_file,
                                sentences)
from tasks.sample_corpus import corpus_file

UNKNOWN = "<unk>"
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|[^\w\s]")  # words (with inner apostrophes) and punctuation marks
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+")
CHANCE = {1: 1 / 6, 2: 1 / 6, 3: 1 / 6, 4: 1 / 6, 5: QUESTION_SHARES["what_gave"] / len(OBJECTS)
          + (1 - QUESTION_SHARES["what_gave"]) / len(PEOPLE[5])}
#: tokens of the shortest 1% of generated stories with their question and answer, per qa
MIN_CONTEXT_LEN = {1: 17, 2: 24, 3: 48, 4: 24, 5: 28}
#: attempts at a story that fits before an example gives up (qa3 and qa5 stories run long)
ATTEMPTS = 2000


@dataclass
class BabiQaConfig(TaskConfig):
    name: str = "babi_qa"
    #: folder holding bAbI's public files (qa1_single-supporting-fact_train.txt, ...); None: generated stories
    babi_dir: Optional[str] = None
    train_split: str = "train"
    test_split: str = "test"
    #: UTF-8 text whose sentences are the background; None: tasks/data/haystack/alice_in_wonderland.txt
    corpus_path: Optional[str] = None
    #: shorter corpus sentences are skipped (BABILong: 10 GPT-2 tokens)
    min_sentence_tokens: int = 10
    #: corpus words in the vocabulary, most frequent first; rarer ones read as <unk>
    max_haystack_words: int = 8192
    #: question kinds drawn for training
    qa_kinds: list[int] = field(default_factory=lambda: list(QA_KINDS))
    grid: dict[str, list[Any]] = field(default_factory=lambda: {"qa": list(QA_KINDS)})


def corpus_sentences(path: Path, min_tokens: int) -> list[list[str]]:
    """The corpus's sentences as lower-case words, those of ``min_tokens`` or more that hold no bAbI sentence."""
    text = " ".join(path.read_text(encoding="utf-8").split())
    found = [WORD.findall(sentence.lower()) for sentence in SENTENCE_END.split(text)]
    return [words for words in found if len(words) >= min_tokens and not sentences(" ".join(words))]


@register_task("babi_qa")
class BabiQa(Task):
    Config = BabiQaConfig
    cell_knobs = {"context_len": int, "qa": int}
    metrics = {"accuracy": True}

    def __init__(self, config: BabiQaConfig):
        if not config.qa_kinds or set(config.qa_kinds) - set(QA_KINDS):
            raise ValueError(f"babi_qa: qa_kinds must be a non-empty subset of {list(QA_KINDS)}, got {config.qa_kinds}")
        if config.min_sentence_tokens < 1 or config.max_haystack_words < 1:
            raise ValueError("babi_qa: min_sentence_tokens and max_haystack_words must be at least 1, got "
                             f"{config.min_sentence_tokens} and {config.max_haystack_words}")
        path, name = corpus_file(config.corpus_path)
        corpus = Path(path)
        if not corpus.is_file():
            raise ValueError(f"babi_qa: corpus_path={config.corpus_path!r} is not a file")
        background = corpus_sentences(corpus, config.min_sentence_tokens)
        if not background:
            raise ValueError(f"babi_qa: corpus_path={str(corpus)!r} has no sentence of min_sentence_tokens="
                             f"{config.min_sentence_tokens} tokens or more")
        counts = Counter(word for sentence in background for word in sentence)
        #: the background corpus, for the record: its name, its words in usable sentences, its hash
        self.sources = corpus_sources(name, corpus.read_text(encoding="utf-8"), counts.total())
        self.haystack_words = sorted(counts, key=lambda word: (-counts[word], word))[: config.max_haystack_words]
        self.stories = self._read_files(config) if config.babi_dir else None
        super().__init__(config)
        self.background = [self.encode(" ".join(sentence)) for sentence in background]

    @staticmethod
    def _read_files(config: BabiQaConfig) -> dict[str, dict[int, list[Story]]]:
        """Stories of every split and question kind the config uses, from ``babi_dir``."""
        folder = Path(config.babi_dir)
        if not folder.is_dir():
            raise ValueError(f"babi_qa: babi_dir={config.babi_dir!r} is not a folder")
        stories: dict[str, dict[int, list[Story]]] = {}
        for split in (config.train_split, config.test_split):
            for qa in sorted(set(config.qa_kinds) | set(config.grid.get("qa", []))):
                files = sorted(folder.glob(f"qa{qa}_*_{split}.txt"))
                if len(files) != 1:
                    raise ValueError(f"babi_qa: babi_dir={config.babi_dir!r} needs one file qa{qa}_*_{split}.txt "
                                     f"(bAbI's public layout), found {[file.name for file in files]}")
                stories.setdefault(split, {})[qa] = read_babi_file(files[0])
                if not stories[split][qa]:
                    raise ValueError(f"babi_qa: {files[0]} holds no question")
        return stories

    def build_vocabulary(self) -> Vocabulary:
        babi = " ".join([*STATEMENTS.values(), *QUESTIONS.values(), *(v for verbs in VERBS.values() for v in verbs)])
        babi_words = [word for word in babi.split() if not word.startswith("{")]
        people = sorted({person for group in PEOPLE.values() for person in group})
        return Vocabulary([UNKNOWN, *babi_words, "there", *people, *PLACES, *OBJECTS, *OPPOSITE, *self.haystack_words])

    def encode(self, text: str) -> np.ndarray:
        ids = self.vocab.ids
        return np.array([ids.get(word, ids[UNKNOWN]) for word in text.split()], dtype=np.int64)

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        """Room for the shortest 1% of the stories of ``qa`` (shorter ones are redrawn)."""
        return MIN_CONTEXT_LEN[knobs["qa"]]

    def data_sources(self) -> dict[str, Any]:
        return self.sources

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        warn_if_corpus_repeats(self.sources["corpus"], self.sources["corpus_words"], knobs["context_len"])
        if knobs["qa"] not in QA_KINDS:
            raise ValueError(f"babi_qa: qa must be one of {list(QA_KINDS)}, got {knobs['qa']}")
        if self.stories is not None and knobs["qa"] not in self.stories[self.config.test_split]:
            raise ValueError(f"babi_qa: qa={knobs['qa']} is in neither qa_kinds nor grid.qa, so its files were not read")

    def training_knobs(self, rng: np.random.Generator, context_len: int) -> dict[str, Any]:
        return {"context_len": context_len, "qa": int(rng.choice(self.config.qa_kinds))}

    @staticmethod
    def story_tokens(story: Story) -> int:
        return sum(len(fact.split()) for fact in story.facts) + len(story.question.split()) + 1

    def _story(self, rng: np.random.Generator, qa: int, context_len: int) -> Story:
        """A story that fits in ``context_len`` tokens: generated, or a training story of the files."""
        pool = None if self.stories is None else self.stories[self.config.train_split][qa]
        for _ in range(ATTEMPTS):
            story = generate_story(rng, qa, context_len) if pool is None else pool[rng.integers(len(pool))]
            if story is not None and self.story_tokens(story) <= context_len:
                return story
        raise ValueError(f"babi_qa: no qa{qa} story in {ATTEMPTS} draws fits context_len={context_len}; make it longer")

    def generate(self, rng: np.random.Generator, context_len: int, qa: int) -> Example:
        return self._layout(rng, self._story(rng, qa, context_len), context_len, qa)

    def _layout(self, rng: np.random.Generator, story: Story, context_len: int, qa: int) -> Example:
        facts = [self.encode(fact) for fact in story.facts]
        tail = self.encode(f"{story.question} {story.answer}")
        background = self._background(rng, context_len - sum(len(fact) for fact in facts) - len(tail))
        gaps = np.sort(rng.integers(0, len(background) + 1, len(facts)))
        pieces = [[] for _ in range(len(background) + 1)]
        for fact, gap in zip(facts, gaps):
            pieces[gap].append(fact)
        for gap, sentence in enumerate(background):
            pieces[gap].append(sentence)
        tokens = np.concatenate([piece for gap in pieces for piece in gap] + [tail])
        return Example(tokens, answer_labels(context_len, tail[-1:]), {"context_len": context_len, "qa": qa},
                       info={"facts": len(facts)})

    def _background(self, rng: np.random.Generator, length: int) -> list[np.ndarray]:
        """Consecutive corpus sentences from a random one (wrapping around), the last cut to ``length`` tokens in all."""
        sentences_, total, index = [], 0, int(rng.integers(len(self.background)))
        while total < length:
            sentence = self.background[index % len(self.background)][: length - total]
            sentences_.append(sentence)
            total, index = total + len(sentence), index + 1
        return sentences_

    def test_examples(self, seed: int, knobs: dict[str, Any], count: int, split: str = "test") -> list[Example]:
        """Generated stories: as every task. Stories of the files: ``count`` distinct test stories that fit,
        in an order drawn from ``seed`` (BABILong samples its 100 test questions without replacement)."""
        if self.stories is None:
            return super().test_examples(seed, knobs, count, split)
        self.validate_cell(knobs)
        if split != "test":
            raise ValueError("babi_qa: bAbI's public files have a train and a test split, no validation split to tune on")
        context_len, qa = knobs["context_len"], knobs["qa"]
        fitting = [story for story in self.stories[self.config.test_split][qa] if self.story_tokens(story) <= context_len]
        if len(fitting) < count:
            raise ValueError(f"babi_qa: split {self.config.test_split!r} has {len(fitting)} qa{qa} question(s) whose "
                             f"story fits context_len={context_len}; {count} are needed (eval.examples_per_cell)")
        order = np.random.default_rng([seed, EVAL_SPLITS[split], qa]).permutation(len(fitting))[:count]
        return [self._layout(np.random.default_rng([seed, EVAL_SPLITS[split], qa, context_len, i]), fitting[j],
                             context_len, qa) for i, j in enumerate(order)]

    def sized_example(self, seed: int, knobs: dict[str, Any], index: int, context_len: int,
                      split: str = "test") -> Example | None:
        """The example's story drawn once for the cell (generated: as for ``knobs["context_len"]``; of the files:
        the ``index``-th test story of an order drawn from ``seed``, IndexError past the last), its background
        laid out at ``context_len`` tokens; None if the story alone does not fit them."""
        if self.stories is None:
            rng = self._test_generator(seed, knobs, index, split)
            story = self._story(rng, knobs["qa"], knobs["context_len"])
            return self._layout(rng, story, context_len, knobs["qa"]) if self.story_tokens(story) <= context_len else None
        if split != "test":
            raise ValueError("babi_qa: bAbI's public files have a train and a test split, no validation split to tune on")
        qa, stories = knobs["qa"], self.stories[self.config.test_split][knobs["qa"]]
        story = stories[int(np.random.default_rng([seed, EVAL_SPLITS[split], qa]).permutation(len(stories))[index])]
        if self.story_tokens(story) > context_len:
            return None
        rng = np.random.default_rng([seed, EVAL_SPLITS[split], qa, knobs["context_len"], index])
        return self._layout(rng, story, context_len, qa)

    def check_data(self, cells, count, test_seed, training_lengths, batch_size, training_seed, split="test") -> None:
        """Stories of the files: every cell gets ``count`` test stories and training stories fit."""
        if self.stories is None:
            return
        for knobs in cells:
            self.test_examples(test_seed, knobs, count, split)
        for length in training_lengths:
            self.training_examples(training_seed, 0, batch_size, length)

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        target = self.vocab.decode(example.labels[positions])
        question = last_question(self.vocab.decode(example.tokens[max(0, positions[0] - 12) : positions[0] + 1]))
        output = self.vocab.decode(predictions[positions])
        return {"accuracy": float(compare_answers(target, output, question, LABELS[example.knobs["qa"]]))}

    def chance(self, **knobs: Any) -> dict[str, float]:
        return {"accuracy": CHANCE[knobs["qa"]]}

    def oracle(self, example: Example) -> np.ndarray:
        """Read the bAbI sentences among the tokens and answer the last question from the statements."""
        first = example.answer_positions[0]
        answer = answer_story(self.vocab.decode(example.tokens[: first + 1]))
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        predictions[first] = self.vocab.ids[answer]
        return predictions


def compare_answers(target: str, output: str, question: str, labels: tuple[str, ...]) -> bool:
    """BABILong's metric: the output's first sentence names the target and no other label the question does not."""
    output = re.split(r"\.|<context>|<example>", output.lower())[0]
    in_output = {label for label in labels if label in output} - {label for label in labels if label in question.lower()}
    return in_output == {target.lower()}
