"""Batches for the biLM: bilm-tf's packed row streams, Kim et al.'s contiguous rows, a sentence
mode, and evaluation streams.

A prepared corpus (`elmo_train.data.store.CorpusStore`) holds every sentence as type ids in
one memory-mapped array; this module turns it into `Batch`es (`elmo_train.model.batch`).

Two steps per batch, so that workers and resumption never break a row's continuity:

1. *Plan* (cheap, lengths only): which pieces of which sentences go where in batch `k`. Every
   DataLoader worker plans every batch, because batch `k + 1` depends on how batch `k` left
   each row, and the plan is a pure function of (seed, epoch, rank, world size, step).
2. *Materialise* (numpy gathers): only the batches `k` with `k ≡ worker_id (mod num_workers)`.
   The DataLoader collects workers round-robin, so it yields exactly the one-process stream.

Memory stays flat whatever the corpus size: the sentence order is generated one shuffle block
at a time, the corpus is read through its memory maps, and nothing per sentence is kept.
"""

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from elmo_train.data.store import BOS_TYPE, EOS_TYPE, CorpusStore
from elmo_train.model.batch import Batch

MODES = ("stream", "contiguous", "sentence")


def training_rows(mode: str, batch_size: int, world_size: int) -> int:
    """Sentences a training corpus needs at least: one per contiguous row, else one per rank."""
    return batch_size * world_size if mode == "contiguous" else world_size


class TokenStore(Protocol):
    """What a batch stream reads from a prepared corpus (`CorpusStore` provides it)."""

    n_sentences: int
    n_tokens: int
    tokens: np.ndarray  # (n_tokens,) int32 type ids, sentences concatenated, no boundary tokens
    offsets: np.ndarray  # (n_sentences + 1,) int64 start of each sentence in `tokens`
    type_chars: np.ndarray  # (n_types, 50) int16 shifted char ids
    type_vocab: np.ndarray  # (n_types,) int64 output-vocabulary id of each type


