"""The dataset-backed tasks: loading through `datasets`, tokenizers that write text back exactly,
caps from the data, the gold paragraph among distractors, RULER's qa presets, errors before work."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import harness
from conftest import compose_config
from harness.engine.checks import ConfigError
from harness.engine.plan import prepare
from harness.taskkit.text_task import EOS, SEP, SHIPPED_DATA, Tokenizer
from tasks.data import make_samples
from tasks.qa import normalize, token_f1

#: made-up SQuAD-format articles with what broke the old tokenizers: hyphens, thousands separators,
#: punctuation inside answers, accents, and test answers whose words never occur in training
ARTICLES = {
    "Complexity": ["A problem is NP-complete when it is in NP and every problem in NP reduces to it.",
                   "Cook proved in 1971 that satisfiability is NP-complete; Karp listed 21 more problems."],
    "Stadium": ["The stadium in Köln holds 30,000 people and opened on 1 May 1923.",
                "Its roof, built by Müller & Söhne, cost $4.5 million (about €4 million)."],
    "Rivers": ["The Rhine flows 1,230 km from the Swiss Alps to the North Sea.",
               "The Danube passes Vienna, Budapest and Belgrade before the Black Sea."],
    "Birds": ["The Arctic tern migrates about 70,900 km every year, the longest known migration.",
              "Emperor penguins breed in winter on the sea ice of Antarctica."],
}
QUESTIONS = {  # paragraph -> (question, answers)
    ("Complexity", 0): ("When is a problem NP-complete?", ["when it is in NP and every problem in NP reduces to it"]),
    ("Complexity", 1): ("Who proved that satisfiability is NP-complete?", ["Cook"]),
    ("Stadium", 0): ("How many people does the stadium hold?", ["30,000", "30,000 people"]),
    ("Stadium", 1): ("Who built the roof?", ["Müller & Söhne"]),
    ("Rivers", 0): ("How long is the Rhine?", ["1,230 km"]),
    ("Rivers", 1): ("Which cities does the Danube pass?", ["Vienna, Budapest and Belgrade"]),
    ("Birds", 0): ("How far does the Arctic tern migrate?", ["about 70,900 km"]),
    ("Birds", 1): ("Where do Emperor penguins breed?", ["on the sea ice of Antarctica"]),
}
TRAIN_ARTICLES, TEST_ARTICLES = ("Complexity", "Stadium"), ("Rivers", "Birds")


def squad_rows(articles) -> list[dict]:
    return [{"title": title, "context": ARTICLES[title][i], "question": QUESTIONS[title, i][0],
             "answers": {"text": QUESTIONS[title, i][1], "answer_start": [ARTICLES[title][i].find(text)
                                                                          for text in QUESTIONS[title, i][1]]}}
            for title in articles for i in range(len(ARTICLES[title]))]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture
def squad_files(tmp_path):
    """Train on two articles, test on two others (SQuAD 2.0 style: one unanswerable question too)."""
    unanswerable = {"title": "Birds", "context": ARTICLES["Birds"][1], "question": "How tall are penguins?",
                    "answers": {"text": [], "answer_start": []}}
    return {"train": write_jsonl(tmp_path / "train.jsonl", squad_rows(TRAIN_ARTICLES)),
            "test": write_jsonl(tmp_path / "test.jsonl", squad_rows(TEST_ARTICLES) + [unanswerable])}


def qa(files, **options):
    return harness.build_task("qa", data_files=files, **options)


def oracle_scores(task, cells, count):
    return [task.score(e, task.oracle(e)) for cell in cells for e in task.test_examples(0, cell, count)]


@pytest.mark.parametrize("tokenizer", ["bpe", "byte"])
def test_tokenizers_write_any_text_back(tokenizer):
    text = "NP-complete, 30,000 people in Köln (€4.5 million) — naïve café!"
    word = Tokenizer(tokenizer, ["a tiny training text about NP and people"], vocab_size=300)
    assert word.decode(word.encode(text)) == text
    assert word.decode(np.append(word.encode(" Köln"), [EOS, 40])) == "Köln"  # stops at <eos>
    assert word.vocab.words[:4] == ["<pad>", "<sep>", "<ans>", "<eos>"]


@pytest.mark.parametrize("tokenizer", ["bpe", "byte"])
def test_the_oracle_scores_one_on_hard_answers_never_seen_in_training(squad_files, tokenizer):
    task = qa(squad_files, tokenizer=tokenizer, grid={"depth": [0.0, 1.0]})
    assert len(task.items["test"]) == 4  # the unanswerable question is left out, as RULER does
    cells = [{"context_len": 160, "depth": 0.0}, {"context_len": 240, "depth": 1.0}]
    scores = oracle_scores(task, cells, 4)
    assert all(score == {"f1": 1.0, "exact_match": 1.0, "string_match_part": 1.0} for score in scores)


def test_squad_normalisation_accepts_the_decoded_text():
    assert normalize("The  Eiffel Tower!") == "eiffel tower"
    assert normalize("NP-complete") == normalize(" NP-complete ") != normalize("NP - complete")
    assert token_f1("the tower in Paris", "Eiffel Tower") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert token_f1("", "Paris") == 0.0


def test_answer_cap_is_the_longest_answer_and_a_set_cap_is_recorded(squad_files):
    task = qa(squad_files)
    longest = max(min(len(task.encode(" " + text)) for text in answers) for answers in
                  (QUESTIONS[title, i][1] for title in ARTICLES for i in range(2)))
    assert task.answer_cap == longest and task.generated_tokens == longest + 1
    capped = qa(squad_files, max_answer_tokens=2)
    examples = capped.test_examples(0, {"context_len": 96}, 4)
    assert all(e.info["answer_tokens_cut"] == max(0, min(len(capped.encode(" " + r)) for r in e.references) - 2)
               for e in examples)
    assert any(capped.score(e, capped.oracle(e))["exact_match"] == 0.0 for e in examples)  # the cap's shortfall


def own_paragraph(example) -> str:
    """The paragraph a test example's question was asked about."""
    [paragraph] = [ARTICLES[title][i] for (title, i), (_, answers) in QUESTIONS.items() if answers == example.references]
    return paragraph


