"""bAbI stories, tasks qa1-qa5 (Weston et al. 2015): the public files, a generator, and a reader that answers.

A story is what BABILong (Kuratov et al. 2024) takes from bAbI for one question: every statement
of a bAbI story before that question (earlier questions dropped), the question, and its one-word
answer. Text is lower case with "." and "?" as words of their own. Worked example (qa2)::

    facts:    mary got the milk there .  john moved to the bedroom .  mary travelled to the hallway .
    question: where is the milk ?
    answer:   hallway

Three parts, used by tasks/babi_qa.py:

- ``read_babi_file``: a file of the public layout (``qa2_two-supporting-facts_test.txt``: numbered
  lines, numbering restarting at 1 for each story, questions carrying a tab, the answer, a tab and
  the ids of the supporting facts), one story per question, as BABILong's ``get_dataset_df``.
- ``generate_story``: the public generator's process (facebookarchive/bAbI-tasks,
  ``lua/babi/tasks/{WhereIsActor,WhereIsObject,WhereWasObject,IsDir,WhoWhatGave}.lua``) with the
  released data's words: its people, places and objects, and its verbs (``VERBS``, which the Lua
  templates lack in part). Each story ends at its k-th question, k uniform in 1-5, as every
  question of a five-question bAbI story is one BABILong sample. qa1: two moves per question (so 2,
  4, 6, 8 or 10 facts, mean 6); qa2/qa3: moves, gets and drops, a question after more than two
  statements with probability 1/2 once one can be answered; qa4: a chain of three places along one
  axis told as two facts in either wording and order; qa5: a gift followed by 0-5 statements that
  neither move the object nor repeat the giver and receiver, then one of five questions in the
  shares of the released test set (``QUESTION_SHARES``); its people and objects start in one place
  (the released stories open with gets and gifts, as "fred picked up the football there . fred gave
  the football to jeff ."), elsewhere each starts in a random place. Every action is possible in the world
  (one gets an object where it lies, gives what one holds to someone in the same place).
- ``Reader``: replays the statements it is told and answers any question of the ten forms; the
  oracle of babi_qa, independent of the generator's world (which knows where everyone is).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PEOPLE = {1: ("mary", "john", "sandra", "daniel"), 2: ("mary", "john", "sandra", "daniel"),
          3: ("mary", "john", "sandra", "daniel"), 5: ("fred", "bill", "jeff", "mary")}
PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("apple", "football", "milk")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
QA_KINDS = (1, 2, 3, 4, 5)
#: the answers a question of each task can have: BABILong's TASK_LABELS (babilong/metrics.py)
LABELS = {1: PLACES, 2: PLACES, 3: PLACES, 4: PLACES, 5: ("bill", "fred", "jeff", "mary", *OBJECTS)}
VERBS = {
    "move": ("moved to", "went to", "journeyed to", "travelled to", "went back to"),
    "get": ("got", "took", "grabbed", "picked up"),
    "drop": ("dropped", "discarded", "put down", "left"),
    "give": ("gave", "handed", "passed"),
}
#: statement kinds drawn (uniformly, as the Lua generator) by the tasks with a simulated world
ACTIONS = {1: ("move",), 2: ("get", "drop", "move"), 3: ("get", "drop", "move"), 5: ("get", "drop", "give", "move")}
STATEMENTS = {
    "move": "{p} {verb} the {l} .",
    "get": "{p} {verb} the {o} there .",
    "drop": "{p} {verb} the {o} .",
    "give": "{p} {verb} the {o} to {q} .",
    "relation": "the {l} is {d} of the {m} .",
}
QUESTIONS = {
    "where_person": "where is {p} ?",
    "where_object": "where is the {o} ?",
    "before": "where was the {o} before the {l} ?",
    "direction_of": "what is {d} of the {m} ?",  # the l with "the l is d of the m"
    "of_direction": "what is the {l} {d} of ?",  # the m with "the l is d of the m"
    "what_gave": "what did {p} give to {q} ?",
    "who_gave_to": "who gave the {o} to {q} ?",
    "who_gave": "who gave the {o} ?",
    "who_received": "who received the {o} ?",
    "who_did": "who did {p} give the {o} to ?",
}
#: qa5's question forms in the released test set (BABILong's 1000 qa5 questions: 329, 178, 171, 168, 153)
QUESTION_SHARES = {"what_gave": 2 / 6, "who_gave": 1 / 6, "who_did": 1 / 6, "who_gave_to": 1 / 6, "who_received": 1 / 6}
_SLOTS = {"p": PEOPLE[1] + PEOPLE[5][:3], "q": PEOPLE[1] + PEOPLE[5][:3], "l": PLACES, "m": PLACES,
          "o": OBJECTS, "d": tuple(OPPOSITE)}


def _pattern(kind: str, template: str) -> str:
    """A regular expression of a template whose groups are named ``<kind>_<slot>``."""
    pattern = re.escape(template).replace(r"\ ", " ").replace(r"\{", "{").replace(r"\}", "}")
    pattern = pattern.replace("{verb}", "(?:" + "|".join(VERBS.get(kind, ())) + ")")
    if kind == "get":
        pattern = pattern.replace(" there", "(?: there)?")  # the released data sometimes omits it
    if kind == "drop":
        pattern = pattern.replace(" \\.", "(?: there)? \\.")
    for slot, words in _SLOTS.items():
        pattern = pattern.replace("{" + slot + "}", f"(?P<{kind}_{slot}>" + "|".join(words) + ")")
    return f"(?P<{kind}>{pattern})"


_SENTENCE = re.compile(r"(?<!\S)(?:" + "|".join(
    _pattern(kind, template) for kind, template in {**STATEMENTS, **QUESTIONS}.items()) + r")(?!\S)")


def normalize(text: str) -> str:
    """bAbI's text as memarena's words: lower case, "." "?" "," as words, single spaces."""
    return " ".join(re.sub(r"([.?!,])", r" \1 ", text.lower()).split())


@dataclass
class Story:
    facts: list[str]
    question: str
    answer: str


def sentences(text: str) -> list[tuple[str, dict[str, str]]]:
    """Every bAbI statement and question in ``text`` (normalized words), in order: (kind, slots)."""
    found = []
    for match in _SENTENCE.finditer(text):
        kind = match.lastgroup
        prefix = kind + "_"
        found.append((kind, {name[len(prefix):]: value for name, value in match.groupdict().items()
                             if value is not None and name.startswith(prefix)}))
    return found


def is_question(kind: str) -> bool:
    return kind in QUESTIONS


class Reader:
    """What the statements told so far say: where people are, who holds what, where objects have been."""

    def __init__(self):
        self.place: dict[str, str] = {}  # person -> last place the story put them in
        self.holder: dict[str, str] = {}  # object -> person holding it
        self.lies: dict[str, str | None] = {}  # object -> where it was put down (None: nobody knows)
        self.history: dict[str, list[str]] = {}  # object -> the places it was known to be in, in order
        self.gifts: list[tuple[str, str, str]] = []  # (giver, object, receiver)
        self.relations: list[tuple[str, str, str]] = []  # (l, d, m): the l is d of the m

    def object_place(self, thing: str) -> str | None:
        return self.place.get(self.holder[thing]) if thing in self.holder else self.lies.get(thing)

    def _note(self, thing: str) -> None:
        place, history = self.object_place(thing), self.history.setdefault(thing, [])
        if place is not None and (not history or history[-1] != place):
            history.append(place)

    def tell(self, kind: str, s: dict[str, str]) -> None:
        if kind == "move":
            self.place[s["p"]] = s["l"]
            for thing in [thing for thing, person in self.holder.items() if person == s["p"]]:
                self._note(thing)
        elif kind in ("get", "give"):
            self.holder[s["o"]] = s["q"] if kind == "give" else s["p"]
            self.lies.pop(s["o"], None)
            self._note(s["o"])
            if kind == "give":
                self.gifts.append((s["p"], s["o"], s["q"]))
        elif kind == "drop":
            self.holder.pop(s["o"], None)
            self.lies[s["o"]] = self.place.get(s["p"])
            self._note(s["o"])
        elif kind == "relation":
            self.relations.append((s["l"], s["d"], s["m"]))
        else:
            raise ValueError(f"not a statement: {kind}")

    def answer(self, kind: str, s: dict[str, str]) -> str | None:
        """The answer to a question of ``kind`` with slots ``s`` (None: the statements do not tell)."""
        if kind == "where_person":
            return self.place.get(s["p"])
        if kind == "where_object":
            return self.object_place(s["o"])
        if kind == "before":
            history = self.history.get(s["o"], [])
            return next((history[i - 1] for i in range(len(history) - 1, 0, -1) if history[i] == s["l"]), None)
        if kind in ("direction_of", "of_direction"):  # each fact read in both directions
            pairs = [*((l, d, m) for l, d, m in self.relations), *((m, OPPOSITE[d], l) for l, d, m in self.relations)]
            if kind == "direction_of":
                return next((l for l, d, m in reversed(pairs) if d == s["d"] and m == s["m"]), None)
            return next((m for l, d, m in reversed(pairs) if d == s["d"] and l == s["l"]), None)
        wanted = {"what_gave": (s.get("p"), None, s.get("q")), "who_gave_to": (None, s.get("o"), s.get("q")),
                  "who_gave": (None, s.get("o"), None), "who_received": (None, s.get("o"), None),
                  "who_did": (s.get("p"), s.get("o"), None)}[kind]
        gift = next((g for g in reversed(self.gifts) if all(w in (None, v) for w, v in zip(wanted, g))), None)
        if gift is None:
            return None
        return {"what_gave": gift[1], "who_gave_to": gift[0], "who_gave": gift[0]}.get(kind, gift[2])


def last_question(text: str) -> str:
    """The last bAbI question in ``text`` (normalized words); ValueError if there is none."""
    questions = [QUESTIONS[kind].format(**slots) for kind, slots in sentences(text) if is_question(kind)]
    if not questions:
        raise ValueError(f"no bAbI question in {text[-80:]!r}")
    return questions[-1]


def answer_story(text: str) -> str:
    """The answer to the last question in ``text`` from the statements before it; ValueError if none."""
    reader, question = Reader(), None
    for kind, slots in sentences(text):
        if is_question(kind):
            question = (kind, slots)
        else:
            reader.tell(kind, slots)
    if question is None:
        raise ValueError(f"no bAbI question in {text[-80:]!r}")
    answer = reader.answer(*question)
    if answer is None:
        raise ValueError(f"the statements do not answer {question}")
    return answer


def read_babi_file(path: Path) -> list[Story]:
    """One story per question of a bAbI file of the public layout (ValueError naming a malformed line)."""
    stories, facts = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        index, _, text = line.strip().partition(" ")
        if not index.isdigit():
            raise ValueError(f"{path}:{number}: a bAbI line starts with its number, got {line!r}")
        if index == "1":
            facts = []
        if "\t" in text:
            question, answer = text.split("\t")[:2]
            if not answer.strip() or "," in answer:
                raise ValueError(f"{path}:{number}: babi_qa answers are one word, got {answer!r}")
            stories.append(Story(list(facts), normalize(question), normalize(answer)))
        else:
            facts.append(normalize(text))
    return stories


class World:
    """The true state of a generated story: where everyone and everything is (hidden where untold)."""

    def __init__(self, rng: np.random.Generator, people: tuple[str, ...], together: bool = False):
        self.people = people
        start = PLACES[rng.integers(len(PLACES))]
        self.place = {person: start if together else PLACES[rng.integers(len(PLACES))] for person in people}
        self.lies = {thing: start if together else PLACES[rng.integers(len(PLACES))] for thing in OBJECTS}
        self.holder: dict[str, str] = {}
        self.history = {thing: [place] for thing, place in self.lies.items()}

    def options(self, kind: str) -> list[dict[str, str]]:
        """Every possible statement of ``kind`` now."""
        if kind == "move":
            return [{"p": p, "l": l} for p in self.people for l in PLACES if l != self.place[p]]
        if kind == "get":
            return [{"p": p, "o": o} for p in self.people for o in OBJECTS
                    if o not in self.holder and self.lies[o] == self.place[p]]
        if kind == "drop":
            return [{"p": p, "o": o} for o, p in self.holder.items()]
        return [{"p": p, "o": o, "q": q} for o, p in self.holder.items() for q in self.people
                if q != p and self.place[q] == self.place[p]]

    def object_place(self, thing: str) -> str:
        return self.place[self.holder[thing]] if thing in self.holder else self.lies[thing]

    def perform(self, kind: str, s: dict[str, str]) -> None:
        if kind == "move":
            self.place[s["p"]] = s["l"]
        elif kind == "get":
            self.holder[s["o"]] = s["p"]
        elif kind == "give":
            self.holder[s["o"]] = s["q"]
        else:
            self.lies[s["o"]] = self.place[self.holder.pop(s["o"])]
        for thing in OBJECTS:
            if self.history[thing][-1] != self.object_place(thing):
                self.history[thing].append(self.object_place(thing))

    def step(self, rng: np.random.Generator, kinds: tuple[str, ...],
             allowed: Callable[[str, dict], bool] = lambda kind, s: True) -> tuple[str, dict]:
        """Draw a kind uniformly, then one of its possible (and ``allowed``) statements uniformly; perform it."""
        while True:
            kind = kinds[rng.integers(len(kinds))]
            options = [s for s in self.options(kind) if allowed(kind, s)]
            if options:
                slots = options[rng.integers(len(options))]
                self.perform(kind, slots)
                return kind, slots


def render(rng: np.random.Generator, kind: str, slots: dict[str, str]) -> str:
    verbs = VERBS.get(kind, ("",))
    return STATEMENTS[kind].format(verb=verbs[rng.integers(len(verbs))], **slots)


def generate_story(rng: np.random.Generator, qa: int, max_words: int | None = None) -> Story | None:
    """One story of bAbI task ``qa`` as BABILong samples it (see the module docstring); None as soon
    as its facts exceed ``max_words`` words (a story that would not fit, left unfinished)."""
    if qa == 4:
        return _two_arg_relations(rng)
    last = int(rng.integers(1, 6))  # which of the story's five questions ends it
    world, reader, facts, asked, since = World(rng, PEOPLE[qa], together=qa == 5), Reader(), [], 0, 0
    words = 0
    while max_words is None or words <= max_words:
        kind, slots = world.step(rng, ACTIONS[qa])
        facts.append(render(rng, kind, slots))
        words += len(facts[-1].split())
        reader.tell(kind, slots)
        since += 1
        question = None
        if qa == 1 and since == 2:
            person = sorted(reader.place)[rng.integers(len(reader.place))]
            question = ("where_person", {"p": person}, world.place[person])
        elif qa in (2, 3) and since > 2 and rng.integers(2) == 0:
            question = _object_question(rng, qa, world, reader)
        elif qa == 5 and since > 1 and kind == "give":
            question = _gift_question(rng, world, reader, facts, slots)
        if question is not None:
            asked, since = asked + 1, 0
            if asked == last:
                kind, slots, answer = question
                return Story(facts, QUESTIONS[kind].format(**slots), answer)
    return None


def _object_question(rng, qa: int, world: World, reader: Reader):
    if qa == 2:
        known = [thing for thing in OBJECTS if reader.object_place(thing) is not None]
        if not known:
            return None
        thing = known[rng.integers(len(known))]
        return "where_object", {"o": thing}, world.object_place(thing)
    moved = [thing for thing in OBJECTS if len(reader.history.get(thing, [])) > 1]
    if not moved:
        return None
    thing = moved[rng.integers(len(moved))]
    now, history = reader.history[thing][-1], world.history[thing]
    before = next(history[i - 1] for i in range(len(history) - 1, 0, -1) if history[i] == now)
    return "before", {"o": thing, "l": now}, before


def _gift_question(rng, world: World, reader: Reader, facts: list[str], gift: dict[str, str]):
    """After the gift, 0-5 statements about other objects that are no gift from the same giver to
    the same receiver (WhoWhatGave.lua), then a question about the gift."""
    def allowed(kind, s):
        return s["o" if "o" in s else "p"] != gift["o"] and not (kind == "give" and s["p"] == gift["p"]
                                                                  and s["q"] == gift["q"])
    for _ in range(int(rng.integers(6))):
        kind, slots = world.step(rng, ACTIONS[5], allowed)
        facts.append(render(rng, kind, slots))
        reader.tell(kind, slots)
    forms = list(QUESTION_SHARES)
    kind = forms[rng.choice(len(forms), p=list(QUESTION_SHARES.values()))]
    answer = {"what_gave": gift["o"], "who_gave_to": gift["p"], "who_gave": gift["p"]}.get(kind, gift["q"])
    return kind, gift, answer


def _two_arg_relations(rng: np.random.Generator) -> Story:
    """IsDir.lua: places a, b, c in a row along one axis ("a is d of b", "b is d of c"), each fact in
    either wording, in either order; the question is about b and one of the others, in one of four forms."""
    a, b, c = (PLACES[i] for i in rng.choice(len(PLACES), 3, replace=False))
    d = ("north", "east")[rng.integers(2)]

    def wording(l, m):
        return f"the {l} is {d} of the {m} ." if rng.integers(2) else f"the {m} is {OPPOSITE[d]} of the {l} ."
    facts = [wording(a, b), wording(b, c)]
    if rng.integers(2):
        facts.reverse()
    l, rel, m = (b, d, c) if rng.integers(2) else (b, OPPOSITE[d], a)  # the asked fact: the l is rel of the m
    question, answer = [(f"what is {rel} of the {m} ?", l), (f"what is {OPPOSITE[rel]} of the {l} ?", m),
                        (f"what is the {l} {rel} of ?", m), (f"what is the {m} {OPPOSITE[rel]} of ?", l)][rng.integers(4)]
    return Story(facts, question, answer)
