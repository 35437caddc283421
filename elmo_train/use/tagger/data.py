"""Sentences to `TaggerBatch`es: the word vocabulary, the dataset, length-bucketed batches."""

import re
from collections import Counter

import torch
from torch.utils.data import Dataset, Sampler

from elmo_train.model.chars import batch_to_ids
from elmo_train.use.tagger.features import SplitFeatures
from elmo_train.use.tagger.iob import Sentence, TagSet
from elmo_train.use.tagger.network import TaggerBatch

PAD, UNK = "<PAD>", "<UNK>"
_DIGIT = re.compile(r"\d")


def normalise(word: str) -> str:
    """The word embedding's key: lower case, every digit 0 (Lample et al. 2016); the char CNN
    still sees the token as written."""
    return _DIGIT.sub("0", word.lower())


class WordVocab:
    """Trainable word embeddings' rows: 0 padding, 1 `<UNK>`, then the training words."""

    def __init__(self, words: list[str]):
        assert words[:2] == [PAD, UNK]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, sentences: list[Sentence], min_count: int) -> "WordVocab":
        counts = Counter(normalise(w) for s in sentences for w in s.tokens)
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.index.get(normalise(w), 1) for w in tokens]


class TaggedSentences(Dataset):
    """Sentence `i` as word ids, char ids, tag ids and (if any) its biLM layers.

    Without a `tagset` (tagging new text) the tag ids are all 0.
    """

    def __init__(
        self,
        sentences: list[Sentence],
        words: WordVocab,
        tagset: TagSet | None,
        features: SplitFeatures | None = None,
    ):
        self.sentences = sentences
        self.words = words
        self.tagset = tagset
        self.features = features

    def __len__(self) -> int:
        return len(self.sentences)

    def lengths(self) -> list[int]:
        return [len(s.tokens) for s in self.sentences]

    def __getitem__(self, i: int) -> dict:
        sentence = self.sentences[i]
        n = len(sentence.tokens)
        tags = [0] * n if self.tagset is None else self.tagset.encode(sentence.tags)
        return {
            "tokens": sentence.tokens,
            "words": torch.tensor(self.words.encode(sentence.tokens)),
            "tags": torch.tensor(tags),
            "features": None if self.features is None else self.features.sentence(i),
        }


def collate(items: list[dict]) -> TaggerBatch:
    B, T = len(items), max(len(item["tokens"]) for item in items)
    words = torch.zeros(B, T, dtype=torch.long)
    tags = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for row, item in enumerate(items):
        n = len(item["tokens"])
        words[row, :n], tags[row, :n], mask[row, :n] = item["words"], item["tags"], True
    features = None
    if items[0]["features"] is not None:
        L, _, D = items[0]["features"].shape
        features = torch.zeros(B, L, T, D)
        for row, item in enumerate(items):
            features[row, :, : len(item["tokens"])] = item["features"]
    chars = batch_to_ids([item["tokens"] for item in items])  # (B, T, 50)
    return TaggerBatch(words, chars, mask, tags, features)


class BucketBatches(Sampler[list[int]]):
    """Shuffled batches of sentences of similar length; a pure function of (seed, epoch).

    Each epoch shuffles the sentences, sorts pools of 50 batches by length, cuts them into
    batches and shuffles the batches, so padding stays small and every batch still mixes the
    corpus. `shuffle=False`: batches of the length-sorted sentences, in that order.
    """

    POOL = 50  # batches per sorted pool

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0):
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: self.lengths[i])
            yield from (order[i : i + size] for i in range(0, n, size))
            return
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator).tolist()
        batches = []
        for start in range(0, n, size * self.POOL):
            pool = sorted(order[start : start + size * self.POOL], key=lambda i: self.lengths[i])
            batches += [pool[i : i + size] for i in range(0, len(pool), size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[b]
