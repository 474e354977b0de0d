"""A pretrained cell's context_len counts the model's tokens: every prompt fills it to the task's granularity."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import harness  # noqa: E402
from harness.pretrained import PretrainedLM  # noqa: E402
from harness.pretrained.prompts import render  # noqa: E402
from harness.pretrained.sizing import sized_prompts  # noqa: E402
from harness.pretrained.tiny import tiny_model, tiny_tokenizer  # noqa: E402

CASES = {  # the tiny tokenizer writes a task word in 2 to 3 tokens: these are the prompts' lengths in its tokens
    "niah": ({}, {"context_len": 384}),
    "niah_text": ({"haystack": "text"}, {"context_len": 512}),
    "variable_tracking": ({}, {"context_len": 320}),
    "babi_qa": ({}, {"context_len": 768, "qa": 2}),
    "qa": ({}, {"context_len": 448}),
    "summarization": ({}, {"context_len": 320}),
}


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "chat"])
def lm(request):
    tokenizer = tiny_tokenizer()
    return PretrainedLM(tiny_model("llama", len(tokenizer)), tokenizer, chat_template=request.param)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pretrained_prompts_fill_context_len_in_model_tokens(lm, case):
    options, knobs = CASES[case]
    task = harness.build_task(case.removesuffix("_text"), **options)
    budget = knobs["context_len"]
    sized = sized_prompts(task, knobs, 3, 0, lm.encode)
    assert len(sized) == 3
    for index, item in enumerate(sized):
        text = item.text
        assert len(item.prompt) <= budget  # the whole prompt: template, question, answer prefix (chat turn too)
        assert len(item.prompt) == len(lm.encode(text.context, text.question, text.answer_prefix))
        assert item.example.knobs["context_len"] == item.task_len  # laid out in the task's own tokens
        # one more task token passes the budget, or the task has no more text to give (left out, or the same)
        longer = task.sized_example(0, knobs, index, item.task_len + 1)
        if longer is not None:
            rendered = render(task, longer)
            if (rendered.context, rendered.question) != (text.context, text.question):
                assert len(lm.encode(rendered.context, rendered.question, rendered.answer_prefix)) > budget
    if task.name in ("niah", "variable_tracking", "babi_qa"):  # a haystack grows a word at a time
        assert all(budget - len(item.prompt) <= 8 for item in sized)


def test_pretrained_sizing_keeps_each_examples_draws_at_every_length():
    task = harness.build_task("niah", num_keys=2)
    short, long = (task.sized_example(3, {"context_len": 999}, 1, length) for length in (100, 300))
    needles = [render(task, example).references for example in (short, long)]
    assert needles[0] == needles[1]  # the same needles in a longer haystack
    other = task.sized_example(3, {"context_len": 999}, 2, 100)
    assert render(task, other).references != needles[0]


def test_pretrained_sizing_refuses_a_length_shorter_than_the_template(lm):
    task = harness.build_task("variable_tracking")
    with pytest.raises(ValueError, match=r"variable_tracking: context_len=64 model tokens is shorter than the "
                                         r"shortest prompt of cell \{'context_len': 64\}: \d+ tokens"):
        sized_prompts(task, {"context_len": 64}, 1, 0, lm.encode)
