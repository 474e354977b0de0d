"""Real data through `datasets` for pretrained models: BABILong's released format (parquet, one split per bAbI
task) scored with its compare_answers, and HotpotQA's format (RULER's qa_2) prompted in RULER's QA template."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pd = pytest.importorskip("pandas")

import harness  # noqa: E402
from harness.pretrained import PretrainedLM  # noqa: E402
from harness.pretrained.evaluate import PretrainedRunConfig, run_pretrained  # noqa: E402
from harness.pretrained.prompts import render, score  # noqa: E402
from harness.pretrained.sizing import sized_prompts  # noqa: E402
from harness.pretrained.tiny import save_tiny_model, tiny_model, tiny_tokenizer  # noqa: E402
from harness.store.schema import record_problem  # noqa: E402

BACKGROUND = "The rabbit ran past the hedge and was gone before anyone saw it."
ROWS = {  # BABILong's released rows: facts inside background text, the question and a one-word target
    "qa1": [{"input": f"{BACKGROUND} Mary went to the kitchen. {BACKGROUND} John moved to the garden {i}. "
                      f"{BACKGROUND} Mary travelled to the office.", "question": "Where is Mary?", "target": "office"}
            for i in range(6)],
    "qa2": [{"input": f"{BACKGROUND} Sandra got the milk there. {BACKGROUND} Sandra went to the hallway. {BACKGROUND}"
                      f" Daniel moved to the bedroom {i}.", "question": "Where is the milk?", "target": "hallway"}
            for i in range(6)],
}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """One parquet file per split, as the hub's configuration of one length holds them."""
    directory = tmp_path_factory.mktemp("babilong_4k")
    files = {}
    for split, rows in ROWS.items():
        files[split] = str(directory / f"{split}.parquet")
        pd.DataFrame(rows).to_parquet(files[split])
    return files


def test_pretrained_babilong_data_reads_the_released_format_and_scores_as_babilong(released):
    task = harness.build_task("babilong_data", source="parquet", data_files=released, train_split="qa2",
                              test_split="qa2")
    examples = task.test_examples(0, {"context_len": 160}, 3)
    for example in examples:
        prompt = render(task, example)
        assert prompt.template == "babilong/default" and prompt.question == "Question: Where is the milk?"
        assert prompt.context.startswith("I give you context with the facts about locations and actions")  # qa2's
        assert any(row["input"] in prompt.context for row in ROWS["qa2"])  # the released input, whole
        assert prompt.references == ["hallway"]
        assert score(task, example, prompt, "The milk is in the hallway.") == {"accuracy": 1.0}
        assert score(task, example, prompt, "The milk is in the hallway or the bedroom.") == {"accuracy": 0.0}
        assert task.score(example, task.oracle(example)) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="only 0 example"):  # a released input is never cut: too long, left out
        task.test_examples(0, {"context_len": 40}, 1)
    with pytest.raises(ValueError, match="test_split='qa9' names no bAbI task"):
        harness.build_task("babilong_data", source="parquet", data_files=released, test_split="qa9")


def test_pretrained_run_on_babilong_data_holds_each_released_input_whole(released, tmp_path):
    model_dir = save_tiny_model(tmp_path / "tiny")
    config = PretrainedRunConfig(model=str(model_dir), task="babilong_data", context_lens=[896],
                                 task_options={"source": "parquet", "data_files": released, "train_split": "qa1"},
                                 examples_per_cell=2,
                                 segment_len=128, max_new_tokens=3)
    record, outcomes = run_pretrained(config)
    assert record_problem(record) is None and record["status"] == "ok"
    [cell] = record["cells"]
    assert cell["metric"] == "accuracy" and cell["n"] == 2 and cell["template"] == "babilong/default"
    assert cell["prompt_tokens_max"] <= 896
    assert {row["question"] for row in outcomes} == {"Where is Mary?"}


def test_pretrained_hotpotqa_format_prompts_every_paragraph_in_rulers_template(tmp_path):
    rows = [{"id": f"h{i}", "question": f"Which river flows through the capital of country {i}?",
             "answer": f"River {i}", "type": "bridge", "level": "easy",
             "context": {"title": [f"Country {i}", f"Capital {i}"],
                         "sentences": [[f"Country {i} has the capital Town {i}.", " It is small."],
                                       [f"Town {i} lies on River {i}."]]}} for i in range(10)]
    files = {}
    for split, part in (("train", rows[:6]), ("validation", rows[6:])):
        files[split] = str(tmp_path / f"{split}.jsonl")
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part))
    task = harness.build_task("qa", source="json", data_files=files, test_split="validation", answer_column="answer",
                              primary_metric="string_match_part", tokenizer="byte")
    tokenizer = tiny_tokenizer()
    lm = PretrainedLM(tiny_model("llama", len(tokenizer)), tokenizer)
    for item in sized_prompts(task, {"context_len": 400}, 3, 0, lm.encode):
        i = int(item.text.references[0].split()[-1])
        assert len(item.prompt) <= 400 and item.text.template == "ruler/qa"
        assert f"Country {i}\nCountry {i} has the capital Town {i}. It is small." in item.text.context  # RULER's join
        assert f"Capital {i}\nTown {i} lies on River {i}." in item.text.context
        assert score(task, item.example, item.text, f" River {i}")["string_match_part"] == 1.0
