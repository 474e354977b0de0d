"""Variable tracking: multi-hop tracing of chained assignments, RULER's VT (Hsieh et al. 2024,
``scripts/data/synthetic/variable_tracking.py``).

``num_chains`` chains of assignments are spread through a haystack: a chain binds a value of
``value_digits`` digits (the first not 0) to a first variable ("var kuzo = 3 9 ."), then passes it
on ``num_hops`` times ("var bave = var kuzo ."). The question names the first chain's value, and
the answer lists every variable that holds it, in chain order. A name is one made-up word from a
pool of ``name_words``, or with ``name_letters > 0`` that many letters a-z, one token each (RULER:
5 capital letters). Statements go where RULER puts them: in ``repeat`` (RULER's noise) and
``words``, chain by chain, each chain's statements in order before distinct units (paragraphs,
words; the other chains' statements count as units) drawn uniformly; in ``text`` (RULER's essay)
the chains are interleaved at random, keeping their order, at RULER's 40 depths
(``Haystack.place``). Worked example with ``num_chains=2``, ``num_hops=1``, ``haystack=repeat``,
``context_len=80``, the defaults otherwise (2-digit values, one-word names)::

    var tani = 1 1 . var mafi = 2 5 . the grass is green . the sky is blue . the sun is yellow .
    here we go . there and back again . var rome = var mafi . var nuve = var tani . the grass is
    green . the sky is blue . the sun is yellow . here we go . there and back
    which variables hold 1 1 ? answer : tani nuve

Knobs: ``context_len``. Metrics, on the generated answer: ``string_match_all`` (RULER's: the share
of the ``num_hops + 1`` variables found in it, in any order; chance about (answer tokens) /
(possible names)) and ``exact_match`` (all of them, in chain order).
"""

from __future__ import annotations

import heapq
import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.taskkit.haystack import Haystack, HaystackConfig, insert, made_up_words
from harness.registry import register_task
from harness.taskkit.string_match import answer_scores
from harness.taskkit.task import IGNORE, Example, Task, TaskConfig, answer_labels
from harness.taskkit.vocabulary import Vocabulary
from tasks.sample_corpus import corpus_file

VALUE_STATEMENT = "var {name} = {value} ."
COPY_STATEMENT = "var {name} = var {source} ."
QUESTION = "which variables hold {value} ? answer :"
DIGITS = [str(d) for d in range(10)]
LETTERS = list(string.ascii_lowercase)


@dataclass
class VariableTrackingConfig(HaystackConfig, TaskConfig):
    name: str = "variable_tracking"
    #: 1 chain of 2 hops in the words haystack fits the quick experiment's 48 tokens (RULER: 1 x 4
    #: in its noise, whose paragraphs each statement needs one of: 202 tokens)
    haystack: str = "words"
    num_chains: int = 1
    num_hops: int = 2
    #: digits of a value, the first not 0 (RULER: 5)
    value_digits: int = 2
    #: pool of variable names (made-up words), used when name_letters is 0
    name_words: int = 64
    #: letters a-z per name, one token each (RULER: 5); 0: one made-up word per name
    name_letters: int = 0


