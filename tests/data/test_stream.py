"""Packed row streams, sentence mode and evaluation streams: exact batches, per rank, resumable."""

import dataclasses
import itertools
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from elmo_train.data.store import CorpusStore
from elmo_train.data.stream import BatchStream, SentenceOrder, contiguous_rows
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.batch import Batch
from elmo_train.model.chars import BOS_CHAR_IDS, word_to_char_ids

SPECIALS = ["<S>", "</S>", "<UNK>"]


def make_store(sentences: list[list[str]], vocab: list[str], directory) -> CorpusStore:
    return CorpusStore.from_sentences(sentences, Vocabulary(vocab), directory)


def numbered(n_sentences: int, directory, seed: int = 0) -> tuple[CorpusStore, list[str]]:
    """Sentences of 1..12 words; every word of sentence i is `s{i}w{j}`, so ids name sentences."""
    rng = np.random.default_rng(seed)
    sentences = [[f"s{i}w{j}" for j in range(rng.integers(1, 13))] for i in range(n_sentences)]
    vocab = SPECIALS + sorted({w for s in sentences for w in s})
    return make_store(sentences, vocab, directory), vocab


def take(stream, n: int) -> list[Batch]:
    return list(itertools.islice(stream, n))


def tensors(batch: Batch) -> dict[str, torch.Tensor]:
    return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}


def one_row(batch: Batch, row: int) -> Batch:
    return Batch(**{name: t[row : row + 1] for name, t in tensors(batch).items()})


def input_ids(chars: torch.Tensor, store: CorpusStore) -> torch.Tensor:
    """Vocabulary ids `(B, T)` of a stream's input tokens, read back from their char ids (0 on
    padding): what the model reads, as the targets say what it predicts."""
    by_chars = {
        tuple(c): v
        for c, v in zip(store.type_chars.tolist(), store.type_vocab.tolist(), strict=True)
    }
    ids = [by_chars.get(tuple(c), 0) for c in chars.reshape(-1, chars.shape[-1]).tolist()]
    return torch.tensor(ids).view(chars.shape[:-1])


def assert_same(a: list[Batch], b: list[Batch], skip: tuple[str, ...] = ()) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        x, y = tensors(x), tensors(y)
        for key in x:
            if key not in skip:
                assert torch.equal(x[key], y[key]), key


def loader(dataset, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=None, num_workers=workers)


@pytest.fixture
def example(tmp_path) -> CorpusStore:
    # bilm-tf tests/test_data.py: `th` is out of vocabulary
    vocab = ["<S>", "</S>", "<UNK>", "the", "."]
    return make_store([["the", "unknown", "."], ["th", "."], ["the"]], vocab, tmp_path / "ex")


def test_bilm_tf_worked_example(example):
    stream = BatchStream(example, batch_size=2, window=3, shuffle=False)
    first, second = take(stream, 2)
    assert input_ids(first.fwd_chars, example).tolist() == [[0, 3, 2], [0, 2, 4]]
    assert first.fwd_targets.tolist() == [[3, 2, 4], [2, 4, 1]]
    assert input_ids(second.fwd_chars, example).tolist() == [[4, 0, 3], [0, 3, 2]]
    assert second.fwd_targets.tolist() == [[1, 3, 1], [3, 2, 4]]
    # the same sentences in the same rows, reversed: `</S> . unknown the <S>`, `</S> . th <S>`,
    # `</S> the <S>`; row 0 finishes sentence 1 then starts sentence 3, row 1 starts sentence 1
    assert input_ids(first.bwd_chars, example).tolist() == [[1, 4, 2], [1, 4, 2]]
    assert first.bwd_targets.tolist() == [[4, 2, 3], [4, 2, 0]]
    assert input_ids(second.bwd_chars, example).tolist() == [[3, 1, 3], [1, 4, 2]]
    assert second.bwd_targets.tolist() == [[0, 3, 0], [4, 2, 3]]
    assert first.reset.tolist() == [True, True] and second.reset.tolist() == [False, False]
    assert first.mask.all() and second.mask.all()


