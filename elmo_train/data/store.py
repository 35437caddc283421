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

`prepare` builds it with HF `datasets` workers (`Dataset.from_generator(num_proc=...)` over
line-aligned byte ranges of the input files; each worker reads, tokenizes and encodes its
ranges block by block) and a streaming merge in the main process: nothing ever holds the
corpus, as text or as Python objects. A store is cached under `cache_dir/<key>`, the key hashing
the inputs (path, size, mtime), the vocabulary, the tokenizer and the format version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from elmo_train.chars import BOS_TOKEN, EOS_TOKEN, MAX_CHARS, word_to_char_ids
from elmo_train.data.files import (
    MAX_LINE_BYTES,
    MAX_WORD_BYTES,
    FileRange,
    SkipStats,
    iter_line_blocks,
    resolve_inputs,
    split_ranges,
)
from elmo_train.errors import UserError
from elmo_train.vocab import Vocabulary

FORMAT_VERSION = 1
BOS_TYPE = 0
EOS_TYPE = 1
_COPY_CHUNK = 1 << 22  # elements per chunk when rewriting the big arrays
ENCODE_BYTES = 8 << 20  # text a worker tokenizes and encodes at once
MIN_RANGE_BYTES = 1 << 20  # a worker's unit of work: a line-aligned byte range of a file
MAX_RANGE_BYTES = 64 << 20


# --- scanning the corpus: workers read, tokenize and encode line-aligned byte ranges ----------


def _encode_block(block: bytes, tokenizer, encode: bool, stats: SkipStats) -> dict:
    """One block of lines to its local types, their counts and (to `encode`) the token ids."""
    encoded = tokenizer.encode_block(block)
    lengths = encoded.lengths
    blank = int((lengths == 0).sum())
    stats.empty += blank
    stats.sentences += lengths.size - blank
    stats.tokens += encoded.ids.size
    empty = np.empty(0, dtype=np.int32)
    return {
        "types": encoded.types,
        "counts": encoded.counts,
        "ids": encoded.ids if encode else empty,
        "lengths": (lengths[lengths > 0] if blank else lengths) if encode else empty,
    }


