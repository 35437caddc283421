"""The built-in demo corpus: committed files never drift from the generator; senses are there."""

from pathlib import Path

import pytest

import elmo_train
from elmo_train.demo.corpus import (
    DEMO_CONTEXTS_PER_SENSE,
    DEMO_WORDS,
    SENSES,
    Sense,
    corpus_path,
    corpus_text,
    demo_contexts,
    generate,
)


def phrases(sense: Sense) -> list[str]:
    return [
        *sense.agents,
        *sense.actions,
        *sense.adjectives,
        *sense.predicates,
        *sense.details,
        *sense.scenes,
    ]


def senses_in(line: str, word: str) -> set[str]:
    """The senses of `word` whose context vocabulary occurs in `line`."""
    padded = f" {line} "
    return {s.name for s in SENSES[word] if any(f" {p} " in padded for p in phrases(s))}


@pytest.fixture(scope="module")
def lines() -> dict[str, list[str]]:
    return {split: corpus_path(split).read_text(encoding="utf-8").splitlines() for split in SPLITS}


SPLITS = ("train", "valid")


@pytest.mark.parametrize("split", SPLITS)
def test_committed_file_is_what_the_generator_writes(split):
    """Regenerate with `python -m elmo_train.demo.corpus` if this fails after a deliberate change."""
    assert corpus_path(split).read_text(encoding="utf-8") == corpus_text(split)


def test_splits_are_different_draws(lines):
    assert lines["train"][:50] != lines["valid"][:50]
    assert generate("valid") == generate("valid")


@pytest.mark.parametrize(
    ("split", "low", "high"), [("train", 150_000, 250_000), ("valid", 10_000, 15_000)]
)
def test_sizes(lines, split, low, high):
    n_tokens = sum(len(line.split()) for line in lines[split])
    assert low <= n_tokens <= high


def test_text_is_tokenized_lowercase_one_sentence_per_line(lines):
    for line in lines["train"]:
        assert line == line.lower() == " ".join(line.split())
        assert line.endswith((" .", " ?"))
        assert line.count(" . ") == 0  # punctuation is split off and ends the sentence


@pytest.mark.parametrize("split", SPLITS)
def test_every_sense_of_every_word_occurs(lines, split):
    expected = {(word, sense) for word in SENSES for sense in DEMO_WORDS[word]}
    seen = set()
    for line in lines[split]:
        for word in set(line.split()) & set(SENSES):
            seen |= {(word, sense) for sense in senses_in(line, word)}
    assert seen == expected


def test_sentences_hold_one_ambiguous_word_of_one_sense(lines):
    """So a sentence's sense is known from its words and the first occurrence is the only one."""
    for line in lines["train"]:
        tokens = line.split()
        words = [t for t in tokens if t in SENSES]
        assert len(words) <= 1, line
        if words:
            assert len(senses_in(line, words[0])) == 1, line


def test_demo_words_have_at_least_six_words_of_two_senses():
    assert len(DEMO_WORDS) >= 6
    assert all(len(senses) == 2 and senses[0] != senses[1] for senses in DEMO_WORDS.values())


@pytest.mark.parametrize("word", list(DEMO_WORDS))
def test_demo_contexts_are_held_out_and_labelled(lines, word):
    contexts = demo_contexts(word)
    expected = [s for s in DEMO_WORDS[word] for _ in range(DEMO_CONTEXTS_PER_SENSE)]
    assert [sense for sense, _ in contexts] == expected
    corpus = set(lines["train"]) | set(lines["valid"])
    texts = [" ".join(tokens) for _, tokens in contexts]
    assert len(set(texts)) == len(texts)
    for (sense, tokens), text in zip(contexts, texts, strict=True):
        assert text not in corpus
        assert tokens.count(word) == 1
        assert senses_in(text, word) == {sense}
        # framed: both neighbours of the word belong to its sense
        vocabulary = next(s for s in SENSES[word] if s.name == sense)
        at = tokens.index(word)
        assert tokens[at - 1] in vocabulary.adjectives
        starts = {p.split()[0] for p in vocabulary.predicates + vocabulary.details}
        assert tokens[at + 1] in starts
    assert demo_contexts(word) == contexts


def test_demo_contexts_rejects_unknown_word():
    with pytest.raises(ValueError, match="not a demo word"):
        demo_contexts("table")


def test_files_live_inside_the_package():
    package = Path(elmo_train.__file__).parent
    assert corpus_path("train").is_relative_to(package)
    with pytest.raises(ValueError, match="unknown demo split"):
        corpus_path("test")
