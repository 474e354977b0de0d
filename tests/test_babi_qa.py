"""bAbI as bAbI and BABILong's construction (tasks/babi_stories.py, tasks/babi_qa.py).

Statistics of generated stories against the released bAbI data (qa1: 2-10 facts, mean 6, its five
move verbs; qa4: two facts about a row of three places; qa5: the question-form shares of the
released test set), the oracle on every question form and on files of bAbI's public layout, and
the facts spread through the background at the length asked.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import harness
from conftest import compose_config
from harness.engine.plan import prepare
from tasks.babi_qa import MIN_CONTEXT_LEN, compare_answers
from tasks.babi_stories import (LABELS, OPPOSITE, QUESTION_SHARES, VERBS, Story, answer_story, generate_story,
                                read_babi_file, sentences)

FIXTURE = Path(__file__).parent / "fixtures" / "babi"
FILES = {1: "qa1_single-supporting-fact", 2: "qa2_two-supporting-facts", 3: "qa3_three-supporting-facts",
         4: "qa4_two-arg-relations", 5: "qa5_three-arg-relations"}


def stories(qa: int, count: int = 400, seed: int = 0) -> list[Story]:
    rng = np.random.default_rng(seed)
    return [generate_story(rng, qa) for _ in range(count)]


def test_hand_checked_example():
    task = harness.build_task("babi_qa")
    [example] = task.test_examples(1, {"context_len": 48, "qa": 1}, 1)
    assert task.vocab.decode(example.tokens) == (
        "sandra went to the garden . daniel journeyed to the bathroom . she was close behind it when she turned "
        "the corner , but the rabbit was no longer to daniel journeyed to the bedroom . john went back to the "
        "bathroom . where is sandra ? garden")
    assert task.vocab.decode(example.labels[example.answer_positions]) == "garden"
    assert task.chance(context_len=48, qa=1) == {"accuracy": pytest.approx(1 / 6)}
    assert task.chance(context_len=48, qa=5) == {"accuracy": pytest.approx(5 / 18)}
    with pytest.raises(ValueError, match="qa must be"):
        task.validate_cell({"context_len": 100, "qa": 6})


def test_qa1_stories_have_2_to_10_facts_mean_6_and_the_released_verbs():
    drawn = stories(1, 1000)
    counts = Counter(len(story.facts) for story in drawn)
    assert set(counts) == {2, 4, 6, 8, 10} and min(counts.values()) > 150  # released: 2000 of 10000 each
    assert np.mean([len(story.facts) for story in drawn]) == pytest.approx(6.0, abs=0.2)
    verbs = Counter(next(v for v in VERBS["move"] if f" {v} the " in fact) for s in drawn for fact in s.facts)
    assert set(verbs) == set(VERBS["move"]) and min(verbs.values()) / sum(verbs.values()) > 0.17  # released: 0.20 each
    assert all(kind == "move" for s in drawn for kind, _ in sentences(" ".join(s.facts)))


def test_qa4_relations_are_a_row_of_three_places_told_in_both_wordings():
    drawn = stories(4)
    assert all(len(story.facts) == 2 for story in drawn)
    chained = 0
    for story in drawn:
        (_, a), (_, b) = sentences(" ".join(story.facts))
        assert len({a["l"], a["m"], b["l"], b["m"]}) == 3  # three places, one shared
        chained += a["d"] == b["d"] and a["m"] in (b["l"], b["m"]) and a["l"] not in (b["l"], b["m"])
    assert 0.15 < chained / len(drawn) < 0.6  # "the garden is west of the bedroom . the bedroom is west of the kitchen ."
    forms = Counter(story.question.split()[2] in OPPOSITE for story in drawn)  # what is D of ... / what is the L D of
    assert min(forms.values()) > 150


def test_qa5_question_forms_follow_the_released_shares_and_gifts_are_possible():
    drawn = stories(5, 1200)
    forms = Counter(sentences(story.question)[0][0] for story in drawn)
    for form, share in QUESTION_SHARES.items():
        assert forms[form] / len(drawn) == pytest.approx(share, abs=0.04), form
    for story in drawn[:200]:  # every gift is of an object the giver holds
        holder = {}
        for kind, s in sentences(" ".join(story.facts)):
            if kind == "give":
                assert holder.get(s["o"]) == s["p"]
            if kind in ("get", "give"):
                holder[s["o"]] = s.get("q", s["p"])
            elif kind == "drop":
                assert holder.pop(s["o"]) == s["p"]


@pytest.mark.parametrize("qa", [1, 2, 3, 4, 5])
def test_the_reader_answers_every_generated_story_as_the_world_does(qa):
    for story in stories(qa, 300, seed=qa):
        assert answer_story(" ".join([*story.facts, story.question])) == story.answer


@pytest.mark.parametrize("text, answer", [
    ("the hallway is east of the bathroom . the bedroom is west of the bathroom . what is the bathroom east of ?",
     "bedroom"),
    ("the garden is west of the bedroom . the bedroom is west of the kitchen . what is west of the bedroom ?",
     "garden"),
    ("the garden is west of the bedroom . the bedroom is west of the kitchen . what is the kitchen east of ?",
     "bedroom"),
    ("jeff took the apple there . jeff passed the apple to fred . fred handed the apple to bill . "
     "who gave the apple ?", "fred"),
    ("mary picked up the football there . mary gave the football to fred . who received the football ?", "fred"),
    ("fred picked up the milk there . fred handed the milk to jeff . jeff put down the milk . "
     "who did fred give the milk to ?", "jeff"),
    ("mary got the football there . mary went back to the garden . mary dropped the football . "
     "sandra took the football there . sandra journeyed to the office . where was the football before the office ?",
     "garden"),
    ("john moved to the office . john grabbed the milk there . john travelled to the kitchen . "
     "john discarded the milk . daniel went to the hallway . where is the milk ?", "kitchen"),
])
def test_the_reader_answers_the_released_forms(text, answer):
    """Chained qa4 facts and "who gave the apple ?" crashed the former oracle (StopIteration, IndexError)."""
    assert answer_story(text) == answer


def write_babi_file(path: Path, drawn: list[Story]) -> None:
    """Stories in bAbI's public layout: numbered lines, "Question? \\tanswer\\tsupport"."""
    lines = []
    for story in drawn:
        for number, fact in enumerate(story.facts, 1):
            lines.append(f"{number} {fact[0].upper()}{fact[1:-2]}.")
        question = story.question[0].upper() + story.question[1:-2]
        lines.append(f"{len(story.facts) + 1} {question}? \t{story.answer}\t1")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_files_of_the_public_layout_are_read_one_story_per_question():
    [story, *_] = read_babi_file(FIXTURE / "qa1_single-supporting-fact_test.txt")
    assert story == Story(["mary moved to the bathroom .", "john went to the hallway ."], "where is mary ?", "bathroom")
    read = read_babi_file(FIXTURE / "qa5_three-arg-relations_test.txt")
    assert [s.question for s in read[:2]] == ["what did fred give to jeff ?", "who gave the football to jeff ?"]
    assert len(read[1].facts) == 4  # every statement before the question, the earlier question dropped