def documents_of(task, example) -> list[str]:
    """The decoded documents of an example, in order (each ends with <sep>)."""
    separators = np.flatnonzero(example.tokens == SEP)
    return [task.tokenizer.decode(part[part != SEP]) for part in np.split(example.tokens[: separators[-1]], separators[:-1])]


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_the_gold_paragraph_sits_at_its_depth_among_distractors_filling_the_length(squad_files, depth):
    task = qa(squad_files, grid={"depth": [depth]}, tokenizer="byte")
    test_paragraphs = [paragraph for title in TEST_ARTICLES for paragraph in ARTICLES[title]]
    for example in task.test_examples(0, {"context_len": 300, "depth": depth}, 4):
        documents = documents_of(task, example)
        gold = documents.index(own_paragraph(example))
        distractors = documents[:gold] + documents[gold + 1 :]
        assert example.info["distractors"] == len(distractors) >= 2 and example.info["padding"] == 0
        assert all(any(paragraph.startswith(text) for paragraph in test_paragraphs) for text in distractors)
        separators = np.flatnonzero(example.tokens == SEP)
        lengths = np.diff([-1, *separators])  # each document with its <sep>
        assert example.info["gold_depth"] == pytest.approx(lengths[:gold].sum() / (lengths.sum() - lengths[gold]))
        assert gold == {0.0: 0, 1.0: len(documents) - 1}.get(depth, gold)
        assert depth != 0.5 or 0 < gold < len(documents) - 1


def test_length_moves_the_gold_paragraph_away_from_the_question(squad_files):
    """Distractors, not padding, fill a longer example: the question moves away from the paragraph at depth 0."""
    task = qa(squad_files, grid={"depth": [0.0]}, tokenizer="byte")
    short, long = (task.test_examples(0, {"context_len": length, "depth": 0.0}, 4) for length in (220, 300))
    for a, b in zip(short, long):
        assert a.info["padding"] == b.info["padding"] == 0
        assert documents_of(task, a)[0] == documents_of(task, b)[0] == own_paragraph(a)  # gold at token 0
        assert np.flatnonzero(b.tokens == SEP)[-1] - np.flatnonzero(a.tokens == SEP)[-1] == 300 - 220


