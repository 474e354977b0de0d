"""memarena's text tasks rendered as prompts in their benchmarks' templates and scored from text."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("transformers")

import harness  # noqa: E402
from harness.pretrained import PretrainedLM  # noqa: E402
from harness.pretrained.prompts import render, score  # noqa: E402
from harness.pretrained.tiny import tiny_model, tiny_tokenizer  # noqa: E402

CASES = {
    "niah": ({"num_keys": 3, "num_queries": 2}, {"context_len": 120}),
    "variable_tracking": ({}, {"context_len": 60}),
    "babi_qa": ({}, {"context_len": 60, "qa": 2}),
    "qa": ({}, {"context_len": 160}),
    "summarization": ({}, {"context_len": 128}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request):
    options, knobs = CASES[request.param]
    task = harness.build_task(request.param, **options)
    example = task.test_examples(0, knobs, 1)[0]
    return task, example, render(task, example)


def test_pretrained_prompt_follows_its_benchmark_template(rendered):
    task, example, prompt = rendered
    starts = {"ruler/niah": "Some special magic numbers are hidden within the following text.",
              "ruler/vt": "Memorize and track the chain(s) of variable assignment",
              "babilong/default": "I give you context with the facts about locations and actions",
              "ruler/qa": "Answer the question based on the given documents.",
              "memarena/summarization": "Summarize the following article."}
    assert prompt.context.startswith(starts[prompt.template])
    if task.name != "summarization":  # every answer is in the context it is asked about
        assert all(reference in prompt.context for reference in prompt.references)
    if task.name == "niah":
        keys = prompt.question.removeprefix("What are all the special magic numbers for ").removesuffix(
            " mentioned in the provided text?")
        assert len(keys.split(", ")) == 2 and f"for {keys} mentioned" in prompt.answer_prefix
        assert all(len(value) == 3 and value.isdigit() for value in prompt.references)  # digits joined: "2 2 3" -> "223"
    if task.name == "babi_qa":
        assert prompt.question.startswith("Question: where is the") and "</context>\n" in prompt.context


def test_pretrained_prompt_scores_the_answer_and_not_another(rendered):
    task, example, prompt = rendered
    right = score(task, example, prompt, " " + ", ".join(prompt.references) + ".")
    wrong = score(task, example, prompt, " zebra")
    assert set(right) == set(task.metrics)
    assert right[task.primary_metric] == 1.0 and wrong[task.primary_metric] == 0.0


def test_pretrained_prompt_refuses_tasks_without_a_text_form():
    task = harness.build_task("passkey")
    with pytest.raises(ValueError, match="task 'passkey' has no text form for a pretrained model; tasks with one: "
                                         "babi_qa, babilong_data, niah, qa, summarization, variable_tracking"):
        render(task, task.test_examples(0, {"context_len": 64, "depth": 0.5}, 1)[0])


@pytest.mark.parametrize("chat_template", [False, True])
def test_pretrained_encode_splits_context_from_question(chat_template):
    tokenizer = tiny_tokenizer()
    lm = PretrainedLM(tiny_model("llama", len(tokenizer)), tokenizer, chat_template)
    prompt = lm.encode("Alice sat by her sister on the bank.", "\nWhere did Alice sit?", " Answer:")
    context, query = tokenizer.decode(prompt.context), tokenizer.decode(prompt.query)
    assert context.endswith("Alice sat by her sister on the bank.")
    assert query.startswith("\nWhere did Alice sit?") and query.endswith(" Answer:")
    assert context.startswith("<s>user: " if chat_template else "<s>")
    assert ("<s>assistant:" in query) == chat_template


def test_pretrained_prompt_writes_rulers_letter_names_as_capitals():
    task = harness.build_task("variable_tracking", num_hops=2, value_digits=5, name_letters=5)
    example = task.test_examples(0, {"context_len": 120}, 1)[0]
    prompt = render(task, example)
    assert len(prompt.references) == 3 and all(re.fullmatch(r"[A-Z]{5}", name) for name in prompt.references)
    assert f"VAR {prompt.references[0]} = " in prompt.context  # RULER's "VAR QPBSD = 39421."
    assert f"VAR {prompt.references[1]} = VAR {prompt.references[0]}." in prompt.context
    assert not re.search(r"\bvar\b", prompt.context)  # no name left as letters apart
    right = score(task, example, prompt, " " + " ".join(prompt.references).lower())
    assert right == {"string_match_all": 1.0, "exact_match": 1.0}
    assert score(task, example, prompt, " " + prompt.references[0])["string_match_all"] == pytest.approx(1 / 3)
