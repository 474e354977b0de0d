"""Examples sized to a length in the model's tokens: a pretrained cell's ``context_len`` is its prompt's length.

RULER sizes its inputs for a tokenizer (scripts/data/synthetic/niah.py, ``generate_samples``): it
grows the haystack of one example in steps of 500 words (essays) or 25 sentences (5 below 4,096
tokens) until input and ``tokens_to_generate`` pass ``max_seq_length``, steps back once, then shrinks
each example by the same step until it fits. memarena does the same for every text task, to the
task's own granularity and per example: example ``i`` of a cell is the task's example ``i`` laid
out at the most of the task's own tokens (``Task.sized_example``: the same random draws at every
length, only the haystack, background or distractors grow) whose rendered prompt, tokenized as the
model reads it (template, question and answer prefix, chat template when on; ``PretrainedLM.encode``),
is at most ``context_len`` model tokens, so that one more task token would pass it. The generation
budget is not counted in (RULER counts it in ``max_seq_length``). A task that runs out of text
before the length (a summarization document shorter than its room) stops where its text ends.

The search gallops from a guess (the previous example's length, or the first probe's ratio of task
tokens to model tokens), then bisects: about 2 log2(distance from the guess) probes an example.
It assumes the prompt grows with the task's length, which holds up to a model token or two where
the tokenizer merges across a boundary; the boundary found is exact either way (the length found
fits, one more does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from harness.pretrained.model import Prompt
from harness.pretrained.prompts import TaskPrompt, render
from harness.taskkit.task import Example, Task

Encode = Callable[[str, str, str], Prompt]


@dataclass
class SizedPrompt:
    """One example of a pretrained cell at the task length whose prompt fits."""

    example: Example
    text: TaskPrompt
    prompt: Prompt
    task_len: int  # the example's length in the task's own tokens


class _Probes:
    """Example ``index`` of a cell rendered and encoded at task lengths, each length once."""

    def __init__(self, task: Task, knobs: dict[str, Any], index: int, seed: int, encode: Encode, budget: int):
        self.task, self.knobs, self.index, self.seed, self.encode, self.budget = task, knobs, index, seed, encode, budget
        self.seen: dict[int, Optional[SizedPrompt]] = {}

    def __call__(self, length: int) -> Optional[SizedPrompt]:
        """The sized prompt at ``length`` task tokens; None where the task leaves the example out."""
        if length not in self.seen:
            example = self.task.sized_example(self.seed, self.knobs, self.index, length)
            sized = None
            if example is not None:
                text = render(self.task, example)
                sized = SizedPrompt(example, text, self.encode(text.context, text.question, text.answer_prefix), length)
            self.seen[length] = sized
        return self.seen[length]

    def fits(self, length: int) -> bool:
        sized = self(length)
        return sized is not None and len(sized.prompt) <= self.budget

    def same_text(self, shorter: int, longer: int) -> bool:
        """Whether the longer length renders the very prompt of the shorter (the task has no more text)."""
        a, b = self(shorter), self(longer)
        return (a.text.context, a.text.question) == (b.text.context, b.text.question)


def largest_fitting(probes: _Probes, low: int, guess: int) -> Optional[int]:
    """The task length from which one more token does not fit, searched from ``guess`` (at least ``low``, the
    task's least); None if not even the length reached downwards from the guess fits."""
    guess = max(low, guess)
    step = 1
    if probes.fits(guess):
        fitting = guess
        while probes.fits(fitting + step):
            if probes.same_text(fitting, fitting + step):
                return fitting
            fitting, step = fitting + step, 2 * step
        too_long = fitting + step
    else:
        too_long = guess
        while True:
            fitting = max(low, too_long - step)
            if probes.fits(fitting):
                break
            if fitting == low:
                return None
            too_long, step = fitting, 2 * step
    while too_long - fitting > 1:
        middle = (fitting + too_long) // 2
        fitting, too_long = (middle, too_long) if probes.fits(middle) else (fitting, middle)
    return fitting


def sized_prompts(task: Task, knobs: dict[str, Any], count: int, seed: int, encode: Encode) -> list[SizedPrompt]:
    """``count`` examples of the cell ``knobs`` whose prompts fill ``knobs["context_len"]`` model tokens (see the
    module docstring); items of data that fit no length are passed over. ValueError if the cell cannot be filled."""
    budget = knobs["context_len"]
    low = task.min_context_len(knobs)
    sized: list[SizedPrompt] = []
    guess, index = None, 0
    while len(sized) < count:
        probes = _Probes(task, knobs, index, seed, encode, budget)
        try:
            if guess is None:  # the first example: task tokens per model token at the budget
                first = probes(max(low, budget))
                guess = budget if first is None else max(low, budget * max(low, budget) // len(first.prompt))
            length = largest_fitting(probes, low, guess)
        except IndexError:
            raise ValueError(f"{task.name}: only {len(sized)} item(s) of the data fit context_len={budget} model "
                             f"tokens in cell {knobs}; {count} are needed") from None
        if length is None:
            if task.sized_example(seed, knobs, index, low) is not None:  # the task's shortest prompt is too long
                shortest = probes(low)
                raise ValueError(f"{task.name}: context_len={budget} model tokens is shorter than the shortest prompt "
                                 f"of cell {knobs}: {len(shortest.prompt)} tokens (template, question and answer "
                                 "prefix included); make it longer")
        else:
            sized.append(probes(length))
            guess = length
        index += 1
    return sized