def test_ruler_preset_places_every_paragraph_at_random_same_article_first(tmp_path, squad_files):
    files = {"train": squad_files["train"], "validation": squad_files["test"]}
    task = prepare(compose_config(["task=ruler/qa_1", "task.source=json", f"task.data_files={{train: "
                                   f"{files['train']}, validation: {files['validation']}}}",
                                   "eval.grid.context_len=[300]", "eval.examples_per_cell=4", "train.context_len=300",
                                   "train.min_context_len=300", "train.batch_size=2", f"results_dir={tmp_path}"])).task
    assert task.config.preset == "ruler/qa_1" and task.config.source == "json"
    assert task.cell_knobs == {"context_len": int} and task.primary_metric == "string_match_part"
    examples = task.test_examples(0, {"context_len": 300}, 4)
    assert len({round(e.info["gold_depth"], 2) for e in examples}) > 1  # random places, not one depth
    for example in examples:
        text = task.tokenizer.decode(example.tokens[example.tokens != SEP])
        [title] = {t for t, i in QUESTIONS if QUESTIONS[t, i][1] == example.references}
        assert all(paragraph in text for paragraph in ARTICLES[title])  # the same article's paragraph is taken first
    assert all(score["string_match_part"] == 1.0 for score in oracle_scores(task, [{"context_len": 300}], 4))


HOTPOT = [  # HotpotQA's hub columns (hotpotqa/hotpot_qa, distractor): ten paragraphs per question in the real data
    {"id": f"h{i}", "question": f"Which river flows through the capital of country {i}?", "answer": f"River {i}-{i}",
     "type": "bridge", "level": "easy",
     "supporting_facts": {"title": [f"Country {i}", f"Capital {i}"], "sent_id": [0, 0]},
     "context": {"title": [f"Country {i}", f"Capital {i}", f"Other {i}"],
                 "sentences": [[f"Country {i} has the capital Town {i}.", " It is small."],
                               [f"Town {i} lies on River {i}-{i}."], [f"Other {i} is a mountain."]]}}
    for i in range(12)]


def test_ruler_qa_2_reads_hotpotqa_paragraphs_as_ruler_joins_them(tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", HOTPOT[:8]),
             "validation": write_jsonl(tmp_path / "dev.jsonl", HOTPOT[8:])}
    plan = prepare(compose_config(["task=ruler/qa_2", "task.source=json", "task.source_config=null",
                                   f"task.data_files={{train: {files['train']}, validation: {files['validation']}}}",
                                   "eval.grid.context_len=[200]", "eval.examples_per_cell=4", "train.context_len=200",
                                   "train.min_context_len=200", "train.batch_size=2", f"results_dir={tmp_path}"]))
    task = plan.task
    assert task.config.preset == "ruler/qa_2" and "Country 8\nCountry 8 has the capital Town 8. It is small." in \
        task.paragraphs["validation"]
    for example in task.test_examples(0, {"context_len": 200}, 4):
        i = int(example.references[0].split()[-1].split("-")[0])
        text = task.tokenizer.decode(example.tokens)
        assert all(f"{title}\n" in text for title in HOTPOT[i]["context"]["title"])  # all its paragraphs, RULER's gold
        assert task.score(example, task.oracle(example)) == {"string_match_part": 1.0, "f1": 1.0, "exact_match": 1.0}


def test_summaries_capped_at_the_95th_percentile_and_documents_that_fill_their_room(tmp_path):
    rows = [{"document": " ".join(f"Sentence {j} of story {i} is here." for j in range(4 + i % 5)),
             "summary": "Story {} in short{}.".format(i, " and long" * (30 if i % 20 == 0 else 0))} for i in range(40)]
    files = {s: write_jsonl(tmp_path / f"{s}.jsonl", rows) for s in ("train", "test")}
    task = harness.build_task("summarization", data_files=files, tokenizer="byte")
    long = [e for e in task.test_examples(0, {"context_len": 200}, 30) if e.info["answer_tokens_cut"]]
    assert task.answer_cap < len(" Story 0 in short" + " and long" * 30) and long
    assert all(task.score(e, task.oracle(e))["rougeL"] < 1.0 for e in long)  # the cap's shortfall, recorded per example
    for example in task.test_examples(0, {"context_len": 200}, 10):
        assert example.info["padding"] <= 0.5 * (200 - task.generated_tokens)
    with pytest.raises(ValueError, match=r"only \d+ example\(s\) that fit \{'context_len': 1000\}.*min_fill=0.5"):
        task.test_examples(0, {"context_len": 1000}, 10)


