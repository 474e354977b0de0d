"""memarena's text tasks as prompts for a pretrained model, in their benchmarks' templates.

A task generates an ``Example`` in its own tokens (harness/taskkit/task.py); ``render(task, example)``
writes the same example as text: the context, the question and the answer prefix, wrapped in the
template of the benchmark the task follows, and ``score(task, example, text)`` scores the text a
model generated with the task's own scorer. Lengths: ``render`` writes an example of any length in
the task's own tokens; harness/pretrained/sizing.py chooses that length so that the encoded prompt
(``PretrainedLM.encode``) fills a cell's ``context_len`` in the model's tokens.

- ``niah``: RULER's NIAH template ("Some special magic numbers are hidden within the following
  text. ..." and the answer prefix " The special magic numbers for {keys} mentioned in the provided
  text are"); RULER's ``string_match_all`` on the text; ``exact_match``: the numbers of the text,
  in order, start with the asked values in order. Numbers and word keys only.
- ``variable_tracking``: RULER's VT template and answer prefix; ``string_match_all``; ``exact_match``:
  the text's words start with the variables in chain order. Names of ``name_letters`` letters are
  written as RULER writes them, one word of capitals ("VAR QPBSD = 39421.").
- ``babi_qa``: BABILong's prompt (booydar/babilong ``prompts.py``: instruction, in-context examples,
  post-prompt, ``<context>`` ... ``</context>``, "Question:"), then " Answer:" for models without a
  chat template to follow; BABILong's ``compare_answers``.
- ``babilong_data``: BABILong's released rows (tasks/babilong_data.py) in the same prompt, the released
  ``input`` as the context; ``compare_answers``.
- ``qa``: RULER's QA template (the documents numbered "Document i:"), answer prefix " Answer:";
  SQuAD's F1 and exact match and RULER's ``string_match_part`` (the task's ``score_text``).
- ``summarization``: memarena's own instruction (no benchmark template for this data), ROUGE.

The synthetic tasks' word tokens are written back as text with numbers joined ("2 2 3" -> "223")
and no space before punctuation; their words stay lower case, as the task generated them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from harness.taskkit.string_match import string_match_all
from harness.taskkit.task import Example, Task

RULER_NIAH = ("Some special magic {kind} are hidden within the following text. Make sure to memorize it. "
              "I will quiz you about the {kind} afterwards.\n{context}\n",
              "What are all the special magic {kind} for {query} mentioned in the provided text?",
              " The special magic {kind} for {query} mentioned in the provided text are")
RULER_VT = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n",
            "Question: Find all variables that are assigned the value {query} in the text above.",
            " Answer: According to the chain(s) of variable assignment in the text above, {count} variables are "
            "assgined the value {query}, they are: ")
RULER_QA_INSTRUCTION = ("Answer the question based on the given documents. Only give me the answer and do not output "
                        "any other words.")
RULER_QA = (RULER_QA_INSTRUCTION + "\n\nThe following are given documents.\n\n{context}\n\n",
            RULER_QA_INSTRUCTION + "\n\nQuestion: {query}", " Answer:")
SUMMARY = ("Summarize the following article.\n\n{context}\n\n", "Now, write a short summary of the article.",
           "\n\nSummary:")
# BABILong's prompts for its qa1-qa5 (booydar/babilong, babilong/prompts.py, DEFAULT_PROMPTS), verbatim
BABILONG_TEMPLATE = "{instruction}\n{examples}\n{post_prompt}\n<context>\n{context}\n</context>\n"
BABILONG = {
    1: ("I will give you context with the facts about positions of different persons hidden in some random text and "
        "a question. You need to answer the question based only on the information from the facts. If a person was "
        "in different locations, use the latest location to answer the question.",
        "<example>\nCharlie went to the hallway. Judith come back to the kitchen. Charlie travelled to balcony. Where "
        "is Charlie?\nAnswer: The most recent location of Charlie is balcony.\n</example>\n\n<example>\nAlan moved to "
        "the garage. Charlie went to the beach. Alan went to the shop. Rouse travelled to balcony. Where is Alan?\n"
        "Answer: The most recent location of Alan is shop.\n</example>",
        "Always return your answer in the following format: The most recent location of ’person’ is ’location’. Do "
        "not write anything else after that. "),
    2: ("I give you context with the facts about locations and actions of different persons hidden in some random "
        "text and a question.You need to answer the question based only on the information from the facts.\nIf a "
        "person got an item in the first location and travelled to the second location the item is also in the "
        "second location. If a person dropped an item in the first location and moved to the second location the "
        "item remains in the first location.",
        "<example>\nCharlie went to the kitchen. Charlie got a bottle. Charlie moved to the balcony. Where is the "
        "bottle?\nAnswer: The bottle is in the balcony.\n</example>\n<example>\nAlan moved to the garage. Alan got a "
        "screw driver. Alan moved to the kitchen. Where is the screw driver?\nAnswer: The screw driver is in the "
        "kitchen.\n</example>",
        "Always return your answer in the following format: The ’item’ is in ’location’. Do not write anything else "
        "after that."),
    3: ("I give you context with the facts about locations and actions of different persons hidden in some random "
        "text and a question. You need to answer the question based only on the information from the facts.\nIf a "
        "person got an item in the first location and travelled to the second location the item is also in the "
        "second location. If a person dropped an item in the first location and moved to the second location the "
        "item remains in the first location",
        "<example>\nJohn journeyed to the bedroom.Mary grabbed the apple. Mary went back to the bathroom. Daniel "
        "journeyed to the bedroom. Daniel moved to the garden. Mary travelled to the kitchen. Where was the apple "
        "before the kitchen?\nAnswer: Before the kitchen the apple was in the bathroom.\n</example>\n<example>\nJohn "
        "went back to the bedroom. John went back to the garden. John went back to the kitchen. Sandra took the "
        "football. Sandra travelled to the garden. Sandra journeyed to the bedroom. Where was the football before "
        "the bedroom?\nAnswer: Before the kitchen the football was in the garden.\n</example>",
        "Always return your answer in the following format: Before the $location_1& the $item$ was in the "
        "$location_2$. Do not write anything else after that."),
    4: ("I will give you context with the facts about different people, their location and actions, hidden in some "
        "random text and a question. You need to answer the question based only on the information from the facts.",
        "<example>\nThe hallway is south of the kitchen. The bedroom is north of the kitchen. What is the kitchen "
        "south of?\nAnswer: bedroom\n</example>\n<example>\nThe garden is west of the bedroom. The bedroom is west of "
        "the kitchen. What is west of the bedroom?\nAnswer: garden\n</example>",
        "Your answer should contain only one word - location. Do not write anything else after that."),
    5: ("I will give you context with the facts about locations and their relations hidden in some random text and "
        "a question. You need to answer the question based only on the information from the facts.",
        "<example>\nMary picked up the apple there. Mary gave the apple to Fred. Mary moved to the bedroom. Bill took "
        "the milk there. Who did Mary give the apple to?\nAnswer: Fred\n</example>\n<example>\nJeff took the "
        "football there. Jeff passed the football to Fred. Jeff got the milk there. Bill travelled to the bedroom. "
        "Who gave the football?\nAnswer: Jeff\n</example>\n<example>\nFred picked up the apple there. Fred handed "
        "the apple to Bill. Bill journeyed to the bedroom. Jeff went back to the garden. What did Fred give to "
        "Bill?\nAnswer: apple\n</example>",
        "Your answer should contain only one word. Do not write anything else after that. Do not explain your "
        "answer."),
}


@dataclass
class TaskPrompt:
    context: str  # what a policy may compress (kvpress compresses exactly this)
    question: str
    answer_prefix: str
    references: list[str]  # the reference answers as text
    template: str  # the benchmark template used, recorded with the results
    max_new_tokens: int  # the benchmark's generation budget


def words_text(words: str) -> str:
    """Word tokens joined by spaces written as text: digit runs joined, no space before punctuation."""
    return re.sub(r" ([.,:;?!])", r"\1", re.sub(r"(?<=\b\d) (?=\d\b)", "", words))


def _prompt_and_answer(example: Example) -> tuple[np.ndarray, np.ndarray]:
    """The tokens up to the first answer (the prompt) and the answer's tokens."""
    positions = example.answer_positions
    return example.tokens[: positions[0] + 1], example.labels[positions]


