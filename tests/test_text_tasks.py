"""The dataset-backed tasks: loading through `datasets` from local files, layout, truncation, metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import harness
from harness.text_task import EOS, SHIPPED_DATA, Tokenizer
from tasks.data import make_samples
from tasks.qa import normalize, token_f1

ROWS = [
    {"context": "Ada Lovelace was born in London in 1815.", "question": "Where was Ada born?",
     "answers": {"text": ["London", "in London"], "answer_start": [25, 22]}},
    {"context": "Alan Turing studied at King's College.", "question": "What did Alan study at?",
     "answers": {"text": ["King's College"], "answer_start": [23]}},
]
TEST_ROWS = [{"context": "Grace Hopper was born in New York in 1906 and joined the navy.",
              "question": "Where was Grace born?", "answers": {"text": ["New York"], "answer_start": [25]}}]


@pytest.fixture
def qa_files(tmp_path):
    for split, rows in (("train", ROWS), ("test", TEST_ROWS)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")}


def test_qa_hand_checked_layout(qa_files):
    task = harness.build_task("qa", data_files=qa_files, max_question_tokens=8, max_answer_tokens=3)
    example = task.test_examples(seed=0, knobs={"context_len": 32}, count=1)[0]
    assert task.vocab.decode(example.tokens) == (
        "<pad> <pad> <pad> <pad> <unk> <unk> was born in <unk> <unk> in 1 <unk> <unk> <unk> <unk> <unk> <unk> <unk> . "
        "<sep> where was <unk> born ? <ans> <unk> <unk> <eos> <pad>")  # words not in the training split: <unk>
    assert task.generated_tokens == 4  # three answer tokens and <eos>
    assert example.answer_positions.tolist() == [27, 28, 29]
    assert example.info == {"document_tokens": 17, "document_dropped": 0}
    assert example.references == ["New York"]
    assert task.score(example, task.oracle(example)) == {"f1": 0.0, "exact_match": 0.0}  # unknown words: <unk>


def test_qa_scores_the_text_the_model_writes(qa_files):
    task = harness.build_task("qa", data_files={"train": qa_files["test"], "test": qa_files["test"]})
    example = task.test_examples(seed=0, knobs={"context_len": 60}, count=1)[0]
    assert task.score(example, task.oracle(example)) == {"f1": 1.0, "exact_match": 1.0}
    predictions = task.oracle(example)
    first = example.answer_positions[0]
    predictions[first + 1] = EOS  # "new" and stop
    assert task.predicted_text(example, predictions) == "new"
    assert task.score(example, predictions) == {"f1": pytest.approx(2 / 3), "exact_match": 0.0}


@pytest.mark.parametrize("truncation, kept", [("keep_start", "grace hopper was born"), ("keep_end", "joined the navy .")])
def test_truncation_keeps_one_end_and_records_what_it_cut(qa_files, truncation, kept):
    task = harness.build_task("qa", data_files={"train": qa_files["test"], "test": qa_files["test"]},
                              max_question_tokens=8, max_answer_tokens=3, truncation=truncation)
    example = task.test_examples(seed=0, knobs={"context_len": 22}, count=1)[0]
    text = task.vocab.decode(example.tokens)
    document = text.split(" <sep>")[0]
    assert len(document.split()) == 22 - 4 - 2 - 5  # answer region, <sep> <ans>, question
    assert document.startswith(kept) if truncation == "keep_start" else document.endswith(kept)
    assert example.info == {"document_tokens": 17, "document_dropped": 6}


def test_skip_truncation_leaves_long_examples_out_and_says_when_too_few_fit(qa_files):
    task = harness.build_task("qa", data_files={"train": qa_files["train"], "test": qa_files["train"]},
                              max_question_tokens=8, max_answer_tokens=3, truncation="skip")
    fitting = task.test_examples(seed=0, knobs={"context_len": 22}, count=1)  # Alan's fits, Ada's does not
    assert fitting[0].info["document_dropped"] == 0 and fitting[0].references == ["King's College"]
    with pytest.raises(ValueError, match="only 1 example"):
        task.test_examples(seed=0, knobs={"context_len": 22}, count=2)


def test_parquet_files_and_a_byte_tokenizer(tmp_path):
    for split in ("train", "test"):
        pd.DataFrame([{"text": "Grüße aus Köln, sagte sie.", "headline": "Grüße aus Köln"}]).to_parquet(
            tmp_path / f"{split}.parquet")
    task = harness.build_task("summarization", source="parquet", document_column="text", answer_column="headline",
                              tokenizer="byte", data_files={s: str(tmp_path / f"{s}.parquet") for s in ("train", "test")})
    assert task.vocab_size == 4 + 256
    example = task.test_examples(seed=0, knobs={"context_len": 80}, count=1)[0]
    assert example.info["document_tokens"] == len("Grüße aus Köln, sagte sie.".encode())
    assert task.score(example, task.oracle(example)) == {"rougeL": 1.0, "rouge1": 1.0, "rouge2": 1.0}


def test_tokenizers_round_trip():
    word = Tokenizer("word", ["Born in 1815, in London."], vocab_size=100)
    assert word.decode(word.encode("In London in 1815.")) == "in london in 1815 ."
    assert word.decode(np.append(word.encode("Paris 5"), [EOS, 5])) == "<unk> 5"
    byte = Tokenizer("byte", [], vocab_size=1)
    assert byte.decode(byte.encode("naïve café")) == "naïve café"


def test_squad_metrics_hand_checked():
    assert normalize("The  Eiffel Tower!") == "eiffel tower"
    assert token_f1("the tower in Paris", "Eiffel Tower") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert token_f1("", "Paris") == 0.0


def test_rouge_hand_checked():
    task = harness.build_task("summarization")
    scores = task.score_text("the cat sat", ["the cat ran"])
    assert scores["rouge1"] == pytest.approx(2 / 3) and scores["rouge2"] == pytest.approx(1 / 2)


@pytest.mark.parametrize("problem, message", [
    ({"document_column": "body"}, "no column.*'body'"),
    ({"data_files": {"train": "/nonexistent/train.jsonl", "test": "/nonexistent/test.jsonl"}}, "cannot load"),
    ({"tokenizer": "bpe"}, "tokenizer"),
    ({"truncation": "middle"}, "truncation"),
])
def test_bad_sources_and_options_name_the_problem(qa_files, problem, message):
    with pytest.raises(ValueError, match=message):
        harness.build_task("qa", **{"data_files": qa_files, **problem})


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