class SentenceOrder:
    """The order in which one rank reads the corpus's sentences, epoch by epoch.

    An epoch's global order permutes blocks of `block` consecutive sentences, then the
    sentences inside each block, each permutation from its own `PCG64([seed, epoch, ...])`, so
    no O(corpus) index is ever built. Rank `r` takes the global positions `p ≡ r (mod
    world_size)`: ranks read disjoint sentences and together all of them.
    """

    def __init__(
        self,
        n_sentences: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        block: int = 65536,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        assert 0 <= rank < world_size, f"rank {rank} outside world size {world_size}"
        assert block > 0 and seed >= 0
        self.n_sentences = n_sentences
        self.seed = seed
        self.shuffle = shuffle
        self.block = block
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        """Sentences this rank reads per epoch."""
        return len(range(self.rank, self.n_sentences, self.world_size))

    def chunks(self, epoch: int) -> Iterator[np.ndarray]:
        """This rank's sentence ids of `epoch`, in order, one int64 array per shuffle block."""
        n_blocks = -(-self.n_sentences // self.block)
        if self.shuffle:
            blocks = np.random.Generator(np.random.PCG64([self.seed, epoch, 0, 0]))
            block_order = blocks.permutation(n_blocks)
        else:
            block_order = np.arange(n_blocks)
        position = 0  # global position (in this epoch's order) of the block's first sentence
        for block in block_order.tolist():
            start = block * self.block
            size = min(self.block, self.n_sentences - start)
            first = (self.rank - position) % self.world_size
            position += size
            if first >= size:
                continue
            if self.shuffle:
                inside = np.random.Generator(np.random.PCG64([self.seed, epoch, 1, block]))
                local = inside.permutation(size)[first :: self.world_size]
            else:
                local = np.arange(first, size, self.world_size)
            yield start + local

    def sentences(self, store: TokenStore, epochs: Iterator[int]) -> Iterator[tuple[int, int]]:
        """`(sentence id, input positions)` over `epochs`; a sentence of n words has n + 1."""
        for epoch in epochs:
            for ids in self.chunks(epoch):
                lengths = store.offsets[ids + 1] - store.offsets[ids] + 1
                yield from zip(ids.tolist(), lengths.tolist(), strict=True)


@dataclass
class _Plan:
    """Where the pieces of sentences go in one `(rows, window)` batch; one entry per piece.

    Piece `i` puts input positions `starts[i] .. starts[i] + counts[i] - 1` of sentence
    `sentences[i]` (position 0 is `<S>` forward, `</S>` backward) at `rows[i]`, from column
    `cols[i]` on. Columns no piece covers are padding.
    """

    window: int
    rows: list[int]
    cols: list[int]
    sentences: list[int]
    starts: list[int]
    counts: list[int]


def _packed_plans(
    row_sentences: list[Iterator[tuple[int, int]]], window: int, skip: int = 0
) -> Iterator[_Plan]:
    """bilm-tf's `_get_batch` on lengths: one continuous sentence stream per row.

    Row `r` reads `(sentence id, input positions)` from `row_sentences[r]`; rows fill left to
    right; a sentence that does not fit continues in the same row of the next batch; a row
    fetches its next sentence only when it needs a position and its current one is used up.
    Rows sharing one iterator (stream mode) thus take sentences in the order they ask: row 0
    first, then row 1, ... within a batch, as bilm-tf's single generator does. A row whose
    iterator runs out is padding from then on, and the plans end once a batch would be all
    padding. The first `skip` batches are only simulated (a resume), with the same fetches.
    """
    batch_size = len(row_sentences)
    current = [0] * batch_size  # sentence id in each row
    length = [0] * batch_size  # its input positions
    left = [0] * batch_size  # those not emitted yet
    exhausted = [False] * batch_size

    def fetch(row: int) -> bool:
        """Start the row's next sentence; False once its iterator has run out."""
        fetched = None if exhausted[row] else next(row_sentences[row], None)
        if fetched is None:
            exhausted[row] = True
            return False
        current[row], length[row] = fetched
        left[row] = length[row]
        return True

    for _ in range(skip):
        for row in range(batch_size):
            need = window
            while need > left[row] and not exhausted[row]:
                need -= left[row]
                left[row] = 0
                fetch(row)
            left[row] -= min(need, left[row])
    while True:
        plan = _Plan(window, [], [], [], [], [])
        for row in range(batch_size):
            col = 0
            while col < window:
                if left[row] == 0 and not fetch(row):
                    break
                take = min(window - col, left[row])
                plan.rows.append(row)
                plan.cols.append(col)
                plan.sentences.append(current[row])
                plan.starts.append(length[row] - left[row])
                plan.counts.append(take)
                col += take
                left[row] -= take
        if not plan.rows:
            return
        yield plan


def contiguous_rows(store: TokenStore, n_rows: int) -> list[range]:
    """The corpus cut into `n_rows` runs of consecutive sentences of about equal positions.

    Kim et al. (and Zaremba et al.) reshape the token stream into `batch_size` rows: each row
    reads one contiguous part of the corpus, so the state carried across batches is real
    preceding text. Cuts fall on sentence boundaries; a corpus with fewer sentences than rows
    leaves the last rows empty. Binary searches over the memory-mapped offsets: no O(corpus)
    array is built.
    """
    n = store.n_sentences
    total = store.n_tokens + n  # input positions: a sentence of k words has k + 1

    def end(i: int) -> int:  # input positions up to and including sentence i
        return int(store.offsets[i + 1]) + i + 1

    # row k starts after the sentence that holds position k * total / n_rows
    cuts = [bisect.bisect_left(range(n), total * k / n_rows, key=end) + 1 for k in range(1, n_rows)]
    bounds = [0, *(min(cut, n) for cut in cuts), n]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


def _row_sentences(
    store: TokenStore, sentences: range, epochs: Iterator[int]
) -> Iterator[tuple[int, int]]:
    """`(sentence id, input positions)` of one contiguous row, in corpus order, per epoch."""
    if not sentences:
        return  # an empty row is padding; never cycle through nothing forever
    ids = np.arange(sentences.start, sentences.stop)
    lengths = (store.offsets[ids + 1] - store.offsets[ids] + 1).tolist()
    for _ in epochs:
        yield from zip(ids.tolist(), lengths, strict=True)


def _sentence_plans(
    sentences: Iterator[tuple[int, int]], batch_size: int, max_tokens: int
) -> Iterator[_Plan]:
    """Sentence mode: one sentence per row, the batch as wide as its longest row.

    A sentence with more than `max_tokens` input positions is cut into consecutive pieces of
    `max_tokens`, each its own row starting from zero state, so every target is still predicted
    exactly once (only the first piece starts with `<S>`, only the last predicts `</S>`).
    """
    plan = _Plan(0, [], [], [], [], [])
    for sentence, length in sentences:
        for start in range(0, length, max_tokens):
            count = min(max_tokens, length - start)
            plan.rows.append(len(plan.rows))
            plan.cols.append(0)
            plan.sentences.append(sentence)
            plan.starts.append(start)
            plan.counts.append(count)
            plan.window = max(plan.window, count)
            if len(plan.rows) == batch_size:
                yield plan
                plan = _Plan(0, [], [], [], [], [])
    if plan.rows:
        yield plan


def _materialise(
    store: TokenStore, plan: _Plan | None, batch_size: int, window: int, reset: bool
) -> Batch:
    """The batch of a plan; `None` is an all-padding batch (equal eval lengths under DDP)."""
    size = batch_size * window
    # type ids of every (B*T) position; -1 is padding
    types = {key: np.full(size, -1, dtype=np.int64) for key in ("fwd", "fwd_t", "bwd", "bwd_t")}
    if plan is not None:
        counts = np.asarray(plan.counts, dtype=np.int64)
        piece = np.repeat(np.arange(counts.size), counts)  # (P,) piece of each position
        within = np.arange(piece.size) - np.repeat(np.cumsum(counts) - counts, counts)
        flat = np.asarray(plan.rows, dtype=np.int64)[piece] * window
        flat += np.asarray(plan.cols, dtype=np.int64)[piece] + within  # (P,) index in B*T
        sentence = np.asarray(plan.sentences, dtype=np.int64)[piece]
        q = np.asarray(plan.starts, dtype=np.int64)[piece] + within  # (P,) input position
        begin = store.offsets[sentence]
        n = store.offsets[sentence + 1] - begin  # words of the sentence
        last = max(store.n_tokens - 1, 0)

        def words(index: np.ndarray) -> np.ndarray:
            return store.tokens[np.clip(index, 0, last)]

        # forward [<S>, w_0 .. w_{n-1}, </S>]; backward [</S>, w_{n-1} .. w_0, <S>];
        # input position q reads element q and predicts element q + 1, as bilm-tf.
        types["fwd"][flat] = np.where(q == 0, BOS_TYPE, words(begin + q - 1))
        types["fwd_t"][flat] = np.where(q == n, EOS_TYPE, words(begin + q))
        types["bwd"][flat] = np.where(q == 0, EOS_TYPE, words(begin + n - q))
        types["bwd_t"][flat] = np.where(q == n, BOS_TYPE, words(begin + n - q - 1))

    mask = types["fwd"] >= 0  # (B*T,)
    streams = {}
    for direction in ("fwd", "bwd"):
        inputs, targets = types[direction][mask], types[f"{direction}_t"][mask]
        chars = np.zeros((size, store.type_chars.shape[1]), dtype=np.int64)  # numpy casts
        chars[mask] = store.type_chars[inputs]  # faster than torch's multithreaded .long()
        target_ids = np.zeros(size, dtype=np.int64)
        target_ids[mask] = store.type_vocab[targets]
        streams[f"{direction}_chars"] = torch.from_numpy(chars).view(batch_size, window, -1)
        streams[f"{direction}_targets"] = torch.from_numpy(target_ids).view(batch_size, window)
    return Batch(
        **streams,
        mask=torch.from_numpy(mask).view(batch_size, window),
        reset=torch.full((batch_size,), reset, dtype=torch.bool),
    )


@dataclass(frozen=True)
class StreamPosition:
    """Where a training stream is: its step, and the epoch that step falls in."""

    step: int
    epoch: int


class BatchStream(IterableDataset):
    """One rank's `Batch`es of a prepared corpus.

    `training=True`: an infinite stream (epoch 0's order, then epoch 1's, ...), shuffled by
    `seed` unless `shuffle=False`, starting at batch `start_step` exactly as the uninterrupted
    stream would have it. `training=False`: one pass in corpus order that predicts every target
    exactly once, then all-padding batches up to the same length on every rank (DDP would hang
    on uneven lengths); `len()` gives that length.

    `mode="stream"`: bilm-tf's packed rows, `(batch_size, window)`, LSTM state carried across
    batches. `mode="contiguous"`: the same batches, but row `r` of rank `k` reads part
    `k * batch_size + r` of the corpus cut into contiguous parts, in order, every epoch (Kim et
    al. 2016; no shuffling). `mode="sentence"`: one sentence per row, padded to the longest,
    zero state.
    Use it with `DataLoader(batch_size=None)`; any `num_workers` yields the same batches.
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        batch_size: int = 64,
        window: int = 20,
        mode: str = "stream",
        training: bool = True,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_block: int = 65536,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        max_sentence_tokens: int = 400,
    ) -> None:
        assert mode in MODES, f"mode must be one of {MODES}, got {mode!r}"
        assert batch_size > 0 and window > 0 and max_sentence_tokens > 0 and start_step >= 0
        assert store.n_sentences > 0, "the corpus has no sentences"
        if training:
            rows = training_rows(mode, batch_size, world_size)
            assert store.n_sentences >= rows, f"fewer training sentences than rows ({rows})"
        self.store = store
        self.batch_size = batch_size
        self.window = window
        self.mode = mode
        self.training = training
        self.seed = seed
        self.shuffle = shuffle and training
        self.shuffle_block = shuffle_block
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.max_sentence_tokens = max_sentence_tokens
        self._eval_length: int | None = None

    def __getstate__(self) -> dict:
        # A CorpusStore travels to spawned workers as its path and is memory-mapped again
        # there; pickling its memmaps would copy the whole corpus into every worker.
        state = self.__dict__.copy()
        path = getattr(self.store, "path", None)
        if path is not None:
            state["store"] = Path(path)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["store"], Path):
            state["store"] = CorpusStore.open(state["store"])
        self.__dict__.update(state)

    def _order(self, rank: int) -> SentenceOrder:
        return SentenceOrder(
            self.store.n_sentences,
            seed=self.seed,
            shuffle=self.shuffle,
            block=self.shuffle_block,
            rank=rank,
            world_size=self.world_size,
        )

    def _contiguous_rows(self, rank: int) -> list[range]:
        """Contiguous mode: the sentence ranges of `rank`'s rows."""
        rows = contiguous_rows(self.store, self.batch_size * self.world_size)
        return rows[rank * self.batch_size : (rank + 1) * self.batch_size]

    def _plans(self, rank: int, skip: int = 0) -> Iterator[_Plan]:
        """The plans of `rank`'s stream from step `skip` (infinite when training)."""

        def epochs() -> Iterator[int]:
            return itertools.count() if self.training else iter([0])

        if self.mode == "contiguous":
            rows = [_row_sentences(self.store, r, epochs()) for r in self._contiguous_rows(rank)]
            return _packed_plans(rows, self.window, skip)
        sentences = self._order(rank).sentences(self.store, epochs())
        if self.mode == "stream":
            return _packed_plans([sentences] * self.batch_size, self.window, skip)
        plans = _sentence_plans(sentences, self.batch_size, self.max_sentence_tokens)
        return itertools.islice(plans, skip, None)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch on each rank: the corpus's input positions over the batch's.

        Sentence mode counts one row per sentence (pieces of overlong sentences not included).
        """
        if not self.training:
            return len(self)
        if self.mode != "sentence":
            positions = self.store.n_tokens + self.store.n_sentences  # n + 1 per sentence
            return max(1, positions // self.world_size // (self.batch_size * self.window))
        return max(1, self.store.n_sentences // self.world_size // self.batch_size)

    def position(self, step: int) -> StreamPosition:
        """The epoch step `step` falls in, for progress and ETA."""
        return StreamPosition(step=step, epoch=step // self.steps_per_epoch)

    def __len__(self) -> int:
        """Evaluation: batches per rank, the most any rank needs (a training stream has none)."""
        if self.training:
            raise TypeError("a training BatchStream is infinite; bound it with max_steps")
        if self._eval_length is None:
            self._eval_length = max(
                sum(1 for _ in self._plans(rank)) for rank in range(self.world_size)
            )
        return self._eval_length

    def count_targets(self) -> int:
        """Real targets per direction in this rank's evaluation pass: its words and `</S>`s."""
        assert not self.training, "a training stream has no end"
        if self.mode == "contiguous":
            chunks = [np.arange(r.start, r.stop) for r in self._contiguous_rows(self.rank)]
        else:
            chunks = self._order(self.rank).chunks(0)
        offsets = self.store.offsets
        total = 0
        for ids in chunks:
            total += int((offsets[ids + 1] - offsets[ids]).sum()) + ids.size
        return total

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        # every worker simulates every batch (rows continue across batches), materialises its own
        plans = self._plans(self.rank, skip=self.start_step)
        end = None if self.training else len(self)
        step = self.start_step
        while end is None or step < end:
            plan = next(plans, None)  # None: past the end of an evaluation stream
            if (step - self.start_step) % n_workers == worker:
                if plan is not None:
                    window = plan.window
                else:
                    window = self.window if self.mode != "sentence" else 1
                # stream modes: zero state only at the very start; a resumed run restores the
                # carried states from its checkpoint, so its batches equal the uninterrupted ones
                reset = self.mode == "sentence" or step == 0
                yield _materialise(self.store, plan, self.batch_size, window, reset)
            step += 1