def _niah(task, example: Example) -> TaskPrompt:
    config = task.config
    if config.key_type != "words" or config.value_type != "numbers":
        raise ValueError("niah as a prompt: only key_type=words and value_type=numbers are written as text")
    prompt, answer = _prompt_and_answer(example)
    context, question = prompt[: -task.question_len], words_text(task.vocab.decode(prompt[-task.question_len :]))
    query = re.fullmatch(r"what are all the special magic numbers for (.+)\? answer:", question).group(1)
    values = [words_text(task.vocab.decode(value)) for value in answer.reshape(-1, task.value_len)]
    head, ask, prefix = (part.format(kind="numbers", query=query, context="{context}") for part in RULER_NIAH)
    return TaskPrompt(head.format(context=words_text(task.vocab.decode(context))), ask, prefix, values,
                      "ruler/niah", 128)


def _variable_tracking(task, example: Example) -> TaskPrompt:
    letters = task.config.name_letters
    prompt, answer = _prompt_and_answer(example)
    context, question = prompt[: -task.question_len], words_text(task.vocab.decode(prompt[-task.question_len :]))
    value = re.fullmatch(r"which variables hold (\d+)\? answer:", question).group(1)
    names = task.vocab.decode(answer).split()
    text = words_text(task.vocab.decode(context))
    if letters:  # RULER's names: `letters` capitals written as one word ("VAR QPBSD = 39421.")
        names = ["".join(names[i : i + letters]).upper() for i in range(0, len(names), letters)]
        text = re.sub(rf"\bvar((?: [a-z]){{{letters}}})\b", lambda m: "VAR " + m.group(1).replace(" ", "").upper(), text)
    head, ask, prefix = (part.format(count=len(names), query=value, context="{context}") for part in RULER_VT)
    return TaskPrompt(head.format(context=text), ask, prefix, names, "ruler/vt", 30)


