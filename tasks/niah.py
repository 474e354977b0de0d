"""Needle in a haystack: RULER's NIAH family (Hsieh et al. 2024, ``scripts/data/synthetic/niah.py``).

Needles "one of the special magic numbers for <key> is : <value> ." are hidden in a haystack.
``num_keys`` keys each have ``values_per_key`` needles (different values); ``num_queries`` of the
keys are asked for, and the other keys' needles are distractors. Keys are ``key_length`` made-up
words (RULER: adjective-noun pairs) or uuids; values are numbers of ``value_digits`` digits, the
first not 0 (RULER: 7), or uuids, one token per digit, hex digit and dash. Haystacks: ``repeat``
(RULER's noise), ``text`` (a corpus file, RULER's essay), ``words`` (memarena's own) or
``needles`` (RULER's needle haystack: distractor needles with random keys and values).

``placement=random`` (RULER's) puts every needle at its own place, drawn as RULER draws it
(``Haystack.place``: distinct units uniformly, or RULER's 40 depths in text; distinct distractor
needles in ``needles``), and the grid has no depth knob. ``placement=depth`` (memarena's own, not
comparable with RULER) puts the asked needles together at the grid knob ``depth`` (0: the context
opens with them, 1: right before the question), the others at random places.

The answer lists, key by key in the order asked, each key's values in the order they appear.
Worked example with ``num_keys=2``, ``context_len=80``, the defaults otherwise (one-word keys,
3-digit values, repeat haystack; one token per word)::

    one of the special magic numbers for bazu is : 2 2 3 .                  <- a distractor
    the grass is green . the sky is blue . the sun is yellow . here we go . there and back again .
    one of the special magic numbers for vidu is : 8 0 0 .                  <- the asked needle
    the grass is green . the sky is blue . the sun is
    what are all the special magic numbers for vidu ? answer : 8 0 0

Knobs: ``context_len`` (all tokens), and ``depth`` with ``placement=depth``. Metrics, on the
generated answer: ``string_match_all`` (RULER's: the share of the asked values found in it, in any
order; chance about (answer tokens) / (possible values)) and ``exact_match`` (the answer exactly,
in the order above).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from harness.taskkit.haystack import FILLER, Haystack, HaystackConfig, insert, made_up_words
from harness.registry import register_task
from harness.taskkit.string_match import answer_scores
from harness.taskkit.task import IGNORE, Example, Task, TaskConfig, answer_labels
from harness.taskkit.vocabulary import Vocabulary
from tasks.sample_corpus import corpus_file

NEEDLE = "one of the special magic {kind} for {key} is : {value} ."
QUESTION = "what are all the special magic {kind} for {keys} ? answer :"
KEY_SEPARATOR = ","
KEY_TYPES = ("words", "uuids")
VALUE_TYPES = ("numbers", "uuids")
PLACEMENTS = ("random", "depth")
HEX = "0123456789abcdef"
UUID_DASHES = [8, 12, 16, 20]  # before these of the 32 hex digits: groups of 8-4-4-4-12
UUID_VALUES = 2**122  # random bits of a version-4 uuid
UUID_TOKENS = 36


@dataclass
class NiahConfig(HaystackConfig, TaskConfig):
    name: str = "niah"
    #: repeat | words | text | needles (distractor needles with random keys and values, RULER's needle haystack)
    haystack: str = "repeat"
    #: keys with needles in the context; the ``num_keys - num_queries`` not asked are distractors
    num_keys: int = 1
    values_per_key: int = 1
    num_queries: int = 1
    #: words (``key_length`` made-up words from a pool of ``key_words``) or uuids
    key_type: str = "words"
    key_words: int = 64
    key_length: int = 1
    #: numbers (``value_digits`` digits, the first not 0) or uuids
    value_type: str = "numbers"
    value_digits: int = 3
    #: random (RULER's): every needle at its own random place; depth (memarena's own): the asked
    #: needles together at the grid knob ``depth`` (give it: ``+task.grid.depth=[0.0,0.5,1.0]``)
    placement: str = "random"


@register_task("niah")
class Niah(Task):
    Config = NiahConfig
    metrics = {"string_match_all": True, "exact_match": True}

    def __init__(self, config: NiahConfig):
        for key in ("num_keys", "values_per_key", "num_queries", "value_digits", "key_length"):
            if getattr(config, key) < 1:
                raise ValueError(f"niah: {key} must be at least 1, got {getattr(config, key)}")
        if config.num_queries > config.num_keys:
            raise ValueError(f"niah: num_queries={config.num_queries} exceeds num_keys={config.num_keys}")
        for key, value, choices in (("key_type", config.key_type, KEY_TYPES),
                                    ("value_type", config.value_type, VALUE_TYPES),
                                    ("placement", config.placement, PLACEMENTS)):
            if value not in choices:
                raise ValueError(f"niah: {key}={value!r}; choose one of {list(choices)}")
        needles = config.haystack == "needles"
        keys_needed = config.num_keys + needles  # the needle haystack needs keys other than the real ones
        if config.key_type == "words" and config.key_words**config.key_length < keys_needed:
            raise ValueError(f"niah: key_words={config.key_words} and key_length={config.key_length} give fewer "
                             f"than the {keys_needed} different keys an example needs")
        if needles and config.placement == "depth":
            raise ValueError("niah: placement='depth' would split a distractor needle of haystack='needles'; "
                             "use placement='random'")
        self.haystack: Optional[Haystack] = None if needles else Haystack(config.haystack, config.noise_words,
                                                                           *corpus_file(config.corpus_path))
        self.key_pool = made_up_words(config.key_words) if config.key_type == "words" else []
        super().__init__(config)
        if self.haystack is not None:
            self.haystack.bind(self.vocab)
        # the grid knobs follow the placement (an instance's own value of the class-level default)
        self.cell_knobs = {"context_len": int, "depth": float} if config.placement == "depth" else {"context_len": int}
        kind = config.value_type
        prefix, middle = NEEDLE.format(kind=kind, key="{}", value="{}").split(" {} ")[:2]
        self.needle_prefix, self.needle_middle = self.vocab.encode(prefix), self.vocab.encode(middle)
        self.needle_suffix = self.vocab.encode(".")
        question_prefix, question_suffix = QUESTION.format(kind=kind, keys="{}").split(" {} ")
        self.question_prefix, self.question_suffix = self.vocab.encode(question_prefix), self.vocab.encode(question_suffix)
        self.key_ids = self.vocab.encode(" ".join(self.key_pool)) if self.key_pool else None
        self.digit_ids = self.vocab.encode(" ".join(HEX))
        self.dash = self.vocab.ids["-"]
        self.filler_ids = self.vocab.encode(FILLER)
        self.key_len = config.key_length if config.key_type == "words" else UUID_TOKENS
        self.value_len = config.value_digits if config.value_type == "numbers" else UUID_TOKENS
        self.needle_len = len(self.needle_prefix) + self.key_len + len(self.needle_middle) + self.value_len + 1
        self.question_len = (len(self.question_prefix) + config.num_queries * (self.key_len + 1) - 1
                             + len(self.question_suffix))
        self.answer_len = config.num_queries * config.values_per_key * self.value_len

    def build_vocabulary(self) -> Vocabulary:
        config = self.config
        template = f"{NEEDLE} {QUESTION}".format(kind=config.value_type, key="", value="", keys="")
        haystack = self.haystack.words if self.haystack is not None else []
        return Vocabulary([*template.split(), KEY_SEPARATOR, *HEX, "-", *FILLER.split(), *self.key_pool, *haystack])

    # -- layout ---------------------------------------------------------------------------------

    @property
    def num_needles(self) -> int:
        return self.config.num_keys * self.config.values_per_key

    def randomly_placed(self) -> int:
        """How many needles are placed at random (all of them, or the distractors with placement=depth)."""
        config = self.config
        asked = config.num_queries * config.values_per_key if config.placement == "depth" else 0
        return self.num_needles - asked

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        count = self.randomly_placed()
        filler = count * self.needle_len if self.haystack is None else self.haystack.min_length(count)
        return self.num_needles * self.needle_len + filler + self.question_len + self.answer_len

    def filler_len(self, context_len: int) -> int:
        """Tokens of the haystack in an example of ``context_len`` tokens."""
        return context_len - self.num_needles * self.needle_len - self.question_len - self.answer_len

    def data_sources(self) -> dict[str, Any]:
        return self.haystack.sources if self.haystack is not None else {}

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        if "depth" in knobs and not 0.0 <= knobs["depth"] <= 1.0:
            raise ValueError(f"niah: depth must be in [0, 1], got {knobs['depth']}")
        if self.haystack is not None:
            self.haystack.warn_if_repeated(self.filler_len(knobs["context_len"]))

    def training_knobs(self, rng: np.random.Generator, context_len: int) -> dict[str, Any]:
        if self.config.placement == "depth":
            return {"context_len": context_len, "depth": float(rng.uniform(0.0, 1.0))}
        return {"context_len": context_len}

    # -- generation -----------------------------------------------------------------------------

    def _draw(self, rng: np.random.Generator, kind: str, count: int) -> np.ndarray:
        """``count`` random keys or values of ``kind`` as rows of token ids."""
        if kind == "words":
            return self.key_ids[rng.integers(len(self.key_ids), size=(count, self.config.key_length))]
        if kind == "numbers":
            digits = rng.integers(0, 10, (count, self.config.value_digits))
            digits[:, 0] = rng.integers(1, 10, count)
            return self.digit_ids[digits]
        nibbles = rng.integers(0, 16, (count, 32))
        nibbles[:, 12] = 4  # version 4
        nibbles[:, 16] = rng.integers(8, 12, count)  # the RFC 4122 variant
        return np.insert(self.digit_ids[nibbles], UUID_DASHES, self.dash, axis=1)

    def _needles(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Needles [N, needle_len] of keys [N, key_len] and values [N, value_len]."""
        def constant(tokens):
            return np.broadcast_to(tokens, (len(keys), len(tokens)))
        return np.concatenate((constant(self.needle_prefix), keys, constant(self.needle_middle), values,
                               constant(self.needle_suffix)), axis=1)

    def _filler(self, rng: np.random.Generator, length: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The haystack of ``length`` tokens, and for the needle haystack the offsets of its needles."""
        if self.haystack is not None:
            return self.haystack.sample(rng, length), None
        count, remainder = divmod(length, self.needle_len)
        distractor_keys = self._draw(rng, self.config.key_type, count)
        while True:  # no distractor may carry a real key
            taken = (distractor_keys[:, None, :] == keys[None, :, :]).all(axis=2).any(axis=1)
            if not taken.any():
                break
            distractor_keys[taken] = self._draw(rng, self.config.key_type, int(taken.sum()))
        distractors = self._needles(distractor_keys, self._draw(rng, self.config.value_type, count))
        # the needles cannot fill the length exactly: the filler paragraph's first words open the context
        tokens = np.concatenate((np.resize(self.filler_ids, remainder), distractors.ravel()))
        return tokens, remainder + self.needle_len * np.arange(count)

    def _places(self, rng: np.random.Generator, tokens: np.ndarray, starts: np.ndarray | None, count: int) -> np.ndarray:
        """Sorted offsets of ``count`` needles: before distinct distractor needles drawn uniformly (RULER's
        needle haystack), or as ``Haystack.place`` draws them."""
        if starts is None:
            return self.haystack.place(rng, tokens, count)
        return np.sort(rng.choice(starts, count, replace=False))

    def generate(self, rng: np.random.Generator, context_len: int, depth: float | None = None) -> Example:
        config = self.config
        keys = self._draw(rng, config.key_type, config.num_keys)
        while len(np.unique(keys, axis=0)) < len(keys):
            keys = self._draw(rng, config.key_type, config.num_keys)
        owner = np.repeat(np.arange(config.num_keys), config.values_per_key)  # the key of each needle
        values = self._draw(rng, config.value_type, self.num_needles)
        needles = self._needles(keys[owner], values)
        asked = rng.choice(config.num_keys, config.num_queries, replace=False)
        parts = [self.question_prefix]
        for i, key in enumerate(asked):
            parts += [[self.vocab.ids[KEY_SEPARATOR]], keys[key]] if i else [keys[key]]
        question = np.concatenate((*parts, self.question_suffix))
        filler, starts = self._filler(rng, self.filler_len(context_len), keys)
        order = rng.permutation(self.num_needles)  # needles in context order, as RULER shuffles them
        if config.placement == "random":
            positions = self._places(rng, filler, starts, self.num_needles)
        else:
            together = np.isin(owner[order], asked)
            order = np.concatenate((order[together], order[~together]))
            positions = np.concatenate((np.full(together.sum(), round(depth * len(filler))),
                                        self._places(rng, filler, starts, int((~together).sum()))))
            by_place = np.argsort(positions, kind="stable")
            order, positions = order[by_place], positions[by_place]
        context = insert(filler, list(needles[order]), positions.tolist())
        answer = np.concatenate([values[i] for key in asked for i in order if owner[i] == key])
        tokens = np.concatenate((context, question, answer))
        knobs = {"context_len": context_len, **({"depth": depth} if config.placement == "depth" else {})}
        return Example(tokens, answer_labels(context_len, answer), knobs)

    # -- scoring --------------------------------------------------------------------------------

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        return answer_scores(self.vocab, predictions[positions], example.labels[positions], self.value_len)

    def chance(self, **knobs: Any) -> dict[str, float]:
        """A guess of another example's answer: each asked value is found at any of its offsets."""
        config = self.config
        values = 9 * 10 ** (config.value_digits - 1) if config.value_type == "numbers" else UUID_VALUES
        offsets = self.answer_len - self.value_len + 1
        return {"string_match_all": float(-np.expm1(offsets * np.log1p(-1 / values))),
                "exact_match": float(values ** -(config.num_queries * config.values_per_key))}

    def oracle(self, example: Example) -> np.ndarray:
        """Read every needle of the context, then answer the question's keys from them."""
        tokens = example.tokens
        question_start = len(tokens) - self.answer_len - self.question_len
        context = tokens[:question_start]
        windows = np.lib.stride_tricks.sliding_window_view(context, len(self.needle_prefix))
        found: dict[bytes, list[np.ndarray]] = {}
        for start in np.flatnonzero((windows == self.needle_prefix).all(axis=1)):
            key_at = start + len(self.needle_prefix)
            value_at = key_at + self.key_len + len(self.needle_middle)
            found.setdefault(context[key_at : key_at + self.key_len].tobytes(), []).append(
                context[value_at : value_at + self.value_len])
        first_key = question_start + len(self.question_prefix)
        asked = [tokens[first_key + i * (self.key_len + 1) :][: self.key_len].tobytes()
                 for i in range(self.config.num_queries)]
        predictions = np.full(len(tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = np.concatenate([value for key in asked for value in found[key]])
        return predictions
