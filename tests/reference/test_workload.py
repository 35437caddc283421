from collections import Counter

import numpy as np
import pytest

from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.reference.workload import peak_tflops, synthetic_words, write_synthetic_corpus


def test_synthetic_words_are_distinct_lowercase_words_of_2_to_11_letters():
    words = synthetic_words(5000, np.random.default_rng(0))
    assert len(set(words)) == 5000
    assert {len(w) for w in words} == set(range(2, 12))
    assert all(w.isalpha() and w.islower() for w in words)


def test_synthetic_corpus_has_a_bilm_tf_vocabulary_in_frequency_order(tmp_path):
    write_synthetic_corpus(tmp_path, 2000, 20_000, np.random.default_rng(0))
    lines = (tmp_path / "vocab.txt").read_text().split("\n")[:-1]
    assert lines[:3] == ["<S>", "</S>", "<UNK>"] and len(lines) == len(set(lines)) == 2000
    Vocabulary(lines)  # bilm-tf's format, as `data.vocab` reads it
    sentences = (tmp_path / "train.txt").read_text().splitlines()
    counts = Counter(word for sentence in sentences for word in sentence.split())
    assert set(counts) <= set(lines[3:])
    assert sum(counts.values()) == 20_000  # every drawn token, the last sentence shorter
    assert all(5 <= len(s.split()) <= 30 for s in sentences[:-1])
    # Zipf(1): rank 1 about twice as frequent as rank 2, ten times rank 10
    assert counts[lines[3]] / counts[lines[4]] == pytest.approx(2.0, rel=0.25)
    assert counts[lines[3]] > 5 * counts[lines[12]]


def test_peak_is_known_for_h100_and_h200_only():
    assert (
        peak_tflops("NVIDIA H200", "bf16") == peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    )
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") is None
