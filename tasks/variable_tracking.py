"""Variable tracking: multi-hop tracing of chained assignments, after RULER's VT (Hsieh et al. 2024).

``num_chains`` chains of assignments are spread through a haystack: a chain binds a value to a
first variable ("var kuzo = 3 9 ."), then passes it on ``num_hops`` times ("var bave = kuzo .").
The statements of one chain appear in order, interleaved with the other chains' at random places.
The question names one chain's value, and the answer lists every variable that holds it, in the
order they appear. Worked example with ``num_chains=2``, ``num_hops=1``, ``value_digits=2``,
``context_len=56``, repeat haystack::

    the grass is green . the sky is blue . the sun is yellow . var tani = 0 1 . var mafi = 1 7 .
    here we go var nuve = tani . . there and back again . var rome = mafi .
    which variables hold 0 1 ? answer : tani nuve

Knobs: ``context_len``. Metrics: ``exact_match`` (all ``num_hops + 1`` variables right; chance
(1 / name_words)^(num_hops + 1)) and ``part_match`` (the share of the variables right; chance
1 / name_words, for a guess among the variable names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.haystack import Haystack, HaystackConfig, insert, made_up_words
from harness.registry import register_task
from harness.task import IGNORE, Example, Task, TaskConfig, answer_labels
from harness.vocabulary import Vocabulary

VALUE_STATEMENT = "var {name} = {value} ."
COPY_STATEMENT = "var {name} = {source} ."
QUESTION = "which variables hold {value} ? answer :"
DIGITS = [str(d) for d in range(10)]


@dataclass
class VariableTrackingConfig(HaystackConfig, TaskConfig):
    name: str = "variable_tracking"
    num_chains: int = 2
    num_hops: int = 2
    value_digits: int = 2
    #: pool of variable names (made-up words)
    name_words: int = 64


@register_task("variable_tracking")
class VariableTracking(Task):
    Config = VariableTrackingConfig
    cell_knobs = {"context_len": int}
    metrics = {"exact_match": True, "part_match": True}

    def __init__(self, config: VariableTrackingConfig):
        for key in ("num_chains", "value_digits"):
            if getattr(config, key) < 1:
                raise ValueError(f"variable_tracking: {key} must be at least 1, got {getattr(config, key)}")
        if config.num_hops < 0:
            raise ValueError(f"variable_tracking: num_hops must be at least 0, got {config.num_hops}")
        if config.name_words < config.num_chains * (config.num_hops + 1):
            raise ValueError(f"variable_tracking: name_words={config.name_words} is fewer than the "
                             f"{config.num_chains * (config.num_hops + 1)} variables of an example")
        if 10**config.value_digits < config.num_chains:
            raise ValueError("variable_tracking: too few values of value_digits digits for num_chains distinct ones")
        self.haystack = Haystack(config.haystack, config.noise_words, config.corpus_path)
        self.names = made_up_words(config.name_words)
        super().__init__(config)
        self.haystack.bind(self.vocab)
        self.var, self.equals = self.vocab.ids["var"], self.vocab.ids["="]
        self.question_len = len(QUESTION.split()) - 1 + config.value_digits

    def build_vocabulary(self) -> Vocabulary:
        template = f"{VALUE_STATEMENT} {COPY_STATEMENT} {QUESTION}"
        for slot in ("{name}", "{value}", "{source}"):
            template = template.replace(slot, "")
        return Vocabulary([*template.split(), *DIGITS, *self.names, *self.haystack.words])

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        config = self.config
        statements = config.num_chains * (5 + config.value_digits - 1 + 5 * config.num_hops)
        return statements + self.question_len + config.num_hops + 1

    def generate(self, rng: np.random.Generator, context_len: int) -> Example:
        config = self.config
        names = [self.names[i] for i in rng.choice(len(self.names), config.num_chains * (config.num_hops + 1), replace=False)]
        values = [" ".join(f"{v:0{config.value_digits}d}") for v in rng.choice(10**config.value_digits, config.num_chains, replace=False)]
        chains = []
        for chain in range(config.num_chains):
            variables = names[chain * (config.num_hops + 1) : (chain + 1) * (config.num_hops + 1)]
            statements = [VALUE_STATEMENT.format(name=variables[0], value=values[chain])]
            statements += [COPY_STATEMENT.format(name=name, source=source) for source, name in zip(variables, variables[1:])]
            chains.append((variables, statements))
        # interleave the chains at random, each keeping its own order
        order = rng.permutation([chain for chain, (_, statements) in enumerate(chains) for _ in statements])
        next_statement = [0] * config.num_chains
        statements = []
        for chain in order:
            statements.append(self.vocab.encode(chains[chain][1][next_statement[chain]]))
            next_statement[chain] += 1
        question = self.vocab.encode(QUESTION.format(value=values[0]))
        answer = self.vocab.encode(" ".join(chains[0][0]))
        filler_len = context_len - sum(len(s) for s in statements) - len(question) - len(answer)
        positions = np.sort(rng.integers(0, filler_len + 1, len(statements)))
        context = insert(self.haystack.sample(rng, filler_len), statements, positions.tolist())
        tokens = np.concatenate((context, question, answer))
        return Example(tokens, answer_labels(context_len, answer), {"context_len": context_len})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        correct = predictions[positions] == example.labels[positions]
        return {"exact_match": float(correct.all()), "part_match": float(correct.mean())}

    def chance(self, **knobs: Any) -> dict[str, float]:
        guess = 1 / self.config.name_words
        return {"exact_match": guess ** (self.config.num_hops + 1), "part_match": guess}

    def oracle(self, example: Example) -> np.ndarray:
        """Follow the assignments in order, then list the variables that hold the asked value."""
        digits, tokens = self.config.value_digits, example.tokens
        question_start = len(tokens) - self.config.num_hops - 1 - self.question_len
        held: dict[int, tuple[int, ...]] = {}
        order: list[int] = []
        for start in np.flatnonzero(tokens[: question_start - 3] == self.var):
            name, equals, source = tokens[start + 1], tokens[start + 2], tokens[start + 3]
            if equals != self.equals:
                continue
            held[int(name)] = held[int(source)] if int(source) in held else tuple(tokens[start + 3 : start + 3 + digits])
            order.append(int(name))
        asked = tuple(tokens[question_start + 3 : question_start + 3 + digits])
        predictions = np.full(len(tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = [name for name in order if held[name] == asked]
        return predictions
