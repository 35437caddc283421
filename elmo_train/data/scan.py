"""Scanning a corpus: workers read, tokenize and encode line-aligned byte ranges of the files.

`count_tokens` (the vocabulary's counts) and `prepare` (the store) both read the corpus through
`scan`: with `num_proc > 1` the ranges run in HF `datasets` worker processes
(`Dataset.from_generator(num_proc=...)`), each reading, tokenizing and encoding its ranges
block by block; rows come back in file order and nothing ever holds the corpus, as text or as
Python objects. A worker's error arrives as one line, never a subprocess traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from elmo_train.data.files import (
    MAX_LINE_BYTES,
    MAX_WORD_BYTES,
    SKIP_REASONS,
    FileRange,
    SkipStats,
    iter_line_blocks,
    split_ranges,
)
from elmo_train.errors import UserError

ENCODE_BYTES = 8 << 20  # text a worker tokenizes and encodes at once
MIN_RANGE_BYTES = 1 << 20  # a worker's unit of work: a line-aligned byte range of a file
MAX_RANGE_BYTES = 64 << 20


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


def scan(
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
    with temporary_dir(None) as work:
        for row in scan(
            files,
            tokenizer,
            stats,
            encode=False,
            num_proc=num_proc,
            max_line_bytes=max_line_bytes,
            work_dir=work,
        ):
            counts.update(dict(zip(row["types"], row["counts"].tolist(), strict=True)))
    require_text(stats, files)
    return counts


def too_long(word: str) -> bool:
    return len(word) * 4 > MAX_WORD_BYTES and len(word.encode("utf-8")) > MAX_WORD_BYTES


@dataclasses.dataclass
class Truncation:
    """Tokens longer than the char CNN's `MAX_WORD_BYTES`: whole words to the vocabulary and
    the targets, cut to their first bytes for the char CNN (as bilm-tf)."""

    tokens: int = 0
    types: int = 0
    example: str = ""  # the most frequent such type

    @classmethod
    def of(cls, types: Iterable[str], counts: Iterable[int]) -> Truncation:
        long = [(int(c), t) for t, c in zip(types, counts, strict=True) if too_long(t)]
        if not long:
            return cls()
        return cls(sum(c for c, _ in long), len(long), min(long, key=lambda x: (-x[0], x[1]))[1])

    def report(self, total_tokens: int) -> str | None:
        """One line for the run's output, None when no token is cut."""
        if not self.tokens:
            return None
        example = self.example if len(self.example) <= 24 else self.example[:24] + "…"
        return (
            f"{self.tokens:,} tokens ({100 * self.tokens / max(total_tokens, 1):.2f}%; "
            f"{self.types:,} types, e.g. {example!r}) are longer than "
            f"{MAX_WORD_BYTES} UTF-8 bytes: the char CNN reads only their first {MAX_WORD_BYTES} "
            f"bytes ({MAX_WORD_BYTES // 3} characters of Devanagari or CJK), as bilm-tf; the "
            "vocabulary keeps them whole"
        )


# Above this share of unusable (non-blank) lines the input is not text: refuse it, do not
# train on the few lines that happen to decode (a binary file's 4 lines gave `ppl 8.89`).
MAX_SKIPPED_SHARE = 0.5


def require_text(stats: SkipStats, files: list[Path]) -> None:
    """One line if the pass found no sentence, or if most lines were unusable."""
    names = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
    if stats.sentences == 0:
        skipped = f" ({stats.skipped:,} lines skipped as unreadable)" if stats.skipped else ""
        raise UserError(
            f"no usable sentences in {names}{skipped}: give UTF-8 text files with one "
            "tokenized sentence per line"
        )
    read = stats.sentences + stats.skipped
    if stats.skipped > MAX_SKIPPED_SHARE * read:
        reason = max(stats.first, key=lambda r: getattr(stats, r))
        path, line = stats.first[reason]
        raise UserError(
            f"{stats.skipped:,} of the {read:,} lines of {names} are unusable (mostly lines "
            f"{SKIP_REASONS[reason]}, first at {path}:{line}); this is not a text corpus: give "
            "UTF-8 text files with one tokenized sentence per line"
        )


@contextlib.contextmanager
def temporary_dir(parent: Path | None) -> Iterator[Path]:
    import tempfile

    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".work-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
