"""Batching tagged sentences: words, bucketed batches, padding."""

import torch

from elmo_train.use.tagger.data import BucketBatches, TaggedSentences, WordVocab, collate
from elmo_train.use.tagger.iob import Sentence, TagSet


def sentences() -> list[Sentence]:
    rows = [
        (["Acute", "pain", "in", "1999"], ["B-D", "I-D", "O", "O"]),
        (["acute", "pain"], ["B-D", "I-D"]),
    ]
    return [
        Sentence(tokens, tags, [[t, g] for t, g in zip(tokens, tags, strict=True)], 1)
        for tokens, tags in rows
    ]


def test_word_vocab_normalises_case_and_digits_and_keeps_frequent_words():
    vocab = WordVocab.build(sentences(), min_count=2)
    assert vocab.words == ["<PAD>", "<UNK>", "acute", "pain"]
    assert vocab.encode(["ACUTE", "Pain", "2001", "in"]) == [2, 3, 1, 1]
    assert WordVocab.build(sentences(), min_count=1).encode(["2001"]) == [4]  # "0000"


def test_collate_pads_and_masks():
    data = TaggedSentences(sentences(), WordVocab.build(sentences(), 1), TagSet(["D"]))
    batch = collate([data[1], data[0]])
    assert batch.words.shape == (2, 4) and batch.chars.shape == (2, 4, 50)
    assert batch.mask.tolist() == [[True, True, False, False], [True] * 4]
    assert batch.tags.tolist() == [[1, 2, 0, 0], [1, 2, 0, 0]]
    assert batch.chars[0, 2:].abs().sum() == 0 and batch.features is None
    untagged = TaggedSentences(sentences(), WordVocab.build(sentences(), 1), None)
    assert collate([untagged[0]]).tags.abs().sum() == 0


def test_bucketed_batches_cover_every_sentence_once_and_are_a_function_of_seed_and_epoch():
    lengths = [
        int(n) for n in torch.randint(1, 60, (1000,), generator=torch.Generator().manual_seed(0))
    ]
    sampler = BucketBatches(lengths, batch_size=16, shuffle=True, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 63
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert list(BucketBatches(lengths, 16, True, seed=3)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    # Pools sorted by length: a batch spans far less than the whole range of lengths.
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(
        first
    )
    assert spread < 10
    ordered = list(BucketBatches(lengths, 16, shuffle=False))
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths)