def test_parquet_files_and_the_layout(tmp_path):
    for split in ("train", "test"):
        pd.DataFrame([{"text": "Grüße aus Köln, sagte sie.", "headline": "Grüße aus Köln"}]).to_parquet(
            tmp_path / f"{split}.parquet")
    task = harness.build_task("summarization", source="parquet", document_column="text", answer_column="headline",
                              tokenizer="byte", min_fill=0.0,
                              data_files={s: str(tmp_path / f"{s}.parquet") for s in ("train", "test")})
    assert task.vocab_size == 4 + 256 and task.answer_cap == len(" Grüße aus Köln".encode())
    example = task.test_examples(seed=0, knobs={"context_len": 80}, count=1)[0]
    document = len("Grüße aus Köln, sagte sie.".encode())
    region = 80 - task.generated_tokens
    assert example.info == {"document_tokens": document, "document_dropped": 0, "padding": region - document - 2,
                            "answer_tokens_cut": 0}
    assert example.tokens[region - 2 : region].tolist() == [SEP, 2] and example.tokens[-1] == EOS
    assert example.answer_positions.tolist() == list(range(region - 1, 80 - 1))
    assert task.score(example, task.oracle(example)) == {"rougeL": 1.0, "rouge1": 1.0, "rouge2": 1.0}


@pytest.mark.parametrize("truncation, kept", [("keep_start", "Cook proved in 1971"), ("keep_end", "21 more problems.")])
def test_a_gold_paragraph_longer_than_its_room_is_cut_as_truncation_says(squad_files, truncation, kept):
    files = {"train": squad_files["train"], "test": squad_files["train"]}
    task = qa(files, tokenizer="byte", truncation=truncation, max_question_tokens=40)
    example = next(e for e in task.test_examples(0, {"context_len": 175}, 4) if e.references == ["Cook"])
    [text] = documents_of(task, example)
    assert (text.startswith if truncation == "keep_start" else text.endswith)(kept)
    assert example.info["document_dropped"] == len(ARTICLES["Complexity"][1]) - len(text) > 0
    # keeping the end cuts "Cook" out: the oracle still scores 1.0, so the example says it is unanswerable
    assert example.info["answer_cut_out"] == (truncation == "keep_end")
    skipping = qa(files, tokenizer="byte", truncation="skip", max_question_tokens=40)
    assert all(e.references != ["Cook"] for e in skipping.test_examples(0, {"context_len": 175}, 3))
    with pytest.raises(ValueError, match="only 3 example"):
        skipping.test_examples(0, {"context_len": 175}, 4)


def test_rouge_hand_checked():
    task = harness.build_task("summarization")
    scores = task.score_text("the cat sat", ["the cat ran"])
    assert scores["rouge1"] == pytest.approx(2 / 3) and scores["rouge2"] == pytest.approx(1 / 2)


@pytest.mark.parametrize("problem, message", [
    ({"document_column": "body"}, "no column.*'body'"),
    ({"article_column": "section"}, "no column.*'section'"),
    ({"data_files": {"train": "/nonexistent/train.jsonl", "test": "/nonexistent/test.jsonl"}}, "cannot load"),
    ({"tokenizer": "word"}, "tokenizer"),
    ({"truncation": "middle"}, "truncation"),
    ({"primary_metric": "bleu"}, "primary_metric"),
    ({"cap_percentile": 0}, "cap_percentile"),
    ({"vocab_size": 100}, "vocab_size"),
])
def test_bad_sources_and_options_name_the_problem(squad_files, problem, message):
    with pytest.raises(ValueError, match=message):
        harness.build_task("qa", **{"data_files": squad_files, **problem})