def test_batch_keys_shapes_and_chars(example):
    batch = take(BatchStream(example, batch_size=2, window=3, shuffle=False), 1)[0]
    shapes = {key: (tuple(v.shape), v.dtype) for key, v in tensors(batch).items()}
    assert shapes == {
        "fwd_chars": ((2, 3, 50), torch.long),
        "bwd_chars": ((2, 3, 50), torch.long),
        "fwd_targets": ((2, 3), torch.long),
        "bwd_targets": ((2, 3), torch.long),
        "mask": ((2, 3), torch.bool),
        "reset": ((2,), torch.bool),
    }
    # row 1 reads `<S> th .`: the OOV word keeps its own characters, only its id is <UNK>
    expected = [word_to_char_ids(w) for w in ["<S>", "th", "."]]
    assert batch.fwd_chars[1].tolist() == expected
    assert batch.bwd_chars[1].tolist() == [word_to_char_ids(w) for w in ["</S>", ".", "th"]]


def test_sentence_order_partitions_each_epoch_across_ranks():
    for n, block, world in [(100, 7, 2), (101, 16, 3), (50, 65536, 4), (5, 2, 4)]:
        for shuffle in (False, True):
            orders = [
                SentenceOrder(n, seed=3, shuffle=shuffle, block=block, rank=r, world_size=world)
                for r in range(world)
            ]
            for epoch in (0, 1):
                per_rank = [np.concatenate(list(o.chunks(epoch))) for o in orders]
                assert [len(ids) for ids in per_rank] == [len(o) for o in orders]
                assert sorted(np.concatenate(per_rank).tolist()) == list(range(n))
            if not shuffle:
                assert per_rank[0].tolist() == list(range(0, n, world))


def test_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        return np.concatenate(list(SentenceOrder(1000, seed=seed, block=64).chunks(epoch)))

    assert np.array_equal(order(0, 0), order(0, 0))
    assert not np.array_equal(order(0, 0), order(1, 0))
    assert not np.array_equal(order(0, 0), order(0, 1))
    assert order(0, 0).tolist() != list(range(1000))


def fetched(vocab: list[str], batches: list[Batch]) -> list[int]:
    """Sentence numbers of a `numbered_store` stream in the order rows fetched them.

    A fetch is an input `<S>`; its target is the sentence's first word `s{i}w0`. Batches read
    in order and row-major meet the fetches in the order rows asked for sentences.
    """
    out = []
    for batch in batches:
        starts = (batch.fwd_chars == torch.tensor(BOS_CHAR_IDS)).all(dim=-1) & batch.mask
        for target in batch.fwd_targets[starts].tolist():
            out.append(int(vocab[target][1:].split("w")[0]))
    return out


def test_ranks_and_workers(tmp_path):
    store, vocab = numbered(200, tmp_path)
    orders = [SentenceOrder(200, seed=7, block=16, rank=r, world_size=2) for r in (0, 1)]

    def stream(rank):
        return BatchStream(
            store, batch_size=3, window=5, seed=7, shuffle_block=16, rank=rank, world_size=2
        )

    epoch0 = []
    for rank, order in enumerate(orders):
        serial = take(stream(rank), 70)  # about 1.4 epochs of this rank's share
        assert_same(list(itertools.islice(loader(stream(rank), 2), 70)), serial)
        expected = np.concatenate([*order.chunks(0), *order.chunks(1)]).tolist()
        got = fetched(vocab, serial)
        assert len(got) > len(order)
        assert got == expected[: len(got)]
        epoch0.append(set(got[: len(order)]))
    assert epoch0[0].isdisjoint(epoch0[1]) and epoch0[0] | epoch0[1] == set(range(200))


def test_resume_equals_uninterrupted_stream(tmp_path):
    store, _ = numbered(120, tmp_path)
    kw = dict(batch_size=4, window=6, seed=11, shuffle_block=32)
    full = take(BatchStream(store, **kw), 60)
    for k in (1, 7, 13, 40):  # 40 is past the first epoch
        resumed = take(BatchStream(store, start_step=k, **kw), 60 - k)
        assert_same(resumed, full[k:])
        assert not any(b.reset.any() for b in resumed)
    with_workers = list(itertools.islice(loader(BatchStream(store, start_step=13, **kw), 2), 47))
    assert_same(with_workers, full[13:])


