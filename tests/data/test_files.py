"""Input globs and the line reader: every bad input ends as a clear error or a counted skip."""

import random
import tracemalloc
from pathlib import Path

import pytest

from elmo_train.data.files import (
    SkipStats,
    iter_line_blocks,
    iter_lines,
    read_lines,
    read_sentences,
    resolve_inputs,
    split_ranges,
)
from elmo_train.errors import UserError


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- resolve_inputs ---------------------------------------------------------------------


def test_resolve_inputs_sorted_and_deduplicated(tmp_path):
    b = write(tmp_path / "b.txt", b"x\n")
    a = write(tmp_path / "a.txt", b"x\n")
    write(tmp_path / "sub" / "c.txt", b"x\n")
    found = resolve_inputs([str(tmp_path / "*.txt"), str(a), str(b)])
    assert found == [a.resolve(), b.resolve()]


def test_resolve_inputs_missing_path(tmp_path):
    with pytest.raises(UserError, match=r"nope\.txt does not exist: check the path"):
        resolve_inputs([str(tmp_path / "nope.txt")])


def test_resolve_inputs_glob_matching_nothing(tmp_path):
    with pytest.raises(UserError, match=r"matches no files: check the pattern"):
        resolve_inputs([str(tmp_path / "*.txt")])


def test_resolve_inputs_directory(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(UserError, match=r"shards is a directory, not a text file: give its files"):
        resolve_inputs([str(tmp_path / "shards")])


def test_resolve_inputs_empty_set():
    with pytest.raises(UserError, match="no input files given"):
        resolve_inputs([])


def test_resolve_inputs_glob_skips_directories(tmp_path):
    (tmp_path / "d.txt").mkdir()
    f = write(tmp_path / "f.txt", b"x\n")
    assert resolve_inputs([str(tmp_path / "*.txt")]) == [f.resolve()]


# --- the line reader ----------------------------------------------------------------------


def read_all(path: Path, **kwargs) -> tuple[list[str], SkipStats]:
    stats = SkipStats()
    return list(iter_lines([path], stats, **kwargs)), stats


def test_invalid_utf8_line_is_skipped_and_counted(tmp_path):
    path = write(tmp_path / "c.txt", b"good line\nbad \xff\xfe line\nalso good\nbad \xc3\n")
    lines, stats = read_all(path)
    assert lines == ["good line", "also good"]
    assert stats.invalid_utf8 == 2 and stats.skipped == 2
    assert stats.first["invalid_utf8"] == (str(path), 2)
    assert stats.report() == [f"skipped 2 lines that are not valid UTF-8 (first: {path}:2)"]


def test_nul_bytes_line_is_skipped_and_counted(tmp_path):
    path = write(tmp_path / "c.txt", b"one\ntw\x00o\nthree\n")
    lines, stats = read_all(path)
    assert lines == ["one", "three"]
    assert stats.nul_bytes == 1 and stats.first["nul_bytes"] == (str(path), 2)
    assert "contain NUL bytes" in stats.report()[0]


def test_blank_lines_are_skipped_silently(tmp_path):
    path = write(tmp_path / "c.txt", b"a b\n\n   \n\t\r\nc\r\nlast line without newline")
    lines, stats = read_all(path)
    assert [line.split() for line in lines] == [
        ["a", "b"],
        ["c"],
        ["last", "line", "without", "newline"],
    ]
    assert stats.empty == 3 and stats.skipped == 0 and stats.report() == []
    assert stats.lines == 6 and stats.sentences == 3


def test_ten_megabyte_line_is_skipped_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.write(b"first sentence\n")
        f.write(b"x" * (10 << 20))
        f.write(b"\nlast sentence\n")
    tracemalloc.start()
    lines, stats = read_all(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == ["first sentence", "last sentence"]
    assert stats.too_long == 1 and stats.first["too_long"] == (str(path), 2)
    assert peak < 6 << 20, f"peak {peak / 2**20:.1f} MiB while skipping a 10 MiB line"
    assert "longer than the line limit" in stats.report()[0]


def test_line_limit_is_inclusive(tmp_path):
    path = write(tmp_path / "c.txt", b"12345\n123456\n1234\n")
    lines, stats = read_all(path, max_line_bytes=5)
    assert lines == ["12345", "1234"] and stats.too_long == 1


def reference(data: bytes, max_line_bytes: int) -> tuple[list[str], dict]:
    """The reader's contract, one line at a time."""
    kept, skipped = [], {"invalid_utf8": [], "nul_bytes": [], "too_long": []}
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for number, raw in enumerate(raw_lines, start=1):
        if len(raw) > max_line_bytes:
            skipped["too_long"].append(number)
        elif b"\0" in raw:
            skipped["nul_bytes"].append(number)
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped["invalid_utf8"].append(number)
                continue
            if text.strip():
                kept.append(text)
    return kept, skipped


@pytest.mark.parametrize("seed", range(6))
def test_reader_matches_line_by_line_reference(tmp_path, seed):
    rng = random.Random(seed)
    pieces = [b"a", b"bb ", b" ", b"\xc3\xa9", b"\xff", b"\x00", b"\r", b"\t", b"word"]
    lines = []
    for _ in range(200):
        n = rng.choice([0, 1, 2, 5, 12, 30])
        lines.append(
            b"".join(rng.choice(pieces) if rng.random() < 0.15 else b"w" for _ in range(n))
        )
    data = b"\n".join(lines) + (b"\n" if seed % 2 else b"")
    path = write(tmp_path / "c.txt", data)
    max_line_bytes = rng.choice([4, 10, 25])
    expected, skipped = reference(data, max_line_bytes)
    for block_bytes in (1, 3, 8, 1 << 16):
        # Whole file, and the file cut into line-aligned ranges read separately.
        for target in (len(data) + 1, 37, 5):
            stats, got, offsets = SkipStats(), [], 0
            for r in split_ranges([path], target):
                part = SkipStats()
                for block in iter_line_blocks(
                    path, part, r.start, r.end, max_line_bytes, block_bytes
                ):
                    got += [s for s in block.decode().split("\n") if s.strip()]
                stats.merge(part, line_offset=offsets)
                offsets += part.lines
            assert got == expected, (block_bytes, target)
            for reason, numbers in skipped.items():
                assert getattr(stats, reason) == len(numbers), (reason, block_bytes, target)
                if numbers:
                    assert stats.first[reason] == (str(path), numbers[0])


def test_split_ranges_are_line_aligned_and_cover_the_file(tmp_path):
    data = b"".join(f"line {i} {'x' * (i % 17)}\n".encode() for i in range(300))
    path = write(tmp_path / "c.txt", data)
    ranges = split_ranges([path], 100)
    assert ranges[0].start == 0 and ranges[-1].end == len(data)
    for a, b in zip(ranges, ranges[1:], strict=False):
        assert a.end == b.start and data[b.start - 1 : b.start] == b"\n"
    assert len(ranges) > 10


def test_skip_stats_merge_and_round_trip():
    a = SkipStats(files=1, lines=10, sentences=8, invalid_utf8=1, first={"invalid_utf8": ("f", 3)})
    b = SkipStats(
        lines=5,
        nul_bytes=2,
        invalid_utf8=1,
        first={"nul_bytes": ("f", 2), "invalid_utf8": ("f", 1)},
    )
    a.merge(b, line_offset=10)
    assert a.lines == 15 and a.invalid_utf8 == 2 and a.skipped == 4
    assert a.first == {"invalid_utf8": ("f", 3), "nul_bytes": ("f", 12)}
    assert SkipStats.from_dict(a.to_dict()) == a


# --- byte-order marks and Unicode normal forms ---------------------------------------------


@pytest.mark.parametrize("block_bytes", [1, 2, 4, 1 << 16])
def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path, block_bytes):
    path = write(tmp_path / "bom.txt", "\ufeffbank river\nloan\n".encode())
    blocks = list(iter_line_blocks(path, SkipStats(), block_bytes=block_bytes))
    assert b"\n".join(blocks).decode().split() == ["bank", "river", "loan"]
    # A range that does not start the file keeps its bytes (a mark there is a character).
    stats, later = SkipStats(), write(tmp_path / "later.txt", "a\n\ufeffb\n".encode())
    assert list(iter_lines([later], stats))[1] == "\ufeffb"
    assert read_sentences(path) == [["bank", "river"], ["loan"]]
    assert read_lines(path) == ["bank river", "loan"]


def test_read_lines_normalizes_to_the_form_asked(tmp_path):
    nfd = "cafe\u0301 de\u0301ja\u0300"  # e + combining acute: what macOS file names give
    path = write(tmp_path / "t.txt", f"{nfd}\n".encode())
    assert read_lines(path) == [nfd]  # by default the code points stay as they are
    assert read_lines(path, "NFC") == ["café déjà"]
    assert read_sentences(path, "NFKC") == [["café", "déjà"]]
    with pytest.raises(UserError, match="unknown Unicode normal form 'NFD'"):
        read_lines(path, "NFD")
