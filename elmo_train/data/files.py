"""Input files: globs to paths, and the one line reader every corpus pass uses.

The reader takes bytes and decodes UTF-8 line by line, so a bad line costs one skipped,
counted line instead of a crash (bilm-tf's `readlines()` with the platform encoding died on
the first one, #150/#152). Memory stays bounded whatever the file holds: it reads blocks of at
most `max_line_bytes` and drops a longer line while it streams past it. A UTF-8 byte-order mark
at the start of a file (Windows editors write one) is not text: every reader drops it.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import math
import os
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from elmo_train.errors import UserError

BOM = "\ufeff".encode()  # the UTF-8 byte-order mark
MAX_LINE_BYTES = 1 << 20  # a "sentence" longer than this is not one
BLOCK_BYTES = 1 << 20
MAX_WORD_BYTES = 48  # the char encoder keeps 50 - 2 bytes of a token (bilm-tf truncates too)

NORMAL_FORMS = ("NFC", "NFKC")  # data.normalize: None keeps the text's code points as they are

# Reasons a line is skipped and counted (blank lines are skipped silently).
SKIP_REASONS = {
    "invalid_utf8": "that are not valid UTF-8",
    "nul_bytes": "that contain NUL bytes",
    "too_long": "longer than the line limit (--max-line-bytes)",
}


@dataclasses.dataclass
class SkipStats:
    """What a pass over the corpus read, kept and skipped; merged across ranges and workers.

    `first` holds, per skip reason, the first offending `(file, line number)` (1-based).
    """

    files: int = 0
    lines: int = 0
    sentences: int = 0
    tokens: int = 0
    empty: int = 0
    invalid_utf8: int = 0
    nul_bytes: int = 0
    too_long: int = 0
    first: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)

    def skip(self, reason: str, path: str, line: int) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        self.first.setdefault(reason, (path, line))

    @property
    def skipped(self) -> int:
        return sum(getattr(self, reason) for reason in SKIP_REASONS)

    def merge(self, other: SkipStats, line_offset: int = 0) -> None:
        """Add `other`; its line numbers are shifted by `line_offset` (a range's first line - 1)."""
        for field in dataclasses.fields(self):
            if field.name != "first":
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        for reason, (path, line) in other.first.items():
            self.first.setdefault(reason, (path, line + line_offset))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["first"] = {r: {"file": p, "line": n} for r, (p, n) in self.first.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SkipStats:
        data = dict(data)
        first = {r: (v["file"], v["line"]) for r, v in data.pop("first", {}).items()}
        return cls(**data, first=first)

    def report(self) -> list[str]:
        """Human lines about skipped lines (empty when there is nothing)."""
        lines = []
        for reason, why in SKIP_REASONS.items():
            count = getattr(self, reason)
            if count:
                path, line = self.first[reason]
                lines.append(f"skipped {count:,} lines {why} (first: {path}:{line})")
        return lines


def normalizer(form: str | None) -> Callable[[str], str]:
    """The function that brings text to Unicode normal form `form` (None: the identity)."""
    if form is None:
        return str
    if form not in NORMAL_FORMS:
        raise UserError(
            f"unknown Unicode normal form {form!r}: use one of {', '.join(NORMAL_FORMS)}"
        )
    return functools.partial(unicodedata.normalize, form)  # pickles into worker processes


def resolve_inputs(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """Paths or globs to a sorted, deduplicated list of readable files.

    A path that exists is taken literally (even with glob characters in its name); anything else
    is a glob. Every pattern must give at least one file.
    """
    if not patterns:
        raise UserError("no input files given: pass --input with one or more files or globs")
    found: set[Path] = set()
    for pattern in patterns:
        text = os.fspath(pattern)
        literal = Path(text).expanduser()
        if literal.exists():
            matches = [literal]
        elif glob.has_magic(text):
            matches = [Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True)]
            matches = [m for m in matches if not m.is_dir()]
            if not matches:
                raise UserError(
                    f"input glob {text!r} matches no files: check the pattern (quote it so the "
                    "shell does not expand it) and the directory"
                )
        else:
            raise UserError(f"input file {text} does not exist: check the path")
        for path in matches:
            if path.is_dir():
                raise UserError(
                    f"input {text} is a directory, not a text file: give its files, e.g. "
                    f"'{os.path.join(text, '*.txt')}'"
                )
            if not os.access(path, os.R_OK):
                raise UserError(f"input file {path} is not readable: check its permissions")
            found.add(path.resolve())
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class FileRange:
    """Lines of `path` starting in bytes `[start, end)`; `start` is always a line start."""

    path: str
    start: int
    end: int


def _skip_line(f) -> None:
    """Advance `f` past the next newline, reading in bounded pieces."""
    while True:
        piece = f.readline(BLOCK_BYTES)
        if not piece or piece.endswith(b"\n"):
            return


def split_ranges(paths: Sequence[Path], target_bytes: int) -> list[FileRange]:
    """Cut files into line-aligned byte ranges of about `target_bytes`, in file order."""
    ranges = []
    for path in paths:
        size = os.path.getsize(path)
        pieces = max(1, math.ceil(size / max(1, target_bytes)))
        cuts = [0]
        with open(path, "rb") as f:
            for k in range(1, pieces):
                f.seek(max(size * k // pieces - 1, cuts[-1]))
                _skip_line(f)
                cut = f.tell()
                if cut >= size:
                    break
                if cut > cuts[-1]:
                    cuts.append(cut)
        cuts.append(size)
        ranges += [
            FileRange(str(path), a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a
        ]
    return ranges


def iter_line_blocks(
    path: str | os.PathLike,
    stats: SkipStats,
    start: int = 0,
    end: int | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[bytes]:
    """Blocks of whole lines from bytes `[start, end)` of a file, bad lines taken out.

    A block is valid UTF-8: lines joined by `\\n`, no final newline. Lines with invalid UTF-8,
    NUL bytes or more than `max_line_bytes` bytes are dropped and counted with their line number
    (1-based, from `start`); blank lines stay (a tokenizer finds no token in them).
    `stats.lines` counts every line read.
    """
    name = os.fspath(path)
    block_bytes = min(block_bytes, max_line_bytes)  # so only a block's first line can be too long
    line = 0  # lines consumed so far
    with open(path, "rb") as f:
        f.seek(start)
        remaining = None if end is None else end - start
        if start == 0:
            if f.read(len(BOM)) != BOM:
                f.seek(0)
            elif remaining is not None:
                remaining -= len(BOM)
        tail = b""
        discarding = False  # inside a too-long line, already counted
        while True:
            size = block_bytes if remaining is None else min(block_bytes, remaining)
            data = f.read(size) if size > 0 else b""
            if remaining is not None:
                remaining -= len(data)
            if not data:
                if tail and not discarding:
                    block, line = _clean_block(tail, name, line, stats, max_line_bytes)
                    if block is not None:
                        yield block
                break
            if discarding:
                newline = data.find(b"\n")
                if newline < 0:
                    continue
                data = data[newline + 1 :]
                discarding = False
            buffer = tail + data if tail else data
            cut = buffer.rfind(b"\n")
            if cut < 0:
                if len(buffer) > max_line_bytes:
                    line += 1
                    stats.lines += 1
                    stats.skip("too_long", name, line)
                    tail, discarding = b"", True
                else:
                    tail = buffer
                continue
            tail = buffer[cut + 1 :]
            block, line = _clean_block(buffer[:cut], name, line, stats, max_line_bytes)
            if block is not None:
                yield block


def _clean_block(
    block: bytes, name: str, line: int, stats: SkipStats, max_line_bytes: int
) -> tuple[bytes | None, int]:
    """A block without its bad lines (None if none is left) and the new line count."""
    first_end = block.find(b"\n")
    if (len(block) if first_end < 0 else first_end) > max_line_bytes:
        # Only the first line can have grown past one block (`block_bytes <= max_line_bytes`).
        line += 1
        stats.lines += 1
        stats.skip("too_long", name, line)
        if first_end < 0:
            return None, line
        block = block[first_end + 1 :]
    n_lines = block.count(b"\n") + 1
    stats.lines += n_lines
    if b"\0" not in block:
        try:
            block.decode("utf-8")
            return block, line + n_lines  # the common case: the whole block is clean
        except UnicodeDecodeError:
            pass
    good = []
    for number, raw in enumerate(block.split(b"\n"), start=line + 1):
        if b"\0" in raw:
            stats.skip("nul_bytes", name, number)
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.skip("invalid_utf8", name, number)
            continue
        good.append(raw)
    return (b"\n".join(good) if good else None), line + n_lines


def iter_lines(
    paths: Sequence[str | os.PathLike], stats: SkipStats, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[str]:
    """Every usable, non-blank line of `paths` in order (see `iter_line_blocks`).

    Counts files, sentences (lines yielded) and blank lines in `stats`.
    """
    for path in paths:
        stats.files += 1
        for block in iter_line_blocks(path, stats, max_line_bytes=max_line_bytes):
            for text in block.decode("utf-8").split("\n"):
                if text and not text.isspace():
                    stats.sentences += 1
                    yield text
                else:
                    stats.empty += 1


def read_lines(path: Path, normalize: str | None = None) -> list[str]:
    """Every line of `path` (a byte-order mark dropped), in Unicode form `normalize` if set.

    Line i stays line i: invalid UTF-8 is replaced (and reported in one line), nothing skipped.
    """
    if not path.is_file():
        raise UserError(
            f"{path}: input file not found; pass a text file with one sentence per line"
        )
    normal = normalizer(normalize)
    lines, bad_lines = [], []
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if number == 1:
                line = line.removeprefix(BOM)
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("utf-8", errors="replace")
                bad_lines.append(number)
            lines.append(normal(text.rstrip("\r\n")))
    if bad_lines:
        print(
            f"{path}: {len(bad_lines)} lines are not valid UTF-8 (first: line {bad_lines[0]}); "
            "invalid bytes were replaced"
        )
    return lines


def read_sentences(path: Path, normalize: str | None = None) -> list[list[str]]:
    """Every line of `path` whitespace-tokenized (see `read_lines`); line i stays sentence i."""
    return [line.split() for line in read_lines(path, normalize)]