def test_same_inputs_same_bytes_and_seeds_differ(tmp_path):
    store, _ = numbered(100, tmp_path)

    def first_batches(seed):
        return take(BatchStream(store, batch_size=4, window=5, seed=seed, shuffle_block=8), 5)

    assert_same(first_batches(1), first_batches(1))
    a, b = first_batches(1), first_batches(2)
    assert not all(
        torch.equal(input_ids(x.fwd_chars, store), input_ids(y.fwd_chars, store))
        for x, y in zip(a, b, strict=True)
    )


def test_training_stream_rows_are_continuous(tmp_path):
    """A row read across batches is whole wrapped sentences back to back, in both directions."""
    store, _ = numbered(30, tmp_path)
    batches = take(BatchStream(store, batch_size=3, window=4, shuffle=False), 40)
    for row in range(3):
        for direction, first, last in (("fwd", 0, 1), ("bwd", 1, 0)):
            streams = [tensors(b) for b in batches]
            chars = torch.cat([b[f"{direction}_chars"][row] for b in streams])  # (steps, 50)
            inputs = input_ids(chars, store).tolist()
            targets = torch.cat([b[f"{direction}_targets"][row] for b in streams]).tolist()
            assert inputs[0] == first  # forward reads <S> first, backward </S>
            for target, following in zip(targets[:-1], inputs[1:], strict=True):
                # each target is the next input, except the sentence end, followed by a new start
                assert following == (first if target == last else target)


def test_contiguous_rows_cut_the_corpus_in_order(tmp_path):
    store, _ = numbered(41, tmp_path)
    for n_rows in (1, 4, 12, 41, 50):
        rows = contiguous_rows(store, n_rows)
        assert len(rows) == n_rows
        assert [i for r in rows for i in r] == list(range(41))  # a partition, in corpus order
    rows = contiguous_rows(store, 4)
    positions = [int(store.offsets[r.stop] - store.offsets[r.start]) + len(r) for r in rows]
    longest = int(np.diff(store.offsets).max()) + 1
    assert max(positions) - min(positions) <= 2 * longest  # cuts within a sentence of ideal


def test_contiguous_mode_reads_each_part_in_order_every_epoch(tmp_path):
    """Kim et al.'s batches: row r of rank k reads part k * B + r sentence after sentence,
    then starts it again; a resumed stream continues exactly."""
    store, vocab = numbered(60, tmp_path)
    parts = contiguous_rows(store, 6)

    def stream(rank, start_step=0):
        return BatchStream(
            store, batch_size=3, window=5, mode="contiguous", rank=rank, world_size=2,
            start_step=start_step,
        )  # fmt: skip

    for rank in (0, 1):
        batches = take(stream(rank), 80)  # more than two epochs of every row
        for row in range(3):
            got = fetched(vocab, [one_row(b, row) for b in batches])
            part = list(parts[rank * 3 + row])
            assert got[: 2 * len(part)] == part + part
        assert_same(take(stream(rank, start_step=17), 20), batches[17:37])
        assert_same(list(itertools.islice(loader(stream(rank), 2), 80)), batches)
    assert stream(0).steps_per_epoch == (store.n_tokens + 60) // 2 // 15


def test_contiguous_mode_needs_a_sentence_per_row(tmp_path):
    store, _ = numbered(5, tmp_path)
    with pytest.raises(AssertionError, match="fewer training sentences than rows"):
        BatchStream(store, batch_size=3, window=4, mode="contiguous", world_size=2)


def test_steps_per_epoch_and_position(example, tmp_path):
    store, _ = numbered(100, tmp_path)
    stream = BatchStream(store, batch_size=4, window=5, world_size=2)
    assert stream.steps_per_epoch == (store.n_tokens + 100) // 2 // 20
    assert stream.position(3 * stream.steps_per_epoch + 1).epoch == 3
    assert BatchStream(example, batch_size=64, window=20).steps_per_epoch == 1