def test_the_oracle_solves_every_story_of_the_fixture_files_in_a_haystack():
    task = harness.build_task("babi_qa", babi_dir=str(FIXTURE))
    for qa in range(1, 6):
        for story in task.stories["test"][qa]:
            example = task._layout(np.random.default_rng(qa), story, 160, qa)
            assert len(example.tokens) == 160
            assert task.score(example, task.oracle(example)) == {"accuracy": 1.0}, story


def test_project_written_files_train_and_test_and_too_few_stories_fail_before_work(tmp_path):
    for qa, name in FILES.items():
        for split, seed in (("train", 1), ("test", 2)):
            write_babi_file(tmp_path / f"{name}_{split}.txt", stories(qa, 12, seed))
    task = harness.build_task("babi_qa", babi_dir=str(tmp_path))
    cells = [{"context_len": 512, "qa": qa} for qa in range(1, 6)]
    task.check_data(cells, 8, 0, (256,), 4, 0)
    for example in task.test_examples(0, cells[4], 8):
        assert task.score(example, task.oracle(example)) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="examples_per_cell"):
        task.check_data(cells, 13, 0, (256,), 4, 0)
    (tmp_path / f"{FILES[2]}_test.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no question"):
        harness.build_task("babi_qa", babi_dir=str(tmp_path))
    (tmp_path / f"{FILES[2]}_test.txt").unlink()
    with pytest.raises(ValueError, match=r"qa2_\*_test.txt"):
        harness.build_task("babi_qa", babi_dir=str(tmp_path))