@register_task("variable_tracking")
class VariableTracking(Task):
    Config = VariableTrackingConfig
    metrics = {"string_match_all": True, "exact_match": True}

    def __init__(self, config: VariableTrackingConfig):
        for key in ("num_chains", "value_digits"):
            if getattr(config, key) < 1:
                raise ValueError(f"variable_tracking: {key} must be at least 1, got {getattr(config, key)}")
        for key in ("num_hops", "name_letters"):
            if getattr(config, key) < 0:
                raise ValueError(f"variable_tracking: {key} must be at least 0, got {getattr(config, key)}")
        self.num_names = config.name_words if config.name_letters == 0 else len(LETTERS) ** config.name_letters
        if self.num_names < config.num_chains * (config.num_hops + 1):
            option = "name_words" if config.name_letters == 0 else "name_letters"
            raise ValueError(f"variable_tracking: {option}={getattr(config, option)} gives fewer names than the "
                             f"{config.num_chains * (config.num_hops + 1)} variables of an example")
        if 9 * 10 ** (config.value_digits - 1) - 1 < config.num_chains:
            raise ValueError("variable_tracking: too few values of value_digits digits for num_chains distinct ones")
        self.haystack = Haystack(config.haystack, config.noise_words, *corpus_file(config.corpus_path))
        self.name_pool = made_up_words(config.name_words) if config.name_letters == 0 else LETTERS
        super().__init__(config)
        self.haystack.bind(self.vocab)
        self.name_ids = self.vocab.encode(" ".join(self.name_pool))
        self.name_len = max(config.name_letters, 1)
        self.var, self.equals = self.vocab.ids["var"], self.vocab.ids["="]
        self.question_len = len(QUESTION.split()) - 1 + config.value_digits
        self.answer_len = (config.num_hops + 1) * self.name_len

    def build_vocabulary(self) -> Vocabulary:
        template = f"{VALUE_STATEMENT} {COPY_STATEMENT} {QUESTION}".format(name="", value="", source="")
        return Vocabulary([*template.split(), *DIGITS, *self.name_pool, *self.haystack.words])

    def statement_lengths(self) -> tuple[int, int]:
        """Tokens of a value statement and of a copy statement."""
        return 3 + self.name_len + self.config.value_digits, 4 + 2 * self.name_len

    def statement_tokens(self) -> int:
        """Tokens of all the statements of an example."""
        value, copy = self.statement_lengths()
        return self.config.num_chains * (value + self.config.num_hops * copy)

    def filler_len(self, context_len: int) -> int:
        """Tokens of the haystack in an example of ``context_len`` tokens."""
        return context_len - self.statement_tokens() - self.question_len - self.answer_len

    def data_sources(self) -> dict[str, Any]:
        return self.haystack.sources

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        # RULER's noise haystack puts a chain's statements before distinct units
        return (self.statement_tokens() + self.haystack.min_length(self.config.num_hops + 1) + self.question_len
                + self.answer_len)

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        self.haystack.warn_if_repeated(self.filler_len(knobs["context_len"]))

    def _names(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` different names as rows of token ids."""
        if self.config.name_letters == 0:
            return self.name_ids[rng.choice(len(self.name_ids), count, replace=False)][:, None]
        while True:
            names = self.name_ids[rng.integers(len(LETTERS), size=(count, self.config.name_letters))]
            if len(np.unique(names, axis=0)) == count:
                return names

    def _places(self, rng: np.random.Generator, filler: np.ndarray, chains: list[list[int]]) -> tuple[list[int], list[int]]:
        """The statements (indices) in context order and their offsets in ``filler``, as RULER places them."""
        if self.haystack.kind == "text":
            heap = [(rng.random(), chain, 0) for chain in range(len(chains))]
            heapq.heapify(heap)
            order = []
            while heap:  # RULER's shuffle_sublists_heap: a random interleaving that keeps each chain's order
                _, chain, step = heapq.heappop(heap)
                order.append(chains[chain][step])
                if step + 1 < len(chains[chain]):
                    heapq.heappush(heap, (rng.random(), chain, step + 1))
            return order, self.haystack.place(rng, filler, len(order)).tolist()
        starts = self.haystack.unit_starts(filler)
        sequence = [-1] * len(starts)  # -1: a unit of the haystack, else a statement
        for chain in chains:
            for step, slot in enumerate(np.sort(rng.choice(len(sequence), len(chain), replace=False))):
                sequence.insert(int(slot) + step, chain[step])
        offsets, offset, unit = {}, len(filler), len(starts)
        for item in reversed(sequence):  # a statement goes before the next unit
            if item < 0:
                unit -= 1
                offset = int(starts[unit])
            else:
                offsets[item] = offset
        order = [item for item in sequence if item >= 0]
        return order, [offsets[item] for item in order]

    def generate(self, rng: np.random.Generator, context_len: int) -> Example:
        config = self.config
        hops = config.num_hops
        names = self._names(rng, config.num_chains * (hops + 1))
        low = 10 ** (config.value_digits - 1)
        values = low + rng.choice(9 * low - 1, config.num_chains, replace=False)  # RULER: randint(10000, 99999)
        statements, chains = [], []
        for chain, value in enumerate(values):
            variables = [self.vocab.decode(name) for name in names[chain * (hops + 1) : (chain + 1) * (hops + 1)]]
            text = [VALUE_STATEMENT.format(name=variables[0], value=" ".join(str(value)))]
            text += [COPY_STATEMENT.format(name=name, source=source) for source, name in zip(variables, variables[1:])]
            chains.append(list(range(len(statements), len(statements) + len(text))))
            statements += [self.vocab.encode(line) for line in text]
        question = self.vocab.encode(QUESTION.format(value=" ".join(str(values[0]))))
        answer = names[: hops + 1].ravel()
        filler = self.haystack.sample(rng, self.filler_len(context_len))
        order, positions = self._places(rng, filler, chains)
        context = insert(filler, [statements[i] for i in order], positions)
        tokens = np.concatenate((context, question, answer))
        return Example(tokens, answer_labels(context_len, answer), {"context_len": context_len})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        return answer_scores(self.vocab, predictions[positions], example.labels[positions], self.name_len)

    def chance(self, **knobs: Any) -> dict[str, float]:
        """A guess of another example's answer: each variable is found at any of its offsets."""
        offsets = self.answer_len - self.name_len + 1
        return {"string_match_all": float(-np.expm1(offsets * np.log1p(-1 / self.num_names))),
                "exact_match": float(self.num_names ** -(self.config.num_hops + 1.0))}

    def oracle(self, example: Example) -> np.ndarray:
        """Follow the assignments in order, then list the variables that hold the asked value."""
        digits, tokens, length = self.config.value_digits, example.tokens, self.name_len
        question_start = len(tokens) - self.answer_len - self.question_len
        context = tokens[:question_start]
        held: dict[bytes, bytes] = {}
        order: list[np.ndarray] = []
        for start in np.flatnonzero(context[: -length - 2] == self.var):
            name, after = context[start + 1 : start + 1 + length], start + 1 + length
            if context[after] != self.equals:
                continue  # the source of a copy ("= var kuzo .")
            if context[after + 1] == self.var:
                held[name.tobytes()] = held[context[after + 2 : after + 2 + length].tobytes()]
            else:
                held[name.tobytes()] = context[after + 1 : after + 1 + digits].tobytes()
            order.append(name)
        asked = tokens[question_start + 3 : question_start + 3 + digits].tobytes()
        predictions = np.full(len(tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = np.concatenate([name for name in order if held[name.tobytes()] == asked])
        return predictions
