"""The prepared corpus: every sentence as type ids in flat arrays the trainer memory-maps.

A store directory holds

| file | content |
|---|---|
| `tokens.npy` | `(n_tokens,)` int32: type ids of all sentences' tokens, concatenated, no `<S>`/`</S>` |
| `offsets.npy` | `(n_sentences + 1,)` int64: sentence `i` is `tokens[offsets[i]:offsets[i + 1]]` |
| `types.txt` | the type inventory, one per line: `<S>`, `</S>`, then by descending corpus count |
| `type_chars.npy` | `(n_types, 50)` int16: shifted char ids of each type (`chars.word_to_char_ids`) |
| `type_vocab.npy` | `(n_types,)` int64: output-vocabulary id of each type (`<UNK>` when out of it) |
| `meta.json` | inputs (path, size, mtime), vocabulary and tokenizer fingerprints, counts, skips |

Type 0 is `<S>` and type 1 is `</S>`, so a stream wraps sentences without a lookup. Inputs are
characters of the real token and targets the vocabulary id, as bilm-tf (OOV words keep their
characters, their target is `<UNK>`).

`data.prepare` builds and caches stores; this module is the format: writing the arrays in
chunks (the corpus is never whole in memory) and opening them memory-mapped.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from elmo_train.data.files import SkipStats
from elmo_train.data.scan import Truncation
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.chars import BOS_TOKEN, EOS_TOKEN, MAX_CHARS, word_to_char_ids

FORMAT_VERSION = 2
BOS_TYPE = 0
EOS_TYPE = 1
_COPY_CHUNK = 1 << 22  # elements per chunk when rewriting the big arrays


def _type_chars(types: list[str]) -> np.ndarray:
    """`(n_types, 50)` int16 shifted char ids, vectorised `chars.word_to_char_ids` per type."""
    n = len(types)
    begin, end, pad = word_to_char_ids("")[:3]  # [BOW, EOW, PAD, ...] of the empty word
    encoded = [t.encode("utf-8", "ignore")[: MAX_CHARS - 2] for t in types]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    out = np.full((n, MAX_CHARS), pad, dtype=np.int16)
    out[:, 0] = begin
    out[np.arange(n), lengths + 1] = end
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int16) + 1
    rows = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(data.size) - np.repeat(starts, lengths) + 1
    out[rows, cols] = data
    for i, word in enumerate(types[:2]):
        if word in (BOS_TOKEN, EOS_TOKEN):
            out[i] = word_to_char_ids(word)
    return out


def _type_vocab(types: list[str], vocab: Vocabulary) -> np.ndarray:
    if vocab.unk is None:
        missing = [t for t in types[2:] if t not in vocab]
        if missing:
            raise UserError(
                f"{len(missing):,} token types of the corpus (e.g. {missing[0]!r}) are not in "
                f"vocabulary {vocab.source or '(in memory)'}, which has no <UNK>: build the "
                "vocabulary from this corpus with the same tokenizer (`elmo vocab`)"
            )
    return vocab.ids(types)


def _frequency_order(types: list[str], counts: np.ndarray) -> np.ndarray:
    """New position of each type: `<S>`, `</S>` first, then descending count, ties by string."""
    assert types[:2] == [BOS_TOKEN, EOS_TOKEN]
    counts_list = counts.tolist()
    rest = sorted(range(2, len(types)), key=lambda i: (-counts_list[i], types[i]))
    order = np.array([0, 1, *rest], dtype=np.int64)
    position = np.empty(len(types), dtype=np.int32)
    position[order] = np.arange(len(types), dtype=np.int32)
    return position


class FlatArray:
    """A flat array, in memory or in a raw file being streamed; read back in chunks."""

    def __init__(self, data: np.ndarray | Path, dtype, n: int):
        self.data, self.dtype, self.n = data, np.dtype(dtype), n

    def chunks(self) -> Iterator[np.ndarray]:
        if isinstance(self.data, np.ndarray):
            for s in range(0, self.n, _COPY_CHUNK):
                yield self.data[s : s + _COPY_CHUNK]
            return
        with open(self.data, "rb") as f:
            for s in range(0, self.n, _COPY_CHUNK):
                yield np.fromfile(f, dtype=self.dtype, count=min(_COPY_CHUNK, self.n - s))


def _save_npy(path: Path, dtype, n: int, chunks: Iterable[np.ndarray]) -> None:
    """An `.npy` of `n` elements written chunk by chunk: the array is never whole in memory."""
    dtype = np.dtype(dtype)
    with open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(f, {**header, "shape": (n,)})
        written = 0
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype)
            chunk.tofile(f)
            written += chunk.size
    assert written == n, f"{path}: wrote {written} of {n} elements"


def _running_sum(lengths: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Sentence offsets from sentence lengths: 0, then the cumulative sums."""
    yield np.zeros(1, dtype=np.int64)
    carry = 0
    for chunk in lengths:
        if chunk.size:
            part = np.cumsum(chunk, dtype=np.int64) + carry
            carry = int(part[-1])
            yield part


