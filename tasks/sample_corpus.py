"""The public-domain text that tasks read as natural background when no ``corpus_path`` is given.

Chapters I-IV of Alice's Adventures in Wonderland (Project Gutenberg #11; tasks/data/haystack/README.md).
RULER reads Paul Graham's essays and BABILong PG-19 books, which cannot be shipped: point
``task.corpus_path`` at them to match the papers' text.
"""

from pathlib import Path

SAMPLE_CORPUS = Path(__file__).resolve().parent / "data" / "haystack" / "alice_in_wonderland.txt"