@pytest.mark.parametrize("options, message", [
    ({"babi_dir": "/nonexistent"}, "babi_dir"), ({"corpus_path": "/nonexistent.txt"}, "corpus_path"),
    ({"qa_kinds": [6]}, "qa_kinds"), ({"min_sentence_tokens": 0}, "min_sentence_tokens"),
])
def test_bad_options_fail_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        harness.build_task("babi_qa", **options)


def test_an_empty_corpus_fails_before_work(tmp_path):
    (tmp_path / "empty.txt").write_text("Too short. \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no sentence"):
        harness.build_task("babi_qa", corpus_path=str(tmp_path / "empty.txt"))


MOVE = re.compile(r"(?:mary|john|sandra|daniel) (?:" + "|".join(VERBS["move"]) + r") the \w+ \.")


@pytest.mark.parametrize("context_len", [256, 1024])
def test_facts_spread_between_consecutive_background_sentences_at_the_length_asked(context_len):
    task = harness.build_task("babi_qa")
    background = np.concatenate(task.background * 2).tobytes()  # twice: the background wraps around
    spans = []
    for example in task.test_examples(0, {"context_len": context_len, "qa": 1}, 30):
        assert len(example.tokens) == context_len
        text = task.vocab.decode(example.tokens[:-5])  # the question "where is P ?" and the answer cut off
        facts = list(MOVE.finditer(text))
        assert len(facts) == example.info["facts"]
        rest = MOVE.sub(" ", text)
        assert task.encode(rest).tobytes() in background  # background sentences in order, facts taken out
        first, last = text[: facts[0].start()].count(" "), text[: facts[-1].start()].count(" ")
        spans.append((last - first) / context_len)
    assert np.median(spans) > 0.3  # spread over the context (RULER-like bunching would give ~0.05)


def test_babilong_metric_counts_only_the_target_among_labels_outside_the_question():
    labels = LABELS[5]
    assert compare_answers("Fred", "fred", "who gave the milk to jeff ?", labels)
    assert compare_answers("Fred", "Fred. Jeff got it", "who gave the milk to jeff ?", labels)  # first sentence
    assert compare_answers("Fred", "fred gave it to jeff", "who gave the milk to jeff ?", labels)  # jeff is asked
    assert not compare_answers("Fred", "fred or bill", "who gave the milk to jeff ?", labels)
    assert not compare_answers("Fred", "milk", "who gave the milk to jeff ?", labels)


@pytest.mark.parametrize("qa", [1, 2, 3, 4, 5])
def test_presets_compose_and_name_the_published_setting(qa, tmp_path):
    plan = prepare(compose_config([f"task=babilong/qa{qa}", f"results_dir={tmp_path}"]))
    assert plan.task.config.preset == f"babilong/qa{qa}"
    assert plan.task.config.grid == {"qa": [qa]} and plan.task.config.qa_kinds == [qa]


def test_the_shortest_lengths_still_give_examples():
    task = harness.build_task("babi_qa")
    for qa, length in MIN_CONTEXT_LEN.items():
        [example] = task.test_examples(0, {"context_len": length, "qa": qa}, 1)
        assert task.score(example, task.oracle(example)) == {"accuracy": 1.0}