@pytest.mark.parametrize("mode", ["stream", "contiguous", "sentence"])
@pytest.mark.parametrize("world_size", [1, 3])
def test_eval_counts_every_target_once(mode, world_size, tmp_path):
    store, _ = numbered(41, tmp_path)
    per_rank = []
    counted = 0
    for rank in range(world_size):
        stream = BatchStream(
            store,
            batch_size=4,
            window=7,
            mode=mode,
            training=False,
            rank=rank,
            world_size=world_size,
            max_sentence_tokens=5,
        )
        batches = list(loader(stream, 2))
        assert len(batches) == len(stream)
        assert_same(batches, list(stream))
        per_rank.append(len(batches))
        mask_total = sum(int(b.mask.sum()) for b in batches)
        assert mask_total == stream.count_targets()
        counted += mask_total
        assert batches[0].reset.all()
        # each direction predicts every word and one </S> (forward) / <S> (backward) per sentence
        words = sorted(t for b in batches for t in b.fwd_targets[b.mask].tolist() if t > 2)
        assert words == sorted(
            t for b in batches for t in input_ids(b.bwd_chars, store)[b.mask].tolist() if t > 2
        )
        eos = sum(int((b.fwd_targets[b.mask] == 1).sum()) for b in batches)
        bos = sum(int((b.bwd_targets[b.mask] == 0).sum()) for b in batches)
        if mode == "contiguous":
            n_sentences = sum(len(r) for r in stream._contiguous_rows(rank))
        else:
            n_sentences = len(SentenceOrder(41, shuffle=False, rank=rank, world_size=world_size))
        assert eos == bos == n_sentences
        for b in batches:  # padding is all zeros
            assert not b.fwd_chars[~b.mask].any() and not b.bwd_targets[~b.mask].any()
    assert counted == store.n_tokens + store.n_sentences
    assert len(set(per_rank)) == 1


def test_eval_stream_pads_ranks_with_fewer_sentences(tmp_path):
    store, _ = numbered(3, tmp_path)
    streams = [
        BatchStream(store, batch_size=2, window=4, training=False, rank=r, world_size=4)
        for r in range(4)
    ]
    lengths = {len(s) for s in streams}
    assert len(lengths) == 1
    empty = list(streams[3])  # rank 3 has no sentence: only all-padding batches
    assert len(empty) == len(streams[3]) and not any(b.mask.any() for b in empty)
    assert empty[0].fwd_chars.shape == (2, 4, 50)


def test_sentence_mode_padding_and_cuts(tmp_path):
    sentences = [["a"] * 2, ["b"] * 9, ["c"]]
    store = make_store(sentences, SPECIALS + ["a", "b", "c"], tmp_path)
    stream = BatchStream(store, batch_size=3, mode="sentence", shuffle=False, max_sentence_tokens=4)
    first, second = take(stream, 2)
    # rows: `a a` (3 positions), `b`'s first 4 positions, its next 4
    assert input_ids(first.fwd_chars, store).tolist() == [[0, 3, 3, 0], [0, 4, 4, 4], [4, 4, 4, 4]]
    assert first.fwd_targets.tolist() == [[3, 3, 1, 0], [4, 4, 4, 4], [4, 4, 4, 4]]
    assert first.mask.tolist() == [[True] * 3 + [False], [True] * 4, [True] * 4]
    assert not first.fwd_chars[0, 3].any() and not first.bwd_chars[0, 3].any()
    assert input_ids(first.bwd_chars, store)[0].tolist() == [1, 3, 3, 0]
    assert first.bwd_targets[0].tolist() == [3, 3, 0, 0]
    # the last 2 positions of `b` (predicting its last word, then </S>), `c`, then `a a` again
    assert input_ids(second.fwd_chars, store).tolist() == [[4, 4, 0], [0, 5, 0], [0, 3, 3]]
    assert second.fwd_targets.tolist() == [[4, 1, 0], [5, 1, 0], [3, 3, 1]]
    assert input_ids(second.bwd_chars, store)[:2].tolist() == [[4, 4, 0], [1, 5, 0]]
    assert second.bwd_targets[:2].tolist() == [[4, 0, 0], [5, 0, 0]]
    assert first.reset.all() and second.reset.all()
    for batch in (first, second):
        assert not (batch.fwd_targets[~batch.mask]).any()


def test_pickled_stream_reopens_the_store(tmp_path):
    """Spawned workers get the store's path and map it again, never a copy of the corpus."""
    store, _ = numbered(50, tmp_path)
    stream = BatchStream(store, batch_size=2, window=4)
    copy = pickle.loads(pickle.dumps(stream))
    assert isinstance(copy.store.tokens, np.memmap) and len(pickle.dumps(stream)) < 2000
    assert_same(take(copy, 5), take(stream, 5))