def _babi_qa(task, example: Example) -> TaskPrompt:
    from tasks.babi_stories import last_question

    prompt, answer = _prompt_and_answer(example)
    text = task.vocab.decode(prompt)
    question = last_question(text)
    context = text[: text.rindex(question)].strip()
    instruction, examples, post_prompt = BABILONG[example.knobs["qa"]]
    head = BABILONG_TEMPLATE.format(instruction=instruction, examples=examples, post_prompt=post_prompt,
                                    context=words_text(context))
    return TaskPrompt(head, f"Question: {words_text(question)}", "\nAnswer:", [task.vocab.decode(answer)],
                      "babilong/default", 20)


def _documents_and_question(task, example: Example) -> tuple[list[str], str]:
    """A text task's documents and question as text (its layout: documents <sep> ... question <ans>)."""
    from harness.taskkit.text_task import ANS, PAD, SEP

    prompt, _ = _prompt_and_answer(example)
    prompt = prompt[prompt != PAD]
    if prompt[-1] != ANS:
        raise AssertionError(f"{task.name}: the prompt does not end with <ans>")
    parts = np.split(prompt[:-1], np.flatnonzero(prompt[:-1] == SEP) + 1)
    return [task.tokenizer.decode(part) for part in parts[:-1]], task.tokenizer.decode(parts[-1])


def _qa(task, example: Example) -> TaskPrompt:
    documents, question = _documents_and_question(task, example)
    context = "\n\n".join(f"Document {i}:\n{document}" for i, document in enumerate(documents, 1))
    head, ask, prefix = RULER_QA
    return TaskPrompt(head.format(context=context), ask.format(query=question), prefix, list(example.references),
                      "ruler/qa", 32)


def _babilong_data(task, example: Example) -> TaskPrompt:
    [context], question = _documents_and_question(task, example)
    instruction, examples, post_prompt = BABILONG[task.qa]
    head = BABILONG_TEMPLATE.format(instruction=instruction, examples=examples, post_prompt=post_prompt,
                                    context=context.strip())
    return TaskPrompt(head, f"Question: {question.strip()}", "\nAnswer:", list(example.references),
                      "babilong/default", 20)


def _summarization(task, example: Example) -> TaskPrompt:
    documents, _ = _documents_and_question(task, example)
    head, ask, prefix = SUMMARY
    return TaskPrompt(head.format(context="\n\n".join(documents)), ask, prefix, list(example.references),
                      "memarena/summarization", max(64, 2 * task.answer_cap))


RENDERERS: dict[str, Callable[[Task, Example], TaskPrompt]] = {
    "niah": _niah, "variable_tracking": _variable_tracking, "babi_qa": _babi_qa, "qa": _qa,
    "summarization": _summarization, "babilong_data": _babilong_data,
}


def check_text_form(task: Task) -> None:
    """ValueError for a task without a text form."""
    if task.name not in RENDERERS:
        raise ValueError(f"task {task.name!r} has no text form for a pretrained model; tasks with one: "
                         f"{', '.join(sorted(RENDERERS))}")


def render(task: Task, example: Example) -> TaskPrompt:
    """``example`` of ``task`` as a prompt (see the module docstring); ValueError for a task without a text form."""
    check_text_form(task)
    return RENDERERS[task.name](task, example)


def score(task: Task, example: Example, prompt: TaskPrompt, text: str) -> dict[str, float]:
    """The task's metrics of the generated ``text`` (see the module docstring)."""
    if task.name in ("qa", "summarization"):
        return task.score_text(text, prompt.references)
    if task.name == "babi_qa":
        from tasks.babi_qa import compare_answers
        from tasks.babi_stories import LABELS

        question = prompt.question.removeprefix("Question: ")
        return {"accuracy": float(compare_answers(prompt.references[0], text, question, LABELS[example.knobs["qa"]]))}
    if task.name == "babilong_data":
        return task.score_question(text, prompt.references, example.info["question"])
    found = re.findall(r"\d+", text) if task.name == "niah" else re.findall(r"[^\W_]+", text.lower())
    references = [reference.lower() for reference in prompt.references]
    return {"string_match_all": string_match_all(text, prompt.references),
            "exact_match": float(found[: len(references)] == references)}
