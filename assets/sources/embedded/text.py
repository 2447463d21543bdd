"""Seeded pseudo-English: long documents with retrievable facts, captions and QA turns.

Long-context sources need documents of 10K-100K tokens whose answers really sit somewhere in
the text (a fact planted at a random depth), so later stages have honest long samples.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

_SUBJECTS = (
    "the committee", "the river authority", "a small research team", "the harbour office",
    "the orchestra", "the village council", "the survey crew", "the museum curator",
    "the northern railway", "the weather station", "the translation bureau", "the seed bank",
    "the glass factory", "the lighthouse keeper", "the archive", "the mountain school",
)
_VERBS = (
    "recorded", "measured", "described", "questioned", "rebuilt", "catalogued", "observed",
    "translated", "repaired", "estimated", "compared", "mapped", "reviewed", "announced",
)
_OBJECTS = (
    "the spring floods", "an old ledger", "the eastern bridge", "a set of copper coins",
    "the winter harvest", "forty unsigned letters", "the tidal charts", "a broken telescope",
    "the annual budget", "the migration of cranes", "a collection of maps", "the new timetable",
    "the ceramic tiles", "the power of the windmill", "a rare manuscript", "the salt deposits",
)
_CLAUSES = (
    "before the first snow arrived", "after a long debate", "with unusual care",
    "despite the poor light", "during the night shift", "for the third year in a row",
    "while the roads were closed", "in front of a quiet audience", "without any help",
    "as the records had predicted", "under a cloudy sky", "to everyone's surprise",
)
_NAMES = (
    "Amara", "Bertil", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kalani", "Lucia", "Mateo", "Noor", "Oskar", "Priya", "Quentin", "Rosa", "Soren", "Talia",
)
_THINGS = ("lantern", "compass", "violin", "kettle", "notebook", "bicycle", "telescope", "umbrella")
_COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")


def sentence(rng: random.Random) -> str:
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_CLAUSES)}"
    if rng.random() < 0.3:
        s += f", and {rng.choice(_NAMES)} counted {rng.randint(2, 9999)} of them"
    return s[0].upper() + s[1:] + "."


def paragraph(rng: random.Random, n_sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(n_sentences))


def document(rng: random.Random, n_words: int) -> str:
    """About ``n_words`` words of paragraphs (each ~5-9 sentences of ~12 words)."""
    paragraphs, words = [], 0
    while words < n_words:
        p = paragraph(rng, rng.randint(5, 9))
        paragraphs.append(p)
        words += len(p.split())
    return "\n\n".join(paragraphs)


def planted_fact(rng: random.Random) -> tuple[str, str, str]:
    """(fact sentence, question, answer) about a named person's object, colour and number."""
    name, thing, colour = rng.choice(_NAMES), rng.choice(_THINGS), rng.choice(_COLOURS)
    number = rng.randint(100, 9999)
    fact = f"{name} kept a {colour} {thing} in locker number {number}."
    question = f"In which locker did {name} keep the {colour} {thing}?"
    return fact, question, f"{name} kept the {colour} {thing} in locker number {number}."


def long_document_qa(rng: random.Random, n_words: int) -> tuple[str, str, str]:
    """A document with a fact planted at a random depth, and the question it answers."""
    doc = document(rng, n_words)
    fact, question, answer = planted_fact(rng)
    paragraphs = doc.split("\n\n")
    depth = rng.randrange(len(paragraphs))
    paragraphs.insert(depth, fact)
    return "\n\n".join(paragraphs), question, answer


def corpus(seed: int = 0, n_documents: int = 400) -> Iterator[str]:
    """Training text for the embedded tokenizer: the same generator as the samples."""
    rng = random.Random(seed)
    for _ in range(n_documents):
        yield document(rng, rng.randint(80, 400))
        _, q, a = planted_fact(rng)
        yield f"{q}\n{a}"
