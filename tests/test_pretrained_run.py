"""A tiny random model saved to a directory runs end to end: load, prompts, policy, record in the store's schema."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from harness.pretrained import PretrainedLM  # noqa: E402
from harness.pretrained.evaluate import PretrainedRunConfig, run_pretrained  # noqa: E402
from harness.pretrained.tiny import main as save_tiny  # noqa: E402
from harness.store.schema import record_problem  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny") / "qwen2"
    save_tiny(["--architecture", "qwen2", str(directory)])
    return directory


def test_pretrained_tiny_model_loads_from_its_directory(model_dir):
    lm = PretrainedLM.load(str(model_dir))
    assert lm.device.type == "cpu" and str(lm.model.dtype) == "torch.float32"
    assert type(lm.model).__name__ == "Qwen2ForCausalLM" and lm.model.config.hidden_size == 64
    with pytest.raises(ValueError, match="cannot load a causal LM from"):
        PretrainedLM.load(str(model_dir / "missing"))


@pytest.mark.parametrize("policy, options, positions", [
    ("full", {}, None),
    ("sliding_window", {"window": 32, "sinks": 4}, 35),
])
def test_pretrained_run_writes_a_record_of_the_stores_schema(model_dir, policy, options, positions):
    config = PretrainedRunConfig(model=str(model_dir), task="niah", context_lens=[224, 288], policy=policy,
                                 policy_options=options, examples_per_cell=2, segment_len=16, max_new_tokens=4)
    record, outcomes = run_pretrained(config)
    assert record_problem(record) is None
    assert record["family"] == "pretrained" and record["mechanism"] == f"pretrained/{policy}"
    assert [cell["knobs"]["context_len"] for cell in record["cells"]] == [224, 224, 288, 288]
    assert {cell["metric"] for cell in record["cells"]} == {"string_match_all", "exact_match"}
    per_position = 2 * 2 * 2 * 16 * 4  # layers x (keys, values) x key-value heads x head dimension x float32 bytes
    for cell in record["cells"]:
        assert cell["n"] == 2 and cell["template"] == "ruler/niah"
        assert cell["peak_memory_bytes"] > 0 and cell["prefill_tokens_per_s"] > 0
        if positions is None:  # everything read but the last generated token
            assert cell["state_bytes"] >= cell["prompt_tokens_mean"] * per_position
        else:
            assert cell["state_bytes"] == positions * per_position
    assert len(outcomes) == 2 * 2 * 2  # context_len counts the model's tokens: the prompt fills it
    assert all(row["context_len"] - 8 <= row["prompt_tokens"] <= row["context_len"] for row in outcomes)
    again, _ = run_pretrained(config, PretrainedLM.load(str(model_dir)))
    assert again["run_id"] == record["run_id"]
    assert [c["value"] for c in again["cells"]] == [c["value"] for c in record["cells"]]


@pytest.mark.parametrize("task, length, metrics", [
    ("qa", 384, {"f1", "exact_match", "string_match_part"}),  # SQuAD-format fixture read through `datasets`
    ("summarization", 256, {"rouge1", "rouge2", "rougeL"}),  # CNN/DailyMail-format fixture, ROUGE
])
def test_pretrained_run_reads_real_text_tasks_from_their_datasets(model_dir, task, length, metrics):
    config = PretrainedRunConfig(model=str(model_dir), task=task, context_lens=[length], examples_per_cell=2,
                                 segment_len=32, max_new_tokens=3)
    record, outcomes = run_pretrained(config)
    assert record_problem(record) is None and record["training"] is None
    assert {cell["metric"] for cell in record["cells"]} == metrics
    assert all(cell["n"] == 2 and 0.0 <= cell["value"] <= 1.0 for cell in record["cells"])
    assert {cell["template"] for cell in record["cells"]} == {"ruler/qa" if task == "qa" else "memarena/summarization"}
    assert len(outcomes) == 2 * len(metrics) and all(isinstance(row["generated"], str) for row in outcomes)
