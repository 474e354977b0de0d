"""Write the small sample datasets shipped for the dataset-backed tasks (qa, summarization, babilong_data).

They are made up by this script (no download, no licence question), in the formats of SQuAD
(``context``, ``question``, ``answers: {text, answer_start}``) and of CNN/DailyMail-style
summarization (``document``, ``summary``) and of BABILong's released qa1 split (``input``,
``question``, ``target``; facts only, as its "0k"; its ``train`` split stands in for the training
rows BABILong publishes apart), so that the real loading code runs offline and in
tests. They are a plumbing check and a demo, not a benchmark: point ``task.source`` and
``task.data_files`` at real data for real numbers. Regenerate with
``python tasks/data/make_samples.py`` (a test checks that the shipped files match).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Leo",
         "Maya", "Nils", "Olga", "Pavel", "Rosa", "Samir", "Tara", "Viktor"]
LAST = ["Keller", "Okafor", "Larsen", "Moreau", "Tanaka", "Silva", "Novak", "Haddad", "Berg", "Costa",
        "Weber", "Ito", "Lund", "Rossi", "Varga", "Young"]
CITIES = ["Lisbon", "Oslo", "Nairobi", "Kyoto", "Lima", "Porto", "Tallinn", "Dakar", "Quito", "Perth",
          "Bergen", "Cork", "Graz", "Turin", "Split", "Malmo"]
SUBJECTS = ["physics", "history", "music", "medicine", "law", "biology", "painting", "engineering"]
JOBS = ["teacher", "pilot", "doctor", "architect", "journalist", "chef", "judge", "farmer"]
TEAMS = ["Rovers", "United", "Rangers", "Athletic", "Wanderers", "City"]
GOODS = ["bicycles", "batteries", "furniture", "shoes", "glass", "medicines"]
PROJECTS = ["parks", "schools", "bridges", "libraries", "buses", "hospitals"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def biography(rng: np.random.Generator) -> tuple[str, list[tuple[str, str, str]]]:
    """A short biography with a distractor, and its questions as (question, answer, sentence with the answer)."""
    name = f"{pick(rng, FIRST)} {pick(rng, LAST)}"
    born, worked = rng.choice(CITIES, 2, replace=False)
    year, subject, job = str(int(rng.integers(1900, 2000))), pick(rng, SUBJECTS), pick(rng, JOBS)
    sentences = [f"{name} was born in {born} in {year}.", f"{name} studied {subject} at the university.",
                 f"Later {name} moved to {worked} and worked as a {job}."]
    sentences_about = list(sentences)
    other = name
    while other == name:  # a namesake would make the questions ambiguous
        other = f"{pick(rng, FIRST)} {pick(rng, LAST)}"
    sentences.insert(int(rng.integers(len(sentences) + 1)),
                     f"{other} was born in {pick(rng, CITIES)} and worked as a {pick(rng, JOBS)}.")
    sentences.append(f"In {int(rng.integers(1950, 2020))} the city of {pick(rng, CITIES)} opened a new museum.")
    questions = [(f"Where was {name} born?", born, sentences_about[0]),
                 (f"In which year was {name} born?", year, sentences_about[0]),
                 (f"What did {name} study?", subject, sentences_about[1]),
                 (f"Where did {name} work?", worked, sentences_about[2]),
                 (f"What was the job of {name}?", job, sentences_about[2])]
    return " ".join(sentences), questions


def qa_rows(rng: np.random.Generator, count: int) -> list[dict]:
    rows = []
    while len(rows) < count:
        context, questions = biography(rng)
        question, answer, sentence = questions[int(rng.integers(len(questions)))]
        start = context.index(sentence) + sentence.index(answer)
        rows.append({"id": f"q{len(rows)}", "context": context, "question": question,
                     "answers": {"text": [answer], "answer_start": [start]}})
    return rows


def news(rng: np.random.Generator) -> tuple[str, str]:
    city, person, day = pick(rng, CITIES), f"{pick(rng, FIRST)} {pick(rng, LAST)}", pick(rng, DAYS)
    kind = int(rng.integers(3))
    if kind == 0:
        project, amount = pick(rng, PROJECTS), int(rng.integers(2, 90))
        facts = [f"The council of {city} approved a budget of {amount} million for new {project} on {day}.",
                 f"Mayor {person} said the {project} had been promised for years.",
                 f"Work on the first {project} is expected to begin next spring."]
        summary = f"{city} approves {amount} million for new {project}."
    elif kind == 1:
        home, away = rng.choice(TEAMS, 2, replace=False)
        goals = sorted(rng.integers(0, 5, 2).tolist(), reverse=True)
        goals[0] += 1
        facts = [f"{city} {home} beat {away} {goals[0]} to {goals[1]} on {day}.",
                 f"Coach {person} praised the defence after the match.",
                 f"The win moves {home} to the top of the table."]
        summary = f"{city} {home} beat {away} {goals[0]} to {goals[1]}."
    else:
        goods, jobs = pick(rng, GOODS), 50 * int(rng.integers(1, 10))  # few numbers: a small bpe learns each
        facts = [f"A new factory making {goods} opened in {city} on {day}.",
                 f"The company expects to hire {jobs} workers this year, said its director {person}.",
                 "Local shops hope the factory will bring more customers."]
        summary = f"Factory making {goods} opens in {city} with {jobs} jobs."
    filler = [f"The weather in {pick(rng, CITIES)} stayed mild for most of the week.",
              f"Trains to {pick(rng, CITIES)} ran on time, the rail company said.",
              f"A festival of {pick(rng, SUBJECTS)} will be held in {pick(rng, CITIES)} next month."]
    body = facts[:1] + [facts[i] for i in rng.permutation(np.arange(1, len(facts)))]
    body += [filler[i] for i in rng.permutation(len(filler))]
    return " ".join(body), summary


def summarization_rows(rng: np.random.Generator, count: int) -> list[dict]:
    return [dict(zip(("document", "summary"), news(rng)), id=f"s{i}") for i in range(count)]


BABI_PEOPLE = ["Mary", "John", "Sandra", "Daniel"]
BABI_PLACES = ["bathroom", "bedroom", "garden", "hallway", "kitchen", "office"]
BABI_MOVES = ["moved to", "went to", "journeyed to", "travelled to", "went back to"]


def babilong_rows(rng: np.random.Generator, count: int) -> list[dict]:
    """Rows in the format of BABILong's released qa1 split (input, question, target), as its "0k" length: the
    facts of a bAbI qa1 story without background text."""
    rows = []
    for _ in range(count):
        facts, place = [], {}
        for _ in range(int(rng.integers(3, 7))):
            person, room = pick(rng, BABI_PEOPLE), pick(rng, BABI_PLACES)
            facts.append(f"{person} {pick(rng, BABI_MOVES)} the {room}.")
            place[person] = room
        person = pick(rng, sorted(place))
        rows.append({"input": " ".join(facts), "question": f"Where is {person}?", "target": place[person]})
    return rows


def write(directory: Path) -> list[Path]:
    written = []
    for split, seed, count in (("train", 3, 400), ("qa1", 4, 100)):
        path = directory / "babilong" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in babilong_rows(np.random.default_rng(seed), count)))
        written.append(path)
    for name, rows in (("qa", qa_rows), ("summarization", summarization_rows)):
        for split, seed, count in (("train", 1, 400), ("test", 2, 100)):
            path = directory / name / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(row) + "\n" for row in rows(np.random.default_rng([seed, len(name)]), count)))
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(path)