def test_a_bad_document_cell_and_a_split_without_answers_name_the_problem(tmp_path, squad_files):
    odd = write_jsonl(tmp_path / "odd.jsonl", [{**squad_rows(TRAIN_ARTICLES)[0], "context": 7}])
    with pytest.raises(ValueError, match="column 'context' of split 'test'.*string or HotpotQA"):
        qa({"train": squad_files["train"], "test": odd})
    none = write_jsonl(tmp_path / "none.jsonl", [{**squad_rows(TRAIN_ARTICLES)[0], "answers": {"text": []}}])
    with pytest.raises(ValueError, match="split 'test' has no example with an answer"):
        qa({"train": squad_files["train"], "test": none})
    with pytest.raises(ValueError, match=r"depth=1.5 must be in \[0, 1\]"):
        qa(squad_files, grid={"depth": [1.5]}).validate_cell({"context_len": 200, "depth": 1.5})


@pytest.mark.parametrize("override, message", [
    ("eval.examples_per_cell=5", r"qa: split 'test' has only 4 example\(s\) .* 5 are needed"),
    ("train.batch_size=5", r"qa: split 'train' has only 4 example\(s\) .* 5 are needed"),
])
def test_data_that_cannot_fill_the_run_fails_before_training(tmp_path, squad_files, override, message):
    overrides = ["task=qa", f"task.data_files.train={squad_files['train']}", f"task.data_files.test={squad_files['test']}",
                 "eval.grid.context_len=[200]", "eval.examples_per_cell=4", "train.batch_size=2",
                 "train.context_len=200", "train.min_context_len=200", f"results_dir={tmp_path / 'results'}", override]
    with pytest.raises(ConfigError, match=message):
        prepare(compose_config(overrides))


def test_summaries_too_short_for_a_length_fail_before_training(tmp_path):
    overrides = ["task=summarization", "eval.grid.context_len=[2048]", f"results_dir={tmp_path / 'results'}"]
    with pytest.raises(ConfigError, match=r"summarization: split 'test' has only 0 example\(s\) that fit "
                                          r"\{'context_len': 2048\}.*min_fill"):
        prepare(compose_config(overrides))


def test_shipped_samples_are_what_the_generator_writes(tmp_path):
    for path in make_samples.write(tmp_path):
        relative = path.relative_to(tmp_path)
        assert path.read_bytes() == (SHIPPED_DATA / relative).read_bytes(), relative


def test_greedy_decoding_feeds_back_the_models_own_tokens():
    model = harness.build_model("full_attention", vocab_size=11, d_model=16, n_layers=1, n_heads=2).eval()
    tokens = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        predictions, _ = model.predict(tokens, segment_len=5, generated=4)
        expected = tokens[:, :8].clone()
        for _ in range(4):
            logits, _ = model(expected, model.init_state(2))
            expected = torch.cat([expected, logits[:, -1:].argmax(-1)], dim=1)
        whole, _ = model(expected[:, :12], model.init_state(2))
    assert predictions.shape == (2, 12)
    torch.testing.assert_close(predictions[:, 7:11], expected[:, 8:12])
    torch.testing.assert_close(predictions[:, :8], whole[:, :8].argmax(-1))


@pytest.mark.parametrize("tuning_seed, stopping_seed", [(0, 1), (3, 3)])
def test_tuning_and_early_stopping_read_disjoint_halves_of_the_validation_split(squad_files, tuning_seed, stopping_seed):
    """What stops training never chooses the rate, whatever the two seeds."""
    task = qa({"train": squad_files["train"], "test": squad_files["test"], "validation": squad_files["train"]},
              validation_split="validation")
    items = len(task.items["validation"])
    tuning, stopping = (set(task._test_order(seed, split)[1].tolist())
                        for seed, split in ((tuning_seed, "validation"), (stopping_seed, "stopping")))
    assert not tuning & stopping and len(tuning | stopping) == items and len(tuning) == items // 2
    assert set(task._test_order(7, "validation")[1].tolist()) == tuning  # a seed orders its half, never moves it