def _grouped(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Consecutive line blocks joined into pieces of about `ENCODE_BYTES`.

    Fewer, bigger pieces mean fewer distinct types per token to merge in the main process
    (distinct words grow slower than text) and fewer calls per token.
    """
    pending: list[bytes] = []
    size = 0
    for block in blocks:
        pending.append(block)
        size += len(block)
        if size >= ENCODE_BYTES:
            yield b"\n".join(pending)
            pending, size = [], 0
    if pending:
        yield b"\n".join(pending)


def _scan_rows(ranges: list[tuple], tokenizer, encode: bool, max_line_bytes: int) -> Iterator[dict]:
    """Rows for a list of `(index, path, start, end)` ranges; each range ends with a stats row."""
    for index, path, start, end in ranges:
        stats = SkipStats()
        try:
            for block in _grouped(iter_line_blocks(path, stats, start, end, max_line_bytes)):
                yield {
                    "range": index,
                    **_encode_block(block, tokenizer, encode, stats),
                    "stats": "",
                }
        except OSError as error:
            raise UserError(f"cannot read input file {path}: {error.strerror or error}") from None
        empty = np.empty(0, dtype=np.int32)
        yield {
            "range": index,
            "types": [],
            "counts": np.empty(0, dtype=np.int64),
            "ids": empty,
            "lengths": empty,
            "stats": json.dumps(stats.to_dict()),
        }


# Rows cross the `datasets` Arrow files as raw bytes: converting Python lists or numpy arrays
# element by element cost more than the tokenizing itself. Types are joined by newlines, which
# no token holds (tokens come from newline-separated lines).
_ARRAYS = {"counts": np.int64, "ids": np.int32, "lengths": np.int32}


def _packed_rows(
    ranges: list[tuple], tokenizer, encode: bool, max_line_bytes: int
) -> Iterator[dict]:
    index = ranges[0][0] if ranges else 0
    try:
        for row in _scan_rows(ranges, tokenizer, encode, max_line_bytes):
            index = row["range"]
            yield {
                "range": index,
                "types": "\n".join(row["types"]).encode("utf-8"),
                **{name: row[name].tobytes() for name in _ARRAYS},
                "stats": row["stats"],
            }
    except Exception as error:  # sent as a row: the main process raises it as one clear line
        yield {
            "range": index,
            "types": b"",
            **{name: b"" for name in _ARRAYS},
            "stats": json.dumps({"error": _one_line(error), "user": isinstance(error, UserError)}),
        }


def _features():
    import datasets

    return datasets.Features(
        {
            "range": datasets.Value("int32"),
            "types": datasets.Value("binary"),
            **{name: datasets.Value("binary") for name in _ARRAYS},
            "stats": datasets.Value("string"),
        }
    )


@contextlib.contextmanager
def _quiet_datasets():
    """No progress bars or info logs from `datasets` while it runs our workers."""
    from datasets.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _rows_from_dataset(dataset) -> Iterator[dict]:
    """Rows of a generated dataset, unpacked, reading a few Arrow rows at a time."""
    for batch in dataset.with_format("arrow").iter(batch_size=2):
        columns = {name: batch.column(name).to_pylist() for name in batch.column_names}
        for j in range(batch.num_rows):
            types = columns["types"][j]
            yield {
                "range": columns["range"][j],
                "types": types.decode("utf-8").split("\n") if types else [],
                **{name: np.frombuffer(columns[name][j], dtype) for name, dtype in _ARRAYS.items()},
                "stats": columns["stats"][j],
            }


def _one_line(error: BaseException) -> str:
    """One line for an exception: a `UserError`'s message, else `Type: first line`.

    Follows the cause chain: a worker's exception arrives in the main process as the text of a
    `RemoteTraceback`, whose first exception line is the root cause.
    """
    current: BaseException | None = error
    for _ in range(10):
        if current is None:
            break
        if isinstance(current, UserError):
            return str(current)
        error = current
        current = current.__cause__ or current.__context__
    text = str(error)
    if type(error).__name__ == "RemoteTraceback":
        found = re.findall(
            r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.*)$", text, re.M
        )
        for name, message in found:
            if name.endswith("UserError"):
                return message
        if found:
            return f"{found[0][0].rsplit('.', 1)[-1]}: {found[0][1]}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"


def _scan(
    files: list[Path],
    tokenizer,
    stats: SkipStats,
    *,
    encode: bool,
    num_proc: int,
    max_line_bytes: int,
    work_dir: Path,
) -> Iterator[dict]:
    """Data rows (`types`, `counts`, `ids`, `lengths`) of the corpus in file order.

    `stats` receives every range's counts, its first-bad-line numbers made file-absolute.
    With `num_proc > 1` the ranges run in `datasets` worker processes.
    """
    total = sum(os.path.getsize(f) for f in files)
    # Enough ranges to balance the workers, none so big that a worker's block rows pile up.
    target = min(max(total // max(1, 4 * num_proc), MIN_RANGE_BYTES), MAX_RANGE_BYTES)
    ranges = split_ranges(files, target)
    specs = [(i, r.path, r.start, r.end) for i, r in enumerate(ranges)]
    stats.files += len(files)
    # Worker processes only pay off with about a range's worth of text each.
    num_proc = max(1, min(num_proc, len(specs), -(-total // MIN_RANGE_BYTES)))
    if num_proc == 1:
        rows = _scan_rows(specs, tokenizer, encode, max_line_bytes)
    else:
        rows = _rows_from_dataset(
            _generate(specs, tokenizer, encode, max_line_bytes, num_proc, work_dir)
        )
    yield from _merge_stats(rows, ranges, stats)


def _generate(specs, tokenizer, encode, max_line_bytes, num_proc, work_dir):
    import datasets

    try:
        with _quiet_datasets():
            return datasets.Dataset.from_generator(
                _packed_rows,
                features=_features(),
                cache_dir=str(work_dir / "hf"),
                gen_kwargs={
                    "ranges": specs,
                    "tokenizer": tokenizer,
                    "encode": encode,
                    "max_line_bytes": max_line_bytes,
                },
                num_proc=num_proc,
                writer_batch_size=4,  # a row holds up to ENCODE_BYTES of text: keep worker buffers small
            )
    except UserError:
        raise
    except Exception as error:  # a worker died: one line, never a traceback from a subprocess
        raise UserError(
            f"reading the corpus failed in a worker process: {_one_line(error)} "
            "(--num-proc 1 runs it in this process, with a traceback)"
        ) from None


def _merge_stats(rows: Iterable[dict], ranges: list[FileRange], stats: SkipStats) -> Iterator[dict]:
    lines_before: dict[str, int] = {}  # physical lines of earlier ranges of the same file
    expected = 0
    for row in rows:
        assert row["range"] >= expected, "dataset rows out of order"
        expected = row["range"]
        if row["stats"]:
            data = json.loads(row["stats"])
            if "error" in data:
                if data["user"]:
                    raise UserError(data["error"])
                raise UserError(
                    f"reading the corpus failed in a worker process: {data['error']} "
                    "(--num-proc 1 runs it in this process, with a traceback)"
                )
            part = SkipStats.from_dict(data)
            path = ranges[row["range"]].path
            offset = lines_before.get(path, 0)
            stats.merge(part, line_offset=offset)
            lines_before[path] = offset + part.lines
        elif row["types"]:
            yield row


def count_tokens(
    files: list[Path],
    tokenizer,
    stats: SkipStats,
    *,
    num_proc: int = 1,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Counter:
    """Counts of every token type of the corpus (one streaming pass); UserError if it has none."""
    counts: Counter = Counter()
    with _work_dir(None) as work_dir:
        for row in _scan(
            files,
            tokenizer,
            stats,
            encode=False,
            num_proc=num_proc,
            max_line_bytes=max_line_bytes,
            work_dir=work_dir,
        ):
            counts.update(dict(zip(row["types"], row["counts"].tolist(), strict=True)))
    _require_sentences(stats, files)
    stats.truncated_tokens = sum(c for w, c in counts.items() if _too_long(w))
    return counts


def _too_long(word: str) -> bool:
    return len(word) * 4 > MAX_WORD_BYTES and len(word.encode("utf-8")) > MAX_WORD_BYTES


def _require_sentences(stats: SkipStats, files: list[Path]) -> None:
    if stats.sentences == 0:
        names = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        skipped = f" ({stats.skipped:,} lines skipped as unreadable)" if stats.skipped else ""
        raise UserError(
            f"no usable sentences in {names}{skipped}: give UTF-8 text files with one "
            "tokenized sentence per line"
        )


@contextlib.contextmanager
def _work_dir(parent: Path | None) -> Iterator[Path]:
    import tempfile

    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".work-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- writing a store ----------------------------------------------------------------------


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


class _Flat:
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


def _write_store(
    directory: Path,
    types: list[str],
    counts: np.ndarray,
    tokens: _Flat,
    lengths: _Flat,
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
    stats.truncated_tokens = int(
        sum(int(c) for t, c in zip(types, counts, strict=True) if _too_long(t))
    )
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
            "truncated_tokens": stats.truncated_tokens,
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
        _write_store(
            directory,
            list(ids),
            counts,
            _Flat(tokens, np.int32, tokens.size),
            _Flat(lengths, np.int64, lengths.size),
            vocab,
            stats,
            meta,
        )
        return cls.open(directory)


# --- prepare ------------------------------------------------------------------------------


def _cache_key(files: list[Path], vocab: Vocabulary, tokenizer, max_line_bytes: int) -> tuple:
    inputs = []
    for f in files:
        st = f.stat()
        inputs.append({"path": str(f), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    described = {k: v for k, v in tokenizer.describe().items() if k != "model"}
    material = {
        "format_version": FORMAT_VERSION,
        "inputs": inputs,
        "vocab": vocab.fingerprint(),
        "tokenizer": described,
        "max_line_bytes": max_line_bytes,
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return digest[:20], inputs


def prepare(
    paths: Sequence[str | os.PathLike],
    vocab: Vocabulary | str | os.PathLike,
    tokenizer,
    cache_dir: str | os.PathLike,
    num_proc: int = 2,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    force: bool = False,
    verbose: bool = True,
) -> CorpusStore:
    """The store for `paths` (files or globs) under `vocab`: reused from `cache_dir`, else built.

    `tokenizer` None means whitespace (bilm-tf); `vocab` may be a path to a vocab.txt.

    A build runs `num_proc` `datasets` workers over byte ranges of the files, merges their blocks
    in order into temporary files, orders the types by frequency, writes the arrays in chunks
    into a temporary directory and renames it into place.
    """
    from elmo_train.data.tokenizer import WhitespaceTokenizer

    say = print if verbose else (lambda *args, **kwargs: None)
    files = resolve_inputs(paths)
    if not isinstance(vocab, Vocabulary):
        vocab = Vocabulary.load(vocab)
    tokenizer = tokenizer if tokenizer is not None else WhitespaceTokenizer()
    if num_proc < 1:
        raise UserError(f"--num-proc {num_proc}: use 1 or more")
    cache_dir = Path(cache_dir)
    key, inputs = _cache_key(files, vocab, tokenizer, max_line_bytes)
    target = cache_dir / key
    if not force and (target / "meta.json").is_file():
        store = CorpusStore.open(target)
        say(
            f"prepare: reusing {target} ({store.n_sentences:,} sentences, {store.n_tokens:,} tokens)"
        )
        return store

    started = time.perf_counter()
    size = sum(i["size"] for i in inputs)
    say(f"prepare: {len(files)} file(s), {size / 1e6:,.1f} MB, --num-proc {num_proc} -> {target}")
    stats = SkipStats()
    with _work_dir(cache_dir) as work:
        build = work / "store"
        n_types = _build(
            files,
            vocab,
            tokenizer,
            stats,
            num_proc,
            max_line_bytes,
            work,
            build,
            {
                "key": key,
                "inputs": inputs,
                "tokenizer": tokenizer.describe(),
                "max_line_bytes": max_line_bytes,
            },
        )
        if force or not (target / "meta.json").is_file():  # else another process was faster
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(build, target)
            except OSError:
                if not (target / "meta.json").is_file():
                    raise
    store = CorpusStore.open(target)
    counts = store.meta["counts"]
    seconds = time.perf_counter() - started
    say(
        f"prepare: {counts['sentences']:,} sentences, {counts['tokens']:,} tokens, "
        f"{n_types:,} types; OOV {counts['oov_tokens']:,} tokens ({100 * counts['oov_rate']:.2f}%) "
        f"against a {len(vocab):,}-word vocabulary"
    )
    for line in stats.report():
        say(f"prepare: {line}")
    say(
        f"prepare: wrote {target} in {seconds:.1f} s ({counts['tokens'] / max(seconds, 1e-9):,.0f} tokens/s)"
    )
    return store


def _build(files, vocab, tokenizer, stats, num_proc, max_line_bytes, work, build, meta) -> int:
    """Scan and write the store into `build`; returns the number of types."""
    type_ids: dict[str, int] = {BOS_TOKEN: BOS_TYPE, EOS_TOKEN: EOS_TYPE}
    counts = np.zeros(1 << 16, dtype=np.int64)
    n_tokens = n_sentences = 0
    with (
        open(work / "tokens.bin", "wb") as tokens_out,
        open(work / "lengths.bin", "wb") as lengths_out,
    ):
        for row in _scan(
            files,
            tokenizer,
            stats,
            encode=True,
            num_proc=num_proc,
            max_line_bytes=max_line_bytes,
            work_dir=work,
        ):
            # Block-local type ids to global ones: C-speed dict lookups, new types appended.
            found = list(map(type_ids.get, row["types"]))
            if None in found:
                new = [t for t, i in zip(row["types"], found, strict=True) if i is None]
                start = len(type_ids)
                type_ids.update(zip(new, range(start, start + len(new)), strict=True))
                found = list(map(type_ids.__getitem__, row["types"]))
            to_global = np.array(found, dtype=np.int32)
            if len(type_ids) > counts.size:
                counts = np.concatenate(
                    [counts, np.zeros(max(counts.size, len(type_ids)), np.int64)]
                )
            counts[to_global] += row["counts"]  # distinct within a block
            to_global[row["ids"]].tofile(tokens_out)
            row["lengths"].tofile(lengths_out)
            n_tokens += row["ids"].size
            n_sentences += row["lengths"].size
    _require_sentences(stats, files)
    tokens = _Flat(work / "tokens.bin", np.int32, n_tokens)
    lengths = _Flat(work / "lengths.bin", np.int32, n_sentences)
    types = list(type_ids)
    _write_store(build, types, counts[: len(types)], tokens, lengths, vocab, stats, meta)
    return len(types)