def write_store(
    directory: Path,
    types: list[str],
    counts: np.ndarray,
    tokens: FlatArray,
    lengths: FlatArray,
    vocab: Vocabulary,
    stats: SkipStats,
    meta: dict,
) -> None:
    """Order types by frequency, rewrite `tokens` (provisional type ids) through that order."""
    position = _frequency_order(types, counts)
    order = np.argsort(position)
    types = [types[i] for i in order]
    counts = counts[order]
    type_vocab = _type_vocab(types, vocab)
    directory.mkdir(parents=True, exist_ok=True)
    _save_npy(directory / "tokens.npy", np.int32, tokens.n, (position[c] for c in tokens.chunks()))
    _save_npy(directory / "offsets.npy", np.int64, lengths.n + 1, _running_sum(lengths.chunks()))
    np.save(directory / "type_chars.npy", _type_chars(types))
    np.save(directory / "type_vocab.npy", type_vocab)
    (directory / "types.txt").write_text("".join(t + "\n" for t in types), encoding="utf-8")

    word = np.ones(len(types), dtype=bool)
    word[:2] = False
    oov = word & (type_vocab == (vocab.unk if vocab.unk is not None else -1))
    n_tokens = tokens.n
    oov_tokens = int(counts[oov].sum())
    meta = {
        "format_version": FORMAT_VERSION,
        **meta,
        "vocab": {"path": vocab.source, "size": len(vocab), "sha256": vocab.fingerprint()},
        "counts": {
            "files": stats.files,
            "lines": stats.lines,
            "sentences": lengths.n,
            "tokens": n_tokens,
            "types": len(types),
            "oov_tokens": oov_tokens,
            "oov_types": int(oov.sum()),
            "oov_rate": oov_tokens / n_tokens if n_tokens else 0.0,
            "truncated": dataclasses.asdict(Truncation.of(types[2:], counts[2:].tolist())),
            "empty_lines": stats.empty,
            "skipped_lines": {
                r: getattr(stats, r) for r in ("invalid_utf8", "nul_bytes", "too_long")
            },
        },
        "first_skipped": stats.to_dict()["first"],
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


# --- the store ----------------------------------------------------------------------------


class CorpusStore:
    """A prepared corpus, memory-mapped: `sentence(i)` gives sentence `i`'s type ids."""

    FILES = (
        "tokens.npy",
        "offsets.npy",
        "type_chars.npy",
        "type_vocab.npy",
        "types.txt",
        "meta.json",
    )

    def __init__(self, path: Path, meta: dict, tokens, offsets, type_chars, type_vocab):
        self.path = path
        self.meta = meta
        self.tokens = tokens  # (n_tokens,) int32 type ids, memory-mapped
        self.offsets = offsets  # (n_sentences + 1,) int64, memory-mapped
        self.type_chars = type_chars  # (n_types, 50) int16
        self.type_vocab = type_vocab  # (n_types,) int64
        self.n_sentences = int(offsets.shape[0]) - 1
        self.n_tokens = int(tokens.shape[0])
        self._types: list[str] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> CorpusStore:
        path = Path(path)
        missing = [name for name in cls.FILES if not (path / name).is_file()]
        if missing:
            raise UserError(
                f"{path} is not a prepared corpus (no {missing[0]}): build it with "
                "`elmo prepare --input ... --vocab ... --output DIR`"
            )
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as error:
            raise UserError(
                f"{path / 'meta.json'} is unreadable ({error}): run `elmo prepare` again"
            ) from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"prepared corpus {path} is not in format {FORMAT_VERSION}, the one this "
                "elmo-train reads: run `elmo prepare` again"
            )

        def load(name: str, mmap: bool):
            try:
                return np.load(path / name, mmap_mode="r" if mmap else None)
            except ValueError:  # an empty array cannot be memory-mapped
                return np.load(path / name)

        store = cls(
            path,
            meta,
            tokens=load("tokens.npy", True),
            offsets=load("offsets.npy", True),
            type_chars=load("type_chars.npy", True),
            type_vocab=load("type_vocab.npy", False),
        )
        assert store.offsets[-1] == store.n_tokens, f"{path}: offsets do not match tokens"
        assert store.type_chars.shape == (store.type_vocab.shape[0], MAX_CHARS)
        return store

    def __len__(self) -> int:
        return self.n_sentences

    def __repr__(self) -> str:
        return f"CorpusStore({self.path}, {self.n_sentences:,} sentences, {self.n_tokens:,} tokens)"

    def sentence(self, i: int) -> np.ndarray:
        """Type ids of sentence `i`, without `<S>`/`</S>`."""
        if not 0 <= i < self.n_sentences:
            raise IndexError(f"sentence {i} out of range ({self.n_sentences} sentences)")
        return np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1]])

    @property
    def types(self) -> list[str]:
        """The type inventory: `types[type_id]`; `types[0] == '<S>'`, `types[1] == '</S>'`."""
        if self._types is None:
            text = (self.path / "types.txt").read_text(encoding="utf-8")
            self._types = text.split("\n")[:-1]  # tokens never hold a newline; not splitlines()
        return self._types

    @classmethod
    def from_sentences(
        cls, sentences: Sequence[Sequence[str]], vocab: Vocabulary, directory: str | os.PathLike
    ) -> CorpusStore:
        """A real store in `directory` from tokenized sentences in memory (tests, small data)."""
        ids: dict[str, int] = {BOS_TOKEN: BOS_TYPE, EOS_TOKEN: EOS_TYPE}
        flat = [ids.setdefault(w, len(ids)) for sentence in sentences for w in sentence]
        tokens = np.array(flat, dtype=np.int32)
        counts = np.bincount(tokens, minlength=len(ids)).astype(np.int64)
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        stats = SkipStats(sentences=len(sentences), tokens=len(flat))
        meta = {"inputs": [], "tokenizer": {"kind": "in-memory"}}
        directory = Path(directory)
        write_store(
            directory,
            list(ids),
            counts,
            FlatArray(tokens, np.int32, tokens.size),
            FlatArray(lengths, np.int64, lengths.size),
            vocab,
            stats,
            meta,
        )
        return cls.open(directory)
