"""The public-domain text that tasks read as natural background when no ``corpus_path`` is given.

Chapters I-IV of Alice's Adventures in Wonderland (Project Gutenberg #11; tasks/data/haystack/README.md).
RULER reads Paul Graham's essays and BABILong PG-19 books, which cannot be shipped: point
``task.corpus_path`` at them to match the papers' text.
"""

from pathlib import Path

SAMPLE_CORPUS = Path(__file__).resolve().parent / "data" / "haystack" / "alice_in_wonderland.txt"
#: how records and warnings name the sample (its path in any checkout or install)
SAMPLE_NAME = ("the shipped sample tasks/data/haystack/alice_in_wonderland.txt (chapters I-IV of Alice's Adventures "
               "in Wonderland)")


def corpus_file(corpus_path: str | None) -> tuple[str, str]:
    """The file a task reads for its ``corpus_path`` option, and its name in records and warnings:
    the path given, or (None) the shipped sample."""
    return (corpus_path, corpus_path) if corpus_path else (str(SAMPLE_CORPUS), SAMPLE_NAME)
